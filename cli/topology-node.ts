/**
 * One node of a topology (cli/topology.ts) as a running process: a controller (primary of some
 * volumes, secondary of others) or a relay. It assembles the firmware pieces of replication:
 *
 *   primary:   each volume it is primary of gets a Mirroring (firmware/replication/mirroring.ts)
 *              and hosts see mirroredVolume(): completion = local medium + the ack mode's point.
 *   secondary: a SecondaryUnit applies what relays and primaries send, in sequence order; hosts
 *              see the volume read-only until promote().
 *   relay:     a RelayUnit journals (file or battery-backed memory) and forwards (000-E1/E2/NV).
 *
 * Links: one PeerLink per pair of nodes, dialled by the upstream side (primary -> relays and
 * secondary, relay -> secondaries) and re-dialled with backoff while down; every node listens on
 * its `peer` endpoint. Unit ids are the nodes' positions in the topology, from 1.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../hal/types.js';
import type { BlockDevice } from '../hal/block-device.js';
import { systemClock } from '../hal/system-clock.js';
import { JsonStateStore } from '../hal/state-store.js';
import { RecordFile } from '../hal/record-file.js';
import { createZeroedFile, openFileDevice } from '../hal/file-device.js';
import { openBatteryBackedMemory } from '../hal/battery-backed-device.js';
import type { Network, StreamListener } from '../hal/transport.js';
import { PeerLink, type PeerHandler } from '../firmware/peer/peer-link.js';
import type { ControllerVolume } from '../firmware/controller.js';
import { Mirroring } from '../firmware/replication/mirroring.js';
import { SecondaryUnit, type AppliedState } from '../firmware/replication/secondary.js';
import { guardedVolume, mirroredVolume, remoteCopyVolume } from '../firmware/replication/replicated-volume.js';
import { backupRange } from '../firmware/replication/backup.js';
import type { ReplicationStatus } from '../firmware/replication/types.js';
import { DeviceJournal } from '../firmware/relay/journal.js';
import type { JournalStats, RelayJournal } from '../firmware/relay/journal-types.js';
import { RelayUnit } from '../firmware/relay/relay-unit.js';
import { forwardingPolicy } from './forwarding.js';
import { nodeConfigSchema } from './config.js';
import { startControllerNode, type RunningNode } from './controller-node.js';
import { transferBetween, type Topology, type TopologyNode } from './topology.js';

export interface TopologyNodeOptions {
  topology: Topology;
  node: string;
  logger: Logger;
  /** What peer connections are made with (cli/topology-network.ts shapes them as WAN links). */
  network: Network;
  /**
   * The volumes this node is the primary of start a new replication generation and copy the whole
   * volume to the secondary, as after a crash (`kura up --resync`): the way out of a
   * secondary's gap, which a copy through the same stream cannot fill.
   */
  resync?: boolean;
}

export interface LinkStatus {
  peer: string;
  state: 'connecting' | 'up' | 'down';
  rttMs?: number;
  partitioned: boolean;
}

export interface NodeStatus {
  node: string;
  role: 'controller' | 'relay';
  site: string;
  pid: number;
  uptimeMs: number;
  iscsi?: string[];
  volumes: ReplicationStatus[];
  relay?: {
    backlogRecords: number;
    backlogBytes: number;
    /** The backlog by volume name (several volumes may share a relay). */
    backlogByVolume: Record<string, { records: number; bytes: number }>;
    journal: JournalStats;
    forwarded: number;
    /** Writes dropped because their secondary was promoted (kura promote --force), and their bytes. */
    givenUp?: number;
    givenUpBytes?: number;
  };
  links: LinkStatus[];
}

export interface RunningTopologyNode {
  readonly name: string;
  readonly role: 'controller' | 'relay';
  status(): NodeStatus;
  promote(volume: string): Promise<void>;
  /** Backup (000-E1): copy a range of a primary volume to its secondary; resolves when the path has all of it. */
  copy(volume: string, lba?: number, blocks?: number): Promise<{ blocks: number; ms: number }>;
  digest(volume: string, lba: number, blocks: number, chunkBlocks: number): Promise<{ blockSize: number; blockCount: number; digests: string[] }>;
  /** On the volume's secondary: ask its connected relays to forward what they hold (000-NV pull); the relays asked. */
  pull(volume: string, limits: { maxWrites?: number; maxBytes?: number }): string[];
  stop(): Promise<void>;
}

