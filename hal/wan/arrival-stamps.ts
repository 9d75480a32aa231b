/**
 * Arrival stamps: the receiving side of a WAN link times the delivery, so the real transport's own
 * latency is hidden inside the emulated delay instead of added to it.
 *
 * Without stamps the sender holds each byte until its arrival time and then writes it to TCP; the
 * far end's handler gets it one loopback hop later, and on a small VM that hop is the wake-up of an
 * idle process: 0.1-0.5 ms at the median, with a long tail. A fixed compensation (handing bytes over
 * early by a calibrated latency) cannot follow a tail, and would deliver early whenever the hop is
 * quick. With stamps the sender hands bytes over up to `horizonMs` before their arrival, each run
 * of them prefixed with its arrival time, and the receiver holds them until that time on its own
 * precise clock: it is awake (woken by the data, well before) when the time comes, and never
 * delivers before it.
 *
 * Clocks: both ends of a `kura up` topology run on one machine, whose CLOCK_MONOTONIC every process
 * shares. Each stream direction starts with a preamble naming the sender's clock domain (the boot id
 * on Linux); a receiver in the same domain delivers at the stamped time exactly. A receiver in
 * another domain (another machine) cannot compare clocks, and holds each run for the time it had
 * left when it was handed over (counted from when it got it: late by the transport, never early).
 *
 * Wire format, per direction: preamble "KWAN" u8 version u8[3] zero, 16-byte domain id; then
 * records: u32 payload length, f64 arrival time, f64 handover time (ms on the shared clock), payload.
 */
import type { Clock, Timer } from '../clock.js';
import { Ring } from '../ring.js';

/**
 * The horizon topologies use: longer than a loopback hop's tail on a busy small machine (p99 a few
 * ms), so the receiver is awake and holding the bytes when they are due; a partition cuts the link
 * this much late for what was already handed over.
 */
export const DEFAULT_HORIZON_MS = 2;

export interface ArrivalStampOptions {
  /** The sender's and receiver's clock domain: equal ids share one monotonic clock. 16 bytes. */
  domain: Uint8Array;
  /** Added to clock.now() to read the domain's shared clock, ms. */
  sharedOffsetMs: number;
  /** How long before their arrival bytes are handed to the real transport, ms. */
  horizonMs: number;
}

const MAGIC = 0x4b57414e; // "KWAN"
const VERSION = 1;
export const PREAMBLE_BYTES = 24;
export const RECORD_HEADER_BYTES = 20;
/** A record longer than this is not ours: the sender cuts records per handover batch. */
const MAX_RECORD_BYTES = 256 * 1024 * 1024;
/**
 * Bytes held for later beyond which the receiver stops reading the transport until half of them
 * are delivered (a horizon at 10 Gb/s is 2.5 MB; more comes from an unlimited-bandwidth link
 * carrying one big write, all of it due at once).
 */
export const MAX_HELD_BYTES = 64 * 1024 * 1024;
/** A delivery is due when the clock is within this of it (float rounding). */
const EPSILON_MS = 1e-6;

export function preamble(o: ArrivalStampOptions): Buffer {
  if (o.domain.length !== 16) throw new RangeError(`arrival stamps: a clock domain id is 16 bytes, not ${o.domain.length}`);
  const b = Buffer.alloc(PREAMBLE_BYTES);
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt8(VERSION, 4);
  b.set(o.domain, 8);
  return b;
}

export function recordHeader(length: number, arrivalShared: number, handoverShared: number): Buffer {
  const b = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
  b.writeUInt32BE(length, 0);
  b.writeDoubleBE(arrivalShared, 4);
  b.writeDoubleBE(handoverShared, 12);
  return b;
}

export interface StampStats {
  /** Bytes received and not yet due, and the most at any time. */
  heldBytes: number;
  maxHeldBytes: number;
  /** Records that came after their arrival time, and by how much at most (the horizon was too short). */
  lateRecords: number;
  maxLateMs: number;
}

/**
 * The receiving half: parses the preamble and records out of what the real transport delivers and
 * hands each payload to `deliver` at its arrival time, in order. While paused nothing is delivered.
 */
export class StampReceiver {
  readonly stats: StampStats = { heldBytes: 0, maxHeldBytes: 0, lateRecords: 0, maxLateMs: 0 };
  private sameDomain = false;
  private gotPreamble = false;
  /** Bytes of a preamble or record header still being assembled. */
  private partial: Buffer = Buffer.alloc(PREAMBLE_BYTES);
  private partialLen = 0;
  /** Payload bytes still to come of the current record, and their local due time. */
  private payloadLeft = 0;
  private payloadDue = 0;

