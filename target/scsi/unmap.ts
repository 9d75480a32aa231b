/**
 * UNMAP (SBC-4 5.31), thin LUs only. The whole parameter list is validated before any block is
 * deallocated, so a bad descriptor leaves the medium untouched. Each descriptor's range is
 * discarded under the LU's range lock (COMPARE AND WRITE must not see it change halfway).
 */
import { MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS } from './block-limits.js';
import { u16, u32, u64 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { invalidFieldInParameterList, lbaOutOfRange } from './sense.js';
import type { ScsiResult, ScsiTask, TaskIo } from './task.js';
import { good, receiveParameterList } from './transfer.js';

const HEADER = 8;
const DESCRIPTOR = 16;

export interface Extent {
  readonly lba: number;
  readonly blocks: number;
}

export async function unmap(lu: LogicalUnit, task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
  const list = await receiveParameterList(task, io, u16(task.cdb, 7), HEADER);
  if (!(list instanceof Uint8Array)) return list;
  const extents = parseUnmapList(lu, list);
  await Promise.all(extents.map((e) => discardLocked(lu, e.lba, e.blocks)));
  return good();
}

/** The descriptors' ranges, zero-length ones dropped; throws the CHECK CONDITION for a bad list. */
export function parseUnmapList(lu: LogicalUnit, list: Uint8Array): Extent[] {
  // A descriptor data length past the end of the list, or not a multiple of 16, counts the whole
  // descriptors actually sent (SBC-4: a truncated descriptor is ignored).
  const available = Math.min(u16(list, 2), list.length - HEADER);
  const count = Math.floor(available / DESCRIPTOR);
  if (count > MAX_UNMAP_DESCRIPTORS) throw invalidFieldInParameterList(2);
  const capacity = BigInt(lu.volume.blockCount);
  // The limits first, then the ranges: a list over MAXIMUM UNMAP LBA COUNT is refused as such.
  let total = 0;
  for (let i = 0; i < count; i++) {
    total += u32(list, HEADER + i * DESCRIPTOR + 8);
    if (total > MAX_UNMAP_BLOCKS) throw invalidFieldInParameterList(HEADER + i * DESCRIPTOR + 8);
  }
  const out: Extent[] = [];
  for (let i = 0; i < count; i++) {
    const at = HEADER + i * DESCRIPTOR;
    const lba = u64(list, at);
    const blocks = u32(list, at + 8);
    // A zero-length range may sit at the capacity (libiscsi Unmap.ZeroBlocks), not past it.
    if (lba + BigInt(blocks) > capacity) throw lbaOutOfRange();
    if (blocks > 0) out.push({ lba: Number(lba), blocks });
  }
  return out;
}

/** Deallocate under the range lock: the blocks read as zeroes afterwards (LBPRZ). */
export async function discardLocked(lu: LogicalUnit, lba: number, blocks: number): Promise<void> {
  const unlock = await lu.locks.acquire(lba, blocks);
  try {
    await lu.volume.discard!(lba, blocks);
  } finally {
    unlock();
  }
}
