/**
 * The inter-node frame (storage unit <-> relay <-> storage unit), version 1. Wire layout in
 * PROTOCOL.md beside this file. A frame = header + payload:
 *
 *   base header (40 bytes, big endian)
 *     0 u32 magic 'KURA'      4 u8 version     5 u8 type     6 u16 flags
 *     8 u16 header length    10 u16 reserved  12 u32 payload length
 *    16 u32 source unit      20 u32 sequence (per link and direction, +1 per frame)
 *    24 u64 issuing number   32 u32 tag (the sender's handle of one command on this link)
 *    36 u32 reserved
 *   type-specific fields (fixed per type and version, LAYOUT below)
 *   u32 CRC32C of the payload, u32 CRC32C of every header byte before it
 *
 * Header and payload have separate checksums: a corrupt payload of a DATA frame is reported for
 * that one command while the framing stays trustworthy; a corrupt header ends the link.
 * The command identifier of [0132]-[0133] (issuing number + source unit id) is in every frame that
 * belongs to a command, including DATA; a relay forwards it unchanged.
 */
import { crc32c } from '@node-rs/crc32';

export const FRAME_MAGIC = 0x4b555241; // 'KURA'
export const FRAME_VERSION = 1;
/** Protocol versions this implementation speaks. */
export const SUPPORTED_VERSIONS: readonly number[] = [1];
export const BASE_HEADER_LENGTH = 40;
export const TRAILER_LENGTH = 8;
/** Bound on any header length field, checked before the header CRC can be: never buffer more. */
export const MAX_HEADER_LENGTH = 256;
export const NONCE_LENGTH = 32;
export const PROOF_LENGTH = 32;
export const MAX_ERROR_TEXT = 1024;
export const DEFAULT_MAX_PAYLOAD = 256 * 1024;
/** PULL: any volume. */
export const ANY_VOLUME = 0xffffffff;

export const FrameType = {
  HELLO: 1,
  CHALLENGE: 2,
  RESPONSE: 3,
  WELCOME: 4,
  WRITE_COMMAND: 5,
  PREPARATION_COMPLETE: 6,
  DATA: 7,
  RECEPTION_COMPLETE: 8,
  CREDIT: 9,
  READ_COMMAND: 10,
  COPY_COMMAND: 11,
  PULL: 12,
  HEARTBEAT: 13,
  ERROR: 14,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const TYPE_NAMES = new Map<number, string>(Object.entries(FrameType).map(([k, v]) => [v, k]));

export function frameTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `type ${type}`;
}

export function isFrameType(type: number): type is FrameType {
  return TYPE_NAMES.has(type);
}

/** Flag bits (each meaningful for the frame types named). */
export const Flag = {
  /** WRITE_COMMAND: force unit access at the final destination. */
  FUA: 1 << 0,
  /** WRITE_COMMAND: the sender asks for completion of reception once durable (else: once received). */
  ACK_DURABLE: 1 << 1,
  /** WRITE_COMMAND: data follows at once (credit mode). HELLO/CHALLENGE: the sender's writes are pipelined. */
  PIPELINED: 1 << 2,
  /** RECEPTION_COMPLETE: the data is on non-volatile storage (else: in the receiver's buffer). */
  DURABLE: 1 << 3,
  /** HEARTBEAT: an answer to a heartbeat. */
  REPLY: 1 << 4,
  /** ERROR: the sender closes the link after this frame. */
  FATAL: 1 << 5,
} as const;

