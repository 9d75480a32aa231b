/**
 * Which blocks of a storage unit hold allocated storage (GET LBA STATUS on a thin volume). It is a
 * question about the media's metadata, not a medium operation: it is not registered with the IO
 * scheduler and so not ordered against IO in flight (like any command racing a write, it may see
 * either state). A block is mapped when any copy (mirror) holds any allocated byte of it; a
 * medium that cannot tell counts as fully allocated.
 */
import { DeviceError } from '../hal/block-device.js';
import type { StorageUnit } from './storage-unit.js';
import { MediumError, type AllocationExtent } from './volume.js';

interface Part {
  readonly medium: number;
  readonly offset: number;
  readonly length: number;
  readonly lba: number;
}

export async function allocationStatus(unit: StorageUnit, lba: number, blocks: number): Promise<AllocationExtent[]> {
  const parts: Part[] = [];
  unit.layout.mapWrite(lba, blocks, { part: (medium, offset, _area, length, at) => parts.push({ medium, offset, length, lba: at }) });
  const bs = unit.blockSize;
  const mapped: Array<[number, number]> = [];
  await Promise.all(parts.map(async (p) => {
    const device = unit.media[p.medium]!;
    let ranges: Array<[number, number]>;
    try {
      ranges = device.allocated ? await device.allocated(p.offset, p.length) : [[p.offset, p.offset + p.length]];
    } catch (err) {
      const code = err instanceof DeviceError ? err.code : 'EIO';
      throw new MediumError('read', p.lba, `allocation status of medium ${device.name} at LBA ${p.lba}: ${(err as Error).message}`, { code, cause: err });
    }
    // Rounded outwards: a block with any allocated byte is mapped.
    for (const [s, e] of ranges) mapped.push([p.lba + Math.floor((s - p.offset) / bs), p.lba + Math.ceil((e - p.offset) / bs)]);
  }));
  return extents(lba, lba + blocks, mapped);
}

/** Consecutive extents covering [start, end), from mapped ranges in any order, overlapping or not. */
export function extents(start: number, end: number, mapped: Array<[number, number]>): AllocationExtent[] {
  mapped.sort((a, b) => a[0] - b[0]);
  const out: AllocationExtent[] = [];
  const push = (from: number, to: number, isMapped: boolean): void => {
    if (to <= from) return;
    const last = out[out.length - 1];
    if (last && last.mapped === isMapped) out[out.length - 1] = { lba: last.lba, blocks: to - last.lba, mapped: isMapped };
    else out.push({ lba: from, blocks: to - from, mapped: isMapped });
  };
  let pos = start;
  for (const [s, e] of mapped) {
    const from = Math.max(s, start);
    const to = Math.min(e, end);
    if (to <= pos) continue;
    push(pos, Math.max(pos, from), false);
    push(Math.max(pos, from), to, true);
    pos = to;
  }
  push(pos, end, false);
  return out;
}
