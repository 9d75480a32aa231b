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
 *   timeout, until a little before the deadline and then wakes the loop. How early: the wake-up's
 *   own latency (the futex timeout's timer slack, the thread switch, the hand-over to the loop:
 *   ~0.05-0.15 ms on an idle 2-core VM, more under load), learnt from every wake-up (a running
 *   estimate of its 90th percentile), so the loop spins for the wake-up's spread instead of a fixed
 *   millisecond: with several nodes of a topology on two cores, a millisecond of spin per WAN
 *   delivery was most of their CPU, and took it from the nodes doing the work. The waker thread
 *   asks for a 1 ns timer slack (prctl through koffi, when it loads) so its futex timeouts are not
 *   rounded up by the kernel's default 50 us; it is told of a new target at the end of the task
 *   that set it, and only when it is earlier than the one it sleeps for.
 * Between the spin's turns the loop naps (a futex sleep of at most napMs, 0.1 ms, ending just before
 * the deadline, with the thread's timer slack at 1 ns): a pure spin took a whole CPU for the lead
 * before every delivery, and with three nodes of a topology on two vCPUs each node's spinning took
 * the CPU the others needed for their own deliveries (the regional ack bench spent 30% of a core per
 * node spinning, and its relay-durable p50 was 0.7 ms better with naps in an A/B run). Only code
 * that asks for precision pays for it. `preciseClock` is the opt-in Clock; `systemClock` is unchanged.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Clock, Timer } from './clock.js';
import { TimerHeap, type HeapTimer } from './timer-heap.js';

export interface PreciseSchedulerStats {
  fired: number;
  /** Turns of the event loop spent waiting for a near deadline. */
  spins: number;
  /** Largest (fire time - deadline) seen, ms. */
  maxLateMs: number;
  /** Waker signals learnt from, and the running estimate of a quantile of their latency, ms. */
  wakes: number;
  wakeLatencyMs: number;
  /** Time spent spinning (turning the loop before a deadline), ms. */
  spinTimeMs: number;
  /** Futex sleeps between spin turns. */
  naps: number;
}

export type WakeMode = 'timeout' | 'worker';

export interface PreciseSchedulerOptions {
  /** Default `worker` (falls back to `timeout` when a worker thread cannot start). */
  wake?: WakeMode;
  /**
   * How long before a deadline the sleep hands over to spinning, ms. Default: learnt from the
   * waker's wake-ups (worker; at most 1 ms), 2 (timeout).
   */
  spinMs?: number;
  /** Longest futex sleep between two spin turns, ms (0: pure spinning). Default DEFAULT_NAP_MS. */
  napMs?: number;
}

/** See PreciseScheduler.nap(): I/O waits at most this for a turn while a deadline is near. */
export const DEFAULT_NAP_MS = 0.1;
/** A nap ends this long before the deadline; the rest is spun. */
const NAP_MARGIN_MS = 0.015;

/** This thread's timer slack to 1 ns (Linux, koffi): its futex and epoll timeouts are not rounded up by 50 us. */
function lowerTimerSlack(): void {
  const path = koffiPath();
  if (path === undefined) return;
  try {
    const koffi = createRequire(import.meta.url)(path) as { load(lib: string): { func(decl: string): (...a: number[]) => number } };
    koffi.load('libc.so.6').func('int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)')(29, 1, 0, 0, 0);
  } catch {
    // Without it naps end up to 50 us late, which the spin margin partly covers.
  }
}

/** The learnt spin lead of the worker mode stays within these, ms. */
const MIN_LEAD_MS = 0.02;
const MAX_LEAD_MS = 0.5;
/**
 * A wake-up later than this was a preemption or a busy loop (the signal waits for the task that
 * runs), which waking earlier would only turn into spinning: learnt as this much.
 */