  /** Payload received and not yet delivered, with its local due time, in arrival order. */
  private held = new Ring<{ chunk: Buffer; due: number }>();
  private timer: Timer | undefined;
  private timerDue = 0;
  private paused = false;
  private failed = false;
  private isFull = false;
  /** Called once when nothing is held any more (a graceful close waits for it). */
  private onEmpty: (() => void) | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly o: ArrivalStampOptions,
    private readonly deliver: (chunk: Buffer) => void,
    private readonly fail: (err: Error) => void,
    /** Holding more than MAX_HELD_BYTES (true) or down to half of it again (false). */
    private readonly full: (on: boolean) => void = () => {},
  ) {}

  get empty(): boolean {
    return this.held.length === 0;
  }

  receive(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && !this.failed) {
      if (this.payloadLeft > 0) {
        const n = Math.min(this.payloadLeft, chunk.length - off);
        this.hold(off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n), this.payloadDue);
        this.payloadLeft -= n;
        off += n;
        continue;
      }
      const want = this.gotPreamble ? RECORD_HEADER_BYTES : PREAMBLE_BYTES;
      const n = Math.min(want - this.partialLen, chunk.length - off);
      chunk.copy(this.partial, this.partialLen, off, off + n);
      this.partialLen += n;
      off += n;
      if (this.partialLen < want) break;
      this.partialLen = 0;
      if (this.gotPreamble) this.header();
      else this.readPreamble();
    }
    this.flush();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    // Not from inside the caller's resumeReading(): its handler may not expect data re-entrantly.
    queueMicrotask(() => this.flush());
  }

  /** Run `fn` when every held byte has been delivered (now, if none is held). */
  whenEmpty(fn: () => void): void {
    if (this.empty) fn();
    else this.onEmpty = fn;
  }

  /** Forget what is held (the connection is gone): it never arrived. */
  drop(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.held = new Ring();
    this.stats.heldBytes = 0;
    this.onEmpty = undefined;
  }

  private readPreamble(): void {
    const p = this.partial;
    if (p.readUInt32BE(0) !== MAGIC || p.readUInt8(4) !== VERSION) {
      this.refuse(`the peer did not start with arrival stamps (version ${VERSION}): both ends of an emulated link must run kura with the same WAN options`);
      return;
    }
    this.gotPreamble = true;
    this.sameDomain = Buffer.compare(p.subarray(8, 24), Buffer.from(this.o.domain)) === 0;
    this.partial = Buffer.alloc(RECORD_HEADER_BYTES);
  }

  private header(): void {
    const p = this.partial;
    const length = p.readUInt32BE(0);
    const arrival = p.readDoubleBE(4);
    const handover = p.readDoubleBE(12);
    if (length > MAX_RECORD_BYTES || !Number.isFinite(arrival) || !Number.isFinite(handover)) {
      this.refuse(`a malformed arrival-stamp record (length ${length}, arrival ${arrival})`);
      return;
    }
    const now = this.clock.now();
    // Same clock: the stamped time. Another machine's clock: what was left of the delay at handover.
    this.payloadDue = this.sameDomain ? arrival - this.o.sharedOffsetMs : now + Math.max(0, arrival - handover);
    // A sender hands bytes over at most its horizon ahead (the same setting on every node; twice
    // it, and 10 ms, for clock reads and scheduling): a record due later would be held for nothing.
    const ahead = this.payloadDue - now;
    if (ahead > 2 * this.o.horizonMs + 10) {
      this.refuse(`an arrival-stamp record due ${ahead.toFixed(1)} ms ahead, beyond the ${this.o.horizonMs} ms horizon: both ends of a link must run kura with the same WAN options on one machine's clock`);
      return;
    }
    this.payloadLeft = length;
    const late = now - this.payloadDue;
    if (late > 0.001) {
      this.stats.lateRecords++;
      if (late > this.stats.maxLateMs) this.stats.maxLateMs = late;
    }
  }

  /** The peer's bytes cannot be trusted any more: stop, and say why. */
  private refuse(why: string): void {
    this.failed = true;
    this.fail(new Error(`WAN link: ${why}`));
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.flush();
  };

  private hold(chunk: Buffer, due: number): void {
    this.held.push({ chunk, due });
    this.stats.heldBytes += chunk.length;
    if (this.stats.heldBytes > this.stats.maxHeldBytes) this.stats.maxHeldBytes = this.stats.heldBytes;
    if (!this.isFull && this.stats.heldBytes > MAX_HELD_BYTES) {
      this.isFull = true;
      this.full(true);
    }
  }

  private readonly flush = (): void => {
    for (let next = this.held.peek(); next !== undefined && !this.paused && !this.failed; next = this.held.peek()) {
      const due = next.due;
      if (due > this.clock.now() + EPSILON_MS) {
        if (this.timer !== undefined && this.timerDue === due) return;
        this.timer?.cancel();
        this.timerDue = due;
        this.timer = this.clock.setTimer(due - this.clock.now(), this.fire);
        return;
      }
      this.held.shift();
      const c = next.chunk;
      this.stats.heldBytes -= c.length;
      if (this.isFull && this.stats.heldBytes <= MAX_HELD_BYTES / 2) {
        this.isFull = false;
        this.full(false);
      }
      this.deliver(c);
    }
    this.timer?.cancel();
    this.timer = undefined;
    if (this.empty && this.onEmpty) {
      const fn = this.onEmpty;
      this.onEmpty = undefined;
      fn();
    }
  };
}

