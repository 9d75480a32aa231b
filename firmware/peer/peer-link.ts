/**
 * PeerLink: one authenticated connection between two nodes (storage unit, relay), sans-IO over a
 * StreamTransport. Both ends send and receive writes; each direction has its own mode, declared in
 * the handshake:
 *
 * - fidelity (the seed's handshake per write, [0066]-[0073]):
 *     WRITE_COMMAND -> PREPARATION_COMPLETE (the receiver allocated the buffer area) -> DATA ->
 *     RECEPTION_COMPLETE. Two round trips per write.
 * - pipelined (default): WRITE_COMMAND and its DATA go out together. The receiver's buffer
 *     admission is known in advance from credits: the receiver advertises a window (bytes and
 *     commands) it holds for this peer and returns credit as it frees buffers. One round trip.
 *
 * This file is the link's life: attach, authenticate (handshake.ts), route frames, heartbeat,
 * tear down. The sending half is write-sender.ts, the receiving half write-receiver.ts, the output
 * frame-writer.ts. Everything the peer gets wrong (framing, sequence, credit, state) is fatal:
 * ERROR(FATAL), close, every pending write fails with LinkDownError; a DATA frame with a bad
 * payload CRC spoils only its command. Nothing thrown by a frame handler escapes onData.
 *
 * Liveness: a HEARTBEAT goes out when nothing was sent for heartbeatMs (the peer answers it: the
 * round trip is measured); no frame from the peer for timeoutMs is "link down". The replication
 * layer above decides about retries, other relays, and the identifiers' dedupe (000-E4).
 */
import assert from 'node:assert';
import type { Clock, Timer } from '../../hal/clock.js';
import type { StreamHandler, StreamTransport } from '../../hal/transport.js';
import { nullLogger, type Logger } from '../../hal/types.js';
import { LinkClosedError, LinkDownError, PeerError } from './errors.js';
import {
  ANY_VOLUME, DEFAULT_MAX_PAYLOAD, ErrorCode, Flag, FrameType, MAX_ERROR_TEXT, errorCodeName, frameTypeName, type Frame, type FrameInit,
} from './frame.js';
import { FrameDecoder, type FrameError } from './frame-decoder.js';
import { FrameWriter } from './frame-writer.js';
import { Handshake, type PeerInfo } from './handshake.js';
import type {
  LinkContext, LinkMode, PeerLinkOptions, PeerLinkStats, PullRequest, WriteRequest, WriteResult, WriteTicket,
} from './link-types.js';
import { WriteReceiver } from './write-receiver.js';
import { WriteSender } from './write-sender.js';

export type { Durability, InboundWrite } from './inbound-write.js';
export type { PeerInfo } from './handshake.js';
export type {
  LinkMode, PeerHandler, PeerLinkOptions, PeerLinkStats, PullRequest, WriteRequest, WriteResult, WriteTicket,
} from './link-types.js';

export class PeerLink {
  readonly unitId: number;
  readonly mode: LinkMode;
  /** Resolves when authenticated; rejects if the link fails first. */
  readonly ready: Promise<PeerInfo>;
  /** Resolves (never rejects) with why the link ended. */
  readonly closed: Promise<Error>;

  private log: Logger;
  private readonly clock: Clock;
  private readonly opts: PeerLinkOptions;
  private readonly maxPayload: number;
  private readonly heartbeatMs: number;
  private readonly timeoutMs: number;
  private readonly handshake: Handshake;
  private readonly decoder: FrameDecoder;
  private readonly sender: WriteSender;
  private readonly receiver: WriteReceiver;
  private out: FrameWriter | null = null;
  private transport: StreamTransport | null = null;
  private state: 'idle' | 'handshake' | 'open' | 'closed' = 'idle';
  private peer: PeerInfo | null = null;
  private resolveReady!: (p: PeerInfo) => void;
  private rejectReady!: (e: Error) => void;
  private resolveClosed!: (e: Error) => void;
  private closeError: Error | null = null;
  private recvSeq = 0;

  private timer: Timer | null = null;
  private handshakeTimer: Timer | null = null;
  private lastRecvAt = 0;
  private lastPingAt = -Infinity;
  private pingNonce = 0;
  private pingSentAt = 0;

  private readonly counters: PeerLinkStats = {
    framesSent: {}, framesReceived: {}, bytesSent: 0, bytesReceived: 0, transportWrites: 0, transportFull: 0,
    writesCompleted: 0, writesFailed: 0, writesReceived: 0, rtt: undefined,
  };

