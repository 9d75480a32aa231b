/**
 * The fuzz initiator's side of the wire: initiator PDU headers built byte by byte (not with
 * target/iscsi/pdu.ts, so that a layout mistake there does not cancel out), encoded into one byte
 * image with padding and digests, and the framing arithmetic the target's reader must agree with.
 */
import { crc32c } from '@node-rs/crc32';

export const NO_TAG = 0xffffffff;

export const OP = {
  NOP_OUT: 0x00, SCSI_CMD: 0x01, TMF: 0x02, LOGIN: 0x03, TEXT: 0x04, DATA_OUT: 0x05, LOGOUT: 0x06, SNACK: 0x10,
  NOP_IN: 0x20, SCSI_RSP: 0x21, TMF_RSP: 0x22, LOGIN_RSP: 0x23, TEXT_RSP: 0x24, DATA_IN: 0x25, LOGOUT_RSP: 0x26,
  R2T: 0x31, ASYNC: 0x32, REJECT: 0x3f,
} as const;

/** Opcodes a target may send (RFC 7143 §11.1.1). */
export const TARGET_OPCODES: ReadonlySet<number> = new Set([0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x31, 0x32, 0x3f]);
/** Reject reasons of RFC 7143 §11.17.1 a target may use (0x01 and 0x0b are reserved/obsolete). */
export const REJECT_REASONS: ReadonlySet<number> = new Set([0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0c]);

/** One PDU as the scenario means it, before encoding. */
export interface OutPdu {
  bhs: Buffer;
  ahs?: Buffer;
  data?: Buffer;
  /** For reports: what the scenario sent ("login sec", "write imm", ...). */
  what: string;
}

/** An encoded PDU and where its parts lie, so that mutations can aim and digests be redone. */
export interface Image {
  bytes: Buffer;
  ahsLength: number;
  /** -1 without header digest. */
  headerDigestAt: number;
  dataAt: number;
  dataLength: number;
  /** -1 without data digest (or no data). */
  dataDigestAt: number;
}

export function crc(b: Uint8Array): number {
  return crc32c(b) >>> 0;
}

const pad = (n: number): number => (4 - (n & 3)) & 3;

export function encode(p: OutPdu, hd: boolean, dd: boolean): Image {
  const ahs = p.ahs ?? Buffer.alloc(0);
  const data = p.data ?? Buffer.alloc(0);
  const bhs = Buffer.from(p.bhs);
  bhs[4] = ahs.length >> 2;
  bhs[5] = (data.length >>> 16) & 0xff;
  bhs[6] = (data.length >>> 8) & 0xff;
  bhs[7] = data.length & 0xff;
  const header = 48 + ahs.length;
  const headerDigestAt = hd ? header : -1;
  const dataAt = header + (hd ? 4 : 0);
  const padded = data.length + pad(data.length);
  const dataDigestAt = dd && data.length > 0 ? dataAt + padded : -1;
  const total = dataAt + (data.length > 0 ? padded + (dd ? 4 : 0) : 0);
  const bytes = Buffer.alloc(total);
  bhs.copy(bytes, 0);
  ahs.copy(bytes, 48);
  data.copy(bytes, dataAt);
  const img: Image = { bytes, ahsLength: ahs.length, headerDigestAt, dataAt, dataLength: data.length, dataDigestAt };
  refreshDigests(img);
  return img;
}

/** Recompute the digests over what the image now holds at its original positions. */
export function refreshDigests(img: Image): void {
  const b = img.bytes;
  if (img.headerDigestAt >= 0 && img.headerDigestAt + 4 <= b.length) {
    b.writeUInt32LE(crc(b.subarray(0, img.headerDigestAt)), img.headerDigestAt);
  }
  if (img.dataDigestAt >= 0 && img.dataDigestAt + 4 <= b.length) {
    b.writeUInt32LE(crc(b.subarray(img.dataAt, img.dataDigestAt)), img.dataDigestAt);
  }
}

/** The bytes a PDU with this header occupies, as a reader with these digest settings frames it. */
export function framedLength(header: Buffer, hd: boolean, dd: boolean): number {
  const ahs = header[4]! * 4;
  const dsl = (header[5]! << 16) | (header[6]! << 8) | header[7]!;
  return 48 + ahs + (hd ? 4 : 0) + (dsl === 0 ? 0 : dsl + pad(dsl) + (dd ? 4 : 0));
}

export function dataSegmentLength(bhs: Buffer): number {
  return (bhs[5]! << 16) | (bhs[6]! << 8) | bhs[7]!;
}

