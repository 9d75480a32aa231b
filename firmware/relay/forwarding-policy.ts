/**
 * When the relay sends recorded commands on to the secondary (000-NV, [0115]-[0117]): decision
 * functions of the clock, the link load and the journal's pending records. They do no I/O; the
 * ForwardingScheduler (forwarding-scheduler.ts) asks them and arms the timers they name.
 *
 *   immediate     store-and-forward: record, then send at once (E1 with a non-volatile buffer)
 *   load-below    send while the relay -> secondary load is below a threshold [0115]
 *   delay         send a record once a preset time has passed since it was recorded [0115]
 *   time-of-day   send what was recorded before a preset time of day, at that time [0115]
 *   pull          send when the secondary asks for it (PULL) [0115]
 *   spill         send in step with arrivals (no recording); record only while the load is
 *                 above a threshold, and drain the records when it falls [0117]
 *
 * A decision is always a prefix of the pending records: the secondary gets the writes in the order
 * the relay recorded them (overlapping writes must not be reordered). For the same reason `spill`
 * records every arrival while earlier ones are still recorded, even once the load has fallen.
 * Times: `now` is the monotonic clock (timers), `wallTime` the wall clock; records carry the wall
 * time of recording, so a delay or a time of day still holds after a relay restart.
 */
import type { JournalEntry } from './journal-types.js';

export interface ForwardingState {
  /** Clock.now(): monotonic ms. */
  now: number;
  /** Clock.wallTime(): ms since the Unix epoch. */
  wallTime: number;
  /** Relay -> secondary traffic, bytes per second (LoadMeter). */
  load: number;
  /** Records not yet forwarded (or in flight), oldest first. */
  pending: ReadonlyArray<Pick<JournalEntry, 'seq' | 'recordedAt' | 'length'>>;
}

export interface ForwardingDecision {
  /** How many of the oldest pending records may be forwarded now. */
  count: number;
  /** Monotonic time to decide again even if nothing happens meanwhile. */
  wakeAt?: number;
}

export type Arrival = 'forward' | 'journal';

export interface ForwardingPolicy {
  readonly name: string;
  /** A write arrived at the relay: send it on in step (not recorded), or record it? */
  onArrival(s: ForwardingState): Arrival;
  decide(s: ForwardingState): ForwardingDecision;
  /** The scheduler started forwarding this record. */
  started?(e: Pick<JournalEntry, 'seq' | 'length'>): void;
  /**
   * decide() and onArrival() see every pending record; otherwise only the first ones the scheduler
   * could start now (at least one when any is pending), which is all a prefix decision needs.
   */
  readonly wantsAllPending?: boolean;
}

/** Store-and-forward: record, then forward at once. */
export class ImmediatePolicy implements ForwardingPolicy {
  readonly name = 'immediate';
  onArrival(): Arrival {
    return 'journal';
  }
  decide(s: ForwardingState): ForwardingDecision {
    return { count: s.pending.length };
  }
}

/** Forward while the link load is below `threshold` bytes/s; look again every `recheckMs`. */
export class LoadBelowPolicy implements ForwardingPolicy {
  readonly name = 'load-below';
  constructor(readonly threshold: number, readonly recheckMs = 100) {
    if (!(threshold > 0) || !(recheckMs > 0)) throw new RangeError('LoadBelowPolicy: threshold and recheckMs must be positive');
  }
  onArrival(): Arrival {
    return 'journal';
  }
  decide(s: ForwardingState): ForwardingDecision {
    if (s.pending.length === 0) return { count: 0 };
    if (s.load < this.threshold) return { count: s.pending.length };
    // Load decays with time alone: no event would tell us it fell.
    return { count: 0, wakeAt: s.now + this.recheckMs };
  }
}

