/**
 * PRE-FETCH (10) and (16), SBC-4 5.11-5.12: read the blocks so that later reads find them in the
 * medium's cache (the page cache of a file, qemu's cache behind NBD). CONDITION MET says they fit
 * in what kura is willing to read ahead at once; a range larger than that is not read at all and
 * answers GOOD. PREFETCH LENGTH zero means "to the last LBA". With IMMED the status goes out
 * first and the reads follow.
 */
import { u16, u32, u64 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { lbaOutOfRange } from './sense.js';
import { Status, type ScsiResult, type ScsiTask } from './task.js';
import { good } from './transfer.js';

/** The most a PRE-FETCH reads: the "cache" it may fill. */
export const PREFETCH_LIMIT_BYTES = 64 << 20;

export async function prefetch(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const cdb = task.cdb;
  const sixteen = cdb[0] === 0x90;
  const start = sixteen ? u64(cdb, 2) : BigInt(u32(cdb, 2));
  const length = sixteen ? u32(cdb, 10) : u16(cdb, 7);
  const capacity = lu.volume.blockCount;
  if (start >= BigInt(capacity) || start + BigInt(length) > BigInt(capacity)) throw lbaOutOfRange();
  const lba = Number(start);
  const blocks = length === 0 ? capacity - lba : length;
  if (blocks * lu.volume.blockSize > PREFETCH_LIMIT_BYTES) return good();
  const reading = readAhead(lu, lba, blocks);
  if ((cdb[1] & 0x02) !== 0) {
    reading.catch((err: unknown) => lu.logger.warn({ err, lba, blocks }, 'PRE-FETCH (IMMED) read failed after CONDITION MET'));
  } else {
    await reading;
  }
  return { status: Status.CONDITION_MET };
}

async function readAhead(lu: LogicalUnit, lba: number, blocks: number): Promise<void> {
  const chunk = lu.volume.maxTransferBlocks;
  for (let done = 0; done < blocks; done += chunk) {
    const r = await lu.volume.read(lba + done, Math.min(chunk, blocks - done));
    r.release();
  }
}
