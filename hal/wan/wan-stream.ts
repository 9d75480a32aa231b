/**
 * A StreamTransport that shapes what this side writes before the real transport (TCP, or the
 * simulator's in-memory stream) gets it: every write is cut into segments, the link model says when
 * each arrives at the far end, and at that time the bytes are handed to the real transport. The
 * other side shapes its own writes, so a round trip sees both directions' delays. Reading is not
 * touched (what arrives was shaped by the sender), except with arrival stamps (arrival-stamps.ts):
 * then bytes go to the real transport up to a horizon early, stamped with their arrival time, and
 * the receiving WanStream holds them until it, so the transport's own latency (a process wake-up
 * on loopback) is spent inside the emulated delay instead of after it.
 *
 * Backpressure: write() says false while the link's queue is over its limit (bandwidth-bound
 * sender), while the bytes held here exceed maxHeldBytes (bytes in flight on a long fat link), or
 * while the real transport's own buffer is full; onDrain follows when all three are down to half.
 *
 * Partitions (LinkModel.setPartitioned): what is not yet handed over when the link is cut waits,
 * and so does everything written meanwhile (the connection stays up, as TCP's does when a cable is
 * pulled); at the heal it all goes through the link model again, in order, from then.
 *
 * Timing: one clock timer per stream for the earliest pending delivery; everything due when it
 * fires goes to the real transport as one batch. On the real HAL give it hal/precise-timer.ts's
 * preciseClock (systemClock's millisecond timers would add up to a millisecond per hop).
 *
 * Coalescing: segments that follow each other on the wire (back to back at the link rate, i.e. one
 * write cut into segments, or a bulk transfer) are handed over together when the last of the run
 * is due, the run ending at a gap of more than 1.5 segment times (at least 20 us) or after
 * coalesceMs (default: 16 KiB at the link rate, between 0.05 and 0.25 ms). Bytes are never handed
 * over before their time, and at most coalesceMs after it; a message is whole only when its last
 * segment arrives, so a 4 KiB write arrives exactly when the profile says, in one piece, instead of
 * as three segments 12 us apart (three timers, three socket writes, three wake-ups of the peer).
 */
import type { Clock, Timer } from '../clock.js';
import type { StreamHandler, StreamTransport } from '../transport.js';
import { StampReceiver, preamble, recordHeader, type ArrivalStampOptions, type StampStats } from './arrival-stamps.js';
import { PARTITION_HELD, STREAM_RESET, type LinkModel, type StreamFlow } from './link-model.js';

export interface WanStreamOptions {
  /** Bytes accepted and not yet handed to the real transport beyond which write() says false. Default 64 MiB. */
  maxHeldBytes?: number;
  /**
   * The real transport's own one-way latency (loopback TCP: tens to a few hundred µs on a busy
   * machine). Bytes are handed over this much before the model's arrival time, so that they reach
   * the far end's handler when the profile says; the order is unchanged. Default 0 (exact on the
   * simulator's in-memory streams). Measure it with calibrateTransportLatency (wan-accuracy.ts).
   */
  transportLatencyMs?: number;
  /**
   * Let the receiving side time deliveries (arrival-stamps.ts): bytes go to the real transport up to
   * `horizonMs` early, stamped with their arrival time, and the far end holds them until then, so
   * the transport's own latency disappears into the emulated delay. Both ends of a link must use
   * it; transportLatencyMs is then ignored.
   */
  stamps?: ArrivalStampOptions;
  /**
   * Longest a run of back-to-back segments waits for its last one before it is handed over, ms.
   * Default: 16 KiB at the link rate, within [0.05, 0.25] ms; 0 hands every segment over at its own time.
   */
  coalesceMs?: number;
  /** For error messages. */
  linkName?: string;
}

/** A delivery is due when the clock is within this of it (the clock's own float rounding). */
const EPSILON_MS = 1e-6;

type Early = { kind: 'data'; chunk: Buffer } | { kind: 'drain' } | { kind: 'close'; err: Error | undefined };

export class WanStream implements StreamTransport {
  /** Give this to the real transport as its handler. */
  readonly innerHandler: StreamHandler;
  private handler: StreamHandler | undefined;
  private early: Early[] = [];

