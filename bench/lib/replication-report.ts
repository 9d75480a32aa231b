/**
 * Result shapes, markdown tables, the acceptance check and the SVG plot of the replication benches
 * (bench/ack-latency.ts, bench/replication-throughput.ts). Pure functions of the results, so they are
 * unit-tested on synthetic figures.
 */
import { fiberDelayMs } from '../../hal/wan/profiles.js';
import type { LatencySummary } from './load.js';

export const ACK_MODES = ['local', 'relay-received', 'relay-durable', 'remote-received', 'remote-durable'] as const;
export type AckMode = (typeof ACK_MODES)[number];

export interface DistanceProfile {
  name: string;
  /** Great-circle km primary -> secondary (the link's distanceKm). */
  secondaryKm: number;
  /** Great-circle km primary -> relay. */
  relayKm: number;
}

/** The issue's three profiles: metro, regional, continental secondaries; relays 20 or 100 km out. */
export const DISTANCE_PROFILES: readonly DistanceProfile[] = [
  { name: 'metro', secondaryKm: 100, relayKm: 20 },
  { name: 'regional', secondaryKm: 500, relayKm: 100 },
  { name: 'continental', secondaryKm: 3000, relayKm: 100 },
];

/** Round trip of a fibre route of `km` great-circle km (5 µs/km each way, route factor 1.5). */
export function configuredRttMs(km: number, routeFactor = 1.5): number {
  return 2 * fiberDelayMs(km, routeFactor);
}

export interface RttFigure {
  /** From the link's configuration (2 x one-way delay): the reference. */
  configuredMs: number;
  /** As the nodes measured it (median of heartbeat round trips in `kura status`), when they report one. */
  measuredMs?: number;
  /** Distinct heartbeat round trips the median is of. */
  heartbeats?: number;
}

export interface LoadRun {
  qd: number;
  ops: number;
  iops: number;
  mibps: number;
  elapsedMs: number;
  latencyMs: LatencySummary;
  /** HDR histogram (ns), compressed base64. */
  histogram?: string;
}

export interface AckCase {
  profile: string;
  secondaryKm: number;
  relayKm: number;
  mode: AckMode;
  volume?: string;
  rtt: { primaryRelay: RttFigure; primarySecondary: RttFigure; relaySecondary: RttFigure };
  runs: LoadRun[];
  error?: string;
}

export interface AckCheck {
  profile: string;
  relayKm: number;
  secondaryKm: number;
  qd: number;
  rttPrimaryRelayMs: number;
  measuredRttPrimaryRelayMs?: number;
  relayDurableP50Ms?: number;
  remoteDurableP50Ms?: number;
  /** RTT + 0.3 ms. */
  limitMs: number;
  /** RTT + 0.15 ms. */
  goalMs: number;
  /** remote-durable p50 / relay-durable p50. */
  ratio?: number;
  latencyPass: boolean;
  goalPass: boolean;
  ratioPass: boolean;
  pass: boolean;
  line: string;
}

const fmtMs = (v: number | undefined): string => (v === undefined ? '-' : v < 10 ? v.toFixed(3) : v < 100 ? v.toFixed(2) : v.toFixed(1));
const fmtInt = (v: number): string => Math.round(v).toLocaleString('en-US');

