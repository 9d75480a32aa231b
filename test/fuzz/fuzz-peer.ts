/**
 * One fuzzing initiator connection: an in-memory transport that behaves like TCP toward the target
 * (pausing really stops delivery, a full send buffer holds write callbacks until drained, a FIN
 * closes the peer), and the initiator's view of the protocol: what it negotiated, what it sent, and
 * a check of every PDU the target sends back against RFC 7143 (framing, digests, StatSN order,
 * ExpCmdSN/MaxCmdSN, Reject reasons and echoed headers, answers only to what was asked).
 */
import type { StreamHandler, StreamTransport } from '../../hal/transport.js';
import {
  NO_TAG, OP, REJECT_REASONS, TARGET_OPCODES, crc, dataSegmentLength, framedLength, parseText,
} from './wire.js';

const SN_HALF = 0x80000000;
export const snLt = (a: number, b: number): boolean => a !== b && ((b - a) >>> 0) < SN_HALF;
export const snLe = (a: number, b: number): boolean => a === b || snLt(a, b);

/** Opcodes an initiator may send (RFC 7143 §11.1.1). */
const INITIATOR_OPCODES: ReadonlySet<number> = new Set([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10]);

let nextPort = 40000;

function commandOf(h: Buffer): Command {
  return { read: (h[1]! & 0x40) !== 0, write: (h[1]! & 0x20) !== 0, edtl: h.readUInt32BE(20) };
}

export class FuzzTransport implements StreamTransport {
  readonly remoteAddress = '198.51.100.7';
  readonly remotePort = nextPort = nextPort >= 65000 ? 40000 : nextPort + 1;
  readonly localAddress = '192.0.2.1';
  readonly localPort = 3260;
  handler!: StreamHandler;
  /** False: the peer stopped reading, write() reports a full send buffer and holds callbacks. */
  writable = true;
  paused = false;
  /** Whether the peer answers the target's FIN by closing (normal TCP peers do). */
  closesOnEnd = true;
  ended = false;
  destroyed = false;
  closed = false;
  /** Exceptions that escaped the handler. */
  readonly escaped: unknown[] = [];
  writesAfterEnd = 0;
  private inbox: Buffer[] = [];
  private heldDone: ((err?: Error) => void)[] = [];
  private flushQueued = false;

  constructor(private readonly onBytes: (b: Buffer) => void) {}

  get inboxBytes(): number {
    let n = 0;
    for (const b of this.inbox) n += b.length;
    return n;
  }

  write(chunks: readonly Uint8Array[], done?: (err?: Error) => void): boolean {
    if (this.closed || this.ended) {
      this.writesAfterEnd++;
      if (done) queueMicrotask(() => done(new Error('socket closed')));
      return false;
    }
    const total = chunks.reduce((n, c) => n + c.length, 0);
    const all = Buffer.allocUnsafe(total);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    this.onBytes(all);
    if (done) {
      if (this.writable) queueMicrotask(() => done());
      else this.heldDone.push(done);
    }
    return this.writable;
  }

  pauseReading(): void {
    this.paused = true;
  }

  resumeReading(): void {
    if (!this.paused) return;
    this.paused = false;
    this.scheduleInbox();
  }

  end(): void {
    if (this.ended || this.closed) return;
    this.ended = true;
    if (this.closesOnEnd) this.close();
  }

  destroy(): void {
    this.destroyed = true;
    this.close();
  }

  /** The initiator's bytes, in these pieces; held back while the target paused reading. */
  deliver(pieces: Buffer[]): void {
    if (this.closed) return;
    for (const p of pieces) {
      if (this.paused || this.inbox.length > 0) this.inbox.push(p);
      else this.onData(p);
    }
  }

  /** The peer reads again: write callbacks run and the target hears onDrain. */
  drain(): void {
    if (this.writable) return;
    this.writable = true;
    const d = this.heldDone;
    this.heldDone = [];
    for (const fn of d) fn();
    if (!this.closed) this.guard(() => this.handler.onDrain());
  }

