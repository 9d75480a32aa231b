/**
 * Runtime partitions (LinkModel.setPartitioned) on the simulator: a pulled cable holds a stream's
 * traffic without resetting it, the heal delivers everything in order, datagrams are dropped, and
 * connecting waits for the heal.
 */
import { expect } from 'chai';
import { Random } from '../sim/random.js';
import { SimNetwork } from '../sim/sim-network.js';
import { Simulator } from '../sim/simulator.js';
import type { StreamHandler, StreamTransport } from '../transport.js';
import { LinkModel, PARTITION_HELD } from './link-model.js';
import { WanLinks, linkTable } from './links.js';
import type { WanProfile } from './profiles.js';
import { WanNetwork } from './wan-network.js';

class Rec implements StreamHandler {
  data: Buffer[] = [];
  at: number[] = [];
  closes: (Error | undefined)[] = [];
  constructor(private readonly sim: Simulator) {}
  get bytes(): Buffer {
    return Buffer.concat(this.data);
  }
  onData(chunk: Buffer): void {
    this.data.push(chunk);
    this.at.push(this.sim.now());
  }
  onDrain(): void {}
  onClose(error?: Error): void {
    this.closes.push(error);
  }
}

function pair(profile: WanProfile) {
  const sim = new Simulator();
  const net = new SimNetwork(sim.clock);
  const links = { A: undefined as unknown as WanLinks, B: undefined as unknown as WanLinks };
  const wan = (self: 'A' | 'B', peer: string): WanNetwork => {
    links[self] = new WanLinks({ clock: sim.clock, select: linkTable([{ name: `${self}->${peer}`, remote: peer, profile }]) });
    return new WanNetwork(net.node(self), links[self]);
  };
  return { sim, a: wan('A', 'B'), b: wan('B', 'A'), links };
}

describe('wan: runtime partitions', () => {
  it('LinkModel: segments sent while partitioned are held, datagrams dropped; listeners hear both changes', () => {
    const sim = new Simulator();
    const m = new LinkModel({ delayMs: 3 }, { clock: sim.clock, random: new Random(1) });
    const heard: boolean[] = [];
    const off = m.onPartitionChange((on) => heard.push(on));
    m.setPartitioned(true);
    m.setPartitioned(true);
    expect(m.partitioned).to.equal(true);
    expect(m.sendSegment(m.newFlow(), 100)).to.equal(PARTITION_HELD);
    expect(m.sendDatagram(100).fate).to.equal('outage');
    m.setPartitioned(false);
    off();
    m.setPartitioned(true);
    expect(heard).to.deep.equal([true, false]);
    expect(m.stats.partitions).to.equal(2);
  });

  it('a stream stalls while partitioned (no reset), and the heal delivers everything in order after the delay', async () => {
    const { sim, a, b, links } = pair({ delayMs: 5, bandwidthBps: 80e6 });
    let server!: Rec;
    await b.listen('B', 3260, () => (server = new Rec(sim)));
    const client = new Rec(sim);
    const t: StreamTransport = await sim.run(a.connect('B', 3260, () => client));
    t.write([Buffer.from('before ')]);
    await sim.advance(1); // "before " is on the wire (arrives at +5) when the cable is pulled
    links.A.model('A->B')!.setPartitioned(true);
    let done = 0;
    for (let i = 0; i < 50; i++) t.write([Buffer.alloc(3000, i)], (e) => { if (!e) done++; });
    await sim.advance(10_000);
    expect(server.bytes.length).to.equal(0);
    expect(done).to.equal(0);
    expect(client.closes).to.deep.equal([]);
    const healedAt = sim.now();
    links.A.model('A->B')!.setPartitioned(false);
    await sim.advance(100);
    const want = Buffer.concat([Buffer.from('before '), ...Array.from({ length: 50 }, (_, i) => Buffer.alloc(3000, i))]);
    expect(server.bytes.equals(want)).to.equal(true);
    expect(done).to.equal(50);
    // First bytes one delay after the heal (never before their segment is due; back-to-back
    // segments are handed over together, at most 0.25 ms after the first of them); the rest at the
    // link's rate behind them.
    expect(server.at[0]! - healedAt).to.be.within(5 + (1448 * 8) / 80e3 - 1e-6, 5 + (1448 * 8) / 80e3 + 0.25);
    expect(server.at[server.at.length - 1]! - healedAt).to.be.closeTo(5 + (want.length * 8) / 80e3, 0.2);
  });

  it('connect waits for the heal', async () => {
    const { sim, a, b, links } = pair({ delayMs: 2 });
    await b.listen('B', 3260, () => new Rec(sim));
    links.A.modelFor({ name: 'A->B', profile: { delayMs: 2 } }).setPartitioned(true);
    let connectedAt = -1;
    const p = a.connect('B', 3260, () => new Rec(sim)).then((t) => { connectedAt = sim.now(); return t; });
    await sim.advance(1000);
    expect(connectedAt).to.equal(-1);
    links.A.model('A->B')!.setPartitioned(false);
    await sim.run(p);
    expect(connectedAt).to.be.closeTo(1000 + 4, 1e-6);
  });
});
