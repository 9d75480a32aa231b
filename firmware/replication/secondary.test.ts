import { ErrorCode } from '../peer/frame.js';
import { expect } from 'chai';
import { Random } from '../../hal/sim/random.js';
import { Simulator } from '../../hal/sim/simulator.js';
import type { Latency } from '../../hal/sim/sim-device.js';
import { WriteProtectedError } from '../communication-unit.js';
import type { Durability, InboundWrite } from '../peer/inbound-write.js';
import { guardedVolume } from './replicated-volume.js';
import { BS, SECONDARY_UNIT, PRIMARY_UNIT, inbound, medium, outcome, pattern, writeBlocks, type Medium } from './rig.test.js';
import { CHECKPOINT_BYTES, CHECKPOINT_MS, SecondaryUnit, type AppliedState } from './secondary.js';
import { nullLogger, type Logger } from '../../hal/types.js';

interface W {
  seq: number;
  lba: number;
  data: Buffer;
}

/** The primary's history applied up to sequence k, over `span` blocks. */
function model(writes: readonly W[], k: number, span: number): Buffer {
  const img = Buffer.alloc(span * BS);
  for (const w of writes) if (w.seq <= k) w.data.copy(img, w.lba * BS);
  return img;
}

interface SecWorld {
  sim: Simulator;
  m: Medium;
  unit: SecondaryUnit;
  states: Map<number, AppliedState>;
  /** Every watermark written, in order. */
  persisted: AppliedState[];
  /** Hand a write to the unit's handler (as the link does); a throw becomes a rejection. */
  deliver(w: InboundWrite): Promise<Durability>;
  /** A new SecondaryUnit (a process restart) over the same volume, from the persisted watermark. */
  restart(): SecondaryUnit;
  writes(): number;
}

function secondaryWorld(o: {
  seed?: number; latency?: Latency; volatileCache?: boolean; persistMs?: number; blockCount?: number;
  maxWaitingBytes?: number; onPersist?: (s: AppliedState) => void; timed?: boolean; logger?: Logger;
} = {}): SecWorld {
  const sim = new Simulator({ seed: o.seed ?? 1 });
  const m = medium(sim, { unitId: SECONDARY_UNIT, name: 'secondary', blockCount: o.blockCount ?? 256, latency: o.latency ?? 0.5, volatileCache: o.volatileCache });
  const states = new Map<number, AppliedState>();
  const persisted: AppliedState[] = [];
  const make = (): SecondaryUnit => new SecondaryUnit({
    volumes: [{ index: 0, volume: m.vol, state: states.get(0) }],
    maxWaitingBytes: o.maxWaitingBytes,
    ...(o.timed ? { clock: sim.clock } : {}),
    ...(o.logger ? { logger: o.logger } : {}),
    persist: async (index, state) => {
      o.onPersist?.(state);
      await sim.sleep(o.persistMs ?? 0.5);
      states.set(index, { ...state });
      persisted.push({ ...state });
    },
  });
  const w: SecWorld = {
    sim, m, states, persisted,
    unit: make(),
    deliver: (x) => Promise.resolve().then(() => w.unit.handler.onWrite(x)),
    restart: () => (w.unit = make()),
    writes: () => m.dev.ops('write').length,
  };
  return w;
}

/** Settled yet? (for "still waiting" assertions) */
function track<T>(p: Promise<T>): { done: boolean; value?: T; error?: unknown; at?: number } & { p: Promise<T> } {
  const t: { done: boolean; value?: T; error?: unknown; at?: number; p: Promise<T> } = { done: false, p };
  p.then((v) => { t.done = true; t.value = v; }, (e: unknown) => { t.done = true; t.error = e; });
  return t;
}

describe('secondary: the link\'s buffers', () => {
  it('keeps the link\'s own buffer of a write with no gap below it until it is on its way to the medium; copies one behind a gap', async () => {
    const s = secondaryWorld();
    const held: string[] = [];
    const retained: number[] = [];
    const write = (seq: number) => {
      const w = inbound({ seq, lba: seq * 4, data: pattern(seq, 4 * BS) });
      return {
        ...w,
        retain: () => {
          retained.push(seq);
          held.push(`${seq}`);
          return () => held.splice(held.indexOf(`${seq}`), 1);
        },
      };
    };
    // 3 arrives behind a gap (1 and 2 missing): copied, the link's buffer goes back at once.
    await s.sim.run(s.deliver(write(3)));
    expect(held).to.deep.equal([]);
    // 1 is next: retained, and given back once applied.
    await s.sim.run(s.deliver(write(1)));
    await s.sim.runUntilIdle();
    expect(held).to.deep.equal([]);
    await s.sim.run(s.deliver(write(2)));
    await s.sim.runUntilIdle();
    expect(held).to.deep.equal([]);
    expect(retained).to.deep.equal([1, 2]);
    for (const seq of [1, 2, 3]) expect(s.m.dev.peek(seq * 4 * BS, 4 * BS).equals(pattern(seq, 4 * BS))).to.equal(true);
  });
});

