/**
 * The output side of a connection: PDUs are encoded into chunks and handed to the transport in
 * batches, one write() per batch. While the transport is above its high-water mark the batch
 * grows in memory until onDrain (bounded by the CmdSN window: each task answers once).
 */
import type { StreamTransport } from '../../hal/transport.js';
import { encodePdu } from './pdu.js';

export class PduWriter {
  headerDigest = false;
  dataDigest = false;

  private out: Uint8Array[] = [];
  private outDone: (() => void)[] = [];
  /** While set, flushes wait for an explicit flush() (the end of an onData burst). */
  private holding = false;
  private flushQueued = false;
  private full = false;
  private closed = false;

  constructor(
    private readonly transport: StreamTransport,
    /** The transport became full (true) or drained (false). */
    private readonly onFull: (full: boolean) => void,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** True while the transport wants us to stop producing. */
  get blocked(): boolean {
    return this.full;
  }

  /** Queue one PDU; `done` runs once its bytes are written (or dropped with the connection). */
  enqueue(bhs: Buffer, data: Uint8Array | undefined, done?: () => void): void {
    if (this.closed) {
      done?.();
      return;
    }
    encodePdu(this.out, bhs, data, this.headerDigest, this.dataDigest);
    if (done) this.outDone.push(done);
    if (!this.holding && !this.flushQueued) {
      // Completions that land in the same turn go out in one write.
      this.flushQueued = true;
      queueMicrotask(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
  }

  /** Gather everything queued until release() into one batch. */
  hold(): void {
    this.holding = true;
  }

  release(): void {
    this.holding = false;
    this.flush();
  }

  /** Write the batch; `force` writes even when full (a last PDU before closing). */
  flush(force = false): void {
    if (this.out.length === 0 || this.closed || (this.full && !force)) return;
    const chunks = this.out;
    const dones = this.outDone;
    this.out = [];
    this.outDone = [];
    const done = dones.length === 0 ? undefined : () => {
      for (const d of dones) d();
    };
    let ok: boolean;
    try {
      ok = this.transport.write(chunks, done);
    } catch (e) {
      done?.();
      this.onError(e);
      return;
    }
    if (!ok && !this.full) {
      this.full = true;
      this.onFull(true);
    }
  }

  /** The transport drained: send what piled up. */
  drained(): void {
    if (!this.full) return;
    this.full = false;
    this.flush();
    if (!this.full) this.onFull(false);
  }

  /** The connection is gone: nothing more is written; owners of queued buffers get them back. */
  close(): void {
    this.closed = true;
    const dones = this.outDone;
    this.out = [];
    this.outDone = [];
    for (const d of dones) d();
  }
}
