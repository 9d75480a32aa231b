/**
 * A fuzzer for the iSCSI target's PDU framing, login state machine and full feature phase. One
 * long-lived IscsiServer (virtual clock, in-memory transports, a RAM disk or the real SCSI device
 * server on a memory-backed controller volume) takes input after input; each input is a corpus
 * sequence (scenarios.ts) with structural and byte-level mutations (mutate.ts), delivered in
 * arbitrary pieces. Oracles, per input:
 *  - nothing escapes: no exception out of a StreamHandler, no error-level log, no unhandled rejection;
 *  - every PDU from the target passes the RFC 7143 checks of fuzz-peer.ts;
 *  - no wedge: a connection whose framing is intact answers an immediate NOP-Out at once (or is
 *    closed); after the peer goes quiet every connection is closed within a virtual-time bound;
 *  - bounded memory: the reader holds at most one PDU, held data stays within the CmdSN window's
 *    worth, nothing stays queued for a transport that takes it;
 *  - nothing leaks: afterwards the server holds only the well-behaved session and its connection,
 *    and no timer beyond its keepalive;
 *  - isolation: a well-behaved session (its own target, digests on) writes and reads back during
 *    every input and keeps working.
 * An input is reproducible from (seed, index) alone: runInput() on a fresh fuzzer with the same seed.
 */
import { createController } from '../../firmware/controller.js';
import { MemoryDevice } from '../../hal/memory-device.js';
import { VirtualClock } from '../../hal/sim/virtual-clock.js';
import { Random } from '../../hal/sim/random.js';
import type { Logger } from '../../hal/types.js';
import type { StreamHandler } from '../../hal/transport.js';
import { IscsiServer, type IscsiTargetDefinition } from '../../target/iscsi/iscsi-server.js';
import { ScsiDeviceServer } from '../../target/scsi/device-server.js';
import type { DeviceServer } from '../../target/scsi/task.js';
import { RamDiskDeviceServer } from '../ramdisk-device-server.js';
import { FuzzPeer } from './fuzz-peer.js';
import { type Mutation, mutateAfter, mutateBefore, planMutation } from './mutate.js';
import { type FuzzTargets, type StepContext, buildScenario, shuffleSteps } from './scenarios.js';
import { NO_TAG, OP, type OutPdu, commandBhs, encode, loginBhs, nopOutBhs, rw10, textOf } from './wire.js';

export interface FuzzOptions {
  seed: number;
  /** 'ramdisk' (test/ramdisk-device-server.ts, fast) or 'scsi' (ScsiDeviceServer on a controller volume). */
  device?: 'ramdisk' | 'scsi';
  /** Keep a readable trace of each input (for reproducing one). */
  trace?: boolean;
  /** The server's maxHeldBytes (default: the server's own default). */
  maxHeldBytes?: number;
}

export interface InputReport {
  index: number;
  kind: string;
  outcome: string;
  mutated: boolean;
  failures: string[];
  trace: string[];
}

export interface FuzzStats {
  inputs: number;
  failedInputs: number;
  outcomes: Map<string, number>;
  /** Outcomes of the inputs left unmutated (the corpus itself): these show what valid sequences do. */
  cleanOutcomes: Map<string, number>;
  kinds: Map<string, number>;
  /** Target PDUs by opcode, Reject reasons, login statuses. */
  answers: Map<string, number>;
  maxReaderBytes: number;
  maxHeldBytes: number;
  maxQueuedOutBytes: number;
  virtualMs: number;
}

const NOP_MS = 5000;
/** A connection whose ping stayed unanswered this long is dropped (shorter than the server's default: virtual time is cheap, not free). */
const NOP_TIMEOUT_MS = 20_000;
const LOGIN_TIMEOUT_MS = 3000;
const DRAIN_MS = 1000;
const QUEUE_DEPTH = 32;
const FIRST_BURST = 65536;
/**
 * Every connection must be gone this long after its peer went quiet: the next ping comes within
 * an interval, the connection is dead a timeout after it (found at the next tick); logins time
 * out sooner, and a logout or a refused login waits a drain period at most for the peer's FIN.
 */
const QUIET_BOUND_MS = NOP_MS + NOP_TIMEOUT_MS + NOP_MS + 2 * DRAIN_MS;
const DISK_BLOCKS = 2048;

