/**
 * SYNCHRONIZE CACHE (10/16), SBC-4 5.24-5.25. The volume flushes as a whole, so the LBA range is
 * only range-checked. With IMMED the status goes out once the CDB is validated; a later flush
 * failure can then only be logged.
 */
import { decodeSyncCache } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { lbaOutOfRange } from './sense.js';
import type { ScsiResult, ScsiTask } from './task.js';
import { good } from './transfer.js';

export async function synchronizeCache(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const s = decodeSyncCache(task.cdb);
  const capacity = BigInt(lu.volume.blockCount);
  if (s.lba >= capacity || s.lba + BigInt(s.blocks) > capacity) throw lbaOutOfRange();
  if (s.immed) {
    lu.volume.flush().catch((err: unknown) => {
      lu.logger.error({ err, lun: lu.lun, tag: task.tag }, 'SYNCHRONIZE CACHE (IMMED) flush failed after GOOD status');
    });
    return good();
  }
  await lu.volume.flush();
  return good();
}
