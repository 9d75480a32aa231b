import { expect } from 'chai';
import { SimDevice, Simulator, type Random } from '../../hal/sim/index.js';
import { KIND_PAD, RECORD_HEADER, SUPERBLOCK_SLOT, decodeRecordHeader, decodeSuperblock } from './journal-format.js';
import { DeviceJournal, journalBytesFor, journalMaxPayload, type RecoveryReport } from './journal.js';
import { JournalFailedError, JournalFullError, RecordTooLargeError, type AppendRequest } from './journal-types.js';
import { ProcessDevice } from './test-fixture.js';

function data(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed * 101) & 0xff;
  return b;
}

function req(issue: number, n: number, extra: Partial<AppendRequest> = {}): AppendRequest {
  return { id: { sourceUnit: 11, issue }, volume: 2, lba: issue * 8, blocks: Math.ceil(n / 512), data: data(n, issue), ...extra };
}

async function fresh(opts: { size?: number; latency?: number; align?: number; whenFull?: 'wait' | 'fail'; volatileCache?: boolean } = {}) {
  const sim = new Simulator();
  const dev = new SimDevice({ clock: sim.clock, size: opts.size ?? 256 * 1024, latency: opts.latency ?? 1, volatileCache: opts.volatileCache ?? true });
  await sim.run(DeviceJournal.format(dev, { align: opts.align ?? 512, journalId: 0x600d }));
  const { journal, recovery } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock, whenFull: opts.whenFull }));
  return { sim, dev, journal, recovery };
}

