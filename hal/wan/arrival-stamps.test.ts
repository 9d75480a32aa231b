import { expect } from 'chai';
import { SimNetwork } from '../sim/sim-network.js';
import { Simulator } from '../sim/simulator.js';
import { MAX_HELD_BYTES, preamble, recordHeader, type ArrivalStampOptions } from './arrival-stamps.js';
import { WanLinks, linkTable } from './links.js';
import type { WanProfile } from './profiles.js';
import { WanNetwork } from './wan-network.js';
import { WanStream } from './wan-stream.js';
import { connectPair } from './test-fixture.js';

const HERE = new Uint8Array(16).fill(7);
const ELSEWHERE = new Uint8Array(16).fill(9);

function stamps(domain = HERE, horizonMs = 2): ArrivalStampOptions {
  return { domain, sharedOffsetMs: 0, horizonMs };
}

/**
 * A and B on one simulated network whose own transport takes `latencyMs` one way (loopback's
 * wake-up on a real machine), each shaping its sends with `profile`.
 */
function pair(profile: WanProfile, latencyMs: number, sa: ArrivalStampOptions | undefined, sb: ArrivalStampOptions | undefined) {
  const sim = new Simulator();
  const net = new SimNetwork(sim.clock, { latencyMs });
  const wan = (self: string, peer: string, s: ArrivalStampOptions | undefined): WanNetwork =>
    new WanNetwork(net.node(self), new WanLinks({ clock: sim.clock, select: linkTable([{ name: `${self}->${peer}`, remote: peer, profile }]) }), s ? { stamps: s } : {});
  return { sim, a: wan('A', 'B', sa), b: wan('B', 'A', sb) };
}


