import { expect } from 'chai';
import { Random } from '../../hal/sim/random.js';
import { BS, outcome, pattern, rig, until, writeBlocks, type RelaySpec, type Rig } from './rig.test.js';

/** The relay of behaviour 1: 1 ms from the primary, 9 ms from the secondary (which is 10 ms away). */
const NEAR: RelaySpec = { oneWayMs: 1, toSecondaryMs: 9, answerMs: 0.2 };

/** Primary and secondary volumes hold the same blocks [0, blocks). */
function same(r: Rig, blocks: number): boolean {
  return r.primary.peek(0, blocks).equals(r.secondary.peek(0, blocks));
}

describe('mirroring (000-E3): when the host hears "complete"', () => {
  it('relay-durable: after the local write and the relay\'s answer, ~RTT(primary, relay), not RTT(primary, secondary)', async () => {
    const r = await rig({ ackMode: 'relay-durable', relays: [NEAR], secondaryMs: 10, primaryLatency: 0.5 });
    const t0 = r.sim.now();
    const done = await r.sim.run(r.write(0, pattern(1, 8 * BS)));
    expect(done - t0).to.be.closeTo(2.2, 1e-9); // 2 x 1 ms + the relay's 0.2 ms
    expect(r.relays[0]!.got.map((g) => g.ack)).to.deep.equal(['durable']);
    // The secondary does not have it yet: the host did not wait for it.
    expect(r.unit.counters(0).received).to.equal(0);
    await r.drain();
    expect(r.secondary.peek(0, 8).equals(pattern(1, 8 * BS))).to.equal(true);
  });

  it('relay-received asks the relay for "received"; the latency is the same RTT to the relay', async () => {
    const r = await rig({ ackMode: 'relay-received', relays: [NEAR], secondaryMs: 10, primaryLatency: 0.5 });
    const t0 = r.sim.now();
    const done = await r.sim.run(r.write(0, pattern(2, 8 * BS)));
    expect(done - t0).to.be.closeTo(2.2, 1e-9);
    expect(r.relays[0]!.got.map((g) => g.ack)).to.deep.equal(['received']);
    // A FUA write asks its path for 'durable' whatever the mode.
    await r.sim.run(r.write(8, pattern(3, BS), true));
    expect(r.relays[0]!.got.map((g) => g.ack)).to.deep.equal(['received', 'durable']);
  });

  it('remote-received: the secondary\'s "in its buffer memory", one RTT to it (20 ms), no medium write waited for', async () => {
    const r = await rig({ ackMode: 'remote-received', relays: [NEAR], secondaryMs: 10, primaryLatency: 0.5, secondaryLatency: 50 });
    const t0 = r.sim.now();
    const done = await r.sim.run(r.write(0, pattern(2, 8 * BS)));
    expect(done - t0).to.be.closeTo(20, 1e-9);
    expect(r.secondary.dev.ops('write')[0]!.completedAt).to.equal(undefined);
    expect(r.relays[0]!.got).to.have.length(0);
  });

  it('remote-durable: goes straight to the secondary and takes its RTT (20 ms) plus its write, flush and watermark', async () => {
    const r = await rig({ ackMode: 'remote-durable', relays: [NEAR], secondaryMs: 10, primaryLatency: 0.5, secondaryLatency: 0.5, persistMs: 0.5 });
    const t0 = r.sim.now();
    const done = await r.sim.run(r.write(0, pattern(3, 8 * BS)));
    // 10 ms there, medium write 0.5, flush 0.5, watermark 0.5, 10 ms back.
    expect(done - t0).to.be.closeTo(21.5, 1e-9);
    expect(r.states.get(0)?.sequence).to.equal(1);
    expect(r.relays[0]!.got).to.have.length(0);
    expect(r.secondary.dev.peekDurable(0, 8 * BS).equals(pattern(3, 8 * BS))).to.equal(true);
  });

  it('local: completes with the medium write, before any link round trip; the write still reaches the secondary', async () => {
    const r = await rig({ ackMode: 'local', relays: [NEAR], secondaryMs: 10, primaryLatency: 0.5 });
    const t0 = r.sim.now();
    const done = await r.sim.run(r.write(0, pattern(4, 8 * BS)));
    expect(done - t0).to.be.closeTo(0.5, 1e-9);
    expect(r.linkTo('r0').stats().writesCompleted).to.equal(0);
    expect(r.mirroring.status().lagWrites).to.equal(1);
    await r.drain();
    expect(r.secondary.peek(0, 8).equals(pattern(4, 8 * BS))).to.equal(true);
    expect(r.mirroring.status().lagWrites).to.equal(0);
  });

  it('a slow local medium: the host completion waits for it even though the relay answered long before', async () => {
    const r = await rig({ ackMode: 'relay-durable', relays: [NEAR], primaryLatency: 8 });
    const t0 = r.sim.now();
    const done = await r.sim.run(r.write(0, pattern(5, 8 * BS)));
    const local = r.primary.dev.ops('write')[0]!;
    expect(r.relays[0]!.got[0]!.answeredAt! - t0).to.be.closeTo(1.2, 1e-9);
    expect(local.completedAt).to.not.equal(undefined);
    expect(done).to.be.at.least(local.completedAt!);
    expect(done - t0).to.be.closeTo(8, 1e-9);
  });

  it('a slow relay: the host completion waits for its answer even though the medium is done', async () => {
    const r = await rig({ ackMode: 'relay-received', relays: [{ ...NEAR, answerMs: 15 }], primaryLatency: 0.5 });
    const t0 = r.sim.now();
    const done = await r.sim.run(r.write(0, pattern(6, 8 * BS)));
    expect(r.primary.dev.ops('write')[0]!.completedAt! - t0).to.be.closeTo(0.5, 1e-9);
    expect(done - t0).to.be.closeTo(17, 1e-9);
  });
});

