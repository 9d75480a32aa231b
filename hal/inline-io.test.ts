import { expect } from 'chai';
import fs from 'node:fs';
import { join } from 'node:path';
import { FileIoPath } from './inline-io.js';
import { tempDir } from '../test/support/kura-process.js';

function io(path: FileIoPath, fd: number, op: 'read' | 'write', buf: Buffer, pos: number): Promise<number> {
  return new Promise((resolve, reject) => path[op](fd, buf, 0, buf.length, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

describe('file I/O path (inline while fast, threadpool when slow)', () => {
  let fd: number;
  before(() => {
    fd = fs.openSync(join(tempDir(), 'f'), 'w+');
  });
  after(() => fs.closeSync(fd));

  it('moves to the threadpool after a slow inline call and probes inline again after the back-off', async () => {
    let t = 0;
    let slowNext = false;
    const path = new FileIoPath('auto', { slowMs: 2, backoffMs: 1000, now: () => (slowNext ? (t += 5) : t) });
    await io(path, fd, 'write', Buffer.from('abcd'), 0);
    expect([path.inlineCalls, path.poolCalls]).to.deep.equal([1, 0]);
    slowNext = true; // this call "takes" 5 ms
    await io(path, fd, 'write', Buffer.from('efgh'), 4);
    slowNext = false;
    expect(path.demotions).to.equal(1);
    const buf = Buffer.alloc(8);
    expect(await io(path, fd, 'read', buf, 0)).to.equal(8);
    expect(buf.toString()).to.equal('abcdefgh');
    expect([path.inlineCalls, path.poolCalls]).to.deep.equal([2, 1]);
    t += 1000;
    await io(path, fd, 'read', buf, 0);
    expect([path.inlineCalls, path.poolCalls]).to.deep.equal([3, 1]);
  });

  it('fdatasync: inline only when asked, with its own slow threshold and back-off', async () => {
    let t = 0;
    let slowNext = false;
    const path = new FileIoPath('auto', { slowMs: 2, syncSlowMs: 10, backoffMs: 1000, now: () => (slowNext ? (t += 5) : t) });
    const sync = (inline: boolean) => new Promise<void>((resolve, reject) => path.fdatasync(fd, inline, (err) => (err ? reject(err) : resolve())));
    await sync(false);
    expect([path.inlineCalls, path.poolCalls]).to.deep.equal([0, 0]); // not asked: plain threadpool, not counted
    slowNext = true; // 5 ms: slow for a read or write, not for a sync
    await sync(true);
    slowNext = false;
    expect([path.inlineCalls, path.demotions]).to.deep.equal([1, 0]);
    // Reads and writes still inline.
    await io(path, fd, 'write', Buffer.from('ab'), 0);
    expect(path.inlineCalls).to.equal(2);
  });

  it('never runs large transfers or threadpool mode inline, and reports errors the same way', async () => {
    const auto = new FileIoPath('auto', { maxInlineBytes: 4096 });
    await io(auto, fd, 'write', Buffer.alloc(8192), 0);
    expect([auto.inlineCalls, auto.poolCalls]).to.deep.equal([0, 1]);
    const pool = new FileIoPath('threadpool');
    await io(pool, fd, 'read', Buffer.alloc(16), 0);
    expect(pool.inlineCalls).to.equal(0);
    const inline = new FileIoPath('inline');
    const dirFd = fs.openSync(tempDir(), 'r');
    try {
      const err = await io(inline, dirFd, 'read', Buffer.alloc(16), 0).catch((e: NodeJS.ErrnoException) => e);
      expect((err as NodeJS.ErrnoException).code).to.equal('EISDIR');
    } finally {
      fs.closeSync(dirFd);
    }
  });
});