  private readonly flow: StreamFlow;
  private readonly maxHeld: number;
  private readonly lead: number;
  private readonly linkName: string;
  /** Coalescing: a run continues while segments follow within gapMs, for at most windowMs. */
  private readonly gapMs: number;
  private readonly windowMs: number;

  // Pending pieces, FIFO from `head`; delivery times nondecreasing (the model never reorders a flow).
  private pChunk: (Uint8Array | null)[] = [];
  private pStart: number[] = [];
  private pEnd: number[] = [];
  private pAt: number[] = [];
  private pDone: (((err?: Error) => void) | undefined)[] = [];
  private head = 0;
  private held = 0;

  private timer: Timer | undefined;
  private drainTimer: Timer | undefined;
  private outageTimer: Timer | undefined;
  private owedDrain = false;
  private innerBlocked = false;
  private ending = false;
  /** No more writes (destroyed, reset or closed underneath). */
  private closed = false;
  private reported = false;
  private resetError: Error | undefined;
  private readonly unsubscribe: () => void;
  private readonly stamps: ArrivalStampOptions | undefined;
  private readonly receiver: StampReceiver | undefined;
  private sentPreamble = false;
  private handlerPaused = false;
  private receiverFull = false;
  private innerPaused = false;

  constructor(
    readonly inner: StreamTransport,
    readonly model: LinkModel,
    private readonly clock: Clock,
    opts: WanStreamOptions = {},
  ) {
    this.flow = model.newFlow();
    this.maxHeld = opts.maxHeldBytes ?? 64 * 1024 * 1024;
    this.stamps = opts.stamps;
    this.lead = Math.max(0, opts.stamps ? opts.stamps.horizonMs : opts.transportLatencyMs ?? 0);
    this.linkName = opts.linkName ?? model.profile.name;
    const bps = model.profile.bandwidthBps;
    const msPerByte = bps === Infinity ? 0 : 8000 / bps;
    this.windowMs = Math.max(0, opts.coalesceMs ?? Math.min(0.25, Math.max(0.05, 16 * 1024 * msPerByte)));
    this.gapMs = this.windowMs === 0 ? 0 : Math.max(0.02, 1.5 * model.profile.segmentBytes * msPerByte);
    const receive = (chunk: Buffer): void => {
      if (this.handler) this.handler.onData(chunk);
      else this.early.push({ kind: 'data', chunk });
    };
    const receiver = opts.stamps && new StampReceiver(clock, opts.stamps, receive, (err) => this.abort(err), (on) => {
      this.receiverFull = on;
      this.applyReadPause();
    });
    this.receiver = receiver;
    this.innerHandler = {
      onData: receiver ? (chunk) => receiver.receive(chunk) : receive,
      onDrain: () => {
        this.innerBlocked = false;
        if (this.handler) this.checkDrain();
        else this.early.push({ kind: 'drain' });
      },
      onClose: (err) => this.closedUnderneath(err),
    };
    this.armOutage();
    this.unsubscribe = model.onPartitionChange((on) => {
      if (this.closed) return;
      if (on) this.holdPending();
      else this.retime();
    });
  }

  /** Connect the protocol's handler; events that came before are replayed to it now. */
  attach(handler: StreamHandler): void {
    this.handler = handler;
    const early = this.early;
    this.early = [];
    for (const e of early) {
      if (e.kind === 'data') handler.onData(e.chunk);
      else if (e.kind === 'drain') this.checkDrain();
      else this.report(e.err);
    }
  }

  get remoteAddress(): string { return this.inner.remoteAddress; }
  get remotePort(): number { return this.inner.remotePort; }
  get localAddress(): string { return this.inner.localAddress; }
  get localPort(): number { return this.inner.localPort; }

  /** Bytes accepted and not yet handed to the real transport. */
  get heldBytes(): number {
    return this.held;
  }

  /** The receiving side's arrival stamps (undefined without them). */
  get stampStats(): Readonly<StampStats> | undefined {
    return this.receiver?.stats;
  }

