/**
 * The Network one node of a topology makes its peer connections with: real TCP on loopback, with
 * the topology's WAN links emulated (hal/wan) on what this node sends.
 *
 * Telling peers apart on one machine: every node connects out from its own loopback address
 * (127.0.1.1 for nodes[0], 127.0.1.2 for nodes[1], ...; on Linux all of 127.0.0.0/8 is loopback)
 * while its listeners keep their configured host. So an accepting node knows the peer by the remote
 * address, and a connecting node by the endpoint it dials (the peer's `peer` host:port).
 *
 * Each link of the file is shaped on both sides, each side for what it sends (link `me->peer`), and
 * with arrival stamps (the default, hal/wan/arrival-stamps.ts) each side times what it receives:
 * bytes cross loopback up to DEFAULT_HORIZON_MS (arrival-stamps.ts) ahead of their arrival time and wait for it
 * at the receiver, on the clock every process of the machine shares.
 * Its one-way delay: the profile's `delayMs`, else its `distanceKm`, else a preset's fixed delay
 * (`lan`), else the great-circle distance of the two sites; distances cost 5 µs/km times
 * `routeFactor`. A preset's nominal distance (metro 100 km...) never replaces the sites' real one.
 * Pairs with no link in the file are not shaped. Outage times count from the topology-wide epoch
 * (`epochWallMs`, the same wall-clock instant in every process of a `kura up`). Seeded per link by
 * its name, so every run of a topology draws the same jitter and losses.
 */
import { isIP } from 'node:net';
import type { Clock } from '../hal/clock.js';
import { machineStampOptions } from '../hal/machine-clock.js';
import { createTcpNetwork } from '../hal/tcp.js';
import type { Network } from '../hal/transport.js';
import { WanLinks, type ConnInfo, type LinkChoice } from '../hal/wan/links.js';
import type { LinkStats } from '../hal/wan/link-model.js';
import { PRESETS, type WanProfile } from '../hal/wan/profiles.js';
import { calibrateTransportLatency, startEchoThread } from '../hal/wan/wan-accuracy.js';
import { WanNetwork } from '../hal/wan/wan-network.js';
import type { WanStreamOptions } from '../hal/wan/wan-stream.js';
import { distanceKm, type Topology, type WanProfileConfig } from './topology.js';

export interface TopologyNetworkOptions {
  /** preciseClock on the real HAL (sub-millisecond delivery timers). */
  clock: Clock;
  /** Wall-clock ms (Date.now()) that outage times count from, shared by every node of the topology. */
  epochWallMs: number;
  /** Seed of every link without its own `seed`. Default 1. */
  seed?: number;
  /** The real transport's one-way latency to compensate (see calibrate()), without stamps. Default 0. */
  transportLatencyMs?: number;
  /**
   * Arrival stamps (hal/wan/arrival-stamps.ts): every node of the topology must use the same
   * setting. Default on, with bytes handed to TCP up to DEFAULT_HORIZON_MS before their
   * arrival; `false` shapes on the sending side alone (then calibrate()). Needs a clock that reads
   * performance.now() (preciseClock, systemClock): the stamps are on the machine's shared clock.
   */
  stamps?: false | { horizonMs?: number };
}

/** One link leaving this node, as configured. */
export interface TopologyLink {
  peer: string;
  /** `me->peer`: the direction this node shapes. */
  name: string;
  /** Index in the topology's `links`. */
  index: number;
  profile: WanProfile;
  seed?: number;
  /** Great-circle distance between the two sites. */
  sitesKm: number;
}

/** A link's state as `kura status` shows it (JSON-serialisable). */
export interface WanLinkState {
  peer: string;
  link: string;
  partitioned: boolean;
  oneWayDelayMs: number;
  /** null: unlimited. */
  bandwidthBps: number | null;
  /** A scheduled outage in force now. */
  outage?: { mode: 'hold' | 'reset'; remainingMs: number };
  queuedBytes: number;
  stats: LinkStats;
}

export interface TopologyNetwork {
  network: Network;
  /** Source address of this node's outbound connections. */
  sourceAddress: string;
  /** The links leaving this node, by peer name. */
  links: ReadonlyMap<string, TopologyLink>;
  wan: WanLinks;
  /** Cut (true) or heal (false) this node's direction of the link to `peer` (the peer's side is its own). */
  setPartitioned(peer: string, on: boolean): void;
  linkStates(): WanLinkState[];
  /**
   * Measures loopback TCP's own one-way latency on this machine and compensates it from then on
   * (connections made afterwards); returns it, ms.
   */
  calibrate(): Promise<number>;
  /** The arrival stamps' horizon, ms (undefined: no stamps). */
  stampHorizonMs: number | undefined;
}

