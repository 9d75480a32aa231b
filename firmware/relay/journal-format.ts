/**
 * On-device format of the relay journal (000-NV). Big endian, CRC32C.
 *
 * Device layout: [superblock slot 0][superblock slot 1][ring ........................]
 * each slot is 512 bytes (one sector); the ring [ringStart, ringEnd) starts at the first `align`
 * boundary after them, and records start on `align` boundaries.
 *
 * Record (header 80 bytes, then the payload, then zeroes up to `span`):
 *    0 u32 magic 'KJRN'   4 u8 version   5 u8 kind (1 write, 2 pad)   6 u16 flags (1: FUA)
 *    8 u32 journal id    12 u32 payload length
 *   16 u64 sequence      24 u32 epoch   28 u32 source unit   32 u64 issuing number
 *   40 u32 volume        44 u32 blocks  48 u64 LBA           56 u32 forward-to unit
 *   60 u32 span (bytes the record occupies in the ring)      64 u64 recorded at (wall ms)
 *   72 u32 payload CRC   76 u32 header CRC (over bytes 0..75)
 * A pad record fills the ring's end when the next record does not fit there; the chain goes on at
 * ringStart.
 *
 * Superblock (72 bytes used of its slot):
 *    0 u32 magic 'KJSB'  4 u16 version  6 u16 0   8 u64 generation  16 u32 journal id
 *   20 u32 epoch        24 u32 floor epoch        28 u32 align
 *   32 u64 head offset  40 u64 head sequence      48 u64 ring start 56 u64 ring end
 *   64 u32 0            68 u32 CRC (over bytes 0..67)
 */
import { crc32c } from '@node-rs/crc32';

export const RECORD_MAGIC = 0x4b4a524e; // 'KJRN'
export const SUPERBLOCK_MAGIC = 0x4b4a5342; // 'KJSB'
export const JOURNAL_VERSION = 1;
export const RECORD_HEADER = 80;
export const SUPERBLOCK_BYTES = 72;
/** Each superblock copy has a sector of its own. */
export const SUPERBLOCK_SLOT = 512;
/** Offset of the payload CRC in a record header. */
export const RECORD_PAYLOAD_CRC = 72;
export const KIND_WRITE = 1;
export const KIND_PAD = 2;
export const RECORD_FUA = 1;

const TWO32 = 2 ** 32;

function putU64(b: Buffer, at: number, n: number): void {
  b.writeUInt32BE(Math.floor(n / TWO32), at);
  b.writeUInt32BE(n % TWO32, at + 4);
}

function getU64(b: Buffer, at: number): number {
  const hi = b.readUInt32BE(at);
  return hi >= 0x200000 ? -1 : hi * TWO32 + b.readUInt32BE(at + 4);
}

export function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

export interface RecordHeader {
  kind: number;
  flags: number;
  journalId: number;
  payloadLength: number;
  seq: number;
  epoch: number;
  sourceUnit: number;
  issue: number;
  volume: number;
  blocks: number;
  lba: number;
  forwardTo: number;
  span: number;
  recordedAt: number;
  payloadCrc: number;
}

/** The record as written: header, payload, zero padding to `span`. */
export function encodeRecord(h: Omit<RecordHeader, 'payloadCrc' | 'payloadLength'>, payload: Uint8Array): Buffer {
  const buf = Buffer.alloc(h.span);
  buf.writeUInt32BE(RECORD_MAGIC, 0);
  buf[4] = JOURNAL_VERSION;
  buf[5] = h.kind;
  buf.writeUInt16BE(h.flags, 6);
  buf.writeUInt32BE(h.journalId, 8);
  buf.writeUInt32BE(payload.length, 12);
  putU64(buf, 16, h.seq);
  buf.writeUInt32BE(h.epoch, 24);
  buf.writeUInt32BE(h.sourceUnit, 28);
  putU64(buf, 32, h.issue);
  buf.writeUInt32BE(h.volume, 40);
  buf.writeUInt32BE(h.blocks, 44);
  putU64(buf, 48, h.lba);
  buf.writeUInt32BE(h.forwardTo, 56);
  buf.writeUInt32BE(h.span, 60);
  putU64(buf, 64, h.recordedAt);
  buf.writeUInt32BE(crc32c(payload) >>> 0, 72);
  buf.writeUInt32BE(crc32c(buf.subarray(0, 76)) >>> 0, 76);
  buf.set(payload, RECORD_HEADER);
  return buf;
}

