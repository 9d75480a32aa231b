/**
 * The relay journal in battery-backed memory (000-NV, [0114]: "a memory with battery backup").
 *
 * What it means here: the records live in a BatteryBackedMemory region that belongs to the relay's
 * hardware, not to the relay process. A record is stored with one atomic publish (NVRAM with a
 * valid flag written last), so an append is durable as soon as it is stored: no device write, no
 * flush. The region survives a relay process restart and a power loss for as long as the battery
 * holds; a new process attaches to it with MemoryJournal.open() and finds every stored record not
 * yet released. It does not survive the battery running flat (discharge()), or the loss of the
 * board; a disc journal (journal.ts) does, at the cost of a flush per group commit.
 *
 * In the simulator the region is an object the test (the "machine") keeps across relay instances.
 * Attaching fences the previous process: a stale instance can no longer change the region.
 */
import { nullLogger, type Logger } from '../../hal/types.js';
import type { Clock } from '../../hal/clock.js';
import { Ring } from '../../hal/ring.js';
import {
  JournalClosedError, JournalFullError, RecordTooLargeError, validateAppend, type AppendRequest, type AppendResult, type JournalEntry,
  type JournalStats, type PendingQuery, type RelayJournal,
} from './journal-types.js';

/** Bytes each record costs besides its payload (its descriptor in the region). */
export const MEMORY_RECORD_OVERHEAD = 64;

interface Stored extends JournalEntry {
  readonly data: Buffer;
  released: boolean;
}

/** The battery-backed region: what survives the relay process. */
export class BatteryBackedMemory {
  /** @internal */ records: Stored[] = [];
  /** @internal */ nextSeq = 1;
  /** @internal */ used = 0;
  /** @internal */ owner = 0;
  private owners = 0;

  constructor(readonly capacity: number) {
    if (!(Number.isSafeInteger(capacity) && capacity > MEMORY_RECORD_OVERHEAD)) throw new RangeError(`battery-backed memory of ${capacity} bytes`);
  }

  /** @internal A new process takes the region over. */
  attach(): number {
    this.owner = ++this.owners;
    return this.owner;
  }

  /** The battery ran flat while the power was off: everything is gone. */
  discharge(): void {
    this.records = [];
    this.used = 0;
    this.owner = 0;
  }
}

export interface MemoryJournalOptions {
  clock: Clock;
  logger?: Logger;
  whenFull?: 'wait' | 'fail';
}

export interface MemoryRecovery {
  records: number;
  bytes: number;
  headSeq: number;
  nextSeq: number;
}

interface SpaceWaiter {
  req: AppendRequest;
  resolve: (r: AppendResult) => void;
  reject: (e: Error) => void;
}

export class MemoryJournal implements RelayJournal {
  readonly kind = 'battery-backed-memory' as const;
  private readonly token: number;
  private readonly whenFull: 'wait' | 'fail';
  private readonly log: Logger;
  private readonly waiters = new Ring<SpaceWaiter>();
  private truncationWaiters: Array<{ seq: number; resolve: () => void }> = [];
  private closed = false;
  private appends = 0;

  static open(mem: BatteryBackedMemory, opts: MemoryJournalOptions): { journal: MemoryJournal; recovery: MemoryRecovery } {
    const journal = new MemoryJournal(mem, opts);
    const live = mem.records.filter((r) => !r.released);
    const recovery: MemoryRecovery = {
      records: live.length,
      bytes: live.reduce((n, r) => n + r.length, 0),
      headSeq: mem.records[0]?.seq ?? mem.nextSeq,
      nextSeq: mem.nextSeq,
    };
    journal.log.info({ ...recovery }, 'battery-backed journal attached');
    return { journal, recovery };
  }

  private constructor(private readonly mem: BatteryBackedMemory, private readonly opts: MemoryJournalOptions) {
    this.token = mem.attach();
    this.whenFull = opts.whenFull ?? 'wait';
    this.log = (opts.logger ?? nullLogger).child({ journal: 'battery-backed' });
  }

  private fenced(): Error | null {
    if (this.mem.owner !== this.token) return new Error('battery-backed journal: another relay process has attached to the memory');
    if (this.closed) return new JournalClosedError();
    return null;
  }

  refusal(req: AppendRequest): Error | null {
    const bad = this.fenced() ?? validateAppend(req);
    if (bad !== null) return bad;
    const need = MEMORY_RECORD_OVERHEAD + req.data.length;
    if (need > this.mem.capacity) return new RecordTooLargeError(need, this.mem.capacity);
    if (this.whenFull === 'fail' && !(this.waiters.length === 0 && this.mem.used + need <= this.mem.capacity)) {
      return new JournalFullError(need, this.mem.capacity - this.mem.used, this.mem.capacity);
    }
    return null;
  }

