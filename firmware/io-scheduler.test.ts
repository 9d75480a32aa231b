import { expect } from 'chai';
import { SimDevice, type Latency, type SimOpRecord } from '../hal/sim/sim-device.js';
import { Simulator } from '../hal/sim/simulator.js';
import type { IoOwner, IoRequest, IoType } from './io-request.js';
import { IoScheduler, type SchedulerPolicy } from './io-scheduler.js';
import type { MediumError } from './volume.js';

const BS = 512;

interface Done {
  id: number;
  medium: number;
  error: MediumError | null;
  /** A read's data, copied at completion. */
  data: Buffer | null;
}

class Recorder implements IoOwner {
  readonly done: Done[] = [];
  onDone: ((io: IoRequest) => void) | null = null;
  ioDone(io: IoRequest, error: MediumError | null): void {
    this.done.push({ id: io.id, medium: io.medium, error, data: io.type === 'read' && io.area ? Buffer.from(io.area) : null });
    this.onDone?.(io);
  }
}

function setup(o: { policy: SchedulerPolicy; depth?: number; media?: number; latency?: Latency; serial?: boolean; ageLimit?: number }) {
  const sim = new Simulator();
  const devices = Array.from({ length: o.media ?? 1 }, (_, i) => new SimDevice({ clock: sim.clock, size: 64 << 20, name: `m${i}`, latency: o.latency ?? 1, serial: o.serial }));
  const sched = new IoScheduler({ media: devices, blockSize: BS, policy: o.policy, depth: o.depth ?? 1, ageLimit: o.ageLimit });
  const owner = new Recorder();
  const submit = (type: IoType, id: number, block: number, blocks = 1, medium = 0): void => {
    const io = sched.acquire();
    io.type = type;
    io.id = id;
    io.medium = medium;
    io.offset = type === 'flush' ? 0 : block * BS;
    io.length = type === 'flush' ? 0 : blocks * BS;
    io.area = type === 'read' || type === 'write' ? Buffer.alloc(blocks * BS, id & 0xff) : null;
    io.lba = block;
    io.owner = owner;
    sched.register(io);
  };
  const idle = async () => {
    while (sched.active > 0) {
      await sim.settle();
      if (!sim.clock.fireNext()) break;
    }
    await sim.settle();
  };
  return { sim, devices, sched, owner, submit, idle };
}

const blocksOf = (log: SimOpRecord[]) => log.map((r) => r.offset / BS);

