/**
 * Mirroring through relaying devices (seed 000-E3, 000-E4): the primary's side of one volume's
 * replication. Every host write the processing sequencer commits locally is also handed here; the
 * host is told "complete" when BOTH the local medium write and this module's promise are done
 * (Fig.7 S169-S170), and this module's promise resolves when the write, and every earlier write of
 * the volume, has reached the ack mode's point:
 *
 *   local            copied into the replication queue (asynchronous; bounded by maxLagBytes)
 *   relay-received   a relay answered "completion of reception" (000-E1 S126)
 *   relay-durable    a relay answered that its non-volatile journal holds it (000-NV)
 *   remote-received  the secondary has it in its buffer memory
 *   remote-durable   the secondary's medium write is durable (synchronous remote copy)
 *
 * A FUA write asks its path for 'durable' in every mode but local.
 *
 * Paths (000-E4): the relays in the selection's way (round robin, least loaded, random, striping
 * with the next portion to whichever relay finished, or the same data to all relays with the first
 * answer deciding); the secondary directly in the remote modes, and as the fallback when no relay
 * is up. A send that fails (link down, peer error) goes back to the queue in sequence order and is
 * sent again, to any path: the identifier makes the secondary apply it once.
 *
 * A relay's answer moves the write's ack point, not its data to the secondary: a relay that dies
 * holds what it acknowledged and had not forwarded yet (a few writes in flight on its WAN link at
 * least), and the secondary, which applies in sequence order, waits for them until the relay is
 * back. So the copies of the latest writes a relay answered (up to retainBytes) are kept, and when
 * that relay's link is lost they are sent again, straight to the secondary or through another
 * relay: the secondary fills its gap and applies the rest once, and host writes, which fall back to
 * those paths, keep completing while the relay is gone. Likewise for the secondary's own answer
 * 'received' (the received ack modes and local, sent straight to it): a secondary process that
 * crashes loses what it had not checkpointed yet (secondary.ts, CHECKPOINT_MS/_BYTES), and the
 * copies go to it again when its link is back, ahead of every later write.
 *
 * Ordering: the host's answer for sequence s waits until every sequence <= s reached the ack
 * point (see types.ts: that is what keeps every acknowledged write inside the secondary's prefix).
 */
import assert from 'node:assert';
import type { Clock, Timer } from '../../hal/clock.js';
import { nullLogger, type Logger } from '../../hal/types.js';
import type { PeerLink } from '../peer/peer-link.js';
import type { Durability } from '../peer/inbound-write.js';
import type { CommandId } from '../processing-sequencer.js';
import { Ring } from '../../hal/ring.js';
import { refusedAsPromoted } from '../peer/errors.js';
import { issueOf, type AckMode, type LinkState, type PeerStatus, type RelaySelection, type ReplicationStatus } from './types.js';

export interface PathConfig {
  name: string;
  unitId: number;
}

export interface MirroringOptions {
  clock: Clock;
  logger?: Logger;
  /** The primary's unit id: the source of every identifier. */
  unitId: number;
  /** Volume number on the wire (its index in the topology). */
  volume: number;
  volumeName: string;
  blockSize: number;
  ackMode: AckMode;
  selection: RelaySelection;
  relays: readonly PathConfig[];
  secondary: PathConfig | undefined;
  /** Generation and the last sequence already used in it (types.ts). */
  generation: number;
  sequence: number;
  /** Uniform [0, 1) (the simulator's seeded Random on a simulated node). */
  random: () => number;
  /** local mode: bytes queued and not yet at a relay/secondary before host writes wait. Default 256 MiB. */
  maxLagBytes?: number;
  /** Striping: portion size (default 64 KiB) and portions in flight per relay (default 4). */
  stripeBytes?: number;
  stripeWindow?: number;
  /** Wait before sending again after a failure while a path is up. Default 200 ms. */
  retryMs?: number;
  /** Copies of writes answered by a relay kept to send again if that relay is lost. Default 64 MiB. */
  retainBytes?: number;
  /**
   * A relay with writes outstanding that answers none for this long is passed over, and its writes
   * and retained copies go by the other paths, while another path is up (default 1000 ms): a relay
   * whose journal is full waits for room, which it gets only from forwarding, and the secondary
   * may be unreachable from it while the primary still reaches it directly.
   */
  relayStallMs?: number;
}

