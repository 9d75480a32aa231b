/**
 * The secondary storage unit's side of replication (seed 000-E1 step 3, 000-E4 [0109]-[0113]):
 * writes arrive from relays or straight from the primary, in any order, possibly several times
 * (same data to all relays; a relay sending again after its restart), possibly in portions (a
 * cut-through relay forwards while the data is still arriving). This unit applies each volume's
 * stream in sequence order and each identifier once, so the volume is always a prefix of the
 * primary's write history.
 *
 * Answers: 'received' as soon as the write is in this unit's buffer memory; 'durable' once the
 * write and everything before it are applied, the medium flushed, and the applied watermark
 * persisted (group-committed: one flush and one watermark write cover every write done by then).
 * A relay releases its journal record only on 'durable', and it is never answered for a sequence
 * above the persisted watermark, so after a crash of this unit everything above the watermark is
 * still held by a relay and arrives again, to be applied again in order. Writes only asked
 * 'received' (the primary's direct sends in the received ack modes) are checkpointed too, within
 * CHECKPOINT_MS or every CHECKPOINT_BYTES: what a crash of this unit loses of them is then a short
 * tail, which the primary still holds copies of and sends again when the link comes back.
 *
 * Generations: a write of a newer generation (the primary restarted after a crash) ends the old
 * one: what waited behind a gap is dropped, stragglers of the old generation are answered and
 * ignored (the primary resynchronises the whole volume).
 */
import assert from 'node:assert';
import { nullLogger, type Logger } from '../../hal/types.js';
import type { Durability, InboundWrite } from '../peer/inbound-write.js';
import type { PeerHandler } from '../peer/link-types.js';
import { WriteRefusal } from '../peer/errors.js';
import { ErrorCode } from '../peer/frame.js';
import type { ControllerVolume } from '../communication-unit.js';
import type { Clock, Timer } from '../../hal/clock.js';
import { generationOf, issueOf, sequenceOf, type ReplicationStatus } from './types.js';

/** A gap this old is no reordering between paths: something lost the write (status and log say so). */
export const STUCK_GAP_MS = 10_000;

/**
 * Applied writes nobody asked 'durable' for are made durable (flush and watermark) at least this
 * often and every this many bytes: it bounds what a crash of this unit loses to what the primary
 * keeps copies of (mirroring.ts, retainBytes: 64 MiB by default).
 */
export const CHECKPOINT_MS = 100;
export const CHECKPOINT_BYTES = 8 * 2 ** 20;

/** What the secondary persists per volume (the applied watermark). */
export interface AppliedState {
  sourceUnit: number;
  generation: number;
  /** Every sequence <= this is applied and durable. */
  sequence: number;
  /**
   * kura promote made this copy the volume's primary copy: it takes no replicated writes any more,
   * after a restart too (a restart that forgot it made the new primary read-only again, and would
   * have applied the old primary's stream over the hosts' writes).
   */
  promoted?: true;
}

export interface SecondaryVolume {
  /** Volume number on the wire. */
  index: number;
  /** The write path (not the read-only face the hosts see). */
  volume: ControllerVolume;
  state: AppliedState | undefined;
}

export interface SecondaryOptions {
  logger?: Logger;
  volumes: readonly SecondaryVolume[];
  /** Make the watermark durable (a state file on the real HAL). */
  persist(index: number, state: AppliedState): Promise<void>;
  /** Bytes held behind a gap per volume before further writes are refused (default 256 MiB). */
  maxWaitingBytes?: number;
  /** Times how long the next sequence has been missing (status); none: not timed. */
  clock?: Clock;
}

interface Waiting {
  seq: number;
  lba: number;
  blocks: number;
  data: Buffer;
  /** The link's buffer itself, retained (no gap below it): give it back once copied to the medium's area. */
  release?: () => void;
}