/** ERROR codes. */
export const ErrorCode = {
  PROTOCOL: 1,
  UNSUPPORTED_VERSION: 2,
  AUTH_FAILED: 3,
  UNKNOWN_PEER: 4,
  NOT_AUTHENTICATED: 5,
  HEADER_CRC: 6,
  PAYLOAD_CRC: 7,
  UNSUPPORTED: 8,
  WRITE_FAILED: 9,
  TOO_LARGE: 10,
  CREDIT_VIOLATION: 11,
  DUPLICATE_COMMAND: 12,
  SHUTTING_DOWN: 13,
  TIMEOUT: 14,
  /** The volume was promoted at this end: it takes no more replicated writes, now or later. */
  VOLUME_PROMOTED: 15,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const ERROR_NAMES = new Map<number, string>(Object.entries(ErrorCode).map(([k, v]) => [v, k]));

export function errorCodeName(code: number): string {
  return ERROR_NAMES.get(code) ?? `error ${code}`;
}

// ---- type-specific fields -------------------------------------------------------------------------

export interface HelloFields { versionMin: number; versionMax: number; maxPayload: number; windowBytes: number; windowCommands: number }
export interface ChallengeFields { version: number; maxPayload: number; windowBytes: number; windowCommands: number }
export interface WriteCommandFields {
  volume: number;
  blocks: number;
  lba: number;
  /** Bytes of the whole command's data (all portions). */
  totalLength: number;
  /** Where this command's bytes start inside the whole command's data (striping, [0103]-[0108]). */
  portionOffset: number;
  /** Bytes this command carries. */
  length: number;
  /** Unit id the receiver should forward to (0: none / the receiver's own choice), [0074]. */
  forwardTo: number;
}
export interface DataFields { offset: number }
export interface CreditFields { releasedBytes: number; releasedCommands: number }
export interface ReadCommandFields { volume: number; blocks: number; lba: number }
export interface CopyCommandFields { volume: number; blocks: number; lba: number; destUnit: number; destVolume: number; destLba: number }
export interface PullFields { maxBytes: number; maxCommands: number; volume: number }
export interface HeartbeatFields { nonce: number }
export interface ErrorFields { code: number }

type T = typeof FrameType;
export type FrameBody =
  | ({ type: T['HELLO'] } & HelloFields)
  | ({ type: T['CHALLENGE'] } & ChallengeFields)
  | { type: T['RESPONSE'] }
  | { type: T['WELCOME'] }
  | ({ type: T['WRITE_COMMAND'] } & WriteCommandFields)
  | { type: T['PREPARATION_COMPLETE'] }
  | ({ type: T['DATA'] } & DataFields)
  | ({ type: T['RECEPTION_COMPLETE'] } & CreditFields)
  | ({ type: T['CREDIT'] } & CreditFields)
  | ({ type: T['READ_COMMAND'] } & ReadCommandFields)
  | ({ type: T['COPY_COMMAND'] } & CopyCommandFields)
  | ({ type: T['PULL'] } & PullFields)
  | ({ type: T['HEARTBEAT'] } & HeartbeatFields)
  | ({ type: T['ERROR'] } & ErrorFields);

export interface FrameCommon {
  flags: number;
  /** Unit id of the command identifier ([0133]); for link-level frames, the sending unit. */
  sourceUnit: number;
  /** Issuing number of the command identifier ([0132]); 0 for link-level frames. */
  issue: number;
  tag: number;
  payload: Buffer;
}

/** What a sender builds: common fields default to 0 / empty. */
export type FrameInit = FrameBody & Partial<FrameCommon>;
/** What the decoder returns. */
export type Frame = FrameBody & FrameCommon & { version: number; seq: number; headerLength: number };

type FieldKind = 'u16' | 'u32' | 'u64';
interface Layout {
  readonly fields: ReadonlyArray<readonly [string, FieldKind]>;
  readonly size: number;
  /** Payload bytes allowed; max -1: bounded by the decoder's maxPayload. */
  readonly payloadMin: number;
  readonly payloadMax: number;
}

function layout(fields: ReadonlyArray<readonly [string, FieldKind]>, payloadMin = 0, payloadMax = 0): Layout {
  let size = 0;
  for (const [, k] of fields) size += k === 'u16' ? 2 : k === 'u32' ? 4 : 8;
  if (size % 4 !== 0) throw new Error('frame layout: fields must fill whole 32-bit words');
  return { fields, size, payloadMin, payloadMax };
}

const CREDIT_LAYOUT = layout([['releasedBytes', 'u64'], ['releasedCommands', 'u64']]);

const LAYOUT: Record<FrameType, Layout> = {
  [FrameType.HELLO]: layout([['versionMin', 'u16'], ['versionMax', 'u16'], ['maxPayload', 'u32'], ['windowBytes', 'u32'], ['windowCommands', 'u32']], NONCE_LENGTH, NONCE_LENGTH),
  [FrameType.CHALLENGE]: layout([['version', 'u16'], ['_pad', 'u16'], ['maxPayload', 'u32'], ['windowBytes', 'u32'], ['windowCommands', 'u32']], NONCE_LENGTH + PROOF_LENGTH, NONCE_LENGTH + PROOF_LENGTH),
  [FrameType.RESPONSE]: layout([], PROOF_LENGTH, PROOF_LENGTH),
  [FrameType.WELCOME]: layout([]),
  [FrameType.WRITE_COMMAND]: layout([
    ['volume', 'u32'], ['blocks', 'u32'], ['lba', 'u64'], ['totalLength', 'u32'], ['portionOffset', 'u32'], ['length', 'u32'], ['forwardTo', 'u32'],
  ]),
  [FrameType.PREPARATION_COMPLETE]: layout([]),
  [FrameType.DATA]: layout([['offset', 'u32']], 1, -1),
  [FrameType.RECEPTION_COMPLETE]: CREDIT_LAYOUT,
  [FrameType.CREDIT]: CREDIT_LAYOUT,
  [FrameType.READ_COMMAND]: layout([['volume', 'u32'], ['blocks', 'u32'], ['lba', 'u64']]),
  [FrameType.COPY_COMMAND]: layout([
    ['volume', 'u32'], ['blocks', 'u32'], ['lba', 'u64'], ['destUnit', 'u32'], ['destVolume', 'u32'], ['destLba', 'u64'],
  ]),
  [FrameType.PULL]: layout([['maxBytes', 'u32'], ['maxCommands', 'u32'], ['volume', 'u32']]),
  [FrameType.HEARTBEAT]: layout([['nonce', 'u32']]),
  [FrameType.ERROR]: layout([['code', 'u32']], 0, MAX_ERROR_TEXT),
};

/** Total header length of a frame type (version 1). */
export function headerLengthOf(type: FrameType): number {
  return BASE_HEADER_LENGTH + LAYOUT[type].size + TRAILER_LENGTH;
}

export function payloadBounds(type: FrameType, maxPayload: number): [number, number] {
  const l = LAYOUT[type];
  return [l.payloadMin, l.payloadMax < 0 ? maxPayload : l.payloadMax];
}

const TWO32 = 2 ** 32;

export function writeU64(buf: Buffer, at: number, n: number): void {
  buf.writeUInt32BE(Math.floor(n / TWO32), at);
  buf.writeUInt32BE(n % TWO32, at + 4);
}

/** A u64 as a number; -1 when it is beyond Number.MAX_SAFE_INTEGER. */
export function readU64(buf: Buffer, at: number): number {
  const hi = buf.readUInt32BE(at);
  if (hi >= 0x200000) return -1;
  return hi * TWO32 + buf.readUInt32BE(at + 4);
}

function checkField(name: string, kind: FieldKind, v: unknown): number {
  const max = kind === 'u16' ? 0xffff : kind === 'u32' ? 0xffffffff : Number.MAX_SAFE_INTEGER;
  const n = v === undefined ? 0 : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max) {
    throw new RangeError(`frame field ${name}: ${String(v)} is not a ${kind}`);
  }
  return n;
}