describe('relay journal: appends, reads, truncation', () => {
  it('appends durably, reads back, lists pending records in order, truncates on release', async () => {
    const { sim, dev, journal, recovery } = await fresh();
    expect(recovery).to.include({ records: 0, headSeq: 1, nextSeq: 1, epoch: 1 });
    expect(recovery.end).to.deep.equal({ offset: 1024, seq: 1, reason: 'no record magic' });
    const wall = sim.clock.wallTime();
    const rs = await sim.run(Promise.all([journal.append(req(1, 1000)), journal.append(req(2, 3000, { fua: true, forwardTo: 12 }))]));
    expect(rs).to.deep.equal([{ seq: 1, durability: 'durable' }, { seq: 2, durability: 'durable' }]);
    expect(journal.pending().map((e) => [e.seq, e.id.issue, e.length, e.fua, e.forwardTo])).to.deep.equal([[1, 1, 1000, false, 0], [2, 2, 3000, true, 12]]);
    expect(journal.pending()[0]!.recordedAt).to.equal(wall);
    expect(Buffer.compare(await sim.run(journal.read(2)), data(3000, 2))).to.equal(0);
    const before = journal.stats();
    expect(before).to.include({ records: 2, pendingBytes: 4000, used: 1536 + 3584, headSeq: 1, nextSeq: 3 });
    await sim.run(journal.release(1));
    expect(journal.stats()).to.include({ records: 1, used: 3584, headSeq: 2 });
    expect(journal.pending().map((e) => e.seq)).to.deep.equal([2]);
    // The superblock on the medium says so too.
    const slots = [0, 1].map((i) => decodeSuperblock(dev.peekDurable(i * SUPERBLOCK_SLOT, 72)));
    expect(slots.map((s) => (typeof s === 'object' ? s.headSeq : s))).to.include(2);
    await sim.run(journal.close());
  });

  it('reads a record back from the device once it is out of the memory cache', async () => {
    const sim = new Simulator();
    const dev = new SimDevice({ clock: sim.clock, size: 1 << 20, latency: 1, volatileCache: true });
    await sim.run(DeviceJournal.format(dev, { journalId: 1 }));
    const { journal } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock, cacheBytes: 0 }));
    await sim.run(journal.append(req(1, 5000)));
    const reads = dev.ops('read').length;
    expect(Buffer.compare(await sim.run(journal.read(1)), data(5000, 1))).to.equal(0);
    expect(dev.ops('read').length).to.equal(reads + 1);
    // A record corrupted on the medium is reported, not returned.
    const at = dev.ops('write').find((o) => o.length >= 5000)!.offset;
    dev.poke(at + RECORD_HEADER + 10, Buffer.from([0xee]));
    const e = await sim.run(journal.read(1).then(() => null, (x: unknown) => x));
    expect((e as Error).message).to.match(/record 1 at offset \d+ reads back corrupt/);
  });

  it('group commit: appends of one turn share one flush; those arriving during it share the next', async () => {
    const { sim, dev, journal } = await fresh({ latency: 1 });
    dev.clearLog();
    const first = Array.from({ length: 50 }, (_, i) => journal.append(req(i + 1, 700)));
    await sim.run(Promise.all(first));
    expect(dev.ops('flush')).to.have.length(1);
    expect(journal.stats().commits).to.equal(1);
    dev.clearLog();
    // 20 appends while a flush is in flight: they wait for it, then go in one more flush.
    const a = Array.from({ length: 10 }, (_, i) => journal.append(req(100 + i, 700)));
    const later = (async () => {
      await sim.sleep(10.5); // the 10 writes took 10 ms; the flush is in flight now
      expect(dev.inFlight).to.equal(1);
      return Promise.all(Array.from({ length: 10 }, (_, i) => journal.append(req(200 + i, 700))));
    })();
    await sim.run(Promise.all([...a, later]));
    expect(dev.ops('flush')).to.have.length(2);
    // A flush is issued only after every write it must cover completed.
    const flushes = dev.ops('flush');
    const writes = dev.ops('write');
    expect(writes.slice(0, 10).every((w) => w.completionEvent! < flushes[0]!.issueEvent)).to.equal(true);
    expect(writes.slice(10).every((w) => w.completionEvent! < flushes[1]!.issueEvent)).to.equal(true);
    await sim.run(journal.close());
  });

  it('without a volatile cache: no flush, durable when written', async () => {
    const { sim, dev, journal } = await fresh({ volatileCache: false });
    dev.clearLog();
    await sim.run(Promise.all(Array.from({ length: 5 }, (_, i) => journal.append(req(i + 1, 100)))));
    expect(dev.ops('flush')).to.have.length(0);
    expect(journal.stats().commits).to.equal(1);
  });

  it('wraps around the ring with a pad record, reusing truncated space', async () => {
    const { sim, dev, journal } = await fresh({ size: 16 * 1024 });
    // Ring of 15 KiB: write and release 3 KiB records until the ring has wrapped twice.
    for (let i = 1; i <= 12; i++) {
      const r = await sim.run(journal.append(req(i, 3000)));
      await sim.run(journal.release(r.seq));
    }
    const pads = dev.ops('write').map((o) => decodeRecordHeader(dev.peek(o.offset, RECORD_HEADER))).filter((h) => typeof h === 'object' && h.kind === KIND_PAD);
    expect(pads.length).to.be.at.least(2);
    expect(journal.stats()).to.include({ records: 0, used: 0 });
    const r = await sim.run(journal.append(req(99, 3000)));
    const { journal: again, recovery } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
    expect(recovery.records).to.equal(1);
    expect(again.pending()[0]).to.include({ seq: r.seq });
    expect(Buffer.compare(await sim.run(again.read(r.seq)), data(3000, 99))).to.equal(0);
  });

  it('journalBytesFor / journalMaxPayload: the smallest device that takes a write of a size, as the journal itself judges it', async () => {
    for (const payload of [64 << 10, 1 << 20, 4 << 20]) {
      const size = journalBytesFor(payload);
      expect(journalMaxPayload(size)).to.be.at.least(payload);
      expect(journalMaxPayload(size - 4096)).to.be.below(payload);
      for (const [bytes, fits] of [[size, true], [size - 4096, false]] as const) {
        const sim = new Simulator();
        const dev = new SimDevice({ clock: sim.clock, size: bytes, latency: 1, volatileCache: true });
        await sim.run(DeviceJournal.format(dev, { journalId: 7 }));
        const { journal } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
        const refused = journal.refusal(req(1, payload));
        if (fits) expect(refused).to.equal(null);
        else expect(refused).to.be.instanceOf(RecordTooLargeError);
        await sim.run(journal.close());
      }
    }
    // Small writes: the smallest ring the format allows.
    expect(journalBytesFor(512)).to.equal(4096 + 4 * 4096);
  });

  it('journal full: fails with a precise error, or waits (in order) for truncation', async () => {
    const failing = await fresh({ size: 16 * 1024, whenFull: 'fail' });
    const { sim } = failing;
    for (let i = 1; i <= 4; i++) await sim.run(failing.journal.append(req(i, 3000)));
    const e = await sim.run(failing.journal.append(req(5, 3000)).then(() => null, (x: unknown) => x));
    expect(e).to.be.instanceOf(JournalFullError);
    // 3584 bytes, plus the 1024 left at the ring's end that a pad must fill first.
    expect(e).to.include({ needed: 4608, free: 15360 - 4 * 3584, capacity: 15360 });
    expect((e as Error).message).to.equal('journal full: a record needs 4608 bytes, 1024 of 15360 are free');
    const big = await failing.journal.append(req(6, 9000)).then(() => null, (x: unknown) => x);
    expect(big).to.be.instanceOf(RecordTooLargeError);
    expect((big as Error).message).to.match(/9216 bytes exceeds the maximum of 7680/);

    const waiting = await fresh({ size: 16 * 1024, whenFull: 'wait' });
    const w = waiting.journal;
    const s2 = waiting.sim;
    for (let i = 1; i <= 4; i++) await s2.run(w.append(req(i, 3000)));
    const order: number[] = [];
    const p5 = w.append(req(5, 3000)).then(() => order.push(5));
    const p6 = w.append(req(6, 100)).then(() => order.push(6)); // fits, but must not overtake 5
    await s2.advance(50);
    expect(order).to.deep.equal([]);
    expect(w.stats().waitingForSpace).to.equal(2);
    await s2.run(w.release(1));
    await s2.advance(10);
    // Record 5 took the freed space (after a pad at the ring's end); 6 no longer fits and still waits.
    expect(order).to.deep.equal([5]);
    await s2.run(w.release(2));
    await s2.run(Promise.all([p5, p6]));
    expect(order).to.deep.equal([5, 6]);
  });

  it('defers truncation while the ring has room: releases within the delay share one superblock write', async () => {
    const { sim, dev, journal } = await fresh({ size: 256 * 1024 });
    const rs = await sim.run(Promise.all([1, 2, 3].map((i) => journal.append(req(i, 1000)))));
    const sb = journal.stats().superblockWrites;
    dev.clearLog();
    const released = rs.map((r) => journal.release(r.seq));
    let done = 0;
    for (const p of released) void p.then(() => done++);
    await sim.advance(10);
    // Released, but the head has not moved on the medium yet: no superblock write, no flush.
    expect(journal.stats()).to.include({ records: 0, superblockWrites: sb, headSeq: 1 });
    expect(dev.ops('flush')).to.have.length(0);
    expect(done).to.equal(0);
    await sim.advance(60);
    // One superblock write (and its flush) for the three, after the delay.
    expect(journal.stats()).to.include({ superblockWrites: sb + 1, headSeq: 4, used: 0 });
    expect(done).to.equal(3);
    await sim.run(journal.close());
  });

  it('truncates at once when an append waits for space, or when the journal closes', async () => {
    const { sim, journal } = await fresh({ size: 16 * 1024 });
    for (let i = 1; i <= 4; i++) await sim.run(journal.append(req(i, 3000)));
    const sb = journal.stats().superblockWrites;
    // Above half the ring: no delay.
    await sim.run(journal.release(1));
    expect(journal.stats().superblockWrites).to.equal(sb + 1);
    await sim.run(journal.release(2));
    await sim.run(journal.release(3));
    await sim.run(journal.release(4));
    const { sim: s2, journal: j2 } = await fresh({ size: 16 * 1024 });
    await s2.run(j2.append(req(1, 3000)));
    const released = j2.release(1);
    await s2.advance(1);
    expect(j2.stats().headSeq).to.equal(1);
    await s2.run(j2.close());
    // The waiting truncation went out with the close.
    expect(j2.stats().headSeq).to.equal(2);
    await s2.run(released);
  });

  it('lists the first pending records a query asks for, and says at once what it would refuse', async () => {
    const { sim, journal } = await fresh({ size: 64 * 1024 });
    const rs = await sim.run(Promise.all([1, 2, 3, 4, 5].map((i) => journal.append(req(i, 500)))));
    void journal.release(rs[0]!.seq);
    expect(journal.pending({ limit: 2 }).map((e) => e.id.issue)).to.deep.equal([2, 3]);
    expect(journal.pending({ limit: 2, skip: (e) => e.id.issue === 3 }).map((e) => e.id.issue)).to.deep.equal([2, 4]);
    expect(journal.pending().map((e) => e.id.issue)).to.deep.equal([2, 3, 4, 5]);
    expect(journal.refusal(req(9, 500))).to.equal(null);
    expect(journal.refusal(req(9, 60 * 1024))).to.be.instanceOf(RecordTooLargeError);
    await sim.run(journal.close());
    expect(journal.refusal(req(9, 500))?.name).to.match(/Closed/);
  });

  it('fails every pending append on a device error and refuses more until reopened', async () => {
    const { sim, dev, journal } = await fresh();
    dev.failNext('flush', 'EIO');
    const rs = await sim.run(Promise.all([journal.append(req(1, 100)), journal.append(req(2, 100))].map((p) => p.then(() => null, (e: unknown) => e))));
    expect(rs.every((e) => e instanceof JournalFailedError)).to.equal(true);
    expect((rs[0] as Error).message).to.match(/EIO/);
    const more = await journal.append(req(3, 100)).then(() => null, (e: unknown) => e);
    expect(more).to.be.instanceOf(JournalFailedError);
    expect(journal.stats().failed).to.equal(true);
  });
});