/** Beyond this a calibration measured a busy machine, not loopback: compensating it would skew short links. */
const MAX_TRANSPORT_LATENCY_MS = 0.3;

/** 127.0.1.1 for index 0, counting up through 127.x.y.z. */
export function sourceAddressOf(index: number): string {
  const n = 256 + index + 1;
  if (!Number.isInteger(index) || index < 0 || n > 0xffffff) throw new RangeError(`node index ${index} has no loopback address`);
  return `127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

export function nodeSourceAddress(t: Topology, node: string): string {
  return sourceAddressOf(nodeIndex(t, node));
}

function nodeIndex(t: Topology, node: string): number {
  const i = t.nodes.findIndex((n) => n.name === node);
  if (i < 0) throw new Error(`no node named "${node}" in topology "${t.name}" (nodes: ${t.nodes.map((n) => n.name).join(', ')})`);
  return i;
}

/** The WAN profile of a link between sites `sitesKm` apart (see the header for the delay rule). */
export function wanProfileOf(cfg: WanProfileConfig, sitesKm: number, name: string): { profile: WanProfile; seed?: number } {
  const o = typeof cfg === 'string' ? { preset: cfg, routeFactor: undefined } : cfg;
  const base: WanProfile = o.preset === undefined ? {} : { ...PRESETS[o.preset] };
  delete base.distanceKm;
  const p: WanProfile = { ...base, name };
  if (typeof cfg !== 'string' && cfg.delayMs !== undefined) p.delayMs = cfg.delayMs;
  else if (typeof cfg !== 'string' && cfg.distanceKm !== undefined) p.distanceKm = cfg.distanceKm;
  else if (base.delayMs === undefined) p.distanceKm = sitesKm;
  if (p.delayMs === undefined && o.routeFactor !== undefined) p.routeFactor = o.routeFactor;
  if (typeof cfg === 'string') return { profile: p };
  if (cfg.jitter) p.jitter = { ...cfg.jitter };
  if (cfg.bandwidthBps !== undefined) p.bandwidthBps = cfg.bandwidthBps;
  if (cfg.queueBytes !== undefined) p.queueBytes = cfg.queueBytes;
  if (cfg.loss) p.loss = { ...cfg.loss };
  if (cfg.outages) p.outages = cfg.outages.map((x) => ({ ...x }));
  return cfg.seed === undefined ? { profile: p } : { profile: p, seed: cfg.seed };
}

/** The links leaving `node`, by peer. Throws on a second link between the same pair. */
export function topologyLinks(t: Topology, node: string): Map<string, TopologyLink> {
  nodeIndex(t, node);
  const site = new Map(t.sites.map((s) => [s.name, s]));
  const siteOf = (n: string) => site.get(t.nodes.find((x) => x.name === n)!.site)!;
  const out = new Map<string, TopologyLink>();
  t.links.forEach((l, index) => {
    const [x, y] = l.between;
    if (x !== node && y !== node) return;
    const peer = x === node ? y : x;
    const first = out.get(peer);
    if (first) throw new Error(`links[${index}]: a second link between "${node}" and "${peer}" (links[${first.index}] is the first): give each pair one link`);
    const sitesKm = distanceKm(siteOf(node), siteOf(peer));
    const name = `${node}->${peer}`;
    out.set(peer, { peer, name, index, sitesKm, ...wanProfileOf(l.profile, sitesKm, name) });
  });
  return out;
}

/** Addresses that mean this machine's IPv4 loopback when dialled. */
function loopbackV4(host: string): boolean {
  return host === 'localhost' || host === '0.0.0.0' || (isIP(host) === 4 && host.startsWith('127.'));
}

/** How a dialled or accepted address is written in the endpoint table. */
function canonical(host: string): string {
  const h = host.startsWith('::ffff:') ? host.slice(7) : host;
  return h === 'localhost' || h === '0.0.0.0' || h === '' ? '127.0.0.1' : h === '::' ? '::1' : h;
}

export function topologyNetwork(t: Topology, node: string, o: TopologyNetworkOptions): TopologyNetwork {
  const sourceAddress = nodeSourceAddress(t, node);
  const links = topologyLinks(t, node);
  const bySource = new Map<string, string>();
  const byEndpoint = new Map<string, string>();
  t.nodes.forEach((n, i) => {
    if (n.name === node) return;
    bySource.set(sourceAddressOf(i), n.name);
    // A host name other than localhost cannot be compared with addresses: match its port alone.
    const host = isIP(n.peer.host) || loopbackV4(n.peer.host) || n.peer.host === '' ? canonical(n.peer.host) : '*';
    byEndpoint.set(`${host}:${n.peer.port}`, n.name);
  });
  const choiceOf = (peer: string): LinkChoice | undefined => {
    const l = links.get(peer);
    return l && (l.seed === undefined ? { name: l.name, profile: l.profile } : { name: l.name, profile: l.profile, seed: l.seed });
  };
  const select = (c: ConnInfo): LinkChoice | undefined => {
    const peer = c.direction === 'inbound'
      ? bySource.get(c.remoteAddress)
      : byEndpoint.get(`${canonical(c.remoteAddress)}:${c.remotePort}`) ?? byEndpoint.get(`*:${c.remotePort}`);
    return peer === undefined ? undefined : choiceOf(peer);
  };
  const epochMs = o.clock.now() - (o.clock.wallTime() - o.epochWallMs);
  const wan = new WanLinks({ clock: o.clock, select, seed: o.seed ?? 1, epochMs });
  // Every link's model exists from the start, so that a partition or status needs no traffic first.
  for (const peer of links.keys()) wan.modelFor(choiceOf(peer)!);

  const tcp = createTcpNetwork({ localAddress: (host) => (loopbackV4(host) ? sourceAddress : undefined) });
  const bound: Network = {
    listen: (host, port, accept) => tcp.listen(host, port, accept),
    connect: (host, port, handler) => tcp.connect(host, port, handler).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EADDRNOTAVAIL') throw err;
      throw new Error(`node "${node}" cannot connect from its loopback address ${sourceAddress} to ${host}:${port} (${err.message}): `
        + `on Linux all of 127.0.0.0/8 is loopback; elsewhere add the address as an alias (macOS: sudo ifconfig lo0 alias ${sourceAddress})`);
    }),
  };
  // Read by WanNetwork for each new stream: calibrate() changes it for the connections after it.
  const streamOpts: WanStreamOptions = { transportLatencyMs: o.transportLatencyMs ?? 0 };
  if (o.stamps !== false) streamOpts.stamps = machineStampOptions(o.stamps?.horizonMs);
  const network = new WanNetwork(bound, wan, streamOpts);

  const modelOf = (peer: string) => {
    const l = links.get(peer);
    if (l) return wan.model(l.name)!;
    nodeIndex(t, peer);
    throw new Error(`no link between "${node}" and "${peer}" in topology "${t.name}": their traffic is not emulated, so it cannot be partitioned (add a links entry)`);
  };

  return {
    network,
    sourceAddress,
    links,
    wan,
    setPartitioned: (peer, on) => modelOf(peer).setPartitioned(on),
    linkStates: () => [...links.values()].map((l) => {
      const m = wan.model(l.name)!;
      const outage = m.outageAt();
      const bw = m.profile.bandwidthBps;
      return {
        peer: l.peer,
        link: l.name,
        partitioned: m.partitioned,
        oneWayDelayMs: m.profile.delayMs,
        bandwidthBps: bw === Infinity ? null : bw,
        ...(outage ? { outage: { mode: outage.mode, remainingMs: outage.end - o.clock.now() } } : {}),
        queuedBytes: m.queuedBytes(),
        stats: { ...m.stats },
      };
    }),
    stampHorizonMs: streamOpts.stamps?.horizonMs,
    calibrate: async () => {
      if (streamOpts.stamps) return 0; // the receiver times deliveries: nothing to compensate
      // The echo on a thread of its own: a peer's wake-up and read are part of what is compensated.
      const echo = await startEchoThread('127.0.0.1');
      try {
        const ms = await calibrateTransportLatency(tcp, echo.port, { host: '127.0.0.1', count: 100, gapMs: 1 });
        streamOpts.transportLatencyMs = Math.min(ms, MAX_TRANSPORT_LATENCY_MS);
        return streamOpts.transportLatencyMs;
      } finally {
        await echo.close();
      }
    },
  };
}
