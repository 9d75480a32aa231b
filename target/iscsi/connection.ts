/**
 * One iSCSI connection (a StreamHandler): the login phase, then dispatch of full-feature PDUs to
 * the session, StatSN, NOP, TMF, Logout and Reject, and flow control both ways (stop reading while
 * the transport is full or too much unsolicited data waits). Framing is in pdu-reader.ts, batched
 * output in pdu-writer.ts. Nothing thrown by a PDU handler escapes onData: a bug or a hopeless
 * peer costs this one connection, nothing else.
 */
import type { Timer } from '../../hal/clock.js';
import type { StreamHandler, StreamTransport } from '../../hal/transport.js';
import type { Logger } from '../../hal/types.js';
import type { IscsiTargetDefinition, ServerConfig } from './context.js';
import { LoginNegotiation, LoginResult } from './login.js';
import { NopKeepalive } from './nop.js';
import {
  AsyncEvent, FLAG_FINAL, LoginStatus, LogoutReason, LogoutResponse, NO_TAG, Op, Pdu, RejectReason, isImmediate, newBhs, opcodeOf,
} from './pdu.js';
import { PduReader, ReadEvent } from './pdu-reader.js';
import { PduWriter } from './pdu-writer.js';
import { ScsiCommand, parseCommand } from './scsi-command.js';
import { snAdd } from './serial.js';
import { Session, SessionConnection, SessionRegistry, StatSnMode } from './session.js';
import { TextRequests } from './text-request.js';
import { performTmf } from './tmf.js';

/** What a connection needs from the server's session table. */
export interface ConnectionRegistry extends SessionRegistry {
  readonly shuttingDown: boolean;
  /** Create, reinstate or join the session a completed login asks for. */
  bind(result: LoginResult, conn: IscsiConnection): Session | { status: number; reason: string };
  sessionsOf(target: IscsiTargetDefinition): Iterable<Session>;
  connectionClosed(conn: IscsiConnection): void;
}

let connectionIds = 0;

export class IscsiConnection implements StreamHandler, SessionConnection {
  readonly id = ++connectionIds;
  cid = 0;
  session: Session | undefined;
  readonly log: Logger;

  private state: 'login' | 'ffp' | 'closed' = 'login';
  /** After a final answer (login reject, logout): input is ignored until the close. */
  private ending = false;
  private readonly reader = new PduReader();
  private readonly login: LoginNegotiation;
  private loginStarted = false;
  private loginCmdSN = 0;
  private statSN = 0;
  private tag = 0;
  private readonly writer: PduWriter;
  private readPaused = false;
  private text: TextRequests | undefined;
  private readonly keepalive: NopKeepalive;
  private timer: Timer | undefined;
  private closeWaiters: (() => void)[] = [];

  constructor(
    private readonly config: ServerConfig,
    private readonly registry: ConnectionRegistry,
    readonly transport: StreamTransport,
  ) {
    this.log = config.logger.child({ conn: this.id, peer: `${transport.remoteAddress}:${transport.remotePort}` });
    this.login = new LoginNegotiation(config);
    this.writer = new PduWriter(transport, () => this.updateReadPause(), (e) => {
      this.log.error({ err: e }, 'transport write threw');
      this.destroy('write failed');
    });
    this.keepalive = new NopKeepalive(config.clock, config.nopInIntervalMs, {
      ping: (ttt) => this.ping(ttt),
      nextTransferTag: () => this.nextTransferTag(),
      dead: () => this.destroy('no answer to NOP-In'),
    }, config.nopInTimeoutMs);
    this.timer = config.clock.setTimer(config.loginTimeoutMs, () => {
      this.timer = undefined;
      if (this.state === 'login') this.destroy('login timeout');
    });
  }

  get fullFeature(): boolean {
    return this.state === 'ffp';
  }

  /** Closed, or closing after a final answer: no more input is processed. */
  private get stopped(): boolean {
    return this.state === 'closed' || this.ending;
  }

  // ---- StreamHandler ----

  onData(chunk: Buffer): void {
    if (this.stopped) return;
    this.keepalive.heardFrom();
    this.reader.push(chunk);
    // Every answer to this chunk's PDUs leaves in one write.
    this.writer.hold();
    try {
      for (let ev = this.reader.next(); ev; ev = this.reader.next()) {
        this.dispatch(ev);
        if (this.stopped) break;
      }
    } catch (e) {
      this.log.error({ err: e }, 'PDU handler failed');
      this.destroy('internal error');
    } finally {
      this.writer.release();
    }
  }

