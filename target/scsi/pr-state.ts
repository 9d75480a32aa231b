/**
 * Persistent reservation state of one logical unit (SPC-4 5.13): registrations per I_T nexus, the
 * reservation, PRgeneration and APTPL, plus the JSON form an APTPL store keeps across restarts.
 * Plain data with no I/O; persistent-reservations.ts changes a clone and commits it only once the
 * store (when APTPL asks for one) has it, so a failed save changes nothing the hosts can see.
 */

/** PERSISTENT RESERVATION TYPE codes (SPC-4 6.16.3.3). */
export const PrType = {
  WRITE_EXCLUSIVE: 0x1,
  EXCLUSIVE_ACCESS: 0x3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x8,
} as const;

export const VALID_TYPES: ReadonlySet<number> = new Set(Object.values(PrType));
export const LU_SCOPE = 0x0;

/** Registrants-only and all-registrants types: every registered I_T nexus gets access. */
export function registrantsType(type: number): boolean {
  return type >= PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
}

export function allRegistrantsType(type: number): boolean {
  return type === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS || type === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
}

/** Exclusive Access types keep non-holders from reading as well as writing. */
export function exclusiveAccessType(type: number): boolean {
  return type === PrType.EXCLUSIVE_ACCESS || type === PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
    || type === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
}

export interface Registration {
  /** The I_T nexus (Nexus.id) the key is registered for. */
  readonly nexusId: string;
  /** SCSI initiator port name ("iqn...,i,0x<ISID>"), for TransportIDs in READ FULL STATUS. */
  readonly initiatorPort: string;
  readonly relativeTargetPort: number;
  readonly key: bigint;
}

export interface Reservation {
  /** The nexus that reserved (for all-registrants types every registrant holds it). */
  readonly holder: string;
  readonly type: number;
  readonly scope: number;
}

/** What an APTPL store keeps, JSON-safe (keys as hex strings). */
export interface PersistentReservationData {
  readonly version: 1;
  readonly aptpl: boolean;
  readonly generation: number;
  readonly registrations: ReadonlyArray<{ nexus: string; initiatorPort: string; relativeTargetPort: number; key: string }>;
  readonly reservation?: { holder: string; type: number; scope: number };
}

export class PrState {
  generation = 0;
  aptpl = false;
  /** By nexus id; Map order is registration order, which READ KEYS reports. */
  readonly registrations = new Map<string, Registration>();
  reservation: Reservation | undefined;

  clone(): PrState {
    const c = new PrState();
    c.generation = this.generation;
    c.aptpl = this.aptpl;
    for (const [id, r] of this.registrations) c.registrations.set(id, r);
    c.reservation = this.reservation;
    return c;
  }

  /** PRgeneration is a 32-bit counter that wraps (SPC-4 6.15.2). */
  bumpGeneration(): void {
    this.generation = (this.generation + 1) >>> 0;
  }

  isHolder(nexusId: string): boolean {
    const r = this.reservation;
    if (!r) return false;
    return allRegistrantsType(r.type) ? this.registrations.has(nexusId) : r.holder === nexusId;
  }

  /**
   * Removes a registration; a holder losing its registration loses the reservation, and an
   * all-registrants reservation ends with its last registrant (SPC-4 5.13.11.2.3). Returns
   * whether the reservation was released because of it.
   */
  unregister(nexusId: string): boolean {
    this.registrations.delete(nexusId);
    const r = this.reservation;
    if (!r) return false;
    const released = allRegistrantsType(r.type) ? this.registrations.size === 0 : r.holder === nexusId;
    if (released) this.reservation = undefined;
    return released;
  }

  toData(): PersistentReservationData {
    return {
      version: 1,
      aptpl: this.aptpl,
      generation: this.generation,
      registrations: [...this.registrations.values()].map((r) => ({
        nexus: r.nexusId, initiatorPort: r.initiatorPort, relativeTargetPort: r.relativeTargetPort, key: r.key.toString(16),
      })),
      reservation: this.reservation && { ...this.reservation },
    };
  }

  /** Rebuilds state from a store; throws on anything that is not what toData() wrote. */
  static fromData(raw: unknown): PrState {
    const d = raw as PersistentReservationData;
    const bad = (why: string): never => {
      throw new Error(`stored persistent reservations are invalid: ${why}`);
    };
    if (typeof d !== 'object' || d === null || d.version !== 1) bad('unknown version');
    if (typeof d.aptpl !== 'boolean' || !Number.isInteger(d.generation) || !Array.isArray(d.registrations)) bad('missing fields');
    const s = new PrState();
    s.aptpl = d.aptpl;
    s.generation = d.generation >>> 0;
    for (const r of d.registrations) {
      if (typeof r?.nexus !== 'string' || typeof r.initiatorPort !== 'string' || !Number.isInteger(r.relativeTargetPort)
        || typeof r.key !== 'string' || !/^[0-9a-f]{1,16}$/.test(r.key)) bad('malformed registration');
      const key = BigInt(`0x${r.key}`);
      if (key === 0n) bad('zero reservation key');
      s.registrations.set(r.nexus, { nexusId: r.nexus, initiatorPort: r.initiatorPort, relativeTargetPort: r.relativeTargetPort, key });
    }
    const res = d.reservation;
    if (res !== undefined && res !== null) {
      if (typeof res.holder !== 'string' || !VALID_TYPES.has(res.type) || res.scope !== LU_SCOPE) bad('malformed reservation');
      if (!allRegistrantsType(res.type) && !s.registrations.has(res.holder)) bad('reservation holder is not registered');
      s.reservation = { holder: res.holder, type: res.type, scope: res.scope };
    }
    return s;
  }
}
