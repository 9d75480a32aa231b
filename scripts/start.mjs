// `npm start`: install and build if needed, then run kura's default topology in the foreground
// (`kura up`: topologies/default.yaml). `npm start -- <command> ...` runs any other kura command.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ensureBuild, root } from './ensure.mjs';

try {
  ensureBuild();
} catch (err) {
  process.stderr.write(`kura: ${err.message}\n`);
  process.exit(1);
}
const args = process.argv.slice(2);
const child = spawn(process.execPath, [join(root, 'dist', 'cli', 'kura.js'), ...(args.length ? args : ['up'])], { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