export const FUZZ_TARGETS: FuzzTargets = {
  initiatorName: 'iqn.2024-01.test.fuzz:initiator',
  open: 'iqn.2024-01.test.fuzz:open',
  chap: 'iqn.2024-01.test.fuzz:chap',
  digest: 'iqn.2024-01.test.fuzz:digest',
  chapCredentials: { user: 'fuzz-user', secret: 'fuzz-secret-123' },
  mutualCredentials: { user: 'fuzz-target', secret: 'target-secret-9' },
  blocks: DISK_BLOCKS,
};
const GOOD_TARGET = 'iqn.2024-01.test.fuzz:good';

/** The parts of an IscsiConnection the memory and leak oracles look at (private fields, read only). */
interface ConnectionInternals {
  id: number;
  state: 'login' | 'ffp' | 'closed';
  ending: boolean;
  reader: { buffered: number; maxDataSegment: number };
  writer: { out: Uint8Array[] };
  session?: { heldBytes: number; tasks: Map<number, unknown>; held: Map<number, unknown>; closed: boolean };
}

const internals = (h: StreamHandler): ConnectionInternals => h as unknown as ConnectionInternals;

export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function mix(seed: number, index: number): number {
  return (Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul((index + 0x3c6ef372) | 0, 0x85ebca77)) | 0;
}

/** Error logs and connection close reasons, from the loggers the server hands its parts. */
class Capture {
  errors: string[] = [];
  readonly closes = new Map<number, string>();

  logger(bindings: Record<string, unknown> = {}): Logger {
    return {
      debug: () => {},
      warn: () => {},
      info: (obj, msg) => {
        if (msg === 'connection closed' && typeof bindings.conn === 'number') this.closes.set(bindings.conn, String((obj as { reason?: unknown }).reason));
      },
      error: (obj, msg) => {
        const err = (obj as { err?: unknown }).err;
        this.errors.push(`${msg ?? 'error'} ${JSON.stringify(bindings)}: ${err instanceof Error ? err.stack : JSON.stringify(obj)}`);
      },
      child: (b) => this.logger({ ...bindings, ...b }),
    };
  }
}

function hex(b: Buffer, n = 48): string {
  return b.subarray(0, n).toString('hex') + (b.length > n ? `...(${b.length})` : '');
}

/**
 * The well-behaved session: its own target and RAM disk, header and data digests on. Between and
 * during fuzz inputs it writes a pattern and reads it back; any difference, missing answer, RFC
 * violation or a lost connection is a failure (a fuzzed connection disturbed another session).
 */
class GoodSession {
  readonly peer: FuzzPeer;
  private pdus: { op: number; bhs: Buffer; data: Buffer }[] = [];
  private pending: { itt: number; lba: number; data: Buffer } | undefined;
  private lba = 0;

  constructor(server: IscsiServer, private readonly rng: Random) {
    this.peer = new FuzzPeer(Buffer.from([0x80, 0x60, 0x0d, 0x00, 0x00, 0x01]), 1, 0x1000);
    this.peer.tap = (op, bhs, data) => this.pdus.push({ op, bhs, data });
    this.peer.handler = server.accept(this.peer.transport);
    this.peer.transport.handler = this.peer.handler;
  }

  private send(p: OutPdu): void {
    const img = encode(p, this.peer.hd, this.peer.dd);
    this.peer.sent(img.bytes, (p.bhs[0]! & 0x3f) === OP.LOGIN, false);
    this.peer.transport.deliver([img.bytes]);
  }

  async login(): Promise<void> {
    const p = this.peer;
    const identity: [string, string][] = [['InitiatorName', 'iqn.2024-01.test.fuzz:good'], ['SessionType', 'Normal'], ['TargetName', GOOD_TARGET]];
    const keys: [string, string][] = [
      ['HeaderDigest', 'CRC32C'], ['DataDigest', 'CRC32C'], ['MaxRecvDataSegmentLength', '262144'], ['ImmediateData', 'Yes'],
      ['InitialR2T', 'No'], ['FirstBurstLength', '65536'], ['MaxBurstLength', '262144'],
    ];
    p.ourMrdsl = p.ourMrdslLow = 262144;
    for (const [csg, nsg, text] of [[0, 1, [...identity, ['AuthMethod', 'None']]], [1, 3, keys]] as const) {
      this.send({ what: 'good login', bhs: loginBhs({ csg, nsg, transit: true, isid: p.isid, tsih: 0, itt: 1, cid: 1, cmdSN: p.cmdSN, expStatSN: p.expStatSN }), data: textOf(text) });
      await tick();
    }
    if (!p.ffp || !p.hd || !p.dd) throw new Error(`the well-behaved session could not log in: ${p.violations.join('; ')} status ${p.loginStatus}`);
    this.pdus = [];
  }

