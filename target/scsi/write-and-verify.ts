/**
 * WRITE AND VERIFY (10/12/16), SBC-4 5.45-5.47: the write goes to the medium with FUA (the verify
 * must read what is stored, not a cache), then the blocks are read back: BYTCHK 00b only checks
 * that they read, 01b also compares them with the Data-Out data (MISCOMPARE with the offset of
 * the first differing byte). Write and read-back happen under one range lock, so the compare sees
 * this command's data and no other write's. A short EDTL is handled like WRITE: only the whole
 * blocks it covers are written and verified.
 */
import { decodeRw10, decodeRw12, decodeRw16 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { checkRange, checkTransferLength, writeArea } from './read-write.js';
import { Asc, CheckCondition, SenseKey, invalidFieldInCdb } from './sense.js';
import { Status, type ScsiResult, type ScsiTask, type TaskIo } from './task.js';
import { clipDataOut, good } from './transfer.js';
import { firstDifference } from './verify.js';

export async function writeAndVerify(lu: LogicalUnit, task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
  const cdb = task.cdb;
  const rw = cdb[0] === 0x8e ? decodeRw16(cdb) : cdb[0] === 0xae ? decodeRw12(cdb) : decodeRw10(cdb);
  const bytchk = (cdb[1] >> 1) & 0x03;
  if (bytchk > 1) throw invalidFieldInCdb(1, 2);
  checkTransferLength(lu, rw);
  const lba = checkRange(lu, rw);
  const { blocks, spdtl } = clipDataOut(task, rw.blocks, lu.volume.blockSize);
  if (blocks > 0) {
    const unlock = await lu.locks.acquire(lba, blocks);
    try {
      let written: Uint8Array | undefined;
      await writeArea(lu, io, lba, blocks, true, async (area) => {
        await io.receiveData(area);
        if (bytchk === 1) written = Uint8Array.from(area);
      });
      const back = await lu.volume.read(lba, blocks);
      try {
        const at = written ? firstDifference(written, back.data) : -1;
        if (at >= 0) throw new CheckCondition({ key: SenseKey.MISCOMPARE, asc: Asc.MISCOMPARE_DURING_VERIFY, information: at });
      } finally {
        back.release();
      }
    } finally {
      unlock();
    }
  }
  return spdtl === undefined ? good() : { status: Status.GOOD, spdtl };
}
