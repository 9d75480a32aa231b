/**
 * A small, fast iSCSI initiator for benchmarks (RFC 7143): no libiscsi tool reports per-command
 * latency, this one does. One TCP connection, one session, no authentication, no digests, error
 * recovery level 0.
 *
 * - Login: security stage (AuthMethod=None) then the operational stage, offering ImmediateData=Yes,
 *   InitialR2T=No and our MaxRecvDataSegmentLength / FirstBurstLength / MaxBurstLength; what the
 *   target answers (and declares) is in `params`.
 * - Full feature phase: CmdSN / ExpStatSN bookkeeping, the target's CmdSN window (commands past
 *   MaxCmdSN wait in a queue), NOP-In pings answered, several commands in flight at once.
 * - Writes carry immediate data up to min(FirstBurstLength, the target's MaxRecvDataSegmentLength),
 *   unsolicited Data-Out up to FirstBurstLength (when InitialR2T=No), and the rest after R2Ts.
 * - Reads collect Data-In (status in the last Data-In or in a SCSI Response).
 *
 * Latency: process.hrtime.bigint() just before the command's PDU goes to the socket, and again when
 * its SCSI Response (or the Data-In with status) is parsed. A non-GOOD status rejects the
 * convenience methods (write/read/...) with a ScsiError that carries the decoded sense; `command()`
 * resolves with whatever status came back.
 */
import net from 'node:net';

const OP = {
  NOP_OUT: 0x00, SCSI_CMD: 0x01, LOGIN: 0x03, DATA_OUT: 0x05, LOGOUT: 0x06,
  NOP_IN: 0x20, SCSI_RSP: 0x21, TMF_RSP: 0x22, LOGIN_RSP: 0x23, TEXT_RSP: 0x24, DATA_IN: 0x25, LOGOUT_RSP: 0x26,
  R2T: 0x31, ASYNC: 0x32, REJECT: 0x3f,
} as const;

const RESERVED_TAG = 0xffffffff;
export const SAM_STATUS = { GOOD: 0x00, CHECK_CONDITION: 0x02, BUSY: 0x08, RESERVATION_CONFLICT: 0x18, TASK_SET_FULL: 0x28 } as const;

export interface IscsiClientOptions {
  host: string;
  port: number;
  /** e.g. iqn.2026-11.dev.kura:vol0 */
  targetName: string;
  initiatorName?: string;
  /** Default 0. */
  lun?: number;
  /** What we declare we accept per PDU. Default 256 KiB. */
  maxRecvDataSegmentLength?: number;
  /** What we offer (the target answers the minimum). Default 256 KiB. */
  firstBurstLength?: number;
  /** Default 16 MiB - 512. */
  maxBurstLength?: number;
  /** Default true. */
  immediateData?: boolean;
  /** Default false (unsolicited data allowed). */
  initialR2T?: boolean;
  /** A command unanswered this long fails and the connection is dropped. Default 30 s; 0: never. */
  commandTimeoutMs?: number;
  /** Connecting and logging in. Default 10 s. */
  loginTimeoutMs?: number;
  /** ISID, 6 bytes. Default: random, qualifier type 0x80 (random). */
  isid?: Uint8Array;
}

/** What the login settled on. */
export interface NegotiatedParams {
  immediateData: boolean;
  initialR2T: boolean;
  firstBurstLength: number;
  maxBurstLength: number;
  /** The largest data segment the target accepts from us (its declaration; 8192 when it made none). */
  targetMaxRecvDataSegmentLength: number;
  maxOutstandingR2T: number;
  /** Every key the target answered or declared. */
  keys: Record<string, string>;
  tsih: number;
}

export interface SenseInfo {
  responseCode: number;
  key: number;
  asc: number;
  ascq: number;
  raw: Buffer;
}

export interface CommandResult {
  status: number;
  /** iSCSI Response field (0 = command completed at target). */
  response: number;
  /** Data-In bytes (reads). */
  data: Buffer;
  sense?: SenseInfo;
  /** Residual count with its direction, when the target reported one. */
  residual?: { underflow: boolean; overflow: boolean; count: number };
  /** Send of the command PDU to its status, nanoseconds. */
  latencyNs: number;
}