  onDrain(): void {
    this.writer.drained();
  }

  onClose(error?: Error): void {
    this.cleanup(error ? `connection error: ${error.message}` : 'closed by peer');
  }

  // ---- SessionConnection ----

  /** Stamp StatSN/ExpCmdSN/MaxCmdSN (offsets 24/28/32 in every target PDU) and queue. */
  send(bhs: Buffer, data: Uint8Array | undefined, sn: StatSnMode, done?: () => void): void {
    if (this.state === 'closed') {
      done?.();
      return;
    }
    if (sn !== 'none') bhs.writeUInt32BE(this.statSN, 24);
    if (sn === 'advance') this.statSN = snAdd(this.statSN, 1);
    const s = this.session;
    bhs.writeUInt32BE(s ? s.expCmdSN : this.loginCmdSN, 28);
    bhs.writeUInt32BE(s ? s.maxCmdSN : snAdd(this.loginCmdSN, this.config.queueDepth - 1), 32);
    this.writer.enqueue(bhs, data, done);
  }

  nextTransferTag(): number {
    this.tag = this.tag === 0xfffffffe ? 0 : this.tag + 1;
    return this.tag;
  }

  destroy(reason: string): void {
    if (this.state === 'closed') return;
    this.cleanup(reason);
    this.transport.destroy();
  }

  heldBytesChanged(): void {
    this.updateReadPause();
  }

  /** Server shutdown: let running tasks finish (bounded), tell the initiator, close. */
  shutdown(): Promise<void> {
    return new Promise((resolve) => {
      if (this.state === 'closed') return resolve();
      this.closeWaiters.push(resolve);
      if (this.state === 'login' || this.ending) return this.destroy('server shutdown');
      const bye = (): void => {
        if (this.state === 'closed') return;
        const bhs = newBhs(Op.ASYNC_MESSAGE);
        bhs.writeUInt32BE(NO_TAG, 16);
        bhs[36] = AsyncEvent.DROP_ALL_CONNECTIONS;
        this.send(bhs, undefined, 'advance');
        this.detachSession('server shutdown');
        this.end();
      };
      if (this.session) this.session.whenIdle(this.config.drainTimeoutMs, bye);
      else bye();
    });
  }

  // ---- input ----

  private dispatch(ev: ReadEvent): void {
    if (ev.kind === 'header-digest-error') {
      this.destroy('header digest error');
      return;
    }
    if (ev.kind === 'oversize') {
      this.log.warn({ length: ev.length, limit: this.reader.maxDataSegment }, 'data segment above MaxRecvDataSegmentLength');
      if (this.state === 'login') this.loginFailure(ev.bhs, LoginStatus.INITIATOR_ERROR, 'oversize login PDU');
      else this.rejectCommand(ev.bhs, RejectReason.PROTOCOL_ERROR);
      return;
    }
    if (this.state === 'login') this.onLoginPdu(ev.pdu);
    else this.onPdu(ev.pdu);
  }