describe('relay journal: recovery', () => {
  it('finds every record after a clean close; a new epoch on each open', async () => {
    const { sim, dev, journal } = await fresh();
    for (let i = 1; i <= 5; i++) await sim.run(journal.append(req(i, 500 * i)));
    await sim.run(journal.release(1));
    await sim.run(journal.close());
    const { journal: j2, recovery } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
    expect(recovery).to.include({ records: 4, headSeq: 2, nextSeq: 6, epoch: 2 });
    expect(recovery.end).to.deep.include({ seq: 6, reason: 'no record magic' });
    expect(j2.pending().map((e) => e.id.issue)).to.deep.equal([2, 3, 4, 5]);
    for (const e of j2.pending()) expect(Buffer.compare(await sim.run(j2.read(e.seq)), data(500 * e.id.issue, e.id.issue))).to.equal(0);
  });

  it('survives a torn superblock write: the other copy holds the previous head', async () => {
    const { sim, dev, journal } = await fresh();
    for (let i = 1; i <= 3; i++) await sim.run(journal.append(req(i, 1000)));
    await sim.run(journal.release(1));
    await sim.run(journal.release(2));
    // The newest copy is torn (half of it garbage).
    const copies = [0, 1].map((i) => decodeSuperblock(dev.peekDurable(i * SUPERBLOCK_SLOT, 72)));
    const newest = copies.findIndex((c) => typeof c === 'object' && c.headSeq === 3);
    dev.poke(newest * SUPERBLOCK_SLOT + 30, Buffer.alloc(40, 0xa5));
    const { journal: j2, recovery } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
    expect(recovery.slot).to.equal(1 - newest);
    // Older head: record 2 comes back (it will be forwarded again; the secondary dedupes by id).
    expect(recovery.headSeq).to.equal(2);
    expect(j2.pending().map((e) => e.seq)).to.deep.equal([2, 3]);
  });

  it('stops at a torn record: everything before it, nothing after', async () => {
    const { sim, dev, journal } = await fresh();
    for (let i = 1; i <= 4; i++) await sim.run(journal.append(req(i, 1500)));
    const third = journal.pending()[2]!;
    const writes = dev.ops('write').filter((o) => o.length === 2048);
    dev.poke(writes[2]!.offset + 1024, Buffer.alloc(1024, 0)); // the second half of record 3 never made it
    const { journal: j2, recovery } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
    expect(recovery.end).to.deep.include({ seq: third.seq, reason: 'payload CRC mismatch (torn record)' });
    expect(j2.pending().map((e) => e.seq)).to.deep.equal([1, 2]);
    // New records go where the torn one was; the stale record 4 behind them is never taken back.
    const r = await sim.run(j2.append(req(50, 1500)));
    expect(r.seq).to.equal(3);
    const { journal: j3 } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
    expect(j3.pending().map((e) => e.id.issue)).to.deep.equal([1, 2, 50]);
  });

  it('never takes an orphaned record of an older epoch for the record at the head', async () => {
    // Epoch 1: records 1 and 2; record 1 is lost in a crash while 2 made it to the medium.
    const { sim, dev, journal } = await fresh();
    await sim.run(journal.append(req(1, 1000)));
    await sim.run(journal.append(req(2, 1000)));
    dev.poke(1024, Buffer.alloc(RECORD_HEADER, 0));
    // Epoch 2: the chain ends at record 1's place; sequence 1 is given to a new record there.
    const { journal: j2, recovery: r2 } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
    expect(r2.records).to.equal(0);
    const again = await sim.run(j2.append(req(3, 1000)));
    expect(again.seq).to.equal(1);
    // It is forwarded and released: the head moves to where the orphan (sequence 2, epoch 1) sits.
    await sim.run(j2.release(1));
    const { journal: j3, recovery: r3 } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
    expect(r3.headSeq).to.equal(2);
    expect(r3.end?.reason).to.equal('epoch 1 outside 2..2');
    expect(j3.pending()).to.deep.equal([]);
  });

  it('refuses a device without a journal, and ignores records of an earlier journal', async () => {
    const sim = new Simulator();
    const dev = new SimDevice({ clock: sim.clock, size: 64 * 1024 });
    const e = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }).then(() => null, (x: unknown) => x));
    expect((e as Error).message).to.match(/no valid superblock .* format it first/);
    await sim.run(DeviceJournal.format(dev, { align: 512, journalId: 1 }));
    const { journal } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
    await sim.run(journal.append(req(1, 100)));
    await sim.run(DeviceJournal.format(dev, { align: 512, journalId: 2 }));
    const { recovery } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
    expect(recovery.records).to.equal(0);
    expect(recovery.end?.reason).to.equal('journal id 1');
  });
});

