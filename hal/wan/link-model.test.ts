import { expect } from 'chai';
import { Random } from '../sim/random.js';
import { VirtualClock } from '../sim/virtual-clock.js';
import { GilbertElliott, jitterSampler } from './impairments.js';
import { DUPTHRESH, LinkModel, STREAM_RESET, type LinkEvent } from './link-model.js';
import { PRESETS, distanceKm, fiberDelayMs, oneWayDelayMs, resolveProfile, type WanProfile } from './profiles.js';

function link(profile: WanProfile, seed = 7, trace?: (e: LinkEvent) => void): { clock: VirtualClock; model: LinkModel } {
  const clock = new VirtualClock();
  return { clock, model: new LinkModel(profile, { clock, random: new Random(seed), trace }) };
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function std(xs: number[]): number {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length);
}

describe('wan/profiles', () => {
  it('turns sites into a fibre delay: haversine distance x 5 us/km x route factor', () => {
    const tokyo = { lat: 35.6762, lon: 139.6503 };
    // One degree of a great circle is 2 pi R / 360.
    expect(distanceKm({ lat: 0, lon: 0 }, { lat: 0, lon: 1 })).to.be.closeTo((2 * Math.PI * 6371.0088) / 360, 1e-9);
    expect(distanceKm({ lat: 10, lon: 20 }, { lat: 11, lon: 20 })).to.be.closeTo((2 * Math.PI * 6371.0088) / 360, 1e-9);
    expect(distanceKm({ lat: 51.5074, lon: -0.1278 }, { lat: 40.7128, lon: -74.006 })).to.be.closeTo(5570, 5); // London - New York
    expect(distanceKm(tokyo, tokyo)).to.equal(0);
    expect(distanceKm({ lat: 0, lon: 0 }, { lat: 0, lon: 180 })).to.be.closeTo(Math.PI * 6371.0088, 1e-6);
    expect(fiberDelayMs(100)).to.be.closeTo(0.75, 1e-12);
    expect(fiberDelayMs(100, 1)).to.be.closeTo(0.5, 1e-12);
    expect(oneWayDelayMs({ distanceKm: 500 })).to.be.closeTo(3.75, 1e-12);
    expect(oneWayDelayMs({ distanceKm: 500, delayMs: 2 })).to.equal(2);
    expect(oneWayDelayMs(PRESETS.metro)).to.be.closeTo(0.75, 1e-12);
    expect(oneWayDelayMs(PRESETS.regional)).to.be.closeTo(3.75, 1e-12);
    expect(oneWayDelayMs(PRESETS.continental)).to.be.closeTo(22.5, 1e-12);
  });

  it('fills defaults and rejects nonsense', () => {
    const r = resolveProfile({ bandwidthBps: 100e6 });
    expect(r.queueBytes).to.equal(625_000); // 50 ms at 100 Mb/s
    expect(r.segmentBytes).to.equal(1448);
    expect(resolveProfile({}).bandwidthBps).to.equal(Infinity);
    expect(resolveProfile({}).queueBytes).to.equal(Infinity);
    expect(resolveProfile(r)).to.deep.equal(r);
    expect(() => resolveProfile({ delayMs: -1 })).to.throw(RangeError, /delayMs/);
    expect(() => resolveProfile({ loss: { model: 'bernoulli', p: 1.5 } })).to.throw(RangeError, /loss.p/);
    expect(() => resolveProfile({ jitter: { dist: 'weird' as 'none', ms: 1 } })).to.throw(RangeError, /jitter.dist/);
    expect(() => resolveProfile({ outages: [{ atMs: 0, durationMs: 1, mode: 'drop' as 'hold' }] })).to.throw(RangeError, /mode/);
    expect(() => resolveProfile({ routeFactor: 0.5, distanceKm: 1 })).to.throw(RangeError, /routeFactor/);
  });
});

