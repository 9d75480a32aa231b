/**
 * Vital product data pages (SPC-4 7.8, SBC-4 6.6). Page 83h depends on the I_T nexus: its target
 * port designators name the port the command came through.
 */
import { maxAtomicBlocks, maxCompareAndWriteBlocks, maxWriteSameBlocks, MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS } from './block-limits.js';
import { putU16, putU32, putU64 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import type { Nexus } from './task.js';

export const PERIPHERAL_NO_LU = 0x7f;
const PERIPHERAL_DISK = 0x00;

const SUPPORTED = 0x00;
const UNIT_SERIAL = 0x80;
const DEVICE_IDENTIFICATION = 0x83;
const BLOCK_LIMITS = 0xb0;
const BLOCK_DEVICE_CHARACTERISTICS = 0xb1;
const LOGICAL_BLOCK_PROVISIONING = 0xb2;

type PageBuilder = (lu: LogicalUnit, nexus: Nexus) => Uint8Array;

/** Ascending page codes, as page 00h must list them; the third element says whether the LU has it. */
const PAGES: ReadonlyArray<readonly [number, PageBuilder, ((lu: LogicalUnit) => boolean)?]> = [
  [SUPPORTED, supportedPages],
  [UNIT_SERIAL, unitSerialNumber],
  [DEVICE_IDENTIFICATION, deviceIdentification],
  [BLOCK_LIMITS, blockLimits],
  [BLOCK_DEVICE_CHARACTERISTICS, blockDeviceCharacteristics],
  [LOGICAL_BLOCK_PROVISIONING, logicalBlockProvisioning, (lu) => lu.thin],
];

export function vpdPage(lu: LogicalUnit, code: number, nexus: Nexus): Uint8Array | undefined {
  const entry = PAGES.find(([c, , has]) => c === code && (has?.(lu) ?? true));
  return entry ? entry[1](lu, nexus) : undefined;
}

function page(code: number, body: Uint8Array | number): Uint8Array {
  const length = typeof body === 'number' ? body : body.length;
  const p = new Uint8Array(4 + length);
  p[0] = PERIPHERAL_DISK;
  p[1] = code;
  putU16(p, 2, length);
  if (typeof body !== 'number') p.set(body, 4);
  return p;
}

function supportedPages(lu: LogicalUnit): Uint8Array {
  return page(SUPPORTED, Uint8Array.from(PAGES.filter(([, , has]) => has?.(lu) ?? true), ([c]) => c));
}

function unitSerialNumber(lu: LogicalUnit): Uint8Array {
  return page(UNIT_SERIAL, asciiBytes(lu.identity.serial));
}

// Designator descriptor fields (SPC-4 7.8.6.1).
const PROTOCOL_ISCSI = 0x5;
const CODE_SET_BINARY = 0x1;
const CODE_SET_ASCII = 0x2;
const CODE_SET_UTF8 = 0x3;
const ASSOC_LU = 0x0;
const ASSOC_TARGET_PORT = 0x1;
const ASSOC_TARGET_DEVICE = 0x2;
const TYPE_T10_VENDOR_ID = 0x1;
const TYPE_NAA = 0x3;
const TYPE_RELATIVE_TARGET_PORT = 0x4;
const TYPE_TARGET_PORT_GROUP = 0x5;
const TYPE_SCSI_NAME_STRING = 0x8;

function designator(codeSet: number, assoc: number, type: number, body: Uint8Array): Uint8Array {
  const d = new Uint8Array(4 + body.length);
  // PIV=1 with the iSCSI protocol identifier for port and device associations; LU designators
  // are protocol-independent (PIV=0, protocol identifier ignored).
  const piv = assoc !== ASSOC_LU;
  d[0] = ((piv ? PROTOCOL_ISCSI : 0) << 4) | codeSet;
  d[1] = (piv ? 0x80 : 0) | (assoc << 4) | type;
  d[3] = body.length;
  d.set(body, 4);
  return d;
}

/** SCSI name strings are null-terminated UTF-8, padded with nulls to a multiple of 4 (SPC-4 7.8.6.11). */
function scsiNameString(name: string): Uint8Array {
  const utf8 = new TextEncoder().encode(name);
  const b = new Uint8Array((utf8.length + 4) & ~3);
  b.set(utf8);
  return b;
}

function deviceIdentification(lu: LogicalUnit, nexus: Nexus): Uint8Array {
  const id = lu.identity;
  const ds: Uint8Array[] = [];
  if (id.naa !== undefined) {
    const naa = new Uint8Array(16);
    putU64(naa, 0, id.naa >> 64n);
    putU64(naa, 8, id.naa & 0xffffffffffffffffn);
    ds.push(designator(CODE_SET_BINARY, ASSOC_LU, TYPE_NAA, naa));
  }
  // T10 vendor ID: vendor, then product identification and serial as SPC-4 recommends.
  ds.push(designator(CODE_SET_ASCII, ASSOC_LU, TYPE_T10_VENDOR_ID, asciiBytes(id.vendor + id.product + id.serial)));
  const rtp = new Uint8Array(4);
  putU16(rtp, 2, nexus.relativeTargetPort);
  ds.push(designator(CODE_SET_BINARY, ASSOC_TARGET_PORT, TYPE_RELATIVE_TARGET_PORT, rtp));
  const tpg = new Uint8Array(4);
  putU16(tpg, 2, lu.targetPortGroup(nexus.relativeTargetPort));
  ds.push(designator(CODE_SET_BINARY, ASSOC_TARGET_PORT, TYPE_TARGET_PORT_GROUP, tpg));
  ds.push(designator(CODE_SET_UTF8, ASSOC_TARGET_PORT, TYPE_SCSI_NAME_STRING, scsiNameString(lu.targetPortName(nexus))));
  ds.push(designator(CODE_SET_UTF8, ASSOC_TARGET_DEVICE, TYPE_SCSI_NAME_STRING, scsiNameString(lu.target.targetName)));
  return page(DEVICE_IDENTIFICATION, concat(ds));
}

function blockLimits(lu: LogicalUnit): Uint8Array {
  const p = page(BLOCK_LIMITS, 0x3c);
  const v = lu.volume;
  const maxTransfer = Math.min(v.maxTransferBlocks, 0xffffffff);
  putU16(p, 6, lu.optimalTransferGranularity);
  putU32(p, 8, maxTransfer);
  putU32(p, 12, maxTransfer); // OPTIMAL TRANSFER LENGTH: the largest the buffer memory takes at once
  p[5] = maxCompareAndWriteBlocks(lu); // byte 4 WSNZ=0: WRITE SAME of 0 blocks means "to the end"
  if (lu.thin) {
    putU32(p, 20, MAX_UNMAP_BLOCKS);
    putU32(p, 24, MAX_UNMAP_DESCRIPTORS);
    // OPTIMAL UNMAP GRANULARITY: a file system block; UGAVALID=0, any alignment is accepted.
    putU32(p, 28, lu.optimalTransferGranularity);
  }
  putU64(p, 36, maxWriteSameBlocks(lu));
  // WRITE ATOMIC(16): any alignment and granularity, no atomic boundaries (bytes 56..63 zero).
  putU32(p, 44, maxAtomicBlocks(lu));
  return p;
}

/**
 * Logical block provisioning (B2h), thin LUs only: UNMAP, WRITE SAME(16) and (10) with UNMAP,
 * deallocated blocks read as zeroes (LBPRZ 001b), no anchored state, no threshold reporting.
 */
function logicalBlockProvisioning(): Uint8Array {
  const p = page(LOGICAL_BLOCK_PROVISIONING, 4);
  p[5] = 0x80 | 0x40 | 0x20 | 0x04; // LBPU, LBPWS, LBPWS10, LBPRZ=001b
  p[6] = 0x02; // PROVISIONING TYPE: thin
  return p;
}

function blockDeviceCharacteristics(lu: LogicalUnit): Uint8Array {
  const p = page(BLOCK_DEVICE_CHARACTERISTICS, 0x3c);
  putU16(p, 4, 0x0001); // MEDIUM ROTATION RATE: non-rotating medium
  // WABEREQ 01b: after SANITIZE BLOCK ERASE (thin LUs) reads succeed, returning zeroes.
  if (lu.thin) p[7] = 0x40;
  return p;
}

function asciiBytes(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
