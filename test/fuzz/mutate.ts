/**
 * Mutation operators for one outgoing PDU. "Pre" operators change the PDU before it is encoded
 * (text corruption, a real AHS), so lengths and digests stay consistent and the mutation reaches
 * the parsers behind the framing; "post" operators change the encoded bytes (bit flips, field
 * values, length lies up to 2^24-1, truncation, junk, duplicates, digest corruption), optionally
 * followed by recomputing the digests so that the lie gets past the digest check.
 */
import type { Random } from '../../hal/sim/random.js';
import { type Image, type OutPdu, refreshDigests } from './wire.js';

export interface Mutation {
  pre: string[];
  post: string[];
  /** Recompute digests after the post operators (a lie the digest does not catch). */
  fixDigests: boolean;
}

const PRE = ['text', 'text', 'ahs', 'data-bytes', 'empty-data', 'grow-data'] as const;
const POST = [
  'bitflip', 'bitflip', 'bitflip', 'byte', 'field', 'field', 'field', 'opcode', 'flags', 'dsl', 'dsl', 'ahs-len',
  'truncate', 'extend', 'duplicate', 'header-digest', 'data-digest',
] as const;

const BYTES = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xfe, 0xff];
/** Every initiator opcode, every target opcode, and a few nobody defined. */
const OPCODES = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x1c, 0x1d, 0x1e, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x31, 0x32, 0x3c, 0x3d, 0x3e, 0x3f, 0x07, 0x0f, 0x11];
/** [offset, size] of BHS fields worth aiming at: LUN, ITT, TTT/EDTL, CmdSN, ExpStatSN, TSIH/CID, DataSN, offsets, lengths. */
const FIELDS: [number, 1 | 2 | 4][] = [
  [1, 1], [2, 1], [3, 1], [8, 4], [12, 4], [14, 2], [16, 4], [20, 4], [20, 2], [24, 4], [28, 4], [32, 4], [36, 4], [40, 4], [44, 4], [9, 1],
];

export function planMutation(rng: Random): Mutation {
  const pre: string[] = [];
  const post: string[] = [];
  if (rng.bool(0.25)) pre.push(rng.pick(PRE));
  const n = pre.length > 0 && rng.bool(0.5) ? 0 : rng.range(1, 3);
  for (let i = 0; i < n; i++) post.push(rng.pick(POST));
  return { pre, post, fixDigests: rng.bool(0.5) };
}

function interesting(rng: Random, size: 1 | 2 | 4, current: number): number {
  const max = size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
  switch (rng.int(9)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return max;
    case 3: return (max - 1) >>> 0;
    case 4: return size === 4 ? 0x80000000 : size === 2 ? 0x8000 : 0x80;
    case 5: return (current + 1) & max;
    case 6: return (current - 1) & max;
    case 7: return (current + rng.range(2, 300)) & max;
    default: return rng.u32() & max;
  }
}

function writeField(b: Buffer, at: number, size: 1 | 2 | 4, v: number): void {
  if (at + size > b.length) return;
  if (size === 1) b[at] = v & 0xff;
  else if (size === 2) b.writeUInt16BE(v & 0xffff, at);
  else b.writeUInt32BE(v >>> 0, at);
}

function readField(b: Buffer, at: number, size: 1 | 2 | 4): number {
  if (at + size > b.length) return 0;
  return size === 1 ? b[at]! : size === 2 ? b.readUInt16BE(at) : b.readUInt32BE(at);
}

