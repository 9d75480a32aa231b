/**
 * ORWRITE (16), SBC-4 5.10: each block becomes the bitwise OR of what it held and the Data-Out
 * data. Read, merge and write happen under the range lock, so the merge cannot lose a concurrent
 * write. The merge goes through plain memory: at no point does the command hold two buffer
 * areas, which could deadlock the buffer memory against other commands doing the same.
 * A short EDTL is handled like WRITE: only the whole blocks it covers are merged.
 */
import { decodeRw16 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { checkRange, checkTransferLength, writeArea } from './read-write.js';
import { Status, TaskAbortedError, type ScsiResult, type ScsiTask, type TaskIo } from './task.js';
import { clipDataOut, good } from './transfer.js';

export async function orWrite(lu: LogicalUnit, task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
  const rw = decodeRw16(task.cdb);
  checkTransferLength(lu, rw);
  const lba = checkRange(lu, rw);
  const { blocks, spdtl } = clipDataOut(task, rw.blocks, lu.volume.blockSize);
  if (blocks > 0) {
    const merged = new Uint8Array(blocks * lu.volume.blockSize);
    await io.receiveData(merged);
    const unlock = await lu.locks.acquire(lba, blocks);
    try {
      if (io.aborted) throw new TaskAbortedError();
      const current = await lu.volume.read(lba, blocks);
      try {
        const old = current.data;
        for (let i = 0; i < merged.length; i++) merged[i] |= old[i]!;
      } finally {
        current.release();
      }
      await writeArea(lu, io, lba, blocks, rw.fua, async (area) => area.set(merged));
    } finally {
      unlock();
    }
  }
  return spdtl === undefined ? good() : { status: Status.GOOD, spdtl };
}
