/**
 * Test support for replication (no tests here): a primary controller whose volume is mirrored
 * (mirroredVolume + Mirroring), fake relays, and a secondary controller with a SecondaryUnit, all
 * on the simulated HAL in virtual time. Named *.test.ts so that, like the tests, it may use it.
 *
 * The fake relay is a PeerLink acceptor whose handler answers the primary after a configurable
 * virtual delay (the ack it was asked for: 'received' or 'durable') and forwards each write, with
 * its identifier, to the secondary over its own link (asking 'durable'). Nothing more: the real
 * relay unit lives elsewhere.
 */
import { SimDevice, type Latency } from '../../hal/sim/sim-device.js';
import { Simulator, settle } from '../../hal/sim/simulator.js';
import { createController, type ControllerVolume } from '../controller.js';
import type { Durability, InboundWrite } from '../peer/inbound-write.js';
import type { PeerHandler, PeerLink } from '../peer/peer-link.js';
import { bytesFrom, linkPair, type LinkPair } from '../peer/test-fixture.js';
import type { CommandId } from '../processing-sequencer.js';
import { Mirroring } from './mirroring.js';
import { mirroredVolume } from './replicated-volume.js';
import { SecondaryUnit, type AppliedState } from './secondary.js';
import { generationOf, issueOf, sequenceOf, type AckMode, type RelaySelection } from './types.js';

export const BS = 512;
export const PRIMARY_UNIT = 11;
export const SECONDARY_UNIT = 12;
export const RELAY_UNIT = 21;

/** Deterministic contents tagged `tag`. */
export function pattern(tag: number, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (tag * 31 + i * 7 + (i >> 9) + 1) & 0xff;
  return b;
}

/** prepareWrite + fill + commit. */
export async function writeBlocks(vol: ControllerVolume, lba: number, data: Uint8Array, fua = false): Promise<void> {
  const r = await vol.prepareWrite(lba, data.length / vol.blockSize);
  r.area.set(data);
  await r.commit({ fua });
}

/** A settled promise's outcome, as a value. */
export function outcome<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
}

/** Fire timers (settling between them) until `cond` holds; throws past `withinMs` of virtual time. */
export async function until(sim: Simulator, cond: () => boolean, withinMs = 60_000): Promise<void> {
  const limit = sim.now() + withinMs;
  for (;;) {
    await settle();
    if (cond()) return;
    const next = sim.clock.nextTimerAt();
    if (next === undefined) throw new Error(`until: nothing left to happen at t=${sim.now()}ms and the condition does not hold`);
    if (next > limit) throw new Error(`until: the condition still does not hold at t=${limit}ms`);
    sim.clock.fireNext();
  }
}

/** A secondary's medium: one SimDevice behind a controller volume (single layout: LBA n at byte n * BS). */
export interface Medium {
  dev: SimDevice;
  vol: ControllerVolume;
  /** What the volume holds now, blocks [lba, lba + blocks). */
  peek(lba: number, blocks: number): Buffer;
}

export function medium(sim: Simulator, o: { unitId: number; name: string; blockCount: number; latency?: Latency; volatileCache?: boolean; maxTransferBlocks?: number }): Medium {
  const dev = new SimDevice({ clock: sim.clock, size: o.blockCount * BS, name: o.name, latency: o.latency ?? 0.5, volatileCache: o.volatileCache });
  const ctl = createController({ clock: sim.clock, bufferBytes: 8 << 20, unitId: o.unitId });
  const vol = ctl.addVolume({ name: 'vol', blockSize: BS, blockCount: o.blockCount, media: [dev], layout: 'single', scheduler: 'fifo', maxTransferBlocks: o.maxTransferBlocks });
  return { dev, vol, peek: (lba, blocks) => dev.peek(lba * BS, blocks * BS) };
}

const delay = (d: number | (() => number) | undefined): number => (typeof d === 'function' ? d() : d ?? 0);

export interface RelaySpec {
  /** One-way delay primary <-> relay, ms. */
  oneWayMs: number;
  /** One-way delay relay <-> secondary, ms. */
  toSecondaryMs: number;
  /** Time the relay takes before answering the primary (buffer / journal), ms. */
  answerMs?: number | (() => number);
  /** Time the relay waits before forwarding a write to the secondary, ms. */
  forwardMs?: number | (() => number);
}

export interface RelayRecord {
  gen: number;
  seq: number;
  lba: number;
  blocks: number;
  ack: Durability;
  at: number;
  answeredAt?: number;
}

/** A fake relay: answers the primary after answerMs, forwards to the secondary after forwardMs. */
export class FakeRelay {
  readonly got: RelayRecord[] = [];
  /** Forwards the secondary answered, and ones that failed. */
  forwarded = 0;
  forwardFailed = 0;
  /** When each forward left for the secondary (sequence, time). */
  readonly forwardLog: Array<{ seq: number; at: number }> = [];
  /** primary (a) -> relay (b). */
  fromPrimary!: LinkPair;
  /** relay (a) -> secondary (b). */
  toSecondary!: LinkPair;
  readonly handler: PeerHandler;