  /** Answer the target's NOP-In pings, as a live initiator does. */
  pump(): void {
    const p = this.peer;
    while (p.pings.length > 0 && !p.closed) {
      this.send({ what: 'nop answer', bhs: nopOutBhs({ immediate: true, itt: NO_TAG, ttt: p.pings.shift()!, cmdSN: p.cmdSN, expStatSN: p.expStatSN }) });
    }
    this.pdus = this.pdus.filter((x) => x.op !== OP.NOP_IN);
  }

  startWrite(): void {
    if (this.pending || this.peer.closed) return;
    const blocks = 8;
    this.lba = (this.lba + blocks) % (DISK_BLOCKS - blocks);
    const data = Buffer.allocUnsafe(blocks * 512);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(this.rng.u32(), i);
    const itt = this.peer.nextItt();
    this.send({
      what: 'good write',
      bhs: commandBhs({ final: true, read: false, write: true, attr: 1, lun: 0, itt, edtl: data.length, cmdSN: this.peer.takeCmdSN(), expStatSN: this.peer.expStatSN, cdb: rw10(0x2a, this.lba, blocks) }),
      data,
    });
    this.pending = { itt, lba: this.lba, data };
  }

  /** Finish the write and read it back; returns what went wrong. */
  async verify(): Promise<string[]> {
    const out: string[] = [];
    if (!this.pending) this.startWrite();
    const w = this.pending!;
    this.pending = undefined;
    for (let i = 0; i < 4 && !this.answered(w.itt); i++) {
      await tick();
      this.pump();
    }
    const wr = this.take(w.itt);
    const status = wr.find((x) => x.op === OP.SCSI_RSP);
    if (!status) out.push(`well-behaved write got no response (${wr.length} PDUs; closed ${this.peer.closed})`);
    else if (status.bhs[3] !== 0 || status.bhs[2] !== 0) out.push(`well-behaved write: status 0x${status.bhs[3]!.toString(16)}`);
    const itt = this.peer.nextItt();
    this.send({
      what: 'good read',
      bhs: commandBhs({ final: true, read: true, write: false, attr: 1, lun: 0, itt, edtl: w.data.length, cmdSN: this.peer.takeCmdSN(), expStatSN: this.peer.expStatSN, cdb: rw10(0x28, w.lba, w.data.length / 512) }),
    });
    for (let i = 0; i < 4 && !this.answered(itt); i++) {
      await tick();
      this.pump();
    }
    const rd = this.take(itt);
    const din = rd.filter((x) => x.op === OP.DATA_IN);
    const got = Buffer.concat(din.map((x) => x.data));
    const last = din[din.length - 1];
    if (!last || (last.bhs[1]! & 1) === 0 || last.bhs[3] !== 0) out.push(`well-behaved read: no good status (${rd.map((x) => x.op.toString(16)).join(',')}; closed ${this.peer.closed})`);
    else if (!got.equals(w.data)) out.push('well-behaved read returned other data than written');
    if (this.peer.violations.length > 0) out.push(...this.peer.violations.map((v) => `well-behaved session: ${v}`));
    if (this.peer.closed) out.push('the well-behaved session lost its connection');
    if (this.pdus.length > 0) out.push(`well-behaved session got unexpected PDUs: ${this.pdus.map((x) => `0x${x.op.toString(16)}`).join(',')}`);
    this.pdus = [];
    this.peer.forget();
    return out;
  }

  private answered(itt: number): boolean {
    return this.pdus.some((x) => x.bhs.readUInt32BE(16) === itt && (x.op === OP.SCSI_RSP || (x.op === OP.DATA_IN && (x.bhs[1]! & 1) !== 0)));
  }