  constructor(opts: PeerLinkOptions) {
    this.opts = opts;
    this.clock = opts.clock;
    this.unitId = opts.unitId;
    this.mode = opts.mode ?? 'pipelined';
    const window = opts.receiveWindow ?? { bytes: 4 << 20, commands: 64 };
    const queue = opts.sendQueue ?? { bytes: 4 << 20, commands: 64 };
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.heartbeatMs = opts.heartbeatMs ?? 1000;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    assert(window.bytes > 0 && window.bytes <= 0xffffffff && window.commands > 0, 'PeerLink: bad receive window');
    assert(queue.commands > 0 && queue.bytes > 0, 'PeerLink: bad send queue bound');
    assert(Number.isInteger(opts.unitId) && opts.unitId > 0 && opts.unitId <= 0xffffffff, 'PeerLink: unit id must be a u32 > 0');
    this.log = (opts.logger ?? nullLogger).child({ unit: opts.unitId, role: opts.role });
    this.handshake = new Handshake({
      role: opts.role,
      unitId: opts.unitId,
      key: opts.key,
      expectedPeer: opts.expectedPeer,
      random: opts.random,
      versions: opts.versions,
      local: { maxPayload: this.maxPayload, windowBytes: window.bytes, windowCommands: window.commands, pipelined: this.mode === 'pipelined' },
    });
    this.decoder = new FrameDecoder({ maxPayload: this.maxPayload, versions: opts.versions });
    const ctx: LinkContext = {
      clock: this.clock,
      unitId: this.unitId,
      counters: this.counters,
      out: () => this.output,
      log: () => this.log,
      peer: () => this.peer!,
      isOpen: () => this.state === 'open',
      fatal: (code, text) => this.fatal(code, text),
    };
    this.sender = new WriteSender(ctx, this.mode, queue);
    this.receiver = new WriteReceiver(ctx, window, opts.handler);
    this.ready = new Promise<PeerInfo>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // Whoever does not await ready learns of a failure from closed / the writes.
    this.ready.catch(() => {});
    this.closed = new Promise<Error>((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  // ---- public API ------------------------------------------------------------------------------

  /** Bind to a connected transport; returns the handler for its events. */
  attach(transport: StreamTransport): StreamHandler {
    assert(this.state === 'idle', 'PeerLink.attach: already attached');
    this.transport = transport;
    this.out = new FrameWriter(transport, this.clock, {
      encoding: (f) => this.receiver.encoding(f),
      failed: (e) => {
        this.log.error({ err: e }, 'transport write threw');
        this.teardown(new LinkDownError('transport write failed', e));
        transport.destroy();
      },
    });
    this.state = 'handshake';
    this.log = this.log.child({ remote: `${transport.remoteAddress}:${transport.remotePort}` });
    this.lastRecvAt = this.clock.now();
    this.handshakeTimer = this.clock.setTimer(this.opts.handshakeTimeoutMs ?? 10_000, () => {
      this.handshakeTimer = null;
      if (this.state === 'handshake') this.fatal(ErrorCode.TIMEOUT, 'handshake timed out');
    });
    for (const f of this.handshake.start()) this.out.control(f);
    this.out.flush();
    return {
      onData: (chunk) => this.onData(chunk),
      onDrain: () => this.out?.drained(),
      onClose: (err) => this.onTransportClose(err),
    };
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  get peerInfo(): PeerInfo | null {
    return this.peer;
  }

  /** The last issuing number this link handed out. */
  get issued(): number {
    return this.sender.issued;
  }

  /** Writes sent and not yet completed. */
  get outstanding(): number {
    return this.sender.outstanding;
  }

  /** Writes admitted to the send queue and not yet sent, plus send() calls waiting for room. */
  get queued(): number {
    return this.sender.queued;
  }

  /** Credit the peer grants us now (what may be sent without waiting). */
  get credit(): { bytes: number; commands: number } {
    return this.sender.credit();
  }

  /** Receive-side buffer held for the peer's writes. */
  get receiveUsage(): { bytes: number; commands: number } {
    return this.receiver.usage;
  }

  stats(): PeerLinkStats {
    const o = this.out;
    return {
      ...this.counters,
      framesSent: { ...(o?.framesSent ?? {}) },
      framesReceived: { ...this.counters.framesReceived },
      bytesSent: o?.bytesSent ?? 0,
      transportWrites: o?.transportWrites ?? 0,
      transportFull: o?.transportFull ?? 0,
    };
  }

  /** Admit a write into the send queue (waiting while it is full, FIFO); `done` follows the peer's answer. */
  send(req: WriteRequest): Promise<WriteTicket> {
    if (this.state === 'closed') return Promise.reject(this.closeError ?? new LinkClosedError());
    return this.sender.send(req);
  }

  /** send() and wait for the completion of reception. */
  async write(req: WriteRequest): Promise<WriteResult> {
    const t = await this.send(req);
    return t.done;
  }

  /** Ask the peer for deferred data (000-NV). */
  pull(req: Partial<PullRequest> = {}): void {
    assert(this.state === 'open', 'PeerLink.pull: link not open');
    this.output.control({
      type: FrameType.PULL, sourceUnit: this.unitId, maxBytes: req.maxBytes ?? 0xffffffff, maxCommands: req.maxCommands ?? 0xffffffff, volume: req.volume ?? ANY_VOLUME,
    });
    this.output.flush();
  }

  /** Close: tell the peer (ERROR SHUTTING_DOWN), fail whatever is pending, end the transport. */
  close(reason = 'closed by the local side'): Promise<Error> {
    if (this.state !== 'closed') {
      this.out?.writeNow({ type: FrameType.ERROR, sourceUnit: this.unitId, flags: Flag.FATAL, code: ErrorCode.SHUTTING_DOWN, payload: Buffer.from(reason) });
      this.teardown(new LinkClosedError(reason));
      this.transport?.end();
    }
    return this.closed;
  }

  // ---- input -------------------------------------------------------------------------------------

  private get output(): FrameWriter {
    assert(this.out !== null, 'PeerLink: not attached');
    return this.out;
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.lastRecvAt = this.clock.now();
    this.counters.bytesReceived += chunk.length;
    this.decoder.push(chunk);
    const out = this.output;
    out.hold();
    try {
      for (let ev = this.decoder.next(); ev !== undefined && !this.isClosed(); ev = this.decoder.next()) {
        if (ev.kind === 'frame') this.onFrame(ev.frame, false);
        else this.onDecodeError(ev.error);
      }
    } catch (e) {
      this.log.error({ err: e }, 'peer link: frame handler threw');
      this.fatal(ErrorCode.PROTOCOL, 'internal error');
    } finally {
      out.release();
    }
  }

  private onDecodeError(e: FrameError): void {
    if (!e.fatal && e.frame !== undefined && e.frame.type === FrameType.DATA && this.state === 'open') {
      this.onFrame(e.frame, true);
      return;
    }
    const code = e.code === 'header-crc' ? ErrorCode.HEADER_CRC
      : e.code === 'unsupported-version' ? ErrorCode.UNSUPPORTED_VERSION
        : e.code === 'payload-crc' ? ErrorCode.PAYLOAD_CRC : ErrorCode.PROTOCOL;
    this.fatal(code, e.message);
  }

  private onFrame(f: Frame, corrupt: boolean): void {
    const name = frameTypeName(f.type);
    this.counters.framesReceived[name] = (this.counters.framesReceived[name] ?? 0) + 1;
    if (f.seq !== this.recvSeq) {
      this.fatal(ErrorCode.PROTOCOL, `${name} with sequence ${f.seq}, expected ${this.recvSeq}`);
      return;
    }
    this.recvSeq = (this.recvSeq + 1) >>> 0;
    if (this.state === 'handshake') {
      this.onHandshakeFrame(f);
      return;
    }
    switch (f.type) {
      case FrameType.WRITE_COMMAND: this.receiver.onWriteCommand(f); break;
      case FrameType.DATA: this.receiver.onData(f, corrupt); break;
      case FrameType.PREPARATION_COMPLETE: this.sender.onPreparationComplete(f); break;
      case FrameType.RECEPTION_COMPLETE: this.sender.onReceptionComplete(f); break;
      case FrameType.CREDIT:
        if (this.sender.onCredit(f)) this.sender.dispatch();
        break;
      case FrameType.HEARTBEAT:
        if ((f.flags & Flag.REPLY) === 0) this.answer({ type: FrameType.HEARTBEAT, sourceUnit: this.unitId, flags: Flag.REPLY, nonce: f.nonce });
        else if (f.nonce === this.pingNonce) this.counters.rtt = this.clock.now() - this.pingSentAt;
        break;
      case FrameType.PULL:
        this.opts.handler?.onPull?.({ maxBytes: f.maxBytes, maxCommands: f.maxCommands, volume: f.volume }, this.peer!);
        break;
      case FrameType.READ_COMMAND:
      case FrameType.COPY_COMMAND:
        this.answer({ type: FrameType.ERROR, sourceUnit: f.sourceUnit, issue: f.issue, tag: f.tag, code: ErrorCode.UNSUPPORTED, payload: Buffer.from(`${name} is not served here yet`) });
        break;
      case FrameType.ERROR:
        if ((f.flags & Flag.FATAL) !== 0 || f.tag === 0) this.onFatalError(f);
        else this.sender.onCommandError(f);
        break;
      default:
        this.fatal(ErrorCode.PROTOCOL, `${name} after the handshake`);
    }
  }

  private answer(f: FrameInit): void {
    this.output.control(f);
    this.output.flush();
  }

  private onHandshakeFrame(f: Frame): void {
    const step = this.handshake.receive(f);
    for (const out of step.send) this.output.control(out);
    this.output.flush();
    if (step.fail) {
      const code = errorCodeName(step.fail.code);
      if (step.fail.remote) {
        this.log.warn({ code, text: step.fail.text }, 'peer refused the link');
        this.teardown(new PeerError(step.fail.code, step.fail.text, true));
        this.transport?.destroy();
      } else {
        this.log.warn({ code, text: step.fail.text }, 'refusing peer');
        this.fatal(step.fail.code, step.fail.text);
      }
      return;
    }
    if (step.done) {
      this.peer = step.done;
      this.state = 'open';
      this.handshakeTimer?.cancel();
      this.handshakeTimer = null;
      this.log = this.log.child({ peer: step.done.unitId });
      this.log.info({ version: step.done.version, peerMode: step.done.pipelined ? 'pipelined' : 'fidelity', window: step.done.windowBytes }, 'peer link up');
      this.resolveReady(step.done);
      this.armTimer();
      this.sender.dispatch();
    }
  }

  private onFatalError(f: Frame & { type: typeof FrameType.ERROR }): void {
    const text = f.payload.toString('utf8');
    if (f.code === ErrorCode.SHUTTING_DOWN) this.log.info({ text }, 'peer closed the link');
    else this.log.warn({ code: errorCodeName(f.code), text }, 'peer reported a fatal error');
    this.teardown(new PeerError(f.code, text, true));
    this.transport?.end();
  }

  private onTransportClose(err?: Error): void {
    if (this.state === 'closed') return;
    this.log.warn({ err }, 'peer link lost');
    this.teardown(new LinkDownError(err ? `transport closed: ${err.message}` : 'the peer closed the connection', err));
  }

  // ---- failure -----------------------------------------------------------------------------------

  /** A protocol violation or refusal: tell the peer, close, fail everything pending. */
  private fatal(code: ErrorCode, text: string): void {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.log.warn({ code: errorCodeName(code), text }, 'peer link: fatal protocol error');
    this.out?.writeNow({ type: FrameType.ERROR, sourceUnit: this.unitId, flags: Flag.FATAL, code, payload: Buffer.from(text.slice(0, MAX_ERROR_TEXT)) });
    this.teardown(new LinkDownError(`${errorCodeName(code)}: ${text}`));
    this.transport?.end();
  }

  private teardown(err: Error): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeError = err;
    this.timer?.cancel();
    this.timer = null;
    this.handshakeTimer?.cancel();
    this.handshakeTimer = null;
    this.rejectReady(err);
    this.sender.failAll(err);
    this.receiver.failAll(err);
    this.out?.close();
    this.resolveClosed(err);
    try {
      this.opts.onClose?.(err);
    } catch (e) {
      this.log.error({ err: e }, 'onClose threw');
    }
  }

  // ---- heartbeat ---------------------------------------------------------------------------------

  private armTimer(): void {
    const now = this.clock.now();
    const next = Math.min(Math.max(this.output.lastSentAt, this.lastPingAt) + this.heartbeatMs, this.lastRecvAt + this.timeoutMs);
    this.timer = this.clock.setTimer(Math.max(0, next - now), () => this.tick());
  }

  private tick(): void {
    this.timer = null;
    if (this.state !== 'open') return;
    const now = this.clock.now();
    if (now - this.lastRecvAt >= this.timeoutMs) {
      this.log.warn({ silentMs: now - this.lastRecvAt }, 'peer link down: heartbeat timeout');
      this.teardown(new LinkDownError(`no frame from the peer for ${now - this.lastRecvAt} ms (timeout ${this.timeoutMs} ms)`));
      this.transport?.destroy();
      return;
    }
    // A blocked transport keeps lastSentAt old: lastPingAt stops a ping per timer in that case.
    if (now - Math.max(this.output.lastSentAt, this.lastPingAt) >= this.heartbeatMs) {
      this.pingNonce = (this.pingNonce + 1) >>> 0;
      this.pingSentAt = now;
      this.lastPingAt = now;
      this.answer({ type: FrameType.HEARTBEAT, sourceUnit: this.unitId, nonce: this.pingNonce });
    }
    this.armTimer();
  }
}