  private onLoginPdu(pdu: Pdu): void {
    const bhs = pdu.bhs;
    if (opcodeOf(bhs) !== Op.LOGIN_REQUEST) {
      this.loginFailure(bhs, LoginStatus.INVALID_DURING_LOGIN, `opcode 0x${opcodeOf(bhs).toString(16)} during login`);
      return;
    }
    if (!this.loginStarted) {
      this.loginStarted = true;
      this.loginCmdSN = bhs.readUInt32BE(24);
      this.statSN = bhs.readUInt32BE(28); // the initiator's ExpStatSN starts our StatSN
      this.cid = bhs.readUInt16BE(20);
    }
    if (this.registry.shuttingDown) {
      this.loginFailure(bhs, LoginStatus.SERVICE_UNAVAILABLE, 'server shutting down');
      return;
    }
    const reply = this.login.handle(bhs, pdu.data);
    const csgBits = ((bhs[1] >> 2) & 3) << 2;
    if (reply.kind === 'reject') {
      this.loginFailure(bhs, reply.status, reply.reason);
      return;
    }
    if (reply.kind === 'respond') {
      const flags = (reply.transit ? FLAG_FINAL | reply.nsg : 0) | csgBits;
      this.sendLoginResponse(bhs, flags, reply.text, LoginStatus.SUCCESS, bhs.readUInt16BE(14));
      return;
    }
    const bound = this.registry.bind(reply.result, this);
    if (!(bound instanceof Session)) {
      this.loginFailure(bhs, bound.status, bound.reason);
      return;
    }
    this.session = bound;
    this.state = 'ffp';
    this.sendLoginResponse(bhs, FLAG_FINAL | csgBits | 3, reply.text, LoginStatus.SUCCESS, bound.tsih);
    // Digests and our receive limit apply from the next PDU on, each way (RFC 7143 §13.1, §13.12).
    const p = bound.params;
    this.writer.headerDigest = this.reader.headerDigest = p.headerDigest;
    this.writer.dataDigest = this.reader.dataDigest = p.dataDigest;
    this.text = new TextRequests({
      config: this.config,
      localAddress: this.transport.localAddress,
      nextTransferTag: () => this.nextTransferTag(),
      send: (b, d, sn) => this.send(b, d, sn),
      reject: (b, reason) => this.reject(b, reason),
    }, bound);
    this.reader.maxDataSegment = p.targetMaxRecvDataSegmentLength;
    this.timer?.cancel();
    this.timer = undefined;
    this.keepalive.start();
    this.log.info(
      { tsih: bound.tsih, type: bound.type, initiator: bound.initiatorName, target: bound.target?.name, headerDigest: p.headerDigest, dataDigest: p.dataDigest },
      'login complete',
    );
  }

  private sendLoginResponse(req: Buffer, flags: number, text: Buffer | undefined, status: number, tsih: number): void {
    const bhs = newBhs(Op.LOGIN_RESPONSE, flags);
    req.copy(bhs, 8, 8, 14); // ISID
    bhs.writeUInt16BE(tsih, 14);
    bhs.writeUInt32BE(req.readUInt32BE(16), 16);
    bhs[36] = status >> 8;
    bhs[37] = status & 0xff;
    this.send(bhs, text && text.length > 0 ? text : undefined, 'advance');
  }

  private loginFailure(req: Buffer, status: number, reason: string): void {
    this.log.warn({ status: `0x${status.toString(16).padStart(4, '0')}`, reason, initiator: this.login.initiatorName }, 'login refused');
    this.sendLoginResponse(req, ((req[1] >> 2) & 3) << 2, undefined, status, req.readUInt16BE(14));
    this.end();
  }

  private onPdu(pdu: Pdu): void {
    const bhs = pdu.bhs;
    const op = opcodeOf(bhs);
    if (!pdu.dataDigestOk && op !== Op.DATA_OUT) {
      // Dropped without consuming its CmdSN, so that the initiator may retry it (§7.8).
      this.reject(bhs, RejectReason.DATA_DIGEST_ERROR);
      return;
    }
    switch (op) {
      case Op.SCSI_COMMAND: return this.onScsiCommand(pdu);
      case Op.DATA_OUT: return this.onDataOut(pdu);
      case Op.NOP_OUT: return this.onNopOut(pdu);
      case Op.TMF_REQUEST: return this.onTmf(bhs);
      case Op.TEXT_REQUEST: return this.ordered(bhs, () => this.text!.handle(bhs, pdu.data));
      case Op.LOGOUT_REQUEST: return this.ordered(bhs, () => this.onLogout(bhs));
      case Op.SNACK: return this.reject(bhs, RejectReason.PROTOCOL_ERROR); // no SNACK at ERL 0
      case Op.LOGIN_REQUEST: return this.reject(bhs, RejectReason.PROTOCOL_ERROR);
      default: return this.reject(bhs, RejectReason.COMMAND_NOT_SUPPORTED);
    }
  }

  /** Run `fn` now for an immediate PDU, else in CmdSN order; drop it outside the window. */
  private ordered(bhs: Buffer, fn: () => void): void {
    if (isImmediate(bhs)) {
      fn();
      return;
    }
    const s = this.session!;
    const cmdSN = bhs.readUInt32BE(24);
    if (!s.sequence(cmdSN, fn)) this.log.debug({ cmdSN, expCmdSN: s.expCmdSN, maxCmdSN: s.maxCmdSN }, 'CmdSN outside the window: dropped');
  }