describe('wan/link-model: delay, bandwidth, queue (exact on the VirtualClock)', () => {
  it('delivers after the one-way delay; the serializer spaces segments at the bandwidth', () => {
    const { clock, model } = link({ delayMs: 5, bandwidthBps: 1e6, segmentBytes: 1000, queueBytes: 2500 });
    const f = model.newFlow();
    // 1000 B at 1 Mb/s = 8 ms each, back to back.
    expect(model.sendSegment(f, 1000)).to.be.closeTo(13, 1e-9);
    expect(model.sendSegment(f, 1000)).to.be.closeTo(21, 1e-9);
    expect(model.sendSegment(f, 500)).to.be.closeTo(25, 1e-9);
    expect(model.queuedBytes()).to.equal(2500);
    expect(model.queueFull()).to.equal(false);
    expect(model.sendSegment(f, 1)).to.be.closeTo(25.008, 1e-9);
    expect(model.queueFull()).to.equal(true);
    expect(model.queueBelowAt(1250)).to.be.closeTo(16, 1e-9);
    clock.advance(8);
    expect(model.queuedBytes()).to.equal(1501);
    clock.advance(100);
    expect(model.queuedBytes()).to.equal(0);
    // An idle serializer starts at once.
    expect(model.sendSegment(f, 125)).to.be.closeTo(108 + 1 + 5, 1e-9);
  });

  it('drops datagrams beyond the queue (tail drop) and lets them in again as it drains', () => {
    const { clock, model } = link({ delayMs: 1, bandwidthBps: 8e6, queueBytes: 3000 }); // 1 B per us
    const fates = [1000, 1000, 1000, 1000].map((n) => model.sendDatagram(n).fate);
    expect(fates).to.deep.equal(['delivered', 'delivered', 'delivered', 'queue-full']);
    clock.advance(1);
    const d = model.sendDatagram(1000);
    expect(d.fate).to.equal('delivered');
    expect(d.deliveries[0]!.at).to.be.closeTo(4 + 1, 1e-9);
    expect(model.stats.queueDrops).to.equal(1);
  });

  it('an unlimited link never queues', () => {
    const { model } = link({ delayMs: 2 });
    const f = model.newFlow();
    for (let i = 0; i < 1000; i++) expect(model.sendSegment(f, 1448)).to.equal(2);
    expect(model.queuedBytes()).to.equal(0);
  });
});

describe('wan/link-model: jitter', () => {
  it('samples each distribution with mean 0 and the stated spread', () => {
    const n = 100_000;
    const draw = (dist: 'uniform' | 'normal' | 'pareto'): number[] => {
      const s = jitterSampler({ dist, ms: 2 }, new Random(3));
      return Array.from({ length: n }, s);
    };
    const u = draw('uniform');
    expect(Math.min(...u)).to.be.at.least(-2);
    expect(Math.max(...u)).to.be.below(2);
    expect(mean(u)).to.be.closeTo(0, 0.03);
    expect(std(u)).to.be.closeTo(2 / Math.sqrt(3), 0.02);
    const g = draw('normal');
    expect(mean(g)).to.be.closeTo(0, 0.03);
    expect(std(g)).to.be.closeTo(2, 0.03);
    const p = draw('pareto');
    expect(Math.min(...p)).to.be.at.least(-2);
    expect(mean(p)).to.be.closeTo(0, 0.05);
    expect(Math.max(...p)).to.be.above(20); // the heavy tail
  });

  it('datagrams jitter independently (and may overtake); a stream never reorders', () => {
    const { clock, model } = link({ delayMs: 10, jitter: { dist: 'uniform', ms: 3 } });
    const dgram: number[] = [];
    for (let i = 0; i < 2000; i++) {
      dgram.push(model.sendDatagram(100).deliveries[0]!.at);
      clock.advance(0.1);
    }
    const overtaken = dgram.filter((at, i) => i > 0 && at < dgram[i - 1]!).length;
    expect(overtaken).to.be.above(100);
    const lat = dgram.map((at, i) => at - i * 0.1);
    expect(Math.min(...lat)).to.be.at.least(7 - 1e-9);
    expect(Math.max(...lat)).to.be.at.most(13 + 1e-9);
    expect(mean(lat)).to.be.closeTo(10, 0.1);

    const f = model.newFlow();
    let last = -Infinity;
    let held = 0;
    for (let i = 0; i < 2000; i++) {
      const at = model.sendSegment(f, 100);
      expect(at).to.be.at.least(last);
      expect(at - clock.now()).to.be.at.least(7 - 1e-9);
      if (at === last) held++;
      last = at;
      clock.advance(0.1);
    }
    expect(held).to.be.above(100); // jitter only ever held later segments back
  });

  it('never delivers before it was sent when the jitter exceeds the delay', () => {
    const { model } = link({ delayMs: 0.5, jitter: { dist: 'normal', ms: 5 } });
    for (let i = 0; i < 1000; i++) expect(model.sendDatagram(10).deliveries[0]!.at).to.be.at.least(0);
  });
});

