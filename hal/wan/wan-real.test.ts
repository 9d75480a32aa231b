/**
 * The acceptance checks on the real HAL: real TCP (and UDP) on 127.0.0.1, preciseClock. These are
 * measurements on a shared 2-core machine: each check is on the median of many samples, says the
 * load average when it fails, and is retried (another tenant's burst is not a property of the link).
 */
import { expect } from 'chai';
import os from 'node:os';
import { preciseClock } from '../precise-timer.js';
import { tcpNetwork } from '../tcp.js';
import { udpNetwork } from '../udp.js';
import { WanLinks } from './links.js';
import type { WanProfile } from './profiles.js';
import { measureRtt, measureThroughput, percentile, withServices } from './wan-accuracy.js';
import { WanDatagramNetwork } from './wan-datagram.js';
import { WanNetwork } from './wan-network.js';

/** Both directions shaped alike (each side of the one process shapes its own sends). */
function wan(profile: WanProfile): WanNetwork {
  return new WanNetwork(tcpNetwork, new WanLinks({ clock: preciseClock, select: (c) => ({ name: c.direction, profile }) }));
}

function load(): string {
  return `load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} on ${os.cpus().length} cpus`;
}

describe('wan on the real HAL (TCP/UDP on 127.0.0.1, preciseClock)', function () {
  this.timeout(60_000);
  this.retries(2);

  for (const [oneWay, count] of [[1, 300], [5, 120], [30, 40]] as const) {
    it(`ping-pong RTT through a ${oneWay} ms link is never under 2 x ${oneWay} ms, and within 10% or 600 us of it (p10)`, async () => {
      const net = wan({ delayMs: oneWay });
      const r = await withServices(net, ({ echo }) => measureRtt(net, echo, { count }));
      const want = 2 * oneWay;
      // The figure (5% or 100 us) is measured by bench/wan-accuracy.ts on a quiet machine.
      // Here a round trip has four wake-ups (two timers, two reads), and on a shared 2-core VM
      // each one took 0.1-0.3 ms at the median (a plain loopback TCP ping-pong between two idle
      // processes: p50 0.1 ms, p90 0.5-1 ms, in CI too): what is checked is that the delay is
      // applied once, each way, not that precision.
      // On the 10th percentile, not the median: in CI another tenant's burst held up more than
      // half of the round trips of all three attempts (median 2.76 ms, p90 7.3 ms through a 1 ms
      // link, load average 2.4), which says nothing of the link. Never early holds for every one.
      const tolerance = Math.max(0.1 * want, 0.6);
      const msg = `min ${r.min.toFixed(4)}, p10 ${r.p10.toFixed(4)}, median ${r.p50.toFixed(4)} ms (p90 ${r.p90.toFixed(4)}, p99 ${r.p99.toFixed(4)}) vs ${want} ms; ${load()}`;
      expect(r.min, msg).to.be.at.least(want - 0.01);
      expect(r.p10, msg).to.be.within(want - 0.01, want + tolerance);
    });
  }

  for (const bps of [100e6, 1e9]) {
    it(`a bulk transfer through a ${bps / 1e6} Mb/s link runs at its rate within 5%`, async () => {
      const net = wan({ delayMs: 1, bandwidthBps: bps });
      const r = await withServices(net, ({ source }) => measureThroughput(net, source, { bytes: Math.round((bps / 8) * 1.5) }));
      expect(Math.abs(r.bps - bps) / bps, `${(r.bps / 1e6).toFixed(2)} Mb/s over ${r.seconds.toFixed(3)} s; ${load()}`).to.be.below(0.05);
    });
  }

  it('datagrams over real UDP arrive after the one-way delay, and loss is applied', async () => {
    const links = new WanLinks({ clock: preciseClock, seed: 3, select: () => ({ name: 'udp', profile: { delayMs: 3, loss: { model: 'bernoulli', p: 0.2 } } }) });
    const net = new WanDatagramNetwork(udpNetwork, links);
    const late: number[] = [];
    const sentAt = new Map<number, number>();
    const rx = await udpNetwork.bind('127.0.0.1', 0, {
      onMessage: (d) => late.push(performance.now() - sentAt.get(d.readUInt32BE(0))!),
    });
    const tx = await net.bind('127.0.0.1', 0, { onMessage: () => {} });
    const n = 300;
    for (let i = 0; i < n; i++) {
      const b = Buffer.alloc(32);
      b.writeUInt32BE(i, 0);
      sentAt.set(i, performance.now());
      tx.send(b, '127.0.0.1', rx.port);
      await new Promise((r) => setTimeout(r, 0.2));
    }
    await new Promise((r) => setTimeout(r, 100));
    await tx.close();
    await rx.close();
    const lost = links.model('udp')!.stats.lost;
    expect(late.length).to.equal(n - lost);
    expect(lost / n).to.be.closeTo(0.2, 0.07);
    expect(Math.min(...late)).to.be.at.least(3);
    // Two wake-ups (the timer, the read), and the 10th percentile as for the round trips above: CI
    // saw a 3.61 ms median at load 2 (and 3.16 before), the host's delay, not the link's.
    const p10 = percentile(late, 0.1);
    expect(p10, `p10 ${p10.toFixed(4)}, median ${percentile(late, 0.5).toFixed(4)} ms; ${load()}`).to.be.below(3 + 0.3);
  });
});
