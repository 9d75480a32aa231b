/**
 * Unit attention conditions of one logical unit, per I_T nexus (SAM-5 5.14, SPC-4 5.14 with
 * UA_INTLCK_CTRL=00b). A nexus the LU has never seen starts with POWER ON, RESET. A reset
 * condition supersedes whatever was queued: the host must rediscover state anyway. Conditions
 * are reported oldest first, one per command.
 */
import { Asc } from './sense.js';

/** Bound per nexus: a host that never looks must not make the target grow. */
const MAX_QUEUED = 16;
/**
 * Bound on remembered lost nexuses. Initiators such as libiscsi pick a fresh ISID per session, so
 * every session ever seen would otherwise stay here. Forgetting the oldest lost one is safe: if it
 * comes back it gets POWER ON, RESET, which supersedes the I_T NEXUS LOSS it would have seen.
 */
export const MAX_LOST_NEXUSES = 256;

export class UnitAttentions {
  private readonly pending = new Map<string, number[]>();
  /** Lost nexuses, oldest first (a Set keeps insertion order). */
  private readonly lostNexuses = new Set<string>();

  /** Registers the nexus on its first command to this LU (POWER ON, RESET OCCURRED). */
  arrive(nexusId: string): void {
    if (this.lostNexuses.size > 0) this.lostNexuses.delete(nexusId);
    if (!this.pending.has(nexusId)) this.pending.set(nexusId, [Asc.POWER_ON_RESET_OCCURRED]);
  }

  /** The I_T nexus is gone: I_T NEXUS LOSS OCCURRED if it comes back (SPC-4 6.x), bounded memory. */
  lost(nexusId: string): void {
    if (!this.pending.has(nexusId)) return;
    this.establishFor(nexusId, Asc.I_T_NEXUS_LOSS_OCCURRED);
    this.lostNexuses.delete(nexusId);
    this.lostNexuses.add(nexusId);
    while (this.lostNexuses.size > MAX_LOST_NEXUSES) {
      const oldest = this.lostNexuses.values().next().value as string;
      this.lostNexuses.delete(oldest);
      this.pending.delete(oldest);
    }
  }

  /** Nexuses this LU keeps state for (live and remembered lost ones). */
  get size(): number {
    return this.pending.size;
  }

  knows(nexusId: string): boolean {
    return this.pending.has(nexusId);
  }

  /** The oldest condition for this nexus, removed (it is being reported). */
  take(nexusId: string): number | undefined {
    return this.pending.get(nexusId)?.shift();
  }

  peek(nexusId: string): number | undefined {
    return this.pending.get(nexusId)?.[0];
  }

  /** Establishes `asc` for every nexus seen so far, except `except`. */
  establish(asc: number, except?: string): void {
    for (const id of this.pending.keys()) {
      if (id !== except) this.establishFor(id, asc);
    }
  }

  establishFor(nexusId: string, asc: number): void {
    let q = this.pending.get(nexusId);
    if (!q) {
      q = [];
      this.pending.set(nexusId, q);
    }
    if (isReset(asc)) {
      q.length = 0;
      q.push(asc);
      return;
    }
    if (q.includes(asc) || q.length >= MAX_QUEUED) return;
    q.push(asc);
  }
}

function isReset(asc: number): boolean {
  return asc >> 8 === 0x29;
}