describe('wan/link-model: loss', () => {
  it('Bernoulli loses p of the datagrams', () => {
    const { model } = link({ loss: { model: 'bernoulli', p: 0.02 } });
    const n = 200_000;
    let lost = 0;
    for (let i = 0; i < n; i++) if (model.sendDatagram(100).fate === 'lost') lost++;
    expect(lost / n).to.be.closeTo(0.02, 0.002);
  });

  it('Gilbert-Elliott: long-run loss r*lossGood+p*lossBad over p+r, bursts of mean length 1/r', () => {
    const ge = { model: 'gilbert-elliott' as const, p: 0.01, r: 0.2, lossGood: 0, lossBad: 1 };
    const { model } = link({ loss: ge }, 11);
    const n = 400_000;
    let lost = 0;
    let bursts = 0;
    let prev = false;
    for (let i = 0; i < n; i++) {
      const l = model.sendDatagram(100).fate === 'lost';
      if (l) lost++;
      if (l && !prev) bursts++;
      prev = l;
    }
    const expected = 0.01 / 0.21;
    expect(lost / n).to.be.closeTo(expected, expected * 0.06);
    expect(lost / bursts).to.be.closeTo(1 / 0.2, 0.3);

    // With loss in both states.
    const g = new GilbertElliott(0.05, 0.25, 0.01, 0.5, new Random(5));
    expect(g.expected).to.be.closeTo((0.25 * 0.01 + 0.05 * 0.5) / 0.3, 1e-12);
    let l2 = 0;
    for (let i = 0; i < n; i++) if (g.lose()) l2++;
    expect(l2 / n).to.be.closeTo(g.expected, g.expected * 0.05);
  });

  it('a lost stream segment costs max(RTO_min, rtt + 4 rttvar), doubling if lost again, and holds everything behind it', () => {
    const events: LinkEvent[] = [];
    const { clock, model } = link({ delayMs: 10, loss: { model: 'bernoulli', p: 0.1 } }, 3, (e) => events.push(e));
    expect(model.retransmitTimeoutMs).to.equal(200);
    const f = model.newFlow();
    for (let i = 0; i < 5000; i++) {
      model.sendSegment(f, 100);
      clock.advance(1);
    }
    const segs = events.filter((e): e is Extract<LinkEvent, { kind: 'segment' }> => e.kind === 'segment');
    expect(segs).to.have.length(5000);
    let lostOnce = 0;
    let lostTwice = 0;
    let blocked = 0;
    let ownArrival = 0;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i]!;
      // Its own arrival: 10 ms, plus 200, 200+400, ... for each loss.
      let own = s.t + 10;
      for (let k = 0, rto = 200; k < s.retransmits; k++, rto *= 2) own += rto;
      if (s.retransmits === 1) lostOnce++;
      if (s.retransmits === 2) lostTwice++;
      const prev = i > 0 ? segs[i - 1]!.at : -Infinity;
      expect(s.at).to.be.closeTo(Math.max(own, prev), 1e-9);
      if (s.at > own + 1e-9) blocked++;
      ownArrival = own;
    }
    expect(ownArrival).to.be.above(0);
    expect(lostOnce / 5000).to.be.closeTo(0.09, 0.015);
    expect(lostTwice).to.be.above(10);
    expect(blocked).to.be.above(2000); // head-of-line: 200 ms of 1 ms-spaced segments behind each loss
    expect(model.stats.retransmits).to.equal(segs.reduce((a, s) => a + s.retransmits, 0));
  });

  it('a lost segment with DUPTHRESH segments behind it is fast-retransmitted about one round trip later, not after the RTO; a tail loss still waits for the RTO', () => {
    const events: LinkEvent[] = [];
    // 1448-byte segments at 100 Mb/s: 0.11584 ms each on the wire.
    const { clock, model } = link({ delayMs: 10, bandwidthBps: 1e8, loss: { model: 'bernoulli', p: 0.05 } }, 5, (e) => events.push(e));
    const wire = 1448 * 8 / 1e8 * 1000;
    const f = model.newFlow();
    // Writes of 12 segments, 50 ms apart (the link idle in between).
    for (let w = 0; w < 400; w++) {
      for (let k = 11; k >= 0; k--) model.sendSegment(f, 1448, k);
      clock.advance(50);
    }
    const segs = events.filter((e): e is Extract<LinkEvent, { kind: 'segment' }> => e.kind === 'segment');
    let fast = 0;
    let tail = 0;
    let fastFirst = 0;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i]!;
      const k = i % 12; // its place in the write: 11 - k segments follow it
      if (s.retransmits > 0 && 11 - k >= DUPTHRESH) fastFirst++;
      if (s.retransmits !== 1) continue;
      const finish = s.t + (k + 1) * wire;
      const prev = i > 0 ? segs[i - 1]!.at : -Infinity;
      const own = 11 - k >= DUPTHRESH
        ? finish + DUPTHRESH * wire + 2 * 10 + 10 // dup acks back, then one more trip
        : finish + 200 + 10;
      expect(s.at, `segment ${i}`).to.be.closeTo(Math.max(own, prev), 1e-6);
      if (11 - k >= DUPTHRESH) fast++;
      else tail++;
    }
    expect(fast).to.be.above(100);
    expect(tail).to.be.above(20);
    // A fast retransmit lost again waits for the RTO: counted once, as fast, with the others.
    expect(model.stats.fastRetransmits).to.equal(fastFirst);
  });

  it('RTO follows rtt + 4 rttvar when that beats RTO_min; a hopeless segment resets the stream', () => {
    expect(link({ delayMs: 150 }).model.retransmitTimeoutMs).to.be.closeTo(300, 1e-9);
    const j = link({ delayMs: 100, jitter: { dist: 'normal', ms: 10 } }).model;
    expect(j.retransmitTimeoutMs).to.be.closeTo(200 + 4 * Math.SQRT2 * 10, 1e-9);
    const { model } = link({ delayMs: 1, loss: { model: 'bernoulli', p: 1 }, maxRetransmits: 3 });
    expect(model.sendSegment(model.newFlow(), 10)).to.equal(STREAM_RESET);
    expect(model.lastResetReason).to.match(/lost 4 times/);
    // A corrupted segment is a lost one on a stream.
    const c = link({ delayMs: 1, corrupt: { p: 1 }, maxRetransmits: 0 }).model;
    expect(c.sendSegment(c.newFlow(), 10)).to.equal(STREAM_RESET);
  });
});