// ---- crash consistency ---------------------------------------------------------------------------

interface Appended {
  req: AppendRequest;
  order: number;
  /** Sequence once reported durable. */
  seq?: number;
}

/** A relay process on a device that keeps failing: appends, releases, crashes, recoveries. */
class CrashHarness {
  readonly appended = new Map<number, Appended>();
  private order = 0;
  private nextIssue = 1;
  proc!: ProcessDevice;
  journal!: DeviceJournal;
  recoveries: RecoveryReport[] = [];

  /** truncateDelayMs of the journal (undefined: its default, lazy truncation). */
  constructor(readonly sim: Simulator, readonly dev: SimDevice, readonly truncateDelayMs?: number) {}

  async start(): Promise<void> {
    await this.sim.run(DeviceJournal.format(this.dev, { align: 512, journalId: 77 }));
    await this.open();
  }

  async open(): Promise<RecoveryReport> {
    this.proc = new ProcessDevice(this.dev);
    const { journal, recovery } = await this.sim.run(DeviceJournal.open({ device: this.proc, clock: this.sim.clock, whenFull: 'wait', truncateDelayMs: this.truncateDelayMs }));
    this.journal = journal;
    this.recoveries.push(recovery);
    return recovery;
  }

  append(n: number): Promise<unknown> {
    const issue = this.nextIssue++;
    const a: Appended = { req: req(issue, n), order: this.order++ };
    this.appended.set(issue, a);
    return this.journal.append(a.req).then((r) => {
      a.seq = r.seq;
    }, () => {});
  }

