/**
 * The relaying processor of a relay node (seed 000-E1 Fig.5, E2, NV), sans-IO: it takes writes from
 * source units on PeerLinks, records them in the relay journal, answers the source, and sends them
 * on to the destination (the secondary) with the source's own command identifier.
 *
 * Answer to the source (its per-write `ack`):
 *   'received'  as soon as all data is in the relay buffer (S126). The write is still recorded,
 *               because the relay must forward it; a journal that refuses it at once (failed, full
 *               with whenFull 'fail', record too large, closed) turns the answer into an error.
 *   'durable'   once the journal append resolved (the record survives a relay restart, NV).
 * A write that cannot be recorded is answered with an error (the link's WriteReceiver turns the
 * rejection into a per-command ERROR) and logged; the link and the unit go on. An append that fails
 * after a 'received' answer is logged as an error: the write is lost to the relay as in a relay
 * crash, the risk that ack mode accepts.
 *
 * Forwarding. Recorded writes go on through the ForwardingScheduler and its policy (000-NV), in
 * recording order, at most maxInFlight at once, each released from the journal only on the
 * destination's completion of reception (behaviour 2). A record received in this process lifetime
 * is sent from the inbound buffer itself (retained); one recovered after a restart, or one beyond
 * `holdBytes`, is read back from the journal. Bounds: a buffer is retained while its append runs
 * (bounded by the inbound link's receive window: a full or slow journal holds the source back
 * through its credit instead of growing memory), and beyond that only while it is being forwarded,
 * at most `holdBytes` in all (a retained buffer also holds the source's credit, so holding it for
 * the secondary's round trip must not starve the source).
 *
 * Cut-through (E2): when a write command is admitted and its destination is up (and no older
 * record waits, so it does not overtake them), forwarding starts at once in portions of at most
 * portionBytes, each sent once the write position passed its end. The source's answer still waits
 * for all data (and the append when it asked 'durable'). The write is recorded all the same, and
 * the unit releases that record itself once every portion is confirmed and the append finished. If
 * the cut-through fails, the record goes the store-and-forward way. Cut-through forwards at once
 * by definition: the policy governs only records that were not cut through.
 *
 * Spill (SpillPolicy, [0117]): while the policy says 'forward', a write that asked 'received' is
 * sent in step and never recorded (if that send fails, it is recorded then). A write that asked
 * 'durable' is always recorded: in step without a record, 'durable' could only be answered after
 * the destination's durable completion, which puts the secondary's round trip back into the
 * source's latency, the very thing the relay is there to remove.
 *
 * Duplicates: a write whose command identifier the unit holds already (in progress, or recorded and
 * not yet confirmed) is not recorded again. Limitation: a write that is itself a portion of a
 * striped command (totalLength > length) is refused, because a journal record has no portion
 * fields: after a restart it could not be forwarded as what it is.
 */
import type { Clock } from '../../hal/clock.js';
import { nullLogger, type Logger } from '../../hal/types.js';
import type { CommandId } from '../processing-sequencer.js';
import type { Durability, InboundWrite, PeerHandler, PeerInfo, PeerLink, PullRequest } from '../peer/peer-link.js';
import type { ForwardingPolicy } from './forwarding-policy.js';
import { ForwardingScheduler } from './forwarding-scheduler.js';
import type { AppendRequest, AppendResult, JournalEntry, JournalStats, RelayJournal } from './journal-types.js';
import { LoadMeter } from './load-meter.js';
import { DestinationDownError, sendInPortions } from './relay-forward.js';
import { refusedAsPromoted } from '../peer/errors.js';

export { DestinationDownError } from './relay-forward.js';

