import { expect } from 'chai';
import { crc32 } from 'node:zlib';
import { SimDatagramNetwork } from '../sim/sim-datagram.js';
import { Simulator } from '../sim/simulator.js';
import { WanLinks, linkTable } from './links.js';
import type { WanProfile } from './profiles.js';
import { WanDatagramNetwork } from './wan-datagram.js';

/** A datagram: seq (4) | crc32 of seq + payload (4) | payload. */
function frame(seq: number, size: number): Buffer {
  const b = Buffer.alloc(8 + size, seq & 0xff);
  b.writeUInt32BE(seq, 0);
  b.writeUInt32BE(crc32(Buffer.concat([b.subarray(0, 4), b.subarray(8)])), 4);
  return b;
}

function intact(b: Buffer): boolean {
  return b.length >= 8 && crc32(Buffer.concat([b.subarray(0, 4), b.subarray(8)])) === b.readUInt32BE(4);
}

async function blast(profile: WanProfile, n: number, seed = 1, gapMs = 0.05) {
  const sim = new Simulator();
  const net = new SimDatagramNetwork(sim.clock);
  const links = new WanLinks({ clock: sim.clock, seed, select: linkTable([{ name: 'A->B', remote: '10.0.0.2:9', profile }]) });
  const a = await new WanDatagramNetwork(net.node('10.0.0.1'), links).bind('10.0.0.1', 0, { onMessage: () => {} });
  const got: { seq: number; at: number }[] = [];
  let corrupt = 0;
  await net.node('10.0.0.2').bind('10.0.0.2', 9, {
    onMessage: (d) => {
      // The receiver's checksum drops what the link corrupted.
      if (!intact(d)) corrupt++;
      else got.push({ seq: d.readUInt32BE(0), at: sim.now() });
    },
  });
  const sentAt: number[] = [];
  await sim.run((async () => {
    for (let i = 0; i < n; i++) {
      sentAt.push(sim.now());
      a.send(frame(i, 100), '10.0.0.2', 9);
      await sim.sleep(gapMs);
    }
    await sim.sleep(1000);
  })());
  return { got, corrupt, sentAt, model: links.model('A->B')! };
}

describe('wan/wan-datagram on the simulator', () => {
  it('reorders, duplicates and corrupts at the profile rates, seen by the receiver', async () => {
    const n = 20_000;
    const { got, corrupt, model } = await blast({ delayMs: 5, reorder: { p: 0.05, extraMs: 2 }, duplicate: { p: 0.03 }, corrupt: { p: 0.02 } }, n);
    const seen = new Map<number, number>();
    for (const g of got) seen.set(g.seq, (seen.get(g.seq) ?? 0) + 1);
    const dups = [...seen.values()].filter((c) => c === 2).length;
    let overtaken = 0;
    for (let i = 1; i < got.length; i++) if (got[i]!.seq < got[i - 1]!.seq) overtaken++;
    const copies = n + model.stats.duplicated;
    expect(got.length + corrupt).to.equal(copies); // nothing lost: every copy arrived, intact or not
    expect(model.stats.duplicated / n).to.be.closeTo(0.03, 0.004);
    expect(corrupt).to.equal(model.stats.corrupted);
    expect(corrupt / copies).to.be.closeTo(0.02, 0.003);
    expect(dups).to.be.within(model.stats.duplicated * 0.9, model.stats.duplicated);
    // A late datagram is overtaken by the 40 sent in the 2 ms after it: it shows up as one step back.
    expect(overtaken / copies).to.be.closeTo(0.05, 0.006);
  });

  it('loses by Gilbert-Elliott bursts, drops what the queue cannot take and everything in an outage', async () => {
    const n = 20_000;
    const ge = await blast({ delayMs: 1, loss: { model: 'gilbert-elliott', p: 0.02, r: 0.25 } }, n, 3);
    const expected = 0.02 / 0.27;
    expect(1 - ge.got.length / n).to.be.closeTo(expected, expected * 0.12);

    // 800 kb/s with 100 B every 0.05 ms (17.3 Mb/s on the wire): the 1000 B queue drops most.
    const q = await blast({ delayMs: 1, bandwidthBps: 800e3, queueBytes: 1000 }, 2000, 1);
    const rate = q.got.length / ((q.got[q.got.length - 1]!.at - q.got[0]!.at) / 1000);
    expect(rate).to.be.closeTo(800e3 / 8 / 108, 20);
    expect(q.model.stats.queueDrops).to.equal(2000 - q.got.length);

    const o = await blast({ delayMs: 1, outages: [{ atMs: 20, durationMs: 30, mode: 'hold' }] }, 2000, 1);
    const lostSeqs = new Set(Array.from({ length: 2000 }, (_, i) => i));
    for (const g of o.got) lostSeqs.delete(g.seq);
    // Sent from 19 ms (arriving after 20) to just before 50.
    for (const s of lostSeqs) expect(o.sentAt[s]!).to.be.within(19 - 1e-9, 50);
    expect(lostSeqs.size).to.be.closeTo(620, 2);
  });

  it('is deterministic per seed', async () => {
    const p: WanProfile = { delayMs: 2, jitter: { dist: 'uniform', ms: 1 }, loss: { model: 'bernoulli', p: 0.1 }, duplicate: { p: 0.1 } };
    const x = await blast(p, 2000, 5);
    expect((await blast(p, 2000, 5)).got).to.deep.equal(x.got);
    expect((await blast(p, 2000, 6)).got).to.not.deep.equal(x.got);
  });
});
