/**
 * A kura topology as the replication benches run it: the YAML written into a temporary directory
 * (its dataDir inside it, fresh loopback ports), `kura up FILE --detach`, `kura status FILE --json`,
 * `kura down FILE` through the compiled CLI, and the nodes' admin sockets read directly where a
 * bench samples status while it measures (a `kura status` process per sample would take CPU from
 * the nodes being measured).
 *
 * The CLI is dist/cli/kura.js (the npm scripts build first), not bin/kura.mjs: that one rebuilds
 * when any source is newer than the build, which in a shared working tree can happen mid-run.
 */
import type { NodeStatus } from '../../cli/admin.js';
import type { TopologyNode } from '../../cli/topology.js';
import type { ReplicationStatus } from '../../firmware/replication/types.js';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { stringify } from 'yaml';
import { run } from '../processes.js';
import { freePorts } from './ports.js';

const EARTH_RADIUS_KM = 6371.0088;

/** Latitude (degrees) of a point `km` north of the equator on a meridian (haversine-exact). */
export function latitudeForKm(km: number): number {
  return (km / EARTH_RADIUS_KM) * (180 / Math.PI);
}

// ---- what `kura status FILE --json` answers (cli/status.ts StatusReport) ----

/** A node's status as its admin socket answers it (`kura status --json` per node). */
export type NodeState = NodeStatus;
export type VolumeState = ReplicationStatus;

export interface StatusReport {
  topology: string;
  nodes: { node: string; role: string; up: boolean; error?: string; status?: NodeState }[];
}

export interface NodeSpec {
  name: string;
  role: 'controller' | 'relay';
  /** km north of the primary, on its meridian. */
  km: number;
  /** A relay's non-volatile storage (000-NV; the topology's default, the disk journal, if unset). */
  storage?: RelayStorage;
  /** A relay's journal size (the topology's journalSize), default the topology's. */
  journalSize?: string;
}

export type RelayStorage = (TopologyNode & { role: 'relay' })['storage'];

export interface LinkSpec {
  between: [string, string];
  /** Exactly one of distanceKm or delayMs. */
  distanceKm?: number;
  delayMs?: number;
  bandwidthBps: number;
}

export interface VolumeSpec {
  name: string;
  size: string;
  primary: string;
  secondary?: string;
  relays?: string[];
  ackMode: string;
  /** The relays' forwarding policy (topology `forwarding`); default immediate. */
  forwarding?: { policy: string; [k: string]: unknown };
  /** Topology `transfer`: 'fidelity' for the seed's per-write handshake (default pipelined). */
  transfer?: string;
}

export interface TopologySpec {
  name: string;
  nodes: NodeSpec[];
  links: LinkSpec[];
  volumes: VolumeSpec[];
  /** Disaster radius of every site (smaller than the nearest relay's distance). */
  disasterRadiusKm: number;
}

/**
 * The ack-latency deployment: primary, relay and secondary north of each other on one meridian
 * (disaster radius half the relay's distance, at most 50 km, so the 000-E1 placement holds), every
 * link with its distance given explicitly (one-way delay exactly km x 5 us x 1.5), and one volume
 * per ack mode named after it, all replicating through the relay to the secondary.
 */
export function relayTopology(
  p: { name: string; relayKm: number; secondaryKm: number }, modes: readonly string[], o: { bandwidthBps: number; volumeSize: string; relayStorage?: RelayStorage },
): TopologySpec {
  return {
    name: `bench-${p.name}`,
    disasterRadiusKm: Math.min(p.relayKm / 2, 50),
    nodes: [
      { name: 'primary', role: 'controller', km: 0 },
      { name: 'relay', role: 'relay', km: p.relayKm, ...(o.relayStorage ? { storage: o.relayStorage } : {}) },
      { name: 'secondary', role: 'controller', km: p.secondaryKm },
    ],
    links: [
      { between: ['primary', 'relay'], distanceKm: p.relayKm, bandwidthBps: o.bandwidthBps },
      { between: ['relay', 'secondary'], distanceKm: p.secondaryKm - p.relayKm, bandwidthBps: o.bandwidthBps },
      { between: ['primary', 'secondary'], distanceKm: p.secondaryKm, bandwidthBps: o.bandwidthBps },
    ],
    volumes: modes.map((m) => ({ name: m, size: o.volumeSize, primary: 'primary', secondary: 'secondary', relays: ['relay'], ackMode: m })),
  };
}

