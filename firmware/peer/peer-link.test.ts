import { expect } from 'chai';
import fc from 'fast-check';
import { Simulator } from '../../hal/sim/index.js';
import { LinkClosedError, LinkDownError, PeerError, WriteTooLargeError } from './errors.js';
import { ErrorCode, Flag, FrameType } from './frame.js';
import { PeerLink, type Durability, type InboundWrite, type PeerHandler, type PeerLinkOptions, type WriteResult } from './peer-link.js';
import { pipePair, type PipeOptions } from './sim-pipe.js';
import { CREDIT_DELAY_MS } from './write-receiver.js';
import { KEY, RawPeer, bytesFrom, linkPair, type LinkPair } from './test-fixture.js';

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

interface Received {
  id: string;
  volume: number;
  lba: number;
  blocks: number;
  data: Buffer;
  ack: Durability;
  at: number;
}

/** A receiving handler that records what arrived and answers after `delayMs`. */
function recorder(sim: Simulator, opts: { delayMs?: number; answer?: Durability } = {}): PeerHandler & { got: Received[] } {
  const got: Received[] = [];
  return {
    got,
    async onWrite(w: InboundWrite) {
      got.push({ id: `${w.id.sourceUnit}/${w.id.issue}`, volume: w.volume, lba: w.lba, blocks: w.blocks, data: Buffer.from(w.data), ack: w.ack, at: sim.now() });
      if (opts.delayMs) await sim.sleep(opts.delayMs);
      return opts.answer ?? w.ack;
    },
  };
}

async function open(o: { a?: Partial<PeerLinkOptions>; b?: Partial<PeerLinkOptions>; pipe?: Omit<PipeOptions, 'clock'>; seed?: number } = {}): Promise<LinkPair & { sim: Simulator }> {
  const sim = new Simulator({ seed: o.seed ?? 1 });
  const pair = linkPair({ clock: sim.clock, random: bytesFrom(() => sim.random.u32()), pipe: { latencyMs: 5, ...o.pipe }, a: o.a, b: o.b });
  await sim.run(Promise.all([pair.a.ready, pair.b.ready]));
  return { ...pair, sim };
}

function countsAfterHandshake(l: PeerLink): Record<string, number> {
  const s = { ...l.stats().framesSent };
  for (const k of ['HELLO', 'CHALLENGE', 'RESPONSE', 'WELCOME', 'HEARTBEAT']) delete s[k];
  return s;
}

