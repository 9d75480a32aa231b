// Makes a fresh clone runnable with nothing but Node.js: installs npm dependencies, builds the
// TypeScript, and (for the tests) the Debian packages that real initiators and QEMU come from.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = dirname(dirname(fileURLToPath(import.meta.url)));

function say(msg) {
  process.stderr.write(`kura: ${msg}\n`);
}

function newestMtime(dir) {
  let newest = 0;
  if (!existsSync(dir)) return 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

export function ensureNodeModules() {
  const lock = join(root, 'package-lock.json');
  const stamp = join(root, 'node_modules', '.package-lock.json');
  if (existsSync(stamp) && statSync(stamp).mtimeMs >= statSync(lock).mtimeMs) return;
  say('installing npm dependencies (npm ci)...');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('npm ci failed: see the output above');
}

export function ensureBuild() {
  ensureNodeModules();
  const out = join(root, 'dist', 'cli', 'kura.js');
  const sources = Math.max(...['firmware', 'hal', 'target', 'cli', 'bench', 'qemu'].map((d) => newestMtime(join(root, d))),
    statSync(join(root, 'tsconfig.json')).mtimeMs, statSync(join(root, 'tsconfig.build.json')).mtimeMs);
  if (existsSync(out) && statSync(out).mtimeMs >= sources) return;
  say('building (tsc)...');
  const r = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
    { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('the TypeScript build failed: see the errors above');
}

/**
 * Debian packages the test suite drives for real: initiators, QEMU, the reference target, and
 * e2fsck for the VM tests (their guest image is built from .debs fetched with apt-get download).
 */
export const testPackages = ['libiscsi-bin', 'qemu-system-x86', 'qemu-utils', 'qemu-block-extra', 'ipxe-qemu', 'tgt', 'e2fsprogs'];

function installed(pkg) {
  try {
    const out = execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    return out.includes('install ok installed');
  } catch {
    return false;
  }
}

export function ensureDebianPackages(packages = testPackages) {
  const hasDpkg = spawnSync('dpkg-query', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!hasDpkg) throw new Error(`not a Debian system: install the equivalents of ${packages.join(' ')} yourself`);
  const missing = packages.filter((p) => !installed(p));
  if (missing.length === 0) return;
  const cmd = `apt-get update && apt-get install -y ${missing.join(' ')}`;
  if (process.getuid?.() !== 0) {
    throw new Error(`missing Debian packages: ${missing.join(' ')}\n  install them with: sudo sh -c '${cmd}'`);
  }
  say(`installing Debian packages: ${missing.join(' ')}...`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', ...missing]]) {
    const r = spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed; run: ${cmd}`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    if (process.argv.includes('--debian')) ensureDebianPackages();
    if (process.argv.includes('--build')) ensureBuild();
    else ensureNodeModules();
  } catch (err) {
    say(err.message);
    process.exit(1);
  }
}
