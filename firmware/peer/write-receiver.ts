/**
 * The receiving half of a link: the buffer window this side holds for the peer's writes, the
 * writes being received, and the answers.
 *
 * Pipelined peer: a WRITE_COMMAND is admitted at once (the peer sent it within our window: more is
 * a fatal CREDIT_VIOLATION). Fidelity peer: commands wait, in arrival order, for window bytes; each
 * admission is answered with PREPARATION_COMPLETE ("completion of preparation for reception").
 * When all of a write's data is in, the handler's onWrite decides the RECEPTION_COMPLETE (with the
 * durability it reached) or a per-command ERROR. A buffer goes back to the window when onWrite
 * settles, or later if the handler retained it; the released bytes and commands go back to the
 * peer as cumulative counters in the next RECEPTION_COMPLETE, or in a CREDIT frame: at once when
 * what the peer has not been told of reaches a quarter of the window (bytes or commands), or the
 * window looks three quarters full from the peer's side, else
 * after CREDIT_DELAY_MS unless an answer carries it first (a relay releases each buffer when the
 * secondary confirms it, milliseconds after its answer: a CREDIT frame per write would cost the
 * link a frame, and both nodes a send and a wake-up, for credit the peer does not need yet).
 */
import { ErrorCode, Flag, FrameType, MAX_ERROR_TEXT, type Frame, type FrameInit } from './frame.js';
import { Inbound, type Durability } from './inbound-write.js';
import type { LinkContext, PeerHandler } from './link-types.js';
import { PeerError, WriteRefusal } from './errors.js';
import { Ring } from '../../hal/ring.js';
import type { Timer } from '../../hal/clock.js';
import { sameId } from './write-sender.js';

/** How long credit below a quarter of the window may wait for an answer to carry it, ms. */
export const CREDIT_DELAY_MS = 5;

export class WriteReceiver {
  private readonly inbound = new Map<number, Inbound>();
  private readonly prepQueue = new Ring<Inbound>();
  private usedBytes = 0;
  private usedCommands = 0;
  /** Cumulative releases, and what the peer has been told. */
  private releasedBytes = 0;
  private releasedCommands = 0;
  private toldBytes = 0;
  private toldCommands = 0;
  /** RECEPTION_COMPLETE / CREDIT frames queued: each will carry the latest counters. */
  private carriers = 0;
  private creditScheduled = false;
  private creditTimer: Timer | null = null;
  private ended = false;

  constructor(
    private readonly ctx: LinkContext,
    readonly window: { bytes: number; commands: number },
    private readonly handler: PeerHandler | undefined,
  ) {}

  get usage(): { bytes: number; commands: number } {
    return { bytes: this.usedBytes, commands: this.usedCommands };
  }

  onWriteCommand(f: Frame & { type: typeof FrameType.WRITE_COMMAND }): void {
    const ctx = this.ctx;
    const peerPipelined = ctx.peer().pipelined;
    const pipelined = (f.flags & Flag.PIPELINED) !== 0;
    if (pipelined !== peerPipelined) {
      ctx.fatal(ErrorCode.PROTOCOL, `WRITE_COMMAND ${pipelined ? 'pipelined' : 'fidelity'} on a ${peerPipelined ? 'pipelined' : 'fidelity'} link`);
      return;
    }
    if (f.length < 1 || f.blocks < 1 || f.portionOffset + f.length > f.totalLength) {
      ctx.fatal(ErrorCode.PROTOCOL, `WRITE_COMMAND tag ${f.tag}: portion ${f.portionOffset}+${f.length} of ${f.totalLength}, ${f.blocks} blocks`);
      return;
    }
    if (this.inbound.has(f.tag)) {
      ctx.fatal(ErrorCode.DUPLICATE_COMMAND, `tag ${f.tag} is already in progress`);
      return;
    }
    if (this.usedCommands + 1 > this.window.commands || (pipelined && this.usedBytes + f.length > this.window.bytes)) {
      ctx.fatal(ErrorCode.CREDIT_VIOLATION, `WRITE_COMMAND of ${f.length} bytes beyond the window (${this.usedBytes}/${this.window.bytes} bytes, ${this.usedCommands}/${this.window.commands} commands in use)`);
      return;
    }
    const inb = new Inbound(
      { sourceUnit: f.sourceUnit, issue: f.issue }, f.tag, f.volume, f.lba, f.blocks, (f.flags & Flag.FUA) !== 0,
      (f.flags & Flag.ACK_DURABLE) !== 0 ? 'durable' : 'received', f.forwardTo, f.totalLength, f.portionOffset, f.length,
      (w) => this.release(w),
    );
    this.usedCommands++;
    this.inbound.set(f.tag, inb);
    if (pipelined) {
      // The data is on its way; without a handler it is refused once it is in.
      this.admit(inb, false);
      return;
    }
    if (this.handler === undefined) this.refuse(inb, ErrorCode.UNSUPPORTED, 'this node takes no writes');
    else if (f.length > this.window.bytes) this.refuse(inb, ErrorCode.TOO_LARGE, `${f.length} bytes exceed the receive window of ${this.window.bytes}`);
    else {
      this.prepQueue.push(inb);
      this.admitPrepared();
    }
  }