  /** The peer closes (or the network drops the connection). */
  close(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.inbox = [];
    const d = this.heldDone;
    this.heldDone = [];
    for (const fn of d) fn(new Error('socket closed'));
    queueMicrotask(() => this.guard(() => this.handler.onClose(err)));
  }

  private scheduleInbox(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      while (!this.paused && !this.closed && this.inbox.length > 0) this.onData(this.inbox.shift()!);
    });
  }

  private onData(b: Buffer): void {
    this.guard(() => this.handler.onData(b));
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.escaped.push(e);
    }
  }
}

interface Command {
  read: boolean;
  write: boolean;
  edtl: number;
}

/**
 * The commands sent with one ITT, as the target will have parsed them. While one is unanswered a
 * second is either refused (tag in use) or, when the target rejected the first, the real one: all
 * stay candidates until a Reject names one.
 */
interface SentTask {
  candidates: Command[];
  /** Commands sent with this ITT, and final answers (SCSI Response, Data-In with S, Reject) seen. */
  sent: number;
  answered: number;
  dataSN: number;
  r2tSN: number;
}

export interface R2tSeen {
  itt: number;
  ttt: number;
  offset: number;
  length: number;
  lun: Buffer;
}

export class FuzzPeer {
  readonly transport: FuzzTransport;
  handler!: StreamHandler;
  // ---- what the initiator has learned and negotiated ----
  isid: Buffer;
  tsih = 0;
  cid = 1;
  cmdSN: number;
  itt: number;
  expStatSN = 0;
  hd = false;
  dd = false;
  ffp = false;
  discovery = false;
  readonly answers = new Map<string, string>();
  /** MaxRecvDataSegmentLength we declared (what the target may send us). */
  ourMrdsl = 8192;
  /** The smallest MaxRecvDataSegmentLength the target may be using (a text may or may not have changed it). */
  ourMrdslLow = 8192;
  targetMrdsl = 8192;
  immediateData = true;
  initialR2T = true;
  firstBurst = 65536;
  maxBurst = 262144;
  chap: { id: number; challenge: Buffer } | undefined;
  textTtt = NO_TAG;
  readonly r2ts: R2tSeen[] = [];
  /** Target NOP-In pings (TTT) not answered yet. */
  readonly pings: number[] = [];
  // ---- what the checks know ----
  /** False once a PDU went out whose bytes do not match its own header's framing. */
  framingIntact = true;
  /** False once a login or text PDU was mutated: what the target thinks we declared is then unknown. */
  limitsKnown = true;
  /** A MaxRecvDataSegmentLength declaration sent, in force once the target answers the PDU. */
  declaredMrdsl: number | undefined;
  /**
   * A Login Request that may end the login went out unanswered: the target may switch digests
   * right after it, so bytes sent behind it frame in a way we cannot know.
   */
  private loginPending = false;
  loginStatus: number | undefined;
  loggedOut = false;
  /** A final answer (failed login, logout) was sent: nothing may follow. */
  private finalAnswer = false;
  /** Headers sent (as the target frames them), with how many times each. */
  private readonly sentHeaders = new Map<string, number>();
  private readonly expected: { key: string; reasons: number[]; what: string }[] = [];
  private expectClose = false;
  private readonly tasks = new Map<number, SentTask>();
  private readonly nops = new Map<number, Buffer[]>();
  private readonly otherItts = new Map<number, Set<number>>();
  private expectedStatSN: number | undefined;
  private lastExpCmdSN: number | undefined;
  private rx: Buffer = Buffer.alloc(0);
  readonly violations: string[] = [];
  readonly received = new Map<string, number>();
  /** The answer to the liveness probe, when one came. */
  probeAnswered = false;
  probeItt = NO_TAG;
  /** Sees every PDU from the target (the well-behaved session reads its answers here). */
  tap: ((op: number, bhs: Buffer, data: Buffer) => void) | undefined;

