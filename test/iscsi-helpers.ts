/**
 * Test doubles for the sans-IO iSCSI target: a manual clock, an in-memory StreamTransport, and a
 * scripted initiator that builds PDUs byte by byte (independently of target/iscsi/pdu.ts, so a
 * layout mistake there does not cancel out) and parses what the target writes.
 */
import { crc32c } from '@node-rs/crc32';
import { createHash, randomBytes } from 'node:crypto';
import type { Clock, Timer } from '../hal/clock.js';
import type { StreamHandler, StreamTransport } from '../hal/transport.js';
import { nullLogger } from '../hal/types.js';
import { IscsiServer, IscsiServerOptions, IscsiTargetDefinition } from '../target/iscsi/iscsi-server.js';
import { RamDiskDeviceServer } from './ramdisk-device-server.js';

export class ManualClock implements Clock {
  private t = 0;
  private timers: { at: number; fn: () => void; live: boolean }[] = [];

  now(): number {
    return this.t;
  }

  wallTime(): number {
    return 1_700_000_000_000 + this.t;
  }

  setTimer(ms: number, fn: () => void): Timer {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => { timer.live = false; } };
  }

  get pending(): number {
    return this.timers.filter((t) => t.live).length;
  }

  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.live && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.t = due.at;
      due.live = false;
      due.fn();
    }
    this.t = end;
    this.timers = this.timers.filter((t) => t.live);
  }
}

export class FakeTransport implements StreamTransport {
  readonly remoteAddress = '192.0.2.10';
  readonly remotePort = 40000;
  readonly localAddress = '192.0.2.1';
  readonly localPort = 3260;
  handler!: StreamHandler;
  /** What write() returns: false simulates a full send buffer. */
  writable = true;
  /** Run write callbacks at once (true) or keep them until completeWrites(). */
  autoComplete = true;
  paused = false;
  ended = false;
  destroyed = false;
  writes = 0;
  onWrite: (bytes: Buffer) => void = () => {};
  private pendingDone: ((err?: Error) => void)[] = [];
  private closed = false;

  write(chunks: readonly Uint8Array[], done?: (err?: Error) => void): boolean {
    this.writes++;
    this.onWrite(Buffer.concat(chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength))));
    if (done) {
      if (this.autoComplete) queueMicrotask(() => done());
      else this.pendingDone.push(done);
    }
    return this.writable;
  }

  completeWrites(): void {
    const d = this.pendingDone;
    this.pendingDone = [];
    for (const fn of d) fn();
  }

  pauseReading(): void {
    this.paused = true;
  }

  resumeReading(): void {
    this.paused = false;
  }

  end(): void {
    this.ended = true;
    this.close();
  }

  destroy(): void {
    this.destroyed = true;
    this.close();
  }

  /** The peer closed. */
  close(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    queueMicrotask(() => this.handler.onClose(err));
  }
}

