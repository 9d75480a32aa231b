/**
 * Operational parameter negotiation (RFC 7143 §6.2, §13). The target is always the responder:
 * it answers each offered key by the key's result function (list choice, min, max, OR, AND),
 * records declarations, and answers NotUnderstood / Irrelevant / Reject where the RFC says so.
 */

export interface OperationalParams {
  headerDigest: boolean;
  dataDigest: boolean;
  /** The initiator's declaration: the largest data segment we may send it. */
  initiatorMaxRecvDataSegmentLength: number;
  /** Ours: the largest data segment we accept (enforced by the PDU reader after login). */
  targetMaxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  initialR2T: boolean;
  immediateData: boolean;
  maxOutstandingR2T: number;
  dataPDUInOrder: boolean;
  dataSequenceInOrder: boolean;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxConnections: number;
  errorRecoveryLevel: number;
}

/** What this target is willing to accept: its side of every min/max/OR/AND function. */
export interface TargetLimits {
  maxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  maxOutstandingR2T: number;
  /** Our InitialR2T value: false lets the initiator choose unsolicited data (OR function). */
  initialR2T: boolean;
  /** Our ImmediateData value: true lets the initiator choose immediate data (AND function). */
  immediateData: boolean;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
}

export const DEFAULT_LIMITS: TargetLimits = {
  maxRecvDataSegmentLength: 262144,
  maxBurstLength: 1048576,
  // Bounds what one task may make us buffer before the device server asks for it.
  firstBurstLength: 65536,
  maxOutstandingR2T: 16,
  initialR2T: false,
  immediateData: true,
  defaultTime2Wait: 2,
  // ERL 0 keeps no task state across a connection loss, so we cannot promise to retain any.
  defaultTime2Retain: 0,
};

/** The values in force when a key is never negotiated (RFC 7143 §13). */
export function rfcDefaults(): OperationalParams {
  return {
    headerDigest: false,
    dataDigest: false,
    initiatorMaxRecvDataSegmentLength: 8192,
    targetMaxRecvDataSegmentLength: 8192,
    maxBurstLength: 262144,
    firstBurstLength: 65536,
    initialR2T: true,
    immediateData: true,
    maxOutstandingR2T: 1,
    dataPDUInOrder: true,
    dataSequenceInOrder: true,
    defaultTime2Wait: 2,
    defaultTime2Retain: 20,
    maxConnections: 1,
    errorRecoveryLevel: 0,
  };
}

export type SessionType = 'Discovery' | 'Normal';

/**
 * What the target accepts for one digest key: only None, whichever the initiator prefers of the
 * two (the RFC's list negotiation), or only CRC32C. A forced policy the initiator cannot meet ends
 * the login (a NegotiationError) instead of quietly falling back.
 */
export type DigestPolicy = 'none' | 'optional' | 'required';

export interface DigestPolicies {
  header: DigestPolicy;
  data: DigestPolicy;
}

export const DEFAULT_DIGESTS: DigestPolicies = { header: 'optional', data: 'optional' };

const DIGEST_KEYS: Record<keyof DigestPolicies, string> = { header: 'HeaderDigest', data: 'DataDigest' };
const ACCEPTED: Record<DigestPolicy, readonly string[]> = { none: ['None'], optional: ['CRC32C', 'None'], required: ['CRC32C'] };

/** A key negotiated twice in one login: the RFC makes that a login failure (initiator error). */
export class NegotiationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NegotiationError';
  }
}

type Setter<T> = (p: OperationalParams, v: T) => void;
type Rule =
  | { kind: 'digest'; which: keyof DigestPolicies; set: Setter<boolean> }
  | { kind: 'min' | 'max'; lo: number; hi: number; ours: (l: TargetLimits) => number; set?: Setter<number> }
  | { kind: 'or' | 'and'; ours: (l: TargetLimits) => boolean; set: Setter<boolean> }
  | { kind: 'declare'; lo: number; hi: number; set: Setter<number> }
  /** RFC 7143 §13.26: obsolete marker keys; OFMarker/IFMarker may be answered No. */
  | { kind: 'no' }
  | { kind: 'reject' }
  | { kind: 'list'; supported: string[] };

