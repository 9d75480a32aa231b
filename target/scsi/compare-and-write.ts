/**
 * COMPARE AND WRITE (SBC-4 5.3): the Data-Out buffer holds N blocks to compare and N blocks to
 * write. Both halves arrive before anything is locked (a slow host must not hold the range);
 * then, under the LU's range lock, which every command that writes blocks takes, the blocks are
 * read, compared, and written only when they match. So no other write lands in between, and a
 * miscompare leaves the medium untouched: MISCOMPARE with the offset of the first differing byte.
 */
import { maxCompareAndWriteBlocks } from './block-limits.js';
import { u64 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { writeArea } from './read-write.js';
import { Asc, CheckCondition, SenseKey, invalidFieldInCdb, lbaOutOfRange } from './sense.js';
import { TaskAbortedError, type ScsiResult, type ScsiTask, type TaskIo } from './task.js';
import { good, refuseShortDataOut } from './transfer.js';
import { firstDifference } from './verify.js';

export async function compareAndWrite(lu: LogicalUnit, task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
  const cdb = task.cdb;
  const blocks = cdb[13];
  if (blocks > maxCompareAndWriteBlocks(lu)) throw invalidFieldInCdb(13);
  const start = u64(cdb, 2);
  if (start >= BigInt(lu.volume.blockCount) || start + BigInt(blocks) > BigInt(lu.volume.blockCount)) throw lbaOutOfRange();
  if (blocks === 0) {
    // Data-Out for no blocks is a host that got the length wrong, e.g. 256 blocks truncated into
    // the one-byte field: refused rather than silently doing nothing.
    if (task.expectedLength > 0) throw invalidFieldInCdb(13);
    return good();
  }
  const lba = Number(start);
  const bytes = blocks * lu.volume.blockSize;
  // Half a COMPARE AND WRITE is no COMPARE AND WRITE: a short EDTL is refused, not clipped.
  const refused = refuseShortDataOut(task, 2 * bytes);
  if (refused) return refused;
  const expected = new Uint8Array(bytes);
  const replacement = new Uint8Array(bytes);
  await io.receiveData(expected);
  await io.receiveData(replacement);
  const unlock = await lu.locks.acquire(lba, blocks);
  try {
    if (io.aborted) throw new TaskAbortedError();
    const current = await lu.volume.read(lba, blocks);
    let at: number;
    try {
      at = firstDifference(expected, current.data);
    } finally {
      current.release();
    }
    if (at >= 0) throw new CheckCondition({ key: SenseKey.MISCOMPARE, asc: Asc.MISCOMPARE_DURING_VERIFY, information: at });
    await writeArea(lu, io, lba, blocks, (cdb[1] & 0x08) !== 0, async (area) => area.set(replacement));
  } finally {
    unlock();
  }
  return good();
}
