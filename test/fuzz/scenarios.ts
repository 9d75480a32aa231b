/**
 * The corpus: valid PDU sequences a real initiator sends, generated from a seed. Logins with and
 * without CHAP (one-way, mutual), discovery with SendTargets, the login variants RFC 7143 allows
 * (operational stage only, straight to full feature, texts continued with the C bit, several
 * rounds), then SCSI commands with immediate, unsolicited and R2T-solicited data, reads, NOP
 * pings both ways, task management, text negotiation, extended CDBs, bidirectional commands,
 * pipelined and out-of-order CmdSNs, session and connection reinstatement, logout. Steps build
 * their PDUs when they run, from what the connection learned so far (CHAP challenge, R2Ts, TSIH,
 * negotiated limits), so that a sequence stays valid until the mutator says otherwise.
 */
import { createHash } from 'node:crypto';
import type { Random } from '../../hal/sim/random.js';
import type { FuzzPeer } from './fuzz-peer.js';
import {
  NO_TAG, type OutPdu, cdb, commandBhs, dataOutBhs, loginBhs, logoutBhs, nopOutBhs, rw10, rw16, snackBhs, textBhs, textOf, tmfBhs,
} from './wire.js';

export interface FuzzTargets {
  initiatorName: string;
  open: string;
  chap: string;
  /** A target whose digest policy is required/required. */
  digest: string;
  chapCredentials: { user: string; secret: string };
  mutualCredentials: { user: string; secret: string };
  blocks: number;
}

export interface StepContext {
  readonly peer: FuzzPeer;
  readonly peers: readonly FuzzPeer[];
  readonly rng: Random;
  readonly targets: FuzzTargets;
  /** Encode with the connection's digests, maybe mutate, queue for delivery. */
  send(p: OutPdu): void;
  /** Deliver what is queued (in arbitrary pieces) and let the target answer. */
  settle(): Promise<void>;
}

export interface Step {
  conn: number;
  what: string;
  run(ctx: StepContext): Promise<void>;
}

export interface Scenario {
  kind: string;
  isids: Buffer[];
  steps: Step[];
}

type Pairs = [string, string][];

function step(conn: number, what: string, run: (ctx: StepContext) => Promise<void> | void): Step {
  return { conn, what, run: async (ctx) => { await run(ctx); } };
}