  constructor(
    private readonly sim: Simulator,
    readonly name: string,
    readonly unitId: number,
    readonly spec: RelaySpec,
  ) {
    this.handler = { onWrite: (w) => this.onWrite(w) };
  }

  /** Sequences it received from the primary, in arrival order. */
  get seqs(): number[] {
    return this.got.map((g) => g.seq);
  }

  /** The primary's link to this relay dies (connection reset), whatever is in flight. */
  kill(): void {
    this.fromPrimary.pa.destroy();
  }

  /** The relay dies: both its links go, and what it answered and had not forwarded with it. */
  die(): void {
    this.kill();
    this.toSecondary.pa.destroy();
  }

  private async onWrite(w: InboundWrite): Promise<Durability> {
    const rec: RelayRecord = { gen: generationOf(w.id), seq: sequenceOf(w.id), lba: w.lba, blocks: w.blocks, ack: w.ack, at: this.sim.now() };
    this.got.push(rec);
    // The link's buffer goes back when we answer: keep our own copy for the forward.
    const data = Buffer.from(w.data);
    const fwd = { volume: w.volume, lba: w.lba, blocks: w.blocks, data, id: { ...w.id }, fua: w.fua };
    void this.forward(fwd);
    await this.sim.sleep(delay(this.spec.answerMs));
    rec.answeredAt = this.sim.now();
    return w.ack;
  }

  private async forward(f: { volume: number; lba: number; blocks: number; data: Buffer; id: CommandId; fua: boolean }): Promise<void> {
    await this.sim.sleep(delay(this.spec.forwardMs));
    const link = this.toSecondary.a;
    this.forwardLog.push({ seq: sequenceOf(f.id), at: this.sim.now() });
    for (let attempt = 0; attempt < 20 && link.isOpen; attempt++) {
      try {
        await link.write({ ...f, ack: 'durable' });
        this.forwarded++;
        return;
      } catch {
        await this.sim.sleep(50);
      }
    }
    this.forwardFailed++;
  }
}

export interface RigOptions {
  seed?: number;
  ackMode: AckMode;
  selection?: RelaySelection;
  relays?: RelaySpec[];
  /** One-way delay primary <-> secondary (the direct link). Default 10 ms. */
  secondaryMs?: number;
  primaryLatency?: Latency;
  secondaryLatency?: Latency;
  secondaryVolatileCache?: boolean;
  /** Time the secondary takes to persist its watermark. Default 0.5 ms. */
  persistMs?: number;
  blockCount?: number;
  maxTransferBlocks?: number;
  generation?: number;
  stripeBytes?: number;
  stripeWindow?: number;
  retryMs?: number;
  maxLagBytes?: number;
  retainBytes?: number;
  relayStallMs?: number;
}

export interface Rig {
  sim: Simulator;
  primary: Medium;
  /** The host's face of the primary volume. */
  vol: ControllerVolume;
  mirroring: Mirroring;
  relays: FakeRelay[];
  /** primary (a) -> secondary (b). */
  direct: LinkPair;
  secondary: Medium;
  unit: SecondaryUnit;
  /** The secondary's persisted watermark (index 0). */
  states: Map<number, AppliedState>;
  /** Host write; resolves with its completion time. */
  write(lba: number, data: Uint8Array, fua?: boolean): Promise<number>;
  /**
   * Wait until the secondary applied (and made durable) every sequence the primary handed out, and
   * every relay finished forwarding what it got.
   */
  drain(withinMs?: number): Promise<void>;
  /** The primary's links to the paths, by name. */
  linkTo(name: string): PeerLink;
  /**
   * A new link from the primary to `relay`, handed to the mirroring at once, as a connection
   * manager may do, while its handshake is still under way.
   */
  reconnect(relay: FakeRelay): LinkPair;
  /**
   * The secondary's process crashes with its machine (power loss: what its medium had not flushed
   * is gone, with the direct link) and starts again from its persisted watermark on a new direct
   * link; `unit` is the new one. Relays' links to it are not remade (tests of this use none).
   */
  crashSecondary(): Promise<void>;
}