/** Replication state of a primary volume: <dataDir>/state/replication-<volume>.json. */
interface PrimaryState {
  generation: number;
  sequence: number;
  /** False while running: a crash leaves it false, and the next start opens a new generation. */
  clean: boolean;
}

const TARGET_PREFIX = 'iqn.2026-11.dev.kura:';

/**
 * Receive window and send queue of every peer link. The PeerLink default (4 MiB) holds four 1 MiB
 * writes: on a 1 Gb/s, 10 ms link a write's credit comes back ~10 ms after its last byte left, while
 * the other three take 25 ms to serialize, so a pause of the peer's event loop (a full garbage
 * collection is 10-50 ms on a loaded 2-core machine) left the link idle. 16 MiB is 130 ms of a
 * 1 Gb/s link: room for such pauses (a node holds at most that much per peer). 256 commands: what a
 * relay keeps in flight to the secondary (1024 moved a local-mode backlog from the primary's queue
 * into the relay's journal, where nothing meters it).
 */
const LINK_WINDOWS = {
  receiveWindow: { bytes: 16 * 2 ** 20, commands: 256 },
  sendQueue: { bytes: 16 * 2 ** 20, commands: 256 },
} as const;

export function unitIdOf(t: Topology, node: string): number {
  const i = t.nodes.findIndex((n) => n.name === node);
  if (i < 0) throw new Error(`no node named "${node}" in topology "${t.name}" (nodes: ${t.nodes.map((n) => n.name).join(', ')})`);
  return i + 1;
}

export function targetNameOf(volume: string): string {
  return `${TARGET_PREFIX}${volume}`;
}

export async function startTopologyNode(o: TopologyNodeOptions): Promise<RunningTopologyNode> {
  const t = o.topology;
  const me = t.nodes.find((n) => n.name === o.node);
  if (me === undefined) throw new Error(`no node named "${o.node}" in topology "${t.name}" (nodes: ${t.nodes.map((n) => n.name).join(', ')})`);
  const dataDir = me.dataDir!;
  mkdirSync(dataDir, { recursive: true });
  const started = systemClock.now();
  const log = o.logger.child({ node: me.name });
  const links = new PeerLinks(t, me, o.network, log);
  const base = {
    name: me.name, role: me.role,
    links: () => links.status(),
    common: () => ({ node: me.name, role: me.role, site: me.site, pid: process.pid, uptimeMs: systemClock.now() - started }),
  };
  try {
    return me.role === 'relay' ? await startRelay(t, me, dataDir, log, links, base) : await startController(t, me, dataDir, log, links, base, o.resync === true);
  } catch (err) {
    await links.close();
    throw err;
  }
}

interface Base {
  name: string;
  role: 'controller' | 'relay';
  links(): LinkStatus[];
  common(): Pick<NodeStatus, 'node' | 'role' | 'site' | 'pid' | 'uptimeMs'>;
}

/** A secondary's applied watermark (and promotion) for one volume. */
function appliedRecordPath(dataDir: string, volume: string): string {
  return join(dataDir, 'state', `applied-${volume}.rec`);
}

/**
 * A node that is the primary of a volume it was once promoted for (the roles swapped in the
 * topology file, for a failback): should it become that volume's secondary again later, it must
 * take the stream, not refuse it as a promoted copy.
 */
export async function forgetPromotion(dataDir: string, volume: string): Promise<void> {
  const file = appliedRecordPath(dataDir, volume);
  if (!existsSync(file)) return;
  const record = await RecordFile.open(file);
  try {
    const state = record.load() as AppliedState | undefined;
    if (state?.promoted === true) await record.save({ sourceUnit: state.sourceUnit, generation: state.generation, sequence: state.sequence } satisfies AppliedState);
  } finally {
    await record.close();
  }
}

