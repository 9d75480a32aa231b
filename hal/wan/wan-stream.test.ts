import { expect } from 'chai';
import { Random } from '../sim/random.js';
import { SimNetwork } from '../sim/sim-network.js';
import { Simulator } from '../sim/simulator.js';
import type { LinkEvent } from './link-model.js';
import { WanLinks, linkTable } from './links.js';
import type { WanProfile } from './profiles.js';
import { WanNetwork } from './wan-network.js';
import { Rec, connectPair } from './test-fixture.js';

/** Nodes A and B on one simulated network, each shaping its sends to the other with its profile. */
function topology(ab: WanProfile, ba: WanProfile, seed = 1, trace?: (link: string, e: LinkEvent) => void) {
  const sim = new Simulator();
  const net = new SimNetwork(sim.clock);
  const wan = (self: string, peer: string, profile: WanProfile): WanNetwork =>
    new WanNetwork(net.node(self), new WanLinks({ clock: sim.clock, seed, trace, select: linkTable([{ name: `${self}->${peer}`, remote: peer, profile }]) }));
  return { sim, a: wan('A', 'B', ab), b: wan('B', 'A', ba) };
}


describe('wan/wan-network on the simulator', () => {
  it('a round trip takes both one-way delays exactly; connect takes one emulated RTT', async () => {
    const { sim, a, b } = topology({ delayMs: 5 }, { delayMs: 3 });
    const start = sim.now();
    const { server, client, t } = await connectPair(sim, a, b);
    expect(sim.now() - start).to.equal(10);
    server.onChunk = (c) => server.t!.write([c]); // echo
    const rtts: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = sim.now();
      const n = client.data.length;
      t.write([Buffer.from(`ping ${i}`)]);
      await sim.run((async () => { while (client.data.length === n) await sim.sleep(0.01); })());
      rtts.push(client.at[client.at.length - 1]! - t0);
      await sim.advance(1.234);
    }
    expect(rtts.every((r) => Math.abs(r - 8) < 1e-9)).to.equal(true, `${rtts}`);
    expect(client.bytes.toString()).to.equal(Array.from({ length: 20 }, (_, i) => `ping ${i}`).join(''));
  });

  it('transportLatencyMs hands bytes over early by the real transport\'s own latency', async () => {
    const sim = new Simulator();
    const net = new SimNetwork(sim.clock, { latencyMs: 0.25 }); // the "real" transport's one-way latency
    const wan = (self: string, peer: string): WanNetwork => new WanNetwork(net.node(self), new WanLinks({ clock: sim.clock, select: linkTable([{ remote: peer, profile: { delayMs: 5, bandwidthBps: 8e6 } }]) }), { transportLatencyMs: 0.25 });
    const { server, t } = await connectPair(sim, wan('A', 'B'), wan('B', 'A'));
    const t0 = sim.now();
    t.write([Buffer.alloc(1000)]); // 1 ms at 8 Mb/s
    await sim.advance(20);
    expect(server.at.map((x) => x - t0)).to.deep.equal([6]);
  });

  it('hands back-to-back segments over together, when the last of them arrives (never before its time)', async () => {
    const run = async (coalesceMs?: number): Promise<number[]> => {
      const sim = new Simulator();
      const net = new SimNetwork(sim.clock);
      const opts = coalesceMs === undefined ? {} : { coalesceMs };
      const wan = (self: string, peer: string): WanNetwork => new WanNetwork(net.node(self), new WanLinks({ clock: sim.clock, select: linkTable([{ remote: peer, profile: { delayMs: 5, bandwidthBps: 1e9 } }]) }), opts);
      const { server, t } = await connectPair(sim, wan('A', 'B'), wan('B', 'A'));
      const t0 = sim.now();
      t.write([Buffer.alloc(4096, 1)]);
      await sim.advance(20);
      expect(server.bytes.length).to.equal(4096);
      return server.at.map((x) => x - t0);
    };
    // Segments of 1448, 1448 and 1200 bytes at 1 Gb/s: serialised by 11.584, 23.168, 32.768 us.
    const whole = await run();
    expect(whole).to.have.length(1);
    expect(whole[0]).to.be.closeTo(5 + 4096 * 8e-6, 1e-9);
    const each = await run(0);
    expect(each).to.have.length(3);
    expect(each[0]).to.be.closeTo(5 + 1448 * 8e-6, 1e-9);
    expect(each[2]).to.be.closeTo(whole[0]!, 1e-9);
  });

  it('an unmatched connection passes straight through', async () => {
    const sim = new Simulator();
    const net = new SimNetwork(sim.clock);
    const links = new WanLinks({ clock: sim.clock, select: linkTable([{ remote: 'C', profile: { delayMs: 50 } }]) });
    const a = new WanNetwork(net.node('A'), links);
    const { server, t } = await connectPair(sim, a, new WanNetwork(net.node('B'), links));
    t.write([Buffer.from('x')]);
    await sim.advance(0);
    expect(server.at).to.deep.equal([0]);
    expect(links.names).to.deep.equal([]);
  });

  it('bandwidth: a bulk transfer arrives at exactly the link rate, with backpressure from the queue', async () => {
    const bps = 10e6;
    const { sim, a, b } = topology({ delayMs: 4, bandwidthBps: bps, queueBytes: 64 * 1024 }, { delayMs: 4 });
    const { server, client, t } = await connectPair(sim, a, b);
    const total = 1 << 20;
    const chunk = Buffer.alloc(16 * 1024, 7);
    const t0 = sim.now();
    let falses = 0;
    await sim.run((async () => {
      for (let sent = 0; sent < total; sent += chunk.length) {
        if (!t.write([chunk])) {
          falses++;
          const d = client.drains;
          while (client.drains === d) await sim.sleep(0.1);
        }
      }
      while (server.bytes.length < total) await sim.sleep(1);
    })());
    const last = server.at[server.at.length - 1]!;
    expect(last - t0).to.be.closeTo((total * 8 * 1000) / bps + 4, 1e-6);
    expect(falses).to.be.above(5);
    // Never ahead of the serializer: by time x, at most rate * (x - t0 - delay) bytes (+ one segment).
    let got = 0;
    for (let i = 0; i < server.data.length; i++) {
      got += server.data[i]!.length;
      expect(got).to.be.at.most(((server.at[i]! - t0 - 4) * bps) / 8000 + 1448 + 1e-6);
    }
  });

  it('never reorders a stream under heavy jitter and bursty loss; every write completes', async () => {
    const profile: WanProfile = {
      delayMs: 2, jitter: { dist: 'pareto', ms: 3 }, bandwidthBps: 50e6,
      loss: { model: 'gilbert-elliott', p: 0.01, r: 0.3, lossGood: 0.001, lossBad: 0.5 },
    };
    const { sim, a, b } = topology(profile, profile, 9);
    const { server, t } = await connectPair(sim, a, b);
    const r = new Random(4);
    const sent: Buffer[] = [];
    let done = 0;
    await sim.run((async () => {
      for (let i = 0; i < 600; i++) {
        const m = Buffer.alloc(1 + r.int(6000), i & 0xff);
        sent.push(m);
        t.write([m.subarray(0, m.length >> 1), m.subarray(m.length >> 1)], (e) => { if (!e) done++; });
        await sim.sleep(r.float() * 0.5);
      }
      const total = sent.reduce((x, m) => x + m.length, 0);
      while (server.bytes.length < total) await sim.sleep(5);
    })());
    expect(server.bytes.equals(Buffer.concat(sent))).to.equal(true);
    expect(done).to.equal(600);
    for (let i = 1; i < server.at.length; i++) expect(server.at[i]!).to.be.at.least(server.at[i - 1]!);
    expect(a.links.model('A->B')!.stats.retransmits).to.be.above(5);
  });

  it('hold outage: the stream stalls for it and then carries on; connect waits for its end', async () => {
    const profile: WanProfile = { delayMs: 1, outages: [{ atMs: 100, durationMs: 200, mode: 'hold' }] };
    const { sim, a, b } = topology(profile, profile);
    const { server, t } = await connectPair(sim, a, b);
    await sim.advance(120 - sim.now());
    t.write([Buffer.from('during')]);
    await sim.advance(200);
    expect(server.data.map(String)).to.deep.equal(['during']);
    expect(server.at).to.deep.equal([301]);
    // A connection attempted while the link is down completes after it (plus the handshake).
    const { sim: s2, a: a2, b: b2 } = topology(profile, profile);
    await s2.advance(150);
    await connectPair(s2, a2, b2);
    expect(s2.now()).to.equal(302);
  });

  it('reset outage: streams on the link are reset when it starts; connecting fails while it lasts', async () => {
    const profile: WanProfile = { delayMs: 1, outages: [{ atMs: 50, durationMs: 20, mode: 'reset' }] };
    const { sim, a, b } = topology(profile, profile);
    const { server, client, t } = await connectPair(sim, a, b);
    t.write([Buffer.from('before')]);
    await sim.advance(100);
    expect(server.bytes.toString()).to.equal('before');
    expect((client.closes[0] as NodeJS.ErrnoException).code).to.equal('ECONNRESET');
    expect(client.closes[0]!.message).to.match(/A->B: WAN link outage/);
    expect(client.closedAt).to.equal(50);
    expect(server.closes).to.have.length(1);
    expect(t.write([Buffer.from('late')])).to.equal(false);

    const { sim: s2, a: a2, b: b2 } = topology(profile, profile);
    await s2.advance(55);
    await b2.listen('B', 1, (tt) => new Rec(s2, tt));
    const err = await s2.run(a2.connect('B', 1, () => new Rec(s2))).then(() => null, (e: NodeJS.ErrnoException) => e.code);
    expect(err).to.equal('ETIMEDOUT');
    await s2.advance(20);
    await s2.run(a2.connect('B', 1, () => new Rec(s2)));
  });

  it('backpressure also comes from bytes in flight and from the real transport; pause passes through', async () => {
    const sim = new Simulator();
    const net = new SimNetwork(sim.clock, { highWaterBytes: 64 * 1024 });
    const links = (peer: string) => new WanLinks({ clock: sim.clock, select: linkTable([{ name: peer, remote: peer, profile: { delayMs: 10 } }]) });
    const a = new WanNetwork(net.node('A'), links('B'), { maxHeldBytes: 256 * 1024 });
    const b = new WanNetwork(net.node('B'), links('A'));
    const { server, client, t } = await connectPair(sim, a, b);
    server.t!.pauseReading();
    const chunk = Buffer.alloc(32 * 1024);
    let writes = 0;
    while (t.write([chunk])) writes++;
    expect(writes).to.equal(8); // 9 x 32 KiB in flight > 256 KiB held
    await sim.advance(20);
    // Delivered into the real stream, whose reader is paused: now that one is full.
    expect(client.drains).to.equal(0);
    expect(server.data).to.have.length(0);
    expect(t.write([chunk])).to.equal(false);
    server.t!.resumeReading();
    await sim.advance(20);
    expect(client.drains).to.equal(1);
    expect(Buffer.concat(server.data).length).to.equal(10 * 32 * 1024);
  });

  it('end() delivers everything written before closing', async () => {
    const { sim, a, b } = topology({ delayMs: 3, bandwidthBps: 1e6 }, { delayMs: 3 });
    const { server, client, t } = await connectPair(sim, a, b);
    t.write([Buffer.alloc(5000, 1)]);
    t.end();
    await sim.runUntilIdle();
    expect(server.bytes.length).to.equal(5000);
    expect(server.closes).to.deep.equal([undefined]);
    expect(client.closes).to.deep.equal([undefined]);
  });

  it('replays a whole run exactly from the seed', async () => {
    const profile: WanProfile = {
      delayMs: 3, jitter: { dist: 'normal', ms: 1 }, bandwidthBps: 20e6,
      loss: { model: 'bernoulli', p: 0.01 }, outages: [{ atMs: 30, durationMs: 7 }],
    };
    const run = async (seed: number): Promise<{ arrivals: number[]; events: number }> => {
      let events = 0;
      const { sim, a, b } = topology(profile, profile, seed, () => events++);
      const { server, client, t } = await connectPair(sim, a, b);
      server.onChunk = (c) => server.t!.write([c]);
      const r = new Random(1);
      await sim.run((async () => {
        for (let i = 0; i < 200; i++) {
          t.write([Buffer.alloc(1 + r.int(3000))]);
          await sim.sleep(r.float());
        }
        await sim.sleep(2000);
      })());
      return { arrivals: client.at, events };
    };
    const x = await run(3);
    expect(x.arrivals.length).to.be.above(20);
    expect(await run(3)).to.deep.equal(x);
    expect((await run(4)).arrivals).to.not.deep.equal(x.arrivals);
  });
});
