/**
 * SendTargets (RFC 7143 §13.3 and Appendix C): the target names and portal addresses an
 * initiator may use. Discovery sessions list every target the initiator is allowed to see;
 * Normal sessions only describe the target they are logged in to.
 */
import { IscsiTargetDefinition, Portal, ServerConfig, targetAllows } from './context.js';
import type { SessionType } from './params.js';
import type { TextPairs } from './text.js';

export interface SendTargetsContext {
  config: ServerConfig;
  sessionType: SessionType;
  initiatorName: string;
  /** The session's target (Normal sessions). */
  target: IscsiTargetDefinition | undefined;
  /** Our address on this connection, for portals configured with a wildcard host. */
  localAddress: string;
}

const WILDCARD = new Set(['', '0.0.0.0', '::', '[::]']);

export function formatTargetAddress(portal: Portal, tpgt: number, localAddress: string): string {
  const host = WILDCARD.has(portal.host) ? localAddress : portal.host;
  // IPv6 literals go in brackets so that the ':port' stays parseable.
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${h}:${portal.port},${tpgt}`;
}

function describe(t: IscsiTargetDefinition, ctx: SendTargetsContext, out: TextPairs): void {
  out.push(['TargetName', t.name]);
  for (const p of ctx.config.portals) {
    out.push(['TargetAddress', formatTargetAddress(p, p.portalGroupTag ?? ctx.config.portalGroupTag, ctx.localAddress)]);
  }
}

/** The answer to SendTargets=<value>: TargetName/TargetAddress groups, or SendTargets=Reject. */
export function sendTargets(value: string, ctx: SendTargetsContext): TextPairs {
  const out: TextPairs = [];
  if (ctx.sessionType === 'Discovery') {
    if (value === '') return [['SendTargets', 'Reject']];
    for (const t of ctx.config.targets) {
      if ((value === 'All' || value === t.name) && targetAllows(t, ctx.initiatorName)) describe(t, ctx, out);
    }
    return out;
  }
  // A Normal session may only learn about its own target.
  const t = ctx.target;
  if (t && (value === '' || value === 'All' || value === t.name)) describe(t, ctx, out);
  return out;
}
