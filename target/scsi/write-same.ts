/**
 * WRITE SAME (10) and (16), SBC-4 5.48-5.49: one block of Data-Out (or none: NDOB, zeroes)
 * written to every block of the range, in buffer-area-sized chunks, each under the range lock.
 * With UNMAP (thin LUs only; the dispatcher refuses the bit elsewhere) the range is deallocated
 * instead, whatever the block holds: SBC-4 lets the device server unmap rather than write, and
 * hosts (libiscsi, Linux) expect the blocks to read as zeroes afterwards (LBPRZ). NUMBER OF LOGICAL BLOCKS zero means
 * "to the last LBA" (WSNZ=0), bounded like any other length by MAXIMUM WRITE SAME LENGTH.
 */
import { maxWriteSameBlocks } from './block-limits.js';
import { u16, u32, u64 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { lockedWrite } from './read-write.js';
import { invalidFieldInCdb, lbaOutOfRange } from './sense.js';
import type { ScsiResult, ScsiTask, TaskIo } from './task.js';
import { good, refuseShortDataOut } from './transfer.js';
import { discardLocked } from './unmap.js';

interface WriteSameCdb {
  readonly lba: bigint;
  readonly blocks: number;
  readonly lengthByte: number;
  readonly unmap: boolean;
  readonly ndob: boolean;
}

function decode(cdb: Uint8Array): WriteSameCdb {
  const unmap = (cdb[1] & 0x08) !== 0;
  if (cdb[0] === 0x93) return { lba: u64(cdb, 2), blocks: u32(cdb, 10), lengthByte: 10, unmap, ndob: (cdb[1] & 0x01) !== 0 };
  return { lba: BigInt(u32(cdb, 2)), blocks: u16(cdb, 7), lengthByte: 7, unmap, ndob: false };
}

export async function writeSame(lu: LogicalUnit, task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
  const ws = decode(task.cdb);
  const capacity = lu.volume.blockCount;
  if (ws.lba >= BigInt(capacity)) throw lbaOutOfRange();
  const lba = Number(ws.lba);
  const blocks = ws.blocks === 0 ? capacity - lba : ws.blocks;
  if (blocks > maxWriteSameBlocks(lu)) throw invalidFieldInCdb(ws.lengthByte);
  if (lba + blocks > capacity) throw lbaOutOfRange();
  const bs = lu.volume.blockSize;
  const block = new Uint8Array(bs);
  if (!ws.ndob) {
    const refused = refuseShortDataOut(task, bs);
    if (refused) return refused;
    await io.receiveData(block);
  }
  if (ws.unmap) {
    await discardLocked(lu, lba, blocks);
    return good();
  }
  await writePattern(lu, io, lba, blocks, block);
  return good();
}

/** `block` repeated over the range, one buffer area at a time (each durable before the next with `fua`). */
export async function writePattern(lu: LogicalUnit, io: TaskIo, lba: number, blocks: number, block: Uint8Array, fua = false): Promise<void> {
  const chunk = lu.volume.maxTransferBlocks;
  for (let done = 0; done < blocks; done += chunk) {
    const n = Math.min(chunk, blocks - done);
    await lockedWrite(lu, io, lba + done, n, fua, async (area) => {
      Buffer.from(area.buffer, area.byteOffset, area.length).fill(block);
    });
  }
}
