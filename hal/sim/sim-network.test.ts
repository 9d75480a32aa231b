import { expect } from 'chai';
import type { DatagramPeer } from '../datagram.js';
import type { StreamHandler, StreamTransport } from '../transport.js';
import { SimDatagramNetwork } from './sim-datagram.js';
import { SimNetwork } from './sim-network.js';
import { Simulator } from './simulator.js';

class Rec implements StreamHandler {
  data: Buffer[] = [];
  at: number[] = [];
  drains = 0;
  closes: (Error | undefined)[] = [];
  constructor(private readonly sim: Simulator, public t?: StreamTransport) {}
  get text(): string {
    return Buffer.concat(this.data).toString();
  }
  onData(chunk: Buffer): void {
    this.data.push(chunk);
    this.at.push(this.sim.now());
  }
  onDrain(): void {
    this.drains++;
  }
  onClose(error?: Error): void {
    this.closes.push(error);
  }
}

describe('sim/sim-network', () => {
  it('connects by address and port, carries bytes both ways after the latency, closes both on end()', async () => {
    const sim = new Simulator();
    const net = new SimNetwork(sim.clock, { latencyMs: 2 });
    const a = net.node('10.0.0.1');
    const b = net.node('10.0.0.2');
    let server!: Rec;
    const l = await b.listen('10.0.0.2', 3260, (t) => (server = new Rec(sim, t)));
    const client = new Rec(sim);
    const t = await sim.run(a.connect('10.0.0.2', 3260, (tt) => { client.t = tt; return client; }));
    expect(sim.now()).to.equal(2);
    expect([t.localAddress, t.remoteAddress, t.remotePort]).to.deep.equal(['10.0.0.1', '10.0.0.2', 3260]);
    expect([server.t!.remoteAddress, server.t!.remotePort]).to.deep.equal(['10.0.0.1', t.localPort]);
    const buf = Buffer.from('hello');
    let done: Error | undefined | null = null;
    expect(t.write([buf, Buffer.from(' world')], (e) => { done = e; })).to.equal(true);
    buf.fill(0); // the write was copied
    await sim.advance(2);
    expect(server.text).to.equal('hello world');
    expect(server.at).to.deep.equal([4]);
    expect(done).to.equal(undefined);
    server.t!.write([Buffer.from('pong')]);
    t.end();
    await sim.runUntilIdle();
    expect(client.text).to.equal('pong');
    expect(client.closes).to.deep.equal([undefined]);
    expect(server.closes).to.deep.equal([undefined]);
    let late: Error | undefined;
    expect(t.write([Buffer.from('x')], (e) => { late = e; })).to.equal(false);
    await sim.settle();
    expect(late?.message).to.match(/closed/);
    await l.close();
    const refused = await sim.run(a.connect('10.0.0.2', 3260, () => new Rec(sim))).then(() => null, (e: NodeJS.ErrnoException) => e.code);
    expect(refused).to.equal('ECONNREFUSED');
  });

  it('backpressure: write() says false past the high-water mark, onDrain once the reader caught up; pause holds data', async () => {
    const sim = new Simulator();
    const net = new SimNetwork(sim.clock, { highWaterBytes: 1000 });
    let server!: Rec;
    await net.node('b').listen('0.0.0.0', 1, (t) => (server = new Rec(sim, t)));
    const client = new Rec(sim);
    const t = await sim.run(net.node('a').connect('b', 1, () => client));
    server.t!.pauseReading();
    expect(t.write([Buffer.alloc(800)])).to.equal(true);
    expect(t.write([Buffer.alloc(800)])).to.equal(false);
    await sim.advance(10);
    expect(server.data).to.have.length(0);
    expect(client.drains).to.equal(0);
    server.t!.resumeReading();
    await sim.advance(0);
    expect(Buffer.concat(server.data).length).to.equal(1600);
    expect(client.drains).to.equal(1);
  });

  it('destroy() with unread input resets the peer; a throwing handler drops its connection', async () => {
    const sim = new Simulator();
    const net = new SimNetwork(sim.clock);
    let server!: Rec;
    await net.node('b').listen('b', 7, (t) => (server = new Rec(sim, t)));
    const client = new Rec(sim);
    const t = await sim.run(net.node('a').connect('b', 7, () => client));
    server.t!.pauseReading();
    t.write([Buffer.from('unread')]);
    await sim.advance(1);
    server.t!.destroy();
    await sim.runUntilIdle();
    expect(server.closes).to.deep.equal([undefined]);
    expect((client.closes[0] as NodeJS.ErrnoException | undefined)?.code).to.equal('ECONNRESET');

    const client2 = new Rec(sim);
    const t2 = await sim.run(net.node('a').connect('b', 7, () => client2));
    server.onData = () => { throw new Error('handler bug'); };
    t2.write([Buffer.from('x')]);
    await sim.runUntilIdle();
    expect(server.closes[0]?.message).to.equal('handler bug');
    expect(client2.closes).to.have.length(1);
  });
});

describe('sim/sim-datagram', () => {
  it('delivers copies by address and port after the latency, from the sender address; nothing to nobody', async () => {
    const sim = new Simulator();
    const net = new SimDatagramNetwork(sim.clock, { latencyMs: 1.5 });
    const got: [string, DatagramPeer, number][] = [];
    const a = await net.node('10.0.0.1').bind('0.0.0.0', 0, { onMessage: () => {} });
    await net.node('10.0.0.2').bind('10.0.0.2', 9000, { onMessage: (d, from) => got.push([d.toString(), from, sim.now()]) });
    const buf = Buffer.from('ping');
    a.send(buf, '10.0.0.2', 9000);
    a.send(buf, '10.0.0.3', 9000);
    buf.write('XXXX');
    await sim.runUntilIdle();
    expect(got).to.deep.equal([['ping', { address: '10.0.0.1', port: a.port }, 1.5]]);
    const err = await net.node('10.0.0.2').bind('10.0.0.2', 9000, { onMessage: () => {} }).then(() => null, (e: NodeJS.ErrnoException) => e.code);
    expect(err).to.equal('EADDRINUSE');
  });
});