  private take(itt: number): { op: number; bhs: Buffer; data: Buffer }[] {
    const mine = this.pdus.filter((x) => x.bhs.readUInt32BE(16) === itt);
    this.pdus = this.pdus.filter((x) => x.bhs.readUInt32BE(16) !== itt);
    return mine;
  }
}

export class IscsiFuzzer {
  readonly clock = new VirtualClock();
  readonly stats: FuzzStats = {
    inputs: 0, failedInputs: 0, outcomes: new Map(), cleanOutcomes: new Map(), kinds: new Map(), answers: new Map(),
    maxReaderBytes: 0, maxHeldBytes: 0, maxQueuedOutBytes: 0, virtualMs: 0,
  };
  private readonly capture = new Capture();
  private server!: IscsiServer;
  private fuzzDisk!: DeviceServer;
  private good!: GoodSession;
  private baselineTimers = 0;
  private readonly escaped: unknown[] = [];

  private constructor(readonly options: FuzzOptions) {}

  static async create(options: FuzzOptions): Promise<IscsiFuzzer> {
    const f = new IscsiFuzzer(options);
    await f.setup();
    return f;
  }

  /** An unhandled rejection or uncaught exception seen by the process while an input ran. */
  noteEscape(e: unknown): void {
    this.escaped.push(e);
  }

  private async setup(): Promise<void> {
    this.fuzzDisk = this.options.device === 'scsi' ? await scsiDevice(this.clock, this.capture.logger({ module: 'scsi' })) : new RamDiskDeviceServer(DISK_BLOCKS, [0, 1]);
    const t = FUZZ_TARGETS;
    const targets: IscsiTargetDefinition[] = [
      { name: t.open, alias: 'fuzz open', deviceServer: this.fuzzDisk },
      { name: t.chap, deviceServer: this.fuzzDisk, chap: t.chapCredentials, mutualChap: t.mutualCredentials },
      { name: t.digest, deviceServer: this.fuzzDisk, digests: { header: 'required', data: 'required' } },
      { name: GOOD_TARGET, deviceServer: new RamDiskDeviceServer(DISK_BLOCKS), allowedInitiators: ['iqn.2024-01.test.fuzz:good'] },
    ];
    this.server = new IscsiServer({
      clock: this.clock,
      logger: this.capture.logger(),
      portals: [{ host: '192.0.2.1', port: 3260 }],
      targets,
      nopInIntervalMs: NOP_MS,
      nopInTimeoutMs: NOP_TIMEOUT_MS,
      loginTimeoutMs: LOGIN_TIMEOUT_MS,
      drainTimeoutMs: DRAIN_MS,
      queueDepth: QUEUE_DEPTH,
      maxHeldBytes: this.options.maxHeldBytes,
    });
    await this.newGoodSession();
  }

  private async newGoodSession(): Promise<void> {
    this.good = new GoodSession(this.server, new Random(this.options.seed ^ 0x600d));
    await this.good.login();
    this.baselineTimers = this.clock.pendingTimers;
  }