  constructor(isid: Buffer, cmdSN: number, itt: number) {
    this.isid = isid;
    this.cmdSN = cmdSN;
    this.itt = itt;
    this.transport = new FuzzTransport((b) => this.ingest(b));
  }

  get closed(): boolean {
    return this.transport.closed;
  }

  nextItt(): number {
    this.itt = (this.itt + 1) >>> 0;
    if (this.itt === NO_TAG) this.itt = 0;
    return this.itt;
  }

  /** CmdSN for a non-immediate command: consumes one. */
  takeCmdSN(): number {
    const n = this.cmdSN;
    this.cmdSN = (this.cmdSN + 1) >>> 0;
    return n;
  }

  /**
   * Record what the target will see of the bytes about to go out (headers after any mutation),
   * walking them as the target's reader frames them: if they do not end on a PDU boundary, the
   * target's framing is no longer ours and header-level checks stop for this connection.
   */
  sent(bytes: Buffer, negotiates: boolean, mutated: boolean): void {
    if (mutated && negotiates) this.limitsKnown = false;
    let at = 0;
    while (this.framingIntact && at < bytes.length) {
      if (this.loginPending) {
        this.framingIntact = false;
        break;
      }
      if (bytes.length - at < 48) {
        this.framingIntact = false;
        break;
      }
      const h = bytes.subarray(at, at + 48);
      const length = framedLength(h, this.hd, this.dd);
      if (at + length > bytes.length) {
        this.framingIntact = false;
        break;
      }
      this.record(h, bytes.subarray(at, at + length));
      at += length;
    }
  }

  private record(h: Buffer, pdu: Buffer): void {
    this.sentHeaders.set(h.toString('hex'), (this.sentHeaders.get(h.toString('hex')) ?? 0) + 1);
    const op = h[0]! & 0x3f;
    const itt = h.readUInt32BE(16);
    if (this.ffp) this.expectAnswer(h, pdu, op);
    if (op === OP.LOGIN && (h[1]! & 0x83) === 0x83 && !this.ffp) this.loginPending = true;
    if (op === OP.SCSI_CMD) {
      const t = this.tasks.get(itt);
      const c = commandOf(h);
      if (t !== undefined && t.answered < t.sent) {
        t.candidates.push(c);
        t.sent++;
      } else {
        this.tasks.set(itt, { candidates: [c], sent: (t?.sent ?? 0) + 1, answered: t?.answered ?? 0, dataSN: 0, r2tSN: 0 });
      }
    } else if (op === OP.NOP_OUT && itt !== NO_TAG) {
      const at = 48 + h[4]! * 4 + (this.hd ? 4 : 0);
      let q = this.nops.get(itt);
      if (!q) this.nops.set(itt, q = []);
      q.push(Buffer.from(pdu.subarray(at, at + dataSegmentLength(h))));
    } else {
      let ops = this.otherItts.get(itt);
      if (!ops) this.otherItts.set(itt, ops = new Set());
      ops.add(op);
    }
  }

  /**
   * What RFC 7143 makes of a bad PDU in the full feature phase, whatever the CmdSN window says:
   * a header digest error ends the connection (§7.8); a data segment above the target's
   * MaxRecvDataSegmentLength is a protocol error (§13.12); a data digest error costs a Reject
   * (0x02, §7.8, Data-Out aside: that one fails its task); an opcode no initiator may send is
   * "command not supported" (0x05), a Login or SNACK (ERL 0) a protocol error; a SCSI command or
   * TMF in a discovery session a protocol error (§4.3). Each such Reject echoes the header.
   */
  private expectAnswer(h: Buffer, pdu: Buffer, op: number): void {
    const key = h.toString('hex');
    const ahs = h[4]! * 4;
    if (this.hd && crc(pdu.subarray(0, 48 + ahs)) !== pdu.readUInt32LE(48 + ahs)) {
      this.expectClose = true;
      return;
    }
    if (this.expectClose) return;
    const dsl = dataSegmentLength(h);
    const limit = Number(this.answers.get('MaxRecvDataSegmentLength') ?? 8192);
    let reasons: number[] | undefined;
    if (dsl > limit) reasons = [0x04];
    else if (this.dd && dsl > 0 && op !== OP.DATA_OUT) {
      const at = 48 + ahs + (this.hd ? 4 : 0);
      const padded = dsl + ((4 - (dsl & 3)) & 3);
      if (crc(pdu.subarray(at, at + padded)) !== pdu.readUInt32LE(at + padded)) reasons = [0x02];
    }
    if (!reasons) {
      if (!INITIATOR_OPCODES.has(op)) reasons = [0x05];
      else if (op === OP.LOGIN || op === OP.SNACK) reasons = [0x04];
      else if (this.discovery && (op === OP.SCSI_CMD || op === OP.TMF)) reasons = [0x04];
    }
    if (reasons) this.expected.push({ key, reasons, what: `0x${op.toString(16)}${dsl > limit ? ` with ${dsl} data bytes` : ''}` });
  }

