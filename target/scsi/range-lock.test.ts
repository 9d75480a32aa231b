import { expect } from 'chai';
import { RangeLock, type Unlock } from './range-lock.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('scsi/range-lock', () => {
  it('grants disjoint ranges at once and holds back overlapping ones until unlocked', async () => {
    const l = new RangeLock();
    const a = await l.acquire(0, 10);
    const b = await l.acquire(10, 5);
    let c: Unlock | undefined;
    void l.acquire(9, 2).then((u) => { c = u; });
    await tick();
    expect(c).to.equal(undefined);
    a();
    await tick();
    expect(c).to.equal(undefined); // still overlaps b
    b();
    await tick();
    expect(c).to.be.a('function');
    expect(l.holders).to.equal(1);
    c!();
    c!(); // unlocking twice is harmless
    expect(l.holders).to.equal(0);
  });

  it('serves waiters in order: a later request overlapping a waiter waits behind it', async () => {
    const l = new RangeLock();
    const first = await l.acquire(0, 4);
    const order: string[] = [];
    void l.acquire(2, 4).then((u) => { order.push('wide'); setImmediate(u); });
    void l.acquire(5, 1).then((u) => { order.push('behind'); u(); });
    void l.acquire(100, 1).then((u) => { order.push('elsewhere'); u(); });
    await tick();
    expect(order).to.deep.equal(['elsewhere']);
    first();
    await tick();
    await tick();
    expect(order).to.deep.equal(['elsewhere', 'wide', 'behind']);
  });

  it('locks one block for a zero-length range', async () => {
    const l = new RangeLock();
    const a = await l.acquire(7, 0);
    let got = false;
    void l.acquire(7, 1).then((u) => { got = true; u(); });
    await tick();
    expect(got).to.equal(false);
    a();
    await tick();
    expect(got).to.equal(true);
  });
});