  async runInput(index: number): Promise<InputReport> {
    const rng = new Random(mix(this.options.seed, index));
    const scenario = buildScenario(rng.fork(), FUZZ_TARGETS);
    const steps = scenario.steps;
    const trace: string[] = [];
    const tracing = this.options.trace === true;
    const structural = rng.bool(0.25) ? shuffleSteps(rng, steps) : [];
    const clean = structural.length === 0 && rng.bool(0.1);
    const plan = new Map<string, { m: Mutation; rng: Random }>();
    if (!clean) {
      for (let k = rng.range(1, 3); k > 0; k--) plan.set(`${rng.int(steps.length)}:${rng.pick([0, 0, 0, 1, 2])}`, { m: planMutation(rng), rng: rng.fork() });
    }
    const events = steps.map(() => (rng.bool(0.04) ? 'stall' : rng.bool(0.04) ? 'time' : ''));
    const goodAt = rng.int(steps.length + 1);
    const deliveryRng = rng.fork();
    const peers = scenario.isids.map((isid) => new FuzzPeer(Buffer.from(isid), rng.u32(), rng.u32() & 0x7fffffff));
    // Now and then a peer that ignores the target's FIN: the target must drop it on its own.
    for (const p of peers) p.transport.closesOnEnd = !rng.bool(0.1);
    const failures: string[] = [];
    const errorsBefore = this.capture.errors.length;
    const startMs = this.clock.now();
    if (tracing) trace.push(`input ${index}: ${scenario.kind}, ${steps.length} steps${structural.length ? `; ${structural.join(', ')}` : ''}${clean ? ' (clean)' : ''}`);

    const connect = (p: FuzzPeer): void => {
      if (p.handler) return;
      p.handler = this.server.accept(p.transport);
      p.transport.handler = p.handler;
      if (tracing) p.tap = (op, bhs, data) => trace.push(`  <- conn ${peers.indexOf(p)} 0x${op.toString(16)} ${hex(bhs)} data ${data.length}`);
    };

    for (let i = 0; i < steps.length; i++) {
      if (i === goodAt) this.good.startWrite();
      const step = steps[i]!;
      const peer = peers[step.conn]!;
      connect(peer);
      // A peer that stops reading before its login completed would send ahead of the final Login
      // Response, which no initiator does; stalls come once the connection is in full feature phase.
      if (events[i] === 'stall' && peer.ffp) peer.transport.writable = false;
      if (events[i] === 'time') {
        this.clock.advance(deliveryRng.int(900));
        await tick();
        this.good.pump();
      }
      if (tracing) trace.push(` step ${i} conn ${step.conn}: ${step.what}${events[i] ? ` [${events[i]}]` : ''}`);
      let sendIndex = 0;
      let pending: Buffer[] = [];
      const ctx: StepContext = {
        peer, peers, rng: new Random(mix(index, i)), targets: FUZZ_TARGETS,
        send: (p) => {
          const planned = plan.get(`${i}:${sendIndex++}`);
          const pdu = planned ? mutateBefore(planned.rng, planned.m, p) : p;
          const img = encode(pdu, peer.hd, peer.dd);
          const bytes = planned ? mutateAfter(planned.rng, planned.m, img) : img.bytes;
          const op = p.bhs[0]! & 0x3f;
          // Sent while not reading, a negotiation goes on without the answers it depends on
          // (a text continued without the target's TTT): its outcome is the target's guess.
          peer.sent(bytes, op === OP.LOGIN || op === OP.TEXT, planned !== undefined || !peer.transport.writable);
          if (tracing) {
            trace.push(`  -> ${p.what}${planned ? ` MUTATED pre[${planned.m.pre}] post[${planned.m.post}] fix=${planned.m.fixDigests}` : ''}: ${hex(bytes)}${peer.framingIntact ? '' : ' (framing lost)'}`);
          }
          pending.push(bytes);
        },
        settle: async () => {
          const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
          pending = [];
          if (all.length > 0 && !peer.closed) peer.transport.deliver(split(deliveryRng, all));
          await tick();
          this.good.pump();
          this.checkMemory(peers, failures);
        },
      };
      try {
        await step.run(ctx);
        if (pending.length > 0) await ctx.settle();
      } catch (e) {
        failures.push(`fuzzer error in step ${i} (${step.what}): ${e instanceof Error ? e.stack : String(e)}`);
      }
      if (events[i] === 'stall' && deliveryRng.bool(0.5)) {
        peer.transport.drain();
        await tick();
      }
    }

    // Liveness: whatever happened, a connection whose framing is still ours answers a ping at once.
    for (const p of peers) p.transport.drain();
    await tick();
    const probed = peers.filter((p) => p.handler && !p.closed && p.ffp && p.framingIntact && !p.loggedOut && !p.transport.ended);
    for (const p of probed) {
      p.probeItt = p.nextItt();
      const img = encode({ what: 'probe', bhs: nopOutBhs({ immediate: true, itt: p.probeItt, ttt: NO_TAG, cmdSN: p.cmdSN, expStatSN: p.expStatSN }), data: Buffer.from('probe-probe!') }, p.hd, p.dd);
      p.sent(img.bytes, false, false);
      p.transport.deliver([img.bytes]);
    }
    await tick();
    // No time passes: an immediate NOP-Out waits for nothing (a keepalive could close the
    // connection in the meantime and hide the wedge).
    for (let k = 0; k < 4 && probed.some((p) => !p.probeAnswered && !p.closed); k++) await tick();
    for (const p of probed) {
      if (!p.probeAnswered && !p.closed) failures.push(`conn ${peers.indexOf(p)}: wedged, an immediate NOP-Out got no answer (${describe(p.handler)})`);
      // The target has caught up with everything sent before the probe: every bad PDU got its answer.
      else if (p.probeAnswered) failures.push(...p.unanswered().map((u) => `conn ${peers.indexOf(p)}: ${u}`));
    }

    failures.push(...await this.good.verify());

    // The peers go quiet: every connection must be closed within the bound (login timeout, NOP-In
    // keepalive, logout drain), whatever state the input left it in.
    const deadline = this.clock.now() + QUIET_BOUND_MS;
    while (peers.some((p) => p.handler && !p.closed)) {
      const next = this.clock.nextTimerAt();
      if (next === undefined || next > deadline) break;
      this.clock.fireNext();
      await tick();
      this.good.pump();
    }
    await tick();
    for (const p of peers) {
      if (p.handler && !p.closed) failures.push(`conn ${peers.indexOf(p)}: still open ${QUIET_BOUND_MS} ms after its peer went quiet (${describe(p.handler)})`);
      if (p.transport.escaped.length > 0) failures.push(...p.transport.escaped.map((e) => `exception escaped the connection: ${e instanceof Error ? e.stack : String(e)}`));
      failures.push(...p.violations.map((v) => `conn ${peers.indexOf(p)}: ${v}`));
      for (const [k, n] of p.received) this.stats.answers.set(k, (this.stats.answers.get(k) ?? 0) + n);
    }
    this.good.pump();
    await tick();
    failures.push(...this.capture.errors.slice(errorsBefore));
    this.capture.errors = [];
    if (this.escaped.length > 0) failures.push(...this.escaped.splice(0).map((e) => `escaped: ${e instanceof Error ? e.stack : String(e)}`));
    this.checkLeaks(failures);

    const first = peers[0]!;
    const reason = first.handler ? this.capture.closes.get(internals(first.handler).id) ?? 'open' : 'never connected';
    for (const p of peers) if (p.handler) this.capture.closes.delete(internals(p.handler).id);
    const outcome = first.loginStatus !== undefined ? `login refused 0x${first.loginStatus.toString(16).padStart(4, '0')}`
      : first.loggedOut ? 'logged out' : reason;
    this.stats.inputs++;
    this.stats.outcomes.set(outcome, (this.stats.outcomes.get(outcome) ?? 0) + 1);
    if (clean) this.stats.cleanOutcomes.set(`${scenario.kind}: ${outcome}`, (this.stats.cleanOutcomes.get(`${scenario.kind}: ${outcome}`) ?? 0) + 1);
    this.stats.kinds.set(scenario.kind, (this.stats.kinds.get(scenario.kind) ?? 0) + 1);
    this.stats.virtualMs += this.clock.now() - startMs;
    if (failures.length > 0) {
      this.stats.failedInputs++;
      // Start the next input from a clean server state.
      if (this.good.peer.closed || failures.some((f) => f.startsWith('well-behaved') || f.includes('the well-behaved session'))) await this.newGoodSession();
      this.baselineTimers = this.clock.pendingTimers;
    }
    if (this.fuzzDisk instanceof RamDiskDeviceServer) this.fuzzDisk.events.length = 0;
    return { index, kind: scenario.kind, outcome, mutated: !clean, failures, trace };
  }