async function startController(t: Topology, me: TopologyNode, dataDir: string, log: Logger, links: PeerLinks, base: Base, resync: boolean): Promise<RunningTopologyNode> {
  const unitId = unitIdOf(t, me.name);
  const mine = t.volumes.map((v, index) => ({ v, index })).filter(({ v }) => v.primary === me.name || v.secondary === me.name);
  const states = new JsonStateStore(join(dataDir, 'state'));
  const mirrorings = new Map<string, { m: Mirroring; index: number; copy?: { state: 'needed' | 'running' | 'done'; doneBlocks: number; totalBlocks: number } }>();
  const secondaries: Array<{ name: string; index: number; inner?: ControllerVolume; state: AppliedState | undefined }> = [];
  const watermarks = new Map<number, RecordFile>();

  for (const { v, index } of mine) {
    if (v.primary === me.name) {
      await forgetPromotion(dataDir, v.name);
      const saved = (await states.load(`replication-${v.name}`)) as PrimaryState | undefined;
      const crashed = saved !== undefined && !saved.clean;
      const fresh = saved !== undefined && (crashed || resync);
      const generation = saved === undefined ? 0 : fresh ? saved.generation + 1 : saved.generation;
      const sequence = saved === undefined || fresh ? 0 : saved.sequence;
      if (crashed) log.warn({ volume: v.name, generation }, 'the last run did not stop cleanly: a new replication generation starts (the secondary drops what it holds of the old one beyond its prefix)');
      else if (fresh) log.warn({ volume: v.name, generation }, 'resync asked: a new replication generation starts, and the whole volume is copied to the secondary');
      await states.save(`replication-${v.name}`, { generation, sequence, clean: false } satisfies PrimaryState);
      const node = (n: string) => ({ name: n, unitId: unitIdOf(t, n) });
      const m = new Mirroring({
        clock: systemClock, logger: log, unitId, volume: index, volumeName: v.name, blockSize: v.blockSize,
        ackMode: v.ackMode, selection: v.relaySelection,
        relays: v.relays.map(node), secondary: v.secondary === undefined ? undefined : node(v.secondary),
        generation, sequence, random: Math.random,
      });
      mirrorings.set(v.name, { m, index, copy: fresh && v.secondary !== undefined ? { state: 'needed', doneBlocks: 0, totalBlocks: v.size / v.blockSize } : undefined });
      for (const r of v.relays) links.dial(r, (l) => m.setLink(r, l));
      if (v.secondary !== undefined) links.dial(v.secondary, (l) => m.setLink(v.secondary!, l));
    } else {
      // The applied watermark: a record file (one O_DSYNC write per group commit); a data directory
      // from before it has a JSON document instead, read once, superseded by the first save.
      const record = await RecordFile.open(appliedRecordPath(dataDir, v.name));
      watermarks.set(index, record);
      const state = (record.load() ?? (await states.load(`applied-${v.name}`))) as AppliedState | undefined;
      secondaries.push({ name: v.name, index, state });
      if (state?.promoted === true) {
        log.warn({ volume: v.name }, 'this copy was promoted before (kura promote): it stays writable and takes no replicated writes; to replicate again, make this node the primary in the topology file');
      }
    }
  }

  const config = nodeConfigSchema.parse({
    node: { name: me.name, dataDir },
    portals: me.role === 'controller' && me.iscsi !== undefined ? [{ host: me.iscsi.host, port: me.iscsi.port }] : [{ host: '127.0.0.1', port: 0 }],
    volumes: mine.map(({ v }) => ({ name: v.name, size: v.size, blockSize: v.blockSize, backing: { type: 'file', path: join(dataDir, `${v.name}.img`) } })),
    targets: mine.map(({ v }) => ({ name: targetNameOf(v.name), luns: [{ lun: 0, volume: v.name }] })),
  });
  config.node.dataDir = dataDir;
  const inners = new Map<string, ControllerVolume>();
  // Made once the volumes exist; the hosts' read-only faces ask it from the start (so declared here).
  let secondary: SecondaryUnit | undefined;
  const node: RunningNode = await startControllerNode(config, log, {
    unitId,
    copyDestinations: [...mirrorings].flatMap(([name, { m }]) => {
      const v = t.volumes.find((x) => x.name === name)!;
      return v.secondary === undefined ? [] : [{ volume: remoteCopyVolume({ name, blockSize: v.blockSize, blockCount: v.size / v.blockSize, maxTransferBlocks: Math.max(1, 2 ** 20 / v.blockSize) }, m), nodeName: v.secondary, volumeName: name }];
    }),
    wrapVolume: (name, inner) => {
      inners.set(name, inner);
      const m = mirrorings.get(name);
      if (m !== undefined) return mirroredVolume(inner, m.m);
      // Writable once promoted: the secondary unit holds that (persisted with its watermark).
      const index = secondaries.find((s) => s.name === name)!.index;
      return guardedVolume(inner, () => secondary?.isPromoted(index) === true);
    },
  });

  if (secondaries.length > 0) {
    secondary = new SecondaryUnit({
      logger: log,
      clock: systemClock,
      volumes: secondaries.map((s) => ({ index: s.index, volume: inners.get(s.name)!, state: s.state })),
      persist: (index, state) => watermarks.get(index)!.save(state),
    });
  }
  const listener = await links.listen(secondary?.handler ?? refuseWrites(me.name)).catch(async (err: unknown) => {
    await node.stop();
    throw err;
  });

  const names = new Map(t.volumes.map((v, i) => [v.name, i]));
  const copy = async (volume: string, lba = 0, blocks?: number): Promise<{ blocks: number; ms: number }> => {
    const entry = mirrorings.get(volume);
    const inner = inners.get(volume);
    if (entry === undefined || inner === undefined) throw new Error(`node "${me.name}" is not the primary of a volume "${volume}"`);
    if (!entry.m.replicating) throw new Error(`volume "${volume}" has no secondary to copy to`);
    if (entry.copy?.state === 'running') throw new Error(`a copy of volume "${volume}" is already running`);
    const n = blocks ?? inner.blockCount - lba;
    const progress = { state: 'running' as const, doneBlocks: 0, totalBlocks: n };
    entry.copy = progress;
    const t0 = systemClock.now();
    log.info({ volume, lba, blocks: n }, 'copy to the secondary started');
    try {
      await backupRange({ volume: inner, mirroring: entry.m, lba, blocks: n, onProgress: (d) => { progress.doneBlocks = d; } });
    } catch (err) {
      entry.copy = { ...progress, state: 'needed' };
      throw err;
    }
    entry.copy = { ...progress, state: 'done' };
    const ms = systemClock.now() - t0;
    log.info({ volume, blocks: n, ms }, 'copy to the secondary complete');
    return { blocks: n, ms };
  };
  // After a crash the secondary cannot know which of the old generation's writes it lacks: copy all.
  for (const [name, e] of mirrorings) {
    if (e.copy?.state === 'needed') copy(name).catch((err: Error) => log.error({ err: err.message, volume: name }, 'resynchronisation failed; run `kura copy` to retry'));
  }
  return {
    name: base.name,
    role: 'controller',
    status: () => ({
      ...base.common(),
      iscsi: node.urls,
      volumes: [
        ...[...mirrorings.values()].map(({ m, copy: c }) => ({ ...m.status(), ...(c === undefined ? {} : { resync: { ...c } }) })),
        ...secondaries.map((s) => ({ ...secondary!.status(s.index), ackMode: t.volumes[s.index]!.ackMode })),
      ],
      links: base.links(),
    }),
    async promote(volume) {
      const s = secondaries.find((x) => x.name === volume);
      if (s === undefined) throw new Error(`node "${me.name}" is not the secondary of a volume "${volume}" (it holds: ${mine.map(({ v }) => v.name).join(', ') || 'none'})`);
      if (secondary!.isPromoted(s.index)) return;
      await secondary!.promote(s.index);
      log.info({ volume }, 'promoted: the volume is writable');
    },
    copy,
    pull(volume, limits) {
      const s = secondaries.find((x) => x.name === volume);
      if (s === undefined) throw new Error(`node "${me.name}" is not the secondary of a volume "${volume}"`);
      const relays = t.volumes[s.index]!.relays;
      if (relays.length === 0) throw new Error(`volume "${volume}" has no relays: nothing holds its writes for a pull`);
      const asked: string[] = [];
      for (const r of relays) {
        const link = links.inboundFrom(unitIdOf(t, r));
        if (link === undefined) continue;
        link.pull({ maxCommands: limits.maxWrites, maxBytes: limits.maxBytes, volume: s.index });
        asked.push(r);
      }
      if (asked.length === 0) throw new Error(`no relay of volume "${volume}" (${relays.join(', ')}) is connected to "${me.name}" now: see kura status`);
      log.info({ volume, relays: asked, ...limits }, 'pulled: asked the relays to forward');
      return asked;
    },
    digest: (volume, lba, blocks, chunkBlocks) => {
      const v = node.volumes.get(volume);
      if (v === undefined || !names.has(volume)) throw new Error(`node "${me.name}" holds no volume "${volume}"`);
      return digestRange(v, lba, blocks, chunkBlocks);
    },
    async stop() {
      await listener.close().catch(() => {});
      await node.iscsi.shutdown();
      // Clean only when every write reached its ack point: otherwise the next start resynchronises.
      for (const [name, { m }] of mirrorings) {
        const st = m.status();
        const settled = await Promise.race([m.flush().then(() => true, () => false), delay(5000).then(() => false)]);
        m.close();
        await states.save(`replication-${name}`, { generation: st.generation, sequence: m.lastSequence, clean: settled } satisfies PrimaryState);
      }
      await links.close();
      await secondary?.close().catch((err: unknown) => log.error({ err }, 'secondary: its last checkpoint failed; a restart is sent again what it lacks'));
      await node.stop();
      for (const w of watermarks.values()) await w.close().catch(() => {});
    },
  };
}