export interface RunningTopology {
  /** What runs: its nodes (the relays among them) and volumes. */
  readonly spec: TopologySpec;
  readonly dir: string;
  readonly file: string;
  readonly dataDir: string;
  /** host:port of each controller's iSCSI portal. */
  readonly iscsi: Map<string, { host: string; port: number }>;
  status(timeoutMs?: number): Promise<StatusReport>;
  /** One node's status straight from its admin socket (no CLI process). */
  nodeStatus(node: string, timeoutMs?: number): Promise<NodeState>;
  down(): Promise<string>;
  /** The last lines of every node's log, for error reports. */
  logTails(lines?: number): string;
}

export interface KuraCli {
  root: string;
  /** Default: <root>/dist/cli/kura.js. */
  entry?: string;
}

/** Run `kura ARGS` and return how it ended, whatever its exit code (`kura verify` answers with it). */
export function kuraRun(cli: KuraCli, args: string[], timeoutMs = 120_000): ReturnType<typeof run> {
  return run(process.execPath, [cli.entry ?? path.join(cli.root, 'dist/cli/kura.js'), ...args], { timeoutMs });
}

/** Run `kura ARGS`; its stdout, or an error with its output when it fails. */
export async function kura(cli: KuraCli, args: string[], timeoutMs = 120_000): Promise<string> {
  const r = await kuraRun(cli, args, timeoutMs);
  if (r.code !== 0) {
    throw new Error(`kura ${args.join(' ')} failed (${r.signal ?? `exit ${r.code}`}):\n${(r.stderr + r.stdout).trim().slice(-3000)}`);
  }
  return r.stdout;
}

/** The topology file's content for `spec` with fresh ports; returns it with the chosen ports. */
export async function topologyYaml(spec: TopologySpec, dataDir: string): Promise<{ yaml: string; iscsi: Map<string, { host: string; port: number }> }> {
  const controllers = spec.nodes.filter((n) => n.role === 'controller').length;
  const ports = await freePorts(spec.nodes.length + controllers);
  const iscsi = new Map<string, { host: string; port: number }>();
  const host = '127.0.0.1';
  const doc = {
    name: spec.name,
    psk: 'kura-bench-psk-0123456789',
    dataDir,
    sites: spec.nodes.map((n) => ({ name: `site-${n.name}`, lat: Number(latitudeForKm(n.km).toFixed(9)), lon: 0, disasterRadiusKm: spec.disasterRadiusKm })),
    nodes: spec.nodes.map((n) => {
      const peer = `${host}:${ports.shift()!}`;
      if (n.role === 'relay') return { role: 'relay', name: n.name, site: `site-${n.name}`, peer, ...(n.storage ? { storage: n.storage } : {}), ...(n.journalSize ? { journalSize: n.journalSize } : {}) };
      const port = ports.shift()!;
      iscsi.set(n.name, { host, port });
      return { role: 'controller', name: n.name, site: `site-${n.name}`, iscsi: `${host}:${port}`, peer };
    }),
    links: spec.links.map((l) => ({
      between: l.between,
      profile: { ...(l.delayMs !== undefined ? { delayMs: l.delayMs } : { distanceKm: l.distanceKm }), bandwidthBps: l.bandwidthBps },
    })),
    volumes: spec.volumes.map((v) => ({
      name: v.name, size: v.size, primary: v.primary,
      ...(v.secondary ? { secondary: v.secondary } : {}),
      ...(v.relays?.length ? { relays: v.relays } : {}),
      ackMode: v.ackMode,
      ...(v.forwarding ? { forwarding: v.forwarding } : {}),
      ...(v.transfer ? { transfer: v.transfer } : {}),
    })),
  };
  return { yaml: `# written by the kura replication benches\n${stringify(doc)}`, iscsi };
}

function adminGet<T>(socketPath: string, urlPath: string, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const req = http.request({ socketPath, method: 'GET', path: urlPath }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(parts).toString('utf8');
        if ((res.statusCode ?? 500) >= 400) return reject(new Error(`admin ${urlPath}: ${res.statusCode} ${text.slice(0, 300)}`));
        try {
          resolve(JSON.parse(text) as T);
        } catch {
          reject(new Error(`admin ${urlPath}: not JSON: ${text.slice(0, 300)}`));
        }
      });
    });
    const timer = setTimeout(() => { req.destroy(); reject(new Error(`admin socket ${socketPath}: no answer to ${urlPath} within ${timeoutMs} ms`)); }, timeoutMs);
    req.on('error', (err) => { clearTimeout(timer); reject(err); });
    req.end();
  });
}

