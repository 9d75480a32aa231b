/**
 * Test double: a pair of in-memory StreamTransports on a Clock (the simulator's VirtualClock), for
 * the peer protocol's tests. It behaves like TCP where the link's logic can tell: bytes arrive in
 * order after `latencyMs`, at most `bytesPerMs`; write() returns false while more than
 * `highWaterMark` bytes are written and not yet taken by the peer's handler (in flight or held by
 * a paused reader: send buffer + receive window), and onDrain follows when that falls to
 * `lowWaterMark`; pauseReading really stops delivery; end() closes both sides after queued bytes
 * arrived, destroy() at once. Deliveries may be split into chunks of at most `maxChunk` bytes.
 * partition() silently drops everything (a cable pulled: only heartbeats can tell).
 *
 * (It belongs in hal/sim/ once the wider simulated network exists; kept here, on HAL interfaces
 * only, so it stays inside the peer protocol's own files.)
 */
import type { Clock } from '../../hal/clock.js';
import type { StreamHandler, StreamTransport } from '../../hal/transport.js';

export interface PipeOptions {
  clock: Clock;
  latencyMs?: number;
  /** Serialisation rate; Infinity (default): no bandwidth limit. */
  bytesPerMs?: number;
  highWaterMark?: number;
  lowWaterMark?: number;
  maxChunk?: number;
}

export interface PipeStats {
  /** write() calls. */
  writes: number;
  bytes: number;
  /** Largest number of bytes written and not yet taken by the peer. */
  maxQueued: number;
  /** write() calls that returned false. */
  full: number;
}

export class PipeEnd implements StreamTransport {
  readonly remotePort: number;
  readonly localPort: number;
  handler: StreamHandler | null = null;
  peer!: PipeEnd;
  readonly stats: PipeStats = { writes: 0, bytes: 0, maxQueued: 0, full: 0 };
  /** Every chunk written, in order (tests decode it). */
  readonly sent: Buffer[] = [];
  paused = false;
  closed = false;
  /** Bytes written and not yet delivered to the peer's handler. */
  queued = 0;
  private busyUntil = 0;
  private needDrain = false;
  private ending = false;
  /** Bytes that arrived while the reader was paused. */
  private inbox: Buffer[] = [];
  private partitioned = false;

  constructor(
    private readonly opts: PipeOptions,
    readonly localAddress: string,
    readonly remoteAddress: string,
    port: number,
    peerPort: number,
  ) {
    this.localPort = port;
    this.remotePort = peerPort;
  }

  attach(handler: StreamHandler): void {
    this.handler = handler;
  }

  write(chunks: readonly Uint8Array[], done?: (err?: Error) => void): boolean {
    if (this.closed || this.ending) {
      if (done) queueMicrotask(() => done(new Error('write after end')));
      return false;
    }
    const buf = Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)));
    this.stats.writes++;
    this.stats.bytes += buf.length;
    this.sent.push(buf);
    if (buf.length === 0) {
      if (done) queueMicrotask(() => done());
      return true;
    }
    const clock = this.opts.clock;
    const now = clock.now();
    const rate = this.opts.bytesPerMs ?? Infinity;
    const max = this.opts.maxChunk ?? Infinity;
    this.queued += buf.length;
    if (this.queued > this.stats.maxQueued) this.stats.maxQueued = this.queued;
    // Each segment leaves when the previous one is serialised: with a bandwidth limit, a big write
    // trickles in over time (what cut-through relies on).
    for (let at = 0; at < buf.length; at += max) {
      const seg = buf.subarray(at, Math.min(buf.length, at + max));
      const last = at + max >= buf.length;
      const depart = Math.max(now, this.busyUntil) + (rate === Infinity ? 0 : seg.length / rate);
      this.busyUntil = depart;
      const arrive = depart + (this.opts.latencyMs ?? 0);
      clock.setTimer(arrive - now, () => {
        if (last && done) done();
        this.peer.arrive(seg);
      });
    }
    const ok = this.queued <= (this.opts.highWaterMark ?? 1 << 20);
    if (!ok) {
      this.needDrain = true;
      this.stats.full++;
    }
    return ok;
  }

  pauseReading(): void {
    this.paused = true;
  }

  resumeReading(): void {
    if (!this.paused) return;
    this.paused = false;
    this.opts.clock.setTimer(0, () => this.deliverInbox());
  }

  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    this.maybeFinish();
  }

  destroy(): void {
    if (this.closed) return;
    this.close(undefined);
    this.peer.close(new Error('connection reset by peer'));
  }

  /** Drop everything in both directions from now on, without closing (a cut cable). */
  partition(on = true): void {
    this.partitioned = on;
    this.peer.partitioned = on;
  }

  private arrive(buf: Buffer): void {
    if (this.closed) return;
    if (this.partitioned) {
      this.peer.taken(buf.length);
      return;
    }
    this.inbox.push(buf);
    if (!this.paused) this.deliverInbox();
  }

  private deliverInbox(): void {
    const max = this.opts.maxChunk ?? Infinity;
    while (!this.paused && !this.closed && this.inbox.length > 0) {
      let buf = this.inbox[0]!;
      if (buf.length > max) {
        this.inbox[0] = buf.subarray(max);
        buf = buf.subarray(0, max);
      } else this.inbox.shift();
      this.peer.taken(buf.length);
      this.handler?.onData(buf);
    }
  }

  /** The peer's handler took n of our bytes. */
  private taken(n: number): void {
    this.queued -= n;
    if (this.needDrain && this.queued <= (this.opts.lowWaterMark ?? (this.opts.highWaterMark ?? 1 << 20) / 2) && !this.closed) {
      this.needDrain = false;
      this.handler?.onDrain();
    }
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.ending && this.queued === 0 && !this.closed) {
      this.close(undefined);
      this.peer.close(undefined);
    }
  }

  private close(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.inbox = [];
    const h = this.handler;
    if (h) this.opts.clock.setTimer(0, () => h.onClose(err));
  }
}

let nextPort = 50000;

/** Two connected ends: a (the connecting side) and b (the accepting side). */
export function pipePair(opts: PipeOptions): { a: PipeEnd; b: PipeEnd } {
  const pa = nextPort++;
  const pb = nextPort++;
  const a = new PipeEnd(opts, '192.0.2.1', '192.0.2.2', pa, pb);
  const b = new PipeEnd(opts, '192.0.2.2', '192.0.2.1', pb, pa);
  a.peer = b;
  b.peer = a;
  return { a, b };
}