describe('peer link: writes', () => {
  it('pipelined (default): WRITE_COMMAND + DATA at once, one round trip, data and identifiers intact', async () => {
    const h = recorder(new Simulator());
    const { a, b, sim } = await open({ b: { handler: h } });
    const t0 = sim.now();
    const data = pattern(8192, 1);
    const r = await sim.run(a.write({ volume: 3, lba: 100, blocks: 16, data }));
    expect(sim.now() - t0).to.equal(10); // one RTT of 2 x 5 ms
    expect(r).to.deep.equal({ id: { sourceUnit: 1, issue: 1 }, durability: 'received' });
    expect(h.got).to.have.length(1);
    expect(h.got[0]).to.include({ id: '1/1', volume: 3, lba: 100, blocks: 16 });
    expect(Buffer.compare(h.got[0]!.data, data)).to.equal(0);
    expect(countsAfterHandshake(a)).to.deep.equal({ WRITE_COMMAND: 1, DATA: 1 });
    expect(countsAfterHandshake(b)).to.deep.equal({ RECEPTION_COMPLETE: 1 });
    await a.close();
  });

  it('fidelity: WRITE_COMMAND -> PREPARATION_COMPLETE -> DATA -> RECEPTION_COMPLETE, two round trips', async () => {
    const sim0 = new Simulator();
    const h = recorder(sim0);
    const { a, b, sim } = await open({ a: { mode: 'fidelity' }, b: { handler: h } });
    expect(b.peerInfo?.pipelined).to.equal(false);
    const t0 = sim.now();
    const r = await sim.run(a.write({ volume: 1, lba: 0, blocks: 1, data: pattern(512, 2) }));
    expect(sim.now() - t0).to.equal(20);
    expect(r.durability).to.equal('received');
    expect(countsAfterHandshake(a)).to.deep.equal({ WRITE_COMMAND: 1, DATA: 1 });
    expect(countsAfterHandshake(b)).to.deep.equal({ PREPARATION_COMPLETE: 1, RECEPTION_COMPLETE: 1 });
    expect(Buffer.compare(h.got[0]!.data, pattern(512, 2))).to.equal(0);
    await a.close();
  });

  it('message counts and time for 20 sequential writes: fidelity costs a round trip more per write', async () => {
    const run = async (mode: 'pipelined' | 'fidelity') => {
      const { a, b, sim } = await open({ a: { mode }, b: { handler: { onWrite: () => 'received' } } });
      const t0 = sim.now();
      await sim.run((async () => {
        for (let i = 0; i < 20; i++) await a.write({ volume: 1, lba: i, blocks: 1, data: pattern(4096, i) });
      })());
      const out = { ms: sim.now() - t0, a: countsAfterHandshake(a), b: countsAfterHandshake(b) };
      await a.close();
      return out;
    };
    const p = await run('pipelined');
    const f = await run('fidelity');
    expect(p.ms).to.equal(20 * 10);
    expect(f.ms).to.equal(20 * 20);
    expect(p.a).to.deep.equal({ WRITE_COMMAND: 20, DATA: 20 });
    expect(p.b).to.deep.equal({ RECEPTION_COMPLETE: 20 });
    expect(f.a).to.deep.equal({ WRITE_COMMAND: 20, DATA: 20 });
    expect(f.b).to.deep.equal({ PREPARATION_COMPLETE: 20, RECEPTION_COMPLETE: 20 });
  });

  it('concurrent writes share round trips; the link hands out issuing numbers +1 in order', async () => {
    const h = recorder(new Simulator());
    const { a, sim } = await open({ b: { handler: h } });
    const t0 = sim.now();
    const rs = await sim.run(Promise.all(Array.from({ length: 10 }, (_, i) => a.write({ volume: 1, lba: i * 8, blocks: 8, data: pattern(4096, i) }))));
    expect(sim.now() - t0).to.equal(10);
    expect(rs.map((r) => r.id.issue)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(h.got.map((g) => g.id)).to.deep.equal(rs.map((r) => `1/${r.id.issue}`));
    expect(a.issued).to.equal(10);
    await a.close();
  });

  it('keeps a given command identifier (a relay forwards the source unit\'s own)', async () => {
    const h = recorder(new Simulator());
    const { a, sim } = await open({ b: { handler: h } });
    const r = await sim.run(a.write({ volume: 1, lba: 0, blocks: 1, data: pattern(512, 0), id: { sourceUnit: 11, issue: 4242 }, forwardTo: 12 }));
    expect(r.id).to.deep.equal({ sourceUnit: 11, issue: 4242 });
    expect(h.got[0]!.id).to.equal('11/4242');
    expect(a.issued).to.equal(0);
    await a.close();
  });

  it('reports the durability the receiver reached for the ack mode asked', async () => {
    const h = recorder(new Simulator());
    const { a, sim } = await open({ b: { handler: h } });
    const durable = await sim.run(a.write({ volume: 1, lba: 0, blocks: 1, data: pattern(512, 0), ack: 'durable' }));
    const received = await sim.run(a.write({ volume: 1, lba: 0, blocks: 1, data: pattern(512, 0) }));
    expect(durable.durability).to.equal('durable');
    expect(received.durability).to.equal('received');
    expect(h.got.map((g) => g.ack)).to.deep.equal(['durable', 'received']);
    await a.close();
  });

  it('splits data into DATA frames of the peer\'s maximum payload', async () => {
    const h = recorder(new Simulator());
    const { a, sim } = await open({ b: { handler: h, maxPayload: 4096 } });
    const data = pattern(4096 * 5 + 100, 3);
    await sim.run(a.write({ volume: 1, lba: 0, blocks: 41, data }));
    expect(a.stats().framesSent.DATA).to.equal(6);
    expect(Buffer.compare(h.got[0]!.data, data)).to.equal(0);
    await a.close();
  });

  it('works both ways at once on one link', async () => {
    const ha = recorder(new Simulator());
    const hb = recorder(new Simulator());
    const { a, b, sim } = await open({ a: { handler: ha, mode: 'fidelity' }, b: { handler: hb } });
    await sim.run(Promise.all([
      a.write({ volume: 1, lba: 1, blocks: 1, data: pattern(512, 1) }),
      b.write({ volume: 2, lba: 2, blocks: 1, data: pattern(512, 2) }),
    ]));
    expect(hb.got[0]!.id).to.equal('1/1');
    expect(ha.got[0]!.id).to.equal('2/1');
    await a.close();
  });

  it('a failing handler fails that write only (PeerError WRITE_FAILED); the link stays up', async () => {
    let n = 0;
    const { a, sim } = await open({
      b: { handler: { onWrite: () => (++n === 1 ? Promise.reject(new Error('medium error at LBA 7')) : 'durable') } },
    });
    const e = await sim.run(a.write({ volume: 1, lba: 7, blocks: 1, data: pattern(512, 0) }).then(() => null, (x: unknown) => x));
    expect(e).to.be.instanceOf(PeerError);
    expect((e as PeerError).code).to.equal(ErrorCode.WRITE_FAILED);
    expect((e as PeerError).text).to.equal('medium error at LBA 7');
    const ok = await sim.run(a.write({ volume: 1, lba: 8, blocks: 1, data: pattern(512, 0) }));
    expect(ok.durability).to.equal('durable');
    expect(a.isOpen).to.equal(true);
    expect(a.credit.commands).to.equal(64);
    await a.close();
  });

  it('refuses a write larger than the peer\'s window at once (split it)', async () => {
    const { a, sim } = await open({ b: { handler: { onWrite: () => 'received' }, receiveWindow: { bytes: 8192, commands: 4 } } });
    const e = await a.send({ volume: 1, lba: 0, blocks: 32, data: pattern(16384, 0) }).then(() => null, (x: unknown) => x);
    expect(e).to.be.instanceOf(WriteTooLargeError);
    expect((e as Error).message).to.match(/16384 bytes exceeds the peer's receive window of 8192/);
    await sim.run(a.close());
  });

  it('answers a write with no handler with an ERROR for that command', async () => {
    const { a, sim } = await open();
    const e = await sim.run(a.write({ volume: 1, lba: 0, blocks: 1, data: pattern(512, 0) }).then(() => null, (x: unknown) => x));
    expect((e as PeerError).code).to.equal(ErrorCode.UNSUPPORTED);
    await a.close();
  });

  it('delivers PULL requests to the handler', async () => {
    const pulls: unknown[] = [];
    const { a, sim } = await open({ b: { handler: { onWrite: () => 'received', onPull: (req, peer) => pulls.push({ ...req, from: peer.unitId }) } } });
    a.pull({ maxCommands: 5 });
    await sim.advance(10);
    expect(pulls).to.deep.equal([{ maxBytes: 0xffffffff, maxCommands: 5, volume: 0xffffffff, from: 1 }]);
    await a.close();
  });
});

describe('peer link: credit, queues and backpressure', () => {
  it('never lets the peer\'s data exceed its advertised window; credit flows back', async () => {
    let inUse = 0;
    let maxInUse = 0;
    let maxCommands = 0;
    const handler: PeerHandler = {
      onCommand() {
        inUse++;
        maxInUse = Math.max(maxInUse, b.receiveUsage.bytes);
        maxCommands = Math.max(maxCommands, b.receiveUsage.commands);
      },
      async onWrite(): Promise<Durability> {
        await sim.sleep(7);
        inUse--;
        return 'received';
      },
    };
    const { a, b, sim } = await open({ b: { handler, receiveWindow: { bytes: 3 * 4096, commands: 2 } } });
    const rs = await sim.run(Promise.all(Array.from({ length: 12 }, (_, i) => a.write({ volume: 1, lba: i, blocks: 8, data: pattern(4096, i) }))));
    expect(rs).to.have.length(12);
    expect(maxCommands).to.equal(2);
    expect(maxInUse).to.be.at.most(3 * 4096);
    expect(a.credit).to.deep.equal({ bytes: 3 * 4096, commands: 2 });
    expect(inUse).to.equal(0);
    await a.close();
  });

  it('fidelity: the receiver answers PREPARATION_COMPLETE only as its buffer frees, in arrival order', async () => {
    const order: number[] = [];
    let max = 0;
    const env: { sim?: Simulator; b?: PeerLink } = {};
    const handler: PeerHandler = {
      onCommand: (w) => {
        order.push(w.id.issue);
        max = Math.max(max, env.b!.receiveUsage.bytes);
      },
      async onWrite(): Promise<Durability> {
        await env.sim!.sleep(3);
        return 'received';
      },
    };
    const { a, b, sim } = await open({ a: { mode: 'fidelity' }, b: { handler, receiveWindow: { bytes: 8192, commands: 8 } } });
    Object.assign(env, { sim, b });
    const sizes = [4096, 8192, 2048, 2048, 4096];
    await sim.run(Promise.all(sizes.map((n, i) => a.write({ volume: 1, lba: i, blocks: n / 512, data: pattern(n, i) }))));
    expect(order).to.deep.equal([1, 2, 3, 4, 5]);
    expect(max).to.equal(8192);
    await a.close();
  });

  it('a retained buffer keeps its credit until released (relay holding data for the secondary)', async () => {
    const releases: Array<() => void> = [];
    const handler: PeerHandler = {
      onWrite(w) {
        releases.push(w.retain());
        return 'received';
      },
    };
    const { a, b, sim } = await open({ b: { handler, receiveWindow: { bytes: 1 << 20, commands: 2 } } });
    const done: WriteResult[] = [];
    for (let i = 0; i < 4; i++) void a.write({ volume: 1, lba: i, blocks: 1, data: pattern(512, i) }).then((r) => done.push(r));
    await sim.advance(50);
    // Two writes acknowledged; the other two wait for credit the relay still holds.
    expect(done.map((r) => r.id.issue)).to.deep.equal([1, 2]);
    expect(a.outstanding).to.equal(0);
    expect(a.queued).to.equal(2);
    expect(b.receiveUsage).to.deep.equal({ bytes: 1024, commands: 2 });
    releases.shift()!();
    await sim.advance(50);
    expect(done.map((r) => r.id.issue)).to.deep.equal([1, 2, 3]);
    expect(b.stats().framesSent.CREDIT).to.equal(1);
    releases.splice(0).forEach((r) => r());
    await sim.advance(50);
    expect(done.map((r) => r.id.issue)).to.deep.equal([1, 2, 3, 4]);
    await a.close();
  });

  it('returns a small release with the next answer, or after CREDIT_DELAY_MS; not in a frame of its own at once', async () => {
    const releases: Array<() => void> = [];
    const handler: PeerHandler = {
      onWrite(w) {
        releases.push(w.retain());
        return 'received';
      },
    };
    // A 1 ms pipe: the next write's answer comes back well within the delay.
    const { a, b, sim } = await open({ pipe: { latencyMs: 1 }, b: { handler, receiveWindow: { bytes: 1 << 20, commands: 64 } } });
    const write = (i: number) => sim.run(a.write({ volume: 1, lba: i, blocks: 1, data: pattern(512, i) }));
    await write(0);
    await write(1);
    releases.shift()!();
    await sim.advance(0.5);
    expect(b.stats().framesSent.CREDIT ?? 0).to.equal(0);
    // The next answer carries it.
    await write(2);
    expect(a.credit).to.deep.equal({ bytes: (1 << 20) - 2 * 512, commands: 62 });
    expect(b.stats().framesSent.CREDIT ?? 0).to.equal(0);
    // With no answer to carry it, a CREDIT frame after the delay.
    releases.shift()!();
    await sim.advance(CREDIT_DELAY_MS + 11);
    expect(b.stats().framesSent.CREDIT).to.equal(1);
    expect(a.credit).to.deep.equal({ bytes: (1 << 20) - 512, commands: 63 });
    releases.splice(0).forEach((r) => r());
    await a.close();
  });

  it('send() resolves only when the bounded send queue admits the write (FIFO)', async () => {
    const { a, sim } = await open({
      a: { sendQueue: { bytes: 1 << 20, commands: 3 } },
      b: { handler: { onWrite: () => 'received' }, receiveWindow: { bytes: 1 << 20, commands: 1 } },
    });
    const admitted: number[] = [];
    const tickets = Array.from({ length: 8 }, (_, i) => a.send({ volume: 1, lba: i, blocks: 1, data: pattern(512, i) }).then((t) => {
      admitted.push(t.id.issue);
      return t;
    }));
    await sim.settle();
    // One in flight (the peer's window), three queued: four admitted, four still waiting.
    expect(admitted).to.deep.equal([1, 2, 3, 4]);
    expect(a.outstanding).to.equal(1);
    expect(a.queued).to.equal(3 + 4);
    const all = await sim.run(Promise.all(tickets.map(async (t) => (await t).done)));
    expect(all.map((r) => r.id.issue)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(admitted).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
    await a.close();
  });

  it('respects transport backpressure: stops writing at the high-water mark until onDrain', async () => {
    const h = recorder(new Simulator());
    const hwm = 64 * 1024;
    // 1 MB/s-ish link: bytes leave slowly, the send buffer fills.
    const { a, pa, sim } = await open({ pipe: { latencyMs: 1, bytesPerMs: 1000, highWaterMark: hwm }, b: { handler: h, receiveWindow: { bytes: 8 << 20, commands: 64 } } });
    const writes = Array.from({ length: 32 }, (_, i) => a.write({ volume: 1, lba: i * 64, blocks: 64, data: pattern(32768, i) }));
    await sim.run(Promise.all(writes));
    const s = a.stats();
    expect(s.transportFull).to.be.greaterThan(0);
    // After write() said "full", nothing more was written until drained: the excess is one batch at most.
    expect(pa.stats.maxQueued).to.be.at.most(hwm + 64 * 1024 + 32768 + 4096);
    expect(pa.stats.full).to.equal(s.transportFull);
    expect(h.got).to.have.length(32);
    h.got.forEach((g, i) => expect(Buffer.compare(g.data, pattern(32768, i))).to.equal(0));
    await a.close();
  });

  it('keeps the send buffer near the high-water mark with small batches', async () => {
    const { a, pa, sim } = await open({ pipe: { latencyMs: 1, bytesPerMs: 100, highWaterMark: 16 * 1024 }, b: { handler: { onWrite: () => 'received' } } });
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      const t = await sim.run(a.send({ volume: 1, lba: i, blocks: 8, data: pattern(4096, i) }));
      writes.push(t.done);
      await sim.advance(1);
    }
    await sim.run(Promise.all(writes));
    expect(pa.stats.maxQueued).to.be.at.most(16 * 1024 + 64 * 1024 + 4096);
    expect(a.stats().transportFull).to.be.greaterThan(0);
    await a.close();
  });
});

describe('peer link: cut-through, corruption and violations', () => {
  it('cut-through: onCommand sees the write position advance; never reads past it', async () => {
    const seen: number[] = [];
    let forwarded = Buffer.alloc(0);
    const handler: PeerHandler = {
      onCommand(w) {
        // The forwarder outlives onWrite: it keeps the buffer until it has read all of it.
        const release = w.retain();
        void (async () => {
          for (let pos = 0; pos < w.length;) {
            const next = Math.min(w.length, pos + 1024);
            await w.whenReceived(next);
            expect(w.received).to.be.at.least(next);
            seen.push(w.received);
            forwarded = Buffer.concat([forwarded, w.data.subarray(pos, next)]);
            pos = next;
          }
          release();
        })();
      },
      onWrite: () => 'received',
    };
    const { a, b, sim } = await open({ pipe: { latencyMs: 1, bytesPerMs: 1000, maxChunk: 1500 }, b: { handler, maxPayload: 1024 } });
    const data = pattern(16 * 1024, 5);
    await sim.run(a.write({ volume: 1, lba: 0, blocks: 32, data }));
    await sim.advance(1);
    expect(b.receiveUsage).to.deep.equal({ bytes: 0, commands: 0 });
    expect(Buffer.compare(forwarded, data)).to.equal(0);
    // Progress was seen in steps, not all at once at the end.
    expect(seen[0]).to.be.lessThan(data.length);
    expect(new Set(seen).size).to.be.greaterThan(4);
    await a.close();
  });

  async function rawLink(handler: PeerHandler, window = { bytes: 1 << 20, commands: 4 }) {
    const sim = new Simulator();
    const { a: ea, b: eb } = pipePair({ clock: sim.clock, latencyMs: 1 });
    const link = new PeerLink({ clock: sim.clock, random: bytesFrom(() => sim.random.u32()), role: 'acceptor', unitId: 2, key: KEY, handler, receiveWindow: window });
    eb.attach(link.attach(eb));
    const raw = new RawPeer(ea);
    // Authenticate by hand as unit 1.
    const { Handshake } = await import('./handshake.js');
    const hs = new Handshake({ role: 'initiator', unitId: 1, key: KEY, random: bytesFrom(() => 7), local: { maxPayload: 1 << 20, windowBytes: 1 << 20, windowCommands: 8, pipelined: true } });
    for (const f of hs.start()) raw.send(f);
    await sim.advance(3);
    for (const f of hs.receive(raw.frames.shift()!).send) raw.send(f);
    await sim.advance(3);
    expect(raw.frames.shift()?.type).to.equal(FrameType.WELCOME);
    expect(link.isOpen).to.equal(true);
    return { sim, link, raw };
  }

  const cmd = (tag: number, length: number, extra: Record<string, number> = {}) => ({
    type: FrameType.WRITE_COMMAND, sourceUnit: 1, issue: tag, tag, flags: Flag.PIPELINED, volume: 1, blocks: 1, lba: tag, totalLength: length, portionOffset: 0, length, forwardTo: 0, ...extra,
  } as const);

  it('a DATA frame with a corrupt payload fails its command only (ERROR PAYLOAD_CRC), the link goes on', async () => {
    const h = recorder(new Simulator());
    const { sim, link, raw } = await rawLink(h);
    raw.send(cmd(1, 1024));
    raw.send({ type: FrameType.DATA, sourceUnit: 1, issue: 1, tag: 1, offset: 0, payload: pattern(512, 1) });
    raw.send({ type: FrameType.DATA, sourceUnit: 1, issue: 1, tag: 1, offset: 512, payload: pattern(512, 2) }, { mutate: (w) => { w[w.length - 3]! ^= 0x10; } });
    raw.send(cmd(2, 512));
    raw.send({ type: FrameType.DATA, sourceUnit: 1, issue: 2, tag: 2, offset: 0, payload: pattern(512, 3) });
    await sim.advance(5);
    const err = raw.ofType(FrameType.ERROR);
    expect(err).to.have.length(1);
    expect(err[0]).to.include({ tag: 1, issue: 1, code: ErrorCode.PAYLOAD_CRC });
    expect(err[0]!.flags & Flag.FATAL).to.equal(0);
    expect(raw.ofType(FrameType.RECEPTION_COMPLETE).map((f) => f.tag)).to.deep.equal([2]);
    expect(h.got.map((g) => g.id)).to.deep.equal(['1/2']);
    expect(link.isOpen).to.equal(true);
    expect(link.receiveUsage).to.deep.equal({ bytes: 0, commands: 0 });
    await link.close();
  });

  const violations: Array<[string, (raw: RawPeer) => void, number, RegExp]> = [
    ['more commands than the window', (raw) => { for (let t = 1; t <= 5; t++) raw.send(cmd(t, 512)); }, ErrorCode.CREDIT_VIOLATION, /beyond the window/],
    ['more bytes than the window', (raw) => raw.send(cmd(1, 2 << 20)), ErrorCode.CREDIT_VIOLATION, /beyond the window/],
    ['a tag already in progress', (raw) => { raw.send(cmd(1, 512)); raw.send(cmd(1, 512)); }, ErrorCode.DUPLICATE_COMMAND, /tag 1 is already in progress/],
    ['DATA for an unknown command', (raw) => raw.send({ type: FrameType.DATA, sourceUnit: 1, issue: 9, tag: 9, offset: 0, payload: Buffer.alloc(10) }), ErrorCode.PROTOCOL, /no such write/],
    ['DATA beyond the command', (raw) => { raw.send(cmd(1, 512)); raw.send({ type: FrameType.DATA, sourceUnit: 1, issue: 1, tag: 1, offset: 500, payload: Buffer.alloc(20) }); }, ErrorCode.PROTOCOL, /overlaps or exceeds/],
    ['overlapping DATA', (raw) => { raw.send(cmd(1, 512)); raw.send({ type: FrameType.DATA, sourceUnit: 1, issue: 1, tag: 1, offset: 100, payload: Buffer.alloc(20) }); raw.send({ type: FrameType.DATA, sourceUnit: 1, issue: 1, tag: 1, offset: 110, payload: Buffer.alloc(20) }); }, ErrorCode.PROTOCOL, /overlaps/],
    ['DATA with another command identifier', (raw) => { raw.send(cmd(1, 512)); raw.send({ type: FrameType.DATA, sourceUnit: 1, issue: 2, tag: 1, offset: 0, payload: Buffer.alloc(20) }); }, ErrorCode.PROTOCOL, /no such write/],
    ['a fidelity command on a pipelined link', (raw) => raw.send(cmd(1, 512, { flags: 0 })), ErrorCode.PROTOCOL, /fidelity on a pipelined link/],
    ['a sequence gap', (raw) => { raw.seq++; raw.send({ type: FrameType.HEARTBEAT, sourceUnit: 1, nonce: 1 }); }, ErrorCode.PROTOCOL, /sequence \d+, expected/],
    ['a corrupt header', (raw) => raw.send({ type: FrameType.HEARTBEAT, sourceUnit: 1, nonce: 1 }, { mutate: (w) => { w[41]! ^= 1; } }), ErrorCode.HEADER_CRC, /header CRC32C/],
    ['RECEPTION_COMPLETE for nothing', (raw) => raw.send({ type: FrameType.RECEPTION_COMPLETE, sourceUnit: 2, issue: 1, tag: 1, releasedBytes: 0, releasedCommands: 0 }), ErrorCode.PROTOCOL, /no such write outstanding/],
    ['credit never granted', (raw) => raw.send({ type: FrameType.CREDIT, sourceUnit: 1, releasedBytes: 100, releasedCommands: 0 }), ErrorCode.PROTOCOL, /credit returned beyond/],
    ['a handshake frame after the handshake', (raw) => raw.send({ type: FrameType.WELCOME, sourceUnit: 1 }), ErrorCode.PROTOCOL, /WELCOME after the handshake/],
  ];
  for (const [what, act, code, text] of violations) {
    it(`is closed with a fatal ERROR on ${what}`, async () => {
      const { sim, link, raw } = await rawLink({ onWrite: () => 'received' });
      act(raw);
      const e = await sim.run(link.closed);
      expect(e).to.be.instanceOf(LinkDownError);
      await sim.runUntilIdle();
      const err = raw.ofType(FrameType.ERROR).at(-1)!;
      expect(err.code, err.payload.toString()).to.equal(code);
      expect(err.flags & Flag.FATAL).to.not.equal(0);
      expect(err.payload.toString()).to.match(text);
      expect(raw.closedWith).to.not.equal(null);
    });
  }
});

describe('peer link: random traffic over arbitrary chunking (property)', () => {
  it('delivers every write intact, once, in order, both ways, whatever the chunk boundaries and windows', async () => {
    await fc.assert(fc.asyncProperty(
      fc.record({
        seed: fc.integer({ min: 1, max: 1_000_000 }),
        maxChunk: fc.integer({ min: 1, max: 3000 }),
        bytesPerMs: fc.constantFrom(Infinity, 50_000, 2_000),
        modeA: fc.constantFrom('pipelined' as const, 'fidelity' as const),
        modeB: fc.constantFrom('pipelined' as const, 'fidelity' as const),
        maxPayloadB: fc.integer({ min: 512, max: 8192 }),
        windowB: fc.integer({ min: 16 * 1024, max: 64 * 1024 }),
        commandsB: fc.integer({ min: 1, max: 6 }),
        sizes: fc.array(fc.integer({ min: 1, max: 16 * 1024 }), { minLength: 1, maxLength: 12 }),
      }),
      async (p) => {
        const hA = recorder(new Simulator());
        const hB = recorder(new Simulator());
        const { a, b, sim } = await open({
          seed: p.seed,
          pipe: { latencyMs: 2, maxChunk: p.maxChunk, bytesPerMs: p.bytesPerMs, highWaterMark: 32 * 1024 },
          a: { mode: p.modeA, handler: hA },
          b: { mode: p.modeB, handler: hB, maxPayload: p.maxPayloadB, receiveWindow: { bytes: p.windowB, commands: p.commandsB } },
        });
        const ab = p.sizes.map((n, i) => a.write({ volume: 1, lba: i, blocks: Math.ceil(n / 512), data: pattern(n, i) }));
        const ba = p.sizes.map((n, i) => b.write({ volume: 2, lba: i, blocks: Math.ceil(n / 512), data: pattern(n, 100 + i) }));
        await sim.run(Promise.all([...ab, ...ba]));
        expect(hB.got.map((g) => g.lba)).to.deep.equal(p.sizes.map((_, i) => i));
        hB.got.forEach((g, i) => expect(Buffer.compare(g.data, pattern(p.sizes[i]!, i))).to.equal(0));
        hA.got.forEach((g, i) => expect(Buffer.compare(g.data, pattern(p.sizes[i]!, 100 + i))).to.equal(0));
        expect(hA.got).to.have.length(p.sizes.length);
        expect(b.receiveUsage).to.deep.equal({ bytes: 0, commands: 0 });
        await a.close();
        await sim.runUntilIdle();
      },
    ), { numRuns: 40 });
  });
});

describe('peer link: liveness and closing', () => {
  it('sends heartbeats when idle and measures the round trip', async () => {
    // b only answers (its own interval is long, and its answers keep its side of the link busy).
    const { a, b, sim } = await open({ a: { heartbeatMs: 100, timeoutMs: 1000 }, b: { heartbeatMs: 150, timeoutMs: 1000 } });
    await sim.advance(1000);
    const pings = a.stats().framesSent.HEARTBEAT!;
    expect(pings).to.be.within(9, 11);
    expect(b.stats().framesSent.HEARTBEAT).to.equal(pings);
    expect(a.stats().rtt).to.equal(10);
    expect(a.isOpen && b.isOpen).to.equal(true);
    await a.close();
  });

  it('declares the link down when the peer falls silent; pending writes fail', async () => {
    const { a, b, pa, sim } = await open({
      a: { heartbeatMs: 100, timeoutMs: 500 }, b: { heartbeatMs: 100, timeoutMs: 500, handler: { onWrite: () => new Promise<Durability>(() => {}) } },
    });
    const pending = a.write({ volume: 1, lba: 0, blocks: 1, data: pattern(512, 0) }).then(() => null, (e: unknown) => e);
    await sim.advance(50);
    pa.partition();
    const t0 = sim.now();
    const [ea, eb] = await sim.run(Promise.all([a.closed, b.closed]));
    expect(ea).to.be.instanceOf(LinkDownError);
    expect(ea.message).to.match(/no frame from the peer for \d+ ms \(timeout 500 ms\)/);
    expect(eb).to.be.instanceOf(LinkDownError);
    expect(sim.now() - t0).to.be.at.most(500);
    expect(await pending).to.equal(ea);
  });

  it('close(): the peer hears SHUTTING_DOWN; everything pending fails with LinkClosedError', async () => {
    const { a, b, sim } = await open({ b: { handler: { onWrite: () => new Promise<Durability>(() => {}) } } });
    const pending = a.write({ volume: 1, lba: 0, blocks: 1, data: pattern(512, 0) }).then(() => null, (e: unknown) => e);
    await sim.advance(20);
    const closing = a.close('maintenance');
    expect(await pending).to.be.instanceOf(LinkClosedError);
    await closing;
    const eb = await sim.run(b.closed);
    expect(eb).to.be.instanceOf(PeerError);
    expect((eb as PeerError).code).to.equal(ErrorCode.SHUTTING_DOWN);
    expect((eb as PeerError).text).to.equal('maintenance');
    const after = await a.send({ volume: 1, lba: 0, blocks: 1, data: pattern(512, 0) }).then(() => null, (e: unknown) => e);
    expect(after).to.be.instanceOf(LinkClosedError);
  });

  it('a transport that closes under the link fails pending writes with LinkDownError', async () => {
    const { a, pb, sim } = await open({ b: { handler: { onWrite: () => new Promise<Durability>(() => {}) } } });
    const pending = a.write({ volume: 1, lba: 0, blocks: 1, data: pattern(512, 0) }).then(() => null, (e: unknown) => e);
    await sim.advance(20);
    pb.destroy();
    const e = await sim.run(a.closed);
    expect(e.message).to.match(/transport closed: connection reset by peer/);
    expect(await pending).to.equal(e);
  });
});
