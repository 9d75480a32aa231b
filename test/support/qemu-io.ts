import { expect } from 'chai';
import { run } from './kura-process.js';

/** Run qemu-io commands through QEMU's iSCSI driver; fails the test on any error or pattern mismatch. */
export async function qemuIo(url: string, commands: string[]): Promise<string> {
  const args = ['-f', 'raw', '-t', 'none'];
  for (const c of commands) args.push('-c', c);
  args.push(url);
  const r = await run('qemu-io', args, { timeoutMs: 60000 });
  const out = r.stdout + r.stderr;
  expect(r.code, out).to.equal(0);
  expect(out, out).to.not.match(/fail|error|mismatch/i);
  return out;
}
