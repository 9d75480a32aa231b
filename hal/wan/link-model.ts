/**
 * One direction of an emulated WAN link, sans-IO: given the Clock and a seeded Random it decides,
 * for each stream segment or datagram handed to it now, when it arrives at the far end (or that it
 * is dropped, duplicated or corrupted). It owns the link's shared state: the serializer (bandwidth)
 * and its queue, the loss process, the outage schedule. Adapters (wan-stream.ts, wan-datagram.ts)
 * hold the bytes and deliver them when told; on the VirtualClock the answers are exact.
 *
 * Per packet: queue (tail drop / backpressure) -> serializer at bandwidthBps -> propagation
 * (delay + jitter) -> loss / outage -> (datagrams) reorder, duplicate, corrupt.
 *
 * A stream never reorders: a segment arrives no earlier than the one before it on the same stream,
 * and a lost one is sent again, holding back every segment behind it (head-of-line blocking), as
 * TCP does: after about one round trip when at least DUPTHRESH segments follow it in the same
 * handover (their duplicate acks trigger a fast retransmit), else after the retransmission timeout
 * (a tail loss); a retransmission lost again waits for the timeout, doubling each time.
 *
 * Besides the scheduled outages, a link can be partitioned at run time (setPartitioned), for as long
 * as nobody knows in advance: a pulled cable. Nothing gets through and nothing is reset; a stream
 * segment sent meanwhile has no arrival time (PARTITION_HELD) until the link is healed, and the
 * adapters listening with onPartitionChange re-send what they hold then, as TCP's retransmissions
 * would. Datagrams sent during a partition are dropped.
 */
import type { Clock } from '../clock.js';
import type { Random } from '../sim/random.js';
import { jitterSampler, jitterStdMs, lossProcess, type LossProcess } from './impairments.js';
import { resolveProfile, type OutageMode, type ResolvedProfile, type WanProfile } from './profiles.js';

/** Returned by sendSegment when the link resets the connection (reset-mode outage, too many retransmissions). */
export const STREAM_RESET = Number.NEGATIVE_INFINITY;

/** Returned by sendSegment while the link is partitioned: the segment arrives after the heal, time unknown yet. */
export const PARTITION_HELD = Number.POSITIVE_INFINITY;

/** Duplicate acks that trigger a fast retransmit (TCP's dupthresh, RFC 5681). */
export const DUPTHRESH = 3;

/** Linux's TCP_RTO_MAX. */
const RTO_MAX_MS = 120_000;

/** Per-stream (per direction) ordering state; get one from LinkModel.newFlow(). */
export interface StreamFlow {
  /** Arrival time of the last segment handed over on this stream. */
  lastAt: number;
}

export interface DatagramDelivery {
  /** Clock time at which this copy reaches the far end. */
  at: number;
  /** Bit indices (0 = most significant bit of byte 0) to flip in this copy; empty when intact. */
  flipBits: number[];
}

export type DatagramFate = 'delivered' | 'lost' | 'queue-full' | 'outage';

export interface DatagramSend {
  fate: DatagramFate;
  /** Copies that arrive: none when dropped, two when duplicated. */
  deliveries: DatagramDelivery[];
}

/** An outage in clock time. */
export interface OutageWindow {
  start: number;
  end: number;
  mode: OutageMode;
}

export interface LinkStats {
  segments: number;
  segmentBytes: number;
  /** Stream segment transmissions lost (each cost a retransmission timeout, or a round trip when fast-retransmitted). */
  retransmits: number;
  /** Of those, the ones recovered by a fast retransmit. */
  fastRetransmits: number;
  /** Segments delayed by a hold-mode outage or sent during a partition. */
  held: number;
  /** Runtime partitions started (setPartitioned(true)). */
  partitions: number;
  resets: number;
  datagrams: number;
  datagramBytes: number;
  lost: number;
  queueDrops: number;
  outageDrops: number;
  reordered: number;
  duplicated: number;
  corrupted: number;
}

export type LinkEvent =
  | { t: number; kind: 'segment'; bytes: number; at: number; retransmits: number }
  | { t: number; kind: 'reset'; reason: string }
  | { t: number; kind: 'datagram'; bytes: number; fate: DatagramFate; deliveries: DatagramDelivery[] };