  /** Bad PDUs of intact framing still waiting for their Reject (called once the target caught up). */
  unanswered(): string[] {
    const out = this.expected.map((e) => `no Reject (expected 0x${e.reasons[0]!.toString(16)}) for ${e.what} ${e.key}`);
    if (this.expectClose && !this.closed) out.push('a PDU with a bad header digest did not end the connection');
    return out;
  }

  /** Drop what the checks remember of answered PDUs (a long-lived connection would grow forever). */
  forget(): void {
    this.sentHeaders.clear();
    this.otherItts.clear();
    for (const [itt, t] of this.tasks) if (t.answered >= t.sent) this.tasks.delete(itt);
    for (const [itt, q] of this.nops) if (q.length === 0) this.nops.delete(itt);
  }

  private violation(msg: string): void {
    if (this.violations.length < 20) this.violations.push(msg);
  }

  private ingest(b: Buffer): void {
    this.rx = this.rx.length === 0 ? b : Buffer.concat([this.rx, b]);
    for (;;) {
      if (this.rx.length < 48) return;
      const ahs = this.rx[4]! * 4;
      const dsl = dataSegmentLength(this.rx);
      const hd = this.hd ? 4 : 0;
      const padded = dsl + ((4 - (dsl & 3)) & 3);
      const dd = this.dd && dsl > 0 ? 4 : 0;
      const total = 48 + ahs + hd + padded + dd;
      if (this.rx.length < total) return;
      const pdu = this.rx.subarray(0, total);
      this.rx = this.rx.subarray(total);
      if (hd && crc(pdu.subarray(0, 48 + ahs)) !== pdu.readUInt32LE(48 + ahs)) this.violation('target sent a bad header digest');
      const at = 48 + ahs + hd;
      if (dd && crc(pdu.subarray(at, at + padded)) !== pdu.readUInt32LE(at + padded)) this.violation('target sent a bad data digest');
      if (ahs !== 0) this.violation(`target PDU with ${ahs} bytes of AHS`);
      this.onPdu(Buffer.from(pdu.subarray(0, 48)), Buffer.from(pdu.subarray(at, at + dsl)));
    }
  }