const EMPTY = Buffer.alloc(0);

/**
 * Encode one frame: [header] or [header, payload]. The payload is not copied (the caller keeps it
 * unchanged until the transport is done with it). Out-of-range fields are programming errors and
 * throw RangeError.
 */
export function encodeFrame(f: FrameInit, seq: number, version = FRAME_VERSION): Buffer[] {
  const l = LAYOUT[f.type];
  if (!l) throw new RangeError(`encodeFrame: unknown frame type ${String(f.type)}`);
  const payload = f.payload ?? EMPTY;
  const headerLength = BASE_HEADER_LENGTH + l.size + TRAILER_LENGTH;
  const h = Buffer.allocUnsafe(headerLength);
  h.writeUInt32BE(FRAME_MAGIC, 0);
  h[4] = version;
  h[5] = f.type;
  h.writeUInt16BE(checkField('flags', 'u16', f.flags), 6);
  h.writeUInt16BE(headerLength, 8);
  h.writeUInt16BE(0, 10);
  h.writeUInt32BE(payload.length, 12);
  h.writeUInt32BE(checkField('sourceUnit', 'u32', f.sourceUnit), 16);
  h.writeUInt32BE(seq >>> 0, 20);
  writeU64(h, 24, checkField('issue', 'u64', f.issue));
  h.writeUInt32BE(checkField('tag', 'u32', f.tag), 32);
  h.writeUInt32BE(0, 36);
  const rec = f as unknown as Record<string, unknown>;
  let at = BASE_HEADER_LENGTH;
  for (const [name, kind] of l.fields) {
    const v = checkField(name, kind, rec[name]);
    if (kind === 'u16') h.writeUInt16BE(v, at);
    else if (kind === 'u32') h.writeUInt32BE(v, at);
    else writeU64(h, at, v);
    at += kind === 'u16' ? 2 : kind === 'u32' ? 4 : 8;
  }
  h.writeUInt32BE(crc32c(payload) >>> 0, at);
  h.writeUInt32BE(crc32c(h.subarray(0, at + 4)) >>> 0, at + 4);
  return payload.length > 0 ? [h, payload] : [h];
}

/** Encode into one contiguous buffer (tests, small control frames). */
export function encodeFrameBuffer(f: FrameInit, seq: number, version = FRAME_VERSION): Buffer {
  return Buffer.concat(encodeFrame(f, seq, version));
}

/**
 * Parse the type-specific fields of a header whose CRC, type and length were already checked.
 * Returns the name of a u64 field that does not fit a safe integer, or the frame minus payload.
 */
export function parseHeader(h: Buffer): Omit<Frame, 'payload'> | string {
  const type = h[5] as FrameType;
  const out: Record<string, number> = {
    type,
    version: h[4]!,
    flags: h.readUInt16BE(6),
    headerLength: h.readUInt16BE(8),
    sourceUnit: h.readUInt32BE(16),
    seq: h.readUInt32BE(20),
    issue: readU64(h, 24),
    tag: h.readUInt32BE(32),
  };
  if (out.issue! < 0) return 'issue';
  let at = BASE_HEADER_LENGTH;
  for (const [name, kind] of LAYOUT[type].fields) {
    if (kind === 'u16') out[name] = h.readUInt16BE(at);
    else if (kind === 'u32') out[name] = h.readUInt32BE(at);
    else {
      const v = readU64(h, at);
      if (v < 0) return name;
      out[name] = v;
    }
    at += kind === 'u16' ? 2 : kind === 'u32' ? 4 : 8;
  }
  delete out._pad;
  return out as unknown as Omit<Frame, 'payload'>;
}