/** n pseudo-random bytes (xorshift from one draw: cheap for the 64 KiB writes). */
function bytesOf(rng: Random, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = rng.u32() | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

// ---- login ----

function sendLogin(ctx: StepContext, o: { csg: number; nsg: number; transit: boolean; cont?: boolean; text: Buffer; tsih?: number; what: string }): void {
  const p = ctx.peer;
  ctx.send({
    what: o.what,
    bhs: loginBhs({
      csg: o.csg, nsg: o.nsg, transit: o.transit, cont: o.cont, isid: p.isid, tsih: o.tsih ?? p.tsih, itt: 0x10000,
      cid: p.cid, cmdSN: p.cmdSN, expStatSN: p.expStatSN,
    }),
    data: o.text,
  });
}

const DIGEST_OFFERS = ['None', 'CRC32C', 'CRC32C,None', 'None,CRC32C'];

function operationalKeys(rng: Random, p: FuzzPeer, o: { discovery: boolean; wantDigests: boolean }): Pairs {
  const keys: Pairs = [];
  const digest = (): string => (o.wantDigests && rng.bool(0.9) ? rng.pick(['CRC32C', 'CRC32C,None', 'None,CRC32C']) : rng.pick(DIGEST_OFFERS));
  if (o.wantDigests || rng.bool(0.9)) keys.push(['HeaderDigest', digest()]);
  if (o.wantDigests || rng.bool(0.9)) keys.push(['DataDigest', digest()]);
  if (rng.bool(0.9)) {
    p.declaredMrdsl = rng.pick([512, 4096, 8192, 65536, 262144, 262144, 16777215]);
    keys.push(['MaxRecvDataSegmentLength', String(p.declaredMrdsl)]);
  }
  if (!o.discovery) {
    if (rng.bool(0.7)) keys.push(['MaxBurstLength', String(rng.pick([512, 4096, 65536, 262144, 1048576, 16776192]))]);
    if (rng.bool(0.7)) keys.push(['FirstBurstLength', String(rng.pick([512, 4096, 65536, 262144]))]);
    if (rng.bool(0.8)) keys.push(['InitialR2T', rng.pick(['Yes', 'No', 'No'])]);
    if (rng.bool(0.8)) keys.push(['ImmediateData', rng.pick(['Yes', 'Yes', 'No'])]);
    if (rng.bool(0.5)) keys.push(['MaxOutstandingR2T', String(rng.range(1, 16))]);
    if (rng.bool(0.5)) keys.push(['DataPDUInOrder', 'Yes'], ['DataSequenceInOrder', 'Yes']);
    if (rng.bool(0.5)) keys.push(['ErrorRecoveryLevel', '0'], ['MaxConnections', '1']);
    if (rng.bool(0.3)) keys.push(['DefaultTime2Wait', '2'], ['DefaultTime2Retain', '0'], ['IFMarker', 'No'], ['OFMarker', 'No']);
    if (rng.bool(0.1)) keys.push(['X-org.example.fuzz', 'maybe']);
  }
  return rng.shuffle(keys);
}

function chapResponse(id: number, secret: string, challenge: Buffer): string {
  return `0x${createHash('md5').update(Buffer.of(id)).update(secret).update(challenge).digest('hex')}`;
}

/** The login steps of one connection. `target` undefined = a discovery session. */
export function loginSteps(rng: Random, conn: number, o: { target?: string; auth: 'none' | 'chap' | 'mutual'; tsih?: (ctx: StepContext) => number; targets: FuzzTargets }): Step[] {
  const discovery = o.target === undefined;
  const identity: Pairs = [['InitiatorName', o.targets.initiatorName], ['SessionType', discovery ? 'Discovery' : 'Normal']];
  if (!discovery) identity.push(['TargetName', o.target!]);
  if (rng.bool(0.2)) identity.push(['InitiatorAlias', 'fuzz']);
  const wantDigests = o.target === o.targets.digest;
  const tsih = (ctx: StepContext): number | undefined => o.tsih?.(ctx);
  const steps: Step[] = [];
  const op = (transit: boolean, extra: Pairs = [], declared = false): Step => step(conn, 'login operational', (ctx) => {
    // A key negotiated twice fails the login: leave out what an earlier round declared.
    const keys = operationalKeys(ctx.rng, ctx.peer, { discovery, wantDigests }).filter(([k]) => !declared || k !== 'MaxRecvDataSegmentLength');
    if (declared) ctx.peer.declaredMrdsl = undefined;
    sendLogin(ctx, { csg: 1, nsg: 3, transit, text: textOf([...extra, ...keys]), tsih: tsih(ctx), what: 'login op' });
    return ctx.settle();
  });
  if (o.auth !== 'none') {
    steps.push(step(conn, 'login AuthMethod=CHAP', (ctx) => {
      sendLogin(ctx, { csg: 0, nsg: 1, transit: false, text: textOf([...identity, ['AuthMethod', ctx.rng.pick(['CHAP,None', 'CHAP'])]]), tsih: tsih(ctx), what: 'login chap offer' });
      return ctx.settle();
    }));
    steps.push(step(conn, 'login CHAP_A', (ctx) => {
      sendLogin(ctx, { csg: 0, nsg: 1, transit: false, text: textOf([['CHAP_A', ctx.rng.pick(['5', '7,5'])]]), tsih: tsih(ctx), what: 'login chap_a' });
      return ctx.settle();
    }));
    steps.push(step(conn, 'login CHAP_R', (ctx) => {
      const c = ctx.peer.chap ?? { id: 0, challenge: Buffer.alloc(16) };
      const keys: Pairs = [['CHAP_N', o.targets.chapCredentials.user], ['CHAP_R', chapResponse(c.id, o.targets.chapCredentials.secret, c.challenge)]];
      if (o.auth === 'mutual') keys.push(['CHAP_I', String(ctx.rng.int(256))], ['CHAP_C', `0x${bytesOf(ctx.rng, 16).toString('hex')}`]);
      sendLogin(ctx, { csg: 0, nsg: 1, transit: true, text: textOf(keys), tsih: tsih(ctx), what: 'login chap_r' });
      return ctx.settle();
    }));
    steps.push(op(true));
    return steps;
  }
  switch (rng.int(6)) {
    case 0: // operational stage only
      steps.push(op(true, identity));
      break;
    case 1: // security straight to the full feature phase
      steps.push(step(conn, 'login 0->3', (ctx) => {
        sendLogin(ctx, { csg: 0, nsg: 3, transit: true, text: textOf([...identity, ['AuthMethod', 'None']]), tsih: tsih(ctx), what: 'login 0->3' });
        return ctx.settle();
      }));
      break;
    case 2: { // the first text continued over two PDUs (C bit)
      const text = textOf([...identity, ['AuthMethod', 'None']]);
      const cut = 1 + rng.int(text.length - 1);
      steps.push(step(conn, 'login text part 1', (ctx) => {
        sendLogin(ctx, { csg: 0, nsg: 1, transit: false, cont: true, text: text.subarray(0, cut), tsih: tsih(ctx), what: 'login C=1' });
        return ctx.settle();
      }));
      steps.push(step(conn, 'login text part 2', (ctx) => {
        sendLogin(ctx, { csg: 0, nsg: 1, transit: true, text: text.subarray(cut), tsih: tsih(ctx), what: 'login C=0' });
        return ctx.settle();
      }));
      steps.push(op(true));
      break;
    }
    case 3: // operational stage over two rounds
      steps.push(step(conn, 'login security', (ctx) => {
        sendLogin(ctx, { csg: 0, nsg: 1, transit: true, text: textOf([...identity, ['AuthMethod', 'None']]), tsih: tsih(ctx), what: 'login sec' });
        return ctx.settle();
      }));
      steps.push(step(conn, 'login operational round 1', (ctx) => {
        sendLogin(ctx, { csg: 1, nsg: 3, transit: false, text: textOf([['MaxRecvDataSegmentLength', String(ctx.peer.declaredMrdsl = 65536)]]), tsih: tsih(ctx), what: 'login op T=0' });
        return ctx.settle();
      }));
      steps.push(op(true, [], true));
      break;
    default:
      steps.push(step(conn, 'login security', (ctx) => {
        sendLogin(ctx, { csg: 0, nsg: 1, transit: true, text: textOf([...identity, ['AuthMethod', ctx.rng.pick(['None', 'None', 'CHAP,None'])]]), tsih: tsih(ctx), what: 'login sec' });
        return ctx.settle();
      }));
      steps.push(op(true));
  }
  return steps;
}

// ---- full feature phase ----

interface Shared {
  /** The last write still waiting for solicited data (ABORT TASK aims at it). */
  lastWrite?: { itt: number; cmdSN: number; data: Buffer; lun: number };
  /** Bytes of Data-Out sent this input: bounded so that a lying EDTL cannot make an input huge. */
  dataOutBytes: number;
}

const MAX_DATA_OUT = 2 * 1024 * 1024;

async function serveR2ts(ctx: StepContext, s: Shared, itt?: number, data?: Buffer): Promise<void> {
  for (let round = 0; round < 32; round++) {
    const p = ctx.peer;
    const i = p.r2ts.findIndex((r) => itt === undefined || r.itt === itt);
    if (i < 0 || p.closed) return;
    const r = p.r2ts.splice(i, 1)[0]!;
    const end = r.offset + r.length;
    const segment = Math.max(512, Math.min(p.targetMrdsl, 262144));
    for (let off = r.offset, sn = 0; off < end && s.dataOutBytes < MAX_DATA_OUT; sn++) {
      const n = Math.min(segment, end - off);
      const bhs = dataOutBhs({ final: off + n === end, lun: 0, itt: r.itt, ttt: r.ttt, expStatSN: p.expStatSN, dataSN: sn, offset: off });
      r.lun.copy(bhs, 8);
      const piece = data && off + n <= data.length ? data.subarray(off, off + n) : Buffer.alloc(n, 0xa5);
      ctx.send({ what: 'data-out solicited', bhs, data: piece });
      s.dataOutBytes += n;
      off += n;
    }
    await ctx.settle();
  }
}

function write(conn: number, s: Shared, serve: boolean): Step {
  return step(conn, serve ? 'write' : 'write (R2T left pending)', async (ctx) => {
    const { peer: p, rng } = ctx;
    const blocks = rng.pick([1, 1, 2, 8, 16, 64, 128]);
    const lba = rng.int(ctx.targets.blocks - blocks + 1);
    const length = blocks * 512;
    const edtl = rng.bool(0.9) ? length : rng.pick([0, 512, length - 512, length + 512]);
    const data = bytesOf(rng, edtl);
    const itt = p.nextItt();
    const imm = serve && p.immediateData && rng.bool(0.7) ? Math.min(edtl, p.firstBurst, p.targetMrdsl) : 0;
    const unsol = serve && !p.initialR2T && rng.bool(0.5) ? Math.max(0, Math.min(edtl, p.firstBurst) - imm) : 0;
    const lun = rng.bool(0.95) ? 0 : rng.pick([1, 7]);
    const cmdSN = p.takeCmdSN();
    ctx.send({
      what: 'write',
      bhs: commandBhs({
        final: unsol === 0, read: false, write: true, attr: rng.pick([0, 1, 1, 1, 2, 3]), lun, itt, edtl, cmdSN, expStatSN: p.expStatSN,
        cdb: rng.bool(0.3) ? rw16(0x8a, lba, blocks) : rw10(0x2a, lba, blocks),
      }),
      data: data.subarray(0, imm),
    });
    for (let off = imm, sn = 0; off < imm + unsol; sn++) {
      const n = Math.min(p.targetMrdsl, imm + unsol - off);
      ctx.send({
        what: 'data-out unsolicited',
        bhs: dataOutBhs({ final: off + n === imm + unsol, lun, itt, ttt: NO_TAG, expStatSN: p.expStatSN, dataSN: sn, offset: off }),
        data: data.subarray(off, off + n),
      });
      off += n;
    }
    s.lastWrite = { itt, cmdSN, data, lun };
    await ctx.settle();
    if (serve) await serveR2ts(ctx, s, itt, data);
  });
}

function read(conn: number): Step {
  return step(conn, 'read', (ctx) => {
    const { peer: p, rng } = ctx;
    const blocks = rng.pick([0, 1, 1, 8, 64, 256]);
    const lba = rng.int(ctx.targets.blocks - Math.min(blocks, ctx.targets.blocks) + 1);
    const edtl = rng.bool(0.85) ? blocks * 512 : rng.pick([0, 512, blocks * 512 + 4096, 100]);
    ctx.send({
      what: 'read',
      bhs: commandBhs({
        immediate: rng.bool(0.1), final: true, read: edtl > 0, write: false, attr: 1, lun: 0, itt: p.nextItt(), edtl,
        cmdSN: rng.bool(0.1) ? p.cmdSN : p.takeCmdSN(), expStatSN: p.expStatSN,
        cdb: rng.bool(0.3) ? rw16(0x88, lba, blocks) : rw10(0x28, lba, blocks),
      }),
    });
    return ctx.settle();
  });
}

const SMALL: [number[], number][] = [
  [[0x12, 0, 0, 0, 36, 0], 36], [[0x12, 0, 0, 0, 255, 0], 255], [[0x12, 1, 0x00, 0, 255, 0], 255], [[0x12, 1, 0x80, 0, 255, 0], 255],
  [[0x12, 1, 0x83, 0, 255, 0], 255], [[0x12, 1, 0xb0, 0, 64, 0], 64], [[0x00, 0, 0, 0, 0, 0], 0], [[0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096],
  [[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8], [[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], 32], [[0x1a, 0, 0x3f, 0, 255, 0], 255],
  [[0x5a, 0, 0x3f, 0, 0, 0, 0, 0x10, 0, 0], 4096], [[0x03, 0, 0, 0, 18, 0], 18], [[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0], [[0xc5, 0, 0, 0, 0, 0], 0],
  [[0x1b, 0, 0, 0, 1, 0], 0], [[0x2f, 0, 0, 0, 0, 0, 0, 0, 8, 0], 0],
];

function small(rng: Random, p: FuzzPeer, immediate = false, cmdSN?: number): OutPdu {
  const [bytes, edtl] = rng.pick(SMALL);
  return {
    what: `cdb 0x${bytes[0]!.toString(16)}`,
    bhs: commandBhs({
      immediate, final: true, read: edtl > 0, write: false, attr: rng.pick([1, 1, 2, 3]), lun: rng.bool(0.9) ? 0 : rng.pick([1, 3, 255]),
      itt: p.nextItt(), edtl, cmdSN: cmdSN ?? (immediate ? p.cmdSN : p.takeCmdSN()), expStatSN: p.expStatSN, cdb: cdb(bytes),
    }),
  };
}

function smallCommand(conn: number): Step {
  return step(conn, 'small command', (ctx) => {
    ctx.send(small(ctx.rng, ctx.peer, ctx.rng.bool(0.15)));
    return ctx.settle();
  });
}

/** Several commands back to back, sometimes with their CmdSNs out of order (the target must reorder). */
function burst(conn: number): Step {
  return step(conn, 'pipelined burst', (ctx) => {
    const { peer: p, rng } = ctx;
    const n = rng.range(2, 6);
    const first = p.cmdSN;
    const sns = Array.from({ length: n }, (_, i) => (first + i) >>> 0);
    if (rng.bool(0.4)) rng.shuffle(sns);
    p.cmdSN = (first + n) >>> 0;
    for (const sn of sns) ctx.send(small(rng, p, false, sn));
    return ctx.settle();
  });
}

function nopOut(conn: number): Step {
  return step(conn, 'nop-out', (ctx) => {
    const { peer: p, rng } = ctx;
    const immediate = rng.bool(0.8);
    const wantsAnswer = rng.bool(0.9);
    ctx.send({
      what: 'nop-out',
      bhs: nopOutBhs({ immediate, itt: wantsAnswer ? p.nextItt() : NO_TAG, ttt: NO_TAG, cmdSN: immediate || !wantsAnswer ? p.cmdSN : p.takeCmdSN(), expStatSN: p.expStatSN }),
      data: bytesOf(rng, rng.pick([0, 0, 1, 7, 48, 300, 4096, 9000])),
    });
    return ctx.settle();
  });
}

/** A NOP-Out answering a target ping (or a ping that never was). */
function nopAnswer(conn: number): Step {
  return step(conn, 'nop-out answer', (ctx) => {
    const p = ctx.peer;
    const ttt = p.pings.shift() ?? ctx.rng.u32();
    ctx.send({ what: 'nop-out answer', bhs: nopOutBhs({ immediate: true, itt: NO_TAG, ttt, cmdSN: p.cmdSN, expStatSN: p.expStatSN }) });
    return ctx.settle();
  });
}

function tmf(conn: number, s: Shared): Step {
  return step(conn, 'task management', (ctx) => {
    const { peer: p, rng } = ctx;
    const fn = rng.pick([1, 1, 1, 2, 4, 5, 5, 6, 3, 8, 9, 14, 7]);
    const immediate = rng.bool(0.8);
    const w = s.lastWrite;
    ctx.send({
      what: `tmf ${fn}`,
      bhs: tmfBhs({
        immediate, fn, lun: rng.bool(0.9) ? 0 : rng.pick([1, 9]), itt: p.nextItt(), rtt: fn === 1 ? (w?.itt ?? rng.u32()) : NO_TAG,
        cmdSN: immediate ? p.cmdSN : p.takeCmdSN(), expStatSN: p.expStatSN, refCmdSN: w?.cmdSN ?? p.cmdSN,
      }),
    });
    return ctx.settle();
  });
}

/** A write left waiting for its R2T, aborted, then its late Data-Out (the target drops it silently). */
function abortedWrite(conn: number, s: Shared): Step[] {
  return [
    write(conn, s, false),
    step(conn, 'abort task', (ctx) => {
      const p = ctx.peer;
      const w = s.lastWrite;
      ctx.send({
        what: 'abort task',
        bhs: tmfBhs({ immediate: true, fn: 1, lun: 0, itt: p.nextItt(), rtt: w?.itt ?? 0, cmdSN: p.cmdSN, expStatSN: p.expStatSN, refCmdSN: w?.cmdSN ?? 0 }),
      });
      return ctx.settle();
    }),
    step(conn, 'late data-out', (ctx) => serveR2ts(ctx, s, s.lastWrite?.itt, s.lastWrite?.data)),
  ];
}

const TEXT_KEYS: Pairs = [
  ['SendTargets', 'All'], ['SendTargets', ''], ['SendTargets', 'iqn.2024-01.test.fuzz:open'], ['MaxRecvDataSegmentLength', '4096'],
  ['MaxRecvDataSegmentLength', '262144'], ['X-org.example.fuzz', '1'], ['HeaderDigest', 'CRC32C'], ['MaxBurstLength', '4096'],
];

function text(conn: number, keys?: Pairs): Step {
  return step(conn, 'text', async (ctx) => {
    const { peer: p, rng } = ctx;
    const pairs: Pairs = keys ?? [rng.pick(TEXT_KEYS)];
    for (const [k, v] of pairs) if (k === 'MaxRecvDataSegmentLength') p.declaredMrdsl = Number(v);
    const body = textOf(pairs);
    const immediate = rng.bool(0.3);
    const itt = p.nextItt();
    p.textTtt = NO_TAG;
    if (rng.bool(0.25) && body.length > 1) {
      // The request continued over two PDUs: the target answers the first with a TTT to quote.
      const cut = 1 + rng.int(body.length - 1);
      ctx.send({ what: 'text C=1', bhs: textBhs({ immediate, final: false, cont: true, itt, ttt: NO_TAG, cmdSN: immediate ? p.cmdSN : p.takeCmdSN(), expStatSN: p.expStatSN }), data: body.subarray(0, cut) });
      await ctx.settle();
      ctx.send({ what: 'text C=0', bhs: textBhs({ immediate, final: true, cont: false, itt, ttt: p.textTtt, cmdSN: immediate ? p.cmdSN : p.takeCmdSN(), expStatSN: p.expStatSN }), data: body.subarray(cut) });
    } else {
      ctx.send({ what: 'text', bhs: textBhs({ immediate, final: true, cont: false, itt, ttt: NO_TAG, cmdSN: immediate ? p.cmdSN : p.takeCmdSN(), expStatSN: p.expStatSN }), data: body });
    }
    await ctx.settle();
    // A long answer comes in pieces: ask for the next one with the TTT of the last.
    for (let i = 0; i < 4 && p.textTtt !== NO_TAG && !p.closed; i++) {
      ctx.send({ what: 'text follow-on', bhs: textBhs({ immediate, final: true, cont: false, itt, ttt: p.textTtt, cmdSN: immediate ? p.cmdSN : p.takeCmdSN(), expStatSN: p.expStatSN }) });
      p.textTtt = NO_TAG;
      await ctx.settle();
    }
  });
}

/** A 32-byte CDB through an extended-CDB AHS, and a bidirectional command with its read length AHS. */
function ahsCommand(conn: number): Step {
  return step(conn, 'AHS command', (ctx) => {
    const { peer: p, rng } = ctx;
    if (rng.bool(0.5)) {
      const ahs = Buffer.alloc(20);
      ahs.writeUInt16BE(17, 0);
      ahs[2] = 1;
      ahs[4] = 0x09;
      const c = cdb([0x7f, 0, 0, 0, 0, 0, 0, 0x18, 0x00, 0x09]);
      ctx.send({ what: 'extended CDB', ahs, bhs: commandBhs({ final: true, read: false, write: false, attr: 1, lun: 0, itt: p.nextItt(), edtl: 0, cmdSN: p.takeCmdSN(), expStatSN: p.expStatSN, cdb: c }) });
    } else {
      const ahs = Buffer.from([0, 5, 2, 0, 0, 0, 2, 0]);
      const data = bytesOf(rng, p.immediateData ? 512 : 0);
      ctx.send({
        what: 'bidi', ahs, data,
        bhs: commandBhs({ final: true, read: true, write: true, attr: 1, lun: 0, itt: p.nextItt(), edtl: 512, cmdSN: p.takeCmdSN(), expStatSN: p.expStatSN, cdb: cdb([0x53, 0, 0, 0, 0, 1, 0, 0, 1, 0]) }),
      });
    }
    return ctx.settle();
  });
}

function snack(conn: number): Step {
  return step(conn, 'snack', (ctx) => {
    const p = ctx.peer;
    ctx.send({ what: 'snack', bhs: snackBhs({ type: ctx.rng.int(4), itt: p.itt, ttt: NO_TAG, expStatSN: p.expStatSN, begRun: 0, runLength: 0 }) });
    return ctx.settle();
  });
}

function logout(conn: number): Step {
  return step(conn, 'logout', (ctx) => {
    const { peer: p, rng } = ctx;
    const immediate = rng.bool(0.5);
    ctx.send({
      what: 'logout',
      bhs: logoutBhs({ immediate, reason: rng.pick([0, 0, 0, 1, 1, 2]), itt: p.nextItt(), cid: rng.bool(0.9) ? p.cid : 7, cmdSN: immediate ? p.cmdSN : p.takeCmdSN(), expStatSN: p.expStatSN }),
    });
    return ctx.settle();
  });
}

/** More immediate commands outstanding than the target allows (each waits for its R2T). */
function immediateFlood(conn: number, queueDepth: number): Step {
  return step(conn, 'immediate flood', (ctx) => {
    const p = ctx.peer;
    for (let i = 0; i < queueDepth + 2; i++) {
      ctx.send({
        what: 'immediate write',
        bhs: commandBhs({ immediate: true, final: true, read: false, write: true, attr: 1, lun: 0, itt: p.nextItt(), edtl: 512, cmdSN: p.cmdSN, expStatSN: p.expStatSN, cdb: rw10(0x2a, i, 1) }),
      });
    }
    return ctx.settle();
  });
}

/**
 * A command sent past a CmdSN gap (held by the target), with unsolicited data when allowed; then
 * maybe an ABORT TASK for it while it waits; then the gap filled.
 */
function cmdSnGap(conn: number, s: Shared): Step {
  return step(conn, 'CmdSN gap', async (ctx) => {
    const { peer: p, rng } = ctx;
    const gap = p.takeCmdSN();
    const held = p.takeCmdSN();
    const itt = p.nextItt();
    const data = bytesOf(rng, p.immediateData ? Math.min(4096, p.firstBurst, p.targetMrdsl) : 0);
    ctx.send({ what: 'write past a gap', bhs: commandBhs({ final: true, read: false, write: true, attr: 1, lun: 0, itt, edtl: 4096, cmdSN: held, expStatSN: p.expStatSN, cdb: rw10(0x2a, 8, 8) }), data });
    await ctx.settle();
    if (rng.bool(0.6)) {
      ctx.send({ what: 'abort held task', bhs: tmfBhs({ immediate: true, fn: 1, lun: 0, itt: p.nextItt(), rtt: itt, cmdSN: p.cmdSN, expStatSN: p.expStatSN, refCmdSN: held }) });
      await ctx.settle();
    }
    s.lastWrite = { itt, cmdSN: held, data: Buffer.alloc(4096, 1), lun: 0 };
    ctx.send(small(rng, p, false, gap));
    await ctx.settle();
    await serveR2ts(ctx, s, itt);
  });
}

function ffpSteps(rng: Random, conn: number, s: Shared, count: number): Step[] {
  const out: Step[] = [];
  for (let i = 0; i < count; i++) {
    const r = rng.int(100);
    if (r < 22) out.push(write(conn, s, true));
    else if (r < 36) out.push(read(conn));
    else if (r < 50) out.push(smallCommand(conn));
    else if (r < 57) out.push(burst(conn));
    else if (r < 65) out.push(nopOut(conn));
    else if (r < 67) out.push(nopAnswer(conn));
    else if (r < 74) out.push(tmf(conn, s));
    else if (r < 78) out.push(...abortedWrite(conn, s));
    else if (r < 85) out.push(text(conn));
    else if (r < 89) out.push(ahsCommand(conn));
    else if (r < 90) out.push(snack(conn));
    else if (r < 91) out.push(immediateFlood(conn, 32));
    else if (r < 93) out.push(cmdSnGap(conn, s));
    else out.push(write(conn, s, false), step(conn, 'serve R2Ts', (ctx) => serveR2ts(ctx, s)));
  }
  if (rng.bool(0.5)) out.push(logout(conn));
  return out;
}

function isid(rng: Random): Buffer {
  return Buffer.from([0x80, rng.int(256), rng.int(256), rng.int(256), rng.int(256), rng.int(256)]);
}

export function buildScenario(rng: Random, t: FuzzTargets): Scenario {
  const s: Shared = { dataOutBytes: 0 };
  const r = rng.int(100);
  if (r < 45) {
    return { kind: 'open', isids: [isid(rng)], steps: [...loginSteps(rng, 0, { target: t.open, auth: 'none', targets: t }), ...ffpSteps(rng, 0, s, rng.range(1, 8))] };
  }
  if (r < 55) {
    const auth = rng.bool(0.6) ? 'chap' : 'mutual';
    return { kind: auth, isids: [isid(rng)], steps: [...loginSteps(rng, 0, { target: t.chap, auth, targets: t }), ...ffpSteps(rng, 0, s, rng.range(1, 5))] };
  }
  if (r < 65) {
    return { kind: 'digests', isids: [isid(rng)], steps: [...loginSteps(rng, 0, { target: t.digest, auth: 'none', targets: t }), ...ffpSteps(rng, 0, s, rng.range(1, 8))] };
  }
  if (r < 77) {
    const steps = [...loginSteps(rng, 0, { auth: 'none', targets: t }), text(0, [['SendTargets', rng.pick(['All', 'All', '', t.open])]])];
    if (rng.bool(0.3)) steps.push(text(0, [['MaxRecvDataSegmentLength', '512']]), text(0, [['SendTargets', 'All']]));
    if (rng.bool(0.3)) steps.push(smallCommand(0));
    if (rng.bool(0.7)) steps.push(logout(0));
    return { kind: 'discovery', isids: [isid(rng)], steps };
  }
  if (r < 87) {
    // Session or connection reinstatement while the first connection has a write waiting for data.
    const id = isid(rng);
    const mode = rng.pick(['session', 'connection', 'connection', 'other-cid']);
    const tsih = mode === 'session' ? undefined : (ctx: StepContext) => ctx.peers[0]!.tsih;
    const second = loginSteps(rng, 1, { target: t.open, auth: 'none', tsih, targets: t });
    if (mode === 'other-cid') second.unshift(step(1, 'use CID 2', (ctx) => { ctx.peer.cid = 2; }));
    return {
      kind: `reinstate-${mode}`,
      isids: [id, id],
      steps: [
        ...loginSteps(rng, 0, { target: t.open, auth: 'none', targets: t }), write(0, s, false), ...second,
        ...ffpSteps(rng, 1, s, rng.range(0, 3)), step(0, 'late data-out', (ctx) => serveR2ts(ctx, s)), ...ffpSteps(rng, 0, s, rng.range(0, 2)),
      ],
    };
  }
  // Two independent sessions interleaving (different initiator ports): they must not disturb each other.
  const steps: Step[] = [...loginSteps(rng, 0, { target: t.open, auth: 'none', targets: t }), ...loginSteps(rng, 1, { target: t.open, auth: 'none', targets: t })];
  const a = ffpSteps(rng, 0, s, rng.range(1, 4));
  const b = ffpSteps(rng, 1, { dataOutBytes: 0 }, rng.range(1, 4));
  while (a.length > 0 || b.length > 0) steps.push(...(rng.bool() ? a.splice(0, 1) : b.splice(0, 1)));
  return { kind: 'two-sessions', isids: [isid(rng), isid(rng)], steps };
}

/** Structural mutations: repeat, swap or drop whole steps. */
export function shuffleSteps(rng: Random, steps: Step[]): string[] {
  const done: string[] = [];
  for (let n = rng.int(3); n > 0 && steps.length > 1; n--) {
    const i = rng.int(steps.length);
    switch (rng.int(3)) {
      case 0:
        steps.splice(i + 1, 0, steps[i]!);
        done.push(`repeat step ${i} (${steps[i]!.what})`);
        break;
      case 1:
        if (i + 1 < steps.length) {
          [steps[i], steps[i + 1]] = [steps[i + 1]!, steps[i]!];
          done.push(`swap steps ${i} and ${i + 1}`);
        }
        break;
      default:
        done.push(`drop step ${i} (${steps[i]!.what})`);
        steps.splice(i, 1);
    }
  }
  return done;
}