async function startRelay(t: Topology, me: TopologyNode & { role: 'relay' }, dataDir: string, log: Logger, links: PeerLinks, base: Base): Promise<RunningTopologyNode> {
  const nvram = me.storage === 'battery-backed-memory';
  let device: BlockDevice;
  let fresh: boolean;
  if (nvram) {
    // No flush at all (hal/battery-backed-device.ts): the same journal format, in RAM that outlives
    // the process, saved to the data directory at a clean shutdown.
    const memory = await openBatteryBackedMemory({ dataDir, size: me.journalSize, logger: log });
    device = memory.device;
    fresh = memory.origin === 'new' || memory.origin === 'lost';
    if (memory.origin === 'lost') {
      log.error({ memory: memory.path }, 'battery-backed memory lost: the machine went down while the relay held it (no memory, and no save from a clean shutdown); the records it had acknowledged and not forwarded are gone; starting empty');
    } else {
      log.info({ memory: memory.path, origin: memory.origin }, 'battery-backed memory');
      if (memory.note !== undefined) log.warn({ memory: memory.path }, `battery-backed memory ${memory.note}`);
    }
  } else {
    // The group commit's fdatasync is on every relay-durable write's path: inline while fast when
    // a 'durable' answer waits for it (FlushOptions.urgent), and over written blocks (a sparse
    // file's first lap round the ring would change its metadata at every record, and every flush
    // would wait for a file system journal commit).
    const path = join(dataDir, 'journal.img');
    fresh = !existsSync(path);
    if (fresh) {
      await createZeroedFile(path, me.journalSize).catch((err: Error) => {
        throw new Error(`relay "${me.name}": cannot create its journal: ${err.message}: free space there, or give the node a smaller journalSize (at least 9MiB)`, { cause: err });
      });
    }
    device = await openFileDevice(path, { size: me.journalSize, create: true, logger: log, inlineSync: true });
  }
  if (fresh) await DeviceJournal.format(device, { journalId: unitIdOf(t, me.name) });
  const opened = await DeviceJournal.open({ device, clock: systemClock, logger: log, kind: nvram ? 'battery-backed-memory' : 'device' });
  log.info({ recovery: opened.recovery, storage: me.storage }, 'relay journal opened');
  const journal: RelayJournal = opened.journal;
  // Destinations: the secondaries of the volumes that list this relay.
  const volumes = t.volumes.filter((v) => v.relays.includes(me.name) && v.secondary !== undefined);
  const destinations = [...new Set(volumes.map((v) => v.secondary!))];
  const first = volumes[0];
  const down = new Map<number, PeerLink>();
  const relay = new RelayUnit({
    clock: systemClock, logger: log, unitId: unitIdOf(t, me.name), journal,
    policy: forwardingPolicy(first?.forwarding ?? { policy: 'immediate' }),
    mode: first?.relayMode ?? 'store-and-forward',
    defaultDestination: destinations[0] === undefined ? 0 : unitIdOf(t, destinations[0]),
    downstream: (unit) => down.get(unit),
    // As many as the link's window takes: a record in flight waits a relay-secondary round trip
    // plus the secondary's group commit (its flush of a thin volume took 10-50 ms under load), so
    // 64 at once drained a backlog at ~3000 writes/s on the regional bench's 6 ms link (256: ~4500),
    // less than a primary's asynchronous (local) mode puts in at QD16.
    maxInFlight: LINK_WINDOWS.receiveWindow.commands,
  });
  for (const d of destinations) {
    const unit = unitIdOf(t, d);
    links.dial(d, (l) => {
      if (l === undefined) down.delete(unit);
      else down.set(unit, l);
      relay.poke();
    }, relay.handler);
  }
  const listener = await links.listen(relay.handler);
  return {
    name: base.name,
    role: 'relay',
    status: () => {
      const s = relay.stats();
      const byVolume: Record<string, { records: number; bytes: number }> = {};
      for (const [index, b] of relay.backlogByVolume()) byVolume[t.volumes[index]?.name ?? `#${index}`] = b;
      return {
        ...base.common(), volumes: [],
        relay: { backlogRecords: s.backlogRecords, backlogBytes: s.backlogBytes, backlogByVolume: byVolume, journal: s.journal, forwarded: s.forwarded, givenUp: s.givenUp, givenUpBytes: s.givenUpBytes },
        links: base.links(),
      };
    },
    promote: () => Promise.reject(new Error(`"${me.name}" is a relay: promote the volume's secondary`)),
    pull: () => {
      throw new Error(`"${me.name}" is a relay: the volume's secondary pulls`);
    },
    copy: () => Promise.reject(new Error(`"${me.name}" is a relay: copy from the volume's primary`)),
    digest: () => Promise.reject(new Error(`"${me.name}" is a relay: it holds no volume`)),
    async stop() {
      await listener.close().catch(() => {});
      await links.close();
      await relay.close();
      await journal.close();
      await device.close();
    },
  };
}

