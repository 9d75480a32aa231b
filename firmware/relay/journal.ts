/**
 * The relay journal on a BlockDevice (000-NV: "a disc array"): an append-only ring of checksummed
 * records (format in journal-format.ts), group-committed, truncated from its head as the secondary
 * confirms records, recovered after a crash by scanning from the persisted head.
 *
 * Durability. append() issues the record's write at once; a commit waits for every write of its
 * batch to complete, then flushes the device (when it has a volatile cache) and only then resolves
 * those appends 'durable'. Appends arriving while a commit is in flight form the next batch and
 * share the next flush. A record reported durable therefore has every earlier record durable too,
 * so the valid prefix the recovery scan finds contains every record ever reported durable.
 *
 * Truncation. release(seq) marks a record done; the head advances over the done (and durable)
 * prefix, and the new head is written to the superblock slot the previous write did not use (FUA).
 * That write, and its flush, wait up to truncateDelayMs while the ring has room (no append waits for
 * space, at most half of it used, closing not begun): a superblock flush per released record would
 * double the flushes, and an append arriving during one waits for it before its own. Later
 * truncation only means that a crash brings back more released records to forward again.
 * A torn superblock write leaves the other slot, one generation older and still valid: its head
 * points at records that are still intact, because space is reused only after the superblock that
 * freed it is durable.
 *
 * Stale records. A ring holds old records from earlier laps, and a crash can leave a record that
 * was written but never reported durable after one that was lost. The scan accepts a record only
 * if it has the journal's id, the expected sequence (previous + 1) and an epoch (+1 at every open)
 * not below the previous record's nor the superblock's floor; so neither an old lap, nor a record
 * orphaned by a crash (whose sequence is reused by the next epoch), is ever taken for a live one.
 *
 * Failure. A device error (including SimDevice's ECRASH) stops the journal: every append not yet
 * durable fails with JournalFailedError and nothing is accepted until it is reopened (recovery).
 * Re-forwarding after a crash is at-least-once for records released but not yet truncated
 * durably; the command identifier in every record lets the secondary apply each write once.
 */
import assert from 'node:assert';
import type { BlockDevice } from '../../hal/block-device.js';
import type { Clock, Timer } from '../../hal/clock.js';
import { nullLogger, type Logger } from '../../hal/types.js';
import { Ring } from '../../hal/ring.js';
import {
  KIND_PAD, KIND_WRITE, RECORD_FUA, RECORD_HEADER, RECORD_PAYLOAD_CRC, SUPERBLOCK_BYTES, SUPERBLOCK_SLOT, alignUp, crcMatches, decodeSuperblock,
  encodeRecord, encodeSuperblock, type Superblock,
} from './journal-format.js';
import { scanRing, type JournalRecord, type ScanEnd, type ScanResult } from './journal-recovery.js';
import {
  JournalClosedError, JournalFailedError, JournalFullError, RecordTooLargeError, validateAppend, type AppendRequest, type AppendResult,
  type JournalEntry, type JournalStats, type PendingQuery, type RelayJournal,
} from './journal-types.js';

export interface DeviceJournalOptions {
  device: BlockDevice;
  clock: Clock;
  logger?: Logger;
  /** When a record does not fit: wait for truncation (default) or fail with JournalFullError. */
  whenFull?: 'wait' | 'fail';
  /** Payload bytes kept in memory for forwarding without reading back (default 16 MiB). */
  cacheBytes?: number;
  /** What the device is, for stats (default 'device'): 'battery-backed-memory' on hal/battery-backed-device.ts. */
  kind?: 'device' | 'battery-backed-memory';
  /**
   * How long a released record may wait for the superblock write that truncates it while the ring
   * has room, ms (default 50; 0 writes it at once).
   */
  truncateDelayMs?: number;
}

/** Record alignment unless the format says otherwise. */
const DEFAULT_ALIGN = 4096;
/** The smallest ring a journal is formatted with, in aligned units. */
const MIN_RING_UNITS = 4;

export interface FormatOptions {
  /** Record alignment and superblock slot size (default 4096; at least 512, a power of two). */
  align?: number;
  /** Tells this journal's records from those of an earlier journal on the same device. */
  journalId: number;
}