  release(seq: number): Promise<unknown> {
    return this.journal.release(seq).catch(() => {});
  }

  /** Power loss now; the process dies with it. Returns the durable head at that instant. */
  crash(): number {
    const head = this.journal.stats().headSeq;
    this.dev.crash();
    this.proc.kill();
    return head;
  }

  /** After a crash and reopen: exactly the right records, each intact. */
  async check(headAtCrash: number, recovery: RecoveryReport): Promise<void> {
    const j = this.journal;
    const pending = j.pending();
    expect(recovery.headSeq, 'recovered head').to.equal(headAtCrash);
    const seen = new Set<number>();
    let lastOrder = -1;
    for (let i = 0; i < pending.length; i++) {
      const e = pending[i]!;
      const a = this.appended.get(e.id.issue);
      expect(a, `record ${e.seq} (issue ${e.id.issue}) was appended`).to.not.equal(undefined);
      expect(seen.has(e.id.issue), `issue ${e.id.issue} once`).to.equal(false);
      seen.add(e.id.issue);
      expect(a!.order, 'recording order').to.be.greaterThan(lastOrder);
      lastOrder = a!.order;
      if (a!.seq !== undefined) expect(e.seq, `issue ${e.id.issue} keeps its sequence`).to.equal(a!.seq);
      expect(e.seq).to.be.at.least(headAtCrash);
      expect([e.volume, e.lba, e.blocks, e.length]).to.deep.equal([a!.req.volume, a!.req.lba, a!.req.blocks, a!.req.data.length]);
      const got = await this.sim.run(j.read(e.seq));
      expect(Buffer.compare(got, Buffer.from(a!.req.data)), `payload of ${e.seq}`).to.equal(0);
    }
    // Never fewer than reported durable: every durable record at or past the head is back.
    for (const [issue, a] of this.appended) {
      if (a.seq !== undefined && a.seq >= headAtCrash) expect(seen.has(issue), `durable record ${a.seq} (issue ${issue}) recovered`).to.equal(true);
    }
    // Records that did not come back are gone for good: forget them (their appends failed).
    for (const [issue, a] of this.appended) if (!seen.has(issue) && (a.seq === undefined || a.seq < headAtCrash)) this.appended.delete(issue);
  }
}