  private checkMemory(peers: FuzzPeer[], failures: string[]): void {
    for (const p of peers) {
      if (!p.handler || p.closed) continue;
      const c = internals(p.handler);
      if (c.state === 'closed') continue;
      const readerBound = 48 + 255 * 4 + 4 + c.reader.maxDataSegment + 3 + 4;
      if (!c.ending && c.reader.buffered > readerBound) failures.push(`conn ${peers.indexOf(p)}: reader holds ${c.reader.buffered} bytes, above one PDU (${readerBound})`);
      this.stats.maxReaderBytes = Math.max(this.stats.maxReaderBytes, c.reader.buffered);
      const queued = c.writer.out.reduce((n, x) => n + x.length, 0);
      this.stats.maxQueuedOutBytes = Math.max(this.stats.maxQueuedOutBytes, queued);
      if (queued > 0 && p.transport.writable) failures.push(`conn ${peers.indexOf(p)}: ${queued} bytes stay queued while the transport takes writes`);
      const s = c.session;
      if (s && !s.closed) {
        this.stats.maxHeldBytes = Math.max(this.stats.maxHeldBytes, s.heldBytes);
        if (s.heldBytes > 2 * QUEUE_DEPTH * FIRST_BURST) failures.push(`conn ${peers.indexOf(p)}: session holds ${s.heldBytes} bytes of unsolicited data`);
        if (s.heldBytes < 0) failures.push(`conn ${peers.indexOf(p)}: held bytes went negative (${s.heldBytes})`);
        if (s.tasks.size > 2 * QUEUE_DEPTH) failures.push(`conn ${peers.indexOf(p)}: ${s.tasks.size} tasks, above the CmdSN window and the immediate budget`);
        if (s.held.size > QUEUE_DEPTH) failures.push(`conn ${peers.indexOf(p)}: ${s.held.size} commands held for a CmdSN gap, above the window`);
      }
    }
  }