describe('wan/link-model: outages', () => {
  it('hold: what would be on the link while it is down waits for its end; datagrams are dropped', () => {
    const { clock, model } = link({ delayMs: 10, outages: [{ atMs: 100, durationMs: 50 }, { atMs: 300, durationMs: 10 }] });
    const f = model.newFlow();
    const at = (t: number): number => {
      clock.advanceTo(t);
      return model.sendSegment(f, 100);
    };
    expect(at(80)).to.equal(90);
    expect(at(95)).to.equal(160); // in flight when the link went down
    expect(at(120)).to.equal(160);
    expect(at(150)).to.equal(160);
    expect(at(151)).to.equal(161);
    expect(at(295)).to.equal(320);
    expect(model.stats.held).to.equal(2); // 120 and 150 queued behind the one at 95

    expect(model.outageAt(305)?.mode).to.equal('hold');
    expect(model.nextOutage(0)?.start).to.equal(100);

    const d = link({ delayMs: 10, outages: [{ atMs: 100, durationMs: 50, mode: 'hold' }] });
    const fate = (t: number): string => {
      d.clock.advanceTo(t);
      return d.model.sendDatagram(100).fate;
    };
    expect([fate(80), fate(95), fate(120), fate(150)]).to.deep.equal(['delivered', 'outage', 'outage', 'delivered']);
    expect(d.model.stats.outageDrops).to.equal(2);
  });

  it('hold: a long outage fills the queue (backpressure) and the queue serializes after it', () => {
    const { clock, model } = link({ delayMs: 1, bandwidthBps: 8e6, queueBytes: 10_000, outages: [{ atMs: 10, durationMs: 100 }] });
    const f = model.newFlow();
    clock.advanceTo(20);
    const ats: number[] = [];
    for (let i = 0; i < 11; i++) ats.push(model.sendSegment(f, 1000));
    expect(ats[0]).to.be.closeTo(110 + 1 + 1, 1e-9);
    expect(ats[10]).to.be.closeTo(110 + 11 + 1, 1e-9);
    expect(model.queueFull()).to.equal(true);
  });

  it('reset: a stream segment during the outage resets; outages count from the epoch', () => {
    const clock = new VirtualClock({ start: 1000 });
    const model = new LinkModel({ delayMs: 1, outages: [{ atMs: 50, durationMs: 20, mode: 'reset' }] }, { clock, random: new Random(1) });
    expect(model.epochMs).to.equal(1000);
    const f = model.newFlow();
    clock.advanceTo(1049);
    expect(model.sendSegment(f, 1)).to.equal(1050);
    clock.advanceTo(1055);
    expect(model.sendSegment(f, 1)).to.equal(STREAM_RESET);
    expect(model.lastResetReason).to.match(/outage/);
    expect(model.nextOutage(1000, 'reset')?.start).to.equal(1050);
    clock.advanceTo(1070);
    expect(model.sendSegment(f, 1)).to.equal(1071);
  });
});

