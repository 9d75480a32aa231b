/**
 * Drives async code deterministically in virtual time: drain every pending microtask, then fire
 * exactly one timer, repeat. Because the simulated HAL never does real I/O, "no microtask left and
 * no timer left" means nothing can ever happen again: run() reports that as a deadlock instead of
 * hanging the test.
 */
import { Random } from './random.js';
import { VirtualClock } from './virtual-clock.js';

/**
 * Resolves once every microtask (and nextTick) queued so far, and every one those queue in turn,
 * has run: a macrotask boundary.
 */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export interface RunOptions {
  /** Give up after this many timers (a livelock). Default 1e6. */
  maxTimers?: number;
  /** Give up when virtual time would pass this. */
  until?: number;
}

export class Simulator {
  readonly clock: VirtualClock;
  readonly random: Random;

  constructor(opts: { seed?: number; start?: number; wallStart?: number } = {}) {
    this.clock = new VirtualClock({ start: opts.start, wallStart: opts.wallStart });
    this.random = new Random(opts.seed ?? 1);
  }

  now(): number {
    return this.clock.now();
  }

  /** A promise that resolves `ms` of virtual time from now. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.clock.setTimer(ms, resolve);
    });
  }

  settle(): Promise<void> {
    return settle();
  }

  /**
   * Run the simulation until `promise` settles; returns its value or throws its error. Throws if it
   * can never settle (no timers left) or if a limit is hit.
   */
  async run<T>(promise: Promise<T>, opts: RunOptions = {}): Promise<T> {
    const maxTimers = opts.maxTimers ?? 1_000_000;
    let state: 'pending' | 'ok' | 'failed' = 'pending';
    let value: T | undefined;
    let error: unknown;
    promise.then(
      (v) => { state = 'ok'; value = v; },
      (e: unknown) => { state = 'failed'; error = e; },
    );
    for (let fired = 0; ; fired++) {
      await settle();
      if (state !== 'pending') break;
      const next = this.clock.nextTimerAt();
      if (next === undefined) throw new Error(`Simulator.run: deadlock at t=${this.clock.now()}ms: the promise is pending and no timer is left`);
      if (opts.until !== undefined && next > opts.until) throw new Error(`Simulator.run: still pending at t=${opts.until}ms`);
      if (fired >= maxTimers) throw new Error(`Simulator.run: still pending after ${maxTimers} timers`);
      this.clock.fireNext();
    }
    if (state === 'failed') throw error;
    return value as T;
  }

  /** Let virtual time pass by `ms`, firing the timers due in it one at a time with microtasks drained between. */
  async advance(ms: number): Promise<void> {
    const target = this.clock.now() + ms;
    await settle();
    for (let next = this.clock.nextTimerAt(); next !== undefined && next <= target; next = this.clock.nextTimerAt()) {
      this.clock.fireNext();
      await settle();
    }
    this.clock.advanceTo(target);
  }

  /** Fire timers (settling between them) until none is left. */
  async runUntilIdle(maxTimers = 1_000_000): Promise<void> {
    await settle();
    for (let fired = 0; this.clock.fireNext(); fired++) {
      if (fired >= maxTimers) throw new Error(`Simulator.runUntilIdle: more than ${maxTimers} timers`);
      await settle();
    }
  }
}
