import { expect } from 'chai';
import { settle } from '../hal/sim/simulator.js';
import { BufferArea, BufferMemory, BufferTooLargeError } from './buffer-memory.js';

const KiB = 1024;

function bounded(pool: BufferMemory): void {
  const s = pool.stats();
  expect(s.inUseBytes + s.cachedBytes).to.be.at.most(s.totalBytes);
}

describe('BufferMemory', () => {
  it('hands out power-of-two areas and reuses them from the free list', async () => {
    const pool = new BufferMemory({ totalBytes: 64 * KiB });
    const a = pool.tryAllocate(3000)!;
    expect(a.size).to.equal(4 * KiB);
    expect(a.view(3000).length).to.equal(3000);
    expect(a.view(4096)).to.equal(a.bytes);
    pool.release(a);
    const b = await pool.allocate(4096);
    expect(b).to.equal(a);
    expect(pool.stats().allocations).to.equal(2);
  });

  it('when full, requests wait in FIFO order and never exceed the bound', async () => {
    const pool = new BufferMemory({ totalBytes: 64 * KiB });
    const held: BufferArea[] = [];
    for (let i = 0; i < 16; i++) held.push(pool.tryAllocate(4 * KiB)!);
    expect(pool.stats().inUseBytes).to.equal(64 * KiB);
    expect(pool.tryAllocate(512)).to.equal(null);

    const order: string[] = [];
    const big = pool.allocate(8 * KiB).then((a) => { order.push('big'); return a; });
    const small = pool.allocate(4 * KiB).then((a) => { order.push('small'); return a; });
    await settle();
    expect(order).to.deep.equal([]);
    expect(pool.stats().waiters).to.equal(2);
    // A later small request does not overtake the waiting big one (no starvation), even with room.
    pool.release(held.pop()!);
    await settle();
    expect(order).to.deep.equal([]);
    expect(pool.tryAllocate(4 * KiB)).to.equal(null);
    bounded(pool);
    // Two free 4 KiB areas are evicted to make the 8 KiB one.
    pool.release(held.pop()!);
    await settle();
    expect(order).to.deep.equal(['big']);
    expect(pool.stats().evictions).to.equal(2);
    bounded(pool);
    pool.release(held.pop()!);
    await settle();
    expect(order).to.deep.equal(['big', 'small']);
    bounded(pool);
    expect(pool.stats().highWaterBytes).to.equal(64 * KiB);
    expect(pool.stats().waits).to.equal(2);
    pool.release(await big);
    pool.release(await small);
    for (const a of held) pool.release(a);
    expect(pool.stats().inUseBytes).to.equal(0);
    bounded(pool);
  });

  it('rejects at once a request larger than the pool', async () => {
    const pool = new BufferMemory({ totalBytes: 48 * KiB });
    expect(pool.maxAreaBytes).to.equal(32 * KiB);
    const err = await pool.allocate(40 * KiB).then(() => null, (e: unknown) => e);
    expect(err).to.be.instanceOf(BufferTooLargeError);
    expect((err as Error).message).to.match(/larger than the whole pool/);
    expect(() => pool.tryAllocate(33 * KiB)).to.throw(BufferTooLargeError);
    expect(pool.stats().waiters).to.equal(0);
  });

  it('asserts on double release', () => {
    const pool = new BufferMemory({ totalBytes: 64 * KiB });
    const a = pool.tryAllocate(512)!;
    pool.release(a);
    expect(() => pool.release(a)).to.throw(/released twice/);
  });

  it('steady state allocates nothing new', () => {
    const pool = new BufferMemory({ totalBytes: 1 << 20 });
    const areas = new Set<BufferArea>();
    for (let round = 0; round < 100; round++) {
      const batch = Array.from({ length: 32 }, () => pool.tryAllocate(4096)!);
      for (const a of batch) areas.add(a);
      for (const a of batch) pool.release(a);
    }
    expect(areas.size).to.equal(32);
  });
});