describe('secondary: order and prefix', () => {
  it('applies writes arriving out of order (3 before 1 and 2) in sequence order; overlapping LBAs end with the last one', async () => {
    const s = secondaryWorld();
    const A = pattern(1, 4 * BS);
    const B = pattern(2, 4 * BS);
    const C = pattern(3, 4 * BS);
    const a3 = track(s.deliver(inbound({ seq: 3, lba: 4, data: C })));
    await s.sim.runUntilIdle();
    expect(a3.value).to.equal('received'); // in buffer memory: that is all 'received' promises
    expect(s.writes()).to.equal(0);
    expect(s.unit.status(0)).to.include({ sequence: 0, waiting: 1 });
    await s.deliver(inbound({ seq: 1, lba: 0, data: A }));
    await s.sim.runUntilIdle();
    expect(s.writes()).to.equal(1);
    expect(s.unit.status(0)).to.include({ sequence: 1, waiting: 1 });
    await s.deliver(inbound({ seq: 2, lba: 2, data: B }));
    await s.sim.runUntilIdle();
    expect(s.unit.status(0)).to.include({ sequence: 3, waiting: 0 });
    expect(s.m.dev.ops('write').map((x) => x.offset / BS)).to.deep.equal([0, 2, 4]);
    const want = Buffer.concat([A.subarray(0, 2 * BS), B.subarray(0, 2 * BS), C]);
    expect(s.m.peek(0, 8).equals(want)).to.equal(true);
  });

  it('after any prefix of deliveries the volume is the history applied up to the largest contiguous sequence (randomized, with duplicates)', async () => {
    const SPAN = 24;
    for (let c = 0; c < 60; c++) {
      const rnd = new Random(1000 + c);
      const s = secondaryWorld({ seed: c, latency: () => rnd.float() * 2, volatileCache: rnd.int(2) === 0 });
      const n = rnd.range(4, 16);
      const writes: W[] = [];
      for (let seq = 1; seq <= n; seq++) {
        const blocks = rnd.range(1, 6);
        writes.push({ seq, lba: rnd.int(SPAN - blocks + 1), data: pattern(c * 100 + seq, blocks * BS) });
      }
      const copies: number[] = [];
      for (const w of writes) for (let k = rnd.range(1, 3); k > 0; k--) copies.push(w.seq);
      for (let i = copies.length - 1; i > 0; i--) {
        const j = rnd.int(i + 1);
        [copies[i], copies[j]] = [copies[j]!, copies[i]!];
      }
      const arrived = new Set<number>();
      const answers: Promise<void>[] = [];
      for (const seq of copies) {
        const w = writes[seq - 1]!;
        const ack: Durability = rnd.int(2) === 0 ? 'durable' : 'received';
        answers.push(s.deliver(inbound({ seq, lba: w.lba, data: w.data, ack })).then((d) => {
          expect(d, `case ${c} seq ${seq}`).to.equal(ack);
          if (ack === 'durable') expect(s.states.get(0)!.sequence, `case ${c}: durable answer for ${seq} above the watermark`).to.be.at.least(seq);
        }));
        arrived.add(seq);
        await s.sim.runUntilIdle();
        let k = 0;
        while (arrived.has(k + 1)) k++;
        const what = `case ${c}, after ${[...arrived].join(',')} arrived (prefix ${k})`;
        expect(s.m.peek(0, SPAN).equals(model(writes, k, SPAN)), what).to.equal(true);
        expect(s.unit.status(0).sequence, what).to.equal(k);
        expect(s.writes(), `${what}: each sequence applied once`).to.equal(k);
      }
      await s.sim.run(Promise.all(answers));
      expect(s.unit.counters(0).duplicates, `case ${c}`).to.equal(copies.length - n);
    }
  });

  it('concurrent deliveries at random times: final state, exactly-once, and every watermark covers only durable data (randomized)', async () => {
    const SPAN = 16;
    for (let c = 0; c < 30; c++) {
      const rnd = new Random(5000 + c);
      let applied: W[] = [];
      const s = secondaryWorld({
        seed: c, latency: () => 0.1 + rnd.float() * 3, volatileCache: true, persistMs: rnd.float() * 4,
        // When a watermark w is written, every block holds (durably) the data of some prefix j >= w
        // the unit has applied: nothing at or below w is missing.
        onPersist: (st) => {
          const k = s.unit.status(0).sequence;
          expect(st.sequence, `case ${c}: watermark above what was applied`).to.be.at.most(k);
          const durable = s.m.dev.peekDurable(0, SPAN * BS);
          for (let b = 0; b < SPAN; b++) {
            const blk = durable.subarray(b * BS, (b + 1) * BS);
            let ok = false;
            for (let j = st.sequence; j <= k && !ok; j++) ok = model(applied, j, SPAN).subarray(b * BS, (b + 1) * BS).equals(blk);
            expect(ok, `case ${c}: block ${b} is not durable at watermark ${st.sequence}`).to.equal(true);
          }
        },
      });
      const n = rnd.range(5, 20);
      const writes: W[] = [];
      for (let seq = 1; seq <= n; seq++) {
        const blocks = rnd.range(1, 4);
        writes.push({ seq, lba: rnd.int(SPAN - blocks + 1), data: pattern(c * 100 + seq, blocks * BS) });
      }
      applied = writes;
      const answers: Promise<Durability>[] = [];
      for (const w of writes) {
        for (let k = rnd.range(1, 3); k > 0; k--) {
          answers.push(new Promise<void>((r) => s.sim.clock.setTimer(rnd.float() * 20, r)).then(() => s.deliver(inbound({ seq: w.seq, lba: w.lba, data: w.data, ack: 'durable' }))));
        }
      }
      const got = await s.sim.run(Promise.all(answers));
      expect(got.every((d) => d === 'durable')).to.equal(true);
      expect(s.m.dev.peekDurable(0, SPAN * BS).equals(model(writes, n, SPAN)), `case ${c}`).to.equal(true);
      expect(s.writes(), `case ${c}`).to.equal(n);
      expect(s.states.get(0)!.sequence).to.equal(n);
      // Watermarks only go up.
      const seqs = s.persisted.map((p) => p.sequence);
      expect(seqs).to.deep.equal([...seqs].sort((a, b) => a - b));
    }
  });
});