describe('mirroring: acknowledgement order', () => {
  it('write 2, answered by a fast relay, does not complete before write 1 on a slow relay', async () => {
    const slow: RelaySpec = { oneWayMs: 1, toSecondaryMs: 9, answerMs: 20 };
    const r = await rig({ ackMode: 'relay-received', selection: 'round-robin', relays: [slow, NEAR] });
    const t0 = r.sim.now();
    const order: number[] = [];
    const w1 = r.write(0, pattern(1, 8 * BS)).then((t) => { order.push(1); return t; });
    const w2 = r.write(8, pattern(2, 8 * BS)).then((t) => { order.push(2); return t; });
    const [d1, d2] = await r.sim.run(Promise.all([w1, w2]));
    expect(r.relays[0]!.seqs).to.deep.equal([1]);
    expect(r.relays[1]!.seqs).to.deep.equal([2]);
    // The fast relay answered write 2 at once; the host still heard of it only after write 1.
    expect(r.relays[1]!.got[0]!.answeredAt! - t0).to.be.closeTo(1.2, 1e-9);
    expect(d1 - t0).to.be.closeTo(22, 1e-9);
    expect(d2).to.be.at.least(d1);
    expect(order).to.deep.equal([1, 2]);
  });

  it('SYNCHRONIZE CACHE waits for every earlier write to reach the ack point', async () => {
    const slow: RelaySpec = { oneWayMs: 1, toSecondaryMs: 9, answerMs: 20 };
    const r = await rig({ ackMode: 'relay-durable', relays: [slow] });
    const t0 = r.sim.now();
    void r.write(0, pattern(1, BS));
    await r.sim.settle();
    await r.sim.run(r.vol.flush());
    expect(r.sim.now() - t0).to.be.at.least(22);
  });
});