  onData(f: Frame & { type: typeof FrameType.DATA }, corrupt: boolean): void {
    const inb = this.inbound.get(f.tag);
    if (inb === undefined || !inb.allocated || inb.delivered || !sameId(inb.id, f)) {
      this.ctx.fatal(ErrorCode.PROTOCOL, `DATA for tag ${f.tag} with no such write awaiting data`);
      return;
    }
    if (corrupt && !inb.corrupt) {
      inb.corrupt = true;
      inb.fail(new PeerError(ErrorCode.PAYLOAD_CRC, `DATA at offset ${f.offset} failed its CRC`, false));
    }
    if (!inb.accept(f.offset, f.payload.length, corrupt ? null : f.payload)) {
      this.ctx.fatal(ErrorCode.PROTOCOL, `DATA tag ${f.tag} [${f.offset}, +${f.payload.length}) overlaps or exceeds the write's ${inb.length} bytes`);
      return;
    }
    if (inb.complete) this.deliver(inb);
  }

  /** Just before a frame is encoded: credit carriers take the latest counters. */
  encoding(f: FrameInit): void {
    if (f.type !== FrameType.RECEPTION_COMPLETE && f.type !== FrameType.CREDIT) return;
    this.carriers--;
    f.releasedBytes = this.releasedBytes;
    f.releasedCommands = this.releasedCommands;
    this.toldBytes = this.releasedBytes;
    this.toldCommands = this.releasedCommands;
  }

  /** The link ended: whoever waits for data hears why; releases no longer count. */
  failAll(err: Error): void {
    this.ended = true;
    this.creditTimer?.cancel();
    this.creditTimer = null;
    for (const inb of this.inbound.values()) inb.fail(err);
    this.inbound.clear();
    while (this.prepQueue.shift() !== undefined);
  }

  /** Fidelity: allocate buffers in arrival order as the window frees, answering PREPARATION_COMPLETE. */
  private admitPrepared(): void {
    for (let inb = this.prepQueue.peek(); inb !== undefined; inb = this.prepQueue.peek()) {
      if (this.usedBytes + inb.length > this.window.bytes) break;
      this.prepQueue.shift();
      this.admit(inb, true);
    }
  }

  private admit(inb: Inbound, prepare: boolean): void {
    this.usedBytes += inb.length;
    inb.allocate();
    if (prepare) {
      this.control({ type: FrameType.PREPARATION_COMPLETE, sourceUnit: inb.id.sourceUnit, issue: inb.id.issue, tag: inb.tag });
    }
    if (this.handler?.onCommand) {
      try {
        this.handler.onCommand(inb);
      } catch (e) {
        this.ctx.log().error({ err: e, tag: inb.tag }, 'onCommand threw');
      }
    }
  }

