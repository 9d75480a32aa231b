/**
 * iSCSI PDU layout (RFC 7143 §11): the 48-byte Basic Header Segment, AHS, digests and padding.
 * Headers stay as Buffers and fields are read in place at fixed offsets: a parsed object per PDU
 * would cost an allocation and a copy on the hot path for nothing.
 */
import { crc32c } from '@node-rs/crc32';

export const BHS_LENGTH = 48;
export const DIGEST_LENGTH = 4;
/** The reserved tag value ("no tag") for ITT and TTT. */
export const NO_TAG = 0xffffffff;
/** DataSegmentLength is 24 bits. */
export const MAX_DATA_SEGMENT = 0xffffff;

export const Op = {
  NOP_OUT: 0x00,
  SCSI_COMMAND: 0x01,
  TMF_REQUEST: 0x02,
  LOGIN_REQUEST: 0x03,
  TEXT_REQUEST: 0x04,
  DATA_OUT: 0x05,
  LOGOUT_REQUEST: 0x06,
  SNACK: 0x10,
  NOP_IN: 0x20,
  SCSI_RESPONSE: 0x21,
  TMF_RESPONSE: 0x22,
  LOGIN_RESPONSE: 0x23,
  TEXT_RESPONSE: 0x24,
  DATA_IN: 0x25,
  LOGOUT_RESPONSE: 0x26,
  R2T: 0x31,
  ASYNC_MESSAGE: 0x32,
  REJECT: 0x3f,
} as const;

/** Byte 0 bit 6: immediate delivery (initiator PDUs). */
export const FLAG_IMMEDIATE = 0x40;
/** Byte 1 bit 7: Final (or Transit for login). */
export const FLAG_FINAL = 0x80;
/** Byte 1 bit 6: Continue (text/login). */
export const FLAG_CONTINUE = 0x40;

/** SCSI Command byte 1. */
export const CMD_READ = 0x40;
export const CMD_WRITE = 0x20;
export const CMD_ATTR_MASK = 0x07;

/** Data-In / SCSI Response byte 1 residual and status bits. */
export const RSP_BIDI_OVERFLOW = 0x10;
export const RSP_BIDI_UNDERFLOW = 0x08;
export const RSP_OVERFLOW = 0x04;
export const RSP_UNDERFLOW = 0x02;
export const DATAIN_STATUS = 0x01;

export const RejectReason = {
  DATA_DIGEST_ERROR: 0x02,
  SNACK_REJECT: 0x03,
  PROTOCOL_ERROR: 0x04,
  COMMAND_NOT_SUPPORTED: 0x05,
  TOO_MANY_IMMEDIATE: 0x06,
  TASK_IN_PROGRESS: 0x07,
  INVALID_DATA_ACK: 0x08,
  INVALID_PDU_FIELD: 0x09,
  OUT_OF_RESOURCES: 0x0a,
  WAITING_FOR_LOGOUT: 0x0c,
} as const;

export const TmfFunction = {
  ABORT_TASK: 1,
  ABORT_TASK_SET: 2,
  CLEAR_ACA: 3,
  CLEAR_TASK_SET: 4,
  LOGICAL_UNIT_RESET: 5,
  TARGET_WARM_RESET: 6,
  TARGET_COLD_RESET: 7,
  TASK_REASSIGN: 8,
} as const;

export const TmfResponse = {
  FUNCTION_COMPLETE: 0,
  TASK_DOES_NOT_EXIST: 1,
  LUN_DOES_NOT_EXIST: 2,
  TASK_STILL_ALLEGIANT: 3,
  REASSIGNMENT_NOT_SUPPORTED: 4,
  NOT_SUPPORTED: 5,
  AUTHORIZATION_FAILED: 6,
  REJECTED: 255,
} as const;

/** Login status, class << 8 | detail (RFC 7143 §11.13.5). */
export const LoginStatus = {
  SUCCESS: 0x0000,
  INITIATOR_ERROR: 0x0200,
  AUTH_FAILURE: 0x0201,
  NOT_ALLOWED: 0x0202,
  NOT_FOUND: 0x0203,
  TARGET_REMOVED: 0x0204,
  UNSUPPORTED_VERSION: 0x0205,
  TOO_MANY_CONNECTIONS: 0x0206,
  MISSING_PARAMETER: 0x0207,
  CANT_INCLUDE_IN_SESSION: 0x0208,
  SESSION_TYPE_UNSUPPORTED: 0x0209,
  SESSION_DOES_NOT_EXIST: 0x020a,
  INVALID_DURING_LOGIN: 0x020b,
  TARGET_ERROR: 0x0300,
  SERVICE_UNAVAILABLE: 0x0301,
  OUT_OF_RESOURCES: 0x0302,
} as const;