describe('secondary: durable answers and the watermark', () => {
  it('a durable answer waits for the medium write, a flush issued after it, and the persisted watermark', async () => {
    const s = secondaryWorld({ volatileCache: true, latency: 1, persistMs: 5 });
    const t0 = s.sim.now();
    const a1 = track(s.deliver(inbound({ seq: 1, lba: 0, data: pattern(1, 4 * BS), ack: 'durable' })));
    const a2 = track(s.deliver(inbound({ seq: 2, lba: 4, data: pattern(2, 4 * BS), ack: 'durable' })));
    const a4 = track(s.deliver(inbound({ seq: 4, lba: 12, data: pattern(4, 4 * BS), ack: 'durable' })));
    await s.sim.run(Promise.all([a1.p, a2.p]));
    const done = s.sim.now();
    expect([a1.value, a2.value]).to.deep.equal(['durable', 'durable']);
    const writes = s.m.dev.ops('write');
    const flushes = s.m.dev.ops('flush');
    expect(writes).to.have.length(2);
    const flush = flushes.find((f) => f.issuedAt >= writes[1]!.completedAt!)!;
    expect(flush, 'a flush after both writes completed').to.not.equal(undefined);
    expect(done).to.be.at.least(flush.completedAt! + 5);
    expect(s.states.get(0)).to.deep.equal({ sourceUnit: PRIMARY_UNIT, generation: 1, sequence: 2 });
    expect(s.m.dev.peekDurable(0, 8 * BS).equals(Buffer.concat([pattern(1, 4 * BS), pattern(2, 4 * BS)]))).to.equal(true);
    expect(done - t0).to.be.at.least(2 + 1 + 5);
    // Sequence 4 waits behind the gap: applied it is not, and the watermark stays at 2.
    await s.sim.runUntilIdle();
    expect(a4.done).to.equal(false);
    expect(s.states.get(0)!.sequence).to.equal(2);
    expect(s.unit.status(0)).to.include({ sequence: 2, waiting: 1 });
    const a3 = track(s.deliver(inbound({ seq: 3, lba: 8, data: pattern(3, 4 * BS), ack: 'durable' })));
    await s.sim.run(Promise.all([a3.p, a4.p]));
    expect(s.states.get(0)!.sequence).to.equal(4);
    expect(s.unit.counters(0).durable).to.equal(4);
  });

  it('group commit: many durable writes at once share a few flushes and watermark writes', async () => {
    const s = secondaryWorld({ volatileCache: true, latency: 1, persistMs: 2 });
    const answers = Array.from({ length: 20 }, (_, i) => s.deliver(inbound({ seq: i + 1, lba: i, data: pattern(i, BS), ack: 'durable' })));
    const got = await s.sim.run(Promise.all(answers));
    expect(got.every((d) => d === 'durable')).to.equal(true);
    expect(s.m.dev.ops('flush').length).to.be.at.most(3);
    expect(s.persisted.length).to.be.at.most(3);
    expect(s.states.get(0)!.sequence).to.equal(20);
  });

  it('writes only asked "received" are checkpointed: flushed and in the watermark within CHECKPOINT_MS, so a crash loses only that tail', async () => {
    const s = secondaryWorld({ volatileCache: true, latency: 1, timed: true });
    const t0 = s.sim.now();
    const got = await s.sim.run(Promise.all([1, 2, 3].map((q) => s.deliver(inbound({ seq: q, lba: 4 * q, data: pattern(q, 4 * BS) })))));
    expect(got).to.deep.equal(['received', 'received', 'received']);
    await s.sim.runUntilIdle();
    expect(s.states.get(0)?.sequence).to.equal(3);
    // One group for the three: the timer started with the first completed write.
    expect(s.persisted).to.have.length(1);
    expect(s.sim.now() - t0).to.be.within(CHECKPOINT_MS, CHECKPOINT_MS + 5);
    // Power loss now loses nothing of them.
    s.m.dev.crash();
    expect(s.m.peek(4, 12).equals(Buffer.concat([1, 2, 3].map((q) => pattern(q, 4 * BS))))).to.equal(true);
  });

  it('without a clock, a checkpoint every CHECKPOINT_BYTES applied; close() makes the rest durable', async () => {
    const blocks = CHECKPOINT_BYTES / BS / 4;
    const s = secondaryWorld({ blockCount: 4 * blocks, latency: 0.1 });
    const write = (q: number) => s.deliver(inbound({ seq: q, lba: (q - 1) * blocks, data: Buffer.alloc(blocks * BS, q) }));
    await s.sim.run(Promise.all([1, 2, 3].map(write)));
    await s.sim.runUntilIdle();
    expect(s.states.get(0), 'three quarters of CHECKPOINT_BYTES: not yet').to.equal(undefined);
    await s.sim.run(write(4));
    await s.sim.runUntilIdle();
    expect(s.states.get(0)?.sequence).to.equal(4);
    await s.sim.run(s.deliver(inbound({ seq: 5, lba: 0, data: pattern(5, BS) })));
    await s.sim.runUntilIdle();
    expect(s.states.get(0)?.sequence).to.equal(4);
    await s.sim.run(s.unit.close());
    expect(s.states.get(0)?.sequence).to.equal(5);
  });

  it('after a restart from the persisted watermark: writes at or below it are answered, not applied again; above it, applied in order', async () => {
    const s = secondaryWorld({ volatileCache: true, latency: 1 });
    const hist: W[] = [];
    for (let seq = 1; seq <= 7; seq++) hist.push({ seq, lba: (seq * 3) % 10, data: pattern(seq, 4 * BS) });
    const send = (seq: number, ack: Durability) => s.deliver(inbound({ seq, lba: hist[seq - 1]!.lba, data: hist[seq - 1]!.data, ack }));
    await s.sim.run(Promise.all([1, 2, 3, 4].map((q) => send(q, 'durable'))));
    expect(s.states.get(0)!.sequence).to.equal(4);
    // 5 is applied but only 'received': nothing flushes it, and the watermark stays at 4.
    await s.sim.run(send(5, 'received'));
    await s.sim.runUntilIdle();
    expect(s.unit.status(0).sequence).to.equal(5);
    expect(s.states.get(0)!.sequence).to.equal(4);
    // Power loss, then the process starts again from its watermark.
    s.m.dev.crash();
    expect(s.m.peek(0, 14).equals(model(hist, 4, 14))).to.equal(true);
    s.restart();
    expect(s.unit.status(0)).to.include({ sequence: 4, generation: 1 });
    const before = s.writes();
    // The relays send again what they still hold (everything above 4, and maybe older copies too).
    const old = await s.sim.run(Promise.all([2, 4, 1, 3].map((q) => send(q, 'durable'))));
    expect(old).to.deep.equal(['durable', 'durable', 'durable', 'durable']);
    expect(s.writes()).to.equal(before);
    expect(s.unit.counters(0).duplicates).to.equal(4);
    const rest = await s.sim.run(Promise.all([7, 6, 5].map((q) => send(q, 'durable'))));
    expect(rest).to.deep.equal(['durable', 'durable', 'durable']);
    expect(s.writes()).to.equal(before + 3);
    expect(s.m.dev.peekDurable(0, 14 * BS).equals(model(hist, 7, 14))).to.equal(true);
    expect(s.states.get(0)!.sequence).to.equal(7);
  });

  it('bounds what waits behind a gap; the write that fills the gap is always taken', async () => {
    const s = secondaryWorld({ maxWaitingBytes: 8 * BS });
    expect(await s.deliver(inbound({ seq: 3, lba: 0, data: pattern(3, 4 * BS) }))).to.equal('received');
    expect(await s.deliver(inbound({ seq: 4, lba: 4, data: pattern(4, 4 * BS) }))).to.equal('received');
    const refused = await outcome(s.deliver(inbound({ seq: 5, lba: 8, data: pattern(5, 4 * BS) })));
    expect(refused.ok).to.equal(false);
    expect(await s.deliver(inbound({ seq: 1, lba: 12, data: pattern(1, 4 * BS) }))).to.equal('received');
    expect(await s.deliver(inbound({ seq: 2, lba: 16, data: pattern(2, 4 * BS) }))).to.equal('received');
    await s.sim.runUntilIdle();
    expect(s.unit.status(0)).to.include({ sequence: 4, waiting: 0 });
    expect(await s.deliver(inbound({ seq: 5, lba: 8, data: pattern(5, 4 * BS) }))).to.equal('received');
    await s.sim.runUntilIdle();
    expect(s.unit.status(0).sequence).to.equal(5);
  });

  it('times a gap from when it opened: status names the missing sequence and how long, the log warns once at 10 s; it closes when the gap fills', async () => {
    const warnings: Array<{ obj: object; msg?: string }> = [];
    // The gap's warnings (the first write also starts generation 1, which warns on its own).
    const logger: Logger = { ...nullLogger, warn: (obj, msg) => { if ('missing' in obj) warnings.push({ obj, msg }); }, child: () => logger };
    const s = secondaryWorld({ timed: true, logger });
    expect(await s.deliver(inbound({ seq: 1, lba: 0, data: pattern(1, BS) }))).to.equal('received');
    await s.sim.runUntilIdle();
    expect(s.unit.status(0).missing).to.equal(undefined);
    // Sequences 2 and 3 were received by a secondary that then crashed: 4 and 5 wait for them.
    await s.deliver(inbound({ seq: 4, lba: 1, data: pattern(4, BS) }));
    await s.sim.advance(3000);
    await s.deliver(inbound({ seq: 5, lba: 2, data: pattern(5, BS) }));
    await s.sim.advance(9000);
    expect(s.unit.status(0)).to.deep.include({ sequence: 1, waiting: 2, missing: { sequence: 2, forMs: 12000 } });
    expect(warnings, 'no write came after 10 s yet: nothing logged').to.deep.equal([]);
    await s.deliver(inbound({ seq: 6, lba: 5, data: pattern(6, BS) }));
    await s.deliver(inbound({ seq: 7, lba: 6, data: pattern(7, BS) }));
    expect(warnings).to.have.length(1);
    expect(warnings[0]!.obj).to.deep.include({ missing: 2, waiting: 3, forMs: 12000 });
    expect(warnings[0]!.msg).to.contain('kura up --resync');
    // 2 arrives: 3 is still missing, and that gap opened only now.
    const arrived = s.sim.clock.now();
    await s.deliver(inbound({ seq: 2, lba: 3, data: pattern(2, BS) }));
    await s.sim.runUntilIdle();
    await s.sim.advance(500);
    const gap = s.unit.status(0).missing!;
    expect(gap.sequence).to.equal(3);
    expect(gap.forMs).to.be.within(500, s.sim.clock.now() - arrived);
    await s.deliver(inbound({ seq: 3, lba: 4, data: pattern(3, BS) }));
    await s.sim.runUntilIdle();
    expect(s.unit.status(0)).to.include({ sequence: 7, waiting: 0 });
    expect(s.unit.status(0).missing).to.equal(undefined);
  });

  it('refuses a write from another source unit once its stream has one, and writes that do not fit the volume', async () => {
    const s = secondaryWorld({ blockCount: 64 });
    await s.sim.run(s.deliver(inbound({ seq: 1, lba: 0, data: pattern(1, BS) })));
    expect((await outcome(s.deliver(inbound({ seq: 2, lba: 0, data: pattern(2, BS), source: 99 })))).ok).to.equal(false);
    expect((await outcome(s.deliver(inbound({ seq: 2, lba: 63, data: pattern(2, 2 * BS) })))).ok).to.equal(false);
    expect((await outcome(s.deliver(inbound({ seq: 2, lba: 0, data: pattern(2, BS), volume: 5 })))).ok).to.equal(false);
    await s.sim.runUntilIdle();
    expect(s.unit.status(0).sequence).to.equal(1);
  });
});