/** The copy of one host write, shared by its portions (striping); reused once all are done with it. */
interface Copy {
  buf: Buffer;
  /** Portions not yet answered or still being sent. */
  users: number;
}

/**
 * Copies of replicated writes are reused once answered (every path's send done: the peer has had all
 * the bytes, so no queue below holds them any more). At replication rates a fresh buffer per write
 * (1 MiB at QD32 on a 1 Gb/s link) made V8 run a full collection several times a second for the
 * external memory alone, and its pauses stalled the link. Kept by exact size, up to maxBytes.
 */
class CopyPool {
  private readonly free = new Map<number, Buffer[]>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  take(n: number): Buffer {
    const b = this.free.get(n)?.pop();
    if (b === undefined) return Buffer.allocUnsafe(n);
    this.bytes -= n;
    return b;
  }

  give(b: Buffer): void {
    if (this.bytes + b.length > this.maxBytes) return;
    let list = this.free.get(b.length);
    if (list === undefined) {
      // One size class at a time in practice; a workload that changes size drops the old ones.
      if (this.free.size >= 8) this.clear();
      list = [];
      this.free.set(b.length, list);
    }
    list.push(b);
    this.bytes += b.length;
  }

  private clear(): void {
    this.free.clear();
    this.bytes = 0;
  }
}

interface Pending {
  seq: number;
  id: CommandId;
  lba: number;
  blocks: number;
  data: Buffer;
  copy: Copy;
  /** Its share of the copy was given back. */
  freed: boolean;
  fua: boolean;
  /** Reached the ack point. */
  acked: boolean;
  /** Sends in flight. */
  sends: number;
  /** Waiting in the queue. */
  queued: boolean;
  /** The relay (or the secondary, answering 'received') whose answer acknowledged it, while its copy is retained for that path's loss. */
  heldBy: Path | undefined;
}