export interface RelayUnitOptions {
  clock: Clock;
  logger?: Logger;
  unitId: number;
  /** Opened (and recovered) by the caller; the unit forwards what it still holds. */
  journal: RelayJournal;
  /** When recorded writes go on to the secondary (000-NV). */
  policy: ForwardingPolicy;
  mode: 'store-and-forward' | 'cut-through';
  /** Unit id of the secondary when a write names none (forwardTo 0). */
  defaultDestination: number;
  /** The open link to a destination unit, or undefined while it is down. */
  downstream(unitId: number): PeerLink | undefined;
  /** Records forwarded at once (default 64: the relay -> secondary link is long and fat). */
  maxInFlight?: number;
  /** Cut-through and forwarding granularity (default 64 KiB; never more than the destination's window). */
  portionBytes?: number;
  /** Inbound buffer bytes kept for forwarding from memory: cut-through, in step, records (default 1 MiB). */
  holdBytes?: number;
  /** A failed forward is tried again after this long, or at poke() (default 1000 ms). */
  retryMs?: number;
}

export interface RelayStats {
  mode: RelayUnitOptions['mode'];
  policy: string;
  /** Writes whose data all arrived, and their bytes. */
  received: number;
  receivedBytes: number;
  /** Writes with an identifier the unit already held: answered, not recorded again. */
  duplicates: number;
  /** Writes answered with an error. */
  refused: number;
  /** Journal appends that succeeded / failed. */
  recorded: number;
  recordFailures: number;
  /** Records in the journal not yet confirmed by their destination, and their bytes. */
  backlogRecords: number;
  backlogBytes: number;
  /** Writes the destination confirmed (records, cut-through, in step), and their bytes. */
  forwarded: number;
  forwardedBytes: number;
  forwardFailures: number;
  /**
   * Records dropped, and their bytes, because their destination was promoted for their volume
   * (kura promote --force gave them up): it refuses them for good.
   */
  givenUp: number;
  givenUpBytes: number;
  cutThrough: number;
  /** Cut-through mode, but the write went store-and-forward (destination down, backlog, failure). */
  cutThroughFallbacks: number;
  /** Spill: sent in step without a record. */
  inStep: number;
  /** Forwards in flight now (records, cut-throughs, in step). */
  inFlight: number;
  /** Inbound buffers the unit retains now, and the part of them kept for forwarding (<= holdBytes). */
  held: { writes: number; bytes: number; forwarding: number };
  /** Relay -> destination traffic, bytes/s. */
  load: number;
  journal: JournalStats;
}

/** One inbound write the unit works on; its buffer is retained until `letGo`. */
interface Job {
  readonly key: string;
  readonly w: InboundWrite;
  readonly data: Buffer;
  letGo: (() => void) | null;
  append?: Promise<AppendResult>;
  appendSettled: boolean;
  seq?: number;
  /** Store-and-forward sends from this buffer running. */
  sending: number;
  /** The destination confirmed it through a store-and-forward send from this buffer. */
  confirmed: boolean;
  /** Its buffer counts against holdBytes (claimed for forwarding from memory). */
  claimed: boolean;
  cut: 'none' | 'running' | 'done' | 'failed';
  /** onWrite will never record it: the inbound command failed (link down, bad CRC), or the unit closed. */
  abandoned: boolean;
  inStep: 'none' | 'running' | 'done';
  /** Recorded for a 'durable' answer: the scheduler is poked once the append settled. */
  pokeOnAppend: boolean;
}

/**
 * A write's identity at the relay: its issuing ID within its volume. A source numbers each volume's
 * writes on its own (types.ts: issue = generation, sequence), so two volumes of one primary reuse
 * the same issues: keyed by the ID alone, a write of one volume was taken for a copy of another's
 * still held here, answered as recorded, and never forwarded.
 */
const idKey = (w: { id: CommandId; volume: number }): string => `${w.volume}/${w.id.sourceUnit}/${w.id.issue}`;
const isWhole = (w: InboundWrite): boolean => w.portionOffset === 0 && w.totalLength === w.length;
const U32_MAX = 0xffffffff;

export class RelayUnit {
  /** Give this to every inbound PeerLink (from primaries, and from secondaries that pull). */
  readonly handler: PeerHandler;