describe('secondary: a medium error', () => {
  it('stops the stream: durable answers fail, nothing is reported durable past the failure, later writes are refused', async () => {
    const s = secondaryWorld({ volatileCache: true });
    expect(await s.sim.run(s.deliver(inbound({ seq: 1, lba: 0, data: pattern(1, BS), ack: 'durable' })))).to.equal('durable');
    s.m.dev.failWrites({ offset: 4 * BS, length: BS });
    const bad = await s.sim.run(outcome(s.deliver(inbound({ seq: 2, lba: 4, data: pattern(2, BS), ack: 'durable' }))));
    expect(bad.ok).to.equal(false);
    const later = await s.sim.run(outcome(s.deliver(inbound({ seq: 3, lba: 8, data: pattern(3, BS), ack: 'durable' }))));
    expect(later.ok).to.equal(false);
    expect(s.states.get(0)!.sequence).to.equal(1);
    expect(s.unit.status(0).failure).to.match(/EIO/);
  });

  it('a medium that comes back (a full disk given room): the stream is tried again from its durable watermark and every write is applied in order', async () => {
    const s = secondaryWorld({ volatileCache: true, timed: true });
    expect(await s.sim.run(s.deliver(inbound({ seq: 1, lba: 0, data: pattern(1, BS), ack: 'durable' })))).to.equal('durable');
    s.m.dev.failWrites({ offset: 4 * BS, length: BS }, 'ENOSPC', 1);
    expect((await s.sim.run(outcome(s.deliver(inbound({ seq: 2, lba: 4, data: pattern(2, BS), ack: 'durable' }))))).ok).to.equal(false);
    expect(s.unit.status(0).failure).to.match(/ENOSPC/);
    // Within the retry delay the stream stays stopped: the sender keeps what it holds.
    expect((await s.sim.run(outcome(s.deliver(inbound({ seq: 2, lba: 4, data: pattern(2, BS), ack: 'durable' }))))).ok).to.equal(false);
    await s.sim.run(s.sim.sleep(1000));
    // The sender (a relay holding every record until it is durable here) sends them again.
    const again = [2, 3].map((seq) => s.deliver(inbound({ seq, lba: 4 * (seq - 1), data: pattern(seq, BS), ack: 'durable' })));
    expect(await s.sim.run(Promise.all(again))).to.deep.equal(['durable', 'durable']);
    expect(s.unit.status(0)).to.include({ sequence: 3 });
    expect(s.unit.status(0).failure).to.equal(undefined);
    expect(s.states.get(0)!.sequence).to.equal(3);
    expect(s.m.peek(4, 1).equals(pattern(2, BS))).to.equal(true);
    expect(s.m.peek(8, 1).equals(pattern(3, BS))).to.equal(true);
  });
});

