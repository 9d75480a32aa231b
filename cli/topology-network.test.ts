/**
 * topologyNetwork on real loopback TCP with preciseClock: three nodes of one topology in this
 * process, each with its own Network, as their processes would have. Timing checks are medians of
 * many samples and retried, as in hal/wan/wan-real.test.ts (the machine is shared).
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
import { preciseClock } from '../hal/precise-timer.js';
import type { StreamHandler, StreamTransport } from '../hal/transport.js';
import { measureRtt, startEchoServer } from '../hal/wan/wan-accuracy.js';
import { WanStream } from '../hal/wan/wan-stream.js';
import { distanceKm, validateTopology, type Topology } from './topology.js';
import { sourceAddressOf, topologyLinks, topologyNetwork, wanProfileOf, type TopologyNetwork } from './topology-network.js';
import { freePort } from '../test/support/kura-process.js';

/** Degrees of latitude for `km` along a meridian. */
const latFor = (km: number) => km / ((6371.0088 * Math.PI) / 180);

function rawTopology(ports: number[], links: unknown[]) {
  return {
    name: 't', psk: 'a-test-psk-0123456789',
    sites: [
      { name: 's0', lat: 35, lon: 139 },
      { name: 's100', lat: 35 + latFor(100), lon: 139 },
      { name: 'far', lat: 34, lon: 133 },
    ],
    nodes: [
      { role: 'controller', name: 'a', site: 's0', peer: `127.0.0.1:${ports[0]}` },
      { role: 'relay', name: 'b', site: 's100', peer: `127.0.0.1:${ports[1]}` },
      { role: 'controller', name: 'c', site: 'far', peer: `localhost:${ports[2]}` },
    ],
    links,
  };
}

function topology(ports: number[], links: unknown[]): Topology {
  return validateTopology(rawTopology(ports, links), 'test', os.tmpdir());
}

/**
 * Node `name` of the topology in its own process (as `kura up` runs it), calibrated, echoing on its
 * peer endpoint; resolves once it listens.
 */