  write(chunks: readonly Uint8Array[], done?: (err?: Error) => void): boolean {
    if (this.closed || this.ending) {
      if (done) queueMicrotask(() => done(new Error('stream closed')));
      return false;
    }
    let total = 0;
    for (let i = 0; i < chunks.length; i++) total += chunks[i]!.length;
    if (total === 0) {
      // Nothing to carry, but `done` must still come after what is ahead of it.
      this.push(null, 0, 0, Math.max(this.flow.lastAt, this.clock.now()), done);
    } else {
      const seg = this.model.profile.segmentBytes;
      let remaining = total;
      let segLeft = 0;
      let at = 0;
      for (let i = 0; i < chunks.length; i++) {
        const c = chunks[i]!;
        let off = 0;
        while (off < c.length) {
          if (segLeft === 0) {
            const size = remaining < seg ? remaining : seg;
            at = this.model.sendSegment(this.flow, size, Math.ceil((remaining - size) / seg));
            if (at === STREAM_RESET) {
              this.reset(this.model.lastResetReason);
              if (done) queueMicrotask(() => done(this.resetError));
              return false;
            }
            segLeft = size;
            remaining -= size;
          }
          const take = Math.min(segLeft, c.length - off);
          this.push(c, off, off + take, at, undefined);
          off += take;
          segLeft -= take;
        }
      }
      if (done) this.pDone[this.pDone.length - 1] = done;
    }
    // With stamps the far end times the arrival: what is due for handover goes to the transport now
    // (not a loop turn later, behind whatever else this turn does, such as an inline disk write).
    if (this.stamps && this.timer === undefined && this.pAt[this.head]! - this.lead <= this.clock.now() + EPSILON_MS) this.handOver(false);
    this.arm();
    if (!this.blocked()) return true;
    this.owedDrain = true;
    this.armDrainCheck();
    return false;
  }

  pauseReading(): void {
    this.receiver?.pause();
    this.handlerPaused = true;
    this.applyReadPause();
  }

  resumeReading(): void {
    this.receiver?.resume();
    this.handlerPaused = false;
    this.applyReadPause();
  }