describe('mirroring (000-E4): relay selection', () => {
  const equal = (n: number): RelaySpec[] => Array.from({ length: n }, () => ({ ...NEAR }));

  it('round robin alternates relays write by write', async () => {
    const r = await rig({ ackMode: 'relay-received', selection: 'round-robin', relays: equal(3) });
    await r.sim.run(Promise.all(Array.from({ length: 9 }, (_, i) => r.write(i * 8, pattern(i, 8 * BS)))));
    expect(r.relays.map((x) => x.seqs)).to.deep.equal([[1, 4, 7], [2, 5, 8], [3, 6, 9]]);
    await r.drain();
    expect(same(r, 72)).to.equal(true);
  });

  it('least loaded sends to the relay with fewer bytes outstanding', async () => {
    // r0 takes a big write and answers slowly: everything after it goes to r1 while it is busy.
    const r = await rig({ ackMode: 'relay-received', selection: 'least-loaded', relays: [{ ...NEAR, answerMs: 30 }, { ...NEAR }] });
    const writes = [r.write(0, pattern(0, 64 * BS))];
    for (let i = 1; i <= 6; i++) writes.push(r.write(64 + i, pattern(i, BS)));
    await r.sim.run(Promise.all(writes));
    expect(r.relays[0]!.seqs).to.deep.equal([1]);
    expect(r.relays[1]!.seqs).to.deep.equal([2, 3, 4, 5, 6, 7]);
    // Once both are idle again, the next write may go to either; the loads are equal (0).
    await r.sim.run(r.write(100, pattern(9, BS)));
    expect(r.relays[0]!.seqs.length + r.relays[1]!.seqs.length).to.equal(8);
  });

  it('random spreads over all relays, reproducibly for a seed', async () => {
    const assign = async (seed: number): Promise<number[]> => {
      const r = await rig({ seed, ackMode: 'relay-received', selection: 'random', relays: equal(3) });
      await r.sim.run(Promise.all(Array.from({ length: 90 }, (_, i) => r.write(i, pattern(i, BS)))));
      const owner: number[] = [];
      r.relays.forEach((x, k) => { for (const s of x.seqs) owner[s - 1] = k; });
      return owner;
    };
    const a = await assign(7);
    expect(a).to.have.length(90);
    for (let k = 0; k < 3; k++) expect(a.filter((x) => x === k).length, `relay ${k}`).to.be.within(15, 45);
    // Not round robin in disguise.
    expect(a.some((x, i) => x !== i % 3)).to.equal(true);
    expect(await assign(7)).to.deep.equal(a);
    expect(await assign(8)).to.not.deep.equal(a);
  });

  it('stripe: a 5-portion write over 3 relays, one slow: the fast ones take more, the slow one only its first portion', async () => {
    const r = await rig({
      ackMode: 'relay-received', selection: 'stripe', stripeBytes: 8 * BS, stripeWindow: 1,
      relays: [{ ...NEAR }, { ...NEAR }, { ...NEAR, answerMs: 30 }],
    });
    const t0 = r.sim.now();
    const data = pattern(7, 40 * BS);
    const done = await r.sim.run(r.write(0, data));
    expect(r.relays.map((x) => x.seqs)).to.deep.equal([[1, 4], [2, 5], [3]]);
    // One slow round trip (2 ms + 30 ms), not one per portion it would otherwise have taken.
    expect(done - t0).to.be.closeTo(32, 1e-9);
    expect(r.relays.map((x) => x.got.map((g) => g.lba))).to.deep.equal([[0, 24], [8, 32], [16]]);
    await r.drain();
    expect(r.secondary.peek(0, 40).equals(data)).to.equal(true);
  });

  it('stripe keeps going when a relay dies mid-transfer: its portion is sent again on another relay', async () => {
    const spec: RelaySpec = { oneWayMs: 1, toSecondaryMs: 9, answerMs: 2 };
    const r = await rig({ ackMode: 'relay-durable', selection: 'stripe', stripeBytes: 8 * BS, stripeWindow: 1, relays: [spec, spec, spec], retryMs: 500 });
    const t0 = r.sim.now();
    const data = pattern(8, 80 * BS);
    const w = r.write(0, data);
    // r2 has its first portion (seq 3) and dies before it answers.
    await r.sim.run(r.sim.sleep(1.5));
    expect(r.relays[2]!.seqs).to.deep.equal([3]);
    r.relays[2]!.kill();
    const done = await r.sim.run(w);
    expect(r.relays[2]!.seqs).to.deep.equal([3]);
    const elsewhere = [...r.relays[0]!.seqs, ...r.relays[1]!.seqs].sort((x, y) => x - y);
    expect(elsewhere).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // It did not wait for the retry timer: the next free relay took the portion.
    expect(done - t0).to.be.below(100);
    expect(r.mirroring.status().resends).to.equal(1);
    await r.drain();
    expect(r.secondary.peek(0, 80).equals(data)).to.equal(true);
    // The dead relay still forwarded its copy: the secondary got seq 3 twice and applied it once.
    expect(r.secondary.dev.ops('write')).to.have.length(10);
  });
});

