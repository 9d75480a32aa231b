/**
 * REPORT LUNS (SPC-4 6.33), answered the same on every LUN, with or without a logical unit.
 * LUNs are single level: peripheral device addressing below 256, flat space addressing above.
 */
import { putU32, u32 } from './cdb.js';
import type { LogicalUnit, TargetContext } from './logical-unit.js';
import { invalidFieldInCdb } from './sense.js';
import type { ScsiResult, ScsiTask } from './task.js';
import { dataIn } from './transfer.js';

export const MAX_LUN = 0x3fff;

/** The 8-byte LUN field for a single-level LUN (SAM-5 4.7). */
export function encodeLun(lun: number): Uint8Array {
  const b = new Uint8Array(8);
  if (lun < 256) {
    b[1] = lun;
  } else {
    b[0] = 0x40 | (lun >> 8);
    b[1] = lun & 0xff;
  }
  return b;
}

export function reportLunsFor(target: TargetContext, task: ScsiTask): ScsiResult {
  const cdb = task.cdb;
  const select = cdb[2];
  const allocationLength = u32(cdb, 6);
  // SPC-4 allows refusing allocation lengths that cannot hold the header and one LUN.
  if (allocationLength < 16) throw invalidFieldInCdb(6);
  let luns: readonly number[];
  switch (select) {
    case 0x00: // all logical units except well-known ones
    case 0x02: // all logical units
      luns = target.lunList();
      break;
    case 0x01: // well-known logical units only: there are none
      luns = [];
      break;
    default:
      throw invalidFieldInCdb(2);
  }
  const d = new Uint8Array(8 + 8 * luns.length);
  putU32(d, 0, 8 * luns.length);
  luns.forEach((lun, i) => d.set(encodeLun(lun), 8 + 8 * i));
  return dataIn(d, allocationLength);
}

export async function reportLuns(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  return reportLunsFor(lu.target, task);
}
