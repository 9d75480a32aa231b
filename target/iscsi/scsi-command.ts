/**
 * One SCSI task over iSCSI (RFC 7143 §4.2.5, §11.3-11.8): immediate and unsolicited Data-Out,
 * R2Ts issued as the device server asks for data (TaskIo.receiveData), Data-In split by the
 * initiator's MaxRecvDataSegmentLength and MaxBurstLength, status collapsed into the last Data-In
 * when there is no sense, and residuals from what the device server produced or consumed.
 */
import { ScsiResult, ScsiTask, Status, TaskAbortedError, TaskAttribute, TaskIo } from '../scsi/task.js';
import {
  CMD_ATTR_MASK, CMD_READ, CMD_WRITE, DATAIN_STATUS, FLAG_FINAL, NO_TAG, Op, RSP_BIDI_OVERFLOW, RSP_BIDI_UNDERFLOW,
  RSP_OVERFLOW, RSP_UNDERFLOW, RejectReason, decodeLun, fixedSense, newBhs,
} from './pdu.js';
import type { OperationalParams } from './params.js';
import type { Session } from './session.js';

const ATTRIBUTES: TaskAttribute[] = ['simple', 'simple', 'ordered', 'head-of-queue', 'aca'];
const AHS_EXTENDED_CDB = 1;
const AHS_BIDI_READ_LENGTH = 2;

/** ABORTED COMMAND sense: the transport, not the device, lost the data. */
const SENSE_CRC_ERROR = (): Buffer => fixedSense(0x0b, 0x47, 0x05); // PROTOCOL SERVICE CRC ERROR
const SENSE_DATA_PHASE_ERROR = (): Buffer => fixedSense(0x0b, 0x4b, 0x00);
const SENSE_INTERNAL_FAILURE = (): Buffer => fixedSense(0x04, 0x44, 0x00);
const SENSE_INVALID_FIELD_IN_CDB = (): Buffer => fixedSense(0x05, 0x24, 0x00);

export interface ParsedCommand {
  cdb: Uint8Array;
  bidiReadLength: number;
}

/**
 * Check a SCSI Command PDU against the negotiated parameters. Returns the Reject reason, or the
 * CDB (extended by an AHS when longer than 16 bytes) and the bidirectional read length.
 */
export function parseCommand(bhs: Buffer, ahs: Buffer | undefined, dataLength: number, p: OperationalParams): ParsedCommand | number {
  const flags = bhs[1];
  const write = (flags & CMD_WRITE) !== 0;
  const edtl = bhs.readUInt32BE(20);
  if (dataLength > 0) {
    // Immediate data: only for writes, only if negotiated, never past the first burst or the EDTL.
    if (!write || !p.immediateData) return RejectReason.PROTOCOL_ERROR;
    if (dataLength > p.firstBurstLength || dataLength > edtl) return RejectReason.PROTOCOL_ERROR;
  }
  if ((flags & FLAG_FINAL) === 0) {
    // F=0 announces unsolicited Data-Out, which needs InitialR2T=No and room in the first burst.
    if (!write || p.initialR2T || dataLength >= Math.min(p.firstBurstLength, edtl)) return RejectReason.PROTOCOL_ERROR;
  }
  let cdb: Uint8Array = bhs.subarray(32, 48);
  let bidiReadLength = 0;
  for (let off = 0; ahs && off < ahs.length;) {
    if (off + 4 > ahs.length) return RejectReason.INVALID_PDU_FIELD;
    const len = ahs.readUInt16BE(off);
    const type = ahs[off + 2] & 0x3f;
    const end = off + 3 + len;
    if (len === 0 || end > ahs.length) return RejectReason.INVALID_PDU_FIELD;
    if (type === AHS_EXTENDED_CDB) cdb = Buffer.concat([cdb, ahs.subarray(off + 4, end)]);
    else if (type === AHS_BIDI_READ_LENGTH && len === 5) bidiReadLength = ahs.readUInt32BE(off + 4);
    else return RejectReason.INVALID_PDU_FIELD;
    off = (end + 3) & ~3;
  }
  return { cdb, bidiReadLength };
}