  private onPdu(bhs: Buffer, data: Buffer): void {
    const op = bhs[0]! & 0x3f;
    const name = `0x${op.toString(16)}`;
    this.received.set(name, (this.received.get(name) ?? 0) + 1);
    if ((bhs[0]! & 0xc0) !== 0) this.violation(`${name}: bits 7/6 of byte 0 set`);
    if (!TARGET_OPCODES.has(op)) this.violation(`${name} is not a target opcode`);
    if (this.finalAnswer) this.violation(`${name} after the target's final answer (login failure or logout)`);
    const limit = this.ffp ? (this.limitsKnown ? this.ourMrdsl : 0xffffff) : 8192;
    if (data.length > limit) this.violation(`${name}: data segment ${data.length} above our MaxRecvDataSegmentLength ${limit}`);
    this.checkSequence(op, bhs);
    this.tap?.(op, bhs, data);
    const itt = bhs.readUInt32BE(16);
    switch (op) {
      case OP.LOGIN_RSP: return this.onLoginResponse(bhs, data);
      case OP.REJECT: {
        this.loginPending = false;
        this.declaredMrdsl = undefined;
        const reason = bhs[2]!;
        this.received.set(`reject:0x${reason.toString(16)}`, (this.received.get(`reject:0x${reason.toString(16)}`) ?? 0) + 1);
        if (!REJECT_REASONS.has(reason)) this.violation(`Reject with reason 0x${reason.toString(16)}`);
        if (itt !== NO_TAG) this.violation('Reject with an ITT other than 0xffffffff');
        if (data.length !== 48) this.violation(`Reject carries ${data.length} bytes, not the rejected header`);
        else if (this.framingIntact && !this.sentHeaders.has(data.toString('hex'))) this.violation(`Reject 0x${reason.toString(16)} echoes a header we never sent: ${data.toString('hex')}`);
        const key = data.toString('hex');
        const e = this.expected.findIndex((x) => x.key === key && x.reasons.includes(reason));
        if (e >= 0) this.expected.splice(e, 1);
        else {
          // The same header sent twice (a duplicate, one copy damaged behind it) may be refused
          // for another reason than the copy we expected something of: only a lone one tells.
          const other = this.expected.findIndex((x) => x.key === key);
          if (other >= 0 && this.sentHeaders.get(key) === 1) {
            this.violation(`Reject 0x${reason.toString(16)} for ${this.expected[other]!.what}, expected 0x${this.expected[other]!.reasons[0]!.toString(16)}`);
            this.expected.splice(other, 1);
          }
        }
        // A rejected NOP-Out gets no NOP-In: the next one with its tag answers the next ping.
        if (data.length === 48 && (data[0]! & 0x3f) === OP.NOP_OUT) this.nops.get(data.readUInt32BE(16))?.shift();
        if (data.length === 48 && (data[0]! & 0x3f) === OP.SCSI_CMD) {
          // A rejected command never became a task (or was a second one with the tag in use).
          const t = this.tasks.get(data.readUInt32BE(16));
          if (t && t.answered < t.sent) {
            t.answered++;
            const c = commandOf(data);
            const i = t.candidates.findIndex((x) => x.read === c.read && x.write === c.write && x.edtl === c.edtl);
            if (i >= 0 && t.candidates.length > 1) t.candidates.splice(i, 1);
          }
        }
        return;
      }
      case OP.SCSI_RSP: {
        if (bhs[2]! > 1) this.violation(`SCSI Response code ${bhs[2]}`);
        this.answer(itt, 'SCSI Response');
        return;
      }
      case OP.DATA_IN: {
        const t = this.task(itt, 'Data-In');
        const offset = bhs.readUInt32BE(40);
        if (t && this.framingIntact) {
          const reads = t.candidates.filter((c) => c.read);
          if (reads.length === 0) this.violation(`Data-In for ITT 0x${itt.toString(16)}, not a read`);
          else if (!reads.some((c) => c.write || offset + data.length <= c.edtl)) this.violation(`Data-In past the EDTL of ITT 0x${itt.toString(16)}: ${offset}+${data.length} > ${reads[0]!.edtl}`);
          if (bhs.readUInt32BE(36) !== t.dataSN) this.violation(`Data-In DataSN ${bhs.readUInt32BE(36)}, expected ${t.dataSN}`);
          t.dataSN++;
        }
        if (bhs[1]! & 0x01) this.answer(itt, 'Data-In with status');
        return;
      }
      case OP.R2T: {
        const t = this.task(itt, 'R2T');
        const offset = bhs.readUInt32BE(40);
        const length = bhs.readUInt32BE(44);
        if (length === 0) this.violation('R2T for 0 bytes');
        if (t && this.framingIntact) {
          const writes = t.candidates.filter((c) => c.write);
          if (writes.length === 0) this.violation(`R2T for ITT 0x${itt.toString(16)}, not a write`);
          else if (!writes.some((c) => offset + length <= c.edtl)) this.violation(`R2T past the EDTL: ${offset}+${length} > ${writes[0]!.edtl}`);
          if (bhs.readUInt32BE(36) !== t.r2tSN) this.violation(`R2TSN ${bhs.readUInt32BE(36)}, expected ${t.r2tSN}`);
          t.r2tSN++;
        }
        this.r2ts.push({ itt, ttt: bhs.readUInt32BE(20), offset, length, lun: Buffer.from(bhs.subarray(8, 16)) });
        return;
      }
      case OP.NOP_IN: {
        if (itt === NO_TAG) {
          const ttt = bhs.readUInt32BE(20);
          if (ttt === NO_TAG) this.violation('NOP-In with neither ITT nor TTT');
          else this.pings.push(ttt);
          return;
        }
        if (itt === this.probeItt) this.probeAnswered = true;
        if (!this.framingIntact) return;
        const q = this.nops.get(itt);
        if (!q || q.length === 0) {
          this.violation(`NOP-In answers ITT 0x${itt.toString(16)}, no NOP-Out had it`);
          return;
        }
        // Several NOP-Outs may share a tag, and a non-immediate one outside the CmdSN window gets
        // no answer at all: this NOP-In must echo one of them, whole or cut at our limit.
        const i = q.findIndex((d) => d.subarray(0, data.length).equals(data) && (data.length === d.length || !this.limitsKnown || data.length >= this.ourMrdslLow));
        if (i < 0) this.violation('NOP-In does not echo the ping data');
        else q.splice(i, 1);
        return;
      }
      case OP.TEXT_RSP:
        this.other(itt, OP.TEXT, 'Text Response');
        // The target may have taken the declaration or not (a text whose first part it dropped
        // for its CmdSN reads differently): either limit may be in force from now on.
        if (this.declaredMrdsl !== undefined) {
          this.ourMrdsl = Math.max(this.ourMrdsl, this.declaredMrdsl);
          this.ourMrdslLow = Math.min(this.ourMrdslLow, this.declaredMrdsl);
        }
        this.declaredMrdsl = undefined;
        this.textTtt = bhs.readUInt32BE(20);
        return;
      case OP.LOGOUT_RSP:
        this.other(itt, OP.LOGOUT, 'Logout Response');
        // Only a successful logout ends the connection (CID not found, no recovery: it goes on).
        if (bhs[2] === 0) {
          this.loggedOut = true;
          this.finalAnswer = true;
        }
        return;
      case OP.TMF_RSP:
        this.other(itt, OP.TMF, 'TMF Response');
        if (bhs[2]! > 6 && bhs[2] !== 255) this.violation(`TMF response code ${bhs[2]}`);
        return;
      default:
        return;
    }
  }

