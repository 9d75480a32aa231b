/**
 * READ and WRITE (6/10/12/16), SBC-4 5.14-5.17 and 5.39-5.42. A write follows the seed's sequence:
 * the LU's range lock on its blocks, a buffer area (prepareWrite, which may wait for buffer
 * memory), then the host's data into it (receiveData: only now does the transport send R2T), then
 * commit. The other commands that write blocks reuse lockedWrite / writeArea.
 */
import { decodeRw10, decodeRw12, decodeRw16, decodeRw6, type BlockRange, type ReadWriteCdb } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { invalidFieldInCdb, lbaOutOfRange } from './sense.js';
import { Status, TaskAbortedError, type ScsiResult, type ScsiTask, type TaskIo } from './task.js';
import { clipDataOut, good } from './transfer.js';

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
  const { blocks, spdtl } = clipDataOut(task, rw.blocks, lu.volume.blockSize);
  if (blocks > 0) await lockedWrite(lu, io, lba, blocks, rw.fua, (area) => io.receiveData(area));
  return spdtl === undefined ? good() : { status: Status.GOOD, spdtl };
}

/** A write that fills its buffer area itself (from Data-Out, a pattern, a merge, ...). */
export type Fill = (area: Uint8Array) => Promise<void>;

/** writeArea under the LU's range lock on the blocks (see range-lock.ts for why and in what order). */
export async function lockedWrite(lu: LogicalUnit, io: TaskIo, lba: number, blocks: number, fua: boolean, fill: Fill): Promise<void> {
  const unlock = await lu.locks.acquire(lba, blocks);
  try {
    await writeArea(lu, io, lba, blocks, fua, fill);
  } finally {
    unlock();
  }
}

/**
 * One write through a buffer area: reserve it (may wait for buffer memory), fill it, commit.
 * Until commit the reservation is ours, so every way out before it gives the area back.
 */
export async function writeArea(lu: LogicalUnit, io: TaskIo, lba: number, blocks: number, fua: boolean, fill: Fill): Promise<void> {
  const reservation = await lu.volume.prepareWrite(lba, blocks);
  try {
    if (io.aborted) throw new TaskAbortedError();
    await fill(reservation.area);
    // Aborted while the data was arriving: the host no longer expects this write to happen.
    if (io.aborted) throw new TaskAbortedError();
  } catch (e) {
    reservation.abandon();
    throw e;
  }
  // From commit on, the buffer area belongs to the IO scheduler, whatever the outcome.
  await reservation.commit({ fua });
}

export const read6 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => read(lu, t, io, decodeRw6);
export const read10 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => read(lu, t, io, decodeRw10);
export const read12 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => read(lu, t, io, decodeRw12);
export const read16 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => read(lu, t, io, decodeRw16);
export const write6 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => write(lu, t, io, decodeRw6);
export const write10 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => write(lu, t, io, decodeRw10);
export const write12 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => write(lu, t, io, decodeRw12);
export const write16 = (lu: LogicalUnit, t: ScsiTask, io: TaskIo) => write(lu, t, io, decodeRw16);
