import { expect } from 'chai';
import { SimDevice, Simulator } from '../../hal/sim/index.js';
import {
  DelayPolicy, ImmediatePolicy, LoadBelowPolicy, PullPolicy, SpillPolicy, TimeOfDayPolicy, type ForwardingPolicy, type ForwardingState,
} from './forwarding-policy.js';
import { ForwardingScheduler } from './forwarding-scheduler.js';
import { DeviceJournal } from './journal.js';
import type { JournalEntry, RelayJournal } from './journal-types.js';
import { LoadMeter } from './load-meter.js';
import { BatteryBackedMemory, MemoryJournal } from './memory-journal.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** A relay: arrivals recorded in a journal or sent in step, a scheduler, a link with a load meter. */
function rig(policy: ForwardingPolicy, opts: { wallStart?: number; linkMs?: number } = {}) {
  const sim = new Simulator({ wallStart: opts.wallStart });
  const mem = new BatteryBackedMemory(1 << 20);
  const { journal } = MemoryJournal.open(mem, { clock: sim.clock });
  const meter = new LoadMeter(sim.clock, 1000, 10);
  const sent: Array<{ issue: number; at: number; how: 'in-step' | 'journal' }> = [];
  let watchers: Array<{ n: number; resolve: () => void }> = [];
  const note = (x: { issue: number; at: number; how: 'in-step' | 'journal' }): void => {
    sent.push(x);
    watchers = watchers.filter((w) => (sent.length >= w.n ? (w.resolve(), false) : true));
  };
  const scheduler = new ForwardingScheduler({
    clock: sim.clock, policy, journal, load: () => meter.rate(),
    forward: async (e) => {
      note({ issue: e.id.issue, at: sim.now(), how: 'journal' });
      meter.record(e.length);
      await sim.sleep(opts.linkMs ?? 1);
    },
  });
  const arrive = async (issue: number, bytes = 1000): Promise<'forward' | 'journal'> => {
    const how = scheduler.arrival();
    if (how === 'forward') {
      note({ issue, at: sim.now(), how: 'in-step' });
      meter.record(bytes);
    } else {
      await journal.append({ id: { sourceUnit: 11, issue }, volume: 1, lba: issue, blocks: 2, data: Buffer.alloc(bytes, issue) });
      scheduler.poke();
    }
    return how;
  };
  /** Other traffic on the relay -> secondary link: `bytesPerTick` every 100 ms in [from, to). */
  const traffic = (from: number, to: number, bytesPerTick: number): void => {
    for (let t = from; t < to; t += 100) sim.clock.setTimer(t - sim.now(), () => meter.record(bytesPerTick));
  };
  const waitSent = (n: number): Promise<void> => (sent.length >= n ? Promise.resolve() : new Promise((resolve) => watchers.push({ n, resolve })));
  return { sim, journal, meter, sent, scheduler, arrive, traffic, waitSent };
}

const state = (over: Partial<ForwardingState>): ForwardingState => ({ now: 0, wallTime: 0, load: 0, pending: [], ...over });
const rec = (seq: number, recordedAt: number, length = 100) => ({ seq, recordedAt, length });

describe('relay forwarding policies: decisions', () => {
  it('immediate: everything, at once', () => {
    expect(new ImmediatePolicy().decide(state({ pending: [rec(1, 0), rec(2, 0)] }))).to.deep.equal({ count: 2 });
    expect(new ImmediatePolicy().onArrival()).to.equal('journal');
  });

  it('load-below: everything below the threshold, else look again later', () => {
    const p = new LoadBelowPolicy(1000, 50);
    expect(p.decide(state({ now: 7, load: 999, pending: [rec(1, 0)] }))).to.deep.equal({ count: 1 });
    expect(p.decide(state({ now: 7, load: 1000, pending: [rec(1, 0)] }))).to.deep.equal({ count: 0, wakeAt: 57 });
    expect(p.decide(state({ now: 7, load: 5000, pending: [] }))).to.deep.equal({ count: 0 });
  });

  it('delay: the prefix old enough, and when the next one will be', () => {
    const p = new DelayPolicy(1000);
    const pending = [rec(1, 10_000), rec(2, 10_400), rec(3, 10_900)];
    expect(p.decide(state({ now: 5, wallTime: 10_999, pending }))).to.deep.equal({ count: 0, wakeAt: 6 });
    expect(p.decide(state({ now: 405, wallTime: 11_400, pending }))).to.deep.equal({ count: 2, wakeAt: 905 });
    expect(p.decide(state({ now: 905, wallTime: 11_900, pending }))).to.deep.equal({ count: 3 });
  });

  it('time of day: preset instants in a time zone', () => {
    const p = new TimeOfDayPolicy([120, 14 * 60], 540); // 02:00 and 14:00 JST = 17:00 and 05:00 UTC
    const day = Date.UTC(2030, 0, 1);
    expect(p.lastAt(day + 6 * HOUR)).to.equal(day + 5 * HOUR);
    expect(p.nextAt(day + 6 * HOUR)).to.equal(day + 17 * HOUR);
    expect(p.lastAt(day + 3 * HOUR)).to.equal(day - 7 * HOUR);
    expect(p.nextAt(day + 17 * HOUR)).to.equal(day + 29 * HOUR);
    const pending = [rec(1, day + 4 * HOUR), rec(2, day + 5 * HOUR + 1)];
    expect(p.decide(state({ now: 0, wallTime: day + 6 * HOUR, pending }))).to.deep.equal({ count: 1, wakeAt: 11 * HOUR });
  });

  it('spill: in step while calm and nothing is recorded; recorded otherwise', () => {
    const p = new SpillPolicy(100, 20);
    expect(p.onArrival(state({ load: 100 }))).to.equal('forward');
    expect(p.onArrival(state({ load: 101 }))).to.equal('journal');
    expect(p.onArrival(state({ load: 0, pending: [rec(1, 0)] }))).to.equal('journal');
    expect(p.decide(state({ load: 50, now: 3, pending: [rec(1, 0)] }))).to.deep.equal({ count: 0, wakeAt: 103 });
    expect(p.decide(state({ load: 19, pending: [rec(1, 0)] }))).to.deep.equal({ count: 1 });
  });
});