export const LogoutReason = { CLOSE_SESSION: 0, CLOSE_CONNECTION: 1, REMOVE_FOR_RECOVERY: 2 } as const;
export const LogoutResponse = { SUCCESS: 0, CID_NOT_FOUND: 1, RECOVERY_NOT_SUPPORTED: 2, CLEANUP_FAILED: 3 } as const;
export const AsyncEvent = { SCSI: 0, LOGOUT_REQUEST: 1, DROP_CONNECTION: 2, DROP_ALL_CONNECTIONS: 3, NEGOTIATION: 4 } as const;

/** A received PDU. `bhs` and `data` are views into the received bytes (no copy when possible). */
export interface Pdu {
  readonly bhs: Buffer;
  readonly ahs: Buffer | undefined;
  /** The data segment without padding. */
  readonly data: Buffer;
  /** False when data digests are on and the data digest did not match. */
  readonly dataDigestOk: boolean;
}

export function opcodeOf(bhs: Uint8Array): number {
  return bhs[0] & 0x3f;
}

export function isImmediate(bhs: Uint8Array): boolean {
  return (bhs[0] & FLAG_IMMEDIATE) !== 0;
}

export function dataSegmentLength(bhs: Uint8Array): number {
  return (bhs[5] << 16) | (bhs[6] << 8) | bhs[7];
}

export function setDataSegmentLength(bhs: Uint8Array, n: number): void {
  bhs[5] = (n >>> 16) & 0xff;
  bhs[6] = (n >>> 8) & 0xff;
  bhs[7] = n & 0xff;
}

export function padLength(n: number): number {
  return (4 - (n & 3)) & 3;
}

/**
 * LUN field (SAM-5 §4.7): peripheral (method 0) and flat (method 1) addressing cover LUNs up to
 * 16383. Anything else maps to an impossible LUN so that the device server answers "not supported".
 */
export function decodeLun(buf: Uint8Array, offset = 8): number {
  const method = buf[offset] >> 6;
  if (method === 0 && (buf[offset] & 0x3f) === 0) return buf[offset + 1];
  if (method === 1) return ((buf[offset] & 0x3f) << 8) | buf[offset + 1];
  return 0xffff;
}

export function encodeLun(lun: number, buf: Uint8Array, offset = 8): void {
  if (lun < 256) {
    buf[offset] = 0;
    buf[offset + 1] = lun;
  } else {
    buf[offset] = 0x40 | ((lun >> 8) & 0x3f);
    buf[offset + 1] = lun & 0xff;
  }
}

/**
 * A fresh, zeroed target BHS. allocUnsafe takes it from Node's shared slab (Buffer.alloc would
 * create an ArrayBuffer per header), and fill() is cheap at 48 bytes.
 */
export function newBhs(opcode: number, flags = FLAG_FINAL): Buffer {
  const b = Buffer.allocUnsafe(BHS_LENGTH).fill(0);
  b[0] = opcode;
  b[1] = flags;
  return b;
}

const PAD = Buffer.alloc(4);

/** CRC32C of the data segment plus its padding, as the data digest covers both. */
export function dataDigest(data: Uint8Array): number {
  const pad = padLength(data.length);
  const crc = crc32c(data);
  return pad === 0 ? crc : crc32c(PAD.subarray(0, pad), crc);
}

/** Digests go on the wire least significant byte first (RFC 7143 §13.1, Appendix B.4). */
function digestBytes(crc: number): Buffer {
  const b = Buffer.allocUnsafe(DIGEST_LENGTH);
  b.writeUInt32LE(crc >>> 0, 0);
  return b;
}

/**
 * Append the chunks of one outgoing PDU to `out`: header (+ digest), data, padding, data digest.
 * Fills in DataSegmentLength. `bhs` is the 48-byte header from newBhs().
 */
export function encodePdu(
  out: Uint8Array[], bhs: Buffer, data: Uint8Array | undefined, headerDigest: boolean, dataDigestOn: boolean,
): void {
  const len = data ? data.length : 0;
  setDataSegmentLength(bhs, len);
  if (headerDigest) {
    // Header and digest as one chunk.
    const h = Buffer.allocUnsafe(BHS_LENGTH + DIGEST_LENGTH);
    bhs.copy(h, 0, 0, BHS_LENGTH);
    h.writeUInt32LE(crc32c(bhs) >>> 0, BHS_LENGTH);
    out.push(h);
  } else {
    out.push(bhs);
  }
  if (!data || len === 0) return;
  out.push(data);
  const pad = padLength(len);
  if (pad) out.push(PAD.subarray(0, pad));
  if (dataDigestOn) out.push(digestBytes(dataDigest(data)));
}

/** Fixed-format sense data (SPC-5 §4.4.3), what iSCSI carries in a SCSI Response. */
export function fixedSense(key: number, asc: number, ascq: number): Buffer {
  const s = Buffer.alloc(18);
  s[0] = 0x70;
  s[2] = key & 0x0f;
  s[7] = 10;
  s[12] = asc;
  s[13] = ascq;
  return s;
}