  private readonly o: RelayUnitOptions;
  private readonly log: Logger;
  private readonly journal: RelayJournal;
  private readonly scheduler: ForwardingScheduler;
  private readonly meter: LoadMeter;
  private readonly portionBytes: number;
  private readonly holdBytes: number;
  /** Bytes of claimed buffers. */
  private claimedBytes = 0;
  private readonly jobs = new Map<string, Job>();
  /** Identifiers recorded and not yet confirmed, with their journal sequence (duplicates). */
  private readonly recorded = new Map<string, number>();
  private closed = false;
  private readonly counters = {
    received: 0, receivedBytes: 0, duplicates: 0, refused: 0, recorded: 0, recordFailures: 0,
    forwardedBytes: 0, forwardFailures: 0, givenUp: 0, givenUpBytes: 0, cutThrough: 0, cutThroughFallbacks: 0, inStep: 0,
  };

  constructor(o: RelayUnitOptions) {
    this.o = o;
    this.log = (o.logger ?? nullLogger).child({ relay: o.unitId });
    this.journal = o.journal;
    this.portionBytes = o.portionBytes ?? 64 * 1024;
    if (!(Number.isInteger(this.portionBytes) && this.portionBytes > 0)) throw new RangeError(`RelayUnit: portionBytes ${this.portionBytes}`);
    this.holdBytes = o.holdBytes ?? 1 << 20;
    this.meter = new LoadMeter(o.clock);
    this.scheduler = new ForwardingScheduler({
      clock: o.clock, policy: o.policy, journal: o.journal, logger: this.log,
      load: () => this.meter.rate(),
      forward: (e) => this.forwardRecord(e),
      skip: (e) => this.cutThroughOwns(e),
      maxInFlight: o.maxInFlight ?? 64,
      retryMs: o.retryMs ?? 1000,
    });
    for (const e of o.journal.pending()) this.recorded.set(idKey(e), e.seq);
    this.handler = {
      onCommand: (w) => this.onCommand(w),
      onWrite: (w) => this.onWrite(w),
      onPull: (req, peer) => this.onPull(req, peer),
    };
    // A recovered journal's records go on as soon as the caller has finished wiring the unit.
    queueMicrotask(() => this.scheduler.poke());
  }

  /** A link to a destination came up (or a pull arrived): try forwarding now. */
  poke(): void {
    this.scheduler.poke(true);
  }

  /** The backlog per volume number (a relay may carry several volumes; stats() sums them). */
  backlogByVolume(): Map<number, { records: number; bytes: number }> {
    const by = new Map<number, { records: number; bytes: number }>();
    for (const e of this.journal.pending()) {
      const b = by.get(e.volume);
      if (b === undefined) by.set(e.volume, { records: 1, bytes: e.length });
      else {
        b.records++;
        b.bytes += e.length;
      }
    }
    return by;
  }

  stats(): RelayStats {
    const j = this.journal.stats();
    let heldBytes = 0;
    let cuts = 0;
    let inStep = 0;
    for (const job of this.jobs.values()) {
      if (job.letGo !== null) heldBytes += job.data.length;
      if (job.cut === 'running') cuts++;
      if (job.inStep === 'running') inStep++;
    }
    const c = this.counters;
    return {
      mode: this.o.mode, policy: this.o.policy.name, ...c,
      backlogRecords: j.records,
      backlogBytes: j.pendingBytes,
      forwarded: this.scheduler.forwarded - c.givenUp + c.cutThrough + c.inStep,
      inFlight: this.scheduler.active + cuts + inStep,
      held: { writes: this.jobs.size, bytes: heldBytes, forwarding: this.claimedBytes },
      load: this.meter.rate(),
      journal: j,
    };
  }

  /** Stop forwarding, let in-flight appends finish; the journal and the links are the caller's. */
  async close(): Promise<void> {
    this.closed = true;
    this.scheduler.stop();
    await Promise.allSettled([...this.jobs.values()].map((j) => j.append).filter((p) => p !== undefined));
  }

  // ---- inbound ---------------------------------------------------------------------------------