interface KeyDef {
  rule: Rule;
  /** "Irrelevant when SessionType=Discovery". */
  normalOnly?: boolean;
  /** Usable in the full feature phase (Use: ALL); the rest are login-only. */
  anyPhase?: boolean;
}

const MAX24 = 0xffffff;
const KEYS: Record<string, KeyDef> = {
  HeaderDigest: { rule: { kind: 'digest', which: 'header', set: (p, v) => { p.headerDigest = v; } } },
  DataDigest: { rule: { kind: 'digest', which: 'data', set: (p, v) => { p.dataDigest = v; } } },
  MaxRecvDataSegmentLength: {
    rule: { kind: 'declare', lo: 512, hi: MAX24, set: (p, v) => { p.initiatorMaxRecvDataSegmentLength = v; } },
    anyPhase: true,
  },
  MaxBurstLength: {
    rule: { kind: 'min', lo: 512, hi: MAX24, ours: (l) => l.maxBurstLength, set: (p, v) => { p.maxBurstLength = v; } },
    normalOnly: true,
  },
  FirstBurstLength: {
    rule: { kind: 'min', lo: 512, hi: MAX24, ours: (l) => l.firstBurstLength, set: (p, v) => { p.firstBurstLength = v; } },
    normalOnly: true,
  },
  InitialR2T: { rule: { kind: 'or', ours: (l) => l.initialR2T, set: (p, v) => { p.initialR2T = v; } }, normalOnly: true },
  ImmediateData: { rule: { kind: 'and', ours: (l) => l.immediateData, set: (p, v) => { p.immediateData = v; } }, normalOnly: true },
  MaxOutstandingR2T: {
    rule: { kind: 'min', lo: 1, hi: 65535, ours: (l) => l.maxOutstandingR2T, set: (p, v) => { p.maxOutstandingR2T = v; } },
    normalOnly: true,
  },
  // We require in-order data; with OR our Yes makes the result Yes whatever is offered.
  DataPDUInOrder: { rule: { kind: 'or', ours: () => true, set: (p, v) => { p.dataPDUInOrder = v; } }, normalOnly: true },
  DataSequenceInOrder: { rule: { kind: 'or', ours: () => true, set: (p, v) => { p.dataSequenceInOrder = v; } }, normalOnly: true },
  DefaultTime2Wait: { rule: { kind: 'max', lo: 0, hi: 3600, ours: (l) => l.defaultTime2Wait, set: (p, v) => { p.defaultTime2Wait = v; } } },
  DefaultTime2Retain: { rule: { kind: 'min', lo: 0, hi: 3600, ours: (l) => l.defaultTime2Retain, set: (p, v) => { p.defaultTime2Retain = v; } } },
  MaxConnections: { rule: { kind: 'min', lo: 1, hi: 65535, ours: () => 1, set: (p, v) => { p.maxConnections = v; } }, normalOnly: true },
  ErrorRecoveryLevel: { rule: { kind: 'min', lo: 0, hi: 2, ours: () => 0, set: (p, v) => { p.errorRecoveryLevel = v; } } },
  // RFC 7144: we implement RFC 7143, protocol level 1.
  iSCSIProtocolLevel: { rule: { kind: 'min', lo: 0, hi: 31, ours: () => 1 } },
  TaskReporting: { rule: { kind: 'list', supported: ['RFC3720'] }, normalOnly: true },
  OFMarker: { rule: { kind: 'no' } },
  IFMarker: { rule: { kind: 'no' } },
  OFMarkInt: { rule: { kind: 'reject' } },
  IFMarkInt: { rule: { kind: 'reject' } },
  // Keys only a target may send.
  TargetAlias: { rule: { kind: 'reject' } },
  TargetAddress: { rule: { kind: 'reject' } },
  TargetPortalGroupTag: { rule: { kind: 'reject' } },
};

function parseNumber(v: string): number | undefined {
  if (/^[0-9]{1,10}$/.test(v)) return Number(v);
  if (/^0[xX][0-9a-fA-F]{1,8}$/.test(v)) return parseInt(v.slice(2), 16);
  return undefined;
}

function parseBoolean(v: string): boolean | undefined {
  return v === 'Yes' ? true : v === 'No' ? false : undefined;
}

const yesNo = (b: boolean): string => (b ? 'Yes' : 'No');