/** Text corruptions aimed at the key=value parser and the negotiation. */
function mutateText(rng: Random, data: Buffer): Buffer {
  const s = data.toString('latin1');
  switch (rng.int(10)) {
    case 0: return Buffer.from(s.replace(/\0$/, ''), 'latin1'); // no final NUL
    case 1: return Buffer.from(s + s, 'latin1'); // every key twice
    case 2: return Buffer.from(`${s}X-fuzz.${rng.int(1000)}=${'v'.repeat(rng.pick([1, 255, 256, 4096, 9000]))}\0`, 'latin1');
    case 3: return Buffer.from(`${s}${rng.pick(['novalue', '=v', 'a b=c', 'K\u00ff=1', 'é=1'])}\0`, 'latin1');
    case 4: return Buffer.from(s.replace(/=/g, rng.bool() ? '' : '=='), 'latin1');
    case 5: return Buffer.from(s.replace(/(=)[^\0]*/, `$1${rng.pick(['', ',', 'None,', 'CRC32C,,None', '0x', '0b', '-1', '99999999999', '0xFFFFFFFFF', 'Yes,No', 'Reject', 'NotUnderstood', 'Irrelevant'])}`), 'latin1');
    case 6: return Buffer.from(`\0\0${s}\0\0`, 'latin1');
    case 7: {
      const keys = ['HeaderDigest', 'DataDigest', 'MaxRecvDataSegmentLength', 'MaxBurstLength', 'FirstBurstLength', 'InitialR2T', 'ImmediateData',
        'MaxOutstandingR2T', 'MaxConnections', 'ErrorRecoveryLevel', 'SessionType', 'TargetName', 'InitiatorName', 'AuthMethod', 'CHAP_A',
        'CHAP_N', 'CHAP_R', 'CHAP_I', 'CHAP_C', 'SendTargets', 'TargetAlias', 'TargetAddress', 'TaskReporting', 'iSCSIProtocolLevel', 'OFMarkInt',
        'toString', 'constructor', '__proto__', 'hasOwnProperty', 'valueOf'];
      const values = ['', 'None', 'CRC32C', 'Yes', 'No', '0', '1', '512', '511', '16777215', '16777216', 'Discovery', 'Normal', 'CHAP', 'None,CHAP',
        '5', '0x00', '0x' + 'ab'.repeat(rng.pick([1, 16, 1025])), '0bAAAA', 'All', 'iqn.2024-01.test.fuzz:open', 'RFC3720', '2047~1', 'x'.repeat(300)];
      let t = s;
      for (let i = rng.range(1, 4); i > 0; i--) t += `${rng.pick(keys)}=${rng.pick(values)}\0`;
      return Buffer.from(t, 'latin1');
    }
    case 8: return Buffer.from(s.slice(0, rng.int(s.length + 1)), 'latin1');
    default: {
      const b = Buffer.from(data);
      for (let i = rng.range(1, 4); i > 0 && b.length > 0; i--) b[rng.int(b.length)] = rng.pick([0, 0x3d, 0x2c, 0xff, rng.int(256)]);
      return b;
    }
  }
}

/** Apply the pre operators to a PDU about to be encoded. */
export function mutateBefore(rng: Random, m: Mutation, p: OutPdu): OutPdu {
  let out: OutPdu = { ...p, bhs: Buffer.from(p.bhs) };
  for (const op of m.pre) {
    switch (op) {
      case 'text':
        out = { ...out, data: mutateText(rng, out.data ?? Buffer.alloc(0)) };
        break;
      case 'ahs': {
        // A real AHS of a random type (extended CDB, bidi length, or nonsense), lengths consistent.
        const len = rng.pick([1, 4, 5, 8, 13, 16, 250]);
        const a = Buffer.alloc((3 + len + 3) & ~3);
        a.writeUInt16BE(rng.bool(0.8) ? len : rng.int(0x10000), 0);
        a[2] = rng.pick([1, 2, 0, 3, 0x3f, 0x41]);
        for (let i = 4; i < a.length; i++) a[i] = rng.int(256);
        out = { ...out, ahs: Buffer.concat([out.ahs ?? Buffer.alloc(0), a]) };
        break;
      }
      case 'data-bytes': {
        const d = Buffer.from(out.data ?? Buffer.alloc(0));
        for (let i = rng.range(1, 8); i > 0 && d.length > 0; i--) d[rng.int(d.length)] = rng.int(256);
        out = { ...out, data: d };
        break;
      }
      case 'empty-data':
        out = { ...out, data: Buffer.alloc(0) };
        break;
      case 'grow-data':
        out = { ...out, data: Buffer.concat([out.data ?? Buffer.alloc(0), Buffer.alloc(rng.pick([1, 3, 512, 8192, 65537]), rng.int(256))]) };
        break;
    }
  }
  return out;
}