  private deliver(inb: Inbound): void {
    inb.delivered = true;
    this.ctx.counters.writesReceived++;
    if (inb.corrupt) {
      this.refuse(inb, ErrorCode.PAYLOAD_CRC, 'payload CRC32C mismatch');
      return;
    }
    if (this.handler === undefined) {
      this.refuse(inb, ErrorCode.UNSUPPORTED, 'this node takes no writes');
      return;
    }
    let result: Promise<Durability>;
    try {
      result = Promise.resolve(this.handler.onWrite(inb));
    } catch (e) {
      result = Promise.reject(e);
    }
    result.then((d) => {
      if (d !== 'received' && d !== 'durable') throw new TypeError(`onWrite resolved with ${String(d)}`);
      if (this.ended) return;
      this.inbound.delete(inb.tag);
      if (!inb.retained) this.release(inb);
      this.control({
        type: FrameType.RECEPTION_COMPLETE, flags: d === 'durable' ? Flag.DURABLE : 0, sourceUnit: inb.id.sourceUnit, issue: inb.id.issue, tag: inb.tag,
        releasedBytes: 0, releasedCommands: 0,
      });
    }).catch((e: unknown) => {
      if (this.ended || !this.inbound.has(inb.tag)) return;
      this.ctx.log().warn({ err: e, id: inb.id }, 'write handler failed');
      this.refuse(inb, e instanceof WriteRefusal ? (e.code as ErrorCode) : ErrorCode.WRITE_FAILED, e instanceof Error ? e.message : String(e));
    });
  }

  /** Drop a command with a per-command ERROR; its buffer and credit go back. */
  private refuse(inb: Inbound, code: ErrorCode, text: string): void {
    this.inbound.delete(inb.tag);
    inb.fail(new PeerError(code, text, false));
    this.release(inb);
    this.control({ type: FrameType.ERROR, sourceUnit: inb.id.sourceUnit, issue: inb.id.issue, tag: inb.tag, code, payload: Buffer.from(text.slice(0, MAX_ERROR_TEXT)) });
  }

  private release(inb: Inbound): void {
    if (inb.released || this.ended) return;
    inb.released = true;
    this.usedCommands--;
    this.releasedCommands++;
    if (inb.allocated) {
      this.usedBytes -= inb.length;
      if (this.ctx.peer().pipelined) this.releasedBytes += inb.length;
    }
    // Its buffer is no longer ours to read: a handler that kept a reference sees it emptied.
    inb.data = Buffer.alloc(0);
    this.admitPrepared();
    this.scheduleCredit();
  }

  private control(f: FrameInit): void {
    if (f.type === FrameType.RECEPTION_COMPLETE || f.type === FrameType.CREDIT) this.carriers++;
    this.ctx.out().control(f);
    this.ctx.out().flush();
  }

  /**
   * Return credit at the end of this turn if the peer lacks a quarter of the window, else after
   * CREDIT_DELAY_MS; unless a queued (or later) answer carries it anyway.
   */
  private scheduleCredit(): void {
    if (this.creditScheduled) return;
    this.creditScheduled = true;
    queueMicrotask(() => {
      this.creditScheduled = false;
      if (this.ended || !this.ctx.isOpen() || this.carriers > 0 || this.told()) return;
      const bytes = this.releasedBytes - this.toldBytes;
      const commands = this.releasedCommands - this.toldCommands;
      // What the peer believes is in use: a window it sees three quarters full may be holding it back.
      const seenBytes = this.usedBytes + bytes;
      const seenCommands = this.usedCommands + commands;
      if (bytes * 4 >= this.window.bytes || commands * 4 >= this.window.commands
        || seenBytes * 4 >= this.window.bytes * 3 || seenCommands * 4 >= this.window.commands * 3) {
        this.sendCredit();
        return;
      }
      this.creditTimer ??= this.ctx.clock.setTimer(CREDIT_DELAY_MS, () => {
        this.creditTimer = null;
        if (this.ended || !this.ctx.isOpen() || this.carriers > 0 || this.told()) return;
        this.sendCredit();
      });
    });
  }

  /** The peer knows of every release. */
  private told(): boolean {
    return this.releasedBytes === this.toldBytes && this.releasedCommands === this.toldCommands;
  }

  private sendCredit(): void {
    this.creditTimer?.cancel();
    this.creditTimer = null;
    this.control({ type: FrameType.CREDIT, sourceUnit: this.ctx.unitId, releasedBytes: 0, releasedCommands: 0 });
  }
}
