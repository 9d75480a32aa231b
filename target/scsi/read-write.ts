/**
 * READ and WRITE (6/10/12/16), SBC-4 5.14-5.17 and 5.39-5.42. A write follows the seed's sequence:
 * a buffer area first (prepareWrite, which may wait for buffer memory), then the host's data into
 * it (receiveData: only now does the transport send R2T), then commit. Until commit the
 * reservation is ours, so every way out before it gives the area back.
 */
import { decodeRw10, decodeRw12, decodeRw16, decodeRw6, type BlockRange, type ReadWriteCdb } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { invalidFieldInCdb, lbaOutOfRange } from './sense.js';
import { Status, TaskAbortedError, type ScsiResult, type ScsiTask, type TaskIo } from './task.js';
import { good, refuseShortDataOut } from './transfer.js';

type Decoder = (cdb: Uint8Array) => ReadWriteCdb;

/**
 * LBA OUT OF RANGE when the range runs past the last LBA, or (for a zero-length range) when the
 * LBA itself is past it. Returns the LBA as a number: it is below blockCount, a safe integer.
 */
export function checkRange(lu: LogicalUnit, range: BlockRange): number {
  const capacity = BigInt(lu.volume.blockCount);
  if (range.lba >= capacity || range.lba + BigInt(range.blocks) > capacity) throw lbaOutOfRange();
  return Number(range.lba);
}

/** SBC-4: a TRANSFER LENGTH above the block limits page's MAXIMUM TRANSFER LENGTH is an invalid field. */
export function checkTransferLength(lu: LogicalUnit, range: BlockRange): void {
  if (range.blocks > lu.volume.maxTransferBlocks) throw invalidFieldInCdb(range.lengthByte);
}

async function read(lu: LogicalUnit, task: ScsiTask, io: TaskIo, decode: Decoder): Promise<ScsiResult> {
  const rw = decode(task.cdb);
  checkTransferLength(lu, rw);
  const lba = checkRange(lu, rw);
  if (rw.blocks === 0) return good();
  const r = await lu.volume.read(lba, rw.blocks);
  if (io.aborted) {
    r.release();
    throw new TaskAbortedError();
  }
  if (r.data.length !== rw.blocks * lu.volume.blockSize) {
    r.release();
    throw new Error(`volume read returned ${r.data.length} bytes for ${rw.blocks} blocks`);
  }
  return { status: Status.GOOD, data: r.data, release: () => r.release() };
}

async function write(lu: LogicalUnit, task: ScsiTask, io: TaskIo, decode: Decoder): Promise<ScsiResult> {
  const rw = decode(task.cdb);
  checkTransferLength(lu, rw);
  const lba = checkRange(lu, rw);
  if (rw.blocks === 0) return good();
  const refused = refuseShortDataOut(task, rw.blocks * lu.volume.blockSize);
  if (refused) return refused;
  const reservation = await lu.volume.prepareWrite(lba, rw.blocks);
  try {
    if (io.aborted) throw new TaskAbortedError();
    await io.receiveData(reservation.area);
    // Aborted while the data was arriving: the host no longer expects this write to happen.
    if (io.aborted) throw new TaskAbortedError();
  } catch (e) {
    reservation.abandon();
    throw e;
  }
  // From commit on, the buffer area belongs to the IO scheduler, whatever the outcome.
  await reservation.commit({ fua: rw.fua });
  return good();
}

export const read6 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => read(lu, t, io, decodeRw6);
export const read10 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => read(lu, t, io, decodeRw10);
export const read12 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => read(lu, t, io, decodeRw12);
export const read16 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => read(lu, t, io, decodeRw16);
export const write6 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => write(lu, t, io, decodeRw6);
export const write10 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => write(lu, t, io, decodeRw10);
export const write12 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => write(lu, t, io, decodeRw12);
export const write16 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => write(lu, t, io, decodeRw16);
