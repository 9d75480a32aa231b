import { crc32c } from '@node-rs/crc32';
import { expect } from 'chai';
import fc from 'fast-check';
import {
  ANY_VOLUME, ErrorCode, Flag, FrameType, MAX_HEADER_LENGTH, encodeFrame, encodeFrameBuffer, headerLengthOf, type Frame, type FrameInit,
} from './frame.js';
import { FrameDecoder, type DecodeEvent } from './frame-decoder.js';

const nonce = (b: number): Buffer => Buffer.alloc(32, b);

/** One frame of every type, with every field set. */
const SAMPLES: FrameInit[] = [
  { type: FrameType.HELLO, sourceUnit: 7, flags: Flag.PIPELINED, versionMin: 1, versionMax: 1, maxPayload: 65536, windowBytes: 1 << 22, windowCommands: 64, payload: nonce(1) },
  { type: FrameType.CHALLENGE, sourceUnit: 9, version: 1, maxPayload: 4096, windowBytes: 1 << 20, windowCommands: 8, payload: Buffer.concat([nonce(2), nonce(3)]) },
  { type: FrameType.RESPONSE, sourceUnit: 7, payload: nonce(4) },
  { type: FrameType.WELCOME, sourceUnit: 9 },
  {
    type: FrameType.WRITE_COMMAND, sourceUnit: 11, issue: 2 ** 40 + 5, tag: 0xfffffffe, flags: Flag.FUA | Flag.ACK_DURABLE | Flag.PIPELINED,
    volume: 3, blocks: 16, lba: 2 ** 45 + 123, totalLength: 8192 * 5, portionOffset: 8192, length: 8192, forwardTo: 12,
  },
  { type: FrameType.PREPARATION_COMPLETE, sourceUnit: 11, issue: 5, tag: 1 },
  { type: FrameType.DATA, sourceUnit: 11, issue: 5, tag: 1, offset: 4096, payload: Buffer.from('hello, relay') },
  { type: FrameType.RECEPTION_COMPLETE, sourceUnit: 11, issue: 5, tag: 1, flags: Flag.DURABLE, releasedBytes: 2 ** 50, releasedCommands: 77 },
  { type: FrameType.CREDIT, sourceUnit: 9, releasedBytes: 123456, releasedCommands: 9 },
  { type: FrameType.READ_COMMAND, sourceUnit: 11, issue: 6, tag: 2, volume: 1, blocks: 8, lba: 99 },
  { type: FrameType.COPY_COMMAND, sourceUnit: 11, issue: 7, tag: 3, volume: 1, blocks: 8, lba: 99, destUnit: 12, destVolume: 2, destLba: 2 ** 33 },
  { type: FrameType.PULL, sourceUnit: 12, maxBytes: 1 << 20, maxCommands: 10, volume: ANY_VOLUME },
  { type: FrameType.HEARTBEAT, sourceUnit: 9, flags: Flag.REPLY, nonce: 0xdeadbeef },
  { type: FrameType.ERROR, sourceUnit: 9, issue: 5, tag: 1, code: ErrorCode.WRITE_FAILED, payload: Buffer.from('medium error at LBA 99') },
];

function decodeAll(dec: FrameDecoder, bytes: Buffer, chunks: number[] = [bytes.length]): DecodeEvent[] {
  const out: DecodeEvent[] = [];
  let at = 0;
  for (const n of chunks) {
    dec.push(bytes.subarray(at, at + n));
    at += n;
    for (let ev = dec.next(); ev; ev = dec.next()) out.push(ev);
  }
  if (at < bytes.length) {
    dec.push(bytes.subarray(at));
    for (let ev = dec.next(); ev; ev = dec.next()) out.push(ev);
  }
  return out;
}

function expectMatches(frame: Frame, init: FrameInit, seq: number): void {
  expect(frame.seq).to.equal(seq);
  expect(frame.version).to.equal(1);
  for (const [k, v] of Object.entries(init)) {
    if (k === 'payload') expect(Buffer.compare(frame.payload, v as Buffer)).to.equal(0, 'payload');
    else expect((frame as unknown as Record<string, unknown>)[k], k).to.equal(v);
  }
  expect(frame.flags).to.equal(init.flags ?? 0);
  expect(frame.issue).to.equal(init.issue ?? 0);
  expect(frame.tag).to.equal(init.tag ?? 0);
  if (init.payload === undefined) expect(frame.payload.length).to.equal(0);
}

