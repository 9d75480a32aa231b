// `npm test`: install what the suite needs (npm dependencies, Debian packages), then the type
// check, the linter and the whole mocha suite. Extra arguments go to mocha.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureBuild, ensureDebianPackages, root } from './ensure.mjs';

function run(label, cmd, args) {
  process.stderr.write(`\n== ${label}\n`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    process.stderr.write(`kura: ${label} failed\n`);
    process.exit(r.status ?? 1);
  }
}

try {
  ensureBuild();
  ensureDebianPackages();
} catch (err) {
  process.stderr.write(`kura: ${err.message}\n`);
  process.exit(1);
}
const bin = (name) => join(root, 'node_modules', '.bin', name);
run('type check', bin('tsc'), ['-p', 'tsconfig.json', '--noEmit']);
run('lint', bin('eslint'), ['.']);
// Unit tests first (milliseconds, simulated HAL), then the end-to-end ones with real initiators and QEMU.
const specs = ['firmware/**/*.test.ts', 'hal/**/*.test.ts', 'target/**/*.test.ts', 'cli/**/*.test.ts', 'bench/**/*.test.ts', 'test/**/*.test.ts'];
const args = process.argv.slice(2);
run('tests', bin('mocha'), args.some((a) => !a.startsWith('-')) ? args : [...args, ...specs]);