export interface LinkModelOptions {
  clock: Clock;
  /** The link's own stream of randomness (fork one per link). */
  random: Random;
  /** Clock time that outage times count from. Default: now. */
  epochMs?: number;
  /** Called for every decision (tests, traces). */
  trace?: (e: LinkEvent) => void;
}

export class LinkModel {
  readonly profile: ResolvedProfile;
  readonly epochMs: number;
  readonly stats: LinkStats = {
    segments: 0, segmentBytes: 0, retransmits: 0, fastRetransmits: 0, held: 0, partitions: 0, resets: 0,
    datagrams: 0, datagramBytes: 0, lost: 0, queueDrops: 0, outageDrops: 0, reordered: 0, duplicated: 0, corrupted: 0,
  };
  /** Why the last STREAM_RESET was returned. */
  lastResetReason = '';

  private readonly clock: Clock;
  private readonly trace: ((e: LinkEvent) => void) | undefined;
  private readonly windows: OutageWindow[];
  private readonly loss: LossProcess;
  private readonly jitter: () => number;
  private readonly reorderRandom: Random;
  private readonly duplicateRandom: Random;
  private readonly corruptRandom: Random;
  /** ms per byte on the wire; 0 when unlimited. */
  private readonly msPerByte: number;
  private readonly rtoMs: number;

  /** When the serializer is done with everything accepted so far. */
  private busyUntil = Number.NEGATIVE_INFINITY;
  /** Accepted, not yet serialized: finish times (nondecreasing) and sizes, FIFO from qHead. */
  private qFinish: number[] = [];
  private qBytes: number[] = [];
  private qHead = 0;
  private queued = 0;
  /** Clock time the runtime partition began; undefined when the link is not partitioned. */
  private partitionedSince: number | undefined;
  private readonly partitionListeners = new Set<(partitioned: boolean) => void>();

  constructor(profile: WanProfile | ResolvedProfile, opts: LinkModelOptions) {
    // resolveProfile is idempotent, so a resolved profile passes through unchanged.
    this.profile = resolveProfile(profile);
    this.clock = opts.clock;
    this.trace = opts.trace;
    this.epochMs = opts.epochMs ?? opts.clock.now();
    this.windows = this.profile.outages.map((o) => ({ start: this.epochMs + o.atMs, end: this.epochMs + o.atMs + o.durationMs, mode: o.mode }));
    // Fixed fork order: the seed determines every stream regardless of which impairments are on.
    const r = opts.random;
    this.loss = lossProcess(this.profile.loss, r.fork());
    this.jitter = jitterSampler(this.profile.jitter, r.fork());
    this.reorderRandom = r.fork();
    this.duplicateRandom = r.fork();
    this.corruptRandom = r.fork();
    const bps = this.profile.bandwidthBps;
    this.msPerByte = bps === Infinity ? 0 : 8000 / bps;
    // Both directions are assumed alike: the sender's estimate of the round trip is twice its own way.
    const rtt = 2 * (this.profile.delayMs + this.profile.segmentBytes * this.msPerByte);
    const rttvar = Math.SQRT2 * jitterStdMs(this.profile.jitter);
    this.rtoMs = Math.min(RTO_MAX_MS, Math.max(this.profile.rtoMinMs, rtt + 4 * rttvar));
  }

  /** The retransmission timeout a lost stream segment costs (before backoff). */
  get retransmitTimeoutMs(): number {
    return this.rtoMs;
  }

  /** The round trip a sender on this link expects (both ways like this one, unloaded). */
  rttEstimateMs(): number {
    return 2 * this.profile.delayMs;
  }

  /** Whether a runtime partition is in force. */
  get partitioned(): boolean {
    return this.partitionedSince !== undefined;
  }

  /** Clock time the current runtime partition began, if any. */
  get partitionStart(): number | undefined {
    return this.partitionedSince;
  }