  private checkLeaks(failures: string[]): void {
    const server = this.server as unknown as { connections: Set<StreamHandler>; table: Map<number, unknown> };
    const sessions = this.server.sessions();
    if (server.connections.size !== 1) failures.push(`leak: the server still holds ${server.connections.size} connections (1 expected: the well-behaved one)`);
    if (sessions.length !== 1 || sessions[0]!.target !== GOOD_TARGET) failures.push(`leak: sessions left ${JSON.stringify(sessions)}`);
    if (this.clock.pendingTimers !== this.baselineTimers) failures.push(`leak: ${this.clock.pendingTimers} timers pending, ${this.baselineTimers} before the input`);
  }
}

function describe(h: StreamHandler): string {
  const c = internals(h);
  return `state ${c.state}${c.ending ? ' (ending)' : ''}, reader ${c.reader.buffered} bytes, session ${c.session ? `tasks ${c.session.tasks.size} held ${c.session.held.size} bytes ${c.session.heldBytes}` : 'none'}`;
}

/** Cut a byte stream where TCP might: whole, in a few pieces, or byte by byte. */
function split(rng: Random, b: Buffer): Buffer[] {
  const r = rng.int(10);
  if (r < 6 || b.length < 2) return [b];
  const cuts = new Set<number>();
  const n = r < 9 ? rng.range(1, 4) : Math.min(b.length - 1, b.length <= 2048 ? b.length : 64);
  if (r === 9 && b.length <= 2048) for (let i = 1; i < b.length; i += rng.range(1, 16)) cuts.add(i);
  else for (let i = 0; i < n; i++) cuts.add(1 + rng.int(b.length - 1));
  const sorted = [...cuts].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let at = 0;
  for (const c of sorted) {
    out.push(b.subarray(at, c));
    at = c;
  }
  out.push(b.subarray(at));
  return out;
}

/**
 * The real SCSI device server on a controller volume over a memory medium. (Imported statically:
 * under mocha a dynamic import() loads a second copy of target/scsi/task.ts, whose
 * TaskAbortedError the transport's would not be an instance of.)
 */
async function scsiDevice(clock: VirtualClock, logger: Logger): Promise<DeviceServer> {
  const controller = createController({ clock, logger, bufferBytes: 16 * 1024 * 1024 });
  const volume = controller.addVolume({
    name: 'fuzz', blockSize: 512, blockCount: DISK_BLOCKS, media: [new MemoryDevice('fuzz', DISK_BLOCKS * 512)], layout: 'single', scheduler: 'fifo',
  });
  return new ScsiDeviceServer({ luns: new Map([[0, { volume, serial: 'FUZZ0001' }]]), targetName: FUZZ_TARGETS.open, clock, logger });
}

/** Run inputs [from, from+count) and call `onFailure` for each failing one. */
export async function runFuzz(
  options: FuzzOptions & { from?: number; count: number; onFailure?: (r: InputReport) => void; onProgress?: (f: IscsiFuzzer, done: number) => void },
): Promise<IscsiFuzzer> {
  const f = await IscsiFuzzer.create(options);
  const from = options.from ?? 0;
  for (let i = 0; i < options.count; i++) {
    const r = await f.runInput(from + i);
    if (r.failures.length > 0) options.onFailure?.(r);
    options.onProgress?.(f, i + 1);
  }
  return f;
}