describe('mirroring (000-E4): same data to every relay', () => {
  it('the host is acknowledged on the first relay\'s answer', async () => {
    const r = await rig({
      ackMode: 'relay-received', selection: 'all',
      relays: [{ oneWayMs: 5, toSecondaryMs: 5, answerMs: 0 }, { ...NEAR }, { oneWayMs: 3, toSecondaryMs: 7, answerMs: 0 }],
    });
    const t0 = r.sim.now();
    const done = await r.sim.run(r.write(0, pattern(1, 8 * BS)));
    expect(done - t0).to.be.closeTo(2.2, 1e-9);
    // The farther relays had not even received it yet.
    expect(r.relays.map((x) => x.seqs)).to.deep.equal([[], [1], []]);
    await r.drain();
    expect(r.relays.map((x) => x.seqs)).to.deep.equal([[1], [1], [1]]);
    expect(r.mirroring.status().sends).to.equal(3);
    expect(r.secondary.dev.ops('write')).to.have.length(1);
  });

  it('the secondary applies each identifier exactly once, in sequence order, whatever order the copies arrive in', async () => {
    const rnd = new Random(42);
    const vary = (lo: number, hi: number) => (): number => lo + rnd.float() * (hi - lo);
    const r = await rig({
      ackMode: 'relay-received', selection: 'all',
      relays: [
        { oneWayMs: 1, toSecondaryMs: 9, answerMs: vary(0, 2), forwardMs: vary(0, 30) },
        { oneWayMs: 2, toSecondaryMs: 6, answerMs: vary(0, 4), forwardMs: vary(0, 30) },
        { oneWayMs: 3, toSecondaryMs: 3, answerMs: vary(0, 1), forwardMs: vary(0, 30) },
      ],
    });
    const N = 40;
    const lbas: number[] = [];
    const writes: Promise<number>[] = [];
    for (let i = 0; i < N; i++) {
      const lba = rnd.int(24);
      lbas.push(lba);
      writes.push(r.write(lba, pattern(100 + i, 8 * BS)));
      if (rnd.int(3) === 0) await r.sim.run(r.sim.sleep(rnd.float() * 3));
    }
    await r.sim.run(Promise.all(writes));
    await r.drain();
    // The copies really did reach the secondary out of order.
    const arrivals = r.relays.flatMap((x) => x.forwardLog.map((f) => ({ seq: f.seq, at: f.at + x.spec.toSecondaryMs }))).sort((a, b) => a.at - b.at);
    const firsts: number[] = [];
    for (const a of arrivals) if (!firsts.includes(a.seq)) firsts.push(a.seq);
    expect(firsts).to.not.deep.equal([...firsts].sort((a, b) => a - b));
    const c = r.unit.counters(0);
    expect(c.received).to.equal(3 * N);
    expect(c.duplicates).to.equal(2 * N);
    // Each identifier once on the medium (the device may complete non-overlapping writes in any
    // order; the overlapping ones ending as on the primary shows the sequence order).
    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
    expect(sorted(r.secondary.dev.ops('write').map((o) => o.offset / BS))).to.deep.equal(sorted(lbas));
    expect(same(r, 32)).to.equal(true);
  });
});