function refuseWrites(node: string): PeerHandler {
  return {
    onWrite: () => {
      throw new Error(`node "${node}" is the secondary of no volume: it takes no replicated writes`);
    },
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => systemClock.setTimer(ms, resolve));
}

async function digestRange(v: ControllerVolume, lba: number, blocks: number, chunkBlocks: number): Promise<{ blockSize: number; blockCount: number; digests: string[] }> {
  const { createHash } = await import('node:crypto');
  if (!Number.isSafeInteger(lba) || !Number.isSafeInteger(blocks) || !Number.isSafeInteger(chunkBlocks) || lba < 0 || blocks < 0 || chunkBlocks < 1 || lba + blocks > v.blockCount) {
    throw new RangeError(`digest: ${blocks} blocks at LBA ${lba} in chunks of ${chunkBlocks} is outside volume ${v.name} (0..${v.blockCount})`);
  }
  const digests: string[] = [];
  const step = Math.max(1, Math.min(chunkBlocks, v.maxTransferBlocks));
  for (let at = lba; at < lba + blocks; at += chunkBlocks) {
    const end = Math.min(lba + blocks, at + chunkBlocks);
    const h = createHash('sha256');
    for (let b = at; b < end; b += step) {
      const r = await v.read(b, Math.min(step, end - b));
      try {
        h.update(r.data);
      } finally {
        r.release();
      }
    }
    digests.push(h.digest('hex'));
  }
  return { blockSize: v.blockSize, blockCount: v.blockCount, digests };
}

