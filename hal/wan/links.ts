/**
 * Which emulated link a connection or datagram goes over, and the one LinkModel per link. A link is
 * one direction between two places: every stream and datagram on it shares its serializer, queue,
 * loss state and outages, as traffic on one pipe does. Each side shapes only what it sends, so a
 * process configures the links leaving it (`local` is this side, `remote` the other).
 *
 * Seeding: link `name` under seed `s` draws from Random(hash(s, name)), so a link's behaviour does
 * not depend on which other links exist or in which order connections came up.
 */
import type { Clock } from '../clock.js';
import { Random } from '../sim/random.js';
import { LinkModel, type LinkEvent } from './link-model.js';
import type { WanProfile } from './profiles.js';

export interface ConnInfo {
  /** outbound: we connected / we send; inbound: we accepted. */
  direction: 'outbound' | 'inbound';
  kind: 'stream' | 'datagram';
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

export interface LinkChoice {
  /** Identifies the link (one direction): equal names share one LinkModel. */
  name: string;
  profile: WanProfile;
  /** This link's own seed instead of the WanLinks seed (a topology's per-link `seed`). */
  seed?: number;
}

/** undefined: not shaped (passes straight through). */
export type LinkSelector = (c: ConnInfo) => LinkChoice | undefined;

export interface WanLinksOptions {
  clock: Clock;
  select: LinkSelector;
  /** Default 1. */
  seed?: number;
  /** Clock time that the profiles' outage times count from. Default: now. */
  epochMs?: number;
  trace?: (link: string, e: LinkEvent) => void;
}

export class WanLinks {
  readonly clock: Clock;
  readonly seed: number;
  readonly epochMs: number;
  private readonly select: LinkSelector;
  private readonly trace: ((link: string, e: LinkEvent) => void) | undefined;
  private readonly models = new Map<string, LinkModel>();

  constructor(opts: WanLinksOptions) {
    this.clock = opts.clock;
    this.select = opts.select;
    this.seed = opts.seed ?? 1;
    this.epochMs = opts.epochMs ?? opts.clock.now();
    this.trace = opts.trace;
  }

  /** The link `c` goes over (creating its model on first use), or undefined when unshaped. */
  choose(c: ConnInfo): { name: string; model: LinkModel } | undefined {
    const choice = this.select(normalize(c));
    if (choice === undefined) return undefined;
    return { name: choice.name, model: this.modelFor(choice) };
  }

  /**
   * The model of link `choice.name`, made now if no connection used it yet (to partition a link
   * or read its state before any traffic). Later choices of that name share it, whatever profile they carry.
   */
  modelFor(choice: LinkChoice): LinkModel {
    let model = this.models.get(choice.name);
    if (model === undefined) {
      const trace = this.trace;
      const name = choice.name;
      model = new LinkModel(choice.profile, {
        clock: this.clock,
        random: new Random(seedFor(choice.seed ?? this.seed, name)),
        epochMs: this.epochMs,
        trace: trace ? (e) => trace(name, e) : undefined,
      });
      this.models.set(choice.name, model);
    }
    return model;
  }

  /** The model of a link used so far (stats, queue). */
  model(name: string): LinkModel | undefined {
    return this.models.get(name);
  }

  get names(): string[] {
    return [...this.models.keys()];
  }
}

/** FNV-1a over the seed and the link name. */
export function seedFor(seed: number, name: string): number {
  let h = 0x811c9dc5;
  const s = `${seed >>> 0}\u0000${name}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function unmap(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

function normalize(c: ConnInfo): ConnInfo {
  return { ...c, localAddress: unmap(c.localAddress), remoteAddress: unmap(c.remoteAddress) };
}

export interface LinkRule {
  /** Link name (default `rule<i>`). */
  name?: string;
  /** This side: 'host', 'host:port', '*:port', '[v6]:port' or '*' / absent for any. */
  local?: string;
  /** The other side, same forms. */
  remote?: string;
  direction?: 'outbound' | 'inbound';
  kind?: 'stream' | 'datagram';
  profile: WanProfile;
}

interface Pattern {
  host: string | undefined;
  port: number | undefined;
}

function parsePattern(p: string | undefined): Pattern {
  if (p === undefined || p === '*' || p === '') return { host: undefined, port: undefined };
  let host: string;
  let port: string | undefined;
  if (p.startsWith('[')) {
    const close = p.indexOf(']');
    if (close < 0) throw new RangeError(`link rule: bad address ${p}`);
    host = p.slice(1, close);
    port = p[close + 1] === ':' ? p.slice(close + 2) : undefined;
  } else if (p.indexOf(':') >= 0 && p.indexOf(':') === p.lastIndexOf(':')) {
    [host, port] = p.split(':') as [string, string];
  } else {
    host = p;
  }
  const n = port === undefined ? undefined : Number(port);
  if (n !== undefined && !(Number.isInteger(n) && n >= 0 && n <= 65535)) throw new RangeError(`link rule: bad port in ${p}`);
  return { host: host === '*' ? undefined : unmap(host), port: n };
}

function matches(p: Pattern, address: string, port: number): boolean {
  return (p.host === undefined || p.host === address) && (p.port === undefined || p.port === port);
}

/** A selector from rules, first match wins; nothing matches -> unshaped. */
export function linkTable(rules: readonly LinkRule[]): LinkSelector {
  const compiled = rules.map((r, i) => ({ r, name: r.name ?? `rule${i}`, local: parsePattern(r.local), remote: parsePattern(r.remote) }));
  return (c) => {
    for (const { r, name, local, remote } of compiled) {
      if (r.direction !== undefined && r.direction !== c.direction) continue;
      if (r.kind !== undefined && r.kind !== c.kind) continue;
      if (matches(local, c.localAddress, c.localPort) && matches(remote, c.remoteAddress, c.remotePort)) return { name, profile: r.profile };
    }
    return undefined;
  };
}
