/**
 * What a command family file exports to the dispatcher: handlers plus the descriptor that says
 * which CDB bits they evaluate. The same descriptors answer REPORT SUPPORTED OPERATION CODES, so
 * what is reported and what is accepted cannot drift apart.
 */
import type { LogicalUnit } from './logical-unit.js';
import type { ReservationClass } from './reservations.js';
import type { ScsiResult, ScsiTask, TaskIo } from './task.js';

export type CommandHandler = (lu: LogicalUnit, task: ScsiTask, io: TaskIo) => Promise<ScsiResult>;

/** How a command touches the medium: write-protection (and later reservations) key on it. */
export type MediumAccess = 'none' | 'read' | 'write';

export interface CommandDescriptor {
  readonly opcode: number;
  /** For opcodes with service actions: the SERVICE ACTION field value (byte 1 bits 4:0). */
  readonly serviceAction?: number;
  readonly name: string;
  /**
   * CDB USAGE DATA (SPC-4 6.35.3): one byte per CDB byte, a bit set for every bit the device
   * server evaluates. Its length is the CDB length. The dispatcher rejects any other bit set
   * with INVALID FIELD IN CDB, including the control byte's NACA (no ACA support).
   */
  readonly usage: readonly number[];
  /**
   * Where unused bits of a byte split into separate fields (bit set = most significant bit of a
   * field), for bytes where adjacent unused bits are not one field. Sense-key specific bit
   * pointers name the top of the offending field (SPC-4 4.5.2.4.2).
   */
  readonly fieldTops?: Readonly<Record<number, number>>;
  readonly access: MediumAccess;
  /**
   * How the command fares against a reservation held through another I_T nexus (reservations.ts;
   * SPC-4 table 65, SBC-4 table 13). A function for commands whose CDB decides (START STOP UNIT...).
   */
  readonly reservation: ReservationClass | ((cdb: Uint8Array) => ReservationClass);
  readonly handler: CommandHandler;
  /** INQUIRY, REPORT LUNS and REQUEST SENSE neither report nor clear unit attentions here. */
  readonly bypassesUnitAttention?: boolean;
  /** Command timeouts descriptor (seconds; 0 = not specified). */
  readonly timeouts?: { readonly nominal: number; readonly recommended: number };
  /** Commands that depend on a feature of the LU (thin provisioning, ALUA, ...). */
  readonly availableOn?: (lu: LogicalUnit) => boolean;
}

/** Opcodes whose byte 1 bits 4:0 are a SERVICE ACTION field. */
export const SERVICE_ACTION_MASK = 0x1f;