async function echoNode(raw: object, name: string, epochWallMs: number): Promise<ChildProcess> {
  const code = `
    const { validateTopology } = await import(${JSON.stringify(new URL('./topology.ts', import.meta.url).href)});
    const { topologyNetwork } = await import(${JSON.stringify(new URL('./topology-network.ts', import.meta.url).href)});
    const { preciseClock } = await import(${JSON.stringify(new URL('../hal/precise-timer.ts', import.meta.url).href)});
    const { startEchoServer } = await import(${JSON.stringify(new URL('../hal/wan/wan-accuracy.ts', import.meta.url).href)});
    const t = validateTopology(JSON.parse(process.argv[1]), 'test', '/tmp');
    const me = t.nodes.find((n) => n.name === process.argv[2]);
    const net = topologyNetwork(t, me.name, { clock: preciseClock, epochWallMs: Number(process.argv[3]) });
    await net.calibrate();
    await startEchoServer(net.network, me.peer.host, me.peer.port);
    process.stdout.write('ready\\n');
    process.stdin.resume();
    process.stdin.on('end', () => process.exit(0));
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, JSON.stringify(raw), name, String(epochWallMs)],
    { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = once(child, 'exit').then(([c]) => { throw new Error(`node ${name} exited with ${c}: ${out}`); });
  await Promise.race([exited, (async () => { while (!out.includes('ready')) await sleep(20); })()]);
  exited.catch(() => {});
  return child;
}

function load(): string {
  return `load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`;
}

class Rec implements StreamHandler {
  data = '';
  closed = false;
  onData(chunk: Buffer): void {
    this.data += chunk.toString();
  }
  onDrain(): void {}
  onClose(): void {
    this.closed = true;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('cli/topology-network: mapping a topology onto WAN profiles', () => {
  it('gives every node its own loopback source address', () => {
    expect([0, 1, 253, 254, 255].map(sourceAddressOf)).to.deep.equal(['127.0.1.1', '127.0.1.2', '127.0.1.254', '127.0.1.255', '127.0.2.0']);
  });

  it('delay: explicit delayMs, else distanceKm, else a preset\'s fixed delay, else the sites\' distance x routeFactor x 5 us/km', () => {
    expect(wanProfileOf({ routeFactor: 1.5, delayMs: 2 }, 100, 'x').profile.delayMs).to.equal(2);
    expect(wanProfileOf({ routeFactor: 2, distanceKm: 10 }, 100, 'x').profile).to.include({ distanceKm: 10, routeFactor: 2 });
    expect(wanProfileOf('lan', 500, 'x').profile).to.include({ delayMs: 0.05, bandwidthBps: 1e9 });
    // A preset's nominal 100 km gives way to the real sites.
    expect(wanProfileOf('metro', 250, 'x').profile).to.include({ distanceKm: 250, bandwidthBps: 1e9 });
    const full = wanProfileOf({
      preset: 'continental', routeFactor: 1.2, bandwidthBps: 5e6, queueBytes: 100_000, seed: 42,
      jitter: { dist: 'normal', ms: 0.5 }, loss: { model: 'bernoulli', p: 0.01 },
      outages: [{ atMs: 10, durationMs: 5, mode: 'reset' }],
    }, 300, 'a->b');
    expect(full.seed).to.equal(42);
    expect(full.profile).to.deep.equal({
      name: 'a->b', distanceKm: 300, routeFactor: 1.2, bandwidthBps: 5e6, queueBytes: 100_000,
      jitter: { dist: 'normal', ms: 0.5 }, loss: { model: 'bernoulli', p: 0.01 }, outages: [{ atMs: 10, durationMs: 5, mode: 'reset' }],
    });
  });

  it('maps each link to both of its nodes, each shaping its own direction; refuses a second link per pair', () => {
    const t = topology([1, 2, 3], [{ between: ['a', 'b'], profile: { bandwidthBps: 1e9 } }]);
    const la = topologyLinks(t, 'a');
    const lb = topologyLinks(t, 'b');
    expect([...la.keys()]).to.deep.equal(['b']);
    expect(la.get('b')!.name).to.equal('a->b');
    expect(lb.get('a')!.name).to.equal('b->a');
    expect(la.get('b')!.sitesKm).to.be.closeTo(100, 1e-6);
    expect(topologyLinks(t, 'c').size).to.equal(0);
    const dup = topology([1, 2, 3], [{ between: ['a', 'b'] }, { between: ['b', 'a'] }]);
    expect(() => topologyLinks(dup, 'a')).to.throw('links[1]: a second link between "a" and "b" (links[0] is the first)');
  });

  it('outages count from the topology-wide wall-clock epoch', () => {
    const t = topology([1, 2, 3], [{ between: ['a', 'b'], profile: { outages: [{ atMs: 900, durationMs: 10_000 }] } }]);
    const net = topologyNetwork(t, 'a', { clock: preciseClock, epochWallMs: Date.now() - 1000 });
    const [s] = net.linkStates();
    expect(s!.outage!.mode).to.equal('hold');
    expect(s!.outage!.remainingMs).to.be.closeTo(9900, 50);
  });

  it('refuses to partition a pair without a link, or an unknown node, saying why', () => {
    const t = topology([1, 2, 3], [{ between: ['a', 'b'] }]);
    const net = topologyNetwork(t, 'a', { clock: preciseClock, epochWallMs: Date.now() });
    expect(() => net.setPartitioned('c', true)).to.throw('no link between "a" and "c" in topology "t": their traffic is not emulated');
    expect(() => net.setPartitioned('zz', true)).to.throw('no node named "zz" in topology "t" (nodes: a, b, c)');
  });
});

describe('cli/topology-network on real loopback TCP', function () {
  this.timeout(60_000);
  let nets: Record<'a' | 'b' | 'c', TopologyNetwork>;
  let ports: number[];
  let epochWallMs: number;
  const links = [{ between: ['a', 'b'], profile: { bandwidthBps: 1e9 } }];
  const closers: (() => Promise<void>)[] = [];

  before(async () => {
    ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    const t = topology(ports, links);
    expect(distanceKm(t.sites[0]!, t.sites[1]!)).to.be.closeTo(100, 1e-6);
    epochWallMs = Date.now();
    nets = {
      a: topologyNetwork(t, 'a', { clock: preciseClock, epochWallMs }),
      b: topologyNetwork(t, 'b', { clock: preciseClock, epochWallMs }),
      c: topologyNetwork(t, 'c', { clock: preciseClock, epochWallMs }),
    };
    // Listeners keep the configured host; b and c echo.
    const eb = await startEchoServer(nets.b.network, '127.0.0.1', ports[1]);
    const ec = await startEchoServer(nets.c.network, '127.0.0.1', ports[2]);
    closers.push(() => eb.close(), () => ec.close());
  });
  after(async () => {
    for (const c of closers) await c();
  });

  it('a 100 km link (routeFactor 1.5) has an RTT of 2 x 0.75 ms within 10% or 250 us (p10), b in its own process', async function () {
    this.retries(2);
    // The arrangement of `kura up`: each node its own process, both calibrated (b on a port of its own).
    const raw = rawTopology([ports[0]!, ports[3]!, ports[2]!], links);
    const a = topologyNetwork(validateTopology(raw, 'test', os.tmpdir()), 'a', { clock: preciseClock, epochWallMs });
    await a.calibrate();
    const b = await echoNode(raw, 'b', epochWallMs);
    try {
      const r = await measureRtt(a.network, ports[3]!, { count: 300, warmup: 20 });
      const want = 1.5;
      const tol = Math.max(0.1 * want, 0.25);
      // The 10th percentile: on a busy host (CI, load average 2 on 2 cpus) more than half of the
      // round trips were held up by the host on every attempt (median 2.24 ms, p90 5.9 ms).
      const msg = `p10 ${r.p10.toFixed(4)}, median ${r.p50.toFixed(4)} ms (p90 ${r.p90.toFixed(4)}); ${load()}`;
      expect(r.p10, msg).to.be.within(want - tol, want + tol);
      expect(a.wan.model('a->b')!.stats.segments).to.be.at.least(300);
    } finally {
      b.stdin!.end();
      await once(b, 'exit');
    }
  });

  it('an accepting node tells the peer by its source address and shapes its answers', async () => {
    const r = await measureRtt(nets.a.network, ports[1]!, { count: 20 });
    expect(r.p50).to.be.above(1.4);
    expect(nets.b.wan.model('b->a')!.stats.segments).to.be.at.least(20);
  });

  it('a pair with no link in the file is not shaped', async () => {
    const before = nets.a.wan.model('a->b')!.stats.segments;
    const t = await nets.a.network.connect('localhost', ports[2]!, () => new Rec());
    expect(t).to.not.be.instanceOf(WanStream);
    expect(t.localAddress).to.equal('127.0.1.1');
    t.destroy();
    const r = await measureRtt(nets.a.network, ports[2]!, { count: 50 });
    expect(r.p50, load()).to.be.below(0.5);
    expect(nets.a.wan.model('a->b')!.stats.segments).to.equal(before);
    expect(nets.c.wan.names).to.deep.equal([]);
  });

  it('a partition holds the traffic of its side (the connection stays up) until that side heals', async () => {
    const client = new Rec();
    const t: StreamTransport = await nets.a.network.connect('127.0.0.1', ports[1]!, () => client);
    nets.a.setPartitioned('b', true);
    nets.b.setPartitioned('a', true);
    expect(nets.a.linkStates()[0]!.partitioned).to.equal(true);
    t.write([Buffer.from('hello')]);
    await sleep(300);
    expect(client.data).to.equal('');
    nets.a.setPartitioned('b', false); // reaches b, whose echo is held on b's side
    await sleep(300);
    expect(client.data).to.equal('');
    expect(nets.b.linkStates()[0]!.stats.held).to.be.at.least(1);
    nets.b.setPartitioned('a', false);
    const t0 = performance.now();
    while (client.data !== 'hello' && performance.now() - t0 < 2000) await sleep(1);
    expect(client.data).to.equal('hello');
    expect(client.closed).to.equal(false);
    t.destroy();
  });
});
