/**
 * `kura status [FILE] [--json]`: every node of a topology asked on its admin socket; per node and
 * volume the role, replication lag (writes and bytes), relay backlog, and each link's state, RTT
 * and emulated delay. A node that does not answer is shown as down, with why.
 */
import type { NodeStatus } from './admin.js';
import { adminClient } from './admin.js';
import { adminSocketOf, loadChecked, processIo, runningPid, type Io } from './up.js';
import type { Topology } from './topology.js';
import type { ReplicationStatus } from '../firmware/replication/types.js';
import { STUCK_GAP_MS } from '../firmware/replication/secondary.js';

export interface NodeReport {
  node: string;
  role: 'controller' | 'relay';
  site: string;
  up: boolean;
  /** From the pid file when the node does not answer. */
  pid?: number;
  error?: string;
  status?: NodeStatus;
}

export interface StatusReport {
  topology: string;
  file: string;
  nodes: NodeReport[];
  /** Per replicated volume: what its secondary does not hold yet (computed from the nodes' reports). */
  replication?: VolumeLag[];
}

export interface VolumeLag {
  volume: string;
  /** Writes the primary sequenced that the secondary has not applied; null when either is down. */
  lagWrites: number | null;
  /** Bytes on their way: not yet at a relay (primary) plus held by the volume's relays. */
  lagBytes: number;
}

/**
 * Replication lag of each volume: the primary's sequence against the secondary's applied one (same
 * generation), and the bytes still on their way (the primary's unacknowledged ones plus the relays'
 * backlogs).
 */
export function replicationLag(t: Topology, r: StatusReport): VolumeLag[] {
  const status = new Map(r.nodes.map((n) => [n.node, n.status]));
  return t.volumes.filter((v) => v.secondary !== undefined).map((v) => {
    const p = status.get(v.primary)?.volumes.find((x) => x.volume === v.name && x.role === 'primary');
    const s = status.get(v.secondary!)?.volumes.find((x) => x.volume === v.name);
    const held = v.relays.map((name) => status.get(name)?.relay?.backlogByVolume?.[v.name]?.bytes ?? 0);
    // Same data to all relays: each holds its own copy of the same writes.
    const relayBytes = v.relaySelection === 'all' ? Math.max(0, ...held) : held.reduce((a, b) => a + b, 0);
    const lagWrites = p && s && p.generation === s.generation ? Math.max(0, p.sequence - s.sequence) : null;
    return { volume: v.name, lagWrites, lagBytes: (p?.lagBytes ?? 0) + relayBytes };
  });
}

