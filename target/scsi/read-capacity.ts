/**
 * READ CAPACITY (10) and (16), SBC-4 5.20-5.21. The obsolete PMI / LOGICAL BLOCK ADDRESS pair is
 * still checked as SBC-3 defined it: an LBA without PMI is an invalid field.
 */
import { putU32, putU64, u32, u64 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { invalidFieldInCdb } from './sense.js';
import type { ScsiResult, ScsiTask } from './task.js';
import { dataIn } from './transfer.js';

export async function readCapacity10(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const cdb = task.cdb;
  if ((cdb[8] & 0x01) === 0 && u32(cdb, 2) !== 0) throw invalidFieldInCdb(2);
  const d = new Uint8Array(8);
  // A capacity the 32-bit field cannot hold reads FFFFFFFFh: the host then asks READ CAPACITY (16).
  putU32(d, 0, Math.min(lu.volume.blockCount - 1, 0xffffffff));
  putU32(d, 4, lu.volume.blockSize);
  return dataIn(d, 8);
}

export async function readCapacity16(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const cdb = task.cdb;
  if ((cdb[14] & 0x01) === 0 && u64(cdb, 2) !== 0n) throw invalidFieldInCdb(2);
  const d = new Uint8Array(32);
  putU64(d, 0, lu.volume.blockCount - 1);
  putU32(d, 8, lu.volume.blockSize);
  // Byte 12 P_TYPE/PROT_EN = 0 (no protection information); 13: one logical block per physical
  // block (libiscsi's GET LBA STATUS test assumes that); 14-15: lowest aligned LBA 0, and on a
  // thin LU LBPME plus LBPRZ: a deallocated block reads as zeroes, which discard guarantees.
  if (lu.thin) d[14] = 0x80 | 0x40;
  return dataIn(d, u32(cdb, 10));
}