/** A write arriving in portions: assembled before it joins the stream. */
interface Assembly {
  data: Buffer;
  /** Byte ranges arrived, [start, end), sorted and disjoint (a portion may arrive twice). */
  ranges: Array<[number, number]>;
  have: number;
  /** A portion asked 'durable': the whole write is taken in asking it. */
  durable: boolean;
  done: Promise<Durability>;
  complete: (d: Promise<Durability>) => void;
}

/** Add [start, end) to sorted disjoint ranges; returns how many of its bytes were not there yet. */
function cover(ranges: Array<[number, number]>, start: number, end: number): number {
  let added = end - start;
  let lo = start;
  let hi = end;
  const keep: Array<[number, number]> = [];
  for (const r of ranges) {
    if (r[1] < start || r[0] > end) {
      keep.push(r);
      continue;
    }
    added -= Math.max(0, Math.min(r[1], end) - Math.max(r[0], start));
    lo = Math.min(lo, r[0]);
    hi = Math.max(hi, r[1]);
  }
  keep.push([lo, hi]);
  keep.sort((x, y) => x[0] - y[0]);
  ranges.splice(0, ranges.length, ...keep);
  return added;
}

class Stream {
  sourceUnit: number;
  generation: number;
  /** Registered with the IO scheduler (in order). */
  applied: number;
  /** Every sequence <= this has its medium write completed. */
  committed: number;
  /** Every sequence <= this is durable and the watermark says so. */
  durable: number;
  readonly waiting = new Map<number, Waiting>();
  waitingBytes = 0;
  /** Writes wait and the next sequence is not among them: which one, since when (clock time), logged as stuck. */
  gap: { sequence: number; since: number; logged: boolean } | undefined;
  /** Medium writes registered and not completed, by issue (generation and sequence). */
  readonly inFlight = new Set<number>();
  readonly durableWaiters: Array<{ seq: number; resolve: (d: Durability) => void; reject: (e: Error) => void }> = [];
  readonly assemblies = new Map<number, Assembly>();
  applying = false;
  grouping = false;
  /** appliedBytes when the last group commit started; the checkpoint timer while one is due. */
  groupedBytes = 0;
  checkpoint: Timer | undefined;
  promoted = false;
  appliedBytes = 0;
  received = 0;
  duplicates = 0;
  stale = 0;
  failure: Error | null = null;
  /** When the failure happened (clock time), and when one was last logged. */
  failedAt = 0;
  failureLoggedAt = -Infinity;
  /** promote() waiting for the writes in progress. */
  readonly idleWaiters: Array<() => void> = [];

  settle(): void {
    if (this.applying || this.inFlight.size > 0 || this.grouping) return;
    for (const r of this.idleWaiters.splice(0)) r();
  }

  constructor(readonly v: SecondaryVolume) {
    const s = v.state;
    this.sourceUnit = s?.sourceUnit ?? 0;
    this.generation = s?.generation ?? 0;
    this.applied = this.committed = this.durable = s?.sequence ?? 0;
    this.promoted = s?.promoted === true;
  }
}

/** A stream stopped by a failure is tried again after this, ms; its failure is logged at most this often. */
const RETRY_AFTER_FAILURE_MS = 1000;
const FAILURE_LOG_EVERY_MS = 60_000;

export class SecondaryUnit {
  readonly handler: PeerHandler;
  private readonly log: Logger;
  private readonly streams = new Map<number, Stream>();
  private readonly maxWaitingBytes: number;
  private readonly clock: Clock | undefined;
  private closed = false;

  constructor(private readonly o: SecondaryOptions) {
    this.log = (o.logger ?? nullLogger).child({ module: 'secondary' });
    this.maxWaitingBytes = o.maxWaitingBytes ?? 256 * 2 ** 20;
    this.clock = o.clock;
    for (const v of o.volumes) this.streams.set(v.index, new Stream(v));
    this.handler = { onWrite: (w) => this.onWrite(w) };
  }

  /** Whether `index` was promoted (kura promote), in this run or before a restart. */
  isPromoted(index: number): boolean {
    return this.stream(index).promoted;
  }