describe('mirroring: failover', () => {
  it('a relay link going down with writes in flight: they are resent on the other relay, each applied once', async () => {
    const spec: RelaySpec = { oneWayMs: 1, toSecondaryMs: 9, answerMs: 5 };
    const r = await rig({ ackMode: 'relay-durable', selection: 'round-robin', relays: [spec, spec], retryMs: 50 });
    const writes = Array.from({ length: 6 }, (_, i) => r.write(i * 4, pattern(i, 4 * BS)));
    await r.sim.run(r.sim.sleep(3));
    expect(r.relays[0]!.seqs).to.deep.equal([1, 3, 5]);
    r.relays[0]!.kill();
    const done = await r.sim.run(Promise.all(writes));
    expect(done).to.have.length(6);
    expect(r.relays[1]!.seqs).to.deep.equal([2, 4, 6, 1, 3, 5]);
    expect(r.mirroring.status().resends).to.equal(3);
    expect(r.mirroring.status().peers.find((p) => p.name === 'r0')!.state).to.equal('down');
    await r.drain();
    expect(same(r, 24)).to.equal(true);
    expect(r.secondary.dev.ops('write')).to.have.length(6);
    expect(r.unit.counters(0).duplicates).to.equal(3); // r0 forwarded what it had received
  });

  it('no relay up: the writes go straight to the secondary (asking "durable") and still complete', async () => {
    const spec: RelaySpec = { oneWayMs: 1, toSecondaryMs: 9, answerMs: 5 };
    const r = await rig({ ackMode: 'relay-durable', selection: 'round-robin', relays: [spec, spec], retryMs: 50, secondaryMs: 10 });
    // Both relays have a write each and die before answering.
    const early = [r.write(0, pattern(1, 4 * BS)), r.write(4, pattern(2, 4 * BS))];
    await r.sim.run(r.sim.sleep(3));
    r.relays[0]!.kill();
    r.relays[1]!.kill();
    await r.sim.run(r.sim.sleep(1));
    const late = r.write(8, pattern(3, 4 * BS));
    await r.sim.run(Promise.all([...early, late]));
    expect(r.linkTo('sec').stats().writesCompleted).to.equal(3);
    // Durable on the secondary: its watermark covers them.
    expect(r.states.get(0)?.sequence).to.equal(3);
    expect(same(r, 12)).to.equal(true);
    await r.drain();
    expect(r.secondary.dev.ops('write')).to.have.length(3);
  });
});

describe('mirroring: a relay lost with writes it answered and had not forwarded', () => {
  // It answers at once and forwards 100 ms later: it dies holding all three.
  const holding: RelaySpec = { oneWayMs: 1, toSecondaryMs: 9, answerMs: 0.2, forwardMs: 100 };

  it('the primary sends its retained copies straight to the secondary, which fills its gap; host writes keep completing without the relay', async () => {
    const r = await rig({ ackMode: 'relay-durable', relays: [holding], retryMs: 50, secondaryMs: 10 });
    await r.sim.run(Promise.all([1, 2, 3].map((i) => r.write(4 * (i - 1), pattern(i, 4 * BS)))));
    expect(r.unit.counters(0).received).to.equal(0);
    r.relays[0]!.die();
    await r.sim.run(r.sim.sleep(1));
    // Without the resend this write would wait for sequences 1-3 at the secondary for good.
    await r.sim.run(r.write(12, pattern(4, 4 * BS)));
    expect(r.mirroring.status().resends).to.equal(3);
    expect(r.relays[0]!.forwarded).to.equal(0);
    expect(r.states.get(0)?.sequence).to.equal(4);
    expect(same(r, 16)).to.equal(true);
    expect(r.secondary.dev.ops('write')).to.have.length(4);
  });

  it('only the latest retainBytes are kept: older writes the relay held still wait for it', async () => {
    const r = await rig({ ackMode: 'relay-durable', relays: [holding], retryMs: 50, secondaryMs: 10, retainBytes: 8 * BS });
    await r.sim.run(Promise.all([1, 2, 3].map((i) => r.write(4 * (i - 1), pattern(i, 4 * BS)))));
    r.relays[0]!.die();
    await r.sim.run(r.sim.sleep(1));
    const late = r.write(12, pattern(4, 4 * BS)).then(() => 'done');
    const outcome = await r.sim.run(Promise.race([late, r.sim.sleep(5000).then(() => 'waiting')]));
    expect(outcome).to.equal('waiting');
    expect(r.mirroring.status().resends).to.equal(2);
    // Sequences 2 and 3 reached it; 1 went with the relay.
    expect(r.unit.counters(0).received).to.equal(3);
    expect(r.states.get(0)?.sequence ?? 0).to.equal(0);
  });
});

