/**
 * The sending half of a link: a bounded FIFO of admitted writes, the peer's credit, and the writes
 * in flight until their completion of reception.
 *
 *   send() --(room in the queue)--> queued --(credit)--> in flight --(RECEPTION_COMPLETE)--> done
 *
 * Pipelined: WRITE_COMMAND and its DATA leave together once the peer's window (bytes and commands,
 * minus what it has not released yet) has room. Fidelity: WRITE_COMMAND leaves once the command
 * window has room; DATA follows the peer's PREPARATION_COMPLETE. DATA is cut to the peer's
 * maximum payload. Issuing numbers are this link's own (+1 per write) unless the caller brings the
 * command identifier (a relay forwarding the source unit's).
 */
import type { CommandId } from '../processing-sequencer.js';
import { Ring } from '../../hal/ring.js';
import { PeerError, WriteTooLargeError } from './errors.js';
import { ErrorCode, Flag, FrameType, errorCodeName, type Frame } from './frame.js';
import type { LinkContext, LinkMode, WriteRequest, WriteResult, WriteTicket } from './link-types.js';

interface OutWrite {
  id: CommandId;
  tag: number;
  req: WriteRequest;
  data: Buffer;
  state: 'queued' | 'await-prep' | 'sent';
  resolve: (r: WriteResult) => void;
  reject: (e: Error) => void;
}

interface Waiting {
  req: WriteRequest;
  resolve: (t: WriteTicket) => void;
  reject: (e: Error) => void;
}

const u32 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

export class WriteSender {
  private lastIssue = 0;
  private lastTag = 0;
  private readonly waiting = new Ring<Waiting>();
  private readonly queue = new Ring<OutWrite>();
  private queueBytes = 0;
  private readonly inflight = new Map<number, OutWrite>();
  /** Tags of queued and in-flight writes (tags wrap after 2^32 commands). */
  private readonly tags = new Set<number>();
  /** Cumulative bytes / commands charged against the peer's window, and what it released. */
  private sentBytes = 0;
  private sentCommands = 0;
  private releasedBytes = 0;
  private releasedCommands = 0;

  constructor(
    private readonly ctx: LinkContext,
    readonly mode: LinkMode,
    private readonly limit: { bytes: number; commands: number },
  ) {}

  get issued(): number {
    return this.lastIssue;
  }

  get outstanding(): number {
    return this.inflight.size;
  }

  get queued(): number {
    return this.queue.length + this.waiting.length;
  }

  credit(): { bytes: number; commands: number } {
    if (!this.ctx.isOpen()) return { bytes: 0, commands: 0 };
    const p = this.ctx.peer();
    return {
      bytes: this.mode === 'pipelined' ? p.windowBytes - (this.sentBytes - this.releasedBytes) : Infinity,
      commands: p.windowCommands - (this.sentCommands - this.releasedCommands),
    };
  }

  send(req: WriteRequest): Promise<WriteTicket> {
    const bad = this.validate(req);
    if (bad !== null) return Promise.reject(bad);
    if (this.waiting.length === 0 && this.hasRoom(req.data.length)) return Promise.resolve(this.admit(req));
    return new Promise<WriteTicket>((resolve, reject) => this.waiting.push({ req, resolve, reject }));
  }

  /** Move queued writes out as credit allows, then let waiting send() calls in. */
  dispatch(): void {
    if (this.ctx.isOpen()) {
      const p = this.ctx.peer();
      const pipelined = this.mode === 'pipelined';
      for (let w = this.queue.peek(); w !== undefined; w = this.queue.peek()) {
        const n = w.data.length;
        const big = this.tooLarge(n);
        if (big !== null) {
          this.dequeue(w);
          this.tags.delete(w.tag);
          this.ctx.counters.writesFailed++;
          w.reject(big);
          continue;
        }
        if (this.sentCommands - this.releasedCommands >= p.windowCommands) break;
        if (pipelined && this.sentBytes - this.releasedBytes + n > p.windowBytes) break;
        this.dequeue(w);
        this.sentCommands++;
        if (pipelined) this.sentBytes += n;
        this.inflight.set(w.tag, w);
        const r = w.req;
        let flags = pipelined ? Flag.PIPELINED : 0;
        if (r.fua) flags |= Flag.FUA;
        if (r.ack === 'durable') flags |= Flag.ACK_DURABLE;
        this.ctx.out().command({
          type: FrameType.WRITE_COMMAND, flags, sourceUnit: w.id.sourceUnit, issue: w.id.issue, tag: w.tag,
          volume: r.volume, blocks: r.blocks, lba: r.lba, totalLength: r.totalLength ?? n, portionOffset: r.portionOffset ?? 0, length: n,
          forwardTo: r.forwardTo ?? 0,
        });
        if (pipelined) this.sendData(w);
        else w.state = 'await-prep';
      }
    }
    while (this.waiting.length > 0 && this.hasRoom(this.waiting.peek()!.req.data.length)) {
      const x = this.waiting.shift()!;
      const bad = this.ctx.isOpen() ? this.tooLarge(x.req.data.length) : null;
      if (bad !== null) x.reject(bad);
      else x.resolve(this.admit(x.req));
    }
    this.ctx.out().flush();
  }

  onPreparationComplete(f: Frame): void {
    const w = this.inflight.get(f.tag);
    if (w === undefined || w.state !== 'await-prep' || !sameId(w.id, f)) {
      this.ctx.fatal(ErrorCode.PROTOCOL, `PREPARATION_COMPLETE for tag ${f.tag} that awaits none`);
      return;
    }
    this.sendData(w);
    this.ctx.out().flush();
  }

