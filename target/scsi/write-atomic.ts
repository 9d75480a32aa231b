/**
 * WRITE ATOMIC (16), SBC-4 5.44: the blocks are written as one unit. Here that is one buffer area
 * committed once, under the range lock: no other command that writes (WRITE, COMPARE AND WRITE,
 * WRITE SAME, UNMAP...) interleaves with it. No alignment, granularity or atomic boundary is
 * required (block limits page). A short EDTL is refused rather than clipped: half an atomic write
 * is not one. What it cannot promise: a crash or a medium error in the middle of the device write
 * may leave part of it applied (there is no journal below the buffer area).
 */
import { maxAtomicBlocks } from './block-limits.js';
import { u16, u64 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { checkRange, lockedWrite } from './read-write.js';
import { invalidFieldInCdb } from './sense.js';
import type { ScsiResult, ScsiTask, TaskIo } from './task.js';
import { good, refuseShortDataOut } from './transfer.js';

export async function writeAtomic16(lu: LogicalUnit, task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
  const cdb = task.cdb;
  const range = { lba: u64(cdb, 2), blocks: u16(cdb, 12), lengthByte: 12 };
  if (range.blocks > maxAtomicBlocks(lu)) throw invalidFieldInCdb(12);
  const lba = checkRange(lu, range);
  if (range.blocks === 0) return good();
  const refused = refuseShortDataOut(task, range.blocks * lu.volume.blockSize);
  if (refused) return refused;
  await lockedWrite(lu, io, lba, range.blocks, (cdb[1] & 0x08) !== 0, (area) => io.receiveData(area));
  return good();
}