export function textOf(pairs: readonly (readonly [string, string])[]): Buffer {
  return Buffer.from(pairs.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}

export function parseText(data: Buffer): Map<string, string> {
  const m = new Map<string, string>();
  for (const item of data.toString('latin1').split('\0')) {
    const eq = item.indexOf('=');
    if (eq > 0) m.set(item.slice(0, eq), item.slice(eq + 1));
  }
  return m;
}

// ---- initiator BHS builders ----

function bhs(op: number, immediate: boolean, flags: number): Buffer {
  const b = Buffer.alloc(48);
  b[0] = (immediate ? 0x40 : 0) | op;
  b[1] = flags;
  return b;
}

export interface LoginFields {
  csg: number;
  nsg: number;
  transit: boolean;
  cont?: boolean;
  isid: Buffer;
  tsih: number;
  itt: number;
  cid: number;
  cmdSN: number;
  expStatSN: number;
}

export function loginBhs(f: LoginFields): Buffer {
  const b = bhs(OP.LOGIN, true, (f.transit ? 0x80 : 0) | (f.cont ? 0x40 : 0) | (f.csg << 2) | (f.transit ? f.nsg : 0));
  f.isid.copy(b, 8);
  b.writeUInt16BE(f.tsih, 14);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt16BE(f.cid, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  return b;
}

export interface CommandFields {
  immediate?: boolean;
  final: boolean;
  read: boolean;
  write: boolean;
  attr: number;
  lun: number;
  itt: number;
  edtl: number;
  cmdSN: number;
  expStatSN: number;
  cdb: Buffer;
}

export function commandBhs(f: CommandFields): Buffer {
  const b = bhs(OP.SCSI_CMD, f.immediate ?? false, (f.final ? 0x80 : 0) | (f.read ? 0x40 : 0) | (f.write ? 0x20 : 0) | (f.attr & 7));
  b[9] = f.lun;
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.edtl >>> 0, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  f.cdb.copy(b, 32, 0, 16);
  return b;
}

export function dataOutBhs(f: { final: boolean; lun: number; itt: number; ttt: number; expStatSN: number; dataSN: number; offset: number }): Buffer {
  const b = bhs(OP.DATA_OUT, false, f.final ? 0x80 : 0);
  b[9] = f.lun;
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  b.writeUInt32BE(f.dataSN >>> 0, 36);
  b.writeUInt32BE(f.offset >>> 0, 40);
  return b;
}

export function nopOutBhs(f: { immediate: boolean; itt: number; ttt: number; cmdSN: number; expStatSN: number; lun?: number }): Buffer {
  const b = bhs(OP.NOP_OUT, f.immediate, 0x80);
  b[9] = f.lun ?? 0;
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  return b;
}

export function tmfBhs(f: { immediate: boolean; fn: number; lun: number; itt: number; rtt: number; cmdSN: number; expStatSN: number; refCmdSN: number }): Buffer {
  const b = bhs(OP.TMF, f.immediate, 0x80 | (f.fn & 0x7f));
  b[9] = f.lun;
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.rtt >>> 0, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  b.writeUInt32BE(f.refCmdSN >>> 0, 32);
  return b;
}

export function textBhs(f: { immediate: boolean; final: boolean; cont: boolean; itt: number; ttt: number; cmdSN: number; expStatSN: number }): Buffer {
  const b = bhs(OP.TEXT, f.immediate, (f.final ? 0x80 : 0) | (f.cont ? 0x40 : 0));
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  return b;
}

export function logoutBhs(f: { immediate: boolean; reason: number; itt: number; cid: number; cmdSN: number; expStatSN: number }): Buffer {
  const b = bhs(OP.LOGOUT, f.immediate, 0x80 | (f.reason & 0x7f));
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt16BE(f.cid, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  return b;
}

export function snackBhs(f: { type: number; itt: number; ttt: number; expStatSN: number; begRun: number; runLength: number }): Buffer {
  const b = bhs(OP.SNACK, false, 0x80 | (f.type & 0x0f));
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  b.writeUInt32BE(f.begRun >>> 0, 40);
  b.writeUInt32BE(f.runLength >>> 0, 44);
  return b;
}

// ---- CDBs ----

export function cdb(bytes: number[]): Buffer {
  const c = Buffer.alloc(16);
  Buffer.from(bytes).copy(c);
  return c;
}

export function rw10(op: 0x28 | 0x2a, lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = op;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}

export function rw16(op: 0x88 | 0x8a, lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = op;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c.writeUInt32BE(blocks, 10);
  return c;
}