  onReceptionComplete(f: Frame & { type: typeof FrameType.RECEPTION_COMPLETE }): void {
    const w = this.inflight.get(f.tag);
    if (w === undefined || w.state !== 'sent' || !sameId(w.id, f)) {
      this.ctx.fatal(ErrorCode.PROTOCOL, `RECEPTION_COMPLETE for tag ${f.tag} with no such write outstanding`);
      return;
    }
    if (!this.onCredit(f)) return;
    this.inflight.delete(f.tag);
    this.tags.delete(f.tag);
    this.ctx.counters.writesCompleted++;
    w.resolve({ id: w.id, durability: (f.flags & Flag.DURABLE) !== 0 ? 'durable' : 'received' });
    this.dispatch();
  }

  /** Cumulative released counters (RECEPTION_COMPLETE or CREDIT); false after a fatal lie. */
  onCredit(f: { releasedBytes: number; releasedCommands: number }): boolean {
    if (f.releasedBytes > this.sentBytes || f.releasedCommands > this.sentCommands) {
      this.ctx.fatal(ErrorCode.PROTOCOL, `credit returned beyond what was sent (${f.releasedBytes}/${this.sentBytes} bytes, ${f.releasedCommands}/${this.sentCommands} commands)`);
      return false;
    }
    if (f.releasedBytes > this.releasedBytes) this.releasedBytes = f.releasedBytes;
    if (f.releasedCommands > this.releasedCommands) this.releasedCommands = f.releasedCommands;
    return true;
  }

  /** A per-command ERROR from the peer: that write fails, the link goes on. */
  onCommandError(f: Frame & { type: typeof FrameType.ERROR }): void {
    const w = this.inflight.get(f.tag);
    if (w === undefined || !sameId(w.id, f)) {
      this.ctx.log().warn({ tag: f.tag, code: errorCodeName(f.code) }, 'peer error for an unknown command');
      return;
    }
    this.inflight.delete(f.tag);
    this.tags.delete(f.tag);
    this.ctx.counters.writesFailed++;
    w.reject(new PeerError(f.code, f.payload.toString('utf8'), false));
    this.dispatch();
  }

  /** The link ended: everything pending fails with `err`. */
  failAll(err: Error): void {
    for (let x = this.waiting.shift(); x !== undefined; x = this.waiting.shift()) x.reject(err);
    for (let w = this.queue.shift(); w !== undefined; w = this.queue.shift()) w.reject(err);
    for (const w of this.inflight.values()) w.reject(err);
    this.ctx.counters.writesFailed += this.inflight.size;
    this.inflight.clear();
    this.tags.clear();
    this.queueBytes = 0;
  }

  private validate(req: WriteRequest): Error | null {
    const n = req.data.length;
    const total = req.totalLength ?? n;
    const off = req.portionOffset ?? 0;
    if (n < 1 || !u32(n)) return new RangeError(`write: data length ${n} must be 1..2^32-1`);
    if (!u32(req.volume) || !u32(req.blocks) || req.blocks < 1 || !Number.isSafeInteger(req.lba) || req.lba < 0) {
      return new RangeError(`write: bad volume/LBA/blocks (${req.volume}, ${req.lba}, ${req.blocks})`);
    }
    if (!u32(total) || !u32(off) || off + n > total) return new RangeError(`write: portion ${off}+${n} outside a total of ${total}`);
    if (req.forwardTo !== undefined && !u32(req.forwardTo)) return new RangeError(`write: bad forwardTo ${req.forwardTo}`);
    if (req.id !== undefined && (!u32(req.id.sourceUnit) || !Number.isSafeInteger(req.id.issue) || req.id.issue < 0)) {
      return new RangeError(`write: bad command identifier ${req.id.sourceUnit}/${req.id.issue}`);
    }
    return this.ctx.isOpen() ? this.tooLarge(n) : null;
  }

  /** A write larger than the peer's window could never be admitted. */
  private tooLarge(n: number): Error | null {
    const window = this.ctx.peer().windowBytes;
    return n > window ? new WriteTooLargeError(n, window) : null;
  }

  private hasRoom(bytes: number): boolean {
    if (this.queue.length >= this.limit.commands) return false;
    return this.queue.length === 0 || this.queueBytes + bytes <= this.limit.bytes;
  }

  private admit(req: WriteRequest): WriteTicket {
    const id: CommandId = req.id ?? { sourceUnit: this.ctx.unitId, issue: ++this.lastIssue };
    let tag = this.lastTag;
    do tag = tag >= 0xffffffff ? 1 : tag + 1;
    while (this.tags.has(tag));
    this.lastTag = tag;
    this.tags.add(tag);
    let resolve!: (r: WriteResult) => void;
    let reject!: (e: Error) => void;
    const done = new Promise<WriteResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const data = Buffer.from(req.data.buffer, req.data.byteOffset, req.data.byteLength);
    this.queue.push({ id, tag, req, data, state: 'queued', resolve, reject });
    this.queueBytes += data.length;
    this.dispatch();
    return { id, tag, done };
  }

  private dequeue(w: OutWrite): void {
    this.queue.shift();
    this.queueBytes -= w.data.length;
  }

  private sendData(w: OutWrite): void {
    w.state = 'sent';
    const max = this.ctx.peer().maxPayload;
    for (let off = 0; off < w.data.length; off += max) {
      this.ctx.out().command({
        type: FrameType.DATA, sourceUnit: w.id.sourceUnit, issue: w.id.issue, tag: w.tag, offset: off,
        payload: w.data.subarray(off, Math.min(w.data.length, off + max)),
      });
    }
  }
}

export function sameId(id: CommandId, f: { sourceUnit: number; issue: number }): boolean {
  return id.sourceUnit === f.sourceUnit && id.issue === f.issue;
}