/** A GitHub-flavoured markdown table with aligned columns (numbers right-aligned). */
export function markdownTable(header: string[], rows: string[][], rightAlign: boolean[] = header.map((_, i) => i > 0)): string {
  const widths = header.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (rightAlign[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (rightAlign[i] ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

function rttCell(r: RttFigure): string {
  return `${fmtMs(r.configuredMs)} / ${fmtMs(r.measuredMs)}`;
}

/** One row per case and queue depth. */
export function ackLatencyTable(cases: readonly AckCase[]): string {
  const header = ['profile', 'secondary km', 'relay km', 'RTT p-relay ms (cfg / meas)', 'RTT p-secondary ms (cfg / meas)', 'ack mode', 'QD', 'p50 ms', 'p99 ms', 'p99.9 ms', 'IOPS'];
  const rows: string[][] = [];
  for (const c of cases) {
    const lead = [c.profile, String(c.secondaryKm), String(c.relayKm), rttCell(c.rtt.primaryRelay), rttCell(c.rtt.primarySecondary), c.mode];
    if (c.runs.length === 0) rows.push([...lead, '-', 'error', '-', '-', c.error ? c.error.slice(0, 60) : '-']);
    for (const r of c.runs) {
      rows.push([...lead, String(r.qd), fmtMs(r.latencyMs.p50), fmtMs(r.latencyMs.p99), fmtMs(r.latencyMs.p999), fmtInt(r.iops)]);
    }
  }
  return markdownTable(header, rows, header.map((_, i) => i !== 0 && i !== 5));
}

/**
 * The issue's acceptance: with the relay at 100 km and the secondary at 500 km, relay-durable p50
 * (QD1) <= RTT(primary, relay) + 0.3 ms (goal + 0.15 ms) and at least 3x lower than remote-durable.
 * The RTT is the configured one (propagation only: a loaded machine cannot inflate the allowance).
 */
export function ackCheck(cases: readonly AckCase[], o: { relayKm?: number; secondaryKm?: number; qd?: number } = {}): AckCheck | undefined {
  const relayKm = o.relayKm ?? 100;
  const secondaryKm = o.secondaryKm ?? 500;
  const qd = o.qd ?? 1;
  const at = (mode: AckMode): AckCase | undefined => cases.find((c) => c.mode === mode && c.relayKm === relayKm && c.secondaryKm === secondaryKm);
  const rd = at('relay-durable');
  const remote = at('remote-durable');
  if (!rd && !remote) return undefined;
  const ref = (rd ?? remote)!;
  const p50 = (c: AckCase | undefined): number | undefined => c?.runs.find((r) => r.qd === qd)?.latencyMs.p50;
  const rdP50 = p50(rd);
  const remoteP50 = p50(remote);
  const rtt = ref.rtt.primaryRelay.configuredMs;
  const limitMs = rtt + 0.3;
  const goalMs = rtt + 0.15;
  const ratio = rdP50 !== undefined && remoteP50 !== undefined && rdP50 > 0 ? remoteP50 / rdP50 : undefined;
  const latencyPass = rdP50 !== undefined && rdP50 <= limitMs;
  const goalPass = rdP50 !== undefined && rdP50 <= goalMs;
  const ratioPass = ratio !== undefined && ratio >= 3;
  const pass = latencyPass && ratioPass;
  const meas = ref.rtt.primaryRelay.measuredMs;
  const line = `${pass ? 'PASS' : 'FAIL'} ack latency (${ref.profile}: relay ${relayKm} km, secondary ${secondaryKm} km, QD${qd}): ` +
    `relay-durable p50 ${fmtMs(rdP50)} ms vs RTT(primary, relay) ${fmtMs(rtt)} ms${meas === undefined ? '' : ` (measured ${fmtMs(meas)} ms)`} + 0.3 = ${fmtMs(limitMs)} ms ` +
    `[${latencyPass ? 'ok' : 'over'}; goal +0.15 = ${fmtMs(goalMs)} ms ${goalPass ? 'met' : 'missed'}]; ` +
    `remote-durable p50 ${fmtMs(remoteP50)} ms = ${ratio === undefined ? '-' : ratio.toFixed(2)}x relay-durable [${ratioPass ? 'ok' : 'under'} 3x]`;
  return {
    profile: ref.profile, relayKm, secondaryKm, qd, rttPrimaryRelayMs: rtt, measuredRttPrimaryRelayMs: meas,
    relayDurableP50Ms: rdP50, remoteDurableP50Ms: remoteP50, limitMs, goalMs, ratio, latencyPass, goalPass, ratioPass, pass, line,
  };
}

// ---- SVG ----

export interface Series {
  name: string;
  color: string;
  dash?: string;
  points: { x: number; y: number }[];
}

export interface Panel {
  title: string;
  series: Series[];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  panels: Panel[];
  /** Extra x ticks (e.g. the measured distances). */
  xTicks?: number[];
}

export const MODE_COLORS: Record<AckMode, string> = {
  local: '#2ca02c',
  'relay-received': '#17becf',
  'relay-durable': '#1f77b4',
  'remote-received': '#ff7f0e',
  'remote-durable': '#d62728',
};

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const num = (v: number): string => (Math.round(v * 10) / 10).toString();

/** 1-2-5 ticks covering [lo, hi] on a log scale. */
export function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(Number(v.toPrecision(6)));
    }
  }
  return out;
}

function tickLabel(v: number): string {
  if (v >= 1000) return `${v / 1000}k`.replace('.0k', 'k');
  if (v >= 1) return String(v);
  return String(Number(v.toPrecision(3)));
}

/**
 * Log-log line charts side by side, one legend below: hand-written SVG (no dependency), readable
 * in a browser or a markdown viewer.
 */
export function renderLogLogChart(o: ChartOptions): string {
  const pw = 420;
  const ph = 320;
  const m = { left: 64, right: 16, top: 48, bottom: 52 };
  const legendRows = Math.ceil(Math.max(...o.panels.map((p) => p.series.length), 1) / 3);
  const width = o.panels.length * (pw + m.left + m.right);
  const height = m.top + ph + m.bottom + 22 * legendRows + 16;
  const all = o.panels.flatMap((p) => p.series.flatMap((s) => s.points)).filter((p) => p.x > 0 && p.y > 0 && Number.isFinite(p.y));
  const xs = [...all.map((p) => p.x), ...(o.xTicks ?? [])];
  const ys = all.map((p) => p.y);
  const xMin = xs.length ? Math.min(...xs) / 1.3 : 1;
  const xMax = xs.length ? Math.max(...xs) * 1.3 : 10;
  const yLo = ys.length ? Math.min(...ys) / 1.5 : 0.1;
  const yHi = ys.length ? Math.max(...ys) * 1.5 : 10;
  const lx = (x: number): number => (Math.log10(x) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin)) * pw;
  const ly = (y: number): number => ph - (Math.log10(y) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo)) * ph;
  const xTicks = [...new Set([...logTicks(xMin, xMax), ...(o.xTicks ?? [])])].sort((a, b) => a - b);
  const yTicks = logTicks(yLo, yHi);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  out.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${esc(o.title)}</text>`);
  o.panels.forEach((panel, i) => {
    const ox = i * (pw + m.left + m.right) + m.left;
    const oy = m.top;
    out.push(`<g transform="translate(${ox},${oy})">`);
    out.push(`<text x="${pw / 2}" y="-10" text-anchor="middle" font-size="13">${esc(panel.title)}</text>`);
    out.push(`<rect width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
    for (const t of xTicks) {
      const x = num(lx(t));
      out.push(`<line x1="${x}" y1="0" x2="${x}" y2="${ph}" stroke="#ddd"/>`);
      out.push(`<text x="${x}" y="${ph + 16}" text-anchor="middle">${tickLabel(t)}</text>`);
    }
    for (const t of yTicks) {
      const y = num(ly(t));
      out.push(`<line x1="0" y1="${y}" x2="${pw}" y2="${y}" stroke="#ddd"/>`);
      out.push(`<text x="-6" y="${y}" text-anchor="end" dominant-baseline="middle">${tickLabel(t)}</text>`);
    }
    out.push(`<text x="${pw / 2}" y="${ph + 36}" text-anchor="middle">${esc(o.xLabel)}</text>`);
    out.push(`<text transform="translate(-46,${ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
    for (const s of panel.series) {
      const pts = s.points.filter((p) => p.x > 0 && p.y > 0 && Number.isFinite(p.y)).sort((a, b) => a.x - b.x);
      if (pts.length === 0) continue;
      const d = pts.map((p) => `${num(lx(p.x))},${num(ly(p.y))}`).join(' ');
      out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} points="${d}"><title>${esc(s.name)}</title></polyline>`);
      for (const p of pts) {
        const title = `<title>${esc(`${s.name}: ${p.x} km, ${fmtMs(p.y)} ms`)}</title>`;
        // Data points as dots; reference lines as short ticks (visible even with one distance).
        if (!s.dash) out.push(`<circle cx="${num(lx(p.x))}" cy="${num(ly(p.y))}" r="3.5" fill="${s.color}">${title}</circle>`);
        else out.push(`<line x1="${num(lx(p.x) - 9)}" y1="${num(ly(p.y))}" x2="${num(lx(p.x) + 9)}" y2="${num(ly(p.y))}" stroke="${s.color}" stroke-width="2">${title}</line>`);
      }
    }
    out.push('</g>');
  });
  // Legend: the series of the first panel (every panel has the same ones).
  const legend = o.panels[0]?.series ?? [];
  const ly0 = m.top + ph + m.bottom;
  legend.forEach((s, i) => {
    const x = m.left + (i % 3) * 220;
    const y = ly0 + Math.floor(i / 3) * 22;
    out.push(`<line x1="${x}" y1="${y}" x2="${x + 28}" y2="${y}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    out.push(`<text x="${x + 34}" y="${y}" dominant-baseline="middle">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** p50 latency against the secondary's distance, one line per ack mode, one panel per queue depth. */
export function ackLatencySvg(cases: readonly AckCase[]): string {
  const qds = [...new Set(cases.flatMap((c) => c.runs.map((r) => r.qd)))].sort((a, b) => a - b);
  const modes = ACK_MODES.filter((m) => cases.some((c) => c.mode === m));
  const distances = [...new Set(cases.map((c) => c.secondaryKm))].sort((a, b) => a - b);
  const rttLine = (name: string, pick: (c: AckCase) => number, dash: string): Series => ({
    name, color: '#888', dash,
    points: distances.map((d) => {
      const c = cases.find((x) => x.secondaryKm === d)!;
      return { x: d, y: pick(c) };
    }),
  });
  const panels: Panel[] = qds.map((qd) => ({
    title: `QD${qd}, 4 KiB writes: p50 latency`,
    series: [
      ...modes.map((mode) => ({
        name: mode, color: MODE_COLORS[mode],
        points: cases.filter((c) => c.mode === mode).flatMap((c) => {
          const r = c.runs.find((x) => x.qd === qd);
          return r ? [{ x: c.secondaryKm, y: r.latencyMs.p50 }] : [];
        }),
      })),
      rttLine('RTT primary-secondary (configured)', (c) => c.rtt.primarySecondary.configuredMs, '6 4'),
      rttLine('RTT primary-relay (configured)', (c) => c.rtt.primaryRelay.configuredMs, '2 3'),
    ],
  }));
  return renderLogLogChart({ title: 'kura ack latency against distance to the secondary', xLabel: 'primary - secondary distance, km (log)', yLabel: 'p50 ack latency, ms (log)', panels, xTicks: distances });
}

// ---- throughput ----

export interface ThroughputSample {
  /** ms since the measured load started. */
  tMs: number;
  appliedBytes?: number;
  /** The primary's ackedBytes: bytes the secondary answered (delivered over the link). */
  replicatedBytes?: number;
  sequence?: number;
  hostBytes: number;
}

export interface ThroughputCase {
  mode: AckMode;
  requestBytes: number;
  qd: number;
  linkBps: number;
  rttMs: RttFigure;
  host?: { ops: number; mibps: number; iops: number; elapsedMs: number; latencyMs: LatencySummary };
  /** Goodput at the secondary over the steady window: write payload bytes applied per second. */
  applied?: { bytesPerSec: number; fromMs: number; toMs: number; percentOfLink: number };
  replicated?: { bytesPerSec: number; percentOfLink: number };
  /** The host's own rate over the same window. */
  hostWindow?: { bytesPerSec: number; percentOfLink: number };
  samples: ThroughputSample[];
  error?: string;
}

/** Rate of `pick` between the first sample at or after `fromMs` and the last one (bytes/s). */
export function steadyRate(samples: readonly ThroughputSample[], pick: (s: ThroughputSample) => number | undefined, fromMs: number): { bytesPerSec: number; fromMs: number; toMs: number } | undefined {
  const usable = samples.filter((s) => pick(s) !== undefined);
  const first = usable.find((s) => s.tMs >= fromMs);
  const last = usable[usable.length - 1];
  if (!first || !last || last.tMs - first.tMs <= 0) return undefined;
  return { bytesPerSec: (pick(last)! - pick(first)!) / ((last.tMs - first.tMs) / 1000), fromMs: first.tMs, toMs: last.tMs };
}

export function throughputTable(cases: readonly ThroughputCase[]): string {
  const header = ['ack mode', 'request', 'QD', 'link', 'RTT ms (cfg / meas)', 'host MiB/s', 'host p50 ms', 'applied MB/s', 'applied % of link', 'replicated % of link', 'host % of link'];
  const rows = cases.map((c) => [
    c.mode, c.requestBytes >= 2 ** 20 ? `${c.requestBytes / 2 ** 20} MiB` : `${c.requestBytes / 1024} KiB`, String(c.qd),
    `${c.linkBps / 1e9} Gb/s`, `${fmtMs(c.rttMs.configuredMs)} / ${fmtMs(c.rttMs.measuredMs)}`,
    c.host ? c.host.mibps.toFixed(1) : 'error', c.host ? fmtMs(c.host.latencyMs.p50) : '-',
    c.applied ? (c.applied.bytesPerSec / 1e6).toFixed(1) : '-',
    c.applied ? `${c.applied.percentOfLink.toFixed(1)}%` : '-',
    c.replicated ? `${c.replicated.percentOfLink.toFixed(1)}%` : '-',
    c.hostWindow ? `${c.hostWindow.percentOfLink.toFixed(1)}%` : '-',
  ]);
  return markdownTable(header, rows, header.map((_, i) => i !== 0));
}

/** The issue's bar: replication carries at least 90% of the link's capacity. */
export function throughputCheck(cases: readonly ThroughputCase[], mode: AckMode = 'remote-received'): { pass: boolean; line: string } {
  const c = cases.find((x) => x.mode === mode && x.applied);
  if (!c || !c.applied) return { pass: false, line: `FAIL replication throughput: no ${mode} measurement` };
  const pass = c.applied.percentOfLink >= 90;
  return {
    pass,
    line: `${pass ? 'PASS' : 'FAIL'} replication throughput (${mode}, ${c.requestBytes / 1024} KiB writes at QD${c.qd}, ${c.linkBps / 1e9} Gb/s, RTT ${fmtMs(c.rttMs.configuredMs)} ms): ` +
      `${(c.applied.bytesPerSec * 8 / 1e6).toFixed(0)} Mb/s applied at the secondary = ${c.applied.percentOfLink.toFixed(1)}% of the link [${pass ? 'ok' : 'under'} 90%]`,
  };
}