/**
 * The node's PeerLinks: dials the nodes it sends to (re-dialling with backoff while down) and
 * accepts the nodes that send to it. One link per peer node, shared by every volume.
 */
class PeerLinks {
  private readonly key: Buffer;
  private readonly unitId: number;
  private readonly dialled = new Map<string, { link: PeerLink | undefined; state: LinkStatus['state']; users: Array<(l: PeerLink | undefined) => void>; handler: PeerHandler | undefined }>();
  private readonly accepted = new Set<PeerLink>();
  private listener: StreamListener | undefined;
  private closed = false;

  constructor(private readonly t: Topology, private readonly me: TopologyNode, private readonly network: Network, private readonly log: Logger) {
    this.key = Buffer.from(t.psk);
    this.unitId = unitIdOf(t, me.name);
  }

  /** Keep a link to `peer` up; `use` hears every change (a link, or undefined while down). */
  dial(peer: string, use: (l: PeerLink | undefined) => void, handler?: PeerHandler): void {
    let d = this.dialled.get(peer);
    if (d === undefined) {
      d = { link: undefined, state: 'connecting', users: [], handler };
      this.dialled.set(peer, d);
      d.users.push(use);
      void this.connectLoop(peer);
    } else {
      d.users.push(use);
      if (d.link !== undefined) use(d.link);
    }
  }