describe('mirroring: a relay that answers nothing (its journal full, the secondary unreachable from it)', () => {
  const stuck: RelaySpec = { oneWayMs: 1, toSecondaryMs: 9, answerMs: 1e9, forwardMs: 1e9 };

  it('after relayStallMs its writes, and the copies it answered before, go straight to the secondary; later writes too, at once', async () => {
    const r = await rig({ ackMode: 'relay-durable', relays: [{ ...NEAR, forwardMs: 1e9 }], retryMs: 50, secondaryMs: 10, relayStallMs: 1000 });
    // Answered by the relay, never forwarded.
    await r.sim.run(Promise.all([1, 2].map((i) => r.write(4 * (i - 1), pattern(i, 4 * BS)))));
    r.relays[0]!.spec.answerMs = stuck.answerMs;
    const t0 = r.sim.now();
    const done = await r.sim.run(r.write(8, pattern(3, 4 * BS)));
    // The stall is seen between 1000 and 1500 ms (the watchdog looks every 500 ms); then one direct round trip and the commit.
    expect(done - t0).to.be.within(1000, 1500 + 25);
    expect(r.mirroring.status().peers.find((p) => p.name === 'r0')).to.include({ stalled: true, outstanding: 1 });
    const t1 = r.sim.now();
    const later = await r.sim.run(r.write(12, pattern(4, 4 * BS)));
    expect(later - t1).to.be.below(25);
    expect(r.states.get(0)?.sequence).to.equal(4);
    expect(same(r, 16)).to.equal(true);
  });

  it('with no other path up the writes keep waiting for it', async () => {
    const r = await rig({ ackMode: 'relay-durable', relays: [stuck], retryMs: 50, secondaryMs: 10, relayStallMs: 1000 });
    r.direct.pa.destroy();
    await r.sim.run(r.sim.sleep(1));
    const w = r.write(0, pattern(1, 4 * BS)).then(() => 'done');
    expect(await r.sim.run(Promise.race([w, r.sim.sleep(5000).then(() => 'waiting')]))).to.equal('waiting');
    expect(r.relays[0]!.got).to.have.length(1);
  });
});

describe('mirroring: a secondary that crashed after answering "received"', () => {
  it('is sent the retained copies again when its link is back, fills what it lost, and later host writes complete', async () => {
    // A slow medium: the secondary answers 'received' long before anything is on its disk.
    const r = await rig({ ackMode: 'remote-received', retryMs: 50, secondaryMs: 2, secondaryLatency: 30, secondaryVolatileCache: true });
    await r.sim.run(Promise.all([1, 2, 3].map((i) => r.write(4 * (i - 1), pattern(i, 4 * BS)))));
    expect(r.states.get(0)).to.equal(undefined);
    await r.crashSecondary();
    expect(r.unit.status(0).sequence, 'the restarted secondary lost all three').to.equal(0);
    // Without the resend this write would wait behind sequences 1-3 at the secondary for good.
    await r.sim.run(r.write(12, pattern(4, 4 * BS)));
    await r.drain();
    expect(r.mirroring.status().resends).to.equal(3);
    expect(r.unit.status(0)).to.include({ sequence: 4, waiting: 0 });
    expect(same(r, 16)).to.equal(true);
  });

  it('remote-durable answers are not retained: the watermark already covers them', async () => {
    const r = await rig({ ackMode: 'remote-durable', retryMs: 50, secondaryMs: 2 });
    await r.sim.run(Promise.all([1, 2].map((i) => r.write(4 * (i - 1), pattern(i, 4 * BS)))));
    await r.crashSecondary();
    await r.sim.run(r.write(8, pattern(3, 4 * BS)));
    expect(r.mirroring.status().resends).to.equal(0);
    expect(same(r, 12)).to.equal(true);
  });
});