interface DataRequest {
  into: Uint8Array;
  filled: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface R2tState {
  ttt: number;
  offset: number;
  length: number;
  received: number;
  dataSN: number;
}

/** Underflow/overflow flag bits and count for `actual` bytes against `expected`. */
function residual(actual: number, expected: number, under: number, over: number): [number, number] {
  if (actual < expected) return [under, expected - actual];
  if (actual > expected) return [over, actual - expected];
  return [0, 0];
}

export class ScsiCommand implements ScsiTask, TaskIo {
  readonly nexus;
  readonly lun: number;
  readonly attribute: TaskAttribute;
  readonly tag: number;
  readonly expectedLength: number;
  readonly dataIn: boolean;
  readonly dataOut: boolean;
  readonly cmdSN: number;
  readonly immediate: boolean;
  aborted = false;

  /** The LUN field as received, echoed in R2Ts (two words: no Buffer per task). */
  private readonly lunHigh: number;
  private readonly lunLow: number;
  /** Bytes the initiator may send: EDTL for writes, 0 otherwise. */
  private readonly outLength: number;
  private readonly readLength: number;
  private started = false;
  private settled = false;
  private finished = false;
  private result: ScsiResult | undefined;
  /** Sense for a failure the transport detected (digest or data sequence errors). */
  private failure: Buffer | undefined;

  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private receivedEnd = 0;
  private requestedEnd = 0;
  private requests: DataRequest[] = [];
  private unsolicitedOpen: boolean;
  private readonly unsolicitedLimit: number;
  private unsolicitedDataSN = 0;
  private solicitedEnd = 0;
  private r2ts: R2tState[] = [];
  private r2tSN = 0;

  constructor(private readonly session: Session, bhs: Buffer, readonly cdb: Uint8Array, bidiReadLength: number, immediateData: Buffer) {
    const p = session.params;
    this.nexus = session.nexus;
    this.lunHigh = bhs.readUInt32BE(8);
    this.lunLow = bhs.readUInt32BE(12);
    this.lun = decodeLun(bhs);
    this.attribute = ATTRIBUTES[bhs[1] & CMD_ATTR_MASK] ?? 'simple';
    this.tag = bhs.readUInt32BE(16);
    this.expectedLength = bhs.readUInt32BE(20);
    this.cmdSN = bhs.readUInt32BE(24);
    this.immediate = (bhs[0] & 0x40) !== 0;
    this.dataIn = (bhs[1] & CMD_READ) !== 0;
    this.dataOut = (bhs[1] & CMD_WRITE) !== 0;
    this.outLength = this.dataOut ? this.expectedLength : 0;
    this.readLength = !this.dataIn ? 0 : this.dataOut ? bidiReadLength : this.expectedLength;
    this.unsolicitedOpen = (bhs[1] & FLAG_FINAL) === 0;
    this.unsolicitedLimit = p.initialR2T ? immediateData.length : Math.min(p.firstBurstLength, this.outLength);
    if (immediateData.length > 0) this.take(immediateData, true);
    if (!this.unsolicitedOpen) this.solicitedEnd = this.receivedEnd;
  }

