/**
 * The IO scheduler (seed [0063]-[0065]): ONE per storage unit, feeding one medium control unit per
 * recording medium [0052]. It records the processing the sequencer registers and, whenever a
 * medium has a free slot (its dispatch depth; 1 is the seed's literal one-at-a-time behaviour),
 * takes the next one for that medium by the unit's policy:
 *   - 'fifo': order of registration;
 *   - 'sstf': shortest seek from the medium's current head position (the end of the last
 *     dispatched IO), ties to the earliest registered — bounded: an IO that has waited `ageLimit`
 *     picks goes next, so nothing starves.
 *
 * Whatever the policy, these orderings hold on each medium (registration order = the order
 * register() was called), which is what makes a volume behave like one disk:
 *   1. Overlapping IOs, at least one of them a write or discard, run in registration order, and
 *      the later is not dispatched until the earlier COMPLETED (a device may reorder outstanding
 *      commands; mirrors must not diverge; a read sees exactly the writes registered before it).
 *      Overlapping reads are not ordered.
 *   2. A flush is a barrier: it is dispatched only once every write and discard registered before
 *      it completed, and no write, discard registered after it is dispatched before it.
 *      Reads pass flushes. (Writes registered after a flush may be dispatched while it is in
 *      flight: a device flush covers at least what completed before it, more is harmless.)
 * Each IO counts the earlier ones it waits for (`blockers`) when registered; the dependencies are
 * released by walking the later IOs when the earlier one completes (or, for a flush, is
 * dispatched). Walks are linear in the medium's outstanding IOs, bounded by the host queue depth.
 */
import assert from 'node:assert';
import type { BlockDevice } from '../hal/block-device.js';
import { nullLogger, type Logger } from '../hal/types.js';
import { IO_DISPATCHED, IO_FREE, IO_PENDING, IoRequest } from './io-request.js';
import { MediumControl, type MediumReport } from './medium-control.js';
import type { MediumError } from './volume.js';

export type SchedulerPolicy = 'fifo' | 'sstf';

export interface IoSchedulerOptions {
  media: readonly BlockDevice[];
  blockSize: number;
  policy: SchedulerPolicy;
  /** IOs outstanding on one medium at once (a drive's tagged queue). Default 32. */
  depth?: number;
  /** SSTF: an IO that has waited this many picks on its medium goes next. Default 64. */
  ageLimit?: number;
  logger?: Logger;
}

export interface MediumStats {
  name: string;
  /** Registered, not yet dispatched. */
  pending: number;
  inFlight: number;
  maxInFlight: number;
  dispatched: number;
  errors: number;
  /** Current head position (byte offset). */
  head: number;
}

class MediumQueue {
  firstActive: IoRequest | null = null;
  lastActive: IoRequest | null = null;
  firstPending: IoRequest | null = null;
  lastPending: IoRequest | null = null;
  pending = 0;
  inFlight = 0;
  maxInFlight = 0;
  head = 0;
  picks = 0;

  constructor(readonly control: MediumControl) {}
}

/** `later` must not be dispatched before `earlier` completed. */
function waitsForCompletion(earlier: IoRequest, later: IoRequest): boolean {
  const e = earlier.type;
  const l = later.type;
  if (l === 'flush') return e === 'write' || e === 'discard';
  if (e === 'flush') return false;
  if (e === 'read' && l === 'read') return false;
  return earlier.offset < later.offset + later.length && later.offset < earlier.offset + earlier.length;
}

/** `later` must not be dispatched before `earlier` (a flush) was dispatched. */
function waitsForDispatch(earlier: IoRequest, later: IoRequest): boolean {
  return earlier.type === 'flush' && (later.type === 'write' || later.type === 'discard');
}

export class IoScheduler implements MediumReport {
  readonly policy: SchedulerPolicy;
  readonly depth: number;
  readonly ageLimit: number;
  private readonly queues: MediumQueue[];
  private readonly pool: IoRequest[] = [];
  private outstanding = 0;
  private registeredCount = 0;
  private pumping = false;

  constructor(opts: IoSchedulerOptions) {
    assert(opts.media.length > 0, 'IO scheduler: no media');
    this.policy = opts.policy;
    this.depth = opts.depth ?? 32;
    this.ageLimit = opts.ageLimit ?? 64;
    assert(opts.policy === 'fifo' || opts.policy === 'sstf', `IO scheduler: unknown policy ${String(opts.policy)}`);
    assert(Number.isInteger(this.depth) && this.depth >= 1, `IO scheduler: depth must be an integer >= 1, got ${this.depth}`);
    assert(Number.isInteger(this.ageLimit) && this.ageLimit >= 1, `IO scheduler: ageLimit must be an integer >= 1`);
    const logger = opts.logger ?? nullLogger;
    this.queues = opts.media.map((d, i) => new MediumQueue(new MediumControl(i, d, opts.blockSize, this, logger)));
  }

  get mediaCount(): number {
    return this.queues.length;
  }

  /** IOs registered and not yet completed, on all media. */
  get active(): number {
    return this.outstanding;
  }

  /** IOs ever registered (tests use it to see whether a command registered synchronously). */
  get registered(): number {
    return this.registeredCount;
  }

  /** Outstanding IOs (pending + in flight) on one medium: the mirror's least-queued choice. */
  load(medium: number): number {
    const q = this.queues[medium]!;
    return q.pending + q.inFlight;
  }