describe('mirroring: the secondary promoted while this primary serves the volume (kura promote --force)', () => {
  for (const ackMode of ['remote-durable', 'local'] as const) {
    it(`${ackMode}: the primary learns it from the refusal, stops taking writes (write protected), says why, and sends nothing again`, async () => {
      const r = await rig({ ackMode, retryMs: 50, secondaryMs: 2 });
      await r.sim.run(r.write(0, pattern(1, 4 * BS)));
      await r.drain();
      await r.sim.run(r.unit.promote(0));
      // Before, the primary sent this write again every retryMs for good (and in remote-durable
      // the host never heard back): two copies taking writes, the promoted one refusing them.
      const w = await r.sim.run(outcome(r.write(4, pattern(2, 4 * BS))));
      if (ackMode === 'local') expect(w.ok, 'local: acknowledged before the refusal').to.equal(true);
      else expect(w.ok).to.equal(false);
      await r.sim.run(r.sim.sleep(500));
      expect(r.mirroring.status().fenced).to.match(/^sec was promoted for this volume/);
      expect(r.mirroring.status().resends).to.equal(0);
      expect(r.vol.readOnly).to.equal(true);
      const next = await r.sim.run(outcome(r.write(8, pattern(3, 4 * BS))));
      expect(next.ok).to.equal(false);
      expect((next as { error: Error }).error.name).to.equal('WriteProtectedError');
      expect(r.primary.peek(8, 4).equals(Buffer.alloc(4 * BS)), 'nothing of it written here').to.equal(true);
      expect(r.unit.status(0).sequence, 'the promoted copy took nothing more').to.equal(1);
    });
  }
});

describe('mirroring: a clean stop', () => {
  it('closed, then its links closed: nothing is sent again', async () => {
    const r = await rig({ ackMode: 'relay-durable', relays: [NEAR], retryMs: 50, secondaryMs: 10 });
    await r.sim.run(r.write(0, pattern(1, 4 * BS)));
    r.mirroring.close();
    r.relays[0]!.kill();
    await r.sim.run(r.linkTo('r0').closed);
    await r.sim.run(r.sim.sleep(100));
    expect(r.mirroring.status().resends).to.equal(0);
  });
});

describe('mirroring: paths coming back', () => {
  it('writes queued while no path is up go out once a link comes back (handed over while it is still connecting)', async () => {
    const r = await rig({ ackMode: 'relay-received', relays: [{ ...NEAR }], retryMs: 50 });
    r.relays[0]!.kill();
    r.direct.pa.destroy();
    await r.sim.run(r.sim.sleep(1));
    const w = r.write(0, pattern(1, 4 * BS));
    // Nothing to send it on: it waits (the retry timer gives up while no path is up).
    await r.sim.run(r.sim.sleep(500));
    expect(r.mirroring.status()).to.include({ pendingAck: 1 });
    const t = r.sim.now();
    const p = r.reconnect(r.relays[0]!);
    expect(p.a.isOpen).to.equal(false);
    const done = await r.sim.run(w);
    // Handshake (a few round trips of 2 ms) and the write's: no waiting for a timer.
    expect(done - t).to.be.below(20);
    expect(r.relays[0]!.seqs).to.deep.equal([1]);
  });

  it('local mode: the replication queue is bounded by maxLagBytes; host writes wait for room', async () => {
    const r = await rig({ ackMode: 'local', relays: [{ ...NEAR, answerMs: 10 }], maxLagBytes: 8 * BS, primaryLatency: 0.5 });
    const t0 = r.sim.now();
    const d1 = await r.sim.run(r.write(0, pattern(1, 8 * BS)));
    expect(d1 - t0).to.be.closeTo(0.5, 1e-9);
    const d2 = await r.sim.run(r.write(8, pattern(2, 8 * BS)));
    // Write 2 took the queue past 8 blocks: it completed when the relay answered write 1 (12 ms).
    expect(d2 - t0).to.be.closeTo(12, 1e-9);
  });
});

