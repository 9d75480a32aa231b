/**
 * CDB field decoders. Multi-byte fields are big-endian (SPC-4 4.3.1). Each decoded field keeps the
 * offset of its first byte, so a handler rejecting it can point the sense-key specific field
 * pointer at it.
 */

export function u16(b: Uint8Array, at: number): number {
  return (b[at] << 8) | b[at + 1];
}

export function u24(b: Uint8Array, at: number): number {
  return (b[at] << 16) | (b[at + 1] << 8) | b[at + 2];
}

export function u32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) >>> 0) + ((b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]);
}

export function u64(b: Uint8Array, at: number): bigint {
  return (BigInt(u32(b, at)) << 32n) | BigInt(u32(b, at + 4));
}

export function putU16(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
}

export function putU24(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 16) & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = v & 0xff;
}

export function putU32(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 24) & 0xff;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}

export function putU64(b: Uint8Array, at: number, v: bigint | number): void {
  const x = BigInt(v);
  putU32(b, at, Number((x >> 32n) & 0xffffffffn));
  putU32(b, at + 4, Number(x & 0xffffffffn));
}

/** The LBA/length part of a READ, WRITE, VERIFY or SYNCHRONIZE CACHE CDB. */
export interface BlockRange {
  readonly lba: bigint;
  readonly blocks: number;
  /** Offset of the TRANSFER / VERIFICATION LENGTH / NUMBER OF BLOCKS field (field pointer). */
  readonly lengthByte: number;
}

export interface ReadWriteCdb extends BlockRange {
  readonly dpo: boolean;
  readonly fua: boolean;
}

/** READ(6) / WRITE(6): 21-bit LBA, TRANSFER LENGTH 0 means 256 blocks (SBC-4 5.16). */
export function decodeRw6(cdb: Uint8Array): ReadWriteCdb {
  return {
    lba: BigInt(u24(cdb, 1) & 0x1fffff),
    blocks: cdb[4] === 0 ? 256 : cdb[4],
    lengthByte: 4,
    dpo: false,
    fua: false,
  };
}

export function decodeRw10(cdb: Uint8Array): ReadWriteCdb {
  return { lba: BigInt(u32(cdb, 2)), blocks: u16(cdb, 7), lengthByte: 7, ...dpoFua(cdb) };
}

export function decodeRw12(cdb: Uint8Array): ReadWriteCdb {
  return { lba: BigInt(u32(cdb, 2)), blocks: u32(cdb, 6), lengthByte: 6, ...dpoFua(cdb) };
}

export function decodeRw16(cdb: Uint8Array): ReadWriteCdb {
  return { lba: u64(cdb, 2), blocks: u32(cdb, 10), lengthByte: 10, ...dpoFua(cdb) };
}

function dpoFua(cdb: Uint8Array): { dpo: boolean; fua: boolean } {
  return { dpo: (cdb[1] & 0x10) !== 0, fua: (cdb[1] & 0x08) !== 0 };
}

/** VERIFY(10/12/16) share READ's layout; BYTCHK is byte 1 bits 2:1. */
export interface VerifyCdb extends BlockRange {
  readonly bytchk: number;
}

export function decodeVerify(cdb: Uint8Array): VerifyCdb {
  const r = cdb[0] === 0x8f ? decodeRw16(cdb) : cdb[0] === 0xaf ? decodeRw12(cdb) : decodeRw10(cdb);
  return { lba: r.lba, blocks: r.blocks, lengthByte: r.lengthByte, bytchk: (cdb[1] >> 1) & 0x03 };
}

export interface SyncCacheCdb extends BlockRange {
  readonly immed: boolean;
}

/** SYNCHRONIZE CACHE(10/16): NUMBER OF LOGICAL BLOCKS 0 means "to the end of the medium". */
export function decodeSyncCache(cdb: Uint8Array): SyncCacheCdb {
  const immed = (cdb[1] & 0x02) !== 0;
  if (cdb[0] === 0x91) return { lba: u64(cdb, 2), blocks: u32(cdb, 10), lengthByte: 10, immed };
  return { lba: BigInt(u32(cdb, 2)), blocks: u16(cdb, 7), lengthByte: 7, immed };
}
