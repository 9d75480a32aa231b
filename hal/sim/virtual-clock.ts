/**
 * The simulated HAL's clock: time stands still until the simulator moves it. Timers fire in due
 * order, ties in creation order, so a simulation is a deterministic function of its inputs.
 * advance()/runUntilIdle() here are synchronous (no microtasks run between timers); to drive
 * async firmware, use Simulator.run()/advance() (simulator.ts), which settle between timers.
 */
import type { Clock, Timer } from '../clock.js';
import { TimerHeap } from '../timer-heap.js';

class VirtualTimer implements Timer {
  constructor(
    readonly due: number,
    readonly seq: number,
    public fn: (() => void) | null,
    private readonly clock: VirtualClock,
  ) {}

  cancel(): void {
    if (this.fn !== null) {
      this.fn = null;
      this.clock.cancelled();
    }
  }
}

export class VirtualClock implements Clock {
  private t: number;
  private readonly wallBase: number;
  private seq = 0;
  private live = 0;
  private readonly heap = new TimerHeap<VirtualTimer>();

  constructor(opts: { start?: number; wallStart?: number } = {}) {
    this.t = opts.start ?? 0;
    // A fixed default epoch keeps logs and time-of-day policies reproducible.
    this.wallBase = (opts.wallStart ?? Date.UTC(2030, 0, 1)) - this.t;
  }

  now(): number {
    return this.t;
  }

  wallTime(): number {
    return this.wallBase + this.t;
  }

  setTimer(ms: number, fn: () => void): Timer {
    if (Number.isNaN(ms)) throw new RangeError('VirtualClock.setTimer: ms is NaN');
    const timer = new VirtualTimer(this.t + Math.max(0, ms), this.seq++, fn, this);
    this.heap.push(timer);
    this.live++;
    return timer;
  }

  /** Timers not yet fired nor cancelled. */
  get pendingTimers(): number {
    return this.live;
  }

  /** When the next timer is due, or undefined when none is pending. */
  nextTimerAt(): number | undefined {
    this.heap.dropCancelled();
    return this.heap.peek()?.due;
  }

  /** Move to the next timer's due time and fire it. False when no timer is pending. */
  fireNext(): boolean {
    this.heap.dropCancelled();
    const timer = this.heap.pop();
    if (!timer) return false;
    if (timer.due > this.t) this.t = timer.due;
    const fn = timer.fn!;
    timer.fn = null;
    this.live--;
    fn();
    return true;
  }

  /** Fire, in order, every timer due within `ms` from now (including ones those timers set), then stop at now + ms. */
  advance(ms: number): number {
    if (!(ms >= 0)) throw new RangeError(`VirtualClock.advance: ms must be >= 0, got ${ms}`);
    return this.advanceTo(this.t + ms);
  }

  advanceTo(time: number): number {
    let fired = 0;
    for (let next = this.nextTimerAt(); next !== undefined && next <= time; next = this.nextTimerAt()) {
      this.fireNext();
      fired++;
    }
    if (time > this.t) this.t = time;
    return fired;
  }

  /** Fire timers until none is left; throws after `limit` of them (a timer that re-arms forever). */
  runUntilIdle(limit = 1_000_000): number {
    let fired = 0;
    while (this.fireNext()) {
      if (++fired >= limit) throw new Error(`VirtualClock.runUntilIdle: more than ${limit} timers fired`);
    }
    return fired;
  }

  /** @internal */
  cancelled(): void {
    this.live--;
  }
}