  private onCommand(w: InboundWrite): void {
    if (this.o.mode !== 'cut-through' || this.closed || !isWhole(w)) return;
    const key = idKey(w);
    if (this.jobs.has(key) || this.recorded.has(key)) return;
    const link = this.linkTo(w.forwardTo);
    // Down, older records still waiting (it must not overtake them), or no room to hold the
    // buffer: this write goes store-and-forward.
    if (link === undefined || this.claimedBytes + w.length > this.holdBytes || this.journal.pending({ limit: 1, skip: (e) => this.cutThroughOwns(e) }).length > 0) {
      this.counters.cutThroughFallbacks++;
      return;
    }
    const job = this.newJob(w);
    this.claim(job);
    job.cut = 'running';
    const before = (end: number): Promise<void> => w.whenReceived(end).catch((e: unknown) => {
      job.abandoned = true;
      throw e;
    });
    sendInPortions(link, w, job.data, this.portionBytes, { before, sent: (n) => this.meter.record(n) }).then(
      () => {
        job.cut = 'done';
        this.counters.cutThrough++;
        this.counters.forwardedBytes += w.length;
      },
      (err: unknown) => {
        job.cut = 'failed';
        if (job.abandoned) return;
        this.counters.forwardFailures++;
        this.counters.cutThroughFallbacks++;
        this.log.warn({ err, id: w.id }, 'relay: cut-through failed; the write goes store-and-forward');
      },
    ).finally(() => this.settle(job));
  }

  private async onWrite(w: InboundWrite): Promise<Durability> {
    const key = idKey(w);
    let job = this.jobs.get(key);
    this.counters.received++;
    this.counters.receivedBytes += w.length;
    if (this.closed) {
      if (job !== undefined && job.w === w) {
        // A cut-through may still be reading the buffer: it goes back once that ended.
        job.abandoned = true;
        this.settle(job);
      }
      throw this.refuse(w, new Error('relay unit is closing'));
    }
    if (job !== undefined && job.w !== w) return this.duplicate(w, job);
    if (!isWhole(w)) throw this.refuse(w, new RangeError(`relay: a portion (${w.portionOffset}+${w.length} of ${w.totalLength}) cannot be recorded; send whole writes`));
    if (job === undefined) {
      if (this.recorded.has(key)) {
        // Recorded (durably) and not yet confirmed: the source sent it again.
        this.counters.duplicates++;
        return w.ack;
      }
      job = this.newJob(w);
      if (this.o.mode === 'store-and-forward' && w.ack === 'received') {
        const link = this.linkTo(w.forwardTo);
        if (link !== undefined && this.scheduler.arrival() === 'forward' && this.claim(job)) {
          this.sendInStep(job, link);
          return 'received';
        }
      }
    }
    // 'received' is decided now, before the group commit (which may flush inline, on the event
    // loop) gets its turn: the journal says at once whether it refuses the record.
    const req = this.appendRequest(job);
    const refused = w.ack === 'durable' ? null : this.journal.refusal(req);
    const appended = this.record(job, req);
    if (w.ack === 'durable') {
      try {
        await appended;
      } catch (err) {
        throw this.refuse(w, err);
      }
      return 'durable';
    }
    if (refused !== null) throw this.refuse(w, refused);
    return 'received';
  }

  private async duplicate(w: InboundWrite, first: Job): Promise<Durability> {
    this.counters.duplicates++;
    if (w.ack === 'received') return 'received';
    // 'durable' is true once the first copy's record is.
    if (first.append === undefined) throw this.refuse(w, new Error(`relay: write ${idKey(w)} is already in progress and not yet recorded`));
    try {
      await first.append;
    } catch (err) {
      throw this.refuse(w, err);
    }
    return 'durable';
  }

  private refuse(w: InboundWrite, err: unknown): Error {
    this.counters.refused++;
    const e = err instanceof Error ? err : new Error(String(err));
    this.log.warn({ err: e, id: w.id, ack: w.ack }, 'relay: write refused');
    return e;
  }

