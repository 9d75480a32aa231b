/**
 * GET LBA STATUS (SBC-4 5.7): from the starting LBA on, which blocks are mapped and which are
 * deallocated, as LBA status descriptors (as many as the allocation length holds, at least the
 * first). A thin LU asks the volume (the media's allocation: holes in files, chunks in memory);
 * a fully provisioned LU has every block mapped.
 */
import type { AllocationExtent } from '../../firmware/volume.js';
import { putU32, putU64, u32, u64 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { lbaOutOfRange } from './sense.js';
import type { ScsiResult, ScsiTask } from './task.js';
import { dataIn } from './transfer.js';

const HEADER = 8;
const DESCRIPTOR = 16;
const MAPPED = 0x0;
const DEALLOCATED = 0x1;

export async function getLbaStatus(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const start = u64(task.cdb, 2);
  const allocationLength = u32(task.cdb, 10);
  const capacity = lu.volume.blockCount;
  if (start >= BigInt(capacity)) throw lbaOutOfRange();
  const lba = Number(start);
  // NUMBER OF LOGICAL BLOCKS is a 32-bit field: one query never needs to look further.
  const blocks = Math.min(capacity - lba, 0xffffffff);
  const extents: readonly AllocationExtent[] = lu.thin && lu.volume.allocationStatus
    ? await lu.volume.allocationStatus(lba, blocks)
    : [{ lba, blocks, mapped: true }];
  const fit = Math.max(1, Math.floor((allocationLength - HEADER) / DESCRIPTOR));
  const shown = extents.slice(0, fit);
  const d = new Uint8Array(HEADER + DESCRIPTOR * shown.length);
  putU32(d, 0, d.length - 4);
  shown.forEach((e, i) => {
    const at = HEADER + i * DESCRIPTOR;
    putU64(d, at, e.lba);
    putU32(d, at + 8, e.blocks);
    d[at + 12] = e.mapped ? MAPPED : DEALLOCATED;
  });
  return dataIn(d, allocationLength);
}