/** Recompute the header CRC after editing header bytes (to reach checks behind it). */
function reseal(buf: Buffer): Buffer {
  const hlen = buf.readUInt16BE(8);
  buf.writeUInt32BE(crc32c(buf.subarray(0, hlen - 4)) >>> 0, hlen - 4);
  return buf;
}

function firstError(bytes: Buffer, maxPayload = 1 << 16): DecodeEvent & { kind: 'error' } {
  const dec = new FrameDecoder({ maxPayload });
  const evs = decodeAll(dec, bytes);
  const err = evs.find((e) => e.kind === 'error');
  expect(err, 'an error event').to.not.equal(undefined);
  return err as DecodeEvent & { kind: 'error' };
}

describe('peer frames: codec', () => {
  it('round-trips every frame type with every field', () => {
    const wire = Buffer.concat(SAMPLES.map((f, i) => encodeFrameBuffer(f, i + 1000)));
    const evs = decodeAll(new FrameDecoder({ maxPayload: 1 << 16 }), wire);
    expect(evs.map((e) => e.kind)).to.deep.equal(SAMPLES.map(() => 'frame'));
    evs.forEach((e, i) => expectMatches((e as { frame: Frame }).frame, SAMPLES[i]!, i + 1000));
  });

  it('keeps the payload out of the header buffer (no copy on encode)', () => {
    const payload = Buffer.alloc(5000, 7);
    const parts = encodeFrame({ type: FrameType.DATA, offset: 0, tag: 1, payload }, 0);
    expect(parts).to.have.length(2);
    expect(parts[0]!.length).to.equal(headerLengthOf(FrameType.DATA));
    expect(parts[1]).to.equal(payload);
  });

  it('refuses to encode out-of-range fields', () => {
    expect(() => encodeFrame({ type: FrameType.DATA, offset: 2 ** 32, payload: Buffer.alloc(1) }, 0)).to.throw(RangeError, /offset/);
    expect(() => encodeFrame({ type: FrameType.WRITE_COMMAND, issue: 2 ** 53, volume: 0, blocks: 1, lba: 0, totalLength: 1, portionOffset: 0, length: 1, forwardTo: 0 }, 0)).to.throw(RangeError, /issue/);
    expect(() => encodeFrame({ type: FrameType.HEARTBEAT, nonce: -1 }, 0)).to.throw(RangeError, /nonce/);
  });

  it('frames correctly from any chunk boundaries (property)', () => {
    const wire = Buffer.concat(SAMPLES.map((f, i) => encodeFrameBuffer(f, i)));
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 97 }), { minLength: 1, maxLength: 200 }), (cuts) => {
      const evs = decodeAll(new FrameDecoder({ maxPayload: 1 << 16 }), wire, cuts);
      expect(evs.length).to.equal(SAMPLES.length);
      evs.forEach((e, i) => {
        expect(e.kind).to.equal('frame');
        expectMatches((e as { frame: Frame }).frame, SAMPLES[i]!, i);
      });
    }), { numRuns: 300 });
  });

  it('round-trips random DATA and WRITE_COMMAND frames byte by byte (property)', () => {
    const arb = fc.record({
      issue: fc.maxSafeNat(), tag: fc.nat({ max: 0xffffffff }), unit: fc.nat({ max: 0xffffffff }), lba: fc.maxSafeNat(),
      len: fc.integer({ min: 1, max: 3000 }), off: fc.nat({ max: 0xffffffff }), seq: fc.nat({ max: 0xffffffff }),
    });
    fc.assert(fc.property(arb, fc.integer({ min: 1, max: 64 }), (r, step) => {
      const data = Buffer.alloc(r.len, r.len & 0xff);
      const cmd: FrameInit = { type: FrameType.WRITE_COMMAND, sourceUnit: r.unit, issue: r.issue, tag: r.tag, volume: 1, blocks: 1, lba: r.lba, totalLength: r.len, portionOffset: 0, length: r.len, forwardTo: 0 };
      const dat: FrameInit = { type: FrameType.DATA, sourceUnit: r.unit, issue: r.issue, tag: r.tag, offset: r.off, payload: data };
      const wire = Buffer.concat([encodeFrameBuffer(cmd, r.seq), encodeFrameBuffer(dat, (r.seq + 1) >>> 0)]);
      const cuts = Array.from({ length: Math.ceil(wire.length / step) }, () => step);
      const evs = decodeAll(new FrameDecoder({ maxPayload: 4096 }), wire, cuts);
      expect(evs).to.have.length(2);
      expectMatches((evs[0] as { frame: Frame }).frame, cmd, r.seq);
      expectMatches((evs[1] as { frame: Frame }).frame, dat, (r.seq + 1) >>> 0);
    }), { numRuns: 200 });
  });
});