export async function collectStatus(t: Topology, file: string, timeoutMs = 2000): Promise<StatusReport> {
  const nodes = await Promise.all(t.nodes.map(async (n): Promise<NodeReport> => {
    const base = { node: n.name, role: n.role, site: n.site };
    try {
      return { ...base, up: true, status: await adminClient.status(adminSocketOf(n), timeoutMs) };
    } catch (err) {
      const pid = runningPid(t, n.name);
      return { ...base, up: false, ...(pid === undefined ? {} : { pid }), error: (err as Error).message };
    }
  }));
  const report: StatusReport = { topology: t.name, file, nodes };
  report.replication = replicationLag(t, report);
  return report;
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

const ms = (v: number | undefined) => (v === undefined ? '-' : `${v < 10 ? v.toFixed(2) : v.toFixed(0)} ms`);

/** Left-aligned columns, two spaces apart; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function nodeRows(r: StatusReport): string[][] {
  return r.nodes.map((n) => {
    const s = n.status;
    if (!n.up || !s) return [n.node, n.role, n.site, 'down', n.pid === undefined ? '-' : String(n.pid), '-', n.error ?? ''];
    const notes = [...(s.iscsi ?? [])];
    if (s.relay) {
      const r = s.relay;
      notes.push(`backlog ${r.backlogRecords} writes, ${bytes(r.backlogBytes)}; forwarded ${r.forwarded}${r.givenUp ? `; gave up ${r.givenUp} (${bytes(r.givenUpBytes ?? 0)}) held for a promoted secondary` : ''}`);
    }
    return [n.node, s.role, s.site, 'up', String(s.pid), duration(s.uptimeMs), notes.join(' ')];
  });
}

/** A secondary's gap: how long it has lasted, and the way out once it looks permanent. */
export function waitingNote(v: ReplicationStatus): string {
  const m = v.missing;
  if (m === undefined) return `${v.waiting} out of order, waiting`;
  const secs = Math.floor(m.forMs / 1000);
  const note = `${v.waiting} out of order, waiting for sequence ${m.sequence} (${secs} s)`;
  return m.forMs < STUCK_GAP_MS ? note
    : `${note}: that write is lost here and nothing holds it any more (a crash in a 'received' ack mode beyond the primary's retained copies, or with the primary restarted too): kura down, then kura up --resync (a new generation, the whole volume copied)`;
}

/** The NOTE column of one volume on one node. */
export function volumeNotes(v: ReplicationStatus): string[] {
  const notes: string[] = [];
  if (v.role !== 'primary') notes.push(v.writable ? 'writable (promoted)' : 'read-only');
  if (v.fenced !== undefined) notes.push(`write protected: ${v.fenced}`);
  for (const p of v.peers) if (p.stalled) notes.push(`relay ${p.name} answers nothing (${p.outstanding} outstanding): writes go by the other paths`);
  if (v.failure !== undefined) notes.push(`applying stopped: ${v.failure} (tried again each second as the writes come again)`);
  if (v.waiting) notes.push(waitingNote(v));
  if (v.resync) notes.push(`resync ${v.resync.state} ${v.resync.totalBlocks ? Math.floor((100 * v.resync.doneBlocks) / v.resync.totalBlocks) : 0}%`);
  return notes;
}

function volumeRows(r: StatusReport): string[][] {
  const rows: string[][] = [];
  const lag = new Map((r.replication ?? []).map((l) => [l.volume, l]));
  for (const n of r.nodes) {
    for (const v of n.status?.volumes ?? []) {
      const primary = v.role === 'primary';
      const notes = volumeNotes(v);
      rows.push([
        v.volume, n.node, v.role, v.ackMode, `${v.generation}:${v.sequence}`,
        primary ? lagText(lag.get(v.volume), v) : '-',
        primary ? String(v.pendingAck) : '-',
        notes.join(', '),
      ]);
    }
  }
  return rows;
}

function lagText(l: VolumeLag | undefined, p: { lagWrites: number; lagBytes: number }): string {
  if (l === undefined) return `${p.lagWrites} writes, ${bytes(p.lagBytes)}`;
  return `${l.lagWrites === null ? '?' : l.lagWrites} writes, ${bytes(l.lagBytes)}`;
}

/** One row per pair of nodes with a link or a connection, seen from both sides (each shapes its own direction). */
function linkRows(r: StatusReport): string[][] {
  const status = new Map(r.nodes.map((n) => [n.node, n.status]));
  const pairs = new Map<string, [string, string]>();
  for (const n of r.nodes) {
    for (const peer of [...(n.status?.links ?? []), ...(n.status?.wan ?? [])].map((l) => l.peer)) {
      const key = [n.node, peer].sort().join('\0');
      if (!pairs.has(key)) pairs.set(key, [n.node, peer]);
    }
  }
  const rows: string[][] = [];
  for (const [x, y] of pairs.values()) {
    const conn = (from: string, to: string) => status.get(from)?.links.find((l) => l.peer === to);
    const wan = (from: string, to: string) => status.get(from)?.wan?.find((w) => w.peer === to);
    // The side that dials (lists the connection) names the row first.
    const [a, b] = conn(x, y) === undefined && conn(y, x) !== undefined ? [y, x] : [x, y];
    const c = conn(a, b) ?? conn(b, a);
    const [wa, wb] = [wan(a, b), wan(b, a)];
    const notes: string[] = [];
    const cut = [[a, wa?.partitioned ?? conn(a, b)?.partitioned], [b, wb?.partitioned ?? conn(b, a)?.partitioned]].filter(([, p]) => p).map(([n]) => n);
    if (cut.length === 2) notes.push('PARTITIONED');
    else if (cut.length === 1) notes.push(`PARTITIONED on ${cut[0]}'s side only`);
    for (const [n, w] of [[a, wa], [b, wb]] as const) {
      if (w?.outage) notes.push(`${n}: outage (${w.outage.mode}) for ${duration(w.outage.remainingMs)} more`);
      if (w && w.queuedBytes > 0) notes.push(`${n}: ${bytes(w.queuedBytes)} queued`);
    }
    for (const n of [a, b]) if (!status.get(n)) notes.push(`${n} is down`);
    const delay = wa && wb && Math.abs(wa.oneWayDelayMs - wb.oneWayDelayMs) < 0.005 ? ms(wa.oneWayDelayMs)
      : wa || wb ? `${wa ? ms(wa.oneWayDelayMs) : '?'} / ${wb ? ms(wb.oneWayDelayMs) : '?'}` : 'unshaped';
    const w = wa ?? wb;
    rows.push([
      `${a} <-> ${b}`, c?.state ?? 'no connection', ms(c?.rttMs), delay,
      w ? (w.bandwidthBps === null ? 'unlimited' : `${w.bandwidthBps / 1e6} Mb/s`) : '-',
      notes.join(', '),
    ]);
  }
  return rows;
}

export function renderStatus(r: StatusReport): string {
  const upCount = r.nodes.filter((n) => n.up).length;
  const out = [`topology "${r.topology}" (${r.file}): ${r.nodes.length} nodes, ${upCount} up`, ''];
  out.push(table(['NODE', 'ROLE', 'SITE', 'STATE', 'PID', 'UPTIME', 'ISCSI / RELAY / ERROR'], nodeRows(r)));
  const volumes = volumeRows(r);
  if (volumes.length > 0) out.push('', table(['VOLUME', 'NODE', 'ROLE', 'ACK MODE', 'GEN:SEQ', 'LAG', 'PENDING ACK', 'NOTE'], volumes));
  const links = linkRows(r);
  if (links.length > 0) out.push('', table(['LINK', 'STATE', 'RTT', 'ONE-WAY DELAY', 'BANDWIDTH', 'NOTE'], links));
  return `${out.join('\n')}\n`;
}

export async function statusCommand(file: string, o: { json?: boolean }, io: Io = processIo): Promise<number> {
  const t = loadChecked(file);
  const report = await collectStatus(t, file);
  io.out(o.json ? `${JSON.stringify(report, null, 2)}\n` : renderStatus(report));
  return 0;
}
