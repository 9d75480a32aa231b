/**
 * Limits that the block limits VPD page (B0h) advertises and the handlers enforce, computed in one
 * place so that what hosts are told and what is accepted cannot disagree.
 */
import type { LogicalUnit } from './logical-unit.js';

/**
 * MAXIMUM WRITE SAME LENGTH: 64 MiB worth, and below 65536 blocks as WRITE SAME(10) can only ask
 * for anyway. A WRITE SAME holds the range lock of the chunk it is writing and runs for as long as
 * the writes take; an unbounded one (a whole volume) would be a command hosts time out on.
 * Unmapping through WRITE SAME is cheap, but shares the limit.
 */
export function maxWriteSameBlocks(lu: LogicalUnit): number {
  return Math.max(1, Math.min(0xffff, Math.floor((64 << 20) / lu.volume.blockSize)));
}

/** MAXIMUM UNMAP LBA COUNT: holes are cheap to punch; 2^20 is what libiscsi calls sane. */
export const MAX_UNMAP_BLOCKS = 1 << 20;

/** MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT: a 4 KiB parameter list's worth. */
export const MAX_UNMAP_DESCRIPTORS = 255;

/**
 * MAXIMUM COMPARE AND WRITE LENGTH (one byte). The Data-Out buffer holds twice the blocks and the
 * compare needs a read of them, so it also stays within one buffer area.
 */
export function maxCompareAndWriteBlocks(lu: LogicalUnit): number {
  return Math.min(255, lu.volume.maxTransferBlocks);
}

/** MAXIMUM ATOMIC TRANSFER LENGTH: an atomic write is one buffer area, committed once. */
export function maxAtomicBlocks(lu: LogicalUnit): number {
  return lu.volume.maxTransferBlocks;
}
