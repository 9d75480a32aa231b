/**
 * Sub-millisecond timers for the real HAL. Node's setTimeout counts whole milliseconds from the
 * loop's cached time, so it fires up to a millisecond (more under load) late, and early relative to
 * performance.now() when the current turn ran long. A WAN link of 1 ms one way cannot be emulated
 * on that. This scheduler sleeps until a little before the earliest deadline, then turns the event
 * loop with setImmediate (I/O is still polled every turn) and fires each timer on the first turn at
 * which performance.now() has reached its deadline; every timer due by then fires in that turn, in
 * deadline order (ties in creation order).
 *
 * Two ways to sleep until the spin:
 * - `timeout`: setTimeout until `spinMs` (2 ms) before the deadline. Simple, but the spin is long,
 *   and on a loaded machine a process that spins is the one the kernel preempts.
 * - `worker` (default): a worker thread blocks in Atomics.wait, a futex wait with a high-resolution
 *   timeout, until `spinMs` (1 ms) before the deadline and then wakes the loop with a message.
 *   The spin is short, so the process mostly sleeps and keeps the scheduler's favour.
 * The spin costs CPU while a deadline is near, which is the point: only code that asks for
 * precision pays for it. `preciseClock` is the opt-in Clock; `systemClock` is unchanged.
 */
import { Worker } from 'node:worker_threads';
import type { Clock, Timer } from './clock.js';

interface Entry {
  due: number;
  seq: number;
  fn: (() => void) | null;
}

function before(x: Entry, y: Entry): boolean {
  return x.due < y.due || (x.due === y.due && x.seq < y.seq);
}

export interface PreciseSchedulerStats {
  fired: number;
  /** Turns of the event loop spent waiting for a near deadline. */
  spins: number;
  /** Largest (fire time - deadline) seen, ms. */
  maxLateMs: number;
}

export type WakeMode = 'timeout' | 'worker';

export interface PreciseSchedulerOptions {
  /** Default `worker` (falls back to `timeout` when a worker thread cannot start). */
  wake?: WakeMode;
  /** How long before a deadline the sleep hands over to spinning, ms. Default 1 (worker), 2 (timeout). */
  spinMs?: number;
}

/**
 * The waker thread: sleeps on a futex until the target time (ms since the epoch, high resolution),
 * posts, and waits for the next target. A changed target bumps ctl[0] and notifies it.
 */
const WAKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ctl = new Int32Array(workerData, 0, 1);
const target = new Float64Array(workerData, 8, 1);
for (;;) {
  const gen = Atomics.load(ctl, 0);
  const left = target[0] - (performance.timeOrigin + performance.now());
  if (left <= 0) {
    parentPort.postMessage(0);
    Atomics.wait(ctl, 0, gen);
  } else {
    Atomics.wait(ctl, 0, gen, left === Infinity ? undefined : left);
  }
}
`;

class Waker {
  private readonly worker: Worker;
  private readonly ctl: Int32Array;
  private readonly target: Float64Array;
  /** performance.now() time the waker is set for. */
  at = Number.POSITIVE_INFINITY;
  private refd = false;

  constructor(onWake: () => void, onDead: () => void) {
    const sab = new SharedArrayBuffer(16);
    this.ctl = new Int32Array(sab, 0, 1);
    this.target = new Float64Array(sab, 8, 1);
    this.target[0] = Number.POSITIVE_INFINITY;
    this.worker = new Worker(WAKER_SOURCE, { eval: true, workerData: sab });
    this.worker.on('message', onWake);
    // A waker that cannot run (thread limits...) must not take the process down nor strand the
    // timers: the scheduler goes on with setTimeout.
    this.worker.on('error', () => {});
    this.worker.on('exit', onDead);
    this.worker.unref();
  }

  set(at: number): void {
    this.at = at;
    this.target[0] = at === Number.POSITIVE_INFINITY ? at : performance.timeOrigin + at;
    Atomics.add(this.ctl, 0, 1);
    Atomics.notify(this.ctl, 0);
    // Armed, it keeps the process alive as a pending setTimeout would.
    const ref = at !== Number.POSITIVE_INFINITY;
    if (ref !== this.refd) {
      this.refd = ref;
      if (ref) this.worker.ref();
      else this.worker.unref();
    }
  }
}

export class PreciseScheduler {
  /** `worker` unless the waker thread could not start or died. */
  mode: WakeMode;
  /** How long before a deadline the sleep hands over to spinning, ms. */
  readonly spinMs: number;
  readonly stats: PreciseSchedulerStats = { fired: 0, spins: 0, maxLateMs: 0 };
  private readonly heap: Entry[] = [];
  private seq = 0;
  private live = 0;
  private coarse: NodeJS.Timeout | undefined;
  private coarseAt = Number.POSITIVE_INFINITY;
  private waker: Waker | undefined;
  private spinning = false;

  constructor(opts: PreciseSchedulerOptions = {}) {
    let wake = opts.wake ?? 'worker';
    if (wake === 'worker') {
      try {
        this.waker = new Waker(() => this.arm(), () => this.fallBack());
      } catch {
        wake = 'timeout';
      }
    }
    this.mode = wake;
    this.spinMs = opts.spinMs ?? (wake === 'worker' ? 1 : 2);
  }

  private fallBack(): void {
    this.waker = undefined;
    this.mode = 'timeout';
    this.arm();
  }

  /** Run `fn` once when performance.now() reaches `due`. */
  at(due: number, fn: () => void): Timer {
    if (Number.isNaN(due)) throw new RangeError('PreciseScheduler.at: due is NaN');
    const e: Entry = { due, seq: this.seq++, fn };
    this.push(e);
    this.live++;
    this.arm();
    return {
      cancel: () => {
        if (e.fn === null) return;
        e.fn = null;
        this.live--;
        // A cancelled head would keep the loop spinning for nothing: look again.
        if (this.live === 0) this.arm();
      },
    };
  }

  /** Run `fn` once `ms` from now. */
  after(ms: number, fn: () => void): Timer {
    return this.at(performance.now() + Math.max(0, ms), fn);
  }

  /** Timers neither fired nor cancelled. */
  get pending(): number {
    return this.live;
  }

  private arm(): void {
    this.dropCancelled();
    const head = this.heap[0];
    if (head === undefined) {
      if (this.coarse !== undefined) {
        clearTimeout(this.coarse);
        this.coarse = undefined;
        this.coarseAt = Number.POSITIVE_INFINITY;
      }
      if (this.waker !== undefined && this.waker.at !== Number.POSITIVE_INFINITY) this.waker.set(Number.POSITIVE_INFINITY);
      return;
    }
    if (this.spinning) return;
    const wakeAt = head.due - this.spinMs;
    const now = performance.now();
    if (this.waker !== undefined) {
      if (wakeAt <= now) {
        this.spinning = true;
        setImmediate(this.spin);
      } else if (this.waker.at > wakeAt || this.waker.at <= now) {
        // Not set, set too late, or its wake-up already spent: set it for this deadline.
        this.waker.set(wakeAt);
      }
      return;
    }
    if (wakeAt - now < 1) {
      this.spinning = true;
      setImmediate(this.spin);
      return;
    }
    // A coarse timer already set to wake us in time stays; a later one is replaced.
    if (this.coarse !== undefined && this.coarseAt <= wakeAt) return;
    if (this.coarse !== undefined) clearTimeout(this.coarse);
    const ms = Math.floor(wakeAt - now);
    this.coarseAt = now + ms;
    this.coarse = setTimeout(this.wake, ms);
  }

  private readonly wake = (): void => {
    this.coarse = undefined;
    this.coarseAt = Number.POSITIVE_INFINITY;
    this.arm();
  };

  private readonly spin = (): void => {
    this.spinning = false;
    this.stats.spins++;
    let error: unknown;
    let failed = false;
    const now = performance.now();
    const due: Entry[] = [];
    for (;;) {
      this.dropCancelled();
      const head = this.heap[0];
      if (head === undefined || head.due > now) break;
      due.push(this.pop()!);
    }
    for (const e of due) {
      // An earlier callback of this batch may have cancelled a later one.
      const fn = e.fn;
      if (fn === null) continue;
      e.fn = null;
      this.live--;
      this.stats.fired++;
      const late = now - e.due;
      if (late > this.stats.maxLateMs) this.stats.maxLateMs = late;
      try {
        fn();
      } catch (err) {
        // Like a throwing setTimeout callback: fatal, but only after the rest of the batch and the
        // next wake-up are in place.
        if (!failed) error = err;
        failed = true;
      }
    }
    this.arm();
    if (failed) throw error;
  };

  private dropCancelled(): void {
    while (this.heap.length > 0 && this.heap[0]!.fn === null) this.pop();
  }

  private push(e: Entry): void {
    const h = this.heap;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(e, h[parent]!)) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = e;
  }

  private pop(): Entry | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const child = r < h.length && before(h[r]!, h[l]!) ? r : l;
        if (!before(h[child]!, last)) break;
        h[i] = h[child]!;
        i = child;
      }
      h[i] = last;
    }
    return top;
  }
}

let shared: PreciseScheduler | undefined;

/**
 * The process's precise scheduler (one heap, so deliveries due together fire in one turn), made on
 * first use: importing this module starts no thread.
 */
export function preciseScheduler(): PreciseScheduler {
  return (shared ??= new PreciseScheduler());
}

/**
 * systemClock with sub-millisecond timers (for WAN emulation and anything else that needs them).
 * Like systemClock's, its timers keep the process alive while armed.
 */
export const preciseClock: Clock = {
  now: () => performance.now(),
  wallTime: () => Date.now(),
  setTimer: (ms: number, fn: () => void): Timer => preciseScheduler().after(ms, fn),
};
