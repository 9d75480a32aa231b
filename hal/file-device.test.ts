import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DeviceError } from './block-device.js';
import type { BlockDevice } from './block-device.js';
import { blockDeviceSize, createZeroedFile, devNumbers, openFileDevice, parseSysfsSize } from './file-device.js';

type FdatasyncCb = (err: NodeJS.ErrnoException | null) => void;
const mutableFs = fs as unknown as { fdatasync: (fd: number, cb: FdatasyncCb) => void };
const realFdatasync = mutableFs.fdatasync;

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

async function rejection(p: Promise<unknown>): Promise<DeviceError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(DeviceError);
    return err as DeviceError;
  }
  throw new Error('expected a rejection');
}

/** The open flags of this process's fds on `file`, from /proc/self/fdinfo. */
function openFlags(file: string): number[] {
  const out: number[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== file) continue;
    const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    out.push(parseInt(/flags:\s*([0-7]+)/.exec(info)![1], 8));
  }
  return out;
}

describe('file device', () => {
  let dir: string;
  let devices: BlockDevice[];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kura-filedev-'));
    devices = [];
  });
  afterEach(async () => {
    mutableFs.fdatasync = realFdatasync;
    for (const d of devices) await d.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function open(name: string, opts: Parameters<typeof openFileDevice>[1]): Promise<BlockDevice> {
    const d = await openFileDevice(path.join(dir, name), opts);
    devices.push(d);
    return d;
  }

  it('creates a sparse file of the requested size with a volatile cache', async () => {
    const dev = await open('a.img', { size: 64 << 20, create: true });
    expect(dev.size).to.equal(64 << 20);
    expect(dev.volatileCache).to.equal(true);
    expect(dev.canDiscard).to.equal(true); // ext4/tmpfs/xfs punch holes
    const st = fs.statSync(path.join(dir, 'a.img'));
    expect(st.size).to.equal(64 << 20);
    expect(st.blocks * 512).to.be.lessThan(1 << 20);
    expect(openFlags(path.join(dir, 'a.img'))[0] & fs.constants.O_DSYNC).to.equal(0);
  });

  it('never shrinks an existing file and takes its size when none is given', async () => {
    fs.writeFileSync(path.join(dir, 'b.img'), pattern(8192, 1));
    const dev = await open('b.img', {});
    expect(dev.size).to.equal(8192);
    await dev.close();
    const bigger = await open('b.img', { size: 4096, create: true });
    expect(bigger.size).to.equal(4096);
    expect(fs.statSync(path.join(dir, 'b.img')).size).to.equal(8192);
  });

  it('reads back what was written, at any offset and length', async () => {
    const dev = await open('c.img', { size: 4 << 20, create: true });
    const data = pattern(300_000, 2);
    await dev.write(12_345, data);
    const back = Buffer.alloc(data.length);
    await dev.read(12_345, back);
    expect(back.equals(data)).to.equal(true);
    const part = Buffer.alloc(777);
    await dev.read(12_345 + 1000, part);
    expect(part.equals(data.subarray(1000, 1777))).to.equal(true);
    const head = Buffer.alloc(512, 0xaa);
    await dev.read(0, head);
    expect(head.every((x) => x === 0)).to.equal(true);
  });

  it('keeps many concurrent writes and reads apart', async () => {
    const dev = await open('d.img', { size: 8 << 20, create: true });
    const blocks = Array.from({ length: 256 }, (_, i) => pattern(4096, i));
    await Promise.all(blocks.map((b, i) => dev.write(((i * 97) % 2048) * 4096, b)));
    const reads = blocks.map(() => Buffer.alloc(4096));
    await Promise.all(reads.map((b, i) => dev.read(((i * 97) % 2048) * 4096, b)));
    reads.forEach((b, i) => expect(b.equals(blocks[i]), `block ${i}`).to.equal(true));
  });

  it('reads zeroes past the end of a regular file that was not extended', async () => {
    fs.writeFileSync(path.join(dir, 'e.img'), Buffer.alloc(1000, 0x55));
    const dev = await open('e.img', { size: 1 << 20 });
    const buf = Buffer.alloc(3000, 0xff);
    await dev.read(0, buf);
    expect(buf.subarray(0, 1000).every((x) => x === 0x55)).to.equal(true);
    expect(buf.subarray(1000).every((x) => x === 0)).to.equal(true);
    await dev.read(500_000, buf);
    expect(buf.every((x) => x === 0)).to.equal(true);
  });

  it('rejects I/O outside the device with EINVAL', async () => {
    const dev = await open('f.img', { size: 1 << 20, create: true });
    const e1 = await rejection(dev.read((1 << 20) - 100, Buffer.alloc(200)));
    expect([e1.op, e1.code, e1.offset, e1.length]).to.deep.equal(['read', 'EINVAL', (1 << 20) - 100, 200]);
    const e2 = await rejection(dev.write(-512, Buffer.alloc(512)));
    expect([e2.op, e2.code]).to.deep.equal(['write', 'EINVAL']);
    const e3 = await rejection(dev.discard(0, (1 << 20) + 1));
    expect([e3.op, e3.code]).to.deep.equal(['discard', 'EINVAL']);
  });

  it('fails writes and discards on a read-only open with EBADF, and opening a missing file with ENOENT', async () => {
    fs.writeFileSync(path.join(dir, 'ro.img'), pattern(1 << 20, 3));
    const dev = await open('ro.img', { readOnly: true });
    expect(dev.volatileCache).to.equal(false);
    const back = Buffer.alloc(4096);
    await dev.read(4096, back);
    expect(back.equals(pattern(1 << 20, 3).subarray(4096, 8192))).to.equal(true);
    const w = await rejection(dev.write(0, Buffer.alloc(4096, 1)));
    expect([w.op, w.code, w.offset, w.length]).to.deep.equal(['write', 'EBADF', 0, 4096]);
    const d = await rejection(dev.discard(0, 4096));
    expect([d.op, d.code]).to.deep.equal(['discard', 'EBADF']);
    expect(fs.readFileSync(path.join(dir, 'ro.img')).equals(pattern(1 << 20, 3))).to.equal(true);
    try {
      await openFileDevice(path.join(dir, 'missing.img'), { size: 4096 });
      expect.fail('opened a missing file');
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).to.equal('ENOENT');
    }
  });

  it('flush and FUA call fdatasync; concurrent requests share one, later ones get a new one', async () => {
    const dev = await open('g.img', { size: 1 << 20, create: true });
    const pending: FdatasyncCb[] = [];
    mutableFs.fdatasync = (_fd, cb) => { pending.push(cb); };
    const done: string[] = [];
    const a = dev.flush().then(() => done.push('a'));
    await settle();
    expect(pending).to.have.length(1);
    // Arrive while sync #1 runs: #1 may have started before their writes, so they wait for #2.
    const b = dev.flush().then(() => done.push('b'));
    const c = dev.flush().then(() => done.push('c'));
    await settle();
    expect(pending).to.have.length(1);
    pending[0](null);
    await a;
    await settle();
    expect(done).to.deep.equal(['a']);
    expect(pending).to.have.length(2);
    const d = dev.flush().then(() => done.push('d'));
    await settle();
    expect(pending).to.have.length(2);
    pending[1](null);
    await Promise.all([b, c]);
    await settle();
    expect(done).to.deep.equal(['a', 'b', 'c']);
    expect(pending).to.have.length(3);
    pending[2](null);
    await d;

    // FUA: the data goes out first, then an fdatasync of its own.
    const e = dev.write(0, Buffer.alloc(512, 9), { fua: true }).then(() => done.push('e'));
    for (let i = 0; i < 1000 && pending.length < 4; i++) await settle();
    expect(pending).to.have.length(4);
    const f = dev.flush().then(() => done.push('f'));
    await settle();
    expect(pending).to.have.length(4);
    pending[3](null);
    await e;
    await settle();
    expect(done).to.not.include('f');
    expect(pending).to.have.length(5);
    pending[4](null);
    await f;
    // A plain write needs no sync at all.
    await dev.write(512, Buffer.alloc(512, 1));
    expect(pending).to.have.length(5);
    mutableFs.fdatasync = realFdatasync;
  });

  it('inlineSync: an urgent flush runs fdatasync on the loop, any other on the threadpool', async () => {
    const dev = await open('u.img', { size: 1 << 20, create: true, inlineSync: true });
    let pooled = 0;
    mutableFs.fdatasync = (fd, cb) => { pooled++; realFdatasync(fd, cb); };
    await dev.write(0, pattern(4096, 1));
    await dev.flush();
    expect(pooled).to.equal(1);
    await dev.write(4096, pattern(4096, 2));
    await dev.flush({ urgent: true });
    expect(pooled).to.equal(1);
    // Without inlineSync, urgent or not: the threadpool.
    const plain = await open('v.img', { size: 1 << 20, create: true });
    await plain.flush({ urgent: true });
    expect(pooled).to.equal(2);
    mutableFs.fdatasync = realFdatasync;
  });

  it('makes a zeroed (written, not sparse) file durably', async () => {
    const file = path.join(dir, 'z.img');
    await createZeroedFile(file, 3 << 20);
    const st = fs.statSync(file);
    expect(st.size).to.equal(3 << 20);
    expect(st.blocks * 512).to.be.at.least(3 << 20);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('z.img.'))).to.deep.equal([]);
  });

  it('stays failed after an fdatasync error instead of trusting the next one', async () => {
    const dev = await open('h.img', { size: 1 << 20, create: true });
    let calls = 0;
    mutableFs.fdatasync = (_fd, cb) => {
      calls++;
      const err = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: calls === 1 ? 'EIO' : undefined });
      setImmediate(() => cb(calls === 1 ? err : null));
    };
    const e1 = await rejection(dev.flush());
    expect([e1.op, e1.code]).to.deep.equal(['flush', 'EIO']);
    const e2 = await rejection(dev.flush());
    expect(e2.code).to.equal('EIO');
    const e3 = await rejection(dev.write(4096, Buffer.alloc(4096), { fua: true }));
    expect([e3.op, e3.code, e3.offset, e3.length]).to.deep.equal(['write', 'EIO', 4096, 4096]);
    mutableFs.fdatasync = realFdatasync;
    devices.pop();
    await rejection(dev.close());
  });

  it('with writeCache=false opens O_DSYNC, reports no volatile cache and never calls fdatasync', async () => {
    const dev = await open('i.img', { size: 1 << 20, create: true, writeCache: false });
    expect(dev.volatileCache).to.equal(false);
    const flags = openFlags(path.join(dir, 'i.img'));
    expect(flags).to.have.length(1);
    expect(flags[0] & fs.constants.O_DSYNC).to.equal(fs.constants.O_DSYNC);
    let calls = 0;
    mutableFs.fdatasync = (fd, cb) => { calls++; realFdatasync(fd, cb); };
    const data = pattern(65536, 4);
    await dev.write(8192, data, { fua: true });
    await dev.flush();
    const back = Buffer.alloc(data.length);
    await dev.read(8192, back);
    expect(back.equals(data)).to.equal(true);
    expect(calls).to.equal(0);
  });

  it('punches a hole for every discard (fallocate through libc) and reports what is allocated', async () => {
    const file = path.join(dir, 'h.img');
    const dev = await open('h.img', { size: 16 << 20, create: true });
    expect(dev.canDiscard).to.equal(true);
    expect(await dev.allocated!(0, 16 << 20)).to.deep.equal([]);
    await dev.write(0, pattern(16 << 20, 5));
    await dev.flush();
    expect(await dev.allocated!(4096, 8192)).to.deep.equal([[4096, 12288]]);
    const before = fs.statSync(file).blocks;
    await dev.discard(8192, 4096); // one file system block
    await dev.discard(1000, 2000); // inside a block: zeroed, nothing to free
    await dev.discard(4 << 20, 8 << 20);
    expect((before - fs.statSync(file).blocks) * 512).to.equal((8 << 20) + 4096);
    expect(await dev.allocated!(0, 16 << 20)).to.deep.equal([[0, 8192], [12288, 4 << 20], [12 << 20, 16 << 20]]);
    expect(await dev.allocated!(5 << 20, 4096)).to.deep.equal([]);
    const all = Buffer.alloc(16 << 20);
    await dev.read(0, all);
    const expected = pattern(16 << 20, 5);
    expected.fill(0, 1000, 3000);
    expected.fill(0, 8192, 12288);
    expected.fill(0, 4 << 20, 12 << 20);
    expect(all.equals(expected)).to.equal(true);
  });

  it('makes a hole durable with fdatasync on an O_DSYNC file (fallocate is not a write)', async () => {
    const dev = await open('s.img', { size: 1 << 20, create: true, writeCache: false });
    await dev.write(0, pattern(1 << 20, 2));
    let calls = 0;
    mutableFs.fdatasync = (fd, cb) => { calls++; realFdatasync(fd, cb); };
    await dev.discard(0, 1 << 20);
    expect(calls).to.equal(1);
  });

  it('without hole punching: canDiscard=false, small ranges written with zeroes, large ones punched by fallocate(1)', async () => {
    const file = path.join(dir, 'j.img');
    const dev = await open('j.img', { size: 16 << 20, create: true, punchHoleThreshold: 1 << 20, punchHoles: false });
    expect(dev.canDiscard).to.equal(false);
    expect(await dev.allocated!(0, 4096)).to.deep.equal([[0, 4096]]);
    await dev.write(0, pattern(16 << 20, 5));
    await dev.flush();
    const before = fs.statSync(file).blocks;
    await dev.discard(1000, 3000);
    await dev.discard(4 << 20, 8 << 20);
    const after = fs.statSync(file).blocks;
    expect((before - after) * 512).to.be.at.least(7 << 20);
    const all = Buffer.alloc(16 << 20);
    await dev.read(0, all);
    const expected = pattern(16 << 20, 5);
    expected.fill(0, 1000, 4000);
    expected.fill(0, 4 << 20, 12 << 20);
    expect(all.equals(expected)).to.equal(true);
  });

  it('fails every operation after close with EBADF, and close flushes', async () => {
    const dev = await open('k.img', { size: 1 << 20, create: true });
    let calls = 0;
    mutableFs.fdatasync = (fd, cb) => { calls++; realFdatasync(fd, cb); };
    await dev.write(0, Buffer.alloc(4096, 1));
    await dev.close();
    expect(calls).to.equal(1);
    for (const p of [dev.read(0, Buffer.alloc(1)), dev.write(0, Buffer.alloc(1)), dev.flush(), dev.discard(0, 1)]) {
      expect((await rejection(p)).code).to.equal('EBADF');
    }
  });
});