export class ScsiError extends Error {
  constructor(readonly op: string, readonly result: CommandResult) {
    const s = result.sense;
    super(`${op}: SCSI status 0x${result.status.toString(16).padStart(2, '0')}${statusName(result.status)}` +
      (s ? ` sense key 0x${s.key.toString(16)} ASC/ASCQ 0x${s.asc.toString(16).padStart(2, '0')}/0x${s.ascq.toString(16).padStart(2, '0')}` : '') +
      (result.response !== 0 ? ` (iSCSI response 0x${result.response.toString(16)})` : ''));
    this.name = 'ScsiError';
  }

  get sense(): SenseInfo | undefined {
    return this.result.sense;
  }
}

export class IscsiProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IscsiProtocolError';
  }
}

function statusName(s: number): string {
  const name = Object.entries(SAM_STATUS).find(([, v]) => v === s)?.[0];
  return name ? ` (${name.replace(/_/g, ' ')})` : '';
}

/** Fixed (70h/71h) or descriptor (72h/73h) format sense data. */
export function decodeSense(raw: Buffer): SenseInfo | undefined {
  if (raw.length < 2) return undefined;
  const responseCode = raw[0]! & 0x7f;
  if (responseCode === 0x70 || responseCode === 0x71) {
    return { responseCode, key: (raw[2] ?? 0) & 0x0f, asc: raw[12] ?? 0, ascq: raw[13] ?? 0, raw };
  }
  if (responseCode === 0x72 || responseCode === 0x73) {
    return { responseCode, key: raw[1]! & 0x0f, asc: raw[2] ?? 0, ascq: raw[3] ?? 0, raw };
  }
  return { responseCode, key: 0, asc: 0, ascq: 0, raw };
}

/** RFC 1982 serial number arithmetic on 32 bits: a < b. */
function snLess(a: number, b: number): boolean {
  return a !== b && ((b - a) >>> 0) < 0x80000000;
}

const snAdd = (a: number, n: number): number => (a + n) >>> 0;