interface Path extends PathConfig {
  kind: 'relay' | 'secondary';
  link: PeerLink | undefined;
  state: LinkState;
  /** Our sends in flight on it (count and bytes): least-loaded and striping look at these. */
  inflight: number;
  inflightBytes: number;
  acked: number;
  failed: number;
  /** Clock time of its last answer, or of the send that made it busy. */
  progressAt: number;
  /** A relay answering nothing (see relayStallMs): passed over while another path is up. */
  stalled: boolean;
}

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class Mirroring {
  private readonly log: Logger;
  private readonly generation: number;
  private sequence: number;
  /** Every sequence <= this reached the ack point. */
  private ackedThrough: number;
  /** Not yet at the ack point (or, local mode, not yet answered by any path), by sequence. */
  private readonly pending = new Map<number, Pending>();
  /** Waiting for a path, in sequence order. */
  private queue: Pending[] = [];
  private queuedBytes = 0;
  private readonly waiters: Waiter[] = [];
  /** local mode: host writes waiting for the queue to shrink. */
  private readonly roomWaiters: Array<() => void> = [];
  private readonly paths: Path[];
  private readonly relays: Path[];
  private readonly secondary: Path | undefined;
  private next = 0;
  private retryTimer: Timer | null = null;
  private watchdog: Timer | null = null;
  private readonly relayStallMs: number;
  private fencedBy: string | null = null;
  private closed = false;
  private readonly maxLagBytes: number;
  private readonly stripeBlocks: number;
  private readonly stripeWindow: number;
  private readonly retryMs: number;
  /** Ranges a backup is reading: a host write replicated meanwhile over one spoils that read. */
  private readonly watches = new Set<{ lba: number; end: number; dirty: boolean }>();
  private replicatedBytes = 0;
  private ackedBytes = 0;
  private lagBytes = 0;
  private readonly copies = new CopyPool(32 * 2 ** 20);
  private sends = 0;
  private resends = 0;
  /** Writes answered by a relay, or by the secondary on receipt, whose copies are kept (heldBy set), oldest first. */
  private readonly retained = new Ring<Pending>();
  private retainedBytes = 0;
  private readonly retainBytes: number;

  constructor(private readonly o: MirroringOptions) {
    assert(o.blockSize > 0 && Number.isInteger(o.generation) && o.generation >= 0 && o.sequence >= 0);
    this.log = (o.logger ?? nullLogger).child({ module: 'mirroring', volume: o.volumeName });
    this.generation = o.generation;
    this.sequence = o.sequence;
    this.ackedThrough = o.sequence;
    const path = (c: PathConfig, kind: Path['kind']): Path => ({
      ...c, kind, link: undefined, state: 'connecting', inflight: 0, inflightBytes: 0, acked: 0, failed: 0, progressAt: 0, stalled: false,
    });
    this.relays = o.relays.map((r) => path(r, 'relay'));
    this.secondary = o.secondary === undefined ? undefined : path(o.secondary, 'secondary');
    this.paths = this.secondary === undefined ? [...this.relays] : [...this.relays, this.secondary];
    this.maxLagBytes = o.maxLagBytes ?? 256 * 2 ** 20;
    this.stripeBlocks = Math.max(1, Math.floor((o.stripeBytes ?? 64 * 1024) / o.blockSize));
    this.stripeWindow = o.stripeWindow ?? 4;
    this.retryMs = o.retryMs ?? 200;
    this.retainBytes = o.retainBytes ?? 64 * 2 ** 20;
    this.relayStallMs = o.relayStallMs ?? 1000;
    if (o.ackMode.startsWith('relay-')) assert(this.relays.length > 0, `${o.ackMode} needs a relay`);
    if (o.ackMode.startsWith('remote-')) assert(this.secondary !== undefined, `${o.ackMode} needs a secondary`);
  }

  /**
   * Why this copy takes no more writes, or null: its secondary was promoted while it served the
   * volume (kura promote --force), and answered VOLUME_PROMOTED. Two copies taking writes would
   * diverge for good, and nothing this one acknowledged could reach the promoted one.
   */
  get fenced(): string | null {
    return this.fencedBy;
  }

  /** True when writes go anywhere (a relay or a secondary is configured). */
  get replicating(): boolean {
    return this.paths.length > 0;
  }

  get lastSequence(): number {
    return this.sequence;
  }

  /** The node's connection manager: the link to `name` is open (a PeerLink), or down (undefined). */
  setLink(name: string, link: PeerLink | undefined): void {
    const p = this.paths.find((x) => x.name === name);
    if (p === undefined) return;
    p.link = link;
    p.stalled = false;
    if (link === undefined) {
      p.state = 'down';
      // A clean stop closes the links after the mirroring: nothing is sent again then.
      if (!this.closed) this.sendAgainWhatHeld(p);
      return;
    }
    p.state = link.isOpen ? 'up' : 'connecting';
    if (link.isOpen) {
      this.pump();
      return;
    }
    // Handed over while still authenticating: nothing else would wake the queue once it opens.
    link.ready.then(
      () => {
        if (p.link !== link) return;
        p.state = 'up';
        this.pump();
      },
      () => {
        if (p.link === link) p.state = 'down';
      },
    );
  }

  /**
   * A host write committed locally (the caller runs the local medium write in parallel). `data` is
   * copied: the caller's buffer area may be reused as soon as this returns.
   */
  replicate(lba: number, blocks: number, data: Uint8Array, fua: boolean): Promise<void> {
    if (!this.replicating) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error(`volume ${this.o.volumeName}: replication is closed`));
    assert(data.length === blocks * this.o.blockSize, 'replicate: data length does not match blocks');
    const copy: Copy = { buf: this.copies.take(data.length), users: 0 };
    copy.buf.set(data);
    for (const w of this.watches) if (lba < w.end && w.lba < lba + blocks) w.dirty = true;
    // Striping: one portion of stripeBlocks blocks per sequence, so every portion is applied in
    // order and acknowledged on its own; the host write completes when all its portions did.
    const step = this.o.selection === 'stripe' && this.o.ackMode.startsWith('relay-') ? this.stripeBlocks : blocks;
    let last = 0;
    for (let off = 0; off < blocks; off += step) {
      const n = Math.min(step, blocks - off);
      const seq = ++this.sequence;
      copy.users++;
      const p: Pending = {
        seq, id: { sourceUnit: this.o.unitId, issue: issueOf(this.generation, seq) }, lba: lba + off, blocks: n,
        data: n === blocks ? copy.buf : copy.buf.subarray(off * this.o.blockSize, (off + n) * this.o.blockSize), copy, freed: false, fua, acked: false, sends: 0,
        queued: false, heldBy: undefined,
      };
      this.pending.set(seq, p);
      this.enqueue(p);
      this.replicatedBytes += p.data.length;
      this.lagBytes += p.data.length;
      last = seq;
    }
    this.pump();
    if (this.o.ackMode === 'local') {
      if (this.lagBytes <= this.maxLagBytes) return Promise.resolve();
      return new Promise((resolve) => this.roomWaiters.push(resolve));
    }
    return this.whenAcked(last);
  }

  /**
   * A backup is about to read [lba, lba + blocks): the returned check says whether a host write
   * to that range was replicated since (then the data read may be older than a write already
   * sequenced, and must be read again). Call the second function to stop watching.
   */
  watch(lba: number, blocks: number): { dirty: () => boolean; end: () => void } {
    const w = { lba, end: lba + blocks, dirty: false };
    this.watches.add(w);
    return { dirty: () => w.dirty, end: () => this.watches.delete(w) };
  }

  /** The ack point is a relay or the secondary with this much receive window (copy sizing, [0062]). */
  pathWindowBytes(): number {
    const windows = this.up(this.paths).map((p) => p.link!.credit.bytes + p.inflightBytes).filter((b) => Number.isFinite(b) && b > 0);
    return windows.length === 0 ? 0 : Math.min(...windows);
  }

  /** Every write replicated before this call was answered by a relay or the secondary, in any mode. */
  drain(): Promise<void> {
    return this.whenAcked(this.sequence);
  }

  /** Everything replicated before this call reached the ack point (SYNCHRONIZE CACHE). */
  flush(): Promise<void> {
    if (this.o.ackMode === 'local') return Promise.resolve();
    return this.whenAcked(this.sequence);
  }

  status(): ReplicationStatus {
    const peers: PeerStatus[] = this.paths.map((p) => ({
      name: p.name, unitId: p.unitId, state: p.state, rttMs: p.link?.stats().rtt, outstanding: p.inflight, ...(p.stalled ? { stalled: true } : {}),
    }));
    return {
      volume: this.o.volumeName, role: 'primary', ackMode: this.o.ackMode, generation: this.generation,
      sequence: this.sequence, lagWrites: this.pending.size, lagBytes: this.lagBytes, pendingAck: this.sequence - this.ackedThrough,
      replicatedBytes: this.replicatedBytes, ackedBytes: this.ackedBytes, sends: this.sends, resends: this.resends, peers,
      ...(this.fencedBy !== null ? { fenced: this.fencedBy } : {}),
    };
  }

  private fence(path: Path): void {
    if (this.fencedBy !== null) return;
    this.fencedBy = `${path.name} was promoted for this volume (kura promote --force while this primary served it): this copy takes no more writes`;
    this.log.error({ volume: this.o.volumeName, secondary: path.name, sequence: this.sequence, acked: this.ackedThrough },
      'the secondary was promoted: this copy is write protected from now on, and the writes waiting for an answer fail');
    this.close(new Error(`volume ${this.o.volumeName}: ${this.fencedBy}`));
  }

  /** Stop sending; host writes waiting for an ack fail (with `why`). */
  close(why?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.retryTimer?.cancel();
    this.retryTimer = null;
    this.watchdog?.cancel();
    this.watchdog = null;
    const err = why ?? new Error(`volume ${this.o.volumeName}: replication closed`);
    for (const w of this.waiters.splice(0)) w.reject(err);
    for (const r of this.roomWaiters.splice(0)) r();
  }

  private whenAcked(seq: number): Promise<void> {
    if (seq <= this.ackedThrough) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      // Sequences are handed out in call order, so the list stays sorted by pushing.
      const w: Waiter = { seq, resolve, reject };
      if (this.waiters.length > 0 && this.waiters[this.waiters.length - 1]!.seq > seq) {
        const i = this.waiters.findIndex((x) => x.seq > seq);
        this.waiters.splice(i, 0, w);
      } else this.waiters.push(w);
    });
  }

  private enqueue(p: Pending): void {
    const q = this.queue;
    assert(!p.queued, 'mirroring: a write queued twice');
    if (q.length === 0 || q[q.length - 1]!.seq < p.seq) q.push(p);
    else q.splice(q.findIndex((x) => x.seq > p.seq), 0, p);
    p.queued = true;
    this.queuedBytes += p.data.length;
  }

  /** Send what the queue holds, as far as paths allow. */
  private pump(): void {
    while (this.queue.length > 0 && !this.closed) {
      const p = this.queue[0]!;
      const targets = this.choose(p);
      if (targets.length === 0) break;
      this.queue.shift();
      p.queued = false;
      this.queuedBytes -= p.data.length;
      for (const t of targets) this.send(p, t);
    }
  }

  private up(paths: readonly Path[]): Path[] {
    return paths.filter((p) => p.link !== undefined && p.link.isOpen);
  }

  /** The path(s) for the next write, or none (wait for a path, or for striping room). */
  private choose(p: Pending): Path[] {
    const mode = this.o.ackMode;
    const direct = this.secondary !== undefined && this.secondary.link?.isOpen === true ? [this.secondary] : [];
    if (mode.startsWith('remote-')) return direct;
    const up = this.up(this.relays);
    const answering = up.filter((r) => !r.stalled);
    // Stalled relays only when nothing else is up: what they hold back waits for them anyway.
    const relays = answering.length > 0 || direct.length > 0 ? answering : up;
    if (relays.length === 0) return direct; // degraded: straight to the secondary (a stronger ack point)
    switch (this.o.selection) {
      case 'round-robin': {
        const r = relays[this.next++ % relays.length]!;
        return [r];
      }
      case 'least-loaded':
        return [relays.reduce((a, b) => (b.inflightBytes < a.inflightBytes ? b : a))];
      case 'random':
        return [relays[Math.min(relays.length - 1, Math.floor(this.o.random() * relays.length))]!];
      case 'stripe': {
        // The next portion goes to whichever relay has room (finished one): a slow relay gets fewer.
        const free = relays.filter((r) => r.inflight < this.stripeWindow);
        if (free.length === 0) return [];
        return [free.reduce((a, b) => (b.inflight < a.inflight ? b : a))];
      }
      case 'all':
        return relays;
    }
    void p;
  }

  private ackFor(p: Pending, path: Path): Durability {
    if (p.fua && this.o.ackMode !== 'local') return 'durable';
    if (this.o.ackMode === 'relay-durable' || this.o.ackMode === 'remote-durable') return 'durable';
    // A fallback straight to the secondary in relay-durable mode asked 'durable' above; received otherwise.
    void path;
    return 'received';
  }

  private send(p: Pending, path: Path): void {
    const link = path.link!;
    p.sends++;
    if (path.inflight++ === 0) path.progressAt = this.o.clock.now();
    if (path.kind === 'relay') this.armWatchdog();
    path.inflightBytes += p.data.length;
    this.sends++;
    const finish = (): void => {
      path.progressAt = this.o.clock.now();
      p.sends--;
      path.inflight--;
      path.inflightBytes -= p.data.length;
      this.done(p);
    };
    link.send({
      volume: this.o.volume, lba: p.lba, blocks: p.blocks, data: p.data, id: p.id, fua: p.fua, ack: this.ackFor(p, path),
      forwardTo: path.kind === 'relay' ? (this.secondary?.unitId ?? 0) : 0,
    }).then((ticket) => ticket.done).then(
      () => {
        // A retained write sent again: now the path that answered it holds it.
        if (p.heldBy !== undefined) p.heldBy = path;
        if (path.stalled) {
          path.stalled = false;
          this.log.info({ relay: path.name }, 'relay answers again: writes go through it again');
        }
        finish();
        path.acked++;
        this.acked(p, path);
        if (this.o.selection === 'stripe') this.pump();
      },
      (err: unknown) => {
        finish();
        path.failed++;
        if (refusedAsPromoted(err)) {
          this.fence(path);
          return;
        }
        // An answered write is sent again only while it is retained for a lost relay.
        if (this.closed || (p.acked && p.heldBy === undefined)) return;
        this.log.warn({ err, path: path.name, seq: p.seq }, 'replicated write failed on this path; sending it again');
        if (p.sends === 0 && !p.queued) {
          this.resends++;
          this.enqueue(p);
          this.retrySoon();
        }
      },
    );
  }

  /** An answered write nothing sends any more, nor keeps for a relay's loss: its copy can be reused. */
  private done(p: Pending): void {
    if (!p.acked || p.sends > 0 || p.queued || p.heldBy !== undefined || p.freed) return;
    p.freed = true;
    if (--p.copy.users === 0) this.copies.give(p.copy.buf);
  }

  private acked(p: Pending, path: Path): void {
    if (p.acked) return; // same data to all relays: the first answer decides, later ones are ignored
    p.acked = true;
    if (this.retainBytes > 0 && (path.kind === 'relay' || this.ackFor(p, path) === 'received')) this.retain(p, path);
    this.done(p);
    this.pending.delete(p.seq);
    this.lagBytes -= p.data.length;
    this.ackedBytes += p.data.length;
    while (this.ackedThrough < this.sequence && !this.pending.has(this.ackedThrough + 1)) this.ackedThrough++;
    while (this.waiters.length > 0 && this.waiters[0]!.seq <= this.ackedThrough) this.waiters.shift()!.resolve();
    while (this.roomWaiters.length > 0 && this.lagBytes <= this.maxLagBytes) this.roomWaiters.shift()!();
  }

  /** Keep p's copy for the loss of `path`, which answered it; the oldest retained copies go beyond retainBytes. */
  private retain(p: Pending, path: Path): void {
    p.heldBy = path;
    this.retained.push(p);
    this.retainedBytes += p.data.length;
    while (this.retainedBytes > this.retainBytes) this.unretain(this.retained.shift()!);
  }

  private unretain(p: Pending): void {
    this.retainedBytes -= p.data.length;
    p.heldBy = undefined;
    this.done(p);
  }

  /**
   * The link to `lost` is: what it answered may never reach the secondary from it (a relay), or may
   * be gone with the secondary's process (answered 'received'). Send the retained copies it
   * answered again, in sequence order, by the paths up now or once one is (the secondary ignores
   * any it already applied); they stay retained, held by the path that answers them next.
   */
  private sendAgainWhatHeld(lost: Path): void {
    let writes = 0;
    let bytes = 0;
    for (let i = 0; i < this.retained.length; i++) {
      const p = this.retained.at(i)!;
      if (p.heldBy !== lost || p.queued || p.sends > 0) continue;
      this.enqueue(p);
      writes++;
      bytes += p.data.length;
    }
    if (writes === 0) return;
    this.resends += writes;
    this.log.warn({ [lost.kind]: lost.name, writes, bytes }, lost.kind === 'secondary'
      ? 'secondary link lost: sending the writes it answered \'received\' most recently again once a path is up (what its process had not made durable)'
      : `relay ${lost.stalled ? 'stalled' : 'link lost'}: sending the writes it answered most recently again, by the other paths`);
    this.pump();
    if (this.queue.length > 0) this.retrySoon();
  }

  /** While relays have writes outstanding, look every relayStallMs / 2 for one that answers none. */
  private armWatchdog(): void {
    if (this.watchdog !== null || this.closed) return;
    this.watchdog = this.o.clock.setTimer(this.relayStallMs / 2, () => {
      this.watchdog = null;
      const now = this.o.clock.now();
      let busy = false;
      for (const r of this.relays) {
        if (r.inflight === 0) continue;
        busy = true;
        if (!r.stalled && r.link?.isOpen === true && now - r.progressAt >= this.relayStallMs) this.stall(r, now - r.progressAt);
      }
      if (busy) this.armWatchdog();
    });
  }

  /**
   * `relay` holds writes and answers none (its journal full, waiting for room that only forwarding
   * to an unreachable secondary would make): send what waits for an answer, and the copies it
   * answered before, by the other paths. The secondary takes each write once, whichever comes first.
   */
  private stall(relay: Path, forMs: number): void {
    relay.stalled = true;
    if (this.up(this.paths).every((x) => x.stalled)) return;
    let writes = 0;
    for (const p of this.pending.values()) {
      if (p.acked || p.queued) continue;
      this.enqueue(p);
      writes++;
    }
    this.log.warn({ relay: relay.name, outstanding: relay.inflight, forMs: Math.round(forMs), writes },
      'relay answers nothing (its journal full, the secondary unreachable from it?): writes go by the other paths until it answers');
    this.resends += writes;
    this.sendAgainWhatHeld(relay);
    this.pump();
    if (this.queue.length > 0) this.retrySoon();
  }

  private retrySoon(): void {
    if (this.retryTimer !== null || this.closed) return;
    this.retryTimer = this.o.clock.setTimer(this.retryMs, () => {
      this.retryTimer = null;
      this.pump();
      if (this.queue.length > 0 && this.up(this.paths).length > 0) this.retrySoon();
    });
  }
}