/** Write the topology into `dir` and bring it up (detached). */
export async function startTopology(cli: KuraCli, dir: string, spec: TopologySpec): Promise<RunningTopology> {
  const dataDir = path.join(dir, 'data');
  const { yaml, iscsi } = await topologyYaml(spec, dataDir);
  const file = path.join(dir, `${spec.name}.yaml`);
  fs.writeFileSync(file, yaml);
  const logTails = (lines = 15): string => spec.nodes.map((n) => {
    const log = path.join(dataDir, 'run', `${n.name}.log`);
    let text = '(no log)';
    try {
      text = fs.readFileSync(log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      // never started
    }
    return `--- ${log}\n${text}`;
  }).join('\n');
  try {
    await kura(cli, ['up', file, '--detach'], 120_000);
  } catch (err) {
    await kura(cli, ['down', file], 60_000).catch(() => '');
    throw new Error(`${(err as Error).message}\n${logTails()}`, { cause: err });
  }
  const socketOf = (node: string): string => {
    const record = path.join(dataDir, node, 'run', 'admin.path');
    try {
      const p = fs.readFileSync(record, 'utf8').trim();
      if (p) return p;
    } catch {
      // fall through to the default place
    }
    return path.join(dataDir, node, 'run', 'admin.sock');
  };
  return {
    spec, dir, file, dataDir, iscsi,
    status: async (timeoutMs = 30_000) => JSON.parse(await kura(cli, ['status', file, '--json'], timeoutMs)) as StatusReport,
    nodeStatus: (node, timeoutMs = 2000) => adminGet<NodeState>(socketOf(node), '/status', timeoutMs),
    down: () => kura(cli, ['down', file], 120_000),
    logTails,
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A node's status out of a report, or an error naming why it is missing. */
export function nodeOf(r: StatusReport, node: string): NodeState {
  const n = r.nodes.find((x) => x.node === node);
  if (!n) throw new Error(`kura status: no node "${node}" (nodes: ${r.nodes.map((x) => x.node).join(', ')})`);
  if (!n.up || !n.status) throw new Error(`kura status: node "${node}" is down${n.error ? `: ${n.error}` : ''}`);
  return n.status;
}

/** Poll `kura status --json` until every volume the primary holds has all its peers `up`. */
export async function waitPeersUp(t: RunningTopology, primary: string, volumes: string[], timeoutMs = 60_000): Promise<StatusReport> {
  const end = Date.now() + timeoutMs;
  let last: string;
  for (;;) {
    try {
      const r = await t.status();
      const p = nodeOf(r, primary);
      const pending = volumes.flatMap((v) => {
        const vs = p.volumes.find((x) => x.volume === v && x.role === 'primary');
        if (!vs) return [`${v}: not on the primary`];
        if (vs.peers.length === 0) return [`${v}: no peers listed`];
        return vs.peers.filter((x) => x.state !== 'up').map((x) => `${v} -> ${x.name}: ${x.state}`);
      });
      if (pending.length === 0) return r;
      last = pending.join('; ');
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > end) throw new Error(`links of ${primary} not up within ${timeoutMs / 1000} s: ${last}\n${t.logTails()}`);
    await sleep(250);
  }
}

/** The relays of the topology. */
export function relaysOf(t: RunningTopology): string[] {
  return t.spec.nodes.filter((n) => n.role === 'relay').map((n) => n.name);
}

/** What the relays still hold, one line per relay that holds something or does not answer; empty when none does. */
async function relayBacklogs(t: RunningTopology, relays: readonly string[]): Promise<{ pending: string[]; statuses: Record<string, unknown> }> {
  const pending: string[] = [];
  const statuses: Record<string, unknown> = {};
  for (const relay of relays) {
    const s = await t.nodeStatus(relay).catch((err: Error) => err);
    statuses[relay] = s instanceof Error ? s.message : s;
    if (s instanceof Error) pending.push(`relay ${relay}: ${s.message}`);
    else if (!s.relay) pending.push(`relay ${relay}: no relay backlog in its status`);
    else if (s.relay.backlogRecords !== 0 || s.relay.backlogBytes !== 0) pending.push(`relay ${relay} holds ${s.relay.backlogRecords} records, ${s.relay.backlogBytes} bytes`);
  }
  return { pending, statuses };
}

/**
 * Wait until every relay (default: all of the topology) holds nothing more for a secondary: each
 * forwarded everything it acknowledged. Needs no primary (a crash test waits so after killing it).
 */
export async function waitRelaysDrained(t: RunningTopology, timeoutMs = 60_000, relays: readonly string[] = relaysOf(t)): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const { pending, statuses } = await relayBacklogs(t, relays);
    if (pending.length === 0) return;
    if (Date.now() > end) throw new Error(`relays not drained within ${timeoutMs / 1000} s: ${pending.join('; ')}\n${JSON.stringify(statuses)}\n${t.logTails()}`);
    await sleep(100);
  }
}

/**
 * Wait until the replication of the primary's volume is at rest: the primary has nothing
 * unconfirmed (lag 0, nothing pending an ack), every relay of the topology has no backlog (a relay's
 * backlog is not per volume: this waits for all of it), and the volume's secondary (from the spec)
 * has applied the primary's sequence in the same generation. The primary not answering fails at
 * once; relays and the secondary are asked again until `timeoutMs`.
 */
export async function waitDrained(t: RunningTopology, primary: string, volume: string, timeoutMs = 120_000): Promise<VolumeState> {
  const secondary = t.spec.volumes.find((v) => v.name === volume && v.primary === primary)?.secondary;
  const relays = relaysOf(t);
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await t.nodeStatus(primary);
    const v = s.volumes.find((x) => x.volume === volume && x.role === 'primary');
    if (!v) throw new Error(`status of ${primary}: no primary volume "${volume}"`);
    const pending: string[] = [];
    if (v.lagWrites !== 0 || v.pendingAck !== 0) {
      pending.push(`${primary}: ${v.lagWrites} writes, ${v.lagBytes} bytes, ${v.pendingAck} pending`);
    } else {
      // The others only once the primary is at rest: fewer status requests while it drains.
      pending.push(...(await relayBacklogs(t, relays)).pending);
      if (secondary !== undefined) {
        const sv = await t.nodeStatus(secondary).then((x) => x.volumes.find((y) => y.volume === volume && y.role === 'secondary'), (err: Error) => err);
        if (sv instanceof Error) pending.push(`secondary ${secondary}: ${sv.message}`);
        else if (!sv) pending.push(`secondary ${secondary}: no secondary volume "${volume}"`);
        else if (sv.generation !== v.generation || sv.sequence < v.sequence) {
          pending.push(`secondary ${secondary}: applied ${sv.generation}:${sv.sequence}, primary at ${v.generation}:${v.sequence}`);
        }
      }
    }
    if (pending.length === 0) return v;
    if (Date.now() > end) throw new Error(`volume ${volume}: replication did not drain within ${timeoutMs / 1000} s (${pending.join('; ')})`);
    await sleep(100);
  }
}