  private onPull(req: PullRequest, peer: PeerInfo): void {
    try {
      const policy = this.o.policy as ForwardingPolicy & { pull?: (r: { maxCommands?: number; maxBytes?: number }) => void };
      // The wire's "no limit" is the u32 maximum.
      policy.pull?.({
        maxCommands: req.maxCommands === U32_MAX ? undefined : req.maxCommands,
        maxBytes: req.maxBytes === U32_MAX ? undefined : req.maxBytes,
      });
      this.log.info({ from: peer.unitId, maxCommands: req.maxCommands, maxBytes: req.maxBytes }, 'relay: pulled');
      this.poke();
    } catch (err) {
      this.log.error({ err }, 'relay: pull failed');
    }
  }

  // ---- recording and forwarding ------------------------------------------------------------------

  private newJob(w: InboundWrite): Job {
    const job: Job = {
      key: idKey(w), w, data: w.data, letGo: w.retain(), appendSettled: false, sending: 0, confirmed: false,
      claimed: false, cut: 'none', abandoned: false, inStep: 'none', pokeOnAppend: false,
    };
    this.jobs.set(job.key, job);
    return job;
  }

  private appendRequest(job: Job): AppendRequest {
    const w = job.w;
    return { id: w.id, volume: w.volume, lba: w.lba, blocks: w.blocks, data: job.data, fua: w.fua, forwardTo: w.forwardTo, waited: w.ack === 'durable' };
  }

  private record(job: Job, req = this.appendRequest(job)): Promise<AppendResult> {
    const w = job.w;
    const p = this.journal.append(req);
    job.append = p;
    p.then(
      (r) => {
        job.seq = r.seq;
        this.counters.recorded++;
        if (!job.confirmed && job.cut !== 'done') this.recorded.set(job.key, r.seq);
      },
      (err: unknown) => {
        this.counters.recordFailures++;
        this.log.error({ err, id: w.id, ack: w.ack }, 'relay: write could not be recorded');
      },
    ).finally(() => {
      job.appendSettled = true;
      this.settle(job);
    });
    // The answer to the source goes first, the forward after it: the answer is on the source's
    // path and the forward is not (the secondary is farther), so encoding and sending the forward
    // must not hold it up. A write that asked 'durable' is forwarded once its record is (settle
    // pokes the scheduler then, a microtask after the answer, before it lets the buffer go, so
    // that the forward still goes from it), so it does not hold up the group commit's start
    // either; the others two microtasks on, after onWrite's 'received' reached the link.
    if (w.ack === 'durable') job.pokeOnAppend = true;
    else queueMicrotask(() => queueMicrotask(() => this.scheduler.poke()));
    return p;
  }

  /** Spill: send on now without a record; if that fails, record it after all. */
  private sendInStep(job: Job, link: PeerLink): void {
    job.inStep = 'running';
    sendInPortions(link, job.w, job.data, this.portionBytes, { sent: (n) => this.meter.record(n) }).then(
      () => {
        job.inStep = 'done';
        this.counters.inStep++;
        this.counters.forwardedBytes += job.data.length;
      },
      (err: unknown) => {
        job.inStep = 'none';
        this.counters.forwardFailures++;
        this.log.warn({ err, id: job.w.id }, 'relay: in-step forward failed; recording the write');
        this.record(job).catch(() => {});
      },
    ).finally(() => this.settle(job));
  }

  /** Volumes whose destination said it was promoted: told once in the log, not per record. */
  private readonly promotedVolumes = new Set<string>();

