/**
 * A simulated recording medium: a MemoryDevice behind injectable latency (fixed, or modelled on
 * seek distance), injected errors, an optional volatile write cache with power loss (crash()), and
 * a log of every operation so tests can assert what the firmware issued and in which order.
 *
 * Timing: an operation completes `latency` ms of clock time after it starts. A serial device (the
 * default: one actuator) starts each operation when the previous one completed, in arrival order;
 * a parallel one (serial: false) starts every operation at once, so they may complete in any
 * order — like a drive with a tagged queue, it gives no ordering between outstanding commands.
 * Data moves at completion: a read copies into the caller's buffer, a write takes the caller's
 * data, when the operation completes.
 *
 * Volatile cache (volatileCache: true): completed writes are visible to reads but not durable. A
 * flush makes durable exactly the writes (and discards) that had COMPLETED when the flush was
 * ISSUED — the weakest reading of the BlockDevice contract, so a firmware that issues a flush
 * before the writes it must cover have completed loses data here, as it could on real hardware.
 * A FUA write is durable when it completes. crash() is power loss: every un-flushed write is
 * gone and every outstanding operation fails (DeviceError code 'ECRASH').
 */
import type { Clock, Timer } from '../clock.js';
import { DeviceError, type BlockDevice, type DeviceOp, type WriteOptions } from '../block-device.js';
import { MemoryDevice } from '../memory-device.js';

export interface LatencyQuery {
  readonly op: DeviceOp;
  readonly offset: number;
  readonly length: number;
  /** Head position when the operation starts: the end of the previous operation. */
  readonly head: number;
  /** |offset - head| in bytes (0 for flush). */
  readonly distance: number;
}

/** Milliseconds per operation, or a function of the operation (seek model, random jitter). */
export type Latency = number | ((q: LatencyQuery) => number);

/** A seek model: base + per-MiB-of-distance cost, capped. */
export function seekLatency(opts: { base?: number; perMiB?: number; max?: number } = {}): (q: LatencyQuery) => number {
  const base = opts.base ?? 0.1;
  const perMiB = opts.perMiB ?? 0.01;
  const max = opts.max ?? 10;
  return (q) => base + Math.min(max, (q.distance / (1024 * 1024)) * perMiB);
}

export interface SimDeviceOptions {
  clock: Clock;
  size: number;
  name?: string;
  /** Default 0: completes on the next timer. */
  latency?: Latency;
  /** One operation at a time in arrival order (default true). */
  serial?: boolean;
  /** Writes are not durable until flush or FUA (default false). */
  volatileCache?: boolean;
  /** Reported capability; discard always zeroes (default true). */
  canDiscard?: boolean;
}

export interface SimOpRecord {
  /** Arrival order on this device. */
  readonly seq: number;
  readonly op: DeviceOp;
  readonly offset: number;
  readonly length: number;
  readonly fua: boolean;
  readonly issuedAt: number;
  /** Global event counters (issue and completion share one sequence per device): ordering proofs without time ties. */
  readonly issueEvent: number;
  completionEvent?: number;
  completedAt?: number;
  /** DeviceError code when it failed. */
  error?: string;
}

interface Fault {
  op: DeviceOp;
  start: number;
  end: number;
  code: string;
  remaining: number;
}

interface Pending {
  record: SimOpRecord;
  buffer: Uint8Array | null;
  error: DeviceError | null;
  /** Flush: the write sequence number it covers. */
  covers: number;
  timer: Timer | null;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface CacheRecord {
  seq: number;
  offset: number;
  length: number;
  /** null for a discard (zeroes). */
  data: Buffer | null;
}

export interface SimDeviceStats {
  inFlight: number;
  maxInFlight: number;
  reads: number;
  writes: number;
  flushes: number;
  discards: number;
  errors: number;
  /** Bytes written to the volatile cache and not yet durable. */
  dirtyBytes: number;
}

export class SimDevice implements BlockDevice {
  readonly name: string;
  readonly size: number;
  readonly volatileCache: boolean;
  readonly canDiscard: boolean;
  /** Every operation, in arrival order. */
  readonly log: SimOpRecord[] = [];