  private onScsiCommand(pdu: Pdu): void {
    const s = this.session!;
    const bhs = pdu.bhs;
    if (s.type === 'Discovery') return this.rejectCommand(bhs, RejectReason.PROTOCOL_ERROR);
    const immediate = isImmediate(bhs);
    const cmdSN = bhs.readUInt32BE(24);
    if (!immediate && (!s.inWindow(cmdSN) || s.isHeld(cmdSN))) {
      this.log.debug({ cmdSN, expCmdSN: s.expCmdSN, maxCmdSN: s.maxCmdSN }, 'SCSI command outside the CmdSN window: dropped');
      return;
    }
    const parsed = parseCommand(bhs, pdu.ahs, pdu.data.length, s.params);
    if (typeof parsed === 'number') return this.rejectCommand(bhs, parsed);
    const itt = bhs.readUInt32BE(16);
    if (itt === NO_TAG) return this.rejectCommand(bhs, RejectReason.INVALID_PDU_FIELD);
    if (s.tasks.has(itt)) return this.rejectCommand(bhs, RejectReason.TASK_IN_PROGRESS);
    if (immediate && s.immediateTasks >= s.queueDepth) return this.reject(bhs, RejectReason.TOO_MANY_IMMEDIATE);
    const task = new ScsiCommand(s, bhs, parsed.cdb, parsed.bidiReadLength, pdu.data);
    s.tasks.set(itt, task);
    this.ordered(bhs, () => task.start());
    // Its immediate data counted before the task was in the table (waiting for its CmdSN gap, or
    // for the rest of its unsolicited data): a pause taken then may have to go.
    if (this.readPaused) this.updateReadPause();
  }

  private onDataOut(pdu: Pdu): void {
    const s = this.session!;
    const bhs = pdu.bhs;
    const itt = bhs.readUInt32BE(16);
    const task = s.tasks.get(itt);
    if (!task) {
      // Data still in flight for a task that just ended (aborted, or answered early) is normal.
      if (s.wasRecent(itt)) return;
      this.reject(bhs, pdu.dataDigestOk ? RejectReason.INVALID_PDU_FIELD : RejectReason.DATA_DIGEST_ERROR);
      return;
    }
    const reason = task.onDataOut(bhs, pdu.data, pdu.dataDigestOk);
    if (reason !== undefined) this.reject(bhs, reason);
  }

  private onNopOut(pdu: Pdu): void {
    const bhs = pdu.bhs;
    const itt = bhs.readUInt32BE(16);
    const ttt = bhs.readUInt32BE(20);
    if (ttt !== NO_TAG) this.keepalive.answered(ttt);
    if (itt === NO_TAG) return; // an answer to our ping, or a ping that wants no answer
    const max = this.session!.params.initiatorMaxRecvDataSegmentLength;
    const data = pdu.data.length > max ? pdu.data.subarray(0, max) : pdu.data;
    this.ordered(bhs, () => {
      const r = newBhs(Op.NOP_IN);
      bhs.copy(r, 8, 8, 16);
      r.writeUInt32BE(itt, 16);
      r.writeUInt32BE(NO_TAG, 20);
      this.send(r, data.length > 0 ? data : undefined, 'advance');
    });
  }

  private ping(ttt: number): void {
    const r = newBhs(Op.NOP_IN);
    r.writeUInt32BE(NO_TAG, 16);
    r.writeUInt32BE(ttt, 20);
    this.send(r, undefined, 'current');
  }

  private onTmf(bhs: Buffer): void {
    const s = this.session!;
    if (s.type === 'Discovery') return this.rejectCommand(bhs, RejectReason.PROTOCOL_ERROR);
    this.ordered(bhs, () => {
      const outcome = performTmf(s, bhs, () => this.registry.sessionsOf(s.target!));
      this.log.info({ fn: bhs[1] & 0x7f, rtt: bhs.readUInt32BE(20), response: outcome.response }, 'task management');
      const r = newBhs(Op.TMF_RESPONSE);
      r[2] = outcome.response;
      r.writeUInt32BE(bhs.readUInt32BE(16), 16);
      this.send(r, undefined, 'advance', outcome.after);
    });
  }

