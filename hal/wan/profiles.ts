/**
 * What one direction of an emulated WAN link does to traffic: the plain-TS shape a topology file
 * maps onto (no zod here: the schema is the topology's job), the named presets, and the geometry
 * that turns two sites into a one-way delay.
 *
 * Every field is optional; `resolveProfile` fills the defaults and rejects nonsense, so the link
 * model only ever sees a complete, valid profile.
 */

export interface GeoPoint {
  /** Degrees north. */
  lat: number;
  /** Degrees east. */
  lon: number;
}

/** Mean Earth radius (IUGG), km. */
export const EARTH_RADIUS_KM = 6371.0088;
/** Light in fibre: about 200 000 km/s, i.e. 5 µs per km. */
export const FIBER_MS_PER_KM = 0.005;
/** Fibre routes are longer than the great circle; 1.5 is a common planning figure. */
export const DEFAULT_ROUTE_FACTOR = 1.5;
/** The payload of a full Ethernet-MTU TCP segment with timestamps (1500 - 20 - 20 - 12). */
export const DEFAULT_SEGMENT_BYTES = 1448;
/** Linux's TCP_RTO_MIN. */
export const DEFAULT_RTO_MIN_MS = 200;
/** Linux's tcp_retries2: a segment lost this many more times resets the connection. */
export const DEFAULT_MAX_RETRANSMITS = 15;
/** Default bottleneck buffer, as time at the link's rate (a classic router rule of thumb). */
export const DEFAULT_QUEUE_MS = 50;
export const MIN_QUEUE_BYTES = 64 * 1024;

/** Great-circle distance (haversine), km. */
export function distanceKm(a: GeoPoint, b: GeoPoint): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** One-way propagation delay of a fibre route of `km` great-circle kilometres. */
export function fiberDelayMs(km: number, routeFactor = DEFAULT_ROUTE_FACTOR): number {
  return km * FIBER_MS_PER_KM * routeFactor;
}

export type JitterDist = 'none' | 'uniform' | 'normal' | 'pareto';

/**
 * Per-packet variation of the one-way delay, mean zero before clamping:
 * - `uniform`: uniform in [-ms, +ms];
 * - `normal`: normal with standard deviation `ms`;
 * - `pareto`: heavy right tail (Lomax, shape 3) shifted to mean 0: never less than -ms, occasionally
 *   many times +ms.
 * The total one-way delay never goes below zero, and on a stream a segment is never delivered
 * before the one ahead of it (jitter there only ever holds later bytes back).
 */
export interface Jitter {
  dist: JitterDist;
  ms: number;
}

export type LossModel =
  | { model: 'none' }
  | { model: 'bernoulli'; p: number }
  /**
   * Two-state Markov chain, stepped once per packet: `p` = P(good -> bad), `r` = P(bad -> good),
   * a packet is lost with `lossGood` in the good state (default 0) and `lossBad` in the bad one
   * (default 1, i.e. the Gilbert model). Long-run loss = (r*lossGood + p*lossBad) / (p + r).
   * Same parameters as netem's `loss gemodel p r 1-h 1-k`.
   */
  | { model: 'gilbert-elliott'; p: number; r: number; lossGood?: number; lossBad?: number };

/**
 * `hold`: traffic that would be on the link while it is down waits for the end of the outage (a
 * stream stalls, then carries on; as if TCP retransmitted the moment the link came back).
 * `reset`: every stream on the link is reset when the outage starts and connecting fails while it
 * lasts. Datagrams on the link during an outage are dropped in either mode.
 */
export type OutageMode = 'hold' | 'reset';

export interface Outage {
  /** Start, in ms from the link's epoch (by default, when the WAN network was created). */
  atMs: number;
  durationMs: number;
  /** Default `hold`. */
  mode?: OutageMode;
}