describe('peer frames: decoder errors', () => {
  const hb = (): Buffer => encodeFrameBuffer({ type: FrameType.HEARTBEAT, sourceUnit: 1, nonce: 5 }, 0);

  it('bad magic', () => {
    const b = hb();
    b.write('HTTP', 0);
    const e = firstError(b).error;
    expect(e.code).to.equal('bad-magic');
    expect(e.fatal).to.equal(true);
    expect(e.message).to.match(/0x48545450/);
  });

  it('unsupported version names the versions we speak', () => {
    const e = firstError(encodeFrameBuffer({ type: FrameType.HEARTBEAT, nonce: 1 }, 0, 7)).error;
    expect(e.code).to.equal('unsupported-version');
    expect(e.versions).to.deep.equal({ got: 7, supported: [1] });
    expect(e.message).to.match(/version 7; this peer speaks 1/);
  });

  it('header length out of bounds is judged before any wait for it (no unbounded buffering)', () => {
    for (const hlen of [0, 44, 47, 258, 0xfffc]) {
      const b = hb();
      b.writeUInt16BE(hlen, 8);
      const e = firstError(b).error;
      expect(e.code, `hlen ${hlen}`).to.equal('header-length');
    }
    const b = hb();
    b.writeUInt16BE(MAX_HEADER_LENGTH + 4, 8);
    const dec = new FrameDecoder({ maxPayload: 1024 });
    dec.push(b.subarray(0, 12));
    expect(dec.next()?.kind).to.equal('error');
  });

  it('header length that lies about the type', () => {
    // A HEARTBEAT header padded by 4 bytes, CRC recomputed: sound checksum, wrong length for the type.
    const b = hb();
    const longer = Buffer.concat([b.subarray(0, b.length - 8), Buffer.alloc(4), b.subarray(b.length - 8)]);
    longer.writeUInt16BE(b.length + 4, 8);
    const e = firstError(reseal(longer)).error;
    expect(e.code).to.equal('header-length');
    expect(e.message).to.match(/HEARTBEAT header length 56, want 52/);
  });

  it('header CRC mismatch', () => {
    const b = encodeFrameBuffer({ type: FrameType.WRITE_COMMAND, sourceUnit: 1, issue: 1, tag: 1, volume: 0, blocks: 1, lba: 0, totalLength: 512, portionOffset: 0, length: 512, forwardTo: 0 }, 0);
    b[45] ^= 0x01; // a bit of the LBA
    const e = firstError(b).error;
    expect(e.code).to.equal('header-crc');
    expect(e.fatal).to.equal(true);
  });

  it('unknown type (with a sound header CRC)', () => {
    const b = hb();
    b[5] = 99;
    const e = firstError(reseal(b)).error;
    expect(e.code).to.equal('unknown-type');
    expect(e.message).to.match(/99/);
  });

  it('u64 field beyond 2^53 (with a sound header CRC)', () => {
    const b = hb();
    b.writeUInt32BE(0xffffffff, 24); // issue high word
    const e = firstError(reseal(b)).error;
    expect(e.code).to.equal('field-range');
    expect(e.message).to.match(/issue/);
  });

  it('payload length that lies about the type', () => {
    const b = encodeFrameBuffer({ type: FrameType.HELLO, sourceUnit: 1, versionMin: 1, versionMax: 1, maxPayload: 1, windowBytes: 1, windowCommands: 1, payload: Buffer.alloc(31) }, 0);
    const e = firstError(b).error;
    expect(e.code).to.equal('payload-length');
    expect(e.message).to.match(/HELLO payload length 31, want 32/);
    const wc = encodeFrameBuffer({ type: FrameType.WELCOME, payload: Buffer.alloc(1) }, 0);
    expect(firstError(wc).error.code).to.equal('payload-length');
    const empty = encodeFrameBuffer({ type: FrameType.DATA, offset: 0 }, 0);
    expect(firstError(empty).error.code).to.equal('payload-length');
  });

  it('oversize DATA is refused from its header alone', () => {
    const b = encodeFrameBuffer({ type: FrameType.DATA, offset: 0, payload: Buffer.alloc(2000) }, 0);
    const dec = new FrameDecoder({ maxPayload: 1024 });
    dec.push(b.subarray(0, headerLengthOf(FrameType.DATA)));
    const ev = dec.next();
    expect(ev?.kind).to.equal('error');
    const e = (ev as { error: { code: string; message: string } }).error;
    expect(e.code).to.equal('oversize');
    expect(e.message).to.match(/2000 bytes exceeds the maximum of 1024/);
    // Nothing more is buffered after a fatal error.
    dec.push(b.subarray(headerLengthOf(FrameType.DATA)));
    expect(dec.buffered).to.equal(0);
    expect(dec.next()).to.equal(undefined);
  });

  it('payload CRC mismatch spoils one frame only; the next still decodes', () => {
    const bad = encodeFrameBuffer({ type: FrameType.DATA, sourceUnit: 3, issue: 8, tag: 4, offset: 512, payload: Buffer.alloc(100, 1) }, 0);
    bad[bad.length - 1] ^= 0xff;
    const wire = Buffer.concat([bad, encodeFrameBuffer({ type: FrameType.HEARTBEAT, nonce: 1 }, 1)]);
    const evs = decodeAll(new FrameDecoder({ maxPayload: 1024 }), wire);
    expect(evs.map((e) => e.kind)).to.deep.equal(['error', 'frame']);
    const e = (evs[0] as { error: { code: string; fatal: boolean; frame?: Frame } }).error;
    expect(e.code).to.equal('payload-crc');
    expect(e.fatal).to.equal(false);
    expect(e.frame?.tag).to.equal(4);
    expect(e.frame?.issue).to.equal(8);
    expect(e.frame?.type === FrameType.DATA && e.frame.offset).to.equal(512);
  });

  it('a fatal error stops the decoder for good', () => {
    const b = Buffer.concat([Buffer.from('garbage!garbage!'), hb()]);
    const dec = new FrameDecoder({ maxPayload: 1024 });
    const evs = decodeAll(dec, b);
    expect(evs).to.have.length(1);
    expect(dec.failed?.code).to.equal('bad-magic');
    dec.push(hb());
    expect(dec.next()).to.equal(undefined);
  });

  it('random corruption never throws, never buffers beyond one frame, and never yields a frame that was not sent (property)', () => {
    const wire = Buffer.concat(SAMPLES.map((f, i) => encodeFrameBuffer(f, i)));
    const sent = new Set(SAMPLES.map((f, i) => encodeFrameBuffer(f, i).toString('hex')));
    fc.assert(fc.property(
      fc.array(fc.record({ at: fc.nat({ max: wire.length - 1 }), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: 1, max: 50 }),
      (flips, step) => {
        const b = Buffer.from(wire);
        for (const f of flips) b[f.at]! ^= f.xor;
        const dec = new FrameDecoder({ maxPayload: 1 << 16 });
        for (let at = 0; at < b.length; at += step) {
          dec.push(b.subarray(at, at + step));
          expect(dec.buffered).to.be.at.most((1 << 16) + MAX_HEADER_LENGTH + step);
          for (let ev = dec.next(); ev; ev = dec.next()) {
            if (ev.kind === 'frame') {
              const again = encodeFrameBuffer({ ...ev.frame } as FrameInit, ev.frame.seq).toString('hex');
              expect(sent.has(again), 'a decoded frame is one that was sent').to.equal(true);
            }
          }
        }
      },
    ), { numRuns: 500 });
  });
});