/** Apply the post operators to the encoded bytes; returns the bytes to send. */
export function mutateAfter(rng: Random, m: Mutation, img: Image): Buffer {
  let b = img.bytes;
  for (const op of m.post) {
    switch (op) {
      case 'bitflip':
        for (let i = rng.range(1, 4); i > 0 && b.length > 0; i--) {
          const at = rng.bool(0.75) ? rng.int(Math.min(48, b.length)) : rng.int(b.length);
          b[at] ^= 1 << rng.int(8);
        }
        break;
      case 'byte':
        if (b.length > 0) b[rng.bool(0.8) ? rng.int(Math.min(48, b.length)) : rng.int(b.length)] = rng.pick(BYTES);
        break;
      case 'field': {
        const [at, size] = rng.pick(FIELDS);
        writeField(b, at, size, interesting(rng, size, readField(b, at, size)));
        break;
      }
      case 'opcode':
        if (b.length > 0) b[0] = (rng.bool(0.2) ? b[0]! ^ 0x40 : b[0]! & 0x40) | (rng.bool(0.2) ? b[0]! & 0x3f : rng.pick(OPCODES)) | (rng.bool(0.05) ? 0x80 : 0);
        break;
      case 'flags':
        if (b.length > 1) b[1] = rng.bool(0.5) ? b[1]! ^ (1 << rng.int(8)) : rng.int(256);
        break;
      case 'dsl': {
        if (b.length < 8) break;
        const cur = (b[5]! << 16) | (b[6]! << 8) | b[7]!;
        const v = rng.pick([0, cur + 1, cur - 1, cur + 4, 1, 48, 8192, 8193, 65536, 262144, 262145, 0xfffff, 0xffffff, rng.int(0x1000000)]) & 0xffffff;
        b[5] = v >>> 16;
        b[6] = (v >>> 8) & 0xff;
        b[7] = v & 0xff;
        break;
      }
      case 'ahs-len':
        if (b.length > 4) b[4] = rng.pick([0, 1, 2, 4, 17, 255, rng.int(256)]);
        break;
      case 'truncate':
        if (b.length > 0) b = b.subarray(0, rng.int(b.length));
        break;
      case 'extend': {
        const junk = Buffer.alloc(rng.pick([1, 3, 4, 47, 48, 52, 64]));
        for (let i = 0; i < junk.length; i++) junk[i] = rng.int(256);
        b = Buffer.concat([b, junk]);
        break;
      }
      case 'duplicate':
        b = Buffer.concat([b, b]);
        break;
      case 'header-digest':
        if (img.headerDigestAt >= 0 && img.headerDigestAt < b.length) b[img.headerDigestAt + rng.int(Math.min(4, b.length - img.headerDigestAt))] ^= 1 << rng.int(8);
        else if (b.length > 0) b[rng.int(b.length)] ^= 0x10;
        break;
      case 'data-digest':
        if (img.dataDigestAt >= 0 && img.dataDigestAt < b.length) b[img.dataDigestAt + rng.int(Math.min(4, b.length - img.dataDigestAt))] ^= 1 << rng.int(8);
        else if (img.dataLength > 0 && img.dataAt < b.length) b[img.dataAt + rng.int(Math.min(img.dataLength, b.length - img.dataAt))] ^= 0x01;
        break;
    }
  }
  if (m.fixDigests && !m.post.includes('header-digest') && !m.post.includes('data-digest') && b === img.bytes) refreshDigests(img);
  return b;
}