  private readonly clock: Clock;
  private readonly latency: Latency;
  private readonly serial: boolean;
  /** What reads see. */
  private current: MemoryDevice;
  /** What survives crash(); the same object as `current` without a volatile cache. */
  private durable: MemoryDevice;
  private cache: CacheRecord[] = [];
  private writeSeq = 0;
  private events = 0;
  private head = 0;
  private busyUntil = 0;
  private faults: Fault[] = [];
  private readonly pending = new Set<Pending>();
  private closed = false;
  private readonly counters: Omit<SimDeviceStats, 'inFlight' | 'dirtyBytes'> = { maxInFlight: 0, reads: 0, writes: 0, flushes: 0, discards: 0, errors: 0 };

  constructor(opts: SimDeviceOptions) {
    this.name = opts.name ?? 'sim';
    this.size = opts.size;
    this.clock = opts.clock;
    this.latency = opts.latency ?? 0;
    this.serial = opts.serial ?? true;
    this.volatileCache = opts.volatileCache ?? false;
    this.canDiscard = opts.canDiscard ?? true;
    this.durable = new MemoryDevice(this.name, this.size);
    this.current = this.volatileCache ? this.durable.clone() : this.durable;
  }

  read(offset: number, into: Uint8Array): Promise<void> {
    return this.submit('read', offset, into.length, false, into);
  }

  write(offset: number, from: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.submit('write', offset, from.length, options?.fua === true, from);
  }

  flush(): Promise<void> {
    return this.submit('flush', this.head, 0, false, null);
  }

  discard(offset: number, length: number): Promise<void> {
    return this.submit('discard', offset, length, false, null);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  // ---- fault injection -------------------------------------------------------------------------

  /** Reads touching [offset, offset+length) fail with `code`, `times` times (default: forever). */
  failReads(range: { offset: number; length: number }, code = 'EIO', times = Infinity): this {
    this.faults.push({ op: 'read', start: range.offset, end: range.offset + range.length, code, remaining: times });
    return this;
  }

  failWrites(range: { offset: number; length: number }, code = 'EIO', times = Infinity): this {
    this.faults.push({ op: 'write', start: range.offset, end: range.offset + range.length, code, remaining: times });
    return this;
  }

  /** The next operation of this kind, wherever it is, fails. */
  failNext(op: DeviceOp, code = 'EIO'): this {
    this.faults.push({ op, start: 0, end: Infinity, code, remaining: 1 });
    return this;
  }

  clearFaults(): this {
    this.faults = [];
    return this;
  }

  // ---- power loss --------------------------------------------------------------------------------

  /**
   * Power loss: the volatile cache is dropped, outstanding operations fail with code 'ECRASH' and
   * have no effect. The device stays usable (the "power comes back" state).
   */
  crash(): void {
    for (const p of [...this.pending]) {
      p.timer?.cancel();
      this.pending.delete(p);
      p.record.error = 'ECRASH';
      p.reject(new DeviceError(p.record.op, p.record.offset, p.record.length, 'ECRASH', `${this.name}: power lost`));
    }
    if (this.volatileCache) this.current = this.durable.clone();
    this.cache = [];
    this.busyUntil = this.clock.now();
  }

  // ---- inspection (synchronous, no latency, not logged) ------------------------------------------

  /** What a read would return now. */
  peek(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    this.current.readSync(offset, out);
    return out;
  }

  /** What would survive a crash now. */
  peekDurable(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    this.durable.readSync(offset, out);
    return out;
  }

  /** Set contents directly, durably (test setup). */
  poke(offset: number, data: Uint8Array): void {
    this.durable.writeSync(offset, data);
    if (this.current !== this.durable) this.current.writeSync(offset, data);
  }

  get inFlight(): number {
    return this.pending.size;
  }

  stats(): SimDeviceStats {
    let dirty = 0;
    for (const r of this.cache) dirty += r.length;
    return { ...this.counters, inFlight: this.pending.size, dirtyBytes: dirty };
  }

  /** Records of one kind of operation, in arrival order. */
  ops(op?: DeviceOp): SimOpRecord[] {
    return op === undefined ? [...this.log] : this.log.filter((r) => r.op === op);
  }

  clearLog(): void {
    this.log.length = 0;
  }

  // ---- machinery -----------------------------------------------------------------------------------

  private submit(op: DeviceOp, offset: number, length: number, fua: boolean, buffer: Uint8Array | null): Promise<void> {
    const now = this.clock.now();
    const record: SimOpRecord = { seq: this.log.length, op, offset, length, fua, issuedAt: now, issueEvent: this.events++ };
    this.log.push(record);
    let error: DeviceError | null = null;
    if (this.closed) error = new DeviceError(op, offset, length, 'EBADF', `${this.name}: device is closed`);
    else if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      error = new DeviceError(op, offset, length, 'ERANGE', `${this.name}: ${op} of ${length} bytes at ${offset} is outside 0..${this.size}`);
    } else error = this.injected(op, offset, length);

    const distance = op === 'flush' ? 0 : Math.abs(offset - this.head);
    const ms = typeof this.latency === 'number' ? this.latency : this.latency({ op, offset, length, head: this.head, distance });
    if (!(ms >= 0)) throw new RangeError(`${this.name}: latency must be >= 0, got ${ms}`);
    if (op !== 'flush') this.head = offset + length;
    const start = this.serial ? Math.max(now, this.busyUntil) : now;
    const done = start + ms;
    if (this.serial) this.busyUntil = done;

    return new Promise<void>((resolve, reject) => {
      const p: Pending = { record, buffer, error, covers: this.writeSeq, timer: null, resolve, reject };
      this.pending.add(p);
      if (this.pending.size > this.counters.maxInFlight) this.counters.maxInFlight = this.pending.size;
      p.timer = this.clock.setTimer(done - now, () => this.complete(p));
    });
  }