  private persisted(s: Stream, sequence: number): AppliedState {
    return { sourceUnit: s.sourceUnit, generation: s.generation, sequence, ...(s.promoted ? { promoted: true as const } : {}) };
  }

  /** Stop applying the stream of `index`: it becomes the volume's new primary copy (kura promote). */
  async promote(index: number): Promise<{ sequence: number; dropped: number }> {
    const s = this.stream(index);
    s.promoted = true;
    s.checkpoint?.cancel();
    s.checkpoint = undefined;
    const dropped = s.waiting.size;
    this.drop(s);
    while (s.applying || s.inFlight.size > 0 || s.grouping) await new Promise<void>((r) => s.idleWaiters.push(r));
    await s.v.volume.flush();
    // Durable before it counts: a promotion that a crash could undo would give the volume two fates.
    await this.o.persist(s.v.index, this.persisted(s, s.committed));
    s.durable = s.committed;
    this.log.info({ volume: s.v.volume.name, sequence: s.applied, dropped }, 'promoted: no longer applying replicated writes');
    return { sequence: s.applied, dropped };
  }

  /**
   * A clean stop (links closed first): make what was applied durable and say so in the watermarks,
   * so that a restart is not sent again what it already holds; no checkpoint fires after this.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.streams.values()) {
      s.checkpoint?.cancel();
      s.checkpoint = undefined;
      while (s.applying || s.inFlight.size > 0 || s.grouping) await new Promise<void>((r) => s.idleWaiters.push(r));
      if (s.committed > s.durable && s.failure === null) {
        await s.v.volume.flush();
        await this.o.persist(s.v.index, this.persisted(s, s.committed));
        s.durable = s.committed;
      }
    }
  }

  status(index: number): ReplicationStatus {
    const s = this.stream(index);
    return {
      volume: s.v.volume.name, role: 'secondary', ackMode: 'local', generation: s.generation, sequence: s.applied,
      lagWrites: 0, lagBytes: 0, pendingAck: 0, peers: [], waiting: s.waiting.size, writable: s.promoted,
      appliedBytes: s.appliedBytes,
      ...(s.gap !== undefined ? { missing: { sequence: s.gap.sequence, forMs: this.clock!.now() - s.gap.since } } : {}),
      ...(s.failure !== null ? { failure: s.failure.message } : {}),
    };
  }

  counters(index: number): { received: number; duplicates: number; stale: number; durable: number } {
    const s = this.stream(index);
    return { received: s.received, duplicates: s.duplicates, stale: s.stale, durable: s.durable };
  }

  private stream(index: number): Stream {
    const s = this.streams.get(index);
    if (s === undefined) throw new Error(`no replicated volume ${index} here`);
    return s;
  }

  private onWrite(w: InboundWrite): Promise<Durability> | Durability {
    const s = this.streams.get(w.volume);
    if (s === undefined) throw new Error(`this secondary holds no volume ${w.volume}`);
    if (s.promoted) throw new WriteRefusal(ErrorCode.VOLUME_PROMOTED, `volume ${s.v.volume.name} was promoted: it no longer takes replicated writes`);
    if (s.failure !== null && !this.retry(s)) throw s.failure;
    const bs = s.v.volume.blockSize;
    if (w.lba + w.blocks > s.v.volume.blockCount || w.totalLength !== w.blocks * bs) {
      throw new RangeError(`write #${w.id.issue}: ${w.blocks} blocks at LBA ${w.lba} (${w.totalLength} bytes) does not fit volume ${s.v.volume.name}`);
    }
    if (w.totalLength === w.length) return this.accept(s, w, w.data, w.ack);
    return this.portion(s, w);
  }

  /** A portion of a write: copy it into the assembly; the last one lets the write in. */
  private portion(s: Stream, w: InboundWrite): Promise<Durability> {
    // A portion of a write the stream has already (applied, waiting, or of an older generation):
    // answered as the whole write is, without assembling it again.
    const gen = generationOf(w.id);
    const seq = sequenceOf(w.id);
    if (w.id.sourceUnit === s.sourceUnit && (gen < s.generation || (gen === s.generation && (seq <= s.applied || s.waiting.has(seq))))) {
      return Promise.resolve(this.accept(s, w, w.data, w.ack));
    }
    const key = w.id.issue;
    let a = s.assemblies.get(key);
    if (a === undefined) {
      let complete!: (d: Promise<Durability>) => void;
      const done = new Promise<Durability>((r) => { complete = r; });
      done.catch(() => {}); // portions asking 'received' do not wait for it
      a = { data: Buffer.alloc(w.totalLength), ranges: [], have: 0, durable: false, done, complete };
      s.assemblies.set(key, a);
    }
    if (w.ack === 'durable') a.durable = true;
    w.data.copy(a.data, w.portionOffset, 0, w.length);
    a.have += cover(a.ranges, w.portionOffset, w.portionOffset + w.length);
    if (a.have >= w.totalLength) {
      s.assemblies.delete(key);
      const whole = a;
      whole.complete(Promise.resolve().then(() => this.accept(s, w, whole.data, whole.durable ? 'durable' : 'received')));
    }
    // Only the portion that completes the write waits for it: the others are in this unit's buffer
    // memory now and answer 'received' at once, returning their share of the sender's window (a
    // window full of first portions waiting for their write would never let the rest in). The
    // sender discards its copy only once every portion is answered, i.e. after the completing one.
    return a.have >= w.totalLength && a.durable ? a.done : Promise.resolve('received');
  }