describe('secondary: portions (a cut-through relay forwarding while data arrives)', () => {
  const whole = pattern(9, 8 * BS);
  const part = (seq: number, i: number, ack: Durability = 'received') =>
    inbound({ seq, lba: 0, data: whole.subarray(i * 4 * BS, (i + 1) * 4 * BS), ack, portion: { offset: i * 4 * BS, total: 8 * BS, blocks: 8 } });

  it('assembles portions in any order, a portion arriving twice counting once', async () => {
    const s = secondaryWorld();
    await s.deliver(part(1, 1));
    await s.deliver(part(1, 1)); // the same portion again (a second relay, or a relay's resend)
    await s.sim.runUntilIdle();
    expect(s.writes()).to.equal(0);
    await s.deliver(part(1, 0));
    await s.sim.runUntilIdle();
    expect(s.writes()).to.equal(1);
    expect(s.m.peek(0, 8).equals(whole)).to.equal(true);
  });

  it('only the portion completing a write waits for it (durable if any portion asked); the others answer "received" at once, freeing the window', async () => {
    const s = secondaryWorld({ volatileCache: true });
    const p0 = track(s.deliver(part(1, 0, 'durable')));
    await s.sim.runUntilIdle();
    expect(p0.done, 'a first portion does not hold the sender\'s window while the rest is still to come').to.equal(true);
    expect(p0.value).to.equal('received');
    const p1 = track(s.deliver(part(1, 1, 'received')));
    await s.sim.run(p1.p);
    expect(p1.value).to.equal('durable');
    expect(s.states.get(0)!.sequence).to.equal(1);
  });

  it('a portion of a write already applied is answered at once (durable: once the watermark covers it)', async () => {
    const s = secondaryWorld();
    await s.sim.run(Promise.all([s.deliver(part(1, 0, 'durable')), s.deliver(part(1, 1, 'durable'))]));
    const again = track(s.deliver(part(1, 1, 'durable')));
    await s.sim.run(again.p);
    expect(again.value).to.equal('durable');
    expect(s.writes()).to.equal(1);
  });
});