  private onLoginResponse(bhs: Buffer, data: Buffer): void {
    if (this.ffp) this.violation('Login Response in the full feature phase');
    this.loginPending = false;
    const status = bhs.readUInt16BE(36);
    if (status >> 8 > 3) this.violation(`login status class ${status >> 8}`);
    if (status !== 0) {
      this.loginStatus = status;
      this.finalAnswer = true;
      this.received.set(`login:0x${status.toString(16).padStart(4, '0')}`, (this.received.get(`login:0x${status.toString(16).padStart(4, '0')}`) ?? 0) + 1);
      if (data.length > 0) this.violation('failed Login Response with a data segment');
      return;
    }
    const text = parseText(data);
    for (const [k, v] of text) this.answers.set(k, v);
    if (this.declaredMrdsl !== undefined) this.ourMrdsl = this.ourMrdslLow = this.declaredMrdsl;
    this.declaredMrdsl = undefined;
    const ci = text.get('CHAP_I');
    const cc = text.get('CHAP_C');
    if (ci !== undefined && cc !== undefined && /^0x[0-9a-fA-F]+$/.test(cc)) this.chap = { id: Number(ci) & 0xff, challenge: Buffer.from(cc.slice(2), 'hex') };
    const transit = (bhs[1]! & 0x80) !== 0;
    if (transit && (bhs[1]! & 3) === 3) {
      this.ffp = true;
      this.tsih = bhs.readUInt16BE(14);
      if (this.tsih === 0) this.violation('final Login Response with TSIH 0');
      // Only a Normal session learns its portal group tag (§13.9): the target's own view of the session type.
      this.discovery = !this.answers.has('TargetPortalGroupTag');
      const a = this.answers;
      this.hd = a.get('HeaderDigest') === 'CRC32C';
      this.dd = a.get('DataDigest') === 'CRC32C';
      const n = (k: string, d: number): number => {
        const v = Number(a.get(k));
        return Number.isInteger(v) && v > 0 ? v : d;
      };
      this.targetMrdsl = n('MaxRecvDataSegmentLength', 8192);
      this.immediateData = a.get('ImmediateData') !== 'No';
      this.initialR2T = a.get('InitialR2T') !== 'No';
      this.firstBurst = n('FirstBurstLength', 65536);
      this.maxBurst = n('MaxBurstLength', 262144);
    }
  }

