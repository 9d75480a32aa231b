/**
 * One write command on the receiving side of a link: its buffer (bounded by the receive window
 * the receiver advertised), which bytes arrived, and the write position a cut-through forwarder
 * may read up to (000-E2: the read position never overtakes the write position, [0081]).
 */
import assert from 'node:assert';
import type { CommandId } from '../processing-sequencer.js';

export type Durability = 'received' | 'durable';

/** What the receiving side's handler sees. */
export interface InboundWrite {
  readonly id: CommandId;
  /** The sender's handle of this command on this link. */
  readonly tag: number;
  readonly volume: number;
  readonly lba: number;
  readonly blocks: number;
  readonly fua: boolean;
  /** The acknowledgement the sender asked for. */
  readonly ack: Durability;
  /** Unit id the sender wants the data forwarded to (0: none / the receiver decides). */
  readonly forwardTo: number;
  /** Bytes of the whole command; this write carries [portionOffset, portionOffset + length). */
  readonly totalLength: number;
  readonly portionOffset: number;
  readonly length: number;
  /** This command's bytes; valid in [0, received) while data is still arriving. */
  readonly data: Buffer;
  /** The write position: bytes [0, received) have arrived (contiguous prefix). */
  readonly received: number;
  /** Resolves once the first `bytes` bytes arrived; rejects if the command or the link fails first. */
  whenReceived(bytes: number): Promise<void>;
  /**
   * Keep the buffer (and the sender's credit for it) after onWrite settles, e.g. a relay holding the
   * data until the secondary confirmed it ([0074]). Call before onWrite settles; the returned
   * function gives the buffer back.
   */
  retain(): () => void;
}

interface Waiter {
  bytes: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class Inbound implements InboundWrite {
  data: Buffer = Buffer.alloc(0);
  received = 0;
  /** Buffer allocated (pipelined: at once; fidelity: when PREPARATION_COMPLETE is sent). */
  allocated = false;
  /** A DATA frame of this command failed its payload CRC. */
  corrupt = false;
  /** onWrite was called. */
  delivered = false;
  retained = false;
  released = false;
  /** Bytes accounted, including corrupt frames' (the command ends when all arrived). */
  accounted = 0;
  /** Received ranges beyond the contiguous prefix, [start, end), sorted, disjoint. */
  private gaps: Array<[number, number]> = [];
  private waiters: Waiter[] = [];
  private failure: Error | null = null;

  constructor(
    readonly id: CommandId,
    readonly tag: number,
    readonly volume: number,
    readonly lba: number,
    readonly blocks: number,
    readonly fua: boolean,
    readonly ack: Durability,
    readonly forwardTo: number,
    readonly totalLength: number,
    readonly portionOffset: number,
    readonly length: number,
    private readonly release: (w: Inbound) => void,
  ) {}

  get complete(): boolean {
    return this.accounted === this.length;
  }

  allocate(): void {
    assert(!this.allocated, 'inbound write allocated twice');
    // Not zeroed: only [0, received) is ever read, and a write completes only once all of it was
    // written (a corrupt frame's range stays unwritten, but that write is refused). At replication
    // rates the zeroing was a pass over every byte for nothing.
    this.data = Buffer.allocUnsafe(this.length);
    this.allocated = true;
  }

  /**
   * Take in [offset, offset + bytes.length) (bytes null: a corrupt frame, counted but not stored).
   * False when the range overlaps data already received or lies outside the command.
   */
  accept(offset: number, length: number, bytes: Buffer | null): boolean {
    const end = offset + length;
    if (length <= 0 || end > this.length) return false;
    if (offset < this.received) return false;
    let i = 0;
    while (i < this.gaps.length && this.gaps[i]![1] <= offset) i++;
    if (i < this.gaps.length && this.gaps[i]![0] < end) return false;
    if (bytes !== null) bytes.copy(this.data, offset);
    this.accounted += length;
    this.gaps.splice(i, 0, [offset, end]);
    // Merge into the contiguous prefix.
    while (this.gaps.length > 0 && this.gaps[0]![0] === this.received) this.received = this.gaps.shift()![1];
    if (!this.corrupt) this.wake();
    return true;
  }

  whenReceived(bytes: number): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (bytes <= this.received && !this.corrupt) return Promise.resolve();
    if (bytes > this.length) return Promise.reject(new RangeError(`whenReceived(${bytes}) beyond the command's ${this.length} bytes`));
    return new Promise((resolve, reject) => this.waiters.push({ bytes, resolve, reject }));
  }

  retain(): () => void {
    assert(!this.released, `write #${this.id.issue}: retain() after the buffer was released`);
    this.retained = true;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.release(this);
    };
  }

  /** The command or the link failed: whoever waits for data hears it. */
  fail(e: Error): void {
    if (this.failure !== null) return;
    this.failure = e;
    const w = this.waiters;
    this.waiters = [];
    for (const x of w) x.reject(e);
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const keep: Waiter[] = [];
    for (const x of this.waiters) {
      if (x.bytes <= this.received) x.resolve();
      else keep.push(x);
    }
    this.waiters = keep;
  }
}