describe('secondary: generations', () => {
  it('a write of generation g+1 drops what waited behind a gap in g; later g stragglers are answered, not applied', async () => {
    const s = secondaryWorld();
    const g1 = (seq: number, lba: number, ack: Durability = 'received') => inbound({ gen: 1, seq, lba, data: pattern(10 + seq, 2 * BS), ack });
    await s.sim.run(s.deliver(g1(1, 0)));
    const waiting = track(s.deliver(g1(3, 4, 'durable')));
    await s.sim.runUntilIdle();
    expect(s.unit.status(0)).to.include({ generation: 1, sequence: 1, waiting: 1 });
    // The primary restarted after a crash: generation 2 begins at sequence 1.
    const n1 = await s.sim.run(s.deliver(inbound({ gen: 2, seq: 1, lba: 8, data: pattern(21, 2 * BS), ack: 'durable' })));
    expect(n1).to.equal('durable');
    expect(waiting.done).to.equal(true);
    expect(waiting.error, 'the dropped write is not reported durable').to.be.instanceOf(Error);
    expect(s.unit.status(0)).to.include({ generation: 2, sequence: 1, waiting: 0 });
    expect(s.states.get(0)).to.deep.equal({ sourceUnit: PRIMARY_UNIT, generation: 2, sequence: 1 });
    // Stragglers of generation 1 (the gap's filler, the dropped one again): answered, ignored.
    const before = s.writes();
    expect(await s.sim.run(s.deliver(g1(2, 2, 'durable')))).to.equal('durable');
    expect(await s.sim.run(s.deliver(g1(3, 4, 'durable')))).to.equal('durable');
    await s.sim.runUntilIdle();
    expect(s.writes()).to.equal(before);
    expect(s.unit.counters(0).stale).to.equal(2);
    expect(s.m.peek(2, 4).equals(Buffer.alloc(4 * BS))).to.equal(true);
    expect(s.m.peek(0, 2).equals(pattern(11, 2 * BS))).to.equal(true);
    expect(s.m.peek(8, 2).equals(pattern(21, 2 * BS))).to.equal(true);
  });

  it('a new generation drops the old one\'s half-assembled writes; the new one\'s survive the switch', async () => {
    const s = secondaryWorld();
    const half = track(s.deliver(inbound({ gen: 1, seq: 1, lba: 0, data: pattern(1, 4 * BS), ack: 'durable', portion: { offset: 0, total: 8 * BS, blocks: 8 } })));
    // A portion of generation 2's first write is under way too: it must survive the switch.
    const next0 = track(s.deliver(inbound({ gen: 2, seq: 2, lba: 8, data: pattern(2, 4 * BS), ack: 'durable', portion: { offset: 0, total: 8 * BS, blocks: 8 } })));
    await s.sim.runUntilIdle();
    expect([half.value, next0.value]).to.deep.equal(['received', 'received']);
    await s.sim.run(s.deliver(inbound({ gen: 2, seq: 1, lba: 16, data: pattern(3, BS), ack: 'durable' })));
    await s.sim.runUntilIdle();
    // The old write's second half now is a straggler: answered, never applied.
    expect(await s.sim.run(s.deliver(inbound({ gen: 1, seq: 1, lba: 0, data: pattern(5, 4 * BS), ack: 'durable', portion: { offset: 4 * BS, total: 8 * BS, blocks: 8 } })))).to.equal('durable');
    const next1 = await s.sim.run(s.deliver(inbound({ gen: 2, seq: 2, lba: 8, data: pattern(4, 4 * BS), ack: 'durable', portion: { offset: 4 * BS, total: 8 * BS, blocks: 8 } })));
    expect(next1).to.equal('durable');
    expect(s.m.peek(0, 8).equals(Buffer.alloc(8 * BS))).to.equal(true);
    expect(s.m.peek(8, 8).equals(Buffer.concat([pattern(2, 4 * BS), pattern(4, 4 * BS)]))).to.equal(true);
  });

  it('a new generation arriving while the old one\'s watermark is being written still gets its durable answer', async () => {
    const s = secondaryWorld({ persistMs: 10 });
    const old = track(s.deliver(inbound({ gen: 1, seq: 1, lba: 0, data: pattern(1, BS), ack: 'durable' })));
    await s.sim.run(s.sim.sleep(2)); // the watermark write for generation 1 is under way
    expect(old.done).to.equal(false);
    const next = track(s.deliver(inbound({ gen: 2, seq: 1, lba: 1, data: pattern(2, BS), ack: 'durable' })));
    await s.sim.run(s.sim.sleep(100));
    expect(next.done, 'generation 2 answered').to.equal(true);
    expect(next.value).to.equal('durable');
    expect(s.states.get(0)).to.deep.equal({ sourceUnit: PRIMARY_UNIT, generation: 2, sequence: 1 });
    expect(old.done).to.equal(true);
  });
});