  /**
   * Cut (true) or heal (false) the link now, until told otherwise. The listeners hear of every
   * change (adapters hold and re-send their traffic); setting the current state again is a no-op.
   */
  setPartitioned(on: boolean): void {
    if (on === this.partitioned) return;
    this.partitionedSince = on ? this.clock.now() : undefined;
    if (on) this.stats.partitions++;
    for (const fn of [...this.partitionListeners]) fn(on);
  }

  /** Hear of partitions and heals; returns the unsubscribe function. */
  onPartitionChange(fn: (partitioned: boolean) => void): () => void {
    this.partitionListeners.add(fn);
    return () => this.partitionListeners.delete(fn);
  }

  newFlow(): StreamFlow {
    return { lastAt: Number.NEGATIVE_INFINITY };
  }

  /** The outage in force at clock time t, if any. */
  outageAt(t = this.clock.now()): OutageWindow | undefined {
    for (const w of this.windows) if (t >= w.start && t < w.end) return w;
    return undefined;
  }

  /** The first outage of `mode` starting at or after t. */
  nextOutage(t = this.clock.now(), mode?: OutageMode): OutageWindow | undefined {
    for (const w of this.windows) if (w.start >= t && (mode === undefined || w.mode === mode)) return w;
    return undefined;
  }

  /** Bytes accepted and not yet serialized. */
  queuedBytes(): number {
    this.drain(this.clock.now());
    return this.queued;
  }

  queueFull(): boolean {
    return this.queuedBytes() > this.profile.queueBytes;
  }

  /** The clock time at which the queue is down to `bytes` (now if it already is). */
  queueBelowAt(bytes: number): number {
    const now = this.clock.now();
    this.drain(now);
    let rest = this.queued;
    if (rest <= bytes) return now;
    for (let i = this.qHead; i < this.qFinish.length; i++) {
      rest -= this.qBytes[i]!;
      if (rest <= bytes) return this.qFinish[i]!;
    }
    return now;
  }

  /**
   * One stream segment of `bytes`, handed to the link now: the clock time at which it arrives,
   * in order on its flow, STREAM_RESET (see lastResetReason), or PARTITION_HELD (send it again
   * after the heal). `following`: segments handed over right behind it (the rest of the write):
   * DUPTHRESH of them make a loss a fast retransmit instead of a timeout.
   */
  sendSegment(flow: StreamFlow, bytes: number, following = 0): number {
    const now = this.clock.now();
    const down = this.outageAt(now);
    if (down?.mode === 'reset') return this.reset(now, 'WAN link outage');
    if (this.partitioned) {
      this.stats.held++;
      return PARTITION_HELD;
    }
    this.drain(now);
    let start = Math.max(now, this.busyUntil);
    let finish = start + bytes * this.msPerByte;
    const prop = this.propagation();
    let arrival = finish + prop;
    // On the link while it is down: the whole transmission starts over when it comes back.
    const shifted = this.afterHoldOutages(start, arrival);
    if (shifted !== start) {
      this.stats.held++;
      start = shifted;
      finish = start + bytes * this.msPerByte;
      arrival = finish + prop;
    }
    this.enqueue(finish, bytes);
    let retransmits = 0;
    let rto = this.rtoMs;
    let sentAt = finish;
    // A corrupted segment fails TCP's checksum: for the sender it is just as lost.
    while (this.lostOnWire() || this.corruptDraw()) {
      if (++retransmits > this.profile.maxRetransmits) {
        this.stats.retransmits += retransmits - 1;
        return this.reset(now, `segment lost ${retransmits} times`);
      }
      if (retransmits === 1 && following >= DUPTHRESH) {
        // The DUPTHRESH-th segment behind it is on the wire, arrives, and its duplicate ack comes back.
        this.stats.fastRetransmits++;
        sentAt += DUPTHRESH * bytes * this.msPerByte + 2 * prop;
      } else {
        sentAt += rto;
        rto = Math.min(rto * 2, RTO_MAX_MS);
      }
      sentAt = this.afterHoldOutages(sentAt, sentAt + prop);
      arrival = sentAt + prop;
    }
    const at = arrival > flow.lastAt ? arrival : flow.lastAt;
    flow.lastAt = at;
    this.stats.segments++;
    this.stats.segmentBytes += bytes;
    this.stats.retransmits += retransmits;
    this.trace?.({ t: now, kind: 'segment', bytes, at, retransmits });
    return at;
  }