export interface WanProfile {
  /** Free text for reports. */
  name?: string;
  /** One-way propagation delay. Takes precedence over distanceKm. */
  delayMs?: number;
  /** Great-circle distance between the sites (see distanceKm()); delay = km * 5 µs * routeFactor. */
  distanceKm?: number;
  /** Default 1.5. */
  routeFactor?: number;
  jitter?: Jitter;
  /** Serialization rate in bits per second of payload; absent or 0: unlimited. */
  bandwidthBps?: number;
  /**
   * Bottleneck buffer in bytes (bytes accepted but not yet serialized). A stream's write() returns
   * false beyond it; a datagram that does not fit is dropped. Default: 50 ms at the link's rate, at
   * least 64 KiB; unlimited when the bandwidth is.
   */
  queueBytes?: number;
  /** Stream segment size for serialization and loss (the MSS). Default 1448. */
  segmentBytes?: number;
  loss?: LossModel;
  outages?: Outage[];
  /** Datagrams only: with probability p a datagram takes extraMs longer (so later ones overtake it). */
  reorder?: { p: number; extraMs: number };
  /** Datagrams only: with probability p a datagram arrives twice (the copy with its own jitter). */
  duplicate?: { p: number };
  /**
   * With probability p a datagram has `bits` (default 1) random bits flipped and is delivered so,
   * for the receiver's own checksum to catch. On a stream a corrupted segment is a lost one (TCP's
   * checksum drops it and the sender retransmits).
   */
  corrupt?: { p: number; bits?: number };
  /** Streams: the minimum retransmission timeout a lost segment costs. Default 200. */
  rtoMinMs?: number;
  /** Streams: consecutive losses of one segment after which the connection is reset. Default 15. */
  maxRetransmits?: number;
}

/** A profile with every default filled in and every field checked. */
export interface ResolvedProfile {
  name: string;
  delayMs: number;
  jitter: Jitter;
  /** Infinity when unlimited. */
  bandwidthBps: number;
  /** Infinity when unlimited. */
  queueBytes: number;
  segmentBytes: number;
  loss: LossModel;
  /** Sorted by start. */
  outages: Required<Outage>[];
  reorder: { p: number; extraMs: number };
  duplicate: { p: number };
  corrupt: { p: number; bits: number };
  rtoMinMs: number;
  maxRetransmits: number;
}

export type PresetName = 'lan' | 'metro' | 'regional' | 'continental';

/**
 * Clean links (no jitter, loss or outages: add those per experiment, e.g.
 * `{ ...PRESETS.regional, loss: { model: 'bernoulli', p: 1e-4 } }`). Rates are what two cores can
 * actually shape (10 Gb/s cannot be emulated in user space here), not what such links sell at.
 */
export const PRESETS: Readonly<Record<PresetName, Readonly<WanProfile>>> = Object.freeze({
  lan: Object.freeze({ name: 'lan', delayMs: 0.05, bandwidthBps: 1e9 }),
  metro: Object.freeze({ name: 'metro', distanceKm: 100, bandwidthBps: 1e9 }),
  regional: Object.freeze({ name: 'regional', distanceKm: 500, bandwidthBps: 1e9 }),
  continental: Object.freeze({ name: 'continental', distanceKm: 3000, bandwidthBps: 100e6 }),
});

export function preset(name: PresetName, overrides: WanProfile = {}): WanProfile {
  const p = PRESETS[name];
  if (!p) throw new RangeError(`unknown WAN preset ${String(name)} (${Object.keys(PRESETS).join(', ')})`);
  return { ...p, ...overrides };
}

/** The profile's one-way propagation delay (without jitter or serialization). */
export function oneWayDelayMs(p: WanProfile): number {
  if (p.delayMs !== undefined) return p.delayMs;
  if (p.distanceKm !== undefined) return fiberDelayMs(p.distanceKm, p.routeFactor ?? DEFAULT_ROUTE_FACTOR);
  return 0;
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new RangeError(`WAN profile: ${what}`);
}

function probability(p: number | undefined, what: string): number {
  const v = p ?? 0;
  check(Number.isFinite(v) && v >= 0 && v <= 1, `${what} must be a probability in [0, 1], got ${p}`);
  return v;
}

function nonNegative(v: number | undefined, dflt: number, what: string): number {
  const x = v ?? dflt;
  check(!Number.isNaN(x) && x >= 0, `${what} must be >= 0, got ${v}`);
  return x;
}

