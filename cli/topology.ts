/**
 * A deployment: sites with locations and disaster radii, nodes (controllers and relays) at sites,
 * WAN links between nodes, and per volume its primary, secondary, relays and replication modes.
 * Validated with zod; every error names the field. The relay placement rule of 000-E1 (a relay must
 * be outside the primary's disaster radius and closer to the primary than the secondary is) is
 * checked separately and reported as findings, because users deliberately build bad topologies to
 * measure what they cost.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_MAX_TRANSFER_BYTES } from '../firmware/controller.js';
import { journalBytesFor } from '../firmware/relay/journal.js';
import { ConfigError, describeIssues, readConfigFile, sizeSchema } from './config.js';

const name = z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, "_", "." and "-" only');

const endpoint = z.string().transform((v, ctx) => {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d+)$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 0 || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not host:port` });
    return z.NEVER;
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
});

const siteSchema = z.object({
  name,
  lat: z.number().min(-90).max(90),
  lon: z.number().min(-180).max(180),
  /** How far a disaster at this site reaches (000-E1: e.g. an earthquake of intensity 6-7). */
  disasterRadiusKm: z.number().min(0).default(0),
}).strict();

/** A WAN profile: a preset name, or the parameters (see hal/wan). Delay defaults to the sites' distance. */
export const wanProfileSchema = z.union([
  z.enum(['lan', 'metro', 'regional', 'continental']),
  z.object({
    preset: z.enum(['lan', 'metro', 'regional', 'continental']).optional(),
    delayMs: z.number().min(0).optional(),
    distanceKm: z.number().min(0).optional(),
    routeFactor: z.number().min(1).default(1.5),
    jitter: z.object({ dist: z.enum(['none', 'uniform', 'normal', 'pareto']), ms: z.number().min(0) }).strict().optional(),
    bandwidthBps: z.number().positive().optional(),
    queueBytes: z.number().int().positive().optional(),
    loss: z.union([
      z.object({ model: z.literal('bernoulli'), p: z.number().min(0).max(1) }).strict(),
      z.object({
        model: z.literal('gilbert-elliott'),
        p: z.number().min(0).max(1), r: z.number().min(0).max(1),
        lossGood: z.number().min(0).max(1).default(0), lossBad: z.number().min(0).max(1).default(1),
      }).strict(),
    ]).optional(),
    outages: z.array(z.object({
      atMs: z.number().min(0), durationMs: z.number().positive(), mode: z.enum(['hold', 'reset']).default('hold'),
    }).strict()).optional(),
    seed: z.number().int().optional(),
  }).strict(),
]);
export type WanProfileConfig = z.infer<typeof wanProfileSchema>;

/** 000-NV: where a relay keeps what it acknowledged: a journal on disk, or battery-backed memory. */
export const RELAY_STORAGES = ['journal', 'battery-backed-memory'] as const;

const nodeSchema = z.discriminatedUnion('role', [
  z.object({
    role: z.literal('controller'),
    name,
    site: z.string(),
    /** iSCSI portal for hosts. */
    iscsi: endpoint.optional(),
    /** Inter-node protocol listener. */
    peer: endpoint,
    dataDir: z.string().optional(),
  }).strict(),
  z.object({
    role: z.literal('relay'),
    name,
    site: z.string(),
    peer: endpoint,
    dataDir: z.string().optional(),
    storage: z.enum(RELAY_STORAGES).default('journal'),
    journalSize: sizeSchema.default(256 * 2 ** 20),
  }).strict(),
]);

export const ackModes = ['local', 'relay-received', 'relay-durable', 'remote-received', 'remote-durable'] as const;

const forwardingSchema = z.discriminatedUnion('policy', [
  z.object({ policy: z.literal('immediate') }).strict(),
  z.object({ policy: z.literal('load-below'), thresholdBps: z.number().positive() }).strict(),
  z.object({ policy: z.literal('delay'), afterMs: z.number().min(0) }).strict(),
  z.object({ policy: z.literal('time-of-day'), at: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'HH:MM (24 h, UTC)') }).strict(),
  z.object({ policy: z.literal('pull') }).strict(),
  z.object({ policy: z.literal('spill'), thresholdBps: z.number().positive() }).strict(),
]);

const volumeSchema = z.object({
  name,
  size: sizeSchema,
  blockSize: z.union([z.literal(512), z.literal(4096)]).default(512),
  primary: z.string(),
  secondary: z.string().optional(),
  relays: z.array(z.string()).default([]),
  ackMode: z.enum(ackModes).default('relay-durable'),
  /** 000-E1 store-and-forward, or 000-E2 cut-through. */
  relayMode: z.enum(['store-and-forward', 'cut-through']).default('store-and-forward'),
  /** 000-E4 with several relays. */
  relaySelection: z.enum(['round-robin', 'least-loaded', 'random', 'stripe', 'all']).default('round-robin'),
  forwarding: forwardingSchema.default({ policy: 'immediate' }),
  /** The seed's per-write handshake, or pipelined writes (default). */
  transfer: z.enum(['pipelined', 'fidelity']).default('pipelined'),
}).strict();