  /** Hand the task to the device server (called in CmdSN order). */
  start(): void {
    if (this.aborted) return; // aborted while it waited for its CmdSN
    this.started = true;
    this.session.taskStarted(this.immediate);
    let p: Promise<ScsiResult>;
    try {
      p = this.session.deviceServer.execute(this, this);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then((r) => this.settle(r, undefined), (e: unknown) => this.settle(undefined, e));
  }

  receiveData(into: Uint8Array): Promise<void> {
    if (this.aborted || this.failure || this.settled) return Promise.reject(new TaskAbortedError());
    this.requestedEnd += into.length;
    if (this.requestedEnd > this.outLength) {
      // The CDB wants more than the Expected Data Transfer Length: that data will never come.
      // Refuse rather than hand over a partly invented buffer; the residual shows the overflow.
      this.fail(SENSE_INVALID_FIELD_IN_CDB());
      this.maybeFinish();
      return Promise.reject(new TaskAbortedError());
    }
    return new Promise<void>((resolve, reject) => {
      this.requests.push({ into, filled: 0, resolve, reject });
      this.deliver(0);
      this.solicit();
    });
  }

  /**
   * Whether the initiator owes this task data (an R2T's, or the rest of its unsolicited burst):
   * then reading must go on whatever is buffered, or the task can never finish.
   */
  get awaitingData(): boolean {
    return this.r2ts.length > 0 || this.unsolicitedOpen;
  }

  /** A Data-Out PDU for this task. Returns a Reject reason when the PDU is not acceptable. */
  onDataOut(bhs: Buffer, data: Buffer, digestOk: boolean): number | undefined {
    const ttt = bhs.readUInt32BE(20);
    const dataSN = bhs.readUInt32BE(36);
    const offset = bhs.readUInt32BE(40);
    const final = (bhs[1] & FLAG_FINAL) !== 0;
    const r2t = ttt === NO_TAG ? undefined : this.r2ts.find((r) => r.ttt === ttt);
    let reason: number | undefined = digestOk ? undefined : RejectReason.DATA_DIGEST_ERROR;

    if (this.failure) {
      // Already failed: only follow where each sequence ends, so the response can go out.
    } else if (!this.dataOut || (ttt === NO_TAG ? !this.unsolicitedOpen : !r2t)) {
      reason ??= RejectReason.PROTOCOL_ERROR;
      this.fail(SENSE_DATA_PHASE_ERROR());
    } else {
      const expectSN = r2t ? r2t.dataSN : this.unsolicitedDataSN;
      const limit = r2t ? r2t.offset + r2t.length : this.unsolicitedLimit;
      if (dataSN !== expectSN || offset !== this.receivedEnd || offset + data.length > limit) {
        reason ??= RejectReason.PROTOCOL_ERROR;
        this.fail(SENSE_DATA_PHASE_ERROR());
      } else {
        if (r2t) {
          r2t.dataSN++;
          r2t.received += data.length;
        } else {
          this.unsolicitedDataSN++;
        }
        this.take(data, digestOk);
        if (!digestOk) this.fail(SENSE_CRC_ERROR());
        if (final && r2t && r2t.received !== r2t.length) {
          reason ??= RejectReason.PROTOCOL_ERROR;
          this.fail(SENSE_DATA_PHASE_ERROR());
        }
      }
    }
    if (final) {
      if (ttt === NO_TAG) {
        if (this.unsolicitedOpen) {
          this.unsolicitedOpen = false;
          this.solicitedEnd = this.receivedEnd;
        }
      } else if (r2t) {
        this.r2ts.splice(this.r2ts.indexOf(r2t), 1);
      }
    }
    this.solicit();
    this.maybeFinish();
    return reason;
  }

  /** Abort (TMF, connection loss): nothing more is sent for this task. Returns false if it already ended. */
  abort(): boolean {
    if (this.finished) return false;
    this.finished = true;
    this.aborted = true;
    this.rejectRequests();
    this.dropBuffered();
    this.r2ts = [];
    this.session.taskEnded(this, this.started);
    this.session.rememberAborted(this.tag);
    if (this.settled) this.result?.release?.();
    return true;
  }

  private settle(result: ScsiResult | undefined, err: unknown): void {
    this.settled = true;
    // Requests the device server left pending can never be satisfied now.
    this.rejectRequests();
    if (this.aborted) {
      result?.release?.();
      return;
    }
    if (err instanceof TaskAbortedError && !this.failure) {
      // The device server aborted it on its own (e.g. a reset from another path): SAM's TASK ABORTED.
      result = { status: Status.TASK_ABORTED };
    } else if (err !== undefined && !(err instanceof TaskAbortedError)) {
      this.session.log.error({ err, itt: this.tag, cdb: Buffer.from(this.cdb).toString('hex') }, 'device server failed a task');
      this.failure ??= SENSE_INTERNAL_FAILURE();
    }
    this.result = result;
    this.maybeFinish();
  }

  private fail(sense: Buffer): void {
    this.failure ??= sense;
    this.rejectRequests();
    this.dropBuffered();
  }

  /** Count received bytes, keep them for the device server unless the task failed. */
  private take(data: Buffer, keep: boolean): void {
    this.receivedEnd += data.length;
    if (!keep || this.failure || data.length === 0) return;
    this.buffered.push(data);
    this.bufferedBytes += data.length;
    this.deliver(data.length);
  }

  /** Copy buffered data into the device server's requests; `added` bytes were just buffered. */
  private deliver(added: number): void {
    const before = this.bufferedBytes - added;
    while (this.requests.length > 0) {
      const r = this.requests[0];
      while (r.filled < r.into.length && this.buffered.length > 0) {
        const b = this.buffered[0];
        const n = Math.min(b.length, r.into.length - r.filled);
        r.into.set(n === b.length ? b : b.subarray(0, n), r.filled);
        r.filled += n;
        this.bufferedBytes -= n;
        if (n === b.length) this.buffered.shift();
        else this.buffered[0] = b.subarray(n);
      }
      if (r.filled < r.into.length) break;
      this.requests.shift();
      r.resolve();
    }
    const delta = this.bufferedBytes - before;
    if (delta !== 0) this.session.adjustHeld(delta);
  }

  /** Send R2Ts for what the device server asked for and the initiator has not been asked to send. */
  private solicit(): void {
    if (this.unsolicitedOpen || this.failure || this.finished || this.settled) return;
    const want = Math.min(this.requestedEnd, this.outLength);
    const p = this.session.params;
    while (this.solicitedEnd < want && this.r2ts.length < p.maxOutstandingR2T) {
      const r: R2tState = {
        ttt: this.session.connection?.nextTransferTag() ?? 0,
        offset: this.solicitedEnd,
        length: Math.min(p.maxBurstLength, want - this.solicitedEnd),
        received: 0,
        dataSN: 0,
      };
      this.r2ts.push(r);
      this.solicitedEnd += r.length;
      const bhs = newBhs(Op.R2T);
      bhs.writeUInt32BE(this.lunHigh, 8);
      bhs.writeUInt32BE(this.lunLow, 12);
      bhs.writeUInt32BE(this.tag, 16);
      bhs.writeUInt32BE(r.ttt, 20);
      bhs.writeUInt32BE(this.r2tSN++, 36);
      bhs.writeUInt32BE(r.offset, 40);
      bhs.writeUInt32BE(r.length, 44);
      this.session.send(bhs, undefined, 'current');
    }
  }

  private rejectRequests(): void {
    if (this.requests.length === 0) return;
    const rs = this.requests;
    this.requests = [];
    for (const r of rs) r.reject(new TaskAbortedError());
  }

  private dropBuffered(): void {
    if (this.bufferedBytes > 0) this.session.adjustHeld(-this.bufferedBytes);
    this.buffered = [];
    this.bufferedBytes = 0;
  }

  /** Respond once the device server is done and the initiator has sent everything it owes. */
  private maybeFinish(): void {
    if (this.finished || !this.settled || this.unsolicitedOpen || this.r2ts.length > 0) return;
    this.finished = true;
    this.dropBuffered();
    // Free the window slot first so that the response already carries the larger MaxCmdSN.
    this.session.taskEnded(this, this.started);
    this.respond();
  }

  private respond(): void {
    const r = this.result;
    let status = r?.status ?? Status.CHECK_CONDITION;
    let sense = r?.sense;
    let data = r?.data;
    if (this.failure) {
      status = Status.CHECK_CONDITION;
      sense = this.failure;
      data = undefined;
    }
    const produced = data ? data.length : 0;
    // The device server may state the SCSI transfer length itself when it refused the command
    // before moving data (EDTL shorter than the CDB): residuals are then counted against it.
    const spdtl = this.failure ? undefined : r?.spdtl;
    const consumed = spdtl ?? this.requestedEnd;
    const bidi = this.dataIn && this.dataOut;
    let flags: number;
    let count: number;
    let bidiFlags = 0;
    let bidiCount = 0;
    if (bidi) {
      [flags, count] = residual(consumed, this.expectedLength, RSP_UNDERFLOW, RSP_OVERFLOW);
      [bidiFlags, bidiCount] = residual(produced, this.readLength, RSP_BIDI_UNDERFLOW, RSP_BIDI_OVERFLOW);
    } else if (this.dataOut) {
      [flags, count] = residual(consumed, this.expectedLength, RSP_UNDERFLOW, RSP_OVERFLOW);
    } else {
      // Reads, and no-data commands that produced data anyway (overflow) or expected some (underflow).
      [flags, count] = residual(spdtl ?? produced, this.expectedLength, RSP_UNDERFLOW, RSP_OVERFLOW);
    }

    const inLength = data ? Math.min(produced, this.readLength) : 0;
    const statusInData = inLength > 0 && !sense && !bidi;
    let dataSN = 0;
    if (data && inLength > 0) dataSN = this.sendDataIn(data, inLength, statusInData ? status : -1, flags, count, r?.release);
    else r?.release?.();
    if (statusInData) return;

    const bhs = newBhs(Op.SCSI_RESPONSE, FLAG_FINAL | flags | bidiFlags);
    bhs[2] = 0; // command completed at target
    bhs[3] = status;
    bhs.writeUInt32BE(this.tag, 16);
    bhs.writeUInt32BE(dataSN, 36); // ExpDataSN: the Data-In PDUs sent
    bhs.writeUInt32BE(bidiCount, 40);
    bhs.writeUInt32BE(count, 44);
    let segment: Buffer | undefined;
    if (sense && sense.length > 0) {
      segment = Buffer.allocUnsafe(2 + sense.length);
      segment.writeUInt16BE(sense.length, 0);
      segment.set(sense, 2);
    }
    this.session.send(bhs, segment, 'advance');
  }

  /**
   * Data-In PDUs of at most the initiator's MaxRecvDataSegmentLength, F at the end of each
   * MaxBurstLength sequence; `status` >= 0 goes in the last one with the S bit. The data goes out
   * as views of the device server's buffer, released when the last write is done.
   */
  private sendDataIn(data: Uint8Array, length: number, status: number, flags: number, count: number, release?: () => void): number {
    const p = this.session.params;
    const mrdsl = p.initiatorMaxRecvDataSegmentLength;
    let dataSN = 0;
    let seqEnd = Math.min(length, p.maxBurstLength);
    for (let off = 0; off < length;) {
      const n = Math.min(mrdsl, seqEnd - off);
      const last = off + n === length;
      const bhs = newBhs(Op.DATA_IN, 0);
      if (off + n === seqEnd) bhs[1] = FLAG_FINAL;
      if (last && status >= 0) {
        bhs[1] |= DATAIN_STATUS | flags;
        bhs[3] = status;
        bhs.writeUInt32BE(count, 44);
      }
      bhs.writeUInt32BE(this.tag, 16);
      bhs.writeUInt32BE(NO_TAG, 20);
      bhs.writeUInt32BE(dataSN++, 36);
      bhs.writeUInt32BE(off, 40);
      const piece = n === data.length ? data : data.subarray(off, off + n);
      this.session.send(bhs, piece, last && status >= 0 ? 'advance' : 'none', last ? release : undefined);
      off += n;
      if (off === seqEnd) seqEnd = Math.min(length, seqEnd + p.maxBurstLength);
    }
    return dataSN;
  }
}