  private accept(s: Stream, w: Pick<InboundWrite, 'id' | 'lba' | 'blocks' | 'data'> & Partial<Pick<InboundWrite, 'retain'>>, data: Buffer, ack: Durability): Promise<Durability> | Durability {
    s.received++;
    const gen = generationOf(w.id);
    const seq = sequenceOf(w.id);
    if (s.sourceUnit !== w.id.sourceUnit) {
      if (s.applied !== 0 || s.generation !== 0) {
        throw new Error(`volume ${s.v.volume.name}: write from unit ${w.id.sourceUnit}, but its stream comes from unit ${s.sourceUnit}`);
      }
      s.sourceUnit = w.id.sourceUnit;
    }
    if (gen < s.generation) {
      s.stale++;
      return 'durable'; // an old generation's straggler: the resync covers it
    }
    if (gen > s.generation) {
      this.log.warn({ volume: s.v.volume.name, from: s.generation, to: gen, applied: s.applied, dropped: s.waiting.size }, 'new generation from the primary: its resync follows');
      this.drop(s, gen);
      s.generation = gen;
      s.applied = s.committed = s.durable = 0;
    }
    if (seq <= s.applied || s.waiting.has(seq)) {
      s.duplicates++;
      return ack === 'durable' ? this.whenDurable(s, seq) : 'received';
    }
    if (s.waitingBytes + data.length > this.maxWaitingBytes && seq !== s.applied + 1) {
      throw new Error(`volume ${s.v.volume.name}: ${s.waitingBytes} bytes wait behind sequence ${s.applied + 1}; send that first (if this secondary lost it in a crash and nothing holds it any more, kura down, then kura up --resync)`);
    }
    // Own the bytes: the link's buffer goes back to the sender's window when we answer. Unless no
    // write is missing below this one: then it is applied without waiting for anything the sender
    // still has to send, so the link's buffer itself can wait for that (retained: its window share
    // comes back once it is copied to the medium's area), and a copy of every replicated byte is saved.
    let own = data;
    let release: (() => void) | undefined;
    if (data === w.data) {
      if (w.retain !== undefined && this.noGapBelow(s, seq)) release = w.retain();
      else own = Buffer.from(data);
    }
    s.waiting.set(seq, { seq, lba: w.lba, blocks: w.blocks, data: own, release });
    s.waitingBytes += own.length;
    this.timeGap(s);
    void this.apply(s);
    return ack === 'durable' ? this.whenDurable(s, seq) : 'received';
  }