export async function rig(o: RigOptions): Promise<Rig> {
  const sim = new Simulator({ seed: o.seed ?? 1 });
  const random = bytesFrom(() => sim.random.u32());
  const blockCount = o.blockCount ?? 2048;
  const primary = medium(sim, { unitId: PRIMARY_UNIT, name: 'primary', blockCount, latency: o.primaryLatency, maxTransferBlocks: o.maxTransferBlocks });
  const secondary = medium(sim, { unitId: SECONDARY_UNIT, name: 'secondary', blockCount, latency: o.secondaryLatency, volatileCache: o.secondaryVolatileCache });
  const states = new Map<number, AppliedState>();
  const secondaryUnit = (): SecondaryUnit => new SecondaryUnit({
    clock: sim.clock,
    volumes: [{ index: 0, volume: secondary.vol, state: states.get(0) }],
    persist: async (index, state) => {
      await sim.sleep(o.persistMs ?? 0.5);
      states.set(index, { ...state });
    },
  });
  const unit = secondaryUnit();
  const relays = (o.relays ?? []).map((spec, i) => new FakeRelay(sim, `r${i}`, RELAY_UNIT + i, spec));
  const pair = (latencyMs: number, a: number, b: number, handler: PeerHandler | undefined): LinkPair =>
    linkPair({ clock: sim.clock, random, pipe: { latencyMs }, a: { unitId: a }, b: { unitId: b, handler } });
  for (const r of relays) {
    r.fromPrimary = pair(r.spec.oneWayMs, PRIMARY_UNIT, r.unitId, r.handler);
    r.toSecondary = pair(r.spec.toSecondaryMs, r.unitId, SECONDARY_UNIT, unit.handler);
  }
  const direct = pair(o.secondaryMs ?? 10, PRIMARY_UNIT, SECONDARY_UNIT, unit.handler);
  const all = [direct, ...relays.flatMap((r) => [r.fromPrimary, r.toSecondary])];
  await sim.run(Promise.all(all.flatMap((p) => [p.a.ready, p.b.ready])));

  const mirroring = new Mirroring({
    clock: sim.clock, unitId: PRIMARY_UNIT, volume: 0, volumeName: 'vol', blockSize: BS,
    ackMode: o.ackMode, selection: o.selection ?? 'round-robin',
    relays: relays.map((r) => ({ name: r.name, unitId: r.unitId })), secondary: { name: 'sec', unitId: SECONDARY_UNIT },
    generation: o.generation ?? 1, sequence: 0, random: () => sim.random.float(),
    stripeBytes: o.stripeBytes, stripeWindow: o.stripeWindow, retryMs: o.retryMs, maxLagBytes: o.maxLagBytes,
    retainBytes: o.retainBytes, relayStallMs: o.relayStallMs,
  });
  // The node's connection manager: tell the mirroring when a link is up, and when it went down.
  const links = new Map<string, PeerLink>([['sec', direct.a], ...relays.map((r) => [r.name, r.fromPrimary.a] as [string, PeerLink])]);
  const handOver = (name: string, link: PeerLink): void => {
    links.set(name, link);
    mirroring.setLink(name, link);
    void link.closed.then(() => {
      if (links.get(name) === link) mirroring.setLink(name, undefined);
    });
  };
  for (const [name, link] of [...links]) handOver(name, link);
  const vol = mirroredVolume(primary.vol, mirroring);
  const generation = o.generation ?? 1;
  const r: Rig = {
    sim, primary, vol, mirroring, relays, direct, secondary, unit, states,
    write: (lba, data, fua = false) => writeBlocks(vol, lba, data, fua).then(() => sim.now()),
    drain: (withinMs) => until(sim, () => {
      const st = states.get(0);
      const relaysDone = relays.every((x) => x.forwarded + x.forwardFailed === x.got.length);
      return relaysDone && st !== undefined && issueOf(st.generation, st.sequence) >= issueOf(generation, mirroring.lastSequence);
    }, withinMs),
    linkTo: (name) => links.get(name)!,
    reconnect: (relay) => {
      relay.fromPrimary = pair(relay.spec.oneWayMs, PRIMARY_UNIT, relay.unitId, relay.handler);
      handOver(relay.name, relay.fromPrimary.a);
      return relay.fromPrimary;
    },
    crashSecondary: async () => {
      r.direct.pb.destroy();
      secondary.dev.crash();
      // The primary notices the reset before it dials the new process.
      await sim.run(r.direct.a.closed);
      r.unit = secondaryUnit();
      r.direct = pair(o.secondaryMs ?? 10, PRIMARY_UNIT, SECONDARY_UNIT, r.unit.handler);
      handOver('sec', r.direct.a);
    },
  };
  return r;
}

/** A write as a SecondaryUnit's handler sees it (for driving it without links). */
export function inbound(o: {
  gen?: number; seq: number; lba: number; data: Buffer; ack?: Durability; source?: number; volume?: number;
  portion?: { offset: number; total: number; blocks: number };
}): InboundWrite {
  const total = o.portion?.total ?? o.data.length;
  return {
    id: { sourceUnit: o.source ?? PRIMARY_UNIT, issue: issueOf(o.gen ?? 1, o.seq) },
    tag: o.seq,
    volume: o.volume ?? 0,
    lba: o.lba,
    blocks: o.portion?.blocks ?? o.data.length / BS,
    fua: false,
    ack: o.ack ?? 'received',
    forwardTo: 0,
    totalLength: total,
    portionOffset: o.portion?.offset ?? 0,
    length: o.data.length,
    data: o.data,
    received: o.data.length,
    whenReceived: () => Promise.resolve(),
    retain: () => () => {},
  };
}
