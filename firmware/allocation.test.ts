import { expect } from 'chai';
import type { BlockDevice } from '../hal/block-device.js';
import { MEMORY_CHUNK_BYTES, MemoryDevice } from '../hal/memory-device.js';
import { Simulator } from '../hal/sim/simulator.js';
import { extents } from './allocation.js';
import { createController, type AddVolumeOptions } from './controller.js';

const BS = 512;
const CB = MEMORY_CHUNK_BYTES / BS; // blocks per memory chunk

function volume(media: BlockDevice[], o: Partial<AddVolumeOptions> = {}) {
  const c = createController({ clock: new Simulator().clock, bufferBytes: 1 << 20 });
  return c.addVolume({ name: 'v', blockSize: BS, blockCount: 8 * CB, media, layout: 'single', scheduler: 'fifo', ...o });
}

describe('firmware/allocation: which blocks are mapped', () => {
  it('extents() covers the range in order, merging and clipping mapped ranges', () => {
    expect(extents(0, 10, [])).to.deep.equal([{ lba: 0, blocks: 10, mapped: false }]);
    expect(extents(0, 10, [[8, 20], [2, 4], [3, 5]])).to.deep.equal([
      { lba: 0, blocks: 2, mapped: false }, { lba: 2, blocks: 3, mapped: true },
      { lba: 5, blocks: 3, mapped: false }, { lba: 8, blocks: 2, mapped: true },
    ]);
    expect(extents(5, 7, [[0, 6], [6, 100]])).to.deep.equal([{ lba: 5, blocks: 2, mapped: true }]);
  });

  it('single medium: rounds allocated bytes outwards to blocks', async () => {
    const m = new MemoryDevice('m', 8 * MEMORY_CHUNK_BYTES);
    const v = volume([m]);
    await m.write(CB * BS + 1, Buffer.of(1));
    expect(await v.allocationStatus(0, 8 * CB)).to.deep.equal([
      { lba: 0, blocks: CB, mapped: false }, { lba: CB, blocks: CB, mapped: true }, { lba: 2 * CB, blocks: 6 * CB, mapped: false },
    ]);
    expect(await v.allocationStatus(CB + 3, 2)).to.deep.equal([{ lba: CB + 3, blocks: 2, mapped: true }]);
  });

  it('mirror: mapped when any copy holds the block; stripe: asks each medium for its units', async () => {
    const a = new MemoryDevice('a', 8 * MEMORY_CHUNK_BYTES);
    const b = new MemoryDevice('b', 8 * MEMORY_CHUNK_BYTES);
    const mirror = volume([a, b], { layout: 'mirror' });
    await b.write(2 * MEMORY_CHUNK_BYTES, Buffer.of(1));
    expect(await mirror.allocationStatus(2 * CB, CB)).to.deep.equal([{ lba: 2 * CB, blocks: CB, mapped: true }]);

    const c = new MemoryDevice('c', 4 * MEMORY_CHUNK_BYTES);
    const d = new MemoryDevice('d', 4 * MEMORY_CHUNK_BYTES);
    const stripe = volume([c, d], { layout: 'stripe', stripeBlocks: CB });
    await d.write(MEMORY_CHUNK_BYTES, Buffer.of(1)); // d's second unit = stripe unit 3
    expect(await stripe.allocationStatus(0, 8 * CB)).to.deep.equal([
      { lba: 0, blocks: 3 * CB, mapped: false }, { lba: 3 * CB, blocks: CB, mapped: true }, { lba: 4 * CB, blocks: 4 * CB, mapped: false },
    ]);
  });

  it('a medium that cannot tell counts as mapped; out-of-range queries are refused', async () => {
    const m = new MemoryDevice('m', 8 * MEMORY_CHUNK_BYTES);
    const blind = Object.assign(Object.create(m) as BlockDevice, { allocated: undefined });
    const v = volume([blind]);
    expect(await v.allocationStatus(0, 10)).to.deep.equal([{ lba: 0, blocks: 10, mapped: true }]);
    const err = await v.allocationStatus(8 * CB - 1, 2).then(() => null, (e: unknown) => e);
    expect(err).to.be.instanceOf(RangeError);
  });
});