  /** Forget every write waiting to be applied; retained link buffers go back. */
  private dropWaiting(s: Stream): void {
    for (const w of s.waiting.values()) w.release?.();
    s.waiting.clear();
    s.waitingBytes = 0;
    s.gap = undefined;
  }

  /**
   * Writes wait and the next sequence is not among them: a gap, timed from when it opened (a
   * crashed secondary loses what it had only received and not checkpointed; the primary sends its
   * retained copies again, and a gap that stays is one they did not cover).
   */
  private timeGap(s: Stream): void {
    const missing = s.applied + 1;
    if (this.clock === undefined || s.waiting.size === 0 || s.waiting.has(missing)) {
      s.gap = undefined;
      return;
    }
    const now = this.clock.now();
    if (s.gap?.sequence !== missing) s.gap = { sequence: missing, since: now, logged: false };
    const gap = s.gap;
    if (gap.logged || now - gap.since < STUCK_GAP_MS) return;
    gap.logged = true;
    this.log.warn({ volume: s.v.volume.name, missing, waiting: s.waiting.size, forMs: now - gap.since },
      'writes wait behind a sequence that has not come for 10 s: this secondary lost it (a crash in a \'received\' ack mode beyond the primary\'s retained copies, or with the primary restarted too) and nothing will send it again; kura down, then kura up --resync');
  }

  /** Every sequence from the next to apply up to `seq` (excluded) is here, waiting. */
  private noGapBelow(s: Stream, seq: number): boolean {
    if (seq - s.applied - 1 > s.waiting.size) return false;
    for (let k = s.applied + 1; k < seq; k++) if (!s.waiting.has(k)) return false;
    return true;
  }

  /** Register every write that is next in sequence with the IO scheduler, in order. */
  private async apply(s: Stream): Promise<void> {
    if (s.applying) return;
    s.applying = true;
    try {
      for (let next = s.waiting.get(s.applied + 1); next !== undefined && !s.promoted; next = s.waiting.get(s.applied + 1)) {
        const gen = s.generation;
        const r = await s.v.volume.prepareWrite(next.lba, next.blocks);
        if (gen !== s.generation || !s.waiting.has(next.seq)) {
          r.abandon(); // a new generation arrived meanwhile
          continue;
        }
        r.area.set(next.data);
        next.release?.();
        s.waiting.delete(next.seq);
        s.waitingBytes -= next.data.length;
        s.applied = next.seq;
        this.timeGap(s);
        s.appliedBytes += next.data.length;
        s.inFlight.add(issueOf(gen, next.seq));
        const seq = next.seq;
        r.commit({ fua: false }).then(
          () => this.committed(s, gen, seq),
          (err: unknown) => {
            s.inFlight.delete(issueOf(gen, seq));
            this.fail(s, err);
            s.settle();
          },
        );
      }
    } catch (err) {
      this.fail(s, err);
    } finally {
      s.applying = false;
      s.settle();
    }
  }

  private committed(s: Stream, gen: number, seq: number): void {
    s.inFlight.delete(issueOf(gen, seq));
    if (gen !== s.generation) {
      s.settle();
      return;
    }
    let c = s.committed;
    while (c < s.applied && !s.inFlight.has(issueOf(gen, c + 1))) c++;
    s.committed = c;
    this.group(s);
    s.settle();
  }

  private whenDurable(s: Stream, seq: number): Promise<Durability> {
    if (seq <= s.durable) return Promise.resolve('durable');
    return new Promise((resolve, reject) => {
      s.durableWaiters.push({ seq, resolve, reject });
      this.group(s);
    });
  }