  /** StatSN order (§11.x: one per status-bearing PDU) and the CmdSN window the target shows. */
  private checkSequence(op: number, bhs: Buffer): void {
    const statSN = bhs.readUInt32BE(24);
    const itt = bhs.readUInt32BE(16);
    const advances = op === OP.LOGIN_RSP || op === OP.TEXT_RSP || op === OP.LOGOUT_RSP || op === OP.TMF_RSP || op === OP.SCSI_RSP
      || op === OP.REJECT || op === OP.ASYNC || (op === OP.NOP_IN && itt !== NO_TAG) || (op === OP.DATA_IN && (bhs[1]! & 1) !== 0);
    const shows = op === OP.R2T || (op === OP.NOP_IN && itt === NO_TAG);
    if (advances || shows) {
      if (this.expectedStatSN === undefined) this.expectedStatSN = statSN;
      if (statSN !== this.expectedStatSN) this.violation(`0x${op.toString(16)}: StatSN ${statSN}, expected ${this.expectedStatSN}`);
      if (advances) {
        this.expectedStatSN = (statSN + 1) >>> 0;
        this.expStatSN = this.expectedStatSN;
      }
    }
    const exp = bhs.readUInt32BE(28);
    const max = bhs.readUInt32BE(32);
    if (op === OP.LOGIN_RSP && bhs.readUInt16BE(36) !== 0) return; // fields reserved-ish in a failure
    if (this.lastExpCmdSN !== undefined && snLt(exp, this.lastExpCmdSN)) this.violation(`ExpCmdSN went back from ${this.lastExpCmdSN} to ${exp}`);
    this.lastExpCmdSN = exp;
    if (snLt(max, (exp - 1) >>> 0)) this.violation(`MaxCmdSN ${max} < ExpCmdSN ${exp} - 1`);
  }

  private task(itt: number, what: string): SentTask | undefined {
    const t = this.tasks.get(itt);
    if (!t && this.framingIntact) this.violation(`${what} for ITT 0x${itt.toString(16)}, no SCSI command had it`);
    return t;
  }

  private answer(itt: number, what: string): void {
    const t = this.task(itt, what);
    if (!t || !this.framingIntact) return;
    t.answered++;
    // Whatever comes next with this tag belongs to another command (a duplicate the target
    // dropped for its CmdSN may never be answered, so "still busy" is not to be trusted).
    t.dataSN = 0;
    t.r2tSN = 0;
    if (t.answered > t.sent) this.violation(`${what}: ITT 0x${itt.toString(16)} answered ${t.answered} times, sent ${t.sent}`);
  }

  private other(itt: number, op: number, what: string): void {
    if (this.framingIntact && !this.otherItts.get(itt)?.has(op)) this.violation(`${what} for ITT 0x${itt.toString(16)}, not one of ours`);
  }
}