/**
 * The RTT each link measured, per "node->peer": `kura status` shows each link's last heartbeat round
 * trip, so the nodes are polled every `intervalMs` for `durationMs` and every new value (a new
 * heartbeat) is kept; the median of those is returned with their count. Also the one-way delay each
 * node shapes on the links it sends on.
 */
export async function measuredRtts(t: RunningTopology, nodes: string[], durationMs = 4000, intervalMs = 200): Promise<{ rttMs: Record<string, number>; samples: Record<string, number>; oneWayMs: Record<string, number> }> {
  const seen = new Map<string, number[]>();
  const oneWayMs: Record<string, number> = {};
  const end = Date.now() + durationMs;
  for (let first = true; first || Date.now() < end; first = false) {
    if (!first) await sleep(intervalMs);
    for (const node of nodes) {
      const s = await t.nodeStatus(node).catch(() => undefined);
      if (!s) continue;
      for (const l of s.links ?? []) {
        if (typeof l.rttMs === 'number' && l.rttMs > 0) {
          const key = `${node}->${l.peer}`;
          const list = seen.get(key) ?? [];
          if (list[list.length - 1] !== l.rttMs) list.push(l.rttMs);
          seen.set(key, list);
        }
      }
      for (const w of s.wan ?? []) oneWayMs[`${node}->${w.peer}`] = w.oneWayDelayMs;
    }
  }
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  return {
    rttMs: Object.fromEntries([...seen].map(([k, v]) => [k, median(v)])),
    samples: Object.fromEntries([...seen].map(([k, v]) => [k, v.length])),
    oneWayMs,
  };
}

/** The measured RTT between two nodes, whichever side reported it. */
export function rttBetween(rtts: Record<string, number>, a: string, b: string): number | undefined {
  return rtts[`${a}->${b}`] ?? rtts[`${b}->${a}`];
}