  /**
   * Group commit: one flush and one watermark write for every write completed by now. It starts
   * when somebody waits for 'durable', or as a checkpoint (CHECKPOINT_BYTES applied since the last
   * one, or CHECKPOINT_MS after a write was completed without anybody waiting).
   */
  private group(s: Stream, checkpoint = false): void {
    if (s.grouping || s.committed <= s.durable) return;
    if (s.durableWaiters.length === 0 && !checkpoint && s.appliedBytes - s.groupedBytes < CHECKPOINT_BYTES) {
      if (s.checkpoint === undefined && this.clock !== undefined && !this.closed) {
        s.checkpoint = this.clock.setTimer(CHECKPOINT_MS, () => {
          s.checkpoint = undefined;
          this.group(s, true);
        });
      }
      return;
    }
    s.checkpoint?.cancel();
    s.checkpoint = undefined;
    s.grouping = true;
    s.groupedBytes = s.appliedBytes;
    const target = s.committed;
    const gen = s.generation;
    const state = this.persisted(s, target);
    s.v.volume.flush()
      .then(() => this.o.persist(s.v.index, state))
      .then(
        () => {
          s.grouping = false;
          s.settle();
          if (gen !== s.generation) {
            // A new generation began meanwhile: its writes may wait for a group of their own.
            this.group(s);
            return;
          }
          s.durable = Math.max(s.durable, target);
          const keep = [];
          for (const w of s.durableWaiters) {
            if (w.seq <= s.durable) w.resolve('durable');
            else keep.push(w);
          }
          s.durableWaiters.length = 0;
          s.durableWaiters.push(...keep);
          this.group(s);
        },
        (err: unknown) => {
          s.grouping = false;
          s.settle();
          this.fail(s, err);
        },
      );
  }

  /**
   * Forget what waits behind a gap, and fail whoever waits for it to become durable; likewise the
   * writes being assembled from portions, of a generation below `below` (all by default).
   */
  private drop(s: Stream, below = Infinity): void {
    this.dropWaiting(s);
    const err = new Error(`volume ${s.v.volume.name}: the write was dropped (new generation or promotion)`);
    for (const w of s.durableWaiters.splice(0)) {
      if (w.seq <= s.durable) w.resolve('durable');
      else w.reject(err);
    }
    this.dropAssemblies(s, err, below);
  }

  /** Portions answered with the whole write's fate: without this they would wait forever. */
  private dropAssemblies(s: Stream, err: Error, below = Infinity): void {
    for (const [issue, a] of s.assemblies) {
      if (generationOf({ sourceUnit: s.sourceUnit, issue }) >= below) continue;
      s.assemblies.delete(issue);
      a.complete(Promise.reject(err));
    }
  }

  /** A medium error on the secondary: stop the stream (answers fail; the relays keep the data). */
  /**
   * A failed stream is tried again once RETRY_AFTER_FAILURE_MS have passed and nothing of the
   * failed attempt is still running: a full disk gets room, a medium comes back. It starts again
   * from its durable watermark: what was applied past it may not be on the medium, and every such
   * write is still held by whoever sent it (a relay keeps a record until it is durable here; the
   * primary, in remote-durable mode, until then too), so it comes again and is applied in order.
   */
  private retry(s: Stream): boolean {
    if (this.clock === undefined || this.clock.now() - s.failedAt < RETRY_AFTER_FAILURE_MS) return false;
    if (s.applying || s.inFlight.size > 0 || s.grouping) return false;
    this.log.info({ volume: s.v.volume.name, from: s.durable + 1, failure: s.failure?.message }, 'applying replicated writes again after a failure');
    s.failure = null;
    s.applied = s.committed = s.durable;
    s.gap = undefined;
    return true;
  }

  private fail(s: Stream, err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    assert(e instanceof Error);
    const now = this.clock?.now() ?? 0;
    if (s.failure === null && now - s.failureLoggedAt >= FAILURE_LOG_EVERY_MS) {
      s.failureLoggedAt = now;
      this.log.error({ err: e, volume: s.v.volume.name }, `applying replicated writes failed; the stream stops, and is tried again in ${RETRY_AFTER_FAILURE_MS} ms as writes come`);
    }
    if (s.failure === null) s.failedAt = now;
    s.failure = e;
    // Nothing will be applied: the link's buffers go back (the window is shared with other volumes).
    this.dropWaiting(s);
    for (const w of s.durableWaiters.splice(0)) w.reject(e);
    this.dropAssemblies(s, e);
  }
}