/** Forward each record once `delayMs` passed since it was recorded. */
export class DelayPolicy implements ForwardingPolicy {
  readonly name = 'delay';
  constructor(readonly delayMs: number) {
    if (!(delayMs >= 0)) throw new RangeError('DelayPolicy: delay must be >= 0');
  }
  onArrival(): Arrival {
    return 'journal';
  }
  decide(s: ForwardingState): ForwardingDecision {
    let n = 0;
    while (n < s.pending.length && s.pending[n]!.recordedAt + this.delayMs <= s.wallTime) n++;
    if (n === s.pending.length) return { count: n };
    return { count: n, wakeAt: s.now + (s.pending[n]!.recordedAt + this.delayMs - s.wallTime) };
  }
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * At each preset time of day, forward what was recorded before it. `times` are minutes after
 * midnight in the zone `utcOffsetMinutes` east of UTC (e.g. [120] with offset 540: 02:00 JST).
 */
export class TimeOfDayPolicy implements ForwardingPolicy {
  readonly name = 'time-of-day';
  private readonly times: number[];
  constructor(times: number | readonly number[], readonly utcOffsetMinutes = 0) {
    const list = typeof times === 'number' ? [times] : [...times];
    if (list.length === 0 || list.some((t) => !(t >= 0 && t < 24 * 60))) throw new RangeError('TimeOfDayPolicy: times are minutes in [0, 1440)');
    this.times = list.map((t) => t * 60_000).sort((a, b) => a - b);
  }
  onArrival(): Arrival {
    return 'journal';
  }
  /** The latest preset instant at or before `wall` (wall ms). */
  lastAt(wall: number): number {
    const local = wall + this.utcOffsetMinutes * 60_000;
    const midnight = Math.floor(local / DAY_MS) * DAY_MS;
    const into = local - midnight;
    let best = -Infinity;
    for (const t of this.times) if (t <= into) best = t;
    const at = best === -Infinity ? midnight - DAY_MS + this.times[this.times.length - 1]! : midnight + best;
    return at - this.utcOffsetMinutes * 60_000;
  }
  /** The first preset instant after `wall`. */
  nextAt(wall: number): number {
    const local = wall + this.utcOffsetMinutes * 60_000;
    const midnight = Math.floor(local / DAY_MS) * DAY_MS;
    const into = local - midnight;
    for (const t of this.times) if (t > into) return midnight + t - this.utcOffsetMinutes * 60_000;
    return midnight + DAY_MS + this.times[0]! - this.utcOffsetMinutes * 60_000;
  }
  decide(s: ForwardingState): ForwardingDecision {
    const last = this.lastAt(s.wallTime);
    let n = 0;
    while (n < s.pending.length && s.pending[n]!.recordedAt < last) n++;
    return n === s.pending.length ? { count: n } : { count: n, wakeAt: s.now + (this.nextAt(s.wallTime) - s.wallTime) };
  }
}

/** Forward only what the secondary asked for with PULL. */
export class PullPolicy implements ForwardingPolicy {
  readonly name = 'pull';
  /** "Everything" is what is recorded at the pull: it must see all of it. */
  readonly wantsAllPending = true;
  private commands = 0;
  private bytes = 0;
  private asked: { maxCommands: number; maxBytes: number } | null = null;
  onArrival(): Arrival {
    return 'journal';
  }
  /** The secondary asks for up to this many records / bytes (default: everything recorded so far). */
  pull(req: { maxCommands?: number; maxBytes?: number } = {}): void {
    this.asked = { maxCommands: req.maxCommands ?? Infinity, maxBytes: req.maxBytes ?? Infinity };
  }
  decide(s: ForwardingState): ForwardingDecision {
    if (this.asked !== null) {
      // "Everything" means what is recorded now, not what arrives later.
      this.commands = Math.min(this.asked.maxCommands, s.pending.length);
      this.bytes = this.asked.maxBytes;
      this.asked = null;
    }
    let n = 0;
    let bytes = 0;
    while (n < s.pending.length && n < this.commands && (bytes + s.pending[n]!.length <= this.bytes || n === 0)) bytes += s.pending[n++]!.length;
    return { count: n };
  }
  started(e: Pick<JournalEntry, 'length'>): void {
    this.commands = Math.max(0, this.commands - 1);
    this.bytes = Math.max(0, this.bytes - e.length);
  }
}

/**
 * Forward in step with arrivals while the load is at most `threshold`; above it, record (spill), and
 * drain the records once the load is below `resumeBelow` (default: the threshold; lower gives
 * hysteresis).
 */
export class SpillPolicy implements ForwardingPolicy {
  readonly name = 'spill';
  readonly resumeBelow: number;
  constructor(readonly threshold: number, resumeBelow?: number, readonly recheckMs = 100) {
    if (!(threshold > 0)) throw new RangeError('SpillPolicy: threshold must be positive');
    this.resumeBelow = resumeBelow ?? threshold;
  }
  onArrival(s: ForwardingState): Arrival {
    return s.pending.length === 0 && s.load <= this.threshold ? 'forward' : 'journal';
  }
  decide(s: ForwardingState): ForwardingDecision {
    if (s.pending.length === 0) return { count: 0 };
    if (s.load < this.resumeBelow) return { count: s.pending.length };
    return { count: 0, wakeAt: s.now + this.recheckMs };
  }
}