export function resolveProfile(p: WanProfile): ResolvedProfile {
  check(p.routeFactor === undefined || (Number.isFinite(p.routeFactor) && p.routeFactor >= 1), `routeFactor must be >= 1, got ${p.routeFactor}`);
  check(p.distanceKm === undefined || (Number.isFinite(p.distanceKm) && p.distanceKm >= 0), `distanceKm must be >= 0, got ${p.distanceKm}`);
  const delayMs = oneWayDelayMs(p);
  check(Number.isFinite(delayMs) && delayMs >= 0, `delayMs must be >= 0, got ${p.delayMs}`);

  const jitter: Jitter = p.jitter ?? { dist: 'none', ms: 0 };
  check(['none', 'uniform', 'normal', 'pareto'].includes(jitter.dist), `jitter.dist must be none, uniform, normal or pareto, got ${jitter.dist}`);
  check(Number.isFinite(jitter.ms) && jitter.ms >= 0, `jitter.ms must be >= 0, got ${jitter.ms}`);

  const bw = p.bandwidthBps ?? 0;
  check(!Number.isNaN(bw) && bw >= 0, `bandwidthBps must be >= 0, got ${p.bandwidthBps}`);
  const bandwidthBps = bw === 0 ? Infinity : bw;
  const queueBytes = p.queueBytes ?? (bandwidthBps === Infinity ? Infinity : Math.max(MIN_QUEUE_BYTES, Math.ceil((bandwidthBps / 8) * (DEFAULT_QUEUE_MS / 1000))));
  check(!Number.isNaN(queueBytes) && queueBytes > 0, `queueBytes must be > 0, got ${p.queueBytes}`);

  const segmentBytes = p.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  check(Number.isInteger(segmentBytes) && segmentBytes > 0, `segmentBytes must be a positive integer, got ${p.segmentBytes}`);

  const loss: LossModel = p.loss ?? { model: 'none' };
  switch (loss.model) {
    case 'none':
      break;
    case 'bernoulli':
      probability(loss.p, 'loss.p');
      break;
    case 'gilbert-elliott':
      probability(loss.p, 'loss.p');
      probability(loss.r, 'loss.r');
      probability(loss.lossGood, 'loss.lossGood');
      probability(loss.lossBad ?? 1, 'loss.lossBad');
      break;
    default:
      check(false, `loss.model must be none, bernoulli or gilbert-elliott, got ${(loss as { model: unknown }).model}`);
  }

  const outages = (p.outages ?? []).map((o, i) => {
    check(Number.isFinite(o.atMs), `outages[${i}].atMs must be a number, got ${o.atMs}`);
    check(Number.isFinite(o.durationMs) && o.durationMs >= 0, `outages[${i}].durationMs must be >= 0, got ${o.durationMs}`);
    const mode = o.mode ?? 'hold';
    check(mode === 'hold' || mode === 'reset', `outages[${i}].mode must be hold or reset, got ${o.mode}`);
    return { atMs: o.atMs, durationMs: o.durationMs, mode };
  }).sort((a, b) => a.atMs - b.atMs);

  const reorder = { p: probability(p.reorder?.p, 'reorder.p'), extraMs: nonNegative(p.reorder?.extraMs, 0, 'reorder.extraMs') };
  const duplicate = { p: probability(p.duplicate?.p, 'duplicate.p') };
  const bits = p.corrupt?.bits ?? 1;
  check(Number.isInteger(bits) && bits >= 1, `corrupt.bits must be a positive integer, got ${p.corrupt?.bits}`);
  const corrupt = { p: probability(p.corrupt?.p, 'corrupt.p'), bits };
  const rtoMinMs = nonNegative(p.rtoMinMs, DEFAULT_RTO_MIN_MS, 'rtoMinMs');
  const maxRetransmits = p.maxRetransmits ?? DEFAULT_MAX_RETRANSMITS;
  check(Number.isInteger(maxRetransmits) && maxRetransmits >= 0, `maxRetransmits must be an integer >= 0, got ${p.maxRetransmits}`);

  return {
    name: p.name ?? '',
    delayMs,
    jitter: { dist: jitter.dist, ms: jitter.dist === 'none' ? 0 : jitter.ms },
    bandwidthBps,
    queueBytes,
    segmentBytes,
    loss,
    outages,
    reorder,
    duplicate,
    corrupt,
    rtoMinMs,
    maxRetransmits,
  };
}