/** Let promises and microtasks run (device server completions, batched flushes). */
export function tick(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

export interface RxPdu {
  op: number;
  bhs: Buffer;
  data: Buffer;
  flags: number;
  itt: number;
  ttt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
}

export const OP = {
  NOP_OUT: 0x00, SCSI_CMD: 0x01, TMF: 0x02, LOGIN: 0x03, TEXT: 0x04, DATA_OUT: 0x05, LOGOUT: 0x06, SNACK: 0x10,
  NOP_IN: 0x20, SCSI_RSP: 0x21, TMF_RSP: 0x22, LOGIN_RSP: 0x23, TEXT_RSP: 0x24, DATA_IN: 0x25, LOGOUT_RSP: 0x26,
  R2T: 0x31, ASYNC: 0x32, REJECT: 0x3f,
} as const;

export function textOf(pairs: Record<string, string> | [string, string][]): Buffer {
  const list = Array.isArray(pairs) ? pairs : Object.entries(pairs);
  return Buffer.from(list.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}

export function parseText(data: Buffer): Map<string, string> {
  const m = new Map<string, string>();
  for (const item of data.toString('utf8').split('\0')) {
    if (!item) continue;
    const eq = item.indexOf('=');
    m.set(item.slice(0, eq), item.slice(eq + 1));
  }
  return m;
}

export function parseTextList(data: Buffer): [string, string][] {
  return data.toString('utf8').split('\0').filter(Boolean).map((i) => [i.slice(0, i.indexOf('=')), i.slice(i.indexOf('=') + 1)]);
}

function digest(b: Uint8Array): Buffer {
  const d = Buffer.alloc(4);
  d.writeUInt32LE(crc32c(b) >>> 0);
  return d;
}

export class LoginError extends Error {
  constructor(readonly status: number) {
    super(`login failed with status 0x${status.toString(16).padStart(4, '0')}`);
  }
}

function checkLogin(r: RxPdu): RxPdu {
  const status = r.bhs.readUInt16BE(36);
  if (status !== 0) throw new LoginError(status);
  return r;
}

export function md5Chap(id: number, secret: string, challenge: Buffer): Buffer {
  return createHash('md5').update(Buffer.of(id)).update(secret).update(challenge).digest();
}

/** The security stage with CHAP (and mutual CHAP when `mutual` is given), ending in T=1 NSG=1. */
async function chapLogin(
  ini: TestInitiator, identity: Record<string, string>, chap: { user: string; secret: string }, mutual?: { user: string; secret: string },
): Promise<void> {
  ini.loginPdu({ csg: 0, nsg: 1, transit: false, text: textOf({ ...identity, AuthMethod: 'CHAP,None' }) });
  await tick();
  let r = checkLogin(ini.next(OP.LOGIN_RSP));
  if (parseText(r.data).get('AuthMethod') !== 'CHAP') throw new Error('target did not pick CHAP');
  ini.loginPdu({ csg: 0, nsg: 1, transit: false, text: textOf({ CHAP_A: '5' }) });
  await tick();
  r = checkLogin(ini.next(OP.LOGIN_RSP));
  const t = parseText(r.data);
  const id = Number(t.get('CHAP_I'));
  const challenge = Buffer.from(t.get('CHAP_C')!.slice(2), 'hex');
  const keys: Record<string, string> = { CHAP_N: chap.user, CHAP_R: `0x${md5Chap(id, chap.secret, challenge).toString('hex')}` };
  const ours = randomBytes(16);
  if (mutual) {
    keys.CHAP_I = '77';
    keys.CHAP_C = `0x${ours.toString('hex')}`;
  }
  ini.loginPdu({ csg: 0, nsg: 1, transit: true, text: textOf(keys) });
  await tick();
  r = checkLogin(ini.next(OP.LOGIN_RSP));
  if (mutual) {
    const a = parseText(r.data);
    if (a.get('CHAP_N') !== mutual.user) throw new Error(`target CHAP_N ${a.get('CHAP_N')}`);
    if (a.get('CHAP_R') !== `0x${md5Chap(77, mutual.secret, ours).toString('hex')}`) throw new Error('target CHAP_R wrong');
  }
}

export interface SendOptions {
  ahs?: Buffer;
  corruptHeaderDigest?: boolean;
  corruptDataDigest?: boolean;
  /** Declared DataSegmentLength, when a test lies about it. */
  dsl?: number;
}

export class TestInitiator {
  readonly transport = new FakeTransport();
  readonly handler: StreamHandler;
  readonly received: RxPdu[] = [];
  headerDigest = false;
  dataDigest = false;
  cmdSN = 1;
  itt = 0x100;
  isid = Buffer.from([0x80, 0x12, 0x34, 0x56, 0x00, 0x01]);
  tsih = 0;
  private rx = Buffer.alloc(0);

  constructor(readonly server: IscsiServer) {
    this.handler = server.accept(this.transport);
    this.transport.handler = this.handler;
    this.transport.onWrite = (b) => this.ingest(b);
  }

  get closed(): boolean {
    return this.transport.ended || this.transport.destroyed;
  }

  nextItt(): number {
    return ++this.itt;
  }

  /** Send a PDU: 48-byte BHS (DataSegmentLength filled in here), optional data. */
  send(bhs: Buffer, data?: Buffer, o: SendOptions = {}): void {
    const len = data?.length ?? 0;
    const dsl = o.dsl ?? len;
    bhs[5] = dsl >>> 16;
    bhs[6] = (dsl >>> 8) & 0xff;
    bhs[7] = dsl & 0xff;
    const ahs = o.ahs ?? Buffer.alloc(0);
    bhs[4] = ahs.length / 4;
    const parts: Buffer[] = [bhs, ahs];
    if (this.headerDigest) {
      const d = digest(Buffer.concat([bhs, ahs]));
      if (o.corruptHeaderDigest) d[0] ^= 0xff;
      parts.push(d);
    }
    if (data && len > 0) {
      const padded = Buffer.concat([data, Buffer.alloc((4 - (len % 4)) % 4)]);
      parts.push(padded);
      if (this.dataDigest) {
        const d = digest(padded);
        if (o.corruptDataDigest) d[0] ^= 0xff;
        parts.push(d);
      }
    }
    this.sendRaw(Buffer.concat(parts));
  }

  sendRaw(bytes: Buffer): void {
    this.handler.onData(bytes);
  }

  private ingest(b: Buffer): void {
    this.rx = Buffer.concat([this.rx, b]);
    for (;;) {
      if (this.rx.length < 48) return;
      const ahs = this.rx[4] * 4;
      const dsl = (this.rx[5] << 16) | (this.rx[6] << 8) | this.rx[7];
      const hd = this.headerDigest ? 4 : 0;
      const padded = dsl + ((4 - (dsl % 4)) % 4);
      const dd = this.dataDigest && dsl > 0 ? 4 : 0;
      const total = 48 + ahs + hd + padded + dd;
      if (this.rx.length < total) return;
      const pdu = this.rx.subarray(0, total);
      this.rx = this.rx.subarray(total);
      const bhs = Buffer.from(pdu.subarray(0, 48));
      if (hd && !digest(pdu.subarray(0, 48 + ahs)).equals(pdu.subarray(48 + ahs, 52 + ahs))) throw new Error('bad header digest from target');
      const dataStart = 48 + ahs + hd;
      const data = Buffer.from(pdu.subarray(dataStart, dataStart + dsl));
      if (dd && !digest(pdu.subarray(dataStart, dataStart + padded)).equals(pdu.subarray(dataStart + padded, total))) {
        throw new Error('bad data digest from target');
      }
      this.received.push({
        op: bhs[0] & 0x3f, bhs, data, flags: bhs[1],
        itt: bhs.readUInt32BE(16), ttt: bhs.readUInt32BE(20),
        statSN: bhs.readUInt32BE(24), expCmdSN: bhs.readUInt32BE(28), maxCmdSN: bhs.readUInt32BE(32),
      });
    }
  }

  /** Take the oldest received PDU, checking its opcode. */
  next(op?: number): RxPdu {
    const p = this.received.shift();
    if (!p) throw new Error(`no PDU received${op === undefined ? '' : ` (expected opcode 0x${op.toString(16)})`}`);
    if (op !== undefined && p.op !== op) {
      throw new Error(`expected opcode 0x${op.toString(16)}, got 0x${p.op.toString(16)} (byte2 0x${p.bhs[2].toString(16)})`);
    }
    return p;
  }

  take(op: number): RxPdu[] {
    const out = this.received.filter((p) => p.op === op);
    this.received.splice(0, this.received.length, ...this.received.filter((p) => p.op !== op));
    return out;
  }

  // ---- PDU builders ----

  loginPdu(o: { csg: number; nsg: number; transit: boolean; cont?: boolean; itt?: number; cid?: number; text: Buffer; versionMin?: number; tsih?: number }): void {
    const b = Buffer.alloc(48);
    b[0] = 0x40 | OP.LOGIN;
    b[1] = (o.transit ? 0x80 : 0) | (o.cont ? 0x40 : 0) | (o.csg << 2) | (o.transit ? o.nsg : 0);
    b[3] = o.versionMin ?? 0;
    this.isid.copy(b, 8);
    b.writeUInt16BE(o.tsih ?? this.tsih, 14);
    b.writeUInt32BE(o.itt ?? this.itt, 16);
    b.writeUInt16BE(o.cid ?? 1, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(0, 28);
    this.send(b, o.text);
  }

  /**
   * A complete login: security stage with CHAP when credentials are given, then the operational
   * keys, then full feature phase. Returns the operational answers.
   */
  async login(o: {
    initiatorName?: string;
    target?: string;
    discovery?: boolean;
    keys?: Record<string, string>;
    chap?: { user: string; secret: string };
    mutual?: { user: string; secret: string };
  } = {}): Promise<Map<string, string>> {
    const identity: Record<string, string> = {
      InitiatorName: o.initiatorName ?? 'iqn.2024-01.test:initiator',
      SessionType: o.discovery ? 'Discovery' : 'Normal',
    };
    if (!o.discovery) identity.TargetName = o.target ?? 'iqn.2024-01.test:disk';
    if (o.chap) {
      await chapLogin(this, identity, o.chap, o.mutual);
    } else {
      this.loginPdu({ csg: 0, nsg: 1, transit: true, text: textOf({ ...identity, AuthMethod: 'None' }) });
      await tick();
      checkLogin(this.next(OP.LOGIN_RSP));
    }
    this.loginPdu({ csg: 1, nsg: 3, transit: true, text: textOf(o.keys ?? {}) });
    await tick();
    const r = checkLogin(this.next(OP.LOGIN_RSP));
    if ((r.flags & 0x83) !== 0x83) throw new Error('no transit to full feature phase');
    this.tsih = r.bhs.readUInt16BE(14);
    const answers = parseText(r.data);
    this.headerDigest = answers.get('HeaderDigest') === 'CRC32C';
    this.dataDigest = answers.get('DataDigest') === 'CRC32C';
    return answers;
  }

  scsi(o: {
    cdb: number[] | Buffer; itt?: number; lun?: number; edtl?: number; read?: boolean; write?: boolean;
    final?: boolean; immediate?: boolean; data?: Buffer; cmdSN?: number; attr?: number; ahs?: Buffer; dsl?: number; corruptDataDigest?: boolean;
  }): number {
    const b = Buffer.alloc(48);
    const itt = o.itt ?? this.nextItt();
    b[0] = (o.immediate ? 0x40 : 0) | OP.SCSI_CMD;
    b[1] = (o.final === false ? 0 : 0x80) | (o.read ? 0x40 : 0) | (o.write ? 0x20 : 0) | (o.attr ?? 1);
    b[9] = o.lun ?? 0;
    b.writeUInt32BE(itt, 16);
    b.writeUInt32BE(o.edtl ?? 0, 20);
    const cmdSN = o.cmdSN ?? this.cmdSN;
    b.writeUInt32BE(cmdSN, 24);
    if (o.cmdSN === undefined && !o.immediate) this.cmdSN++;
    Buffer.from(o.cdb).copy(b, 32, 0, 16);
    this.send(b, o.data, { ahs: o.ahs, dsl: o.dsl, corruptDataDigest: o.corruptDataDigest });
    return itt;
  }

  dataOut(o: { itt: number; ttt?: number; dataSN: number; offset: number; final?: boolean; data: Buffer; lun?: number; corruptDataDigest?: boolean }): void {
    const b = Buffer.alloc(48);
    b[0] = OP.DATA_OUT;
    b[1] = o.final === false ? 0 : 0x80;
    b[9] = o.lun ?? 0;
    b.writeUInt32BE(o.itt, 16);
    b.writeUInt32BE(o.ttt ?? 0xffffffff, 20);
    b.writeUInt32BE(o.dataSN, 36);
    b.writeUInt32BE(o.offset, 40);
    this.send(b, o.data, { corruptDataDigest: o.corruptDataDigest });
  }

  nopOut(o: { itt?: number; ttt?: number; immediate?: boolean; data?: Buffer } = {}): number {
    const b = Buffer.alloc(48);
    const itt = o.itt ?? this.nextItt();
    b[0] = (o.immediate ?? true ? 0x40 : 0) | OP.NOP_OUT;
    b[1] = 0x80;
    b.writeUInt32BE(itt, 16);
    b.writeUInt32BE(o.ttt ?? 0xffffffff, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    if (!(o.immediate ?? true) && itt !== 0xffffffff) this.cmdSN++;
    this.send(b, o.data);
    return itt;
  }

  tmf(o: { fn: number; rtt?: number; refCmdSN?: number; lun?: number; immediate?: boolean }): number {
    const b = Buffer.alloc(48);
    const itt = this.nextItt();
    b[0] = (o.immediate ?? true ? 0x40 : 0) | OP.TMF;
    b[1] = 0x80 | o.fn;
    b[9] = o.lun ?? 0;
    b.writeUInt32BE(itt, 16);
    b.writeUInt32BE(o.rtt ?? 0xffffffff, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(o.refCmdSN ?? 0, 32);
    if (!(o.immediate ?? true)) this.cmdSN++;
    this.send(b);
    return itt;
  }

  textRequest(o: { text: Buffer; itt?: number; ttt?: number; final?: boolean; cont?: boolean; immediate?: boolean }): number {
    const b = Buffer.alloc(48);
    const itt = o.itt ?? this.nextItt();
    b[0] = (o.immediate ? 0x40 : 0) | OP.TEXT;
    b[1] = (o.final === false ? 0 : 0x80) | (o.cont ? 0x40 : 0);
    b.writeUInt32BE(itt, 16);
    b.writeUInt32BE(o.ttt ?? 0xffffffff, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    if (!o.immediate) this.cmdSN++;
    this.send(b, o.text);
    return itt;
  }

  logout(o: { reason?: number; cid?: number; immediate?: boolean } = {}): number {
    const b = Buffer.alloc(48);
    const itt = this.nextItt();
    b[0] = (o.immediate ? 0x40 : 0) | OP.LOGOUT;
    b[1] = 0x80 | (o.reason ?? 0);
    b.writeUInt32BE(itt, 16);
    b.writeUInt16BE(o.cid ?? 1, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    if (!o.immediate) this.cmdSN++;
    this.send(b);
    return itt;
  }
}

export const TARGET = 'iqn.2024-01.test:disk';

export function makeServer(o: Partial<IscsiServerOptions> & { target?: Partial<IscsiTargetDefinition>; disk?: RamDiskDeviceServer } = {}): {
  server: IscsiServer; clock: ManualClock; disk: RamDiskDeviceServer;
} {
  const clock = (o.clock as ManualClock | undefined) ?? new ManualClock();
  const disk = o.disk ?? new RamDiskDeviceServer();
  const server = new IscsiServer({
    clock,
    logger: nullLogger,
    portals: [{ host: '192.0.2.1', port: 3260 }],
    targets: o.targets ?? [{ name: TARGET, deviceServer: disk, ...o.target }],
    nopInIntervalMs: 0,
    ...o,
  });
  return { server, clock, disk };
}

/** Standard CDBs. */
export function read10(lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x28;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}

export function write10(lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x2a;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}

export function inquiry(alloc = 36): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x12;
  c.writeUInt16BE(alloc, 3);
  return c;
}
