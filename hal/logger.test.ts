import { expect } from 'chai';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const loggerModule = fileURLToPath(new URL('./logger.ts', import.meta.url));

/** Runs a node that logs a line per millisecond for half a second, then exits; its log goes to `logPath`. */
function logFor500ms(logPath: string): Promise<{ code: number | null; stderr: string; ms: number }> {
  const code = `
    const { createLogger } = await import(${JSON.stringify(loggerModule)});
    const log = createLogger({ name: 'test' });
    let i = 0;
    const t = setInterval(() => { log.info({ i: i++, pad: 'x'.repeat(200) }, 'line'); }, 1);
    setTimeout(() => { clearInterval(t); process.stderr.write('ticks ' + i + '\\n'); process.exit(0); }, 500);
  `;
  const out = fs.openSync(logPath, 'w');
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', out, 'pipe'] });
  fs.closeSync(out);
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 15000);
    child.on('exit', (c) => {
      clearTimeout(killer);
      resolve({ code: c, stderr, ms: Date.now() - started });
    });
  });
}

describe('logger', function () {
  this.timeout(30000);

  it('a log that cannot be written (a full disk: /dev/full) neither stops the node nor keeps it from exiting', async () => {
    const r = await logFor500ms('/dev/full');
    // Before: the first failed write became an uncaught error, and pino's exit hook retried the
    // flush every 100 ms for good (killed here after 15 s, code null).
    expect(r.code, r.stderr).to.equal(0);
    const ticks = Number(/ticks (\d+)/.exec(r.stderr)?.[1]);
    expect(ticks, 'the event loop kept running').to.be.greaterThan(50);
  });

  it('writes every line when the log can be written', async () => {
    const file = `${fs.mkdtempSync('/tmp/kura-logger-')}/node.log`;
    const r = await logFor500ms(file);
    expect(r.code, r.stderr).to.equal(0);
    const ticks = Number(/ticks (\d+)/.exec(r.stderr)?.[1]);
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { i: number; name: string });
    expect(lines).to.have.length(ticks);
    expect(lines.at(-1)).to.include({ i: ticks - 1, name: 'test' });
  });
});