describe('block device size', () => {
  it('parses sysfs sizes as 512-byte sectors', () => {
    expect(parseSysfsSize('2097152\n')).to.equal(1 << 30);
    expect(parseSysfsSize('0')).to.equal(0);
    expect(() => parseSysfsSize('abc')).to.throw();
    expect(() => parseSysfsSize('')).to.throw();
  });

  it('splits device numbers like glibc', () => {
    expect(devNumbers(0x0fd00)).to.deep.equal({ major: 253, minor: 0 });
    expect(devNumbers(0x0801)).to.deep.equal({ major: 8, minor: 1 });
    // makedev(259, 300): minor bits above 8 live at bit 20.
    const dev = (259n << 8n) | (300n & 0xffn) | ((300n & ~0xffn) << 12n);
    expect(devNumbers(dev)).to.deep.equal({ major: 259, minor: 300 });
    const big = ((0x1234n & 0xfffn) << 8n) | ((0x1234n & ~0xfffn) << 32n) | 5n;
    expect(devNumbers(big)).to.deep.equal({ major: 0x1234, minor: 5 });
  });

  it('reads /sys/dev/block/MAJ:MIN/size', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kura-sysfs-'));
    try {
      fs.mkdirSync(path.join(root, 'dev/block/7:3'), { recursive: true });
      fs.writeFileSync(path.join(root, 'dev/block/7:3/size'), '20480\n');
      expect(await blockDeviceSize('/dev/loop3', (7 << 8) | 3, root)).to.equal(20480 * 512);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