  /** The real transport is read unless the handler or a full stamp receiver says otherwise. */
  private applyReadPause(): void {
    const pause = this.handlerPaused || this.receiverFull;
    if (pause === this.innerPaused) return;
    this.innerPaused = pause;
    if (pause) this.inner.pauseReading();
    else this.inner.resumeReading();
  }

  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    if (this.head === this.pAt.length) this.inner.end();
  }

  destroy(): void {
    this.receiver?.drop();
    if (this.closed) return;
    this.shut(new Error('stream destroyed'));
    this.inner.destroy();
  }

  private push(chunk: Uint8Array | null, start: number, end: number, at: number, done: ((err?: Error) => void) | undefined): void {
    const n = this.pAt.length - 1;
    // Contiguous bytes of one chunk arriving together stay one piece (an unlimited link).
    if (n >= this.head && chunk !== null && this.pChunk[n] === chunk && this.pEnd[n] === start && this.pAt[n] === at && this.pDone[n] === undefined) {
      this.pEnd[n] = end;
    } else {
      this.pChunk.push(chunk);
      this.pStart.push(start);
      this.pEnd.push(end);
      this.pAt.push(at);
      this.pDone.push(done);
    }
    this.held += end - start;
  }

  private arm(): void {
    if (this.timer !== undefined || this.closed || this.head === this.pAt.length) return;
    const first = this.pAt[this.head]!;
    if (first === PARTITION_HELD) return; // until the heal
    // The end of the run the first pending segment starts (see Coalescing in the header).
    let at = first;
    for (let k = this.head + 1; k < this.pAt.length; k++) {
      const next = this.pAt[k]!;
      if (next - at > this.gapMs || next - first > this.windowMs) break;
      at = next;
    }
    this.timer = this.clock.setTimer(at - this.lead - this.clock.now(), this.deliver);
  }

  private readonly deliver = (): void => {
    this.timer = undefined;
    if (this.closed) return;
    this.handOver(true);
    if (this.closed) return;
    if (this.ending && this.head === this.pAt.length) this.inner.end();
    this.arm();
    this.checkDrain();
  };

  /** Hands what is due to the real transport; `flush`: to the OS now, not at the end of the turn. */
  private handOver(flush: boolean): void {
    const limit = this.clock.now() + this.lead + EPSILON_MS;
    const batch: Uint8Array[] = [];
    const dones: ((err?: Error) => void)[] = [];
    let cur: Uint8Array | null = null;
    let curStart = 0;
    let curEnd = 0;
    // Stamped records (see Coalescing): where the header goes, bytes, first and last arrival time.
    const stamps = this.stamps;
    let recAt = -1;
    let recFirst = 0;
    let recLen = 0;
    let recSlot = -1;
    const closeRecord = (): void => {
      if (recSlot < 0) return;
      if (cur !== null) batch.push(slice(cur, curStart, curEnd));
      cur = null;
      batch[recSlot] = recordHeader(recLen, recAt + stamps!.sharedOffsetMs, this.clock.now() + stamps!.sharedOffsetMs);
      recSlot = -1;
    };
    if (stamps && !this.sentPreamble) {
      this.sentPreamble = true;
      batch.push(preamble(stamps));
    }
    let h = this.head;
    const n = this.pAt.length;
    while (h < n && this.pAt[h]! <= limit) {
      const c = this.pChunk[h]!;
      const s = this.pStart[h]!;
      const e = this.pEnd[h]!;
      if (c !== null && e > s) {
        if (stamps) {
          const at = this.pAt[h]!;
          if (recSlot >= 0 && (at - recAt > this.gapMs || at - recFirst > this.windowMs)) closeRecord();
          if (recSlot < 0) {
            recSlot = batch.length;
            batch.push(EMPTY);
            recFirst = at;
            recLen = 0;
          }
          recAt = at;
          recLen += e - s;
        }
        if (cur === c && curEnd === s) {
          curEnd = e;
        } else {
          if (cur !== null) batch.push(slice(cur, curStart, curEnd));
          cur = c;
          curStart = s;
          curEnd = e;
        }
        this.held -= e - s;
      }
      const d = this.pDone[h];
      if (d !== undefined) dones.push(d);
      this.pChunk[h] = null;
      this.pDone[h] = undefined;
      h++;
    }
    if (stamps) closeRecord();
    else if (cur !== null) batch.push(slice(cur, curStart, curEnd));
    this.head = h;
    this.compact();
    if (batch.length > 0 || dones.length > 0) {
      const ok = this.inner.write(batch, dones.length === 0 ? undefined : (err) => { for (const d of dones) d(err); });
      if (!ok) this.innerBlocked = true;
      // The bytes are due now (the lead counts the transport's own latency from here): no waiting
      // for the end of the loop turn.
      if (flush) this.inner.flushNow?.();
    }
  }

  /** The link was cut: what is not due yet (or already handed over) waits for the heal. */
  private holdPending(): void {
    const limit = this.clock.now() + this.lead + EPSILON_MS;
    for (let i = this.head; i < this.pAt.length; i++) if (this.pAt[i]! > limit) this.pAt[i] = PARTITION_HELD;
    // Held bytes are timed afresh at the heal: only what is still due keeps its place in the order.
    if (this.flow.lastAt > limit) this.flow.lastAt = limit;
    this.timer?.cancel();
    this.timer = undefined;
    this.arm();
  }

  /** The link was healed: everything held goes through the link model again, from now, in order. */
  private retime(): void {
    let k = this.head;
    while (k < this.pAt.length && this.pAt[k] !== PARTITION_HELD) k++;
    if (k === this.pAt.length) return;
    const chunks = this.pChunk.splice(k);
    const starts = this.pStart.splice(k);
    const ends = this.pEnd.splice(k);
    const dones = this.pDone.splice(k);
    this.pAt.length = k;
    let total = 0;
    for (let i = 0; i < chunks.length; i++) total += ends[i]! - starts[i]!;
    this.held -= total;
    const seg = this.model.profile.segmentBytes;
    let remaining = total;
    let segLeft = 0;
    let at = Math.max(this.flow.lastAt, this.clock.now());
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks[i]!;
      let off = starts[i]!;
      const end = ends[i]!;
      if (c === null || off === end) {
        this.push(null, 0, 0, at, dones[i]);
        continue;
      }
      while (off < end) {
        if (segLeft === 0) {
          const size = remaining < seg ? remaining : seg;
          at = this.model.sendSegment(this.flow, size, Math.ceil((remaining - size) / seg));
          if (at === STREAM_RESET) {
            const unsent = dones.slice(i).filter((d) => d !== undefined);
            this.reset(this.model.lastResetReason);
            for (const d of unsent) d(this.resetError);
            return;
          }
          segLeft = size;
          remaining -= size;
        }
        const take = Math.min(segLeft, end - off);
        this.push(c, off, off + take, at, off + take === end ? dones[i] : undefined);
        off += take;
        segLeft -= take;
      }
    }
    this.arm();
    this.checkDrain();
  }

  private compact(): void {
    const h = this.head;
    if (h < 1024 || h * 2 < this.pAt.length) return;
    this.pChunk = this.pChunk.slice(h);
    this.pStart = this.pStart.slice(h);
    this.pEnd = this.pEnd.slice(h);
    this.pAt = this.pAt.slice(h);
    this.pDone = this.pDone.slice(h);
    this.head = 0;
  }

  private blocked(): boolean {
    return this.innerBlocked || this.held > this.maxHeld || this.model.queueFull();
  }

  private checkDrain(): void {
    if (!this.owedDrain || this.closed || this.handler === undefined) return;
    const q = this.model.profile.queueBytes;
    if (this.innerBlocked || this.held > this.maxHeld / 2 || this.model.queuedBytes() > q / 2) {
      this.armDrainCheck();
      return;
    }
    this.owedDrain = false;
    this.drainTimer?.cancel();
    this.drainTimer = undefined;
    this.handler.onDrain();
  }

  /** The link's queue empties on its own (no event tells us): look again when it is down to half. */
  private armDrainCheck(): void {
    if (this.drainTimer !== undefined) return;
    const q = this.model.profile.queueBytes;
    if (this.model.queuedBytes() <= q / 2) return;
    this.drainTimer = this.clock.setTimer(this.model.queueBelowAt(q / 2) - this.clock.now(), () => {
      this.drainTimer = undefined;
      this.checkDrain();
    });
  }

  private armOutage(): void {
    const now = this.clock.now();
    const w = this.model.outageAt(now);
    const next = w?.mode === 'reset' ? w : this.model.nextOutage(now, 'reset');
    if (next === undefined) return;
    this.outageTimer = this.clock.setTimer(Math.max(0, next.start - now), () => {
      this.outageTimer = undefined;
      this.reset('WAN link outage');
    });
  }

  private reset(reason: string): void {
    this.abort(errno('ECONNRESET', `WAN link${this.linkName ? ` ${this.linkName}` : ''}: ${reason}`));
  }

  /**
   * Close now with `err` (a link outage, or a peer whose stamps cannot be trusted): what is held
   * for later never arrives, as what is in flight on a real link does not; the handler hears `err`
   * when the real transport reports the close.
   */
  private abort(err: Error): void {
    if (this.closed) return;
    this.receiver?.drop();
    this.resetError = err;
    this.shut(err);
    this.inner.destroy();
  }

  /** Stop everything of ours: no more writes, timers off, pending writes failed. */
  private shut(err: Error): void {
    this.closed = true;
    this.unsubscribe();
    this.timer?.cancel();
    this.timer = undefined;
    this.drainTimer?.cancel();
    this.drainTimer = undefined;
    this.outageTimer?.cancel();
    this.outageTimer = undefined;
    const dones: ((err?: Error) => void)[] = [];
    for (let i = this.head; i < this.pDone.length; i++) {
      const d = this.pDone[i];
      if (d !== undefined) dones.push(d);
    }
    this.pChunk = [];
    this.pStart = [];
    this.pEnd = [];
    this.pAt = [];
    this.pDone = [];
    this.head = 0;
    this.held = 0;
    for (const d of dones) d(err);
  }

  private closedUnderneath(err: Error | undefined): void {
    if (!this.closed) this.shut(err ?? new Error('stream closed'));
    const e = this.resetError ?? err;
    const tell = (): void => {
      if (this.handler) this.report(e);
      else this.early.push({ kind: 'close', err: e });
    };
    // A peer that ended cleanly: what it sent before still arrives, at its time, then the end.
    if (this.receiver && e === undefined) this.receiver.whenEmpty(tell);
    else {
      this.receiver?.drop();
      tell();
    }
  }

  private report(err: Error | undefined): void {
    if (this.reported) return;
    this.reported = true;
    this.handler?.onClose(err);
  }
}

/** Like Node's system errors, so code that checks `err.code` works the same over a WAN link. */
export function errno(code: string, message: string): NodeJS.ErrnoException {
  const e = new Error(message) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

const EMPTY = new Uint8Array(0);

function slice(c: Uint8Array, s: number, e: number): Uint8Array {
  return s === 0 && e === c.length ? c : c.subarray(s, e);
}