describe('relay forwarding policies: triggering in virtual time', () => {
  it('immediate (store-and-forward): recorded, then sent at once, then released', async () => {
    const r = rig(new ImmediatePolicy());
    await r.sim.run(Promise.all([r.arrive(1), r.arrive(2), r.arrive(3)]));
    await r.sim.run(r.waitSent(3));
    expect(r.sent.map((s) => [s.issue, s.at, s.how])).to.deep.equal([[1, 0, 'journal'], [2, 0, 'journal'], [3, 0, 'journal']]);
    await r.sim.advance(5);
    expect(r.journal.pending()).to.deep.equal([]);
  });

  it('load below a threshold: held while the link is busy, sent when the load falls under it', async () => {
    const threshold = 100_000;
    const r = rig(new LoadBelowPolicy(threshold, 100));
    r.traffic(0, 2000, 20_000); // 200 kB/s for two seconds
    const probes = new Map<number, number>();
    for (let t = 1050; t <= 4000; t += 100) r.sim.clock.setTimer(t, () => probes.set(t, r.meter.rate()));
    await r.sim.advance(1050);
    expect(r.meter.rate()).to.be.greaterThan(threshold);
    await r.sim.run(Promise.all([r.arrive(1), r.arrive(2)]));
    await r.sim.run(r.waitSent(2));
    const at = r.sent[0]!.at;
    expect(at).to.be.greaterThan(2000);
    expect(r.sent[1]!.at).to.equal(at);
    expect(probes.get(at)).to.be.lessThan(threshold);
    expect(probes.get(at - 100)).to.be.at.least(threshold);
  });

  it('a preset delay since recording', async () => {
    const r = rig(new DelayPolicy(1000));
    await r.sim.run(r.arrive(1));
    await r.sim.advance(250);
    await r.sim.run(r.arrive(2));
    await r.sim.advance(350);
    await r.sim.run(r.arrive(3));
    await r.sim.run(r.waitSent(3));
    expect(r.sent.map((s) => s.at)).to.deep.equal([1000, 1250, 1600]);
  });

  it('a time of day: what was recorded before 02:00 goes at 02:00; later records wait a day', async () => {
    const start = Date.UTC(2030, 0, 1, 1, 0); // 01:00 UTC
    const r = rig(new TimeOfDayPolicy(11 * 60, 540), { wallStart: start }); // 11:00 JST = 02:00 UTC
    await r.sim.run(r.arrive(1));
    await r.sim.advance(HOUR / 2);
    await r.sim.run(r.arrive(2));
    await r.sim.run(r.waitSent(2));
    expect(r.sent.map((s) => s.at)).to.deep.equal([HOUR, HOUR]);
    await r.sim.advance(HOUR / 2);
    await r.sim.run(r.arrive(3));
    await r.sim.run(r.waitSent(3));
    expect(r.sent[2]!.at).to.equal(HOUR + DAY);
  });

  it('pulled by the secondary: nothing until asked, then what it asked for', async () => {
    const policy = new PullPolicy();
    const r = rig(policy);
    for (let i = 1; i <= 5; i++) await r.sim.run(r.arrive(i));
    await r.sim.advance(60_000);
    expect(r.sent).to.deep.equal([]);
    policy.pull({ maxCommands: 2 });
    r.scheduler.poke();
    await r.sim.advance(100);
    expect(r.sent.map((s) => s.issue)).to.deep.equal([1, 2]);
    policy.pull(); // everything recorded so far
    r.scheduler.poke();
    await r.sim.run(r.arrive(6));
    await r.sim.advance(100);
    expect(r.sent.map((s) => s.issue)).to.deep.equal([1, 2, 3, 4, 5]);
    policy.pull({ maxBytes: 1 });
    r.scheduler.poke();
    await r.sim.advance(100);
    expect(r.sent.map((s) => s.issue)).to.deep.equal([1, 2, 3, 4, 5, 6]);
  });

  it('spill: in step while the link is calm; recorded above the threshold; drained when it falls', async () => {
    const r = rig(new SpillPolicy(50_000, 10_000, 100));
    expect(await r.sim.run(r.arrive(1))).to.equal('forward');
    r.traffic(100, 600, 20_000); // 200 kB/s
    await r.sim.advance(300);
    expect(await r.sim.run(r.arrive(2))).to.equal('journal');
    await r.sim.advance(100);
    expect(await r.sim.run(r.arrive(3))).to.equal('journal');
    // Between the two thresholds, with records waiting: still recorded (never overtake them).
    await r.sim.advance(1000);
    const load = r.meter.rate();
    expect(load).to.be.within(10_000, 50_000);
    expect(await r.sim.run(r.arrive(4))).to.equal('journal');
    await r.sim.run(r.waitSent(4));
    expect(r.sent.map((s) => [s.issue, s.how])).to.deep.equal([[1, 'in-step'], [2, 'journal'], [3, 'journal'], [4, 'journal']]);
    await r.sim.advance(2000);
    expect(r.journal.pending()).to.deep.equal([]);
    expect(await r.sim.run(r.arrive(5))).to.equal('forward');
  });
});