describe('wan/link-model: datagram reorder, duplicate, corrupt', () => {
  it('hits each at its rate, with the stated extra delay and bit flips', () => {
    const { model } = link({ delayMs: 10, reorder: { p: 0.1, extraMs: 5 }, duplicate: { p: 0.05 }, corrupt: { p: 0.02, bits: 3 } }, 21);
    const n = 100_000;
    let late = 0;
    let twice = 0;
    let flipped = 0;
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const { fate, deliveries } = model.sendDatagram(64);
      if (fate !== 'delivered') bad++;
      if (deliveries.length === 2) twice++;
      for (const d of deliveries) {
        if (d.at !== 10 && d.at !== 15) bad++;
        if (d.at === 15) late++;
        if (d.flipBits.length > 0) {
          flipped++;
          if (d.flipBits.length !== 3 || d.flipBits.some((b) => !(b >= 0 && b < 64 * 8))) bad++;
        }
      }
    }
    expect(bad).to.equal(0);
    const copies = n + twice;
    expect(twice / n).to.be.closeTo(0.05, 0.004);
    expect(late / copies).to.be.closeTo(0.1, 0.005);
    expect(flipped / copies).to.be.closeTo(0.02, 0.002);
    expect(model.stats).to.include({ duplicated: twice, reordered: late, corrupted: flipped, datagrams: n });
  });
});

describe('wan/link-model: determinism', () => {
  const profile: WanProfile = {
    delayMs: 3, jitter: { dist: 'pareto', ms: 1 }, bandwidthBps: 50e6, queueBytes: 20_000,
    loss: { model: 'gilbert-elliott', p: 0.02, r: 0.3, lossGood: 0.001, lossBad: 0.6 },
    reorder: { p: 0.05, extraMs: 2 }, duplicate: { p: 0.02 }, corrupt: { p: 0.01 },
    outages: [{ atMs: 40, durationMs: 5 }],
  };
  function run(seed: number): LinkEvent[] {
    const events: LinkEvent[] = [];
    const { clock, model } = link(profile, seed, (e) => events.push(e));
    const f = model.newFlow();
    const r = new Random(99);
    for (let i = 0; i < 3000; i++) {
      if (r.bool()) model.sendSegment(f, 1 + r.int(500));
      else model.sendDatagram(1 + r.int(1400));
      clock.advance(r.float() * 0.2);
    }
    return events;
  }

  it('replays the same trace from the same seed, and a different one from another', () => {
    const a = run(5);
    expect(a).to.deep.equal(run(5));
    expect(a).to.not.deep.equal(run(6));
    const fates = new Set(a.map((e) => (e.kind === 'datagram' ? e.fate : e.kind)));
    expect([...fates]).to.include.members(['segment', 'delivered', 'lost', 'queue-full', 'outage']);
  });

  it('keeps each impairment on its own random stream (turning jitter on loses the same packets)', () => {
    const lostSet = (p: WanProfile): number[] => {
      const { model } = link(p, 8);
      const out: number[] = [];
      for (let i = 0; i < 5000; i++) if (model.sendDatagram(10).fate === 'lost') out.push(i);
      return out;
    };
    const base: WanProfile = { delayMs: 1, loss: { model: 'bernoulli', p: 0.05 } };
    expect(lostSet(base)).to.deep.equal(lostSet({ ...base, jitter: { dist: 'normal', ms: 0.3 }, reorder: { p: 0.5, extraMs: 1 } }));
  });
});