export interface RecoveryReport {
  /** Superblock slot the head came from, and its generation. */
  slot: 0 | 1;
  generation: number;
  /** Epoch of this open (records appended from now on carry it). */
  epoch: number;
  records: number;
  bytes: number;
  headSeq: number;
  nextSeq: number;
  /**
   * Where the chain ended and why: the next sequence was not found there (no record, a stale one
   * from an earlier lap or epoch, or a torn one). Null only when the ring is full of live records.
   */
  end: ScanEnd | null;
}


interface SpaceWaiter {
  req: AppendRequest;
  resolve: (r: AppendResult) => void;
  reject: (e: Error) => void;
}

interface TruncationWaiter {
  seq: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class DeviceJournal implements RelayJournal {
  readonly kind: 'device' | 'battery-backed-memory';
  private readonly device: BlockDevice;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly whenFull: 'wait' | 'fail';
  private readonly cacheBytes: number;
  private readonly align: number;
  private readonly ringStart: number;
  private readonly ringEnd: number;
  private readonly capacity: number;
  private readonly maxRecord: number;
  private readonly epoch: number;

  private sb: Superblock;
  private tail: number;
  private nextSeq: number;
  private used: number;
  /** Records and pads from the durable head on, in sequence order (chain[chainStart] is the head). */
  private chain: JournalRecord[];
  private chainStart = 0;
  /**
   * chain[scan] is at or before the first record that is not both released and durable (a state
   * records never leave): the scans for the wanted head and the pending records start there, not at
   * chainStart. With truncation deferred, the chain holds every record released since the last
   * superblock write, and scanning them on every release and every forwarding decision was
   * quadratic (a relay behind by ten thousand records stalled for seconds).
   */
  private scan = 0;
  private readonly bySeq = new Map<number, JournalRecord>();
  private cacheUsed = 0;

  private batch: JournalRecord[] = [];
  private batchWrites: Promise<void>[] = [];
  /** A record of the batch is waited for (AppendRequest.waited). */
  private batchUrgent = false;
  private committing = false;
  private commitScheduled = false;
  private readonly spaceWaiters = new Ring<SpaceWaiter>();
  private truncationWaiters: TruncationWaiter[] = [];
  private sbWriting = false;
  private readonly truncateDelayMs: number;
  private truncateTimer: Timer | null = null;
  private failure: Error | null = null;
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  private readonly counters = { appends: 0, commits: 0, flushes: 0, superblockWrites: 0 };

  /** Write a fresh, empty journal over the device. */
  static async format(device: BlockDevice, opts: FormatOptions): Promise<void> {
    const align = opts.align ?? DEFAULT_ALIGN;
    assert(align >= 512 && (align & (align - 1)) === 0, `journal align ${align} must be a power of two >= 512`);
    assert(Number.isInteger(opts.journalId) && opts.journalId >= 0 && opts.journalId <= 0xffffffff, 'journal id must be a u32');
    const { ringStart, ringEnd } = ringOf(device.size, align);
    assert(ringEnd - ringStart >= MIN_RING_UNITS * align, `device of ${device.size} bytes is too small for a journal`);
    const sb: Superblock = { generation: 0, journalId: opts.journalId, epoch: 0, floorEpoch: 0, align, headOffset: ringStart, headSeq: 1, ringStart, ringEnd };
    await device.write(0, encodeSuperblock(sb, SUPERBLOCK_SLOT));
    await device.write(SUPERBLOCK_SLOT, encodeSuperblock({ ...sb, generation: 1 }, SUPERBLOCK_SLOT));
    await device.flush();
  }

  /** Recover the journal on the device: the scan from the persisted head, then a new epoch. */
  static async open(opts: DeviceJournalOptions): Promise<{ journal: DeviceJournal; recovery: RecoveryReport }> {
    const { device } = opts;
    const log = (opts.logger ?? nullLogger).child({ journal: device.name });
    const slots: Array<Superblock | string> = [];
    for (const slot of [0, 1]) {
      const b = Buffer.alloc(SUPERBLOCK_BYTES);
      await device.read(slot * SUPERBLOCK_SLOT, b);
      slots.push(decodeSuperblock(b));
    }
    const valid = slots.map((s, i) => ({ s, i })).filter((x): x is { s: Superblock; i: number } => typeof x.s === 'object' && x.s.ringEnd <= device.size);
    if (valid.length === 0) throw new Error(`journal on ${device.name}: no valid superblock (${slots.join('; ')}); format it first`);
    const best = valid.reduce((a, b) => (b.s.generation > a.s.generation ? b : a));
    const sb = best.s;
    if (valid.length < 2) log.warn({ slot: best.i, other: slots[1 - best.i] }, 'journal: one superblock copy is unreadable; using the other');

    const epoch = sb.epoch + 1;
    const scan = await scanRing(device, sb, epoch, opts.cacheBytes ?? 16 << 20);
    const journal = new DeviceJournal(opts, sb, epoch, scan);
    // The new epoch must be durable before any record carries it.
    await journal.writeSuperblockNow();
    const recovery: RecoveryReport = {
      slot: best.i as 0 | 1,
      generation: sb.generation,
      epoch,
      records: scan.entries.filter((e) => e.kind === KIND_WRITE).length,
      bytes: scan.entries.reduce((n, e) => n + e.length, 0),
      headSeq: sb.headSeq,
      nextSeq: scan.nextSeq,
      end: scan.stop,
    };
    log.info({ ...recovery }, 'journal recovered');
    return { journal, recovery };
  }

  private constructor(opts: DeviceJournalOptions, sb: Superblock, epoch: number, scan: ScanResult) {
    this.device = opts.device;
    this.kind = opts.kind ?? 'device';
    this.clock = opts.clock;
    this.log = (opts.logger ?? nullLogger).child({ journal: opts.device.name });
    this.whenFull = opts.whenFull ?? 'wait';
    this.cacheBytes = opts.cacheBytes ?? 16 << 20;
    this.truncateDelayMs = Math.max(0, opts.truncateDelayMs ?? 50);
    this.align = sb.align;
    this.ringStart = sb.ringStart;
    this.ringEnd = sb.ringEnd;
    this.capacity = sb.ringEnd - sb.ringStart;
    this.maxRecord = maxRecordBytes(this.capacity, this.align);
    this.epoch = epoch;
    this.sb = sb;
    this.chain = scan.entries;
    for (const e of this.chain) this.bySeq.set(e.seq, e);
    this.cacheUsed = scan.cached;
    this.tail = scan.tail;
    this.nextSeq = scan.nextSeq;
    this.used = scan.used;
  }

  // ---- appends and group commit ------------------------------------------------------------------

  refusal(req: AppendRequest): Error | null {
    if (this.failure !== null) return this.failure;
    if (this.closing) return new JournalClosedError();
    const bad = validateAppend(req);
    if (bad !== null) return bad;
    const need = alignUp(RECORD_HEADER + req.data.length, this.align);
    if (need > this.maxRecord) return new RecordTooLargeError(need, this.maxRecord);
    if (this.whenFull === 'fail' && !(this.spaceWaiters.length === 0 && this.fits(need))) {
      return new JournalFullError(need + this.wasteFor(need), this.capacity - this.used, this.capacity);
    }
    return null;
  }

  append(req: AppendRequest): Promise<AppendResult> {
    const refused = this.refusal(req);
    if (refused !== null) return Promise.reject(refused);
    const need = alignUp(RECORD_HEADER + req.data.length, this.align);
    return new Promise<AppendResult>((resolve, reject) => {
      if (this.spaceWaiters.length === 0 && this.fits(need)) {
        this.place(req, resolve, reject);
        return;
      }
      // FIFO: a record never overtakes one already waiting, so recording order is arrival order.
      this.spaceWaiters.push({ req, resolve, reject });
      // A truncation waiting for its delay frees the space now.
      this.truncate();
    });
  }

  private wasteFor(need: number): number {
    return this.tail + need > this.ringEnd ? this.ringEnd - this.tail : 0;
  }

  private fits(need: number): boolean {
    return this.used + this.wasteFor(need) + need <= this.capacity;
  }

  private place(req: AppendRequest, resolve: (r: AppendResult) => void, reject: (e: Error) => void): void {
    const need = alignUp(RECORD_HEADER + req.data.length, this.align);
    const waste = this.wasteFor(need);
    if (waste > 0) {
      const pad = this.newRecord(KIND_PAD, this.tail, waste, null, 0);
      pad.released = true;
      this.issue(pad, encodeRecord(this.headerOf(pad), Buffer.alloc(0)));
      this.tail = this.ringStart;
    }
    const e = this.newRecord(KIND_WRITE, this.tail, need, req, 0);
    const buf = encodeRecord(this.headerOf(e), req.data);
    e.payloadCrc = buf.readUInt32BE(RECORD_PAYLOAD_CRC);
    if (this.cacheUsed + e.length <= this.cacheBytes) {
      e.data = buf.subarray(RECORD_HEADER, RECORD_HEADER + e.length);
      this.cacheUsed += e.length;
    }
    e.resolve = resolve;
    e.reject = reject;
    if (req.waited === true) this.batchUrgent = true;
    this.counters.appends++;
    this.issue(e, buf);
    this.tail += need;
    if (this.tail === this.ringEnd) this.tail = this.ringStart;
  }

  private newRecord(kind: number, offset: number, span: number, req: AppendRequest | null, payloadCrc: number): JournalRecord {
    return {
      kind, offset, span, epoch: this.epoch, payloadCrc,
      seq: this.nextSeq++,
      id: req ? { sourceUnit: req.id.sourceUnit, issue: req.id.issue } : { sourceUnit: 0, issue: 0 },
      volume: req?.volume ?? 0,
      lba: req?.lba ?? 0,
      blocks: req?.blocks ?? 0,
      fua: req?.fua === true,
      forwardTo: req?.forwardTo ?? 0,
      length: req?.data.length ?? 0,
      recordedAt: Math.floor(this.clock.wallTime()),
      durable: false, released: false, data: null, resolve: null, reject: null,
    };
  }

  private headerOf(e: JournalRecord): Parameters<typeof encodeRecord>[0] {
    return {
      kind: e.kind, flags: e.fua ? RECORD_FUA : 0, journalId: this.sb.journalId, seq: e.seq, epoch: e.epoch,
      sourceUnit: e.id.sourceUnit, issue: e.id.issue, volume: e.volume, blocks: e.blocks, lba: e.lba, forwardTo: e.forwardTo,
      span: e.span, recordedAt: e.recordedAt,
    };
  }

  private issue(e: JournalRecord, buf: Buffer): void {
    this.used += e.span;
    this.chain.push(e);
    this.bySeq.set(e.seq, e);
    const w = this.device.write(e.offset, buf);
    // Judged in commit(); never an unhandled rejection in between (a crash fails writes at once).
    w.catch(() => {});
    this.batch.push(e);
    this.batchWrites.push(w);
    if (!this.commitScheduled && !this.committing) {
      this.commitScheduled = true;
      // Appends made in this same turn join the batch.
      queueMicrotask(() => void this.commit());
    }
  }

  private async commit(): Promise<void> {
    this.commitScheduled = false;
    if (this.committing || this.batch.length === 0 || this.failure !== null) return;
    this.committing = true;
    const batch = this.batch;
    const writes = this.batchWrites;
    // Urgent when a source waits for one of these records ('durable'): see FlushOptions.
    const urgent = this.batchUrgent;
    this.batchUrgent = false;
    this.batch = [];
    this.batchWrites = [];
    try {
      const results = await Promise.allSettled(writes);
      const bad = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (bad) throw bad.reason;
      // Issued only now that every write of the batch completed: the flush covers all of them.
      if (this.device.volatileCache) {
        await this.device.flush(urgent ? { urgent: true } : undefined);
        this.counters.flushes++;
      }
    } catch (err) {
      this.committing = false;
      this.fail(err);
      return;
    }
    this.committing = false;
    this.counters.commits++;
    for (const e of batch) {
      e.durable = true;
      const resolve = e.resolve;
      e.resolve = null;
      e.reject = null;
      resolve?.({ seq: e.seq, durability: 'durable' });
    }
    // Released records that just became durable may let the head move.
    this.truncate();
    if (this.batch.length > 0) void this.commit();
    else this.checkIdle();
  }

  // ---- reading and releasing -------------------------------------------------------------------

  pending(query: PendingQuery = {}): JournalEntry[] {
    const out: JournalEntry[] = [];
    const limit = query.limit ?? Infinity;
    const skip = query.skip;
    for (let i = this.frontier(); i < this.chain.length && out.length < limit; i++) {
      const e = this.chain[i]!;
      if (e.kind === KIND_WRITE && !e.released && !(skip?.(e) ?? false)) out.push(publicEntry(e));
    }
    return out;
  }

  entry(seq: number): JournalEntry | undefined {
    const e = this.bySeq.get(seq);
    return e !== undefined && e.kind === KIND_WRITE ? publicEntry(e) : undefined;
  }

  async read(seq: number): Promise<Buffer> {
    const e = this.bySeq.get(seq);
    if (e === undefined || e.kind !== KIND_WRITE) throw new RangeError(`journal: no record ${seq}`);
    if (e.data !== null) return e.data;
    const b = Buffer.alloc(e.length);
    await this.device.read(e.offset + RECORD_HEADER, b);
    if (!crcMatches(b, e.payloadCrc)) {
      throw new Error(`journal: record ${seq} at offset ${e.offset} reads back corrupt`);
    }
    return b;
  }

  release(seq: number): Promise<void> {
    if (seq < this.sb.headSeq) return Promise.resolve();
    const e = this.bySeq.get(seq);
    if (e === undefined || e.kind !== KIND_WRITE) return Promise.reject(new RangeError(`journal: no record ${seq}`));
    if (this.failure !== null) return Promise.reject(this.failure);
    e.released = true;
    // Done with: its cached copy makes room for new records now, not at the (later) truncation.
    if (e.data !== null) {
      this.cacheUsed -= e.length;
      e.data = null;
    }
    const p = new Promise<void>((resolve, reject) => this.truncationWaiters.push({ seq, resolve, reject }));
    this.truncate();
    return p;
  }

  /** Index of the first record that is not both released and durable (chain.length if none). */
  private frontier(): number {
    let i = Math.max(this.scan, this.chainStart);
    while (i < this.chain.length && this.chain[i]!.released && this.chain[i]!.durable) i++;
    this.scan = i;
    return i;
  }

  /** The head the superblock should hold: past every released, durable record at the front. */
  private wantedHead(): { offset: number; seq: number; floor: number } {
    const i = this.frontier();
    if (i < this.chain.length) {
      const e = this.chain[i]!;
      return { offset: e.offset, seq: e.seq, floor: e.epoch };
    }
    return { offset: this.tail, seq: this.nextSeq, floor: this.epoch };
  }

  private truncate(): void {
    if (this.sbWriting || this.failure !== null) return;
    if (this.wantedHead().seq === this.sb.headSeq) return;
    if (!this.truncationUrgent()) {
      this.truncateTimer ??= this.clock.setTimer(this.truncateDelayMs, () => {
        this.truncateTimer = null;
        this.truncateNow();
      });
      return;
    }
    this.truncateNow();
  }

  /** Space is (or may soon be) short, or the journal is closing: no waiting. */
  private truncationUrgent(): boolean {
    return this.truncateDelayMs === 0 || this.closing || this.spaceWaiters.length > 0 || this.used * 2 > this.capacity;
  }

  private truncateNow(): void {
    this.truncateTimer?.cancel();
    this.truncateTimer = null;
    if (this.sbWriting || this.failure !== null || this.wantedHead().seq === this.sb.headSeq) return;
    void this.writeSuperblockNow().then(() => this.truncate(), () => {});
  }

  /** Write the wanted head to the other superblock slot (FUA); then free the space it passed. */
  private async writeSuperblockNow(): Promise<void> {
    assert(!this.sbWriting, 'journal: superblock writes overlap');
    this.sbWriting = true;
    const head = this.wantedHead();
    const next: Superblock = { ...this.sb, generation: this.sb.generation + 1, epoch: this.epoch, headOffset: head.offset, headSeq: head.seq, floorEpoch: head.floor };
    const slot = next.generation % 2;
    try {
      await this.device.write(slot * SUPERBLOCK_SLOT, encodeSuperblock(next, SUPERBLOCK_SLOT), { fua: true });
    } catch (err) {
      this.sbWriting = false;
      this.fail(err);
      throw err;
    }
    this.sbWriting = false;
    this.sb = next;
    this.counters.superblockWrites++;
    while (this.chainStart < this.chain.length && this.chain[this.chainStart]!.seq < next.headSeq) {
      const e = this.chain[this.chainStart++]!;
      this.used -= e.span;
      this.bySeq.delete(e.seq);
      if (e.data !== null) this.cacheUsed -= e.length;
      e.data = null;
    }
    if (this.chainStart > 1024 && this.chainStart * 2 > this.chain.length) {
      this.chain = this.chain.slice(this.chainStart);
      this.scan = Math.max(0, this.scan - this.chainStart);
      this.chainStart = 0;
    }
    if (this.truncationWaiters.length > 0) {
      const keep: TruncationWaiter[] = [];
      for (const w of this.truncationWaiters) {
        if (w.seq < next.headSeq) w.resolve();
        else keep.push(w);
      }
      this.truncationWaiters = keep;
    }
    this.admitWaiting();
    this.checkIdle();
  }

  private admitWaiting(): void {
    while (this.spaceWaiters.length > 0 && this.failure === null) {
      const w = this.spaceWaiters.peek()!;
      if (!this.fits(alignUp(RECORD_HEADER + w.req.data.length, this.align))) break;
      this.spaceWaiters.shift();
      this.place(w.req, w.resolve, w.reject);
    }
  }

  // ---- failure, closing, stats -------------------------------------------------------------------

  private fail(err: unknown): void {
    if (this.failure !== null) return;
    const f = new JournalFailedError(err);
    this.failure = f;
    this.truncateTimer?.cancel();
    this.truncateTimer = null;
    this.log.error({ err }, 'journal failed: appends refused until it is reopened');
    for (let i = this.chainStart; i < this.chain.length; i++) {
      const e = this.chain[i]!;
      const reject = e.reject;
      e.resolve = null;
      e.reject = null;
      reject?.(f);
    }
    for (let w = this.spaceWaiters.shift(); w !== undefined; w = this.spaceWaiters.shift()) w.reject(f);
    for (const w of this.truncationWaiters) w.reject(f);
    this.truncationWaiters = [];
    this.checkIdle();
  }

  get failed(): Error | null {
    return this.failure;
  }

  async close(): Promise<void> {
    this.closing = true;
    for (let w = this.spaceWaiters.shift(); w !== undefined; w = this.spaceWaiters.shift()) w.reject(new JournalClosedError());
    // A truncation that was waiting goes out now (a clean restart then forwards nothing twice).
    if (this.truncateTimer !== null) this.truncateNow();
    if (this.busy()) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private busy(): boolean {
    return this.failure === null && (this.committing || this.commitScheduled || this.sbWriting || this.batch.length > 0);
  }

  private checkIdle(): void {
    if (this.busy() || this.idleWaiters.length === 0) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const fn of w) fn();
  }

  stats(): JournalStats {
    let records = 0;
    let pendingBytes = 0;
    for (let i = this.frontier(); i < this.chain.length; i++) {
      const e = this.chain[i]!;
      if (e.kind === KIND_WRITE && !e.released) {
        records++;
        pendingBytes += e.length;
      }
    }
    return {
      kind: this.kind, capacity: this.capacity, used: this.used, free: this.capacity - this.used, records, pendingBytes,
      appends: this.counters.appends, commits: this.counters.commits, flushes: this.counters.flushes, superblockWrites: this.counters.superblockWrites,
      waitingForSpace: this.spaceWaiters.length, headSeq: this.sb.headSeq, nextSeq: this.nextSeq, failed: this.failure !== null,
    };
  }

  /** Largest payload one record can carry. */
  get maxPayload(): number {
    return this.maxRecord - RECORD_HEADER;
  }
}

/** Where the ring of a journal formatted over `deviceBytes` starts and ends. */
function ringOf(deviceBytes: number, align: number): { ringStart: number; ringEnd: number } {
  return { ringStart: alignUp(2 * SUPERBLOCK_SLOT, align), ringEnd: Math.floor(deviceBytes / align) * align };
}

/** Half the ring: such a record always fits once the ring is empty, wherever the tail is. */
function maxRecordBytes(capacity: number, align: number): number {
  return Math.floor(capacity / 2 / align) * align;
}

/**
 * The largest write payload a journal formatted over `deviceBytes` (with the default alignment)
 * takes in one record: a relay whose journal is smaller than a host's largest write refuses that
 * write every time it is sent, so topologies are checked against it.
 */
export function journalMaxPayload(deviceBytes: number, align = DEFAULT_ALIGN): number {
  const { ringStart, ringEnd } = ringOf(deviceBytes, align);
  return Math.max(0, maxRecordBytes(ringEnd - ringStart, align) - RECORD_HEADER);
}

/** The smallest device a journal taking `payload`-byte writes in one record can be formatted over. */
export function journalBytesFor(payload: number, align = DEFAULT_ALIGN): number {
  return ringOf(0, align).ringStart + Math.max(MIN_RING_UNITS * align, 2 * alignUp(RECORD_HEADER + payload, align));
}

function publicEntry(e: JournalRecord): JournalEntry {
  return { seq: e.seq, id: e.id, volume: e.volume, lba: e.lba, blocks: e.blocks, fua: e.fua, forwardTo: e.forwardTo, length: e.length, recordedAt: e.recordedAt };
}