export class ParamNegotiator {
  private readonly seen = new Set<string>();
  private digests: DigestPolicies = DEFAULT_DIGESTS;

  /** `params` is updated in place: a fresh default set at login, the session's own in full feature phase. */
  constructor(
    private readonly limits: TargetLimits,
    private sessionType: SessionType = 'Normal',
    readonly params: OperationalParams = rfcDefaults(),
  ) {}

  setSessionType(t: SessionType): void {
    this.sessionType = t;
  }

  /** The digest policy of the target (or, for discovery, the node) the login turned out to be for. */
  setDigests(d: DigestPolicies): void {
    this.digests = d;
  }

  /**
   * Digest keys a 'required' policy needs that the initiator never offered (so they would stay
   * None). Checked when the login moves to the full feature phase.
   */
  missingDigests(): string[] {
    const out: string[] = [];
    for (const which of ['header', 'data'] as const) {
      if (this.digests[which] === 'required' && !this.seen.has(DIGEST_KEYS[which])) out.push(DIGEST_KEYS[which]);
    }
    return out;
  }

  /**
   * The answer to one offered key, or undefined when none is due (a declaration). Throws
   * NegotiationError when a key is negotiated a second time during login.
   */
  answer(key: string, value: string, phase: 'login' | 'ffp'): string | undefined {
    // Own keys only: "toString" or "__proto__" from the wire must not find Object.prototype's.
    const def = Object.hasOwn(KEYS, key) ? KEYS[key] : undefined;
    if (!def) return 'NotUnderstood';
    // A peer's own Reject/Irrelevant/NotUnderstood is an answer, not an offer: nothing to say.
    if (value === 'NotUnderstood' || value === 'Irrelevant' || value === 'Reject') return undefined;
    if (phase === 'ffp' && !def.anyPhase) return 'Reject';
    if (phase === 'login') {
      if (this.seen.has(key)) throw new NegotiationError(`${key} negotiated twice`);
      this.seen.add(key);
    }
    if (def.normalOnly && this.sessionType === 'Discovery') return 'Irrelevant';
    const rule = def.rule;
    const p = this.params;
    switch (rule.kind) {
      case 'digest': {
        const policy = this.digests[rule.which];
        const accepted = ACCEPTED[policy];
        for (const v of value.split(',')) {
          if (accepted.includes(v)) {
            rule.set(p, v === 'CRC32C');
            return v;
          }
        }
        // §6.2.1: with no acceptable value the acceptor may answer Reject or end the negotiation.
        // A forced policy ends it, so that the initiator learns why instead of running without.
        if (policy !== 'optional') throw new NegotiationError(`${key}=${value}: this target requires ${accepted[0]}`);
        return 'Reject';
      }
      case 'list': {
        const pick = value.split(',').find((v) => rule.supported.includes(v));
        return pick ?? 'Reject';
      }
      case 'min':
      case 'max': {
        const n = parseNumber(value);
        if (n === undefined || n < rule.lo || n > rule.hi) return 'Reject';
        const ours = rule.ours(this.limits);
        const result = rule.kind === 'min' ? Math.min(n, ours) : Math.max(n, ours);
        rule.set?.(p, result);
        return String(result);
      }
      case 'or':
      case 'and': {
        const b = parseBoolean(value);
        if (b === undefined) return 'Reject';
        const ours = rule.ours(this.limits);
        const result = rule.kind === 'or' ? b || ours : b && ours;
        rule.set(p, result);
        // Always answer, even where the offer alone decides: some initiators wait for it.
        return yesNo(result);
      }
      case 'declare': {
        const n = parseNumber(value);
        if (n === undefined || n < rule.lo || n > rule.hi) return 'Reject';
        rule.set(p, n);
        return undefined;
      }
      case 'no':
        return 'No';
      case 'reject':
        return 'Reject';
    }
  }

  /** Settle what the key-by-key answers leave inconsistent, once negotiation ends. */
  finish(): OperationalParams {
    const p = this.params;
    p.targetMaxRecvDataSegmentLength = this.limits.maxRecvDataSegmentLength;
    // FirstBurstLength must not exceed MaxBurstLength (§13.14); both were min'ed separately.
    if (p.firstBurstLength > p.maxBurstLength) p.firstBurstLength = p.maxBurstLength;
    return p;
  }
}