describe('IoScheduler', () => {
  it('fifo: dispatches in registration order, one at a time at depth 1', async () => {
    const t = setup({ policy: 'fifo', depth: 1 });
    for (const [id, block] of [[1, 0], [2, 1000], [3, 100], [4, 500], [5, 50]] as const) t.submit('read', id, block);
    await t.idle();
    expect(blocksOf(t.devices[0]!.log)).to.deep.equal([0, 1000, 100, 500, 50]);
    expect(t.owner.done.map((d) => d.id)).to.deep.equal([1, 2, 3, 4, 5]);
    expect(t.sched.stats()[0]!.maxInFlight).to.equal(1);
  });

  it('sstf: picks the shortest seek from the current head position', async () => {
    const t = setup({ policy: 'sstf', depth: 1 });
    // Block 0 dispatches at once (head -> block 1); the rest queue behind it.
    for (const [id, block] of [[1, 0], [2, 1000], [3, 100], [4, 500], [5, 50], [6, 700]] as const) t.submit('read', id, block);
    await t.idle();
    expect(blocksOf(t.devices[0]!.log)).to.deep.equal([0, 50, 100, 500, 700, 1000]);
    expect(t.owner.done.map((d) => d.id)).to.deep.equal([1, 5, 3, 4, 6, 2]);
  });

  it('sstf: bounded age — a far IO waits at most ageLimit picks', async () => {
    const ageLimit = 4;
    const t = setup({ policy: 'sstf', depth: 1, ageLimit });
    let next = 100;
    let issued = 0;
    // Keep feeding IOs right at the head: a pure SSTF would never go to block 100000.
    t.owner.onDone = () => {
      if (issued++ < 20) t.submit('read', next, next - 99, 1);
      next++;
    };
    t.submit('read', 1, 0);
    t.submit('read', 2, 100000);
    t.submit('read', 3, 1);
    await t.idle();
    const order = blocksOf(t.devices[0]!.log);
    const far = order.indexOf(100000);
    expect(far).to.be.greaterThan(1);
    expect(far).to.be.at.most(1 + ageLimit);
  });

  it('depth N: up to N IOs in flight on the medium, never more', async () => {
    const t = setup({ policy: 'fifo', depth: 4, serial: false, latency: 1 });
    for (let i = 0; i < 20; i++) t.submit('read', i + 1, i * 8);
    await t.idle();
    expect(t.devices[0]!.stats().maxInFlight).to.equal(4);
    expect(t.sched.stats()[0]!.maxInFlight).to.equal(4);
  });

  for (const policy of ['fifo', 'sstf'] as const) {
    it(`${policy}: a flush is dispatched after every earlier write completed, before every later write`, async () => {
      const sim = new Simulator({ seed: 3 });
      const rnd = sim.random;
      const t = setup({ policy, depth: 32, serial: false, latency: () => 0.1 + rnd.float() * 5 });
      t.submit('write', 1, 900);
      t.submit('write', 2, 10);
      t.submit('read', 3, 5000);
      t.submit('flush', 4, 0);
      t.submit('write', 5, 1); // right at the head: SSTF would love to take it first
      t.submit('read', 6, 2);
      t.submit('write', 7, 3000);
      t.submit('flush', 8, 0);
      t.submit('write', 9, 4);
      await t.idle();
      const log = t.devices[0]!.log;
      const ev = (op: string, block: number) => log.find((r) => r.op === op && (op === 'flush' || r.offset === block * BS))!;
      const flushes = log.filter((r) => r.op === 'flush');
      expect(flushes).to.have.length(2);
      const [f1, f2] = flushes as [SimOpRecord, SimOpRecord];
      for (const b of [900, 10]) expect(ev('write', b).completionEvent!).to.be.lessThan(f1.issueEvent);
      for (const b of [1, 3000]) {
        expect(ev('write', b).issueEvent).to.be.greaterThan(f1.issueEvent);
        expect(ev('write', b).completionEvent!).to.be.lessThan(f2.issueEvent);
      }
      expect(ev('write', 4).issueEvent).to.be.greaterThan(f2.issueEvent);
      // Reads pass flushes: the read registered after the first flush went out before it.
      expect(ev('read', 2).issueEvent).to.be.lessThan(f1.issueEvent);
    });

    it(`${policy}: overlapping IOs run in registration order, the later after the earlier completed`, async () => {
      const t = setup({ policy, depth: 32, serial: false, latency: (q) => (q.offset === 0 && q.op === 'write' ? 10 : 1) });
      t.submit('write', 1, 0, 8); // slow
      t.submit('write', 2, 4, 8); // overlaps 1
      t.submit('read', 3, 6, 1); // overlaps 2 (and 1)
      t.submit('read', 4, 100, 1); // independent: goes at once
      t.submit('read', 5, 6, 1); // overlaps the read 3 too, but reads do not order among themselves
      t.submit('write', 6, 6, 1); // after both reads
      await t.idle();
      const log = t.devices[0]!.log;
      const byOff = (op: string, block: number) => log.filter((r) => r.op === op && r.offset === block * BS);
      const w1 = byOff('write', 0)[0]!;
      const w2 = byOff('write', 4)[0]!;
      const [r3, r5] = byOff('read', 6) as [SimOpRecord, SimOpRecord];
      const r4 = byOff('read', 100)[0]!;
      const w6 = byOff('write', 6)[0]!;
      expect(r4.issueEvent).to.be.lessThan(w1.completionEvent!);
      expect(w2.issueEvent).to.be.greaterThan(w1.completionEvent!);
      expect(r3.issueEvent).to.be.greaterThan(w2.completionEvent!);
      expect(r5.issueEvent).to.be.greaterThan(w2.completionEvent!);
      expect(w6.issueEvent).to.be.greaterThan(Math.max(r3.completionEvent!, r5.completionEvent!));
      // Data: both reads saw write 2 (id n fills n), not 1 nor 6; the medium ends with 6 over 2 over 1.
      const reads = t.owner.done.filter((d) => d.id === 3 || d.id === 5);
      expect(reads.map((d) => d.data![0])).to.deep.equal([2, 2]);
      expect([0, 4, 6, 11].map((b) => t.devices[0]!.peek(b * BS, 1)[0])).to.deep.equal([1, 2, 6, 2]);
    });
  }

  it('one scheduler, one queue per medium: a busy medium does not hold back another', async () => {
    const t = setup({ policy: 'fifo', depth: 1, media: 2, latency: (q) => (q.offset === 0 ? 50 : 1) });
    t.submit('read', 1, 0, 1, 0); // slow, medium 0
    t.submit('read', 2, 8, 1, 0); // queued behind it on medium 0
    t.submit('read', 3, 8, 1, 1); // medium 1: goes at once
    await t.idle();
    expect(t.owner.done.map((d) => d.id)).to.deep.equal([3, 1, 2]);
    expect(t.owner.done.map((d) => d.medium)).to.deep.equal([1, 0, 0]);
  });

  it('reports medium errors with the LBA of the failing block', async () => {
    const t = setup({ policy: 'fifo' });
    t.devices[0]!.failReads({ offset: 13 * BS, length: BS });
    t.submit('read', 1, 10, 8);
    await t.idle();
    const e = t.owner.done[0]!.error!;
    expect(e.name).to.equal('MediumError');
    expect(e.lba).to.equal(13);
    expect(e.op).to.equal('read');
    expect(e.code).to.equal('EIO');
  });

  it('reuses IO records (no allocation per IO in the steady state)', async () => {
    const t = setup({ policy: 'fifo', depth: 4 });
    const seen = new Set<IoRequest>();
    t.owner.onDone = (io) => seen.add(io);
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 4; i++) t.submit('read', i, i);
      await t.idle();
    }
    expect(seen.size).to.equal(4);
  });
});