export const topologySchema = z.object({
  name: name.default('kura'),
  /** Pre-shared key every node authenticates its peers with (HMAC challenge-response). */
  psk: z.string().min(16, 'must be at least 16 characters'),
  dataDir: z.string().default('data'),
  sites: z.array(siteSchema).min(1),
  nodes: z.array(nodeSchema).min(1),
  links: z.array(z.object({
    between: z.tuple([z.string(), z.string()]),
    profile: wanProfileSchema.default('lan'),
  }).strict()).default([]),
  volumes: z.array(volumeSchema).default([]),
}).strict().superRefine((t, ctx) => {
  const sites = new Set<string>();
  t.sites.forEach((s, i) => {
    if (sites.has(s.name)) ctx.addIssue({ code: 'custom', path: ['sites', i, 'name'], message: `site "${s.name}" is defined twice` });
    sites.add(s.name);
  });
  const nodes = new Map<string, 'controller' | 'relay'>();
  const endpoints = new Map<string, string>();
  t.nodes.forEach((n, i) => {
    if (nodes.has(n.name)) ctx.addIssue({ code: 'custom', path: ['nodes', i, 'name'], message: `node "${n.name}" is defined twice` });
    nodes.set(n.name, n.role);
    if (!sites.has(n.site)) ctx.addIssue({ code: 'custom', path: ['nodes', i, 'site'], message: `no site named "${n.site}" (known: ${[...sites].join(', ')})` });
    const eps = n.role === 'controller' && n.iscsi ? [['peer', n.peer], ['iscsi', n.iscsi]] as const : [['peer', n.peer]] as const;
    for (const [field, ep] of eps) {
      const key = `${ep.host}:${ep.port}`;
      if (ep.port !== 0 && endpoints.has(key)) ctx.addIssue({ code: 'custom', path: ['nodes', i, field], message: `${key} is already used by ${endpoints.get(key)}` });
      endpoints.set(key, `nodes[${i}].${field}`);
    }
    // A record of the largest host write must fit (half the ring, see firmware/relay/journal.ts):
    // a relay refuses a write it cannot record every time it is sent, and the host waits forever.
    if (n.role === 'relay' && n.journalSize < journalBytesFor(DEFAULT_MAX_TRANSFER_BYTES)) {
      const mib = Math.ceil(journalBytesFor(DEFAULT_MAX_TRANSFER_BYTES) / 2 ** 20);
      ctx.addIssue({
        code: 'custom', path: ['nodes', i, 'journalSize'],
        message: `${+(n.journalSize / 2 ** 20).toFixed(2)} MiB cannot hold two records of the largest write a host may send (${DEFAULT_MAX_TRANSFER_BYTES / 2 ** 20} MiB, the targets' maximum transfer length): give it at least ${mib}MiB`,
      });
    }
  });
  t.links.forEach((l, i) => {
    l.between.forEach((n, j) => {
      if (!nodes.has(n)) ctx.addIssue({ code: 'custom', path: ['links', i, 'between', j], message: `no node named "${n}"` });
    });
    if (l.between[0] === l.between[1]) ctx.addIssue({ code: 'custom', path: ['links', i, 'between'], message: 'a link joins two different nodes' });
  });
  const volumes = new Set<string>();
  t.volumes.forEach((v, i) => {
    if (volumes.has(v.name)) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'name'], message: `volume "${v.name}" is defined twice` });
    volumes.add(v.name);
    const role = (field: string, n: string, want: 'controller' | 'relay', path: (string | number)[]) => {
      const r = nodes.get(n);
      if (r === undefined) ctx.addIssue({ code: 'custom', path, message: `no node named "${n}"` });
      else if (r !== want) ctx.addIssue({ code: 'custom', path, message: `${field} "${n}" is a ${r}, not a ${want}` });
    };
    role('primary', v.primary, 'controller', ['volumes', i, 'primary']);
    if (v.secondary !== undefined) role('secondary', v.secondary, 'controller', ['volumes', i, 'secondary']);
    v.relays.forEach((r, j) => role('relay', r, 'relay', ['volumes', i, 'relays', j]));
    if (v.secondary === v.primary) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'secondary'], message: 'the secondary must be another node than the primary' });
    if (v.relays.length > 0 && v.secondary === undefined) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'relays'], message: 'relays forward to a secondary: name one' });
    if (v.ackMode.startsWith('relay-') && v.relays.length === 0) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'ackMode'], message: `"${v.ackMode}" needs at least one relay` });
    if (v.ackMode.startsWith('remote-') && v.secondary === undefined) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'ackMode'], message: `"${v.ackMode}" needs a secondary` });
    if (v.relaySelection !== 'round-robin' && v.relays.length < 2) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'relaySelection'], message: `"${v.relaySelection}" chooses among several relays: list at least two` });
  });
  // One peer link carries every volume between two nodes, and its sending side has one transfer mode.
  const transferOn = new Map<string, number>();
  t.volumes.forEach((v, i) => {
    for (const [from, to] of volumeFlows(v)) {
      const key = `${from}>${to}`;
      const f = transferOn.get(key);
      if (f === undefined) transferOn.set(key, i);
      else if (t.volumes[f]!.transfer !== v.transfer) {
        ctx.addIssue({ code: 'custom', path: ['volumes', i, 'transfer'], message: `"${v.transfer}", but volume "${t.volumes[f]!.name}" sends ${from} -> ${to} "${t.volumes[f]!.transfer}": volumes sharing a link share its transfer mode` });
        break;
      }
    }
  });
  // A relay runs one forwarding policy and one relay mode for all it holds (one journal, forwarded
  // in recording order): volumes sharing a relay must agree on them, or some would be ignored.
  const firstOn = new Map<string, number>();
  t.volumes.forEach((v, i) => {
    for (const r of v.relays) {
      const f = firstOn.get(r);
      if (f === undefined) {
        firstOn.set(r, i);
        continue;
      }
      const w = t.volumes[f]!;
      if (v.relayMode !== w.relayMode) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'relayMode'], message: `"${v.relayMode}", but volume "${w.name}" runs relay "${r}" "${w.relayMode}": volumes sharing a relay share its mode` });
      if (JSON.stringify(v.forwarding) !== JSON.stringify(w.forwarding)) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'forwarding'], message: `${JSON.stringify(v.forwarding)}, but volume "${w.name}" runs relay "${r}" with ${JSON.stringify(w.forwarding)}: volumes sharing a relay share its forwarding policy` });
    }
  });
});

