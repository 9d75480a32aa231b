/**
 * Debian packages as build inputs, through apt's ordinary clients only: `apt-cache show` for the
 * candidate version and dependencies, `apt-get download` into a cache directory (no installation,
 * works as root and as a user), `dpkg-deb -x` to unpack.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface DebPackage {
  name: string;
  version: string;
  architecture: string;
  sha256: string;
  /** Package names from Pre-Depends and Depends; of each alternative group only the first. */
  depends: string[];
}

export class AptError extends Error {}

function tool(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, encoding: 'utf8', maxBuffer: 64 * 2 ** 20, env: { ...process.env, LC_ALL: 'C' } });
  if (r.error) throw new AptError(`${cmd} is not available (${r.error.message}): the guest image is built from Debian packages with apt`);
  if (r.status !== 0) throw new AptError(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr.trim()}`);
  return r.stdout;
}

function parseDepends(field: string | undefined): string[] {
  if (!field) return [];
  return field.split(',').map((group) => group.split('|')[0]!.trim().split(/[\s(:]/)[0]!).filter(Boolean);
}

function parseRecords(text: string): DebPackage[] {
  const out: DebPackage[] = [];
  for (const block of text.split(/\n\n+/)) {
    const fields = new Map<string, string>();
    let last = '';
    for (const line of block.split('\n')) {
      if (/^\s/.test(line) && last) fields.set(last, `${fields.get(last)} ${line.trim()}`);
      else {
        const m = /^([A-Za-z0-9-]+):\s?(.*)$/.exec(line);
        if (m) fields.set((last = m[1]!), m[2]!);
      }
    }
    const name = fields.get('Package');
    if (!name) continue;
    out.push({
      name,
      version: fields.get('Version') ?? '',
      architecture: fields.get('Architecture') ?? '',
      sha256: fields.get('SHA256') ?? '',
      depends: [...parseDepends(fields.get('Pre-Depends')), ...parseDepends(fields.get('Depends'))],
    });
  }
  return out;
}

/** The candidate (the version `apt-get install` would pick) of each package, in one apt-cache call. */
export function candidates(names: string[]): Map<string, DebPackage> {
  const out = new Map<string, DebPackage>();
  if (names.length === 0) return out;
  let text: string;
  try {
    text = tool('apt-cache', ['show', '--no-all-versions', ...names]);
  } catch (err) {
    throw new AptError(`${(err as Error).message}\n  (is the package list current? run: apt-get update)`);
  }
  for (const p of parseRecords(text)) if (!out.has(p.name)) out.set(p.name, p);
  for (const n of names) if (!out.has(n)) throw new AptError(`apt knows no package "${n}" (run: apt-get update)`);
  return out;
}

/** A metapackage's concrete package: linux-image-amd64 -> linux-image-6.1.0-NN-amd64. */
export function concretePackage(meta: string, prefix: string): string {
  const p = candidates([meta]).get(meta)!;
  const dep = p.depends.find((d) => d.startsWith(prefix));
  return dep ?? meta;
}

/** Every package reachable through Pre-Depends / Depends whose name matches `filter`, with the roots. */
export function dependencyClosure(roots: string[], filter: (name: string) => boolean): string[] {
  const text = tool('apt-cache', ['depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts',
    '--no-breaks', '--no-replaces', '--no-enhances', ...roots]);
  const names = new Set(roots);
  for (const line of text.split('\n')) if (/^[a-z0-9]/.test(line) && filter(line.trim())) names.add(line.trim());
  return [...names].sort();
}

/**
 * Changes whenever apt's answer about candidates could: package lists (apt-get update), sources,
 * pinning, installed packages. Lets a caller cache what it resolved from apt-cache.
 */
export function aptFingerprint(): string {
  const h = createHash('sha256');
  const add = (path: string) => {
    try {
      const st = statSync(path);
      // A directory by its files only; apt's lock and download area change on every run.
      if (st.isDirectory()) {
        for (const f of readdirSync(path).sort()) if (!['lock', 'partial', 'auxfiles'].includes(f)) add(join(path, f));
      } else h.update(`${path} ${st.size} ${st.mtimeMs}\n`);
    } catch {
      h.update(`${path} -\n`);
    }
  };
  for (const p of ['/var/lib/apt/lists', '/etc/apt/sources.list', '/etc/apt/sources.list.d', '/etc/apt/preferences',
    '/etc/apt/preferences.d', '/etc/apt/apt.conf.d', '/var/lib/dpkg/status']) add(p);
  return h.digest('hex');
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path).on('data', (d) => h.update(d)).on('error', reject).on('end', () => resolve(h.digest('hex')));
  });
}

/** The file name apt-get download gives this package version. */
export function debFileName(pkg: DebPackage): string {
  return `${pkg.name}_${pkg.version.replace(/:/g, '%3a')}_${pkg.architecture}.deb`;
}

function debFile(pkg: DebPackage, cacheDir: string): string {
  return join(cacheDir, debFileName(pkg));
}

/**
 * The .debs of exactly these versions in `cacheDir`, downloaded if missing (one apt-get call for
 * all of them) and checked against the archive's SHA256. Returns the files in the given order.
 */
export async function download(pkgs: DebPackage[], cacheDir: string): Promise<string[]> {
  mkdirSync(cacheDir, { recursive: true });
  const missing: DebPackage[] = [];
  for (const p of pkgs) {
    const file = debFile(p, cacheDir);
    if (!existsSync(file) || (p.sha256 && await sha256File(file) !== p.sha256)) missing.push(p);
  }
  if (missing.length > 0) {
    // Download into a private directory, then rename: concurrent builders never see half a file.
    const tmp = join(cacheDir, `.dl-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    try {
      try {
        tool('apt-get', ['download', '-q', ...missing.map((p) => `${p.name}=${p.version}`)], { cwd: tmp });
      } catch (err) {
        throw new AptError(`${(err as Error).message}\n  (a stale package list gives 404s: run apt-get update)`);
      }
      for (const p of missing) {
        const name = basename(debFile(p, cacheDir));
        if (!existsSync(join(tmp, name))) throw new AptError(`apt-get download ${p.name}=${p.version} did not leave ${name}`);
        // apt-get checked the archive's hash while downloading.
        renameSync(join(tmp, name), join(cacheDir, name));
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return pkgs.map((p) => debFile(p, cacheDir));
}

/**
 * As root, refresh the package lists (`apt-get update`), once per process: a fresh machine or a
 * stale list (404s after a security update) then still builds. Returns false when not allowed.
 */
let updated = false;
export function aptUpdateOnce(log: (m: string) => void): boolean {
  if (updated || process.getuid?.() !== 0) return false;
  updated = true;
  log('refreshing the package lists (apt-get update)');
  tool('apt-get', ['update', '-q']);
  return true;
}

/** Unpack a .deb's file system tree (no maintainer scripts run). */
export function extract(deb: string, dir: string): void {
  mkdirSync(dir, { recursive: true });
  tool('dpkg-deb', ['-x', deb, dir]);
}