  private onLogout(bhs: Buffer): void {
    const reason = bhs[1] & 0x7f;
    const itt = bhs.readUInt32BE(16);
    const respond = (code: number): void => {
      const r = newBhs(Op.LOGOUT_RESPONSE);
      r[2] = code;
      r.writeUInt32BE(itt, 16);
      // Time2Wait/Time2Retain stay 0: at ERL 0 there is nothing to come back to.
      this.send(r, undefined, 'advance');
    };
    if (reason === LogoutReason.REMOVE_FOR_RECOVERY) return respond(LogoutResponse.RECOVERY_NOT_SUPPORTED);
    if (reason === LogoutReason.CLOSE_CONNECTION && bhs.readUInt16BE(20) !== this.cid) return respond(LogoutResponse.CID_NOT_FOUND);
    if (reason > LogoutReason.REMOVE_FOR_RECOVERY) return this.reject(bhs, RejectReason.INVALID_PDU_FIELD);
    // Closing the only connection closes the session; running tasks finish (bounded) first.
    this.session!.whenIdle(this.config.drainTimeoutMs, () => {
      if (this.state === 'closed') return;
      respond(LogoutResponse.SUCCESS);
      this.detachSession('logout');
      this.end();
    });
  }

  /** Reject a PDU; a rejected non-immediate command still uses up its CmdSN. */
  private rejectCommand(bhs: Buffer, reason: number): void {
    this.reject(bhs, reason);
    const op = opcodeOf(bhs);
    const numbered = op === Op.SCSI_COMMAND || op === Op.TMF_REQUEST || op === Op.TEXT_REQUEST || op === Op.LOGOUT_REQUEST
      || (op === Op.NOP_OUT && bhs.readUInt32BE(16) !== NO_TAG);
    if (numbered && !isImmediate(bhs)) this.session?.sequence(bhs.readUInt32BE(24), () => {});
  }

  private reject(bhs: Buffer, reason: number): void {
    this.log.warn({ opcode: `0x${opcodeOf(bhs).toString(16)}`, reason, itt: bhs.readUInt32BE(16) }, 'PDU rejected');
    const r = newBhs(Op.REJECT);
    r[2] = reason;
    r.writeUInt32BE(NO_TAG, 16);
    // The data segment carries the rejected header; a copy, as `bhs` may share a receive buffer.
    this.send(r, Buffer.from(bhs.subarray(0, 48)), 'advance');
  }

  // ---- output and lifetime ----

  private updateReadPause(): void {
    if (this.state === 'closed') return;
    let pause = this.writer.blocked;
    const s = this.session;
    // Never stop reading while a task waits for solicited data, or a command for the CmdSN that
    // fills a gap: either would deadlock. Both are bounded by the CmdSN window anyway.
    if (!pause && s && s.heldBytes > this.config.maxHeldBytes && !s.waitingForGap) {
      pause = true;
      for (const t of s.tasks.values()) {
        if (t.awaitingData) {
          pause = false;
          break;
        }
      }
    }
    if (pause === this.readPaused) return;
    this.readPaused = pause;
    if (pause) this.transport.pauseReading();
    else this.transport.resumeReading();
  }

  /** Graceful close after what is queued; the peer normally closes first. */
  private end(): void {
    if (this.ending || this.state === 'closed') return;
    this.ending = true;
    this.writer.flush(true);
    this.transport.end();
    this.timer?.cancel();
    this.timer = this.config.clock.setTimer(this.config.drainTimeoutMs, () => {
      this.timer = undefined;
      this.destroy('peer did not close');
    });
  }

  /** Close the session without touching the transport (it still has a last PDU to send). */
  private detachSession(reason: string): void {
    const s = this.session;
    if (!s) return;
    if (s.connection === this) s.connection = undefined;
    s.close(reason);
  }

  private cleanup(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.log.info({ reason }, 'connection closed');
    this.keepalive.stop();
    this.timer?.cancel();
    this.timer = undefined;
    this.writer.close();
    const s = this.session;
    // ERL 0: a session does not outlive its connection (unless another one took it over).
    if (s && s.connection === this) {
      s.connection = undefined;
      s.close(reason);
    }
    this.registry.connectionClosed(this);
    const w = this.closeWaiters;
    this.closeWaiters = [];
    for (const fn of w) fn();
  }
}