const MAX_SAMPLE_MS = 0.5;
/**
 * Which quantile of the wake-up latency the lead follows: a wake-up earlier than the lead spins for
 * the difference, a later one fires late by it. A high one: timers fire on time (the WAN links'
 * delays are what the emulation is for), and the spin is the wake-up's spread, not a fixed
 * millisecond (on the regional ack bench the fixed millisecond cost each node 0.6-1 ms of CPU per
 * replicated write, taken from the nodes doing the work on a 2-core machine).
 */
const LEAD_QUANTILE = 0.9;
const QUANTILE_STEP_MS = 0.01;

/**
 * The waker thread: sleeps on a futex until the target time (ms since the epoch, high resolution),
 * wakes the loop, and waits for the next target. A target moved earlier bumps ctl[0] and notifies
 * it. The loop is woken through ctl[1], on which it has an Atomics.waitAsync pending (a V8 task, no
 * message serialisation; ~25 us sooner than a message on a 2-core VM), or with a message where
 * waitAsync is missing. First it asks for a 1 ns timer slack (PR_SET_TIMERSLACK, this thread only)
 * when koffi and libc load, then signals once that it runs (until then, which takes tens of ms, the
 * scheduler sleeps with setTimeout as in the timeout mode).
 */
const WAKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ctl = new Int32Array(workerData.sab, 0, 2);
const target = new Float64Array(workerData.sab, 8, 1);
if (workerData.koffi) {
  try {
    const koffi = require(workerData.koffi);
    const prctl = koffi.load('libc.so.6').func('int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)');
    prctl(29, 1, 0, 0, 0);
  } catch {}
}
// Ready: the first signal.
if (workerData.notify) {
  Atomics.add(ctl, 1, 1);
  Atomics.notify(ctl, 1);
} else {
  parentPort.postMessage(0);
}
for (;;) {
  const gen = Atomics.load(ctl, 0);
  const left = target[0] - (performance.timeOrigin + performance.now());
  if (left <= 0) {
    if (workerData.notify) {
      Atomics.add(ctl, 1, 1);
      Atomics.notify(ctl, 1);
    } else {
      parentPort.postMessage(0);
    }
    Atomics.wait(ctl, 0, gen);
  } else {
    Atomics.wait(ctl, 0, gen, left === Infinity ? undefined : left);
  }
}
`;

/** Where koffi is (the waker thread lowers its timer slack with it), if installed. */
function koffiPath(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    return createRequire(import.meta.url).resolve('koffi');
  } catch {
    return undefined;
  }
}

/** Atomics.waitAsync (ES2024; in Node since 16), typed here because the lib is ES2023. */
type WaitAsync = (ta: Int32Array, index: number, value: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync?: WaitAsync }).waitAsync?.bind(Atomics);

class Waker {
  private readonly worker: Worker;
  private readonly ctl: Int32Array;
  private readonly target: Float64Array;
  /** performance.now() time the waker is set for. */
  at = Number.POSITIVE_INFINITY;
  /** The thread runs (its first signal came): until then the scheduler does not rely on it. */
  ready = false;
  private refd = false;
  private dead = false;

  constructor(onWake: (ready: boolean) => void, onDead: () => void) {
    const sab = new SharedArrayBuffer(16);
    this.ctl = new Int32Array(sab, 0, 2);
    this.target = new Float64Array(sab, 8, 1);
    this.target[0] = Number.POSITIVE_INFINITY;
    const notify = waitAsync !== undefined;
    // No inherited execArgv: under --input-type=module (or a loader such as tsx) the eval'd
    // CommonJS would not run, and the scheduler would fall back to the timeout mode.
    this.worker = new Worker(WAKER_SOURCE, { eval: true, workerData: { sab, koffi: koffiPath(), notify }, execArgv: [] });
    if (notify) {
      const ctl = this.ctl;
      const listen = (): void => {
        const r = waitAsync!(ctl, 1, Atomics.load(ctl, 1));
        const woken = (): void => {
          if (this.dead) return;
          listen();
          this.signal(onWake);
        };
        if (r.async) void r.value.then(woken);
        else queueMicrotask(woken);
      };
      listen();
    } else {
      this.worker.on('message', () => this.signal(onWake));
    }
    // A waker that cannot run (thread limits...) must not take the process down nor strand the
    // timers: the scheduler goes on with setTimeout.
    this.worker.on('error', () => {});
    this.worker.on('exit', () => {
      this.dead = true;
      onDead();
    });
    this.worker.unref();
  }

  /** A signal from the thread: the first says it runs, every later one that a target was reached. */
  private signal(onWake: (ready: boolean) => void): void {
    const first = !this.ready;
    this.ready = true;
    onWake(first);
  }

  set(at: number): void {
    // The thread re-reads the target whenever it wakes: only an earlier one needs it woken now (a
    // futex wake is a context switch, and on a busy machine the thread it wakes may take this one's
    // CPU). None (Infinity) never does: at worst the thread wakes at the old target and goes back
    // to sleep. A target set after the last one was reached does: the thread sleeps with no timeout.
    const earlier = at !== Number.POSITIVE_INFINITY && (at < this.at || this.at <= performance.now());
    this.at = at;
    this.target[0] = at === Number.POSITIVE_INFINITY ? at : performance.timeOrigin + at;
    if (earlier) {
      Atomics.add(this.ctl, 0, 1);
      Atomics.notify(this.ctl, 0);
    }
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
  readonly stats: PreciseSchedulerStats = { fired: 0, spins: 0, maxLateMs: 0, wakes: 0, wakeLatencyMs: 0.1, spinTimeMs: 0, naps: 0 };
  /** Fixed spin lead (spinMs given, or the timeout mode's), else learnt. */
  private readonly fixedSpinMs: number | undefined;
  private readonly heap = new TimerHeap<HeapTimer>();
  private seq = 0;
  private live = 0;
  private coarse: NodeJS.Timeout | undefined;
  private coarseAt = Number.POSITIVE_INFINITY;
  private waker: Waker | undefined;
  private spinning = false;
  /** A waker target is to be set at the end of this task (setWaker queued). */
  private wakerDue = false;
  private wakerQueued = false;
  /** When the current spell of spinning began (-1: not spinning). */
  private spinFrom = -1;
  /** Longest sleep between spin turns (0: spin without sleeping), ms. */
  private readonly napMs: number;
  private readonly napCell = new Int32Array(new SharedArrayBuffer(4));

  constructor(opts: PreciseSchedulerOptions = {}) {
    let wake = opts.wake ?? 'worker';
    if (wake === 'worker') {
      try {
        this.waker = new Waker((ready) => this.woken(ready), () => this.fallBack());
      } catch {
        wake = 'timeout';
      }
    }
    this.mode = wake;
    this.fixedSpinMs = opts.spinMs;
    this.napMs = opts.napMs ?? DEFAULT_NAP_MS;
    if (this.napMs > 0) lowerTimerSlack();
  }

  /** How long before a deadline the sleep hands over to spinning now, ms. */
  get spinMs(): number {
    if (this.fixedSpinMs !== undefined) return this.fixedSpinMs;
    if (this.waker === undefined || !this.waker.ready) return 2;
    return Math.min(MAX_LEAD_MS, Math.max(MIN_LEAD_MS, this.stats.wakeLatencyMs));
  }

  private fallBack(): void {
    this.waker = undefined;
    this.mode = 'timeout';
    this.arm();
  }

  /** The waker's signal: learn how late it came (relative to the time it was set for), then arm. */
  private woken(ready: boolean): void {
    const w = this.waker;
    if (!ready && w !== undefined && w.at !== Number.POSITIVE_INFINITY) {
      const late = Math.min(MAX_SAMPLE_MS, performance.now() - w.at);
      if (late >= 0) {
        // Stochastic approximation of the LEAD_QUANTILE quantile: it settles where that share of
        // the samples is below it.
        const s = this.stats;
        s.wakes++;
        s.wakeLatencyMs += QUANTILE_STEP_MS * (late > s.wakeLatencyMs ? LEAD_QUANTILE : LEAD_QUANTILE - 1);
      }
    }
    this.arm();
  }

  /** Run `fn` once when performance.now() reaches `due`. */
  at(due: number, fn: () => void): Timer {
    if (Number.isNaN(due)) throw new RangeError('PreciseScheduler.at: due is NaN');
    const e: HeapTimer = { due, seq: this.seq++, fn };
    this.heap.push(e);
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
    this.heap.dropCancelled();
    const head = this.heap.peek();
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
    if (this.waker !== undefined && this.waker.ready) {
      if (wakeAt <= now) {
        this.startSpin(now);
      } else if (this.waker.at > wakeAt || this.waker.at <= now) {
        // Not set, set too late, or its wake-up already spent: set it for this deadline, at the end
        // of this task (one set for all the timers it makes; and the thread it may wake does not
        // preempt the rest of the task: on a busy machine a woken thread often takes the CPU).
        this.wakerDue = true;
        if (!this.wakerQueued) {
          this.wakerQueued = true;
          queueMicrotask(this.setWaker);
        }
      }
      return;
    }
    if (wakeAt - now < 1) {
      this.startSpin(now);
      return;
    }
    // A coarse timer already set to wake us in time stays; a later one is replaced.
    if (this.coarse !== undefined && this.coarseAt <= wakeAt) return;
    if (this.coarse !== undefined) clearTimeout(this.coarse);
    const ms = Math.floor(wakeAt - now);
    this.coarseAt = now + ms;
    this.coarse = setTimeout(this.wake, ms);
  }

  private readonly setWaker = (): void => {
    this.wakerQueued = false;
    if (!this.wakerDue) return;
    this.wakerDue = false;
    const w = this.waker;
    this.heap.dropCancelled();
    const head = this.heap.peek();
    if (w === undefined || !w.ready || head === undefined || this.spinning) return;
    const wakeAt = head.due - this.spinMs;
    const now = performance.now();
    if (wakeAt <= now) this.startSpin(now);
    else if (w.at > wakeAt || w.at <= now) w.set(wakeAt);
  };

  private readonly wake = (): void => {
    this.coarse = undefined;
    this.coarseAt = Number.POSITIVE_INFINITY;
    this.arm();
  };

  private startSpin(now: number): void {
    this.spinning = true;
    if (this.spinFrom < 0) this.spinFrom = now;
    setImmediate(this.spin);
  }

  private readonly spin = (): void => {
    this.spinning = false;
    this.stats.spins++;
    let error: unknown;
    let failed = false;
    const now = performance.now();
    const due: HeapTimer[] = [];
    for (;;) {
      this.heap.dropCancelled();
      const head = this.heap.peek();
      if (head === undefined || head.due > now) break;
      due.push(this.heap.pop()!);
    }
    if (due.length > 0 || this.heap.size === 0) {
      if (this.spinFrom >= 0) this.stats.spinTimeMs += now - this.spinFrom;
      this.spinFrom = -1;
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
    if (this.spinning && this.napMs > 0) this.nap();
    if (failed) throw error;
  };

  /**
   * Between two spin turns, sleep on a futex until just before the head deadline, at most napMs:
   * a spinning loop takes a whole CPU, and on a small machine that CPU is the one the other
   * processes (the peers of a topology, each with deliveries of its own) need. A sleep this short
   * is woken quickly (the thread's timer slack is 1 ns, see the constructor; on a VM the host
   * polls a vCPU that halts for so short a while), and I/O waits at most napMs for the next turn.
   */
  private nap(): void {
    this.heap.dropCancelled();
    const head = this.heap.peek();
    if (head === undefined) return;
    const left = head.due - performance.now() - NAP_MARGIN_MS;
    if (left <= 0) return;
    this.stats.naps++;
    Atomics.wait(this.napCell, 0, 0, Math.min(left, this.napMs));
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