  append(req: AppendRequest): Promise<AppendResult> {
    const refused = this.refusal(req);
    if (refused !== null) return Promise.reject(refused);
    const need = MEMORY_RECORD_OVERHEAD + req.data.length;
    if (this.waiters.length === 0 && this.mem.used + need <= this.mem.capacity) return Promise.resolve(this.store(req));
    return new Promise((resolve, reject) => this.waiters.push({ req, resolve, reject }));
  }

  private store(req: AppendRequest): AppendResult {
    const rec: Stored = {
      seq: this.mem.nextSeq++,
      id: { sourceUnit: req.id.sourceUnit, issue: req.id.issue },
      volume: req.volume, lba: req.lba, blocks: req.blocks, fua: req.fua === true, forwardTo: req.forwardTo ?? 0,
      length: req.data.length,
      recordedAt: Math.floor(this.opts.clock.wallTime()),
      data: Buffer.from(req.data),
      released: false,
    };
    this.mem.used += MEMORY_RECORD_OVERHEAD + rec.length;
    // The publish: from here on the record survives the process.
    this.mem.records.push(rec);
    this.appends++;
    return { seq: rec.seq, durability: 'durable' };
  }

  pending(query: PendingQuery = {}): JournalEntry[] {
    const out: JournalEntry[] = [];
    const limit = query.limit ?? Infinity;
    const skip = query.skip;
    for (const r of this.mem.records) {
      if (out.length >= limit) break;
      if (!r.released && !(skip?.(r) ?? false)) out.push(publicEntry(r));
    }
    return out;
  }

  entry(seq: number): JournalEntry | undefined {
    const r = this.find(seq);
    return r === undefined ? undefined : publicEntry(r);
  }

  read(seq: number): Promise<Buffer> {
    const r = this.find(seq);
    return r === undefined ? Promise.reject(new RangeError(`journal: no record ${seq}`)) : Promise.resolve(r.data);
  }

  release(seq: number): Promise<void> {
    const bad = this.fenced();
    if (bad !== null) return Promise.reject(bad);
    const r = this.find(seq);
    if (r === undefined) return seq < (this.mem.records[0]?.seq ?? this.mem.nextSeq) ? Promise.resolve() : Promise.reject(new RangeError(`journal: no record ${seq}`));
    r.released = true;
    // Truncate from the head, as the disc journal does: a record released out of order is freed
    // (and its promise resolved) with the ones before it.
    let n = 0;
    while (n < this.mem.records.length && this.mem.records[n]!.released) {
      this.mem.used -= MEMORY_RECORD_OVERHEAD + this.mem.records[n]!.length;
      n++;
    }
    if (n > 0) this.mem.records.splice(0, n);
    const done = new Promise<void>((resolve) => this.truncationWaiters.push({ seq, resolve }));
    this.admit();
    return done;
  }

  private admit(): void {
    const head = this.mem.records[0]?.seq ?? this.mem.nextSeq;
    this.truncationWaiters = this.truncationWaiters.filter((w) => {
      if (w.seq >= head) return true;
      w.resolve();
      return false;
    });
    while (this.waiters.length > 0) {
      const w = this.waiters.peek()!;
      if (this.mem.used + MEMORY_RECORD_OVERHEAD + w.req.data.length > this.mem.capacity) break;
      this.waiters.shift();
      const bad = this.fenced();
      if (bad !== null) w.reject(bad);
      else w.resolve(this.store(w.req));
    }
  }

  private find(seq: number): Stored | undefined {
    const recs = this.mem.records;
    if (recs.length === 0) return undefined;
    const r = recs[seq - recs[0]!.seq];
    return r !== undefined && r.seq === seq ? r : undefined;
  }

  stats(): JournalStats {
    const live = this.mem.records.filter((r) => !r.released);
    return {
      kind: this.kind, capacity: this.mem.capacity, used: this.mem.used, free: this.mem.capacity - this.mem.used,
      records: live.length, pendingBytes: live.reduce((n, r) => n + r.length, 0), appends: this.appends, commits: this.appends, flushes: 0,
      superblockWrites: 0, waitingForSpace: this.waiters.length, headSeq: this.mem.records[0]?.seq ?? this.mem.nextSeq,
      nextSeq: this.mem.nextSeq, failed: false,
    };
  }

  close(): Promise<void> {
    this.closed = true;
    for (let w = this.waiters.shift(); w !== undefined; w = this.waiters.shift()) w.reject(new JournalClosedError());
    return Promise.resolve();
  }
}

function publicEntry(r: Stored): JournalEntry {
  return { seq: r.seq, id: r.id, volume: r.volume, lba: r.lba, blocks: r.blocks, fua: r.fua, forwardTo: r.forwardTo, length: r.length, recordedAt: r.recordedAt };
}
