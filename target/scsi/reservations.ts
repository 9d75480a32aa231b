/**
 * Reservations of one logical unit: persistent reservations (pr-state.ts) and the SPC-2
 * RESERVE(6)/(10) reservation, and the gate every command passes before its handler runs
 * (SPC-4 5.13.1 table 65, SBC-4 4.17.2). The gate reads the `reservation` class each command
 * declares in dispatch.ts, so which commands conflict is written down in one table.
 */
import type { Logger } from '../../hal/types.js';
import { PrState, exclusiveAccessType, registrantsType, type PersistentReservationData } from './pr-state.js';
import type { Nexus } from './task.js';
import type { UnitAttentions } from './unit-attention.js';

/**
 * How a command fares against a reservation held through another I_T nexus:
 * - `exempt`: never conflicts (INQUIRY, REPORT LUNS, REQUEST SENSE, REPORT TARGET PORT GROUPS),
 *   or its handler decides itself (RESERVE / RELEASE);
 * - `allowed`: passes every persistent reservation, but not another nexus's RESERVE(6)
 *   (TEST UNIT READY, READ CAPACITY, PERSISTENT RESERVE IN/OUT, which check keys themselves);
 * - `read`: passes Write Exclusive types, conflicts with Exclusive Access types;
 * - `write`: conflicts with both: medium writes, and what SPC-4 also fences. That includes MODE
 *   SENSE, READ BUFFER, RECEIVE COPY RESULTS, RECEIVE DIAGNOSTIC RESULTS, REPORT SUPPORTED
 *   OPERATION CODES / TASK MANAGEMENT FUNCTIONS and READ DEFECT DATA, since REPORT CAPABILITIES
 *   says ALLOW COMMANDS = 010b (they do not pass Write Exclusive).
 * Registered I_T nexuses pass registrants-only and all-registrants reservations whatever the class.
 */
export type ReservationClass = 'exempt' | 'allowed' | 'read' | 'write';

/** Where APTPL state survives a restart; keyed by LUN (one store per SCSI target device). */
export interface ReservationStore {
  load(lun: number): Promise<unknown>;
  save(lun: number, data: PersistentReservationData): Promise<void>;
}

export class Reservations {
  /** Committed persistent reservation state; PR OUT swaps in a new object (see commit()). */
  pr = new PrState();
  /** Holder of the RESERVE(6)/(10) reservation. */
  spc2Holder: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly lun: number,
    private readonly unitAttentions: UnitAttentions,
    private readonly logger: Logger,
    private readonly store?: ReservationStore,
  ) {}

  /** Whether `nexus` must get RESERVATION CONFLICT for a command of class `cls`. */
  conflicts(cls: ReservationClass, nexus: Nexus): boolean {
    if (cls === 'exempt') return false;
    if (this.spc2Holder !== undefined && this.spc2Holder !== nexus.id) return true;
    const r = this.pr.reservation;
    if (!r || cls === 'allowed' || this.pr.isHolder(nexus.id)) return false;
    if (registrantsType(r.type) && this.pr.registrations.has(nexus.id)) return false;
    return cls === 'write' || exclusiveAccessType(r.type);
  }

  /**
   * Runs PERSISTENT RESERVE OUT service actions one at a time: each works on a clone of the
   * committed state and may wait for the store, so two must not interleave.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Makes `next` the state, saving it first when APTPL is or was in force (a cleared APTPL must
   * not resurrect old state at the next start). Unit attentions go out only after that.
   */
  async commit(next: PrState, attentions: ReadonlyArray<readonly [string, number]>): Promise<void> {
    if (this.store && (next.aptpl || this.pr.aptpl)) await this.store.save(this.lun, next.toData());
    this.pr = next;
    for (const [nexusId, asc] of attentions) {
      // A nexus this LU has not seen yet starts with POWER ON, RESET, which covers it anyway.
      if (this.unitAttentions.knows(nexusId)) this.unitAttentions.establishFor(nexusId, asc);
    }
  }

  get persistent(): boolean {
    return this.store !== undefined;
  }

  /** Power on: registrations and the reservation come back only if APTPL was last set. */
  async restore(): Promise<void> {
    if (!this.store) return;
    const raw = await this.store.load(this.lun);
    if (raw === undefined || raw === null) return;
    const s = PrState.fromData(raw);
    if (!s.aptpl) return;
    this.pr = s;
    this.logger.info({ registrations: s.registrations.size, reserved: s.reservation !== undefined }, 'persistent reservations restored (APTPL)');
  }

  /** LUN reset / target reset: SPC-2 reservations end, persistent ones stay (SPC-4 5.13.1). */
  reset(): void {
    this.spc2Holder = undefined;
  }

  /** I_T nexus loss (logout, dropped connection, reinstatement): the same, for that nexus only. */
  nexusLost(nexus: Nexus): void {
    if (this.spc2Holder === nexus.id) this.spc2Holder = undefined;
  }
}
