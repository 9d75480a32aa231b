import { expect } from 'chai';
import { DeviceError } from '../block-device.js';
import { Random } from './random.js';
import { SimDevice, seekLatency } from './sim-device.js';
import { Simulator } from './simulator.js';
import { VirtualClock } from './virtual-clock.js';

describe('VirtualClock', () => {
  it('moves only when told; fires in due order, ties in creation order', () => {
    const c = new VirtualClock();
    const fired: string[] = [];
    c.setTimer(5, () => fired.push('a5'));
    c.setTimer(1, () => fired.push('b1'));
    c.setTimer(5, () => fired.push('c5'));
    const cancelled = c.setTimer(2, () => fired.push('x'));
    c.setTimer(0, () => {
      fired.push('d0');
      c.setTimer(1, () => fired.push('e1'));
    });
    cancelled.cancel();
    expect(c.now()).to.equal(0);
    expect(c.pendingTimers).to.equal(4);
    c.advance(3);
    expect(fired).to.deep.equal(['d0', 'b1', 'e1']);
    expect(c.now()).to.equal(3);
    c.runUntilIdle();
    expect(fired).to.deep.equal(['d0', 'b1', 'e1', 'a5', 'c5']);
    expect(c.now()).to.equal(5);
    expect(c.pendingTimers).to.equal(0);
  });

  it('wallTime follows now()', () => {
    const c = new VirtualClock({ wallStart: 1000 });
    c.advance(250);
    expect(c.wallTime()).to.equal(1250);
  });
});

describe('Random', () => {
  it('is deterministic per seed and differs across seeds', () => {
    const a = new Random(42);
    const b = new Random(42);
    const c = new Random(43);
    const sa = Array.from({ length: 8 }, () => a.u32());
    const sb = Array.from({ length: 8 }, () => b.u32());
    const sc = Array.from({ length: 8 }, () => c.u32());
    expect(sa).to.deep.equal(sb);
    expect(sa).to.not.deep.equal(sc);
    const r = new Random(1);
    let bad = 0;
    for (let i = 0; i < 1000; i++) {
      const f = r.float();
      const n = r.range(3, 5);
      if (!(f >= 0 && f < 1) || !(n >= 3 && n <= 5)) bad++;
    }
    expect(bad).to.equal(0);
  });
});

describe('Simulator', () => {
  it('runs async code in virtual time and detects deadlocks', async () => {
    const sim = new Simulator();
    const result = await sim.run((async () => {
      await sim.sleep(10);
      await sim.sleep(5);
      return sim.now();
    })());
    expect(result).to.equal(15);
    const never = new Promise<void>(() => {});
    const err = await sim.run(never).then(() => null, (e: Error) => e);
    expect(err?.message).to.match(/deadlock/);
  });
});