/** The scripted sequence: a batch of appends, releases (truncations), a wrap, more appends. */
async function script(h: CrashHarness): Promise<void> {
  const sim = h.sim;
  await Promise.all([h.append(1000), h.append(3000), h.append(500)]);
  const p = h.journal.pending();
  void h.release(p[0]!.seq);
  await Promise.all([h.append(4000), h.append(2500)]);
  await sim.sleep(0.5);
  void h.release(p[1]!.seq);
  void h.release(p[2]!.seq);
  await Promise.all([h.append(4000), h.append(600), h.append(700)]);
  for (const e of h.journal.pending()) void h.release(e.seq);
  await h.append(1200);
}

describe('relay journal: crash consistency', () => {
  it('crash at every point of an append / flush / truncate / wrap sequence', async function () {
    this.timeout(120_000);
    // Dry run: how many timer steps the script takes. Truncation at once (no delay), so that every
    // superblock write of the script is a crash point; the random workloads below truncate lazily.
    const dry = new CrashHarness(new Simulator(), undefined as unknown as SimDevice, 0);
    (dry as { dev: SimDevice }).dev = new SimDevice({ clock: dry.sim.clock, size: 16 * 1024, latency: 1, volatileCache: true });
    await dry.start();
    const t0 = dry.sim.clock.pendingTimers;
    void t0;
    let steps = 0;
    const done = script(dry);
    let finished = false;
    void done.then(() => { finished = true; });
    while (!finished) {
      await dry.sim.settle();
      if (!dry.sim.clock.fireNext()) break;
      steps++;
    }
    expect(finished).to.equal(true);
    expect(steps).to.be.greaterThan(20);

    for (let k = 0; k <= steps; k++) {
      const sim = new Simulator();
      const h = new CrashHarness(sim, new SimDevice({ clock: sim.clock, size: 16 * 1024, latency: 1, volatileCache: true }), 0);
      await h.start();
      void script(h).catch(() => {});
      for (let i = 0; i < k; i++) {
        await sim.settle();
        if (!sim.clock.fireNext()) break;
      }
      await sim.settle();
      const head = h.crash();
      await sim.runUntilIdle();
      const rec = await h.open();
      await h.check(head, rec);
      // The recovered journal works on: release everything, append, reopen.
      for (const e of h.journal.pending()) void h.release(e.seq);
      await sim.run(h.append(800));
      await sim.runUntilIdle();
      const head2 = h.journal.stats().headSeq;
      await sim.run(h.journal.close());
      const rec2 = await h.open();
      await h.check(head2, rec2);
      expect(h.journal.pending().length).to.equal(1);
    }
  });

  for (const [seed, serial] of [[1, true], [2, false], [3, true], [4, false], [5, false]] as const) {
    it(`random workload, repeated crashes and recoveries (seed ${seed}, ${serial ? 'serial' : 'reordering'} device)`, async function () {
      this.timeout(60_000);
      const sim = new Simulator({ seed });
      const rnd: Random = sim.random;
      const dev = new SimDevice({ clock: sim.clock, size: 48 * 1024, latency: () => 0.1 + rnd.float() * 2, volatileCache: true, serial });
      const h = new CrashHarness(sim, dev);
      await h.start();
      let durableSeen = 0;
      for (let cycle = 0; cycle < 25; cycle++) {
        const until = sim.now() + 5 + rnd.float() * 40;
        while (sim.now() < until) {
          const p = h.journal.pending();
          if (p.length > 0 && rnd.bool(0.4)) void h.release(rnd.pick(p.slice(0, 6)).seq);
          else void h.append(1 + rnd.int(3000));
          await sim.advance(rnd.float() * 3);
        }
        durableSeen += [...h.appended.values()].filter((a) => a.seq !== undefined).length;
        const head = h.crash();
        await sim.runUntilIdle();
        const rec = await h.open();
        await h.check(head, rec);
      }
      expect(durableSeen).to.be.greaterThan(50);
      // The chain ended at stale records of earlier laps or epochs, not only at never-written space.
      const reasons = h.recoveries.map((r) => r.end?.reason ?? 'full');
      expect(reasons.some((r) => /^(sequence|epoch)/.test(r)), reasons.join('; ')).to.equal(true);
    });
  }
});
