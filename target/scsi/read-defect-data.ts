/**
 * READ DEFECT DATA (10) and (12), SBC-4 5.18-5.19: kura's media have no grown or primary defects
 * a host could act on (a failing block is a MEDIUM ERROR with its LBA), so both lists are empty.
 * The lists asked for are reported as present (PLISTV/GLISTV) and empty, in the format asked for.
 */
import { putU16, u16, u32 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import type { ScsiResult, ScsiTask } from './task.js';
import { dataIn } from './transfer.js';

export async function readDefectData10(_lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const d = new Uint8Array(4);
  d[1] = task.cdb[2] & 0x1f; // PLISTV, GLISTV, DEFECT LIST FORMAT; DEFECT LIST LENGTH 0
  return dataIn(d, u16(task.cdb, 7));
}

export async function readDefectData12(_lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const d = new Uint8Array(8);
  d[1] = task.cdb[1] & 0x1f;
  putU16(d, 2, 0); // GENERATION CODE: the (empty) list never changes
  return dataIn(d, u32(task.cdb, 6));
}