describe('SimDevice', () => {
  it('serial: completes in arrival order after the latency; logs operations', async () => {
    const sim = new Simulator();
    const d = new SimDevice({ clock: sim.clock, size: 1 << 20, latency: 2 });
    const done: number[] = [];
    const a = d.write(0, Buffer.alloc(512, 1)).then(() => done.push(sim.now()));
    const b = d.read(4096, Buffer.alloc(512)).then(() => done.push(sim.now()));
    await sim.run(Promise.all([a, b]));
    expect(done).to.deep.equal([2, 4]);
    expect(d.log.map((r) => [r.op, r.offset, r.length])).to.deep.equal([['write', 0, 512], ['read', 4096, 512]]);
  });

  it('seek latency grows with distance from the head', async () => {
    const sim = new Simulator();
    const d = new SimDevice({ clock: sim.clock, size: 1 << 30, latency: seekLatency({ base: 1, perMiB: 1, max: 100 }) });
    await sim.run(d.read(0, Buffer.alloc(512)));
    const t0 = sim.now();
    await sim.run(d.read(512, Buffer.alloc(512)));
    const near = sim.now() - t0;
    const t1 = sim.now();
    await sim.run(d.read(64 << 20, Buffer.alloc(512)));
    const far = sim.now() - t1;
    expect(near).to.be.closeTo(1, 1e-9);
    expect(far).to.be.closeTo(1 + 64, 0.01);
  });

  it('volatile cache: crash drops un-flushed writes, keeps flushed and FUA ones', async () => {
    const sim = new Simulator();
    const d = new SimDevice({ clock: sim.clock, size: 1 << 20, latency: 1, volatileCache: true });
    expect(d.volatileCache).to.equal(true);
    await sim.run(d.write(0, Buffer.alloc(512, 1)));
    await sim.run(d.flush());
    await sim.run(d.write(0, Buffer.alloc(512, 2)));
    await sim.run(d.write(512, Buffer.alloc(512, 3), { fua: true }));
    await sim.run(d.write(1024, Buffer.alloc(512, 4)));
    expect(d.peek(0, 1)[0]).to.equal(2);
    d.crash();
    expect(d.peek(0, 1)[0]).to.equal(1);
    expect(d.peek(512, 1)[0]).to.equal(3);
    expect(d.peek(1024, 1)[0]).to.equal(0);
  });

  it('a flush covers only the writes completed when it was issued', async () => {
    const sim = new Simulator();
    const d = new SimDevice({ clock: sim.clock, size: 1 << 20, latency: 1, volatileCache: true, serial: false });
    const w = d.write(0, Buffer.alloc(512, 7));
    const f = d.flush();
    await sim.run(Promise.all([w, f]));
    d.crash();
    expect(d.peek(0, 1)[0]).to.equal(0);
  });

  it('a FUA write is not undone by a later flush of older cached data', async () => {
    const sim = new Simulator();
    const d = new SimDevice({ clock: sim.clock, size: 1 << 20, volatileCache: true });
    await sim.run(d.write(0, Buffer.alloc(1024, 1)));
    await sim.run(d.write(512, Buffer.alloc(512, 2), { fua: true }));
    await sim.run(d.flush());
    d.crash();
    expect([d.peek(0, 1)[0], d.peek(512, 1)[0]]).to.deep.equal([1, 2]);
  });

  it('injects errors: ranged reads/writes and failNext', async () => {
    const sim = new Simulator();
    const d = new SimDevice({ clock: sim.clock, size: 1 << 20 });
    d.failReads({ offset: 4096, length: 512 }, 'EIO');
    const e1 = await sim.run(d.read(0, Buffer.alloc(8192)).then(() => null, (e: unknown) => e));
    expect(e1).to.be.instanceOf(DeviceError);
    expect((e1 as DeviceError).offset).to.equal(4096);
    await sim.run(d.read(8192, Buffer.alloc(512)));
    d.failNext('flush', 'ENOSPC');
    const e2 = await sim.run(d.flush().then(() => null, (e: unknown) => e));
    expect((e2 as DeviceError).code).to.equal('ENOSPC');
    await sim.run(d.flush());
    d.failWrites({ offset: 0, length: 512 }, 'EIO', 1);
    const e3 = await sim.run(d.write(0, Buffer.alloc(512, 5)).then(() => null, (e: unknown) => e));
    expect((e3 as DeviceError).op).to.equal('write');
    expect(d.peek(0, 1)[0]).to.equal(0);
    await sim.run(d.write(0, Buffer.alloc(512, 5)));
    expect(d.peek(0, 1)[0]).to.equal(5);
    expect(d.log.filter((r) => r.error).map((r) => r.error)).to.deep.equal(['EIO', 'ENOSPC', 'EIO']);
  });

  it('crash fails outstanding operations', async () => {
    const sim = new Simulator();
    const d = new SimDevice({ clock: sim.clock, size: 1 << 20, latency: 10 });
    const p = d.write(0, Buffer.alloc(512, 1)).then(() => null, (e: unknown) => e);
    await sim.advance(5);
    d.crash();
    const err = await sim.run(p);
    expect((err as DeviceError).code).to.equal('ECRASH');
    expect(d.peek(0, 1)[0]).to.equal(0);
  });
});
