/**
 * A link's output: frames get their sequence number and CRCs as they go to the transport, in
 * batches (one transport.write() per burst). Control frames (answers: PREPARATION_COMPLETE,
 * RECEPTION_COMPLETE, CREDIT, HEARTBEAT, ERROR) go before bulk frames (our WRITE_COMMANDs and
 * DATA). When transport.write() reports a full send buffer, nothing more is written until onDrain;
 * when the answers we owe pile up meanwhile (the peer sends but does not read), we stop reading the
 * peer until they are out: transport backpressure both ways.
 */
import type { Clock } from '../../hal/clock.js';
import type { StreamTransport } from '../../hal/transport.js';
import { Ring } from '../../hal/ring.js';
import { encodeFrame, frameTypeName, type FrameInit } from './frame.js';

/**
 * Bytes of frames handed to transport.write() at once. Small enough that the send buffer overshoots
 * its high-water mark by little once write() reports it full; big enough for one syscall per burst.
 */
export const BATCH_BYTES = 64 * 1024;
/** Control frames queued beyond which we stop reading the peer. */
const CTRL_PAUSE = 1024;

export interface FrameWriterHooks {
  /** Just before a frame is encoded (to fill in the latest cumulative counters). */
  encoding(f: FrameInit): void;
  /** transport.write() threw. */
  failed(e: unknown): void;
}

export class FrameWriter {
  framesSent: Record<string, number> = {};
  bytesSent = 0;
  transportWrites = 0;
  transportFull = 0;
  /** Clock time of the last transport.write(). */
  lastSentAt: number;
  private seq = 0;
  private readonly ctrl = new Ring<FrameInit>();
  private readonly bulk = new Ring<FrameInit>();
  private blocked = false;
  private pumping = false;
  private held = 0;
  private deferred = false;
  private readPaused = false;
  private closed = false;

  constructor(
    private readonly transport: StreamTransport,
    private readonly clock: Clock,
    private readonly hooks: FrameWriterHooks,
  ) {
    this.lastSentAt = clock.now();
  }

  /** Queue an answer (goes before bulk frames). */
  control(f: FrameInit): void {
    this.ctrl.push(f);
  }

  /** Queue a frame of one of our commands (WRITE_COMMAND, DATA): after the answers. */
  command(f: FrameInit): void {
    this.bulk.push(f);
  }

  /** Collect frames without writing until release() (answers to one received chunk go out together). */
  hold(): void {
    this.held++;
  }

  release(): void {
    if (--this.held === 0 && this.deferred) {
      this.deferred = false;
      this.flush();
    }
  }

  /** Write what is queued, as far as the transport takes it. */
  flush(): void {
    if (this.held > 0) {
      this.deferred = true;
      return;
    }
    if (this.pumping || this.closed) return;
    this.pumping = true;
    try {
      while (!this.blocked && !this.closed && (this.ctrl.length > 0 || this.bulk.length > 0)) {
        const chunks: Buffer[] = [];
        let bytes = 0;
        while (bytes < BATCH_BYTES && (this.ctrl.length > 0 || this.bulk.length > 0)) {
          const f = this.ctrl.length > 0 ? this.ctrl.shift()! : this.bulk.shift()!;
          for (const c of this.encode(f)) {
            chunks.push(c);
            bytes += c.length;
          }
        }
        if (!this.write(chunks, bytes)) this.blocked = true;
      }
    } finally {
      this.pumping = false;
    }
    this.updateReadPause();
  }

  /** Write one frame past the queues (a fatal ERROR on the way out). */
  writeNow(f: FrameInit): void {
    if (this.closed) return;
    const chunks = this.encode(f);
    this.write(chunks, chunks.reduce((n, c) => n + c.length, 0));
  }

  /** The transport drained. */
  drained(): void {
    this.blocked = false;
    this.flush();
  }

  /** Drop everything queued; write nothing more. */
  close(): void {
    this.closed = true;
    while (this.ctrl.shift() !== undefined);
    while (this.bulk.shift() !== undefined);
    if (this.readPaused) {
      this.readPaused = false;
      this.transport.resumeReading();
    }
  }

  private encode(f: FrameInit): Buffer[] {
    this.hooks.encoding(f);
    const name = frameTypeName(f.type);
    this.framesSent[name] = (this.framesSent[name] ?? 0) + 1;
    const out = encodeFrame(f, this.seq);
    this.seq = (this.seq + 1) >>> 0;
    return out;
  }

  private write(chunks: Buffer[], bytes: number): boolean {
    this.transportWrites++;
    this.bytesSent += bytes;
    this.lastSentAt = this.clock.now();
    try {
      const ok = this.transport.write(chunks);
      if (!ok) this.transportFull++;
      return ok;
    } catch (e) {
      this.closed = true;
      this.hooks.failed(e);
      return false;
    }
  }

  private updateReadPause(): void {
    if (this.closed) return;
    if (!this.readPaused && this.ctrl.length > CTRL_PAUSE) {
      this.readPaused = true;
      this.transport.pauseReading();
    } else if (this.readPaused && this.ctrl.length <= CTRL_PAUSE / 2) {
      this.readPaused = false;
      this.transport.resumeReading();
    }
  }
}