/** The header, or why these bytes are not one. */
export function decodeRecordHeader(b: Buffer): RecordHeader | string {
  if (b.length < RECORD_HEADER) return 'short header';
  if (b.readUInt32BE(0) !== RECORD_MAGIC) return 'no record magic';
  if (b[4] !== JOURNAL_VERSION) return `record version ${b[4]}`;
  if ((crc32c(b.subarray(0, 76)) >>> 0) !== b.readUInt32BE(76)) return 'record header CRC mismatch';
  const h: RecordHeader = {
    kind: b[5]!,
    flags: b.readUInt16BE(6),
    journalId: b.readUInt32BE(8),
    payloadLength: b.readUInt32BE(12),
    seq: getU64(b, 16),
    epoch: b.readUInt32BE(24),
    sourceUnit: b.readUInt32BE(28),
    issue: getU64(b, 32),
    volume: b.readUInt32BE(40),
    blocks: b.readUInt32BE(44),
    lba: getU64(b, 48),
    forwardTo: b.readUInt32BE(56),
    span: b.readUInt32BE(60),
    recordedAt: getU64(b, 64),
    payloadCrc: b.readUInt32BE(72),
  };
  if (h.kind !== KIND_WRITE && h.kind !== KIND_PAD) return `record kind ${h.kind}`;
  if (h.seq < 0 || h.issue < 0 || h.lba < 0 || h.recordedAt < 0) return 'record field out of range';
  return h;
}

export function payloadOk(h: RecordHeader, payload: Uint8Array): boolean {
  return payload.length === h.payloadLength && crcMatches(payload, h.payloadCrc);
}

export function crcMatches(data: Uint8Array, crc: number): boolean {
  return (crc32c(data) >>> 0) === crc;
}

export interface Superblock {
  generation: number;
  journalId: number;
  epoch: number;
  /** Records at or after the head must have an epoch >= this (stale ones from older epochs do not). */
  floorEpoch: number;
  align: number;
  headOffset: number;
  headSeq: number;
  ringStart: number;
  ringEnd: number;
}

export function encodeSuperblock(s: Superblock, slotBytes: number): Buffer {
  const b = Buffer.alloc(slotBytes);
  b.writeUInt32BE(SUPERBLOCK_MAGIC, 0);
  b.writeUInt16BE(JOURNAL_VERSION, 4);
  putU64(b, 8, s.generation);
  b.writeUInt32BE(s.journalId, 16);
  b.writeUInt32BE(s.epoch, 20);
  b.writeUInt32BE(s.floorEpoch, 24);
  b.writeUInt32BE(s.align, 28);
  putU64(b, 32, s.headOffset);
  putU64(b, 40, s.headSeq);
  putU64(b, 48, s.ringStart);
  putU64(b, 56, s.ringEnd);
  b.writeUInt32BE(crc32c(b.subarray(0, 68)) >>> 0, 68);
  return b;
}

export function decodeSuperblock(b: Buffer): Superblock | string {
  if (b.readUInt32BE(0) !== SUPERBLOCK_MAGIC) return 'no superblock magic';
  if (b.readUInt16BE(4) !== JOURNAL_VERSION) return `superblock version ${b.readUInt16BE(4)}`;
  if ((crc32c(b.subarray(0, 68)) >>> 0) !== b.readUInt32BE(68)) return 'superblock CRC mismatch';
  const s: Superblock = {
    generation: getU64(b, 8),
    journalId: b.readUInt32BE(16),
    epoch: b.readUInt32BE(20),
    floorEpoch: b.readUInt32BE(24),
    align: b.readUInt32BE(28),
    headOffset: getU64(b, 32),
    headSeq: getU64(b, 40),
    ringStart: getU64(b, 48),
    ringEnd: getU64(b, 56),
  };
  if (s.generation < 0 || s.headOffset < 0 || s.headSeq < 0 || s.ringStart < 0 || s.ringEnd < 0) return 'superblock field out of range';
  return s;
}