describe('relay restart (000-NV behaviour 6): nothing lost, nothing applied twice', () => {
  async function scenario(crashAfterForwarding: boolean) {
    const sim = new Simulator();
    const dev = new SimDevice({ clock: sim.clock, size: 1 << 20, latency: 0.5, volatileCache: true });
    await sim.run(DeviceJournal.format(dev, { align: 512, journalId: 9 }));
    // The secondary applies each command identifier once ([0112]) and answers duplicates only.
    const applied = new Map<string, number>();
    let deliveries = 0;
    const secondary = async (e: JournalEntry, journal: RelayJournal): Promise<void> => {
      deliveries++;
      const key = `${e.id.sourceUnit}/${e.id.issue}`;
      await sim.sleep(2);
      if (!applied.has(key)) applied.set(key, (await journal.read(e.seq))[0]!);
    };
    const startRelay = async (policy: ForwardingPolicy) => {
      const { journal } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
      const scheduler = new ForwardingScheduler({ clock: sim.clock, policy, journal, load: () => 0, forward: (e) => secondary(e, journal) });
      return { journal, scheduler };
    };
    // Relay 1 acknowledges 10 writes (durable in its journal); it forwards after 1 s.
    const r1 = await startRelay(new DelayPolicy(1000));
    await sim.run(Promise.all(Array.from({ length: 10 }, (_, i) => r1.journal.append({ id: { sourceUnit: 11, issue: i + 1 }, volume: 1, lba: i, blocks: 1, data: Buffer.alloc(512, i + 1) }))));
    r1.scheduler.poke();
    if (crashAfterForwarding) {
      // Killed after the secondary confirmed some records, before all truncations were durable.
      await sim.run((async () => { while (applied.size < 4) await sim.sleep(0.25); })());
    } else {
      await sim.advance(500); // killed after acknowledging, before forwarding
      expect(deliveries).to.equal(0);
    }
    r1.scheduler.stop();
    dev.crash();
    // Relay 2: the restarted process forwards everything left, at once.
    const r2 = await startRelay(new ImmediatePolicy());
    r2.scheduler.poke();
    await sim.run((async () => { while (r2.journal.pending().length > 0 || r2.scheduler.active > 0) await sim.sleep(1); })());
    expect([...applied.keys()].sort()).to.deep.equal(Array.from({ length: 10 }, (_, i) => `11/${i + 1}`).sort());
    for (const [key, first] of applied) expect(first).to.equal(Number(key.split('/')[1]));
    return deliveries;
  }

  it('killed after acknowledging, before forwarding: the restarted relay forwards all of it', async () => {
    expect(await scenario(false)).to.equal(10);
  });

  it('killed in the middle of forwarding: re-sent records are applied once', async () => {
    expect(await scenario(true)).to.be.at.least(10);
  });
});
