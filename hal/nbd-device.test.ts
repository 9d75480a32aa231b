import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DeviceError } from './block-device.js';
import {
  connectNbd, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES,
} from './nbd-device.js';
import type { NbdDevice } from './nbd-device.js';
import { createImage, startStorageDaemon } from './qemu-storage-daemon.js';
import type { StorageDaemon } from './qemu-storage-daemon.js';

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 131 + seed * 17 + (i >> 12)) & 0xff;
  return b;
}

async function rejection(p: Promise<unknown>): Promise<DeviceError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(DeviceError);
    return err as DeviceError;
  }
  throw new Error('expected a rejection');
}

const MiB = 1 << 20;

for (const format of ['qcow2', 'raw'] as const) {
  describe(`NBD client against qemu-storage-daemon (${format})`, function () {
    this.timeout(60_000);
    let dir: string;
    let daemon: StorageDaemon | null;
    let dev: NbdDevice | null;
    const image = (): string => path.join(dir, `disk.${format}`);

    beforeEach(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kura-nbd-'));
      daemon = await startStorageDaemon({ image: image(), format, runDir: dir, size: 64 * MiB, exportName: 'disk0' });
      dev = await connectNbd({ socketPath: daemon.socketPath, exportName: 'disk0' });
    });
    afterEach(async () => {
      await dev?.close().catch(() => {});
      await daemon?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('negotiates the export: size, cache and discard flags', () => {
      const d = dev!;
      expect(d.size).to.equal(64 * MiB);
      for (const f of [NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES]) {
        expect(d.transmissionFlags & f, `flag ${f}`).to.equal(f);
      }
      expect(d.volatileCache).to.equal(true);
      expect(d.canDiscard).to.equal(true);
      expect(d.maxPayload).to.be.at.least(MiB);
      if (format === 'qcow2') {
        expect(JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', image()], { encoding: 'utf8' })).format).to.equal('qcow2');
      }
    });

    it('writes a pattern with many requests in flight and reads it back', async () => {
      const d = dev!;
      const blocks = Array.from({ length: 512 }, (_, i) => pattern(4096, i));
      const where = (i: number): number => ((i * 1237) % 16384) * 4096;
      await Promise.all(blocks.map((b, i) => d.write(where(i), b, { fua: i % 7 === 0 })));
      const back = blocks.map(() => Buffer.alloc(4096));
      await Promise.all(back.map((b, i) => d.read(where(i), b)));
      back.forEach((b, i) => expect(b.equals(blocks[i]), `block ${i}`).to.equal(true));
      // Unaligned, and larger than one payload: split into several requests.
      const big = pattern(d.maxPayload + 3 * MiB + 512, 99);
      await d.write(512, big);
      const bigBack = Buffer.alloc(big.length);
      await d.read(512, bigBack);
      expect(bigBack.equals(big)).to.equal(true);
      await d.flush();
    });

    it('keeps flushed and FUA data across a daemon crash', async () => {
      const data = pattern(256 * 1024, 7);
      await dev!.write(5 * MiB, data);
      await dev!.flush();
      await dev!.write(9 * MiB, data.subarray(0, 4096), { fua: true });
      // SIGKILL: for qcow2, new cluster mappings live in QEMU's metadata cache until a flush.
      await daemon!.kill();
      await dev!.close();
      dev = null;
      daemon = await startStorageDaemon({ image: image(), format, runDir: dir, exportName: 'disk0' });
      dev = await connectNbd({ socketPath: daemon.socketPath, exportName: 'disk0' });
      const back = Buffer.alloc(data.length);
      await dev.read(5 * MiB, back);
      expect(back.equals(data)).to.equal(true);
      const fua = Buffer.alloc(4096);
      await dev.read(9 * MiB, fua);
      expect(fua.equals(data.subarray(0, 4096))).to.equal(true);
    });

    it('discard zeroes the range and deallocates it; trim is accepted', async () => {
      const d = dev!;
      await d.write(0, pattern(16 * MiB, 3));
      await d.flush();
      const allocatedBefore = allocated(image(), format);
      await d.discard(2 * MiB, 8 * MiB);
      await d.discard(12 * MiB + 512, 1024);
      const back = Buffer.alloc(16 * MiB);
      await d.read(0, back);
      const expected = pattern(16 * MiB, 3);
      expected.fill(0, 2 * MiB, 10 * MiB);
      expected.fill(0, 12 * MiB + 512, 12 * MiB + 1536);
      expect(back.equals(expected)).to.equal(true);
      await d.flush();
      expect(allocatedBefore - allocated(image(), format)).to.be.at.least(7 * MiB);
      await d.trim(14 * MiB, MiB);
      await d.flush();
    });

    it('rejects I/O beyond the export locally with EINVAL', async () => {
      const e = await rejection(dev!.write(64 * MiB - 512, Buffer.alloc(1024)));
      expect([e.op, e.code]).to.deep.equal(['write', 'EINVAL']);
    });

    it('refuses an unknown export name during the handshake', async () => {
      try {
        await connectNbd({ socketPath: daemon!.socketPath, exportName: 'nope' });
        expect.fail('connected to a missing export');
      } catch (err) {
        expect((err as Error).message).to.match(/NBD_REP_ERR_UNKNOWN/);
      }
    });
  });
}

/** Bytes the image really holds: host allocation for raw, mapped data for qcow2. */
function allocated(image: string, format: 'qcow2' | 'raw'): number {
  if (format === 'raw') return fs.statSync(image).blocks * 512;
  const map = JSON.parse(execFileSync('qemu-img', ['map', '-U', '--output=json', '-f', 'qcow2', image], { encoding: 'utf8' })) as
    Array<{ length: number; data: boolean; zero: boolean }>;
  return map.filter((m) => m.data && !m.zero).reduce((n, m) => n + m.length, 0);
}

describe('createImage', () => {
  it('creates a qcow2 image of the given size', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kura-img-'));
    try {
      await createImage(path.join(dir, 'x.qcow2'), 'qcow2', 32 * MiB);
      const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', path.join(dir, 'x.qcow2')], { encoding: 'utf8' }));
      expect([info.format, info['virtual-size']]).to.deep.equal(['qcow2', 32 * MiB]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * A scripted NBD server: fixed-newstyle handshake, NBD_OPT_GO, then `onRequest` decides each reply.
 * Lets the tests produce what QEMU will not: server errors, out-of-order replies, a dropped link.
 */
function fakeServer(size: number, flags: number,
  onRequest: (req: { type: number; cookie: Buffer; offset: number; length: number }, reply: (error: number, data?: Buffer) => void, sock: net.Socket) => void,
): Promise<{ path: string; close(): void }> {
  const sockPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kura-fake-nbd-')), 's');
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    let phase: 'flags' | 'options' | 'transmission' = 'flags';
    const hello = Buffer.alloc(18);
    hello.write('NBDMAGICIHAVEOPT', 0, 'latin1');
    hello.writeUInt16BE(3, 16);
    sock.write(hello);
    sock.on('error', () => {});
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (phase === 'flags') {
          if (buf.length < 4) return;
          buf = buf.subarray(4);
          phase = 'options';
        } else if (phase === 'options') {
          if (buf.length < 16) return;
          const len = buf.readUInt32BE(12);
          if (buf.length < 16 + len) return;
          const opt = buf.readUInt32BE(8);
          buf = buf.subarray(16 + len);
          const rep = (type: number, data: Buffer): void => {
            const h = Buffer.alloc(20);
            h.writeBigUInt64BE(0x0003e889045565a9n, 0);
            h.writeUInt32BE(opt, 8);
            h.writeUInt32BE(type, 12);
            h.writeUInt32BE(data.length, 16);
            sock.write(Buffer.concat([h, data]));
          };
          const info = Buffer.alloc(12);
          info.writeUInt16BE(0, 0);
          info.writeBigUInt64BE(BigInt(size), 2);
          info.writeUInt16BE(flags, 10);
          rep(3, info);
          rep(1, Buffer.alloc(0));
          phase = 'transmission';
        } else {
          if (buf.length < 28) return;
          const type = buf.readUInt16BE(6);
          const length = buf.readUInt32BE(24);
          const payload = type === 1 ? length : 0;
          if (buf.length < 28 + payload) return;
          const req = { type, cookie: Buffer.from(buf.subarray(8, 16)), offset: Number(buf.readBigUInt64BE(16)), length };
          buf = buf.subarray(28 + payload);
          onRequest(req, (error, data) => {
            const h = Buffer.alloc(16);
            h.writeUInt32BE(0x67446698, 0);
            h.writeUInt32BE(error, 4);
            req.cookie.copy(h, 8);
            sock.write(data ? Buffer.concat([h, data]) : h);
          }, sock);
        }
      }
    });
  });
  return new Promise((resolve) => server.listen(sockPath, () => resolve({
    path: sockPath,
    close: () => { server.close(); fs.rmSync(path.dirname(sockPath), { recursive: true, force: true }); },
  })));
}

describe('NBD client protocol handling (scripted server)', () => {
  it('matches out-of-order replies by cookie and maps server errnos to DeviceError codes', async () => {
    const held: Array<() => void> = [];
    const srv = await fakeServer(MiB, 1 | NBD_FLAG_SEND_FLUSH, (req, reply) => {
      if (req.type === 0) {
        // Reads answer in reverse order, once all four arrived; data = offset's low byte.
        held.push(() => reply(0, Buffer.alloc(req.length, req.offset / 4096)));
        if (held.length === 4) held.reverse().forEach((f) => f());
      } else if (req.type === 1) {
        reply(req.offset === 0 ? 28 : 5);
      } else if (req.type === 3) {
        reply(1);
      }
    });
    const dev = await connectNbd({ socketPath: srv.path, exportName: 'x' });
    try {
      expect(dev.volatileCache).to.equal(true);
      expect(dev.canDiscard).to.equal(false);
      const bufs = [1, 2, 3, 4].map(() => Buffer.alloc(4096));
      await Promise.all(bufs.map((b, i) => dev.read((i + 1) * 4096, b)));
      bufs.forEach((b, i) => expect(b.every((x) => x === i + 1)).to.equal(true));
      const e1 = await rejection(dev.write(0, Buffer.alloc(512)));
      expect([e1.op, e1.code, e1.offset, e1.length]).to.deep.equal(['write', 'ENOSPC', 0, 512]);
      expect((await rejection(dev.write(512, Buffer.alloc(512)))).code).to.equal('EIO');
      const e3 = await rejection(dev.flush());
      expect([e3.op, e3.code]).to.deep.equal(['flush', 'EPERM']);
    } finally {
      await dev.close();
      srv.close();
    }
  });

  it('emulates FUA with a flush when the server has no FUA, and zeroes by writing without WRITE_ZEROES', async () => {
    const seen: number[] = [];
    const srv = await fakeServer(MiB, 1 | NBD_FLAG_SEND_FLUSH, (req, reply) => {
      seen.push(req.type);
      reply(0);
    });
    const dev = await connectNbd({ socketPath: srv.path, exportName: 'x' });
    try {
      await dev.write(0, Buffer.alloc(4096, 1), { fua: true });
      expect(seen).to.deep.equal([1, 3]);
      await dev.discard(0, 8192);
      expect(seen).to.deep.equal([1, 3, 1]);
    } finally {
      await dev.close();
      srv.close();
    }
  });

  it('fails every request in flight when the connection drops, and later ones too', async () => {
    const srv = await fakeServer(MiB, 1 | NBD_FLAG_SEND_FLUSH, (_req, _reply, sock) => {
      setImmediate(() => sock.destroy());
    });
    const dev = await connectNbd({ socketPath: srv.path, exportName: 'x' });
    try {
      const errs = await Promise.all([dev.read(0, Buffer.alloc(512)), dev.write(512, Buffer.alloc(512))].map(rejection));
      expect(errs.map((e) => e.op)).to.deep.equal(['read', 'write']);
      expect(errs.every((e) => e.code === 'ECONNRESET')).to.equal(true);
      expect((await rejection(dev.flush())).code).to.equal('ECONNRESET');
    } finally {
      await dev.close();
      srv.close();
    }
  });
});