  /** A blank record to fill and register. */
  acquire(): IoRequest {
    const io = this.pool.pop() ?? new IoRequest();
    assert(io.state === IO_FREE, 'IO scheduler: pooled record not free');
    return io;
  }

  /** Record a processing [0063]; it is dispatched when its medium has a slot and its turn came. */
  register(io: IoRequest): void {
    assert(io.state === IO_FREE, 'IO scheduler: record registered twice');
    assert(io.owner !== null, 'IO scheduler: record without owner');
    const q = this.queues[io.medium];
    assert(q !== undefined, `IO scheduler: no medium ${io.medium}`);
    if (io.type === 'read' || io.type === 'write') {
      assert(io.area !== null && io.area.length === io.length, 'IO scheduler: buffer area does not match the medium area');
    }
    assert(io.type === 'flush' || io.length > 0, 'IO scheduler: empty medium area');

    let blockers = 0;
    for (let e = q.firstActive; e !== null; e = e.nextActive) {
      if (waitsForCompletion(e, io)) blockers++;
      if (e.state === IO_PENDING && waitsForDispatch(e, io)) blockers++;
    }
    io.blockers = blockers;
    io.state = IO_PENDING;
    io.bornPick = q.picks;

    io.prevActive = q.lastActive;
    io.nextActive = null;
    if (q.lastActive) q.lastActive.nextActive = io;
    else q.firstActive = io;
    q.lastActive = io;

    io.prevPending = q.lastPending;
    io.nextPending = null;
    if (q.lastPending) q.lastPending.nextPending = io;
    else q.firstPending = io;
    q.lastPending = io;
    q.pending++;

    this.outstanding++;
    this.registeredCount++;
    this.pump(q);
  }

  /** @internal The medium control unit finished `io` [0065]. */
  mediumDone(io: IoRequest, error: MediumError | null): void {
    assert(io.state === IO_DISPATCHED, 'IO scheduler: completion of an IO not in flight');
    const q = this.queues[io.medium]!;
    q.inFlight--;
    this.outstanding--;
    for (let l = io.nextActive; l !== null; l = l.nextActive) {
      if (waitsForCompletion(io, l)) {
        assert(l.blockers > 0, 'IO scheduler: dependency released twice');
        l.blockers--;
      }
    }
    this.unlinkActive(q, io);
    // Keep the medium busy before telling the owner (who may answer with more IO).
    this.pump(q);
    const owner = io.owner!;
    try {
      owner.ioDone(io, error);
    } finally {
      this.recycle(io);
    }
  }

  stats(): MediumStats[] {
    return this.queues.map((q) => ({
      name: q.control.device.name,
      pending: q.pending,
      inFlight: q.inFlight,
      maxInFlight: q.maxInFlight,
      dispatched: q.picks,
      errors: q.control.errors,
      head: q.head,
    }));
  }

  private pump(q: MediumQueue): void {
    // Completions are asynchronous (device promises), so pump never re-enters; assert it.
    assert(!this.pumping, 'IO scheduler: re-entrant dispatch');
    this.pumping = true;
    try {
      while (q.inFlight < this.depth && q.pending > 0) {
        const io = this.pick(q);
        if (io === null) break;
        this.dispatch(q, io);
      }
    } finally {
      this.pumping = false;
    }
  }

  private pick(q: MediumQueue): IoRequest | null {
    let best: IoRequest | null = null;
    let bestDistance = Infinity;
    for (let io = q.firstPending; io !== null; io = io.nextPending) {
      if (io.blockers > 0) continue;
      if (best === null) {
        // The earliest eligible: FIFO's answer, and SSTF's when it has waited too long.
        if (this.policy === 'fifo' || q.picks - io.bornPick >= this.ageLimit) return io;
      }
      const distance = io.type === 'flush' ? 0 : Math.abs(io.offset - q.head);
      if (distance < bestDistance) {
        best = io;
        bestDistance = distance;
        if (distance === 0) break;
      }
    }
    return best;
  }

  private dispatch(q: MediumQueue, io: IoRequest): void {
    assert(io.blockers === 0, 'IO scheduler: dispatching a blocked IO');
    if (io.prevPending) io.prevPending.nextPending = io.nextPending;
    else q.firstPending = io.nextPending;
    if (io.nextPending) io.nextPending.prevPending = io.prevPending;
    else q.lastPending = io.prevPending;
    io.prevPending = io.nextPending = null;
    q.pending--;

    io.state = IO_DISPATCHED;
    q.picks++;
    q.inFlight++;
    if (q.inFlight > q.maxInFlight) q.maxInFlight = q.inFlight;
    if (io.type === 'flush') {
      for (let l = io.nextActive; l !== null; l = l.nextActive) {
        if (waitsForDispatch(io, l)) {
          assert(l.blockers > 0 && l.state === IO_PENDING, 'IO scheduler: barrier released twice');
          l.blockers--;
        }
      }
    } else {
      q.head = io.offset + io.length;
    }
    q.control.execute(io);
  }

  private unlinkActive(q: MediumQueue, io: IoRequest): void {
    if (io.prevActive) io.prevActive.nextActive = io.nextActive;
    else q.firstActive = io.nextActive;
    if (io.nextActive) io.nextActive.prevActive = io.prevActive;
    else q.lastActive = io.prevActive;
    io.prevActive = io.nextActive = null;
  }

  private recycle(io: IoRequest): void {
    io.state = IO_FREE;
    io.area = null;
    io.owner = null;
    io.fua = false;
    io.blockers = 0;
    this.pool.push(io);
  }
}