  /** One datagram of `bytes`, handed to the link now. */
  sendDatagram(bytes: number): DatagramSend {
    const now = this.clock.now();
    this.stats.datagrams++;
    this.stats.datagramBytes += bytes;
    if (this.partitioned) {
      this.stats.outageDrops++;
      return this.traced(now, bytes, 'outage', []);
    }
    this.drain(now);
    if (this.queued + bytes > this.profile.queueBytes) {
      this.stats.queueDrops++;
      return this.traced(now, bytes, 'queue-full', []);
    }
    const start = Math.max(now, this.busyUntil);
    const finish = start + bytes * this.msPerByte;
    this.enqueue(finish, bytes);
    if (this.lostOnWire()) {
      this.stats.lost++;
      return this.traced(now, bytes, 'lost', []);
    }
    const copies = this.duplicateRandom.bool(this.profile.duplicate.p) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    const deliveries: DatagramDelivery[] = [];
    let outage = false;
    for (let c = 0; c < copies; c++) {
      let at = finish + this.propagation();
      // Draw every decision even for a copy the outage eats, so the sequence does not depend on it.
      const late = this.reorderRandom.bool(this.profile.reorder.p);
      const flipBits = this.corruptDraw() ? this.flips(bytes) : [];
      if (this.intersectsOutage(start, at)) {
        outage = true;
        continue;
      }
      if (late) {
        at += this.profile.reorder.extraMs;
        this.stats.reordered++;
      }
      if (flipBits.length > 0) this.stats.corrupted++;
      deliveries.push({ at, flipBits });
    }
    if (deliveries.length === 0) {
      this.stats.outageDrops++;
      return this.traced(now, bytes, 'outage', []);
    }
    if (outage) this.stats.outageDrops++;
    return this.traced(now, bytes, 'delivered', deliveries);
  }

  private traced(t: number, bytes: number, fate: DatagramFate, deliveries: DatagramDelivery[]): DatagramSend {
    this.trace?.({ t, kind: 'datagram', bytes, fate, deliveries });
    return { fate, deliveries };
  }

  private reset(now: number, reason: string): number {
    this.stats.resets++;
    this.lastResetReason = reason;
    this.trace?.({ t: now, kind: 'reset', reason });
    return STREAM_RESET;
  }

  /** delay + jitter, never negative. */
  private propagation(): number {
    const d = this.profile.delayMs + this.jitter();
    return d > 0 ? d : 0;
  }

  private lostOnWire(): boolean {
    return this.loss.lose();
  }

  private corruptDraw(): boolean {
    const p = this.profile.corrupt.p;
    return p > 0 && this.corruptRandom.float() < p;
  }

  private flips(bytes: number): number[] {
    const bits = bytes * 8;
    if (bits === 0) return [];
    const out: number[] = [];
    for (let i = 0; i < this.profile.corrupt.bits; i++) out.push(this.corruptRandom.int(bits));
    return out;
  }

  /** The first time >= start at which [start, start + (arrival - start)) misses every hold outage. */
  private afterHoldOutages(start: number, arrival: number): number {
    const span = arrival - start;
    for (const w of this.windows) {
      if (w.mode !== 'hold') continue;
      if (start < w.end && start + span > w.start) start = w.end;
    }
    return start;
  }

  private intersectsOutage(start: number, arrival: number): boolean {
    for (const w of this.windows) if (start < w.end && arrival > w.start) return true;
    return false;
  }

  private enqueue(finish: number, bytes: number): void {
    if (finish > this.busyUntil) this.busyUntil = finish;
    if (this.msPerByte === 0) return;
    this.qFinish.push(finish);
    this.qBytes.push(bytes);
    this.queued += bytes;
  }

  private drain(now: number): void {
    const f = this.qFinish;
    let h = this.qHead;
    while (h < f.length && f[h]! <= now) this.queued -= this.qBytes[h++]!;
    if (h > 4096 && h * 2 > f.length) {
      this.qFinish = f.slice(h);
      this.qBytes = this.qBytes.slice(h);
      h = 0;
    }
    this.qHead = h;
  }
}
