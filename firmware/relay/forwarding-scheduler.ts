/**
 * Drives a ForwardingPolicy on the Clock: asks it on every event (arrival, load change, pull,
 * completion) and at the time it names, starts the records it allows (in recording order, at most
 * maxInFlight at once), and releases each from the journal once the secondary confirmed it
 * (completion of reception, [0074]). A failed forward is retried after retryMs (or at once on
 * poke(true): the link came back); the record stays in the journal meanwhile. Records `skip` names
 * are being sent by someone else (the relay unit's cut-through) and are neither started nor shown
 * to the policy. A record whose release was asked is never sent again, even if the journal could
 * not release it (a failed journal keeps listing it).
 */
import type { Clock, Timer } from '../../hal/clock.js';
import { nullLogger, type Logger } from '../../hal/types.js';
import type { Arrival, ForwardingPolicy, ForwardingState } from './forwarding-policy.js';
import type { JournalEntry, RelayJournal } from './journal-types.js';

export interface ForwardingSchedulerOptions {
  clock: Clock;
  policy: ForwardingPolicy;
  journal: Pick<RelayJournal, 'pending' | 'release'>;
  /** Relay -> secondary load, bytes per second. */
  load: () => number;
  /** Send one record to the secondary; resolves on its completion of reception. */
  forward: (e: JournalEntry) => Promise<void>;
  /** Records forwarded elsewhere for now (cut-through): not started, not shown to the policy. */
  skip?: (e: Pick<JournalEntry, 'seq' | 'id' | 'volume'>) => boolean;
  maxInFlight?: number;
  retryMs?: number;
  logger?: Logger;
}

export class ForwardingScheduler {
  private readonly inFlight = new Set<number>();
  /** Confirmed records whose release was asked and which the journal still lists (it failed). */
  private readonly releasing = new Set<number>();
  private timer: Timer | null = null;
  private timerAt = Infinity;
  private retryAt = -Infinity;
  private stopped = false;
  private readonly maxInFlight: number;
  private readonly retryMs: number;
  private readonly log: Logger;
  forwarded = 0;
  failures = 0;

  constructor(private readonly o: ForwardingSchedulerOptions) {
    this.maxInFlight = o.maxInFlight ?? 4;
    this.retryMs = o.retryMs ?? 1000;
    this.log = (o.logger ?? nullLogger).child({ policy: o.policy.name });
  }

  /** A write arrived: the policy says whether to send it in step or record it. */
  arrival(): Arrival {
    return this.o.policy.onArrival(this.state());
  }

  /** Something changed: decide again now; `retry`: a link came back, so forget the retry delay. */
  poke(retry = false): void {
    if (this.stopped) return;
    if (retry) this.retryAt = -Infinity;
    const s = this.state();
    const d = this.o.policy.decide(s);
    const now = this.o.clock.now();
    if (now >= this.retryAt) {
      for (let i = 0; i < d.count && i < s.pending.length && this.inFlight.size < this.maxInFlight; i++) this.start(s.pending[i] as JournalEntry);
    }
    let wake = d.wakeAt ?? Infinity;
    if (this.retryAt > now) wake = Math.min(wake, this.retryAt);
    this.arm(wake);
  }

  get active(): number {
    return this.inFlight.size;
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
  }

  private state(): ForwardingState {
    const c = this.o.clock;
    const skip = this.o.skip;
    // Only what could be started now (a decision is a prefix of the pending records, and at most
    // maxInFlight are in flight), unless the policy needs to see all of them.
    const pending = this.o.journal.pending({
      limit: this.o.policy.wantsAllPending === true ? undefined : this.maxInFlight,
      skip: (e) => this.inFlight.has(e.seq) || this.releasing.has(e.seq) || (skip?.(e) ?? false),
    });
    return { now: c.now(), wallTime: c.wallTime(), load: this.o.load(), pending };
  }

  private start(e: JournalEntry): void {
    this.inFlight.add(e.seq);
    this.o.policy.started?.(e);
    this.o.forward(e).then(
      () => {
        this.inFlight.delete(e.seq);
        this.forwarded++;
        this.releasing.add(e.seq);
        this.o.journal.release(e.seq).then(
          () => this.releasing.delete(e.seq),
          (err: unknown) => this.log.error({ err, seq: e.seq }, 'journal release failed'),
        );
        this.poke();
      },
      (err: unknown) => {
        this.inFlight.delete(e.seq);
        this.failures++;
        this.retryAt = this.o.clock.now() + this.retryMs;
        this.log.warn({ err, seq: e.seq }, 'forwarding failed; will retry');
        this.poke();
      },
    );
  }

  private arm(at: number): void {
    if (at === this.timerAt) return;
    this.timer?.cancel();
    this.timer = null;
    this.timerAt = at;
    if (at === Infinity) return;
    this.timer = this.o.clock.setTimer(Math.max(0, at - this.o.clock.now()), () => {
      this.timer = null;
      this.timerAt = Infinity;
      this.poke();
    });
  }
}