  /** The scheduler's forward: one record, from the retained buffer if the unit still has it. */
  private async forwardRecord(e: JournalEntry): Promise<void> {
    const dest = e.forwardTo || this.o.defaultDestination;
    const link = this.linkTo(e.forwardTo);
    if (link === undefined) {
      this.counters.forwardFailures++;
      throw new DestinationDownError(dest);
    }
    const key = idKey(e);
    const cand = this.jobs.get(key);
    const job = cand !== undefined && (cand.seq === undefined || cand.seq === e.seq) && cand.data.length === e.length && this.claim(cand) ? cand : undefined;
    if (job !== undefined) job.sending++;
    try {
      try {
        const data = job !== undefined ? job.data : await this.journal.read(e.seq);
        await sendInPortions(link, e, data, this.portionBytes, { sent: (n) => this.meter.record(n) });
        this.counters.forwardedBytes += e.length;
      } catch (err) {
        if (!refusedAsPromoted(err)) {
          this.counters.forwardFailures++;
          throw err;
        }
        this.giveUp(e, dest); // released like a forwarded record: nothing will ever take it
      }
      if (job !== undefined) job.confirmed = true;
      if (this.recorded.get(key) === e.seq) this.recorded.delete(key);
    } finally {
      if (job !== undefined) {
        job.sending--;
        this.settle(job);
      }
    }
  }

  /**
   * Its destination was promoted for its volume and refuses it for good: retrying it every retryMs
   * would go on for ever (it did: a warning a second after every failover). Promotion refuses
   * while a relay holds writes of the volume unless forced, which gave them up knowingly.
   */
  private giveUp(e: JournalEntry, dest: number): void {
    this.counters.givenUp++;
    this.counters.givenUpBytes += e.length;
    const which = `${dest}/${e.volume}`;
    if (this.promotedVolumes.has(which)) return;
    this.promotedVolumes.add(which);
    this.log.warn({ volume: e.volume, destination: dest, seq: e.seq },
      'relay: the destination was promoted for this volume (kura promote --force): the writes held for it are given up, not forwarded');
  }

  /** A record the cut-through sends (or sent): the scheduler keeps its hands off. */
  private cutThroughOwns(e: Pick<JournalEntry, 'id' | 'volume'>): boolean {
    const job = this.jobs.get(idKey(e));
    return job !== undefined && (job.cut === 'running' || job.cut === 'done');
  }

  /** Finish a job once nothing uses its buffer any more: release, give the buffer back. */
  private settle(job: Job): void {
    if (job.pokeOnAppend && job.appendSettled) {
      // One microtask on: the answer to the source (queued by now) is encoded and sent first; the
      // job (and its buffer) stays until the scheduler had its chance to forward from it.
      job.pokeOnAppend = false;
      queueMicrotask(() => {
        this.scheduler.poke();
        this.settle(job);
      });
      return;
    }
    if (this.jobs.get(job.key) !== job) return;
    if (job.cut === 'running' || job.inStep === 'running' || job.sending > 0) return;
    if (job.append === undefined) {
      // Waiting for onWrite (a cut-through job), unless it will never come or the write went in step.
      if (!job.abandoned && job.inStep !== 'done') return;
    } else if (!job.appendSettled) return;
    if (job.cut === 'done' && job.seq !== undefined) {
      // Every portion confirmed and the record complete: the unit releases it itself.
      const seq = job.seq;
      if (this.recorded.get(job.key) === seq) this.recorded.delete(job.key);
      this.journal.release(seq).catch((err: unknown) => this.log.error({ err, seq }, 'journal release failed'));
    }
    this.drop(job);
    // A record the cut-through owned is the scheduler's now (or its space is free).
    this.scheduler.poke();
  }

  private drop(job: Job): void {
    if (this.jobs.get(job.key) === job) this.jobs.delete(job.key);
    if (job.claimed) {
      job.claimed = false;
      this.claimedBytes -= job.data.length;
    }
    job.letGo?.();
    job.letGo = null;
  }

  /** Keep this buffer for forwarding from memory, if holdBytes allows. */
  private claim(job: Job): boolean {
    if (job.claimed) return true;
    if (job.letGo === null || this.claimedBytes + job.data.length > this.holdBytes) return false;
    job.claimed = true;
    this.claimedBytes += job.data.length;
    return true;
  }

  private linkTo(forwardTo: number): PeerLink | undefined {
    const link = this.o.downstream(forwardTo || this.o.defaultDestination);
    return link !== undefined && link.isOpen ? link : undefined;
  }
}