describe('wan/arrival-stamps: the receiver times deliveries', () => {
  it('the transport\'s own latency disappears into the link delay: bytes arrive at exactly the profile\'s time', async () => {
    const { sim, a, b } = pair({ delayMs: 5, bandwidthBps: 8e6 }, 0.4, stamps(), stamps());
    const { server, client, t } = await connectPair(sim, a, b);
    server.onChunk = (c) => server.t!.write([c]); // echo
    const t0 = sim.now();
    t.write([Buffer.alloc(1000, 1)]); // 1 ms at 8 Mb/s
    await sim.advance(30);
    expect(server.at).to.have.length(1);
    expect(server.at[0]! - t0).to.be.closeTo(6, 1e-9);
    expect(client.at).to.have.length(1);
    expect(client.at[0]! - t0).to.be.closeTo(12, 1e-9);
    expect(server.bytes.equals(Buffer.alloc(1000, 1))).to.equal(true);
    expect((server.t as WanStream).stampStats).to.deep.include({ heldBytes: 0, lateRecords: 0 });
  });

  it('without stamps the same transport adds its latency to every hop', async () => {
    const { sim, a, b } = pair({ delayMs: 5, bandwidthBps: 8e6 }, 0.4, undefined, undefined);
    const { server, t } = await connectPair(sim, a, b);
    const t0 = sim.now();
    t.write([Buffer.alloc(1000, 1)]);
    await sim.advance(30);
    expect(server.at).to.have.length(1);
    expect(server.at[0]! - t0).to.be.closeTo(6.4, 1e-9);
  });

  it('a transport slower than the horizon is late by the difference, and counted', async () => {
    const { sim, a, b } = pair({ delayMs: 1 }, 3, stamps(HERE, 1.5), stamps(HERE, 1.5));
    const { server, t } = await connectPair(sim, a, b);
    const t0 = sim.now();
    t.write([Buffer.from('late')]);
    await sim.advance(30);
    // Handed over at once (due within the horizon), carried in 3 ms: 2 ms after its arrival time.
    expect(server.at).to.have.length(1);
    expect(server.at[0]! - t0).to.be.closeTo(3, 1e-9);
    const s = (server.t as WanStream).stampStats!;
    expect(s.lateRecords).to.equal(1);
    expect(s.maxLateMs).to.be.closeTo(2, 1e-9);
  });

  it('long links: bytes wait at the sender until the horizon, then at the receiver until they are due; order kept', async () => {
    const { sim, a, b } = pair({ delayMs: 20, jitter: { dist: 'uniform', ms: 3 } }, 0.3, stamps(), stamps());
    const { server, t } = await connectPair(sim, a, b);
    const sent: Buffer[] = [];
    await sim.run((async () => {
      for (let i = 0; i < 200; i++) {
        const c = Buffer.from(`message ${i};`);
        sent.push(c);
        t.write([c]);
        await sim.sleep(0.07);
      }
      await sim.sleep(100);
    })());
    expect(server.bytes.toString()).to.equal(Buffer.concat(sent).toString());
    const s = (server.t as WanStream).stampStats!;
    expect(s.lateRecords).to.equal(0);
    expect(s.heldBytes).to.equal(0);
  });

  it('another machine\'s clock: each record is held for what was left of its delay when handed over (late, never early)', async () => {
    const { sim, a, b } = pair({ delayMs: 5 }, 0.4, stamps(ELSEWHERE), stamps(HERE));
    const { server, t } = await connectPair(sim, a, b);
    const t0 = sim.now();
    t.write([Buffer.from('x')]);
    await sim.advance(30);
    // Handed over 2 ms early (the horizon) with 2 ms left; carried in 0.4 ms, then held for the 2.
    expect(server.at.map((x) => x - t0)).to.have.length(1);
    expect(server.at[0]! - t0).to.be.closeTo(5.4, 1e-9);
  });

  it('a peer that does not stamp is refused with a precise error, not misread', async () => {
    const { sim, a, b } = pair({ delayMs: 1 }, 0, undefined, stamps());
    const { server, t } = await connectPair(sim, a, b);
    t.write([Buffer.from('plain bytes, no preamble, long enough to be read as one')]);
    await sim.advance(30);
    expect(server.data).to.deep.equal([]);
    expect(server.closes).to.have.length(1);
    expect(String(server.closes[0])).to.match(/did not start with arrival stamps.*same WAN options/);
  });

  it('a peer that ends cleanly: what it sent still arrives at its time, then the end', async () => {
    const { sim, a, b } = pair({ delayMs: 5, bandwidthBps: 1e6 }, 0.2, stamps(), stamps());
    const { server, t } = await connectPair(sim, a, b);
    const t0 = sim.now();
    t.write([Buffer.alloc(5000, 3)]); // 40 ms at 1 Mb/s
    t.end();
    await sim.runUntilIdle();
    expect(server.bytes.length).to.equal(5000);
    expect(server.at[server.at.length - 1]! - t0).to.be.closeTo(45, 1e-6);
    expect(server.closes).to.deep.equal([undefined]);
    expect(server.closedAt).to.be.at.least(server.at[server.at.length - 1]!);
  });

  it('pauseReading holds deliveries that fall due meanwhile; resumeReading lets them through in order', async () => {
    const { sim, a, b } = pair({ delayMs: 2 }, 0.1, stamps(), stamps());
    const { server, t } = await connectPair(sim, a, b);
    server.t!.pauseReading();
    t.write([Buffer.from('one ')]);
    await sim.advance(1);
    t.write([Buffer.from('two')]);
    await sim.advance(10);
    expect(server.data).to.deep.equal([]);
    server.t!.resumeReading();
    await sim.advance(0.001);
    expect(server.bytes.toString()).to.equal('one two');
  });

  it('holding more than MAX_HELD_BYTES stops reading the transport until half is delivered; nothing is lost', async () => {
    // An unlimited link: 96 MiB written at once is all due at once, and handed over at once.
    const { sim, a, b } = pair({ delayMs: 1 }, 0.1, stamps(), stamps());
    const { server, t } = await connectPair(sim, a, b);
    const big = Buffer.alloc(MAX_HELD_BYTES * 1.5);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
    let paused = 0;
    const inner = (server.t as WanStream).inner;
    const pause = inner.pauseReading.bind(inner);
    inner.pauseReading = () => { paused++; pause(); };
    for (let i = 0; i < big.length; i += 1 << 20) t.write([big.subarray(i, i + (1 << 20))]);
    await sim.advance(50);
    expect(Buffer.concat(server.data).equals(big)).to.equal(true);
    expect(server.closes).to.deep.equal([]);
    const s = (server.t as WanStream).stampStats!;
    expect(paused).to.be.at.least(1);
    expect(s.maxHeldBytes).to.be.at.most(MAX_HELD_BYTES + (1 << 20));
    expect(s.heldBytes).to.equal(0);
  });

  describe('a peer that does not keep to the protocol is cut off, and nothing it sent is delivered', () => {
    /** B's stamped receiver, and a raw connection from A that writes `bytes` to it. */
    async function rawPeer(bytes: (now: number) => Buffer[]) {
      const sim = new Simulator();
      const net = new SimNetwork(sim.clock);
      const b = new WanNetwork(net.node('B'), new WanLinks({ clock: sim.clock, select: linkTable([{ name: 'B->A', remote: 'A', profile: { delayMs: 1 } }]) }), { stamps: stamps() });
      const { server, t } = await connectPair(sim, net.node('A'), b);
      for (const c of bytes(sim.now())) t.write([c]);
      await sim.advance(50);
      return server;
    }

    it('a record due far beyond the horizon', async () => {
      const server = await rawPeer((now) => [preamble(stamps()), recordHeader(5, now + 10_000, now), Buffer.from('early')]);
      expect(server.data).to.deep.equal([]);
      expect(String(server.closes[0])).to.match(/due 10000\.0 ms ahead, beyond the 2 ms horizon/);
    });


    it('a malformed record header', async () => {
      const bad = recordHeader(5, 0, 0);
      bad.writeDoubleBE(Number.NaN, 4);
      const server = await rawPeer(() => [preamble(stamps()), bad, Buffer.from('xxxxx')]);
      expect(server.data).to.deep.equal([]);
      expect(String(server.closes[0])).to.match(/malformed arrival-stamp record/);
    });
  });
});