  async listen(handler: PeerHandler): Promise<StreamListener> {
    const ep = this.me.peer;
    this.listener = await this.network.listen(ep.host, ep.port, (transport) => {
      const link = new PeerLink({
        clock: systemClock, logger: this.log.child({ link: 'inbound' }), role: 'acceptor', unitId: this.unitId, key: this.key,
        ...LINK_WINDOWS, random: randomBytes, handler, onClose: (err) => {
          this.accepted.delete(link);
          this.log.info({ peer: link.peerInfo?.unitId, reason: err.message }, 'inbound peer link closed');
        },
      });
      this.accepted.add(link);
      link.ready.then((p) => this.log.info({ peer: p.unitId }, 'inbound peer link up'), (err: Error) => this.log.warn({ err: err.message, from: `${transport.remoteAddress}:${transport.remotePort}` }, 'peer refused (handshake failed)'));
      return link.attach(transport);
    });
    return this.listener;
  }

  /** The open link a peer unit dialled to this node, if any. */
  inboundFrom(unitId: number): PeerLink | undefined {
    for (const l of this.accepted) if (l.isOpen && l.peerInfo?.unitId === unitId) return l;
    return undefined;
  }

  status(): LinkStatus[] {
    return [...this.dialled].map(([peer, d]) => ({ peer, state: d.state, rttMs: d.link?.stats().rtt, partitioned: false }));
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...[...this.dialled.values()].map((d) => d.link), ...this.accepted].filter((l): l is PeerLink => l !== undefined);
    await Promise.all(all.map((l) => l.close('node stopping')));
  }

  private async connectLoop(peer: string): Promise<void> {
    const d = this.dialled.get(peer)!;
    const target = this.t.nodes.find((n) => n.name === peer)!;
    let backoff = 50;
    while (!this.closed) {
      const link = new PeerLink({
        clock: systemClock, logger: this.log.child({ link: peer }), role: 'initiator', unitId: this.unitId, key: this.key,
        ...LINK_WINDOWS, expectedPeer: unitIdOf(this.t, peer), random: randomBytes, handler: d.handler ?? refuseWrites(this.me.name),
        mode: transferBetween(this.t, this.me.name, peer),
      });
      try {
        await this.network.connect(target.peer.host, target.peer.port, (transport) => link.attach(transport));
        await link.ready;
      } catch (err) {
        void link.close('connect failed');
        if (d.state !== 'down') this.log.warn({ peer, err: (err as Error).message }, 'peer link down; retrying');
        d.state = 'down';
        await delay(backoff);
        backoff = Math.min(2000, backoff * 2);
        continue;
      }
      if (this.closed) {
        await link.close('node stopping');
        return;
      }
      backoff = 50;
      d.link = link;
      d.state = 'up';
      this.log.info({ peer }, 'peer link up');
      for (const u of d.users) u(link);
      const why = await link.closed;
      d.link = undefined;
      d.state = 'down';
      for (const u of d.users) u(undefined);
      if (!this.closed) this.log.warn({ peer, reason: why.message }, 'peer link lost; re-dialling');
    }
  }
}