describe('secondary: promotion and the hosts\' read-only face', () => {
  it('guardedVolume is read-only and refuses writes until writable(); promote() stops applying and refuses replicated writes', async () => {
    const s = secondaryWorld();
    const face = guardedVolume(s.m.vol, () => s.unit.status(0).writable === true);
    expect(face.readOnly).to.equal(true);
    const w = await outcome(writeBlocks(face, 0, pattern(1, BS)));
    expect(w.ok ? null : w.error).to.be.instanceOf(WriteProtectedError);
    const d = await outcome(face.discard(0, 1));
    expect(d.ok ? null : d.error).to.be.instanceOf(WriteProtectedError);
    // Reads work while read-only.
    await s.sim.run(s.deliver(inbound({ seq: 1, lba: 0, data: pattern(5, BS) })));
    await s.sim.runUntilIdle();
    const r = await s.sim.run(face.read(0, 1));
    expect(Buffer.from(r.data).equals(pattern(5, BS))).to.equal(true);
    r.release();
    // 3 waits behind a gap when the operator promotes.
    await s.deliver(inbound({ seq: 3, lba: 3, data: pattern(7, BS) }));
    const res = await s.sim.run(s.unit.promote(0));
    expect(res).to.deep.equal({ sequence: 1, dropped: 1 });
    expect(s.unit.status(0).writable).to.equal(true);
    expect(face.readOnly).to.equal(false);
    // Replicated writes are refused now, even the gap's filler: nothing more is applied.
    const late = await outcome(s.deliver(inbound({ seq: 2, lba: 2, data: pattern(6, BS) })));
    expect(late.ok).to.equal(false);
    await s.sim.runUntilIdle();
    expect(s.m.peek(2, 2).equals(Buffer.alloc(2 * BS))).to.equal(true);
    // The hosts write through the face now.
    await s.sim.run(writeBlocks(face, 2, pattern(8, BS)));
    expect(s.m.peek(2, 1).equals(pattern(8, BS))).to.equal(true);
  });

  it('a promotion is durable: after a restart the copy is still promoted, and refuses the old stream', async () => {
    const s = secondaryWorld();
    await s.sim.run(s.deliver(inbound({ seq: 1, lba: 0, data: pattern(5, BS) })));
    await s.sim.run(s.unit.promote(0));
    expect(s.states.get(0), 'persisted with the promotion').to.deep.include({ sequence: 1, promoted: true });
    s.restart();
    expect(s.unit.isPromoted(0)).to.equal(true);
    expect(s.unit.status(0).writable).to.equal(true);
    // Before, the restarted copy applied the old primary's next write over what hosts wrote there.
    const old = await outcome(s.deliver(inbound({ seq: 2, lba: 0, data: pattern(6, BS) })));
    expect(old.ok).to.equal(false);
    expect((old as { error: { code?: number } }).error.code).to.equal(ErrorCode.VOLUME_PROMOTED);
    await s.sim.runUntilIdle();
    expect(s.m.peek(0, 1).equals(pattern(5, BS))).to.equal(true);
  });
});