/** The node pairs a volume's writes travel (sender, receiver): primary -> relays -> secondary, and primary -> secondary direct. */
export function volumeFlows(v: { primary: string; secondary?: string; relays: readonly string[] }): Array<[string, string]> {
  if (v.secondary === undefined) return [];
  return [...v.relays.flatMap((r): Array<[string, string]> => [[v.primary, r], [r, v.secondary!]]), [v.primary, v.secondary]];
}

/** How `from` sends writes to `to` (the transfer of the volumes that flow there; validation makes them agree). */
export function transferBetween(t: Topology, from: string, to: string): 'pipelined' | 'fidelity' {
  const v = t.volumes.find((x) => volumeFlows(x).some(([a, b]) => a === from && b === to));
  return v?.transfer ?? 'pipelined';
}

export type Topology = z.infer<typeof topologySchema>;
export type TopologyNode = Topology['nodes'][number];
export type Site = Topology['sites'][number];

const EARTH_RADIUS_KM = 6371.0088;

/** Great-circle distance (haversine) between two sites, in km. */
export function distanceKm(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

export interface PlacementFinding {
  volume: string;
  relay: string;
  problem: 'inside-disaster-radius' | 'not-closer-than-secondary';
  message: string;
}

/**
 * 000-E1 [0055], [0076]: a relay must survive a disaster at the primary (outside its radius) and be
 * reached faster than the secondary (closer to the primary than the secondary is).
 */
export function checkRelayPlacement(t: Topology): PlacementFinding[] {
  const site = new Map(t.sites.map((s) => [s.name, s]));
  const node = new Map(t.nodes.map((n) => [n.name, n]));
  const findings: PlacementFinding[] = [];
  for (const v of t.volumes) {
    const primary = node.get(v.primary);
    const secondary = v.secondary === undefined ? undefined : node.get(v.secondary);
    if (!primary) continue;
    const pSite = site.get(primary.site)!;
    for (const r of v.relays) {
      const relay = node.get(r);
      if (!relay) continue;
      const rSite = site.get(relay.site)!;
      const dRelay = distanceKm(pSite, rSite);
      if (dRelay <= pSite.disasterRadiusKm) {
        findings.push({ volume: v.name, relay: r, problem: 'inside-disaster-radius',
          message: `volume "${v.name}": relay "${r}" (site ${rSite.name}) is ${dRelay.toFixed(1)} km from the primary's site ${pSite.name}, inside its disaster radius of ${pSite.disasterRadiusKm} km: a disaster there would take the relay's copy too` });
      }
      if (secondary) {
        const sSite = site.get(secondary.site)!;
        const dSecondary = distanceKm(pSite, sSite);
        if (dRelay >= dSecondary) {
          findings.push({ volume: v.name, relay: r, problem: 'not-closer-than-secondary',
            message: `volume "${v.name}": relay "${r}" is ${dRelay.toFixed(1)} km from the primary, not closer than the secondary "${secondary.name}" (${dSecondary.toFixed(1)} km): acknowledging from it saves no latency` });
        }
      }
    }
  }
  return findings;
}

export function validateTopology(raw: unknown, source: string, baseDir: string): Topology {
  const parsed = topologySchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(source, describeIssues(parsed.error.issues));
  const t = parsed.data;
  t.dataDir = isAbsolute(t.dataDir) ? t.dataDir : resolve(baseDir, t.dataDir);
  for (const n of t.nodes) n.dataDir = n.dataDir === undefined ? resolve(t.dataDir, n.name) : resolve(t.dataDir, n.dataDir);
  return t;
}

export function loadTopology(file: string): Topology {
  return validateTopology(readConfigFile(file), file, dirname(resolve(file)));
}