  private injected(op: DeviceOp, offset: number, length: number): DeviceError | null {
    for (let i = 0; i < this.faults.length; i++) {
      const f = this.faults[i]!;
      if (f.op !== op || f.remaining <= 0) continue;
      const ranged = f.end !== Infinity;
      if (ranged && !(offset < f.end && f.start < offset + length)) continue;
      if (--f.remaining <= 0) this.faults.splice(i, 1);
      // Like a drive's sense data: the first failing byte, not the start of the command.
      const at = ranged ? Math.max(offset, f.start) : offset;
      return new DeviceError(op, at, offset + length - at, f.code);
    }
    return null;
  }

  private complete(p: Pending): void {
    this.pending.delete(p);
    const r = p.record;
    r.completedAt = this.clock.now();
    r.completionEvent = this.events++;
    if (p.error) {
      r.error = p.error.code;
      this.counters.errors++;
      p.reject(p.error);
      return;
    }
    switch (r.op) {
      case 'read':
        this.counters.reads++;
        this.current.readSync(r.offset, p.buffer!);
        break;
      case 'write':
        this.counters.writes++;
        this.applyWrite(r.offset, p.buffer!, r.fua);
        break;
      case 'discard':
        this.counters.discards++;
        this.applyDiscard(r.offset, r.length);
        break;
      case 'flush':
        this.counters.flushes++;
        this.persist(p.covers);
        break;
    }
    p.resolve();
  }

  private applyWrite(offset: number, data: Uint8Array, fua: boolean): void {
    this.writeSeq++;
    this.current.writeSync(offset, data);
    if (!this.volatileCache) return;
    if (fua) {
      this.durable.writeSync(offset, data);
      // Older cached data for these bytes is superseded: a later flush must not bring it back.
      this.trimCache(offset, data.length);
    } else {
      this.cache.push({ seq: this.writeSeq, offset, length: data.length, data: Buffer.from(data) });
    }
  }

  private applyDiscard(offset: number, length: number): void {
    this.writeSeq++;
    this.current.discardSync(offset, length);
    if (this.volatileCache) this.cache.push({ seq: this.writeSeq, offset, length, data: null });
  }

  /** Make durable, in order, the cached writes with seq <= covers. */
  private persist(covers: number): void {
    let n = 0;
    while (n < this.cache.length && this.cache[n]!.seq <= covers) {
      const rec = this.cache[n]!;
      if (rec.data) this.durable.writeSync(rec.offset, rec.data);
      else this.durable.discardSync(rec.offset, rec.length);
      n++;
    }
    this.cache.splice(0, n);
  }

  private trimCache(offset: number, length: number): void {
    const end = offset + length;
    const kept: CacheRecord[] = [];
    for (const rec of this.cache) {
      const recEnd = rec.offset + rec.length;
      if (recEnd <= offset || rec.offset >= end) {
        kept.push(rec);
        continue;
      }
      if (rec.offset < offset) {
        const n = offset - rec.offset;
        kept.push({ seq: rec.seq, offset: rec.offset, length: n, data: rec.data ? rec.data.subarray(0, n) : null });
      }
      if (recEnd > end) {
        const skip = end - rec.offset;
        kept.push({ seq: rec.seq, offset: end, length: recEnd - end, data: rec.data ? rec.data.subarray(skip) : null });
      }
    }
    this.cache = kept;
  }
}