describe('mirrored volume: discard', () => {
  it('a discard reaches the secondary as zeroes (in transfers of at most maxTransferBlocks)', async () => {
    const r = await rig({ ackMode: 'relay-durable', relays: [NEAR], maxTransferBlocks: 8 });
    await r.sim.run(r.write(0, pattern(1, 8 * BS)));
    await r.sim.run(r.write(8, pattern(2, 8 * BS)));
    await r.sim.run(r.write(16, pattern(3, 8 * BS)));
    await r.drain();
    expect(r.secondary.peek(0, 24).equals(Buffer.alloc(24 * BS))).to.equal(false);
    await r.sim.run(r.vol.discard(2, 20));
    await r.drain();
    const want = Buffer.concat([pattern(1, 8 * BS).subarray(0, 2 * BS), Buffer.alloc(20 * BS), pattern(3, 8 * BS).subarray(6 * BS)]);
    expect(r.primary.peek(0, 24).equals(want)).to.equal(true);
    expect(r.secondary.peek(0, 24).equals(want)).to.equal(true);
    expect(r.mirroring.lastSequence).to.equal(3 + 3); // 20 blocks of zeroes in 8 + 8 + 4
    // A discard the volume refuses is not replicated either.
    expect((await r.sim.run(outcome(r.vol.discard(2040, 20)))).ok).to.equal(false);
    expect(r.mirroring.lastSequence).to.equal(6);
  });

  it('a write issued while an overlapping discard is in progress ends the same on both sides', async () => {
    const r = await rig({ ackMode: 'relay-durable', relays: [NEAR], primaryLatency: 5 });
    await r.sim.run(r.write(0, pattern(1, 8 * BS)));
    await r.drain();
    // The host discards, then writes into the range before the discard completed: locally the
    // IO scheduler runs them in that order, so the new data stays.
    const d = r.vol.discard(0, 8);
    const w = writeBlocks(r.vol, 2, pattern(2, 2 * BS));
    const res = await r.sim.run(Promise.all([outcome(d), outcome(w)]));
    expect(res.map((x) => x.ok)).to.deep.equal([true, true]);
    await r.drain();
    const want = Buffer.concat([Buffer.alloc(2 * BS), pattern(2, 2 * BS), Buffer.alloc(4 * BS)]);
    expect(r.primary.peek(0, 8).equals(want)).to.equal(true);
    expect(r.secondary.peek(0, 8).equals(want)).to.equal(true);
  });
});

describe('mirroring: bookkeeping', () => {
  it('status: sequence, pending acks and lag follow the writes; every path shows up', async () => {
    const r = await rig({ ackMode: 'relay-received', relays: [{ ...NEAR, answerMs: 10 }] });
    const w = r.write(0, pattern(1, 8 * BS));
    await r.sim.settle();
    let s = r.mirroring.status();
    expect(s).to.include({ role: 'primary', ackMode: 'relay-received', generation: 1, sequence: 1, pendingAck: 1, lagWrites: 1, lagBytes: 8 * BS });
    expect(s.peers.map((p) => `${p.name}:${p.state}`)).to.deep.equal(['r0:up', 'sec:up']);
    await r.sim.run(w);
    s = r.mirroring.status();
    expect(s).to.include({ sequence: 1, pendingAck: 0, lagWrites: 0, lagBytes: 0, sends: 1, resends: 0, replicatedBytes: 8 * BS, ackedBytes: 8 * BS });
    await until(r.sim, () => r.relays[0]!.forwarded === 1);
  });
});