function textOf(pairs: [string, string][]): Buffer {
  return Buffer.from(pairs.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}

function parseText(data: Buffer): [string, string][] {
  return data.toString('utf8').split('\0').filter(Boolean).map((item) => {
    const eq = item.indexOf('=');
    return eq < 0 ? [item, ''] : [item.slice(0, eq), item.slice(eq + 1)];
  });
}

const PAD = [Buffer.alloc(0), Buffer.alloc(3), Buffer.alloc(2), Buffer.alloc(1)];

interface Task {
  itt: number;
  cdb: Buffer;
  /** Write payload. */
  out?: Buffer;
  /** Expected Data-In bytes. */
  inLength: number;
  inChunks: Buffer[];
  inBytes: number;
  /** Unsolicited bytes sent with the command (immediate + unsolicited Data-Out). */
  sentAt: bigint;
  timer?: NodeJS.Timeout;
  resolve(r: CommandResult): void;
  reject(e: Error): void;
}

interface RxPdu {
  op: number;
  bhs: Buffer;
  data: Buffer;
}

export class IscsiClient {
  private socket!: net.Socket;
  private isid: Buffer;
  private itt = 1;
  private cmdSN = 1;
  private expStatSN = 0;
  private maxCmdSN = 1;
  private readonly tasks = new Map<number, Task>();
  /** Commands waiting for the CmdSN window. */
  private readonly waiting: Task[] = [];
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = 0;
  private loginWaiter?: { resolve(p: RxPdu): void; reject(e: Error): void };
  private logoutWaiter?: { resolve(p: RxPdu): void; reject(e: Error): void };
  private closedWith?: Error;
  private readonly lunBytes = Buffer.alloc(8);
  params!: NegotiatedParams;
  /** Commands completed, for the caller's own bookkeeping. */
  completed = 0;
  /** UNIT ATTENTION conditions met (and the command retried) by the convenience methods. */
  unitAttentions = 0;

  private constructor(readonly options: Required<Omit<IscsiClientOptions, 'isid'>>, isid?: Uint8Array) {
    this.isid = isid ? Buffer.from(isid) : Buffer.from([0x80, ...Array.from({ length: 5 }, () => Math.floor(Math.random() * 256))]);
    if (this.isid.length !== 6) throw new RangeError('isid must be 6 bytes');
    const lun = options.lun;
    if (lun < 256) this.lunBytes[1] = lun;
    else if (lun < 16384) this.lunBytes.writeUInt16BE(0x4000 | lun, 0); // flat space addressing
    else throw new RangeError(`LUN ${lun} out of range`);
  }

  /** Connect, log in, and return a client in the full feature phase. */
  static async connect(opts: IscsiClientOptions): Promise<IscsiClient> {
    const o: Required<Omit<IscsiClientOptions, 'isid'>> = {
      initiatorName: 'iqn.2026-11.dev.kura:bench-initiator',
      lun: 0,
      maxRecvDataSegmentLength: 262144,
      firstBurstLength: 262144,
      maxBurstLength: 16776192,
      immediateData: true,
      initialR2T: false,
      commandTimeoutMs: 30_000,
      loginTimeoutMs: 10_000,
      ...opts,
    };
    const c = new IscsiClient(o, opts.isid);
    const timer = setTimeout(() => c.fail(new IscsiProtocolError(`login to ${o.host}:${o.port} did not finish within ${o.loginTimeoutMs} ms`)), o.loginTimeoutMs);
    try {
      await c.open();
      await c.login();
      // The first command of a new I_T nexus meets the POWER ON / RESET unit attention: take it
      // here rather than in the first measured command.
      await c.testUnitReady();
    } catch (err) {
      c.socket?.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return c;
  }

  private open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: this.options.host, port: this.options.port });
      this.socket = s;
      s.setNoDelay(true);
      const onError = (err: Error): void => reject(new IscsiProtocolError(`connect ${this.options.host}:${this.options.port}: ${err.message}`));
      s.once('error', onError);
      s.once('connect', () => {
        s.off('error', onError);
        s.on('error', (err) => this.fail(new IscsiProtocolError(`connection: ${err.message}`)));
        s.on('close', () => this.fail(new IscsiProtocolError('connection closed by the target')));
        s.on('data', (b: Buffer) => this.onData(b));
        resolve();
      });
    });
  }

  // ---- login ----

  private async login(): Promise<void> {
    const o = this.options;
    const itt = this.itt++;
    let tsih = 0;
    // Security stage, no authentication.
    let rsp = await this.loginStep(itt, 0, 1, textOf([
      ['InitiatorName', o.initiatorName], ['SessionType', 'Normal'], ['TargetName', o.targetName], ['AuthMethod', 'None'],
    ]), tsih);
    const keys: Record<string, string> = {};
    const absorb = (p: RxPdu): void => { for (const [k, v] of parseText(p.data)) keys[k] = v; };
    absorb(rsp);
    for (let i = 0; !(rsp.bhs[1]! & 0x80) && i < 4; i++) {
      rsp = await this.loginStep(itt, 0, 1, Buffer.alloc(0), tsih);
      absorb(rsp);
    }
    if (!(rsp.bhs[1]! & 0x80)) throw new IscsiProtocolError('login: the target never left the security stage');
    tsih = rsp.bhs.readUInt16BE(14);
    // Operational stage.
    const offered: [string, string][] = [
      ['HeaderDigest', 'None'], ['DataDigest', 'None'],
      ['MaxRecvDataSegmentLength', String(o.maxRecvDataSegmentLength)],
      ['ImmediateData', o.immediateData ? 'Yes' : 'No'],
      ['InitialR2T', o.initialR2T ? 'Yes' : 'No'],
      ['FirstBurstLength', String(o.firstBurstLength)],
      ['MaxBurstLength', String(o.maxBurstLength)],
      ['MaxOutstandingR2T', '1'],
      ['DataPDUInOrder', 'Yes'], ['DataSequenceInOrder', 'Yes'],
      ['ErrorRecoveryLevel', '0'], ['MaxConnections', '1'],
      ['DefaultTime2Wait', '0'], ['DefaultTime2Retain', '0'],
    ];
    rsp = await this.loginStep(itt, 1, 3, textOf(offered), tsih);
    absorb(rsp);
    for (let i = 0; !(rsp.bhs[1]! & 0x80) && i < 4; i++) {
      rsp = await this.loginStep(itt, 1, 3, Buffer.alloc(0), tsih);
      absorb(rsp);
    }
    if ((rsp.bhs[1]! & 0x83) !== 0x83) throw new IscsiProtocolError('login: no transit to the full feature phase');
    for (const [k, v] of Object.entries(keys)) {
      if ((k === 'HeaderDigest' || k === 'DataDigest') && v !== 'None') throw new IscsiProtocolError(`login: target chose ${k}=${v}; this client sends no digests`);
      if (v === 'Reject' || v === 'NotUnderstood') throw new IscsiProtocolError(`login: target answered ${k}=${v}`);
    }
    const num = (k: string, dflt: number): number => {
      const v = keys[k];
      if (v === undefined) return dflt;
      const n = /^0x/i.test(v) ? parseInt(v.slice(2), 16) : Number(v);
      if (!Number.isFinite(n)) throw new IscsiProtocolError(`login: ${k}=${v} is not a number`);
      return n;
    };
    const bool = (k: string, dflt: boolean): boolean => (keys[k] === undefined ? dflt : keys[k] === 'Yes');
    this.params = {
      immediateData: bool('ImmediateData', true) && o.immediateData,
      initialR2T: bool('InitialR2T', true) || o.initialR2T,
      firstBurstLength: Math.min(num('FirstBurstLength', 65536), o.firstBurstLength),
      maxBurstLength: Math.min(num('MaxBurstLength', 262144), o.maxBurstLength),
      targetMaxRecvDataSegmentLength: num('MaxRecvDataSegmentLength', 8192),
      maxOutstandingR2T: num('MaxOutstandingR2T', 1),
      keys,
      tsih: rsp.bhs.readUInt16BE(14),
    };
  }

  private loginStep(itt: number, csg: number, nsg: number, text: Buffer, tsih: number): Promise<RxPdu> {
    const b = Buffer.alloc(48);
    b[0] = 0x40 | OP.LOGIN;
    b[1] = 0x80 | (csg << 2) | nsg;
    this.isid.copy(b, 8);
    b.writeUInt16BE(tsih, 14);
    b.writeUInt32BE(itt, 16);
    b.writeUInt16BE(1, 20); // CID
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(this.expStatSN, 28);
    return new Promise<RxPdu>((resolve, reject) => {
      if (this.closedWith) return reject(this.closedWith);
      this.loginWaiter = { resolve, reject };
      this.sendPdu(b, text);
    }).then((r) => {
      const cls = r.bhs[36]!;
      const detail = r.bhs[37]!;
      if (cls !== 0) {
        throw new IscsiProtocolError(`login failed: status class 0x${cls.toString(16).padStart(2, '0')} detail 0x${detail.toString(16).padStart(2, '0')}` +
          (cls === 2 && detail === 3 ? ' (target not found)' : cls === 2 && detail === 1 ? ' (authentication failure)' : cls === 2 && detail === 2 ? ' (authorization failure)' : ''));
      }
      return r;
    });
  }

  // ---- commands ----

  /** Commands sent and not answered, plus those waiting for the CmdSN window. */
  get outstanding(): number {
    return this.tasks.size;
  }

  /** Commands waiting for the target's CmdSN window to open. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Commands the target allows beyond those in flight (its MaxCmdSN window). */
  get window(): number {
    return snLess(this.maxCmdSN, this.cmdSN) ? 0 : ((this.maxCmdSN - this.cmdSN) >>> 0) + 1;
  }

  /**
   * One SCSI command. `dataOut`: write payload (immediate data, unsolicited Data-Out, R2T);
   * `dataIn`: Data-In bytes expected. Resolves with the status whatever it is.
   */
  command(cdb: Uint8Array, o: { dataOut?: Buffer; dataIn?: number } = {}): Promise<CommandResult> {
    if (cdb.length > 16) return Promise.reject(new RangeError('CDBs longer than 16 bytes need an AHS: not supported'));
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise<CommandResult>((resolve, reject) => {
      const task: Task = {
        itt: this.nextItt(), cdb: Buffer.from(cdb), out: o.dataOut, inLength: o.dataIn ?? 0,
        inChunks: [], inBytes: 0, sentAt: 0n, resolve, reject,
      };
      this.tasks.set(task.itt, task);
      if (this.waiting.length > 0 || this.window === 0) this.waiting.push(task);
      else this.send(task);
    });
  }

  private nextItt(): number {
    for (;;) {
      const itt = this.itt;
      this.itt = this.itt >= 0x7fffffff ? 1 : this.itt + 1;
      if (!this.tasks.has(itt)) return itt;
    }
  }

  private send(t: Task): void {
    const p = this.params;
    const b = Buffer.allocUnsafe(48);
    b.fill(0, 0, 32);
    const out = t.out;
    const edtl = out ? out.length : t.inLength;
    const immediate = out && p.immediateData ? Math.min(out.length, p.firstBurstLength, p.targetMaxRecvDataSegmentLength) : 0;
    const unsolicited = out && !p.initialR2T ? Math.min(out.length, p.firstBurstLength) : immediate;
    const final = !out || unsolicited <= immediate;
    b[0] = OP.SCSI_CMD;
    b[1] = (final ? 0x80 : 0) | (t.inLength > 0 ? 0x40 : 0) | (out ? 0x20 : 0) | 0x01; // simple task attribute
    this.lunBytes.copy(b, 8);
    b.writeUInt32BE(t.itt, 16);
    b.writeUInt32BE(edtl, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(this.expStatSN, 28);
    t.cdb.copy(b, 32);
    if (t.cdb.length < 16) b.fill(0, 32 + t.cdb.length, 48);
    this.cmdSN = snAdd(this.cmdSN, 1);
    const s = this.socket;
    s.cork();
    t.sentAt = process.hrtime.bigint();
    this.sendPdu(b, immediate > 0 ? out!.subarray(0, immediate) : undefined);
    // Unsolicited Data-Out after the immediate data, up to FirstBurstLength.
    if (out && unsolicited > immediate) this.sendDataOut(t, RESERVED_TAG, immediate, unsolicited - immediate);
    s.uncork();
    if (this.options.commandTimeoutMs > 0) {
      t.timer = setTimeout(() => this.fail(new IscsiProtocolError(`command 0x${t.cdb[0]!.toString(16)} (task 0x${t.itt.toString(16)}) unanswered after ${this.options.commandTimeoutMs} ms`)), this.options.commandTimeoutMs);
    }
  }

  /** Data-Out PDUs for [offset, offset + length) of the task's payload, one sequence (DataSN from 0). */
  private sendDataOut(t: Task, ttt: number, offset: number, length: number): void {
    const seg = this.params.targetMaxRecvDataSegmentLength;
    const end = offset + length;
    let dataSN = 0;
    for (let off = offset; off < end; off += seg) {
      const n = Math.min(seg, end - off);
      const b = Buffer.alloc(48);
      b[0] = OP.DATA_OUT;
      b[1] = off + n >= end ? 0x80 : 0;
      this.lunBytes.copy(b, 8);
      b.writeUInt32BE(t.itt, 16);
      b.writeUInt32BE(ttt, 20);
      b.writeUInt32BE(this.expStatSN, 28);
      b.writeUInt32BE(dataSN++, 36);
      b.writeUInt32BE(off, 40);
      this.sendPdu(b, t.out!.subarray(off, off + n));
    }
  }

  private sendPdu(bhs: Buffer, data?: Buffer): void {
    const len = data?.length ?? 0;
    bhs[4] = 0;
    bhs[5] = (len >>> 16) & 0xff;
    bhs[6] = (len >>> 8) & 0xff;
    bhs[7] = len & 0xff;
    const s = this.socket;
    if (len === 0) {
      s.write(bhs);
      return;
    }
    s.cork();
    s.write(bhs);
    s.write(data!);
    if (len % 4) s.write(PAD[len % 4]!);
    s.uncork();
  }

  // ---- receive ----

  private onData(b: Buffer): void {
    this.chunks.push(b);
    this.buffered += b.length;
    try {
      for (;;) {
        if (this.need === 0) {
          if (this.buffered < 48) return;
          const head = this.peek(48);
          const ahs = head[4]! * 4;
          const dsl = (head[5]! << 16) | (head[6]! << 8) | head[7]!;
          this.need = 48 + ahs + dsl + ((4 - (dsl % 4)) % 4);
        }
        if (this.buffered < this.need) return;
        const pdu = this.take(this.need);
        this.need = 0;
        const ahs = pdu[4]! * 4;
        const dsl = (pdu[5]! << 16) | (pdu[6]! << 8) | pdu[7]!;
        this.dispatch({ op: pdu[0]! & 0x3f, bhs: pdu.subarray(0, 48), data: pdu.subarray(48 + ahs, 48 + ahs + dsl) });
      }
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** The first n buffered bytes as one Buffer (merging chunks when needed), not consumed. */
  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) {
      let k = 0;
      let len = 0;
      while (len < n) len += this.chunks[k++]!.length;
      this.chunks.splice(0, k, Buffer.concat(this.chunks.slice(0, k), len));
    }
    return this.chunks[0]!;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let got = 0;
      while (got < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - got);
        c.copy(out, got, 0, k);
        got += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }

  private updateSN(bhs: Buffer, statusPresent: boolean): void {
    if (statusPresent) {
      const next = snAdd(bhs.readUInt32BE(24), 1);
      if (snLess(this.expStatSN, next)) this.expStatSN = next;
    }
    const expCmdSN = bhs.readUInt32BE(28);
    const maxCmdSN = bhs.readUInt32BE(32);
    // RFC 7143 §4.2.2.1: ignore a window with MaxCmdSN < ExpCmdSN - 1, and never shrink it.
    if (!snLess(maxCmdSN, snAdd(expCmdSN, -1)) && snLess(this.maxCmdSN, maxCmdSN)) this.maxCmdSN = maxCmdSN;
  }

  private dispatch(p: RxPdu): void {
    const bhs = p.bhs;
    switch (p.op) {
      case OP.SCSI_RSP: {
        this.updateSN(bhs, true);
        const t = this.tasks.get(bhs.readUInt32BE(16));
        if (!t) throw new IscsiProtocolError(`SCSI Response for unknown task 0x${bhs.readUInt32BE(16).toString(16)}`);
        const flags = bhs[1]!;
        let sense: SenseInfo | undefined;
        if (p.data.length >= 2) {
          const n = p.data.readUInt16BE(0);
          if (n > 0) sense = decodeSense(Buffer.from(p.data.subarray(2, 2 + n)));
        }
        this.finish(t, bhs[3]!, bhs[2]!, sense, flags & 0x06 ? { underflow: !!(flags & 0x02), overflow: !!(flags & 0x04), count: bhs.readUInt32BE(44) } : undefined);
        break;
      }
      case OP.DATA_IN: {
        const flags = bhs[1]!;
        const statusPresent = !!(flags & 0x01);
        this.updateSN(bhs, statusPresent);
        const t = this.tasks.get(bhs.readUInt32BE(16));
        if (!t) throw new IscsiProtocolError(`Data-In for unknown task 0x${bhs.readUInt32BE(16).toString(16)}`);
        const offset = bhs.readUInt32BE(40);
        if (offset !== t.inBytes) throw new IscsiProtocolError(`Data-In at offset ${offset}, expected ${t.inBytes} (out of order)`);
        if (p.data.length > 0) {
          t.inChunks.push(p.data);
          t.inBytes += p.data.length;
        }
        if (statusPresent) {
          this.finish(t, bhs[3]!, 0, undefined, flags & 0x06 ? { underflow: !!(flags & 0x02), overflow: !!(flags & 0x04), count: bhs.readUInt32BE(44) } : undefined);
        }
        break;
      }
      case OP.R2T: {
        this.updateSN(bhs, false);
        const t = this.tasks.get(bhs.readUInt32BE(16));
        if (!t || !t.out) throw new IscsiProtocolError(`R2T for unknown or non-write task 0x${bhs.readUInt32BE(16).toString(16)}`);
        const offset = bhs.readUInt32BE(40);
        const length = bhs.readUInt32BE(44);
        if (offset + length > t.out.length) throw new IscsiProtocolError(`R2T for ${length} bytes at ${offset}, beyond the ${t.out.length}-byte write`);
        this.socket.cork();
        this.sendDataOut(t, bhs.readUInt32BE(20), offset, length);
        this.socket.uncork();
        break;
      }
      case OP.NOP_IN: {
        const itt = bhs.readUInt32BE(16);
        this.updateSN(bhs, itt !== RESERVED_TAG);
        const ttt = bhs.readUInt32BE(20);
        if (ttt !== RESERVED_TAG) {
          // A ping from the target: answer with the same TTT (immediate, CmdSN not advanced).
          const b = Buffer.alloc(48);
          b[0] = 0x40 | OP.NOP_OUT;
          b[1] = 0x80;
          bhs.copy(b, 8, 8, 16);
          b.writeUInt32BE(RESERVED_TAG, 16);
          b.writeUInt32BE(ttt, 20);
          b.writeUInt32BE(this.cmdSN, 24);
          b.writeUInt32BE(this.expStatSN, 28);
          this.sendPdu(b, p.data.length ? Buffer.from(p.data) : undefined);
        }
        break;
      }
      case OP.LOGIN_RSP: {
        this.updateSN(bhs, true);
        // The login's ExpCmdSN/MaxCmdSN also open the first window.
        this.maxCmdSN = bhs.readUInt32BE(32);
        const w = this.loginWaiter;
        this.loginWaiter = undefined;
        if (!w) throw new IscsiProtocolError('unexpected Login Response');
        w.resolve({ ...p, data: Buffer.from(p.data) });
        break;
      }
      case OP.LOGOUT_RSP: {
        this.updateSN(bhs, true);
        const w = this.logoutWaiter;
        this.logoutWaiter = undefined;
        w?.resolve(p);
        break;
      }
      case OP.ASYNC: {
        this.updateSN(bhs, false);
        const event = bhs[36]!;
        // 1: target requests logout; 2/3: connection/session dropped.
        if (event === 2 || event === 3) this.fail(new IscsiProtocolError(`target dropped the ${event === 2 ? 'connection' : 'session'} (Async Message event ${event})`));
        break;
      }
      case OP.REJECT: {
        this.updateSN(bhs, true);
        const reason = bhs[2]!;
        const header = p.data.subarray(0, 48);
        const itt = header.length >= 20 ? header.readUInt32BE(16) : RESERVED_TAG;
        const t = this.tasks.get(itt);
        const err = new IscsiProtocolError(`target rejected a PDU (opcode 0x${((header[0] ?? 0) & 0x3f).toString(16)}), reason 0x${reason.toString(16)}`);
        if (t && (((header[0] ?? 0) & 0x3f) === OP.SCSI_CMD)) this.failTask(t, err);
        else this.fail(err);
        break;
      }
      case OP.TMF_RSP:
      case OP.TEXT_RSP:
        this.updateSN(bhs, true);
        break;
      default:
        throw new IscsiProtocolError(`unexpected PDU opcode 0x${p.op.toString(16)}`);
    }
    this.pump();
  }

  private finish(t: Task, status: number, response: number, sense: SenseInfo | undefined, residual: CommandResult['residual']): void {
    const latencyNs = Number(process.hrtime.bigint() - t.sentAt);
    if (t.timer) clearTimeout(t.timer);
    this.tasks.delete(t.itt);
    this.completed++;
    const data = t.inChunks.length === 1 ? t.inChunks[0]! : t.inChunks.length === 0 ? Buffer.alloc(0) : Buffer.concat(t.inChunks, t.inBytes);
    t.resolve({ status, response, data, sense, residual, latencyNs });
  }

  private failTask(t: Task, err: Error): void {
    if (t.timer) clearTimeout(t.timer);
    this.tasks.delete(t.itt);
    t.reject(err);
  }

  /** Send what waits for the CmdSN window. */
  private pump(): void {
    while (this.waiting.length > 0 && this.window > 0 && !this.closedWith) this.send(this.waiting.shift()!);
  }

  private fail(err: Error): void {
    if (this.closedWith) return;
    this.closedWith = err;
    this.socket?.destroy();
    this.waiting.length = 0;
    for (const t of [...this.tasks.values()]) this.failTask(t, err);
    this.loginWaiter?.reject(err);
    this.loginWaiter = undefined;
    this.logoutWaiter?.reject(err);
    this.logoutWaiter = undefined;
  }

  // ---- convenience ----

  /**
   * Run a command and insist on GOOD. A UNIT ATTENTION (a new I_T nexus, a reset, a change another
   * initiator made) is reported once and the command retried, as initiators do.
   */
  private async ok(op: string, issue: () => Promise<CommandResult>): Promise<CommandResult> {
    for (let attempt = 0; ; attempt++) {
      const res = await issue();
      if (res.status === SAM_STATUS.GOOD && res.response === 0) return res;
      if (res.status === SAM_STATUS.CHECK_CONDITION && res.sense?.key === 0x06 && attempt < 3) {
        this.unitAttentions++;
        continue;
      }
      throw new ScsiError(op, res);
    }
  }

  /** WRITE(10) (WRITE(16) when the LBA or length needs it, or `cdb16`). `data` is whole blocks. */
  write(lba: number, blockSize: number, data: Buffer, o: { fua?: boolean; cdb16?: boolean } = {}): Promise<CommandResult> {
    if (data.length % blockSize !== 0) return Promise.reject(new RangeError(`write of ${data.length} bytes is not whole ${blockSize}-byte blocks`));
    const blocks = data.length / blockSize;
    const long = o.cdb16 || lba > 0xffffffff || blocks > 0xffff;
    return this.ok(long ? 'WRITE(16)' : 'WRITE(10)', () => this.command(long ? cdb16(0x8a, lba, blocks, o.fua) : cdb10(0x2a, lba, blocks, o.fua), { dataOut: data }));
  }

  /** READ(10) (READ(16) when the LBA or length needs it). */
  read(lba: number, blockSize: number, blocks: number): Promise<CommandResult> {
    const long = lba > 0xffffffff || blocks > 0xffff;
    return this.ok(long ? 'READ(16)' : 'READ(10)', () => this.command(long ? cdb16(0x88, lba, blocks) : cdb10(0x28, lba, blocks), { dataIn: blocks * blockSize }));
  }

  /** TEST UNIT READY (unit attentions retried). */
  testUnitReady(): Promise<CommandResult> {
    return this.ok('TEST UNIT READY', () => this.command(Buffer.alloc(6)));
  }

  /** SYNCHRONIZE CACHE(10) of the whole LU. */
  synchronizeCache(): Promise<CommandResult> {
    return this.ok('SYNCHRONIZE CACHE(10)', () => this.command(Buffer.from([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0])));
  }

  async readCapacity16(): Promise<{ blockCount: number; blockSize: number; result: CommandResult }> {
    const cdb = Buffer.alloc(16);
    cdb[0] = 0x9e;
    cdb[1] = 0x10;
    cdb.writeUInt32BE(32, 10);
    const r = await this.ok('READ CAPACITY(16)', () => this.command(cdb, { dataIn: 32 }));
    if (r.data.length < 12) throw new IscsiProtocolError(`READ CAPACITY(16) returned ${r.data.length} bytes`);
    const last = Number(r.data.readBigUInt64BE(0));
    return { blockCount: last + 1, blockSize: r.data.readUInt32BE(8), result: r };
  }

  /** Logout (close the session) once nothing is in flight, then close the socket. */
  async logout(timeoutMs = 5000): Promise<void> {
    if (this.closedWith) return;
    const b = Buffer.alloc(48);
    b[0] = 0x40 | OP.LOGOUT;
    b[1] = 0x80; // reason 0: close the session
    b.writeUInt32BE(this.nextItt(), 16);
    b.writeUInt16BE(1, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(this.expStatSN, 28);
    const done = new Promise<RxPdu>((resolve, reject) => { this.logoutWaiter = { resolve, reject }; });
    this.sendPdu(b);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([done, new Promise((_, reject) => { timer = setTimeout(() => reject(new IscsiProtocolError('logout unanswered')), timeoutMs); })]);
    } finally {
      clearTimeout(timer);
      this.close();
    }
  }

  /** Drop the connection; anything in flight fails. */
  close(): void {
    this.fail(new IscsiProtocolError('client closed'));
  }
}

function cdb10(op: number, lba: number, blocks: number, fua = false): Buffer {
  const c = Buffer.alloc(10);
  c[0] = op;
  if (fua) c[1] = 0x08;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}

function cdb16(op: number, lba: number, blocks: number, fua = false): Buffer {
  const c = Buffer.alloc(16);
  c[0] = op;
  if (fua) c[1] = 0x08;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c.writeUInt32BE(blocks, 10);
  return c;
}
