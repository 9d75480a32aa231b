/**
 * One logical unit: its volume, identity, unit attentions, mode parameters and the commands it
 * offers. State that later features need per LU (reservations, ALUA state, LBA-range locks for
 * COMPARE AND WRITE, provisioning) belongs here, next to what the handlers already read.
 */
import type { Volume } from '../../firmware/volume.js';
import type { Clock } from '../../hal/clock.js';
import type { Logger } from '../../hal/types.js';
import { CopyResults } from './copy-results.js';
import { CommandSet, COMMANDS, validateCdb } from './dispatch.js';
import { LuRegistry } from './lu-registry.js';
import { ModeParameters } from './mode-pages.js';
import { RangeLock } from './range-lock.js';
import { Reservations, type ReservationStore } from './reservations.js';
import { SanitizeState } from './sanitize-state.js';
import { Asc, CheckCondition, SenseKey } from './sense.js';
import { Status, TaskAbortedError, type Nexus, type ScsiResult, type ScsiTask, type TaskIo } from './task.js';
import { UnitAttentions } from './unit-attention.js';

const TEST_UNIT_READY = 0x00;

/** Standard INQUIRY identification, already space-padded to 8 / 16 / 4 characters. */
export interface ProductIdentity {
  readonly vendor: string;
  readonly product: string;
  readonly revision: string;
}

export interface Identity extends ProductIdentity {
  readonly serial: string;
  /** NAA IEEE Registered Extended (type 6) identifier, 128 bits. */
  readonly naa?: bigint;
}

/** What an LU needs to know about the SCSI target device it belongs to. */
export interface TargetContext {
  /** iSCSI name of the target: the SCSI target device name. */
  readonly targetName: string;
  readonly clock: Clock;
  /** Every LUN of the target, ascending (REPORT LUNS). */
  lunList(): readonly number[];
  /** Relative target port identifiers of the target's ports, ascending (ALUA, REGISTER AND MOVE). */
  targetPorts(): readonly number[];
  /** Abort other I_T nexuses' tasks at an LU, through the transport that owns them. */
  abortTasks(lun: number, nexusIds: ReadonlySet<string>): void;
}

export interface LogicalUnitOptions {
  readonly lun: number;
  readonly volume: Volume;
  readonly identity: Identity;
  readonly target: TargetContext;
  readonly logger: Logger;
  /** OPTIMAL TRANSFER LENGTH GRANULARITY of the block limits page, in blocks. */
  readonly optimalTransferGranularity: number;
  /** Keeps persistent reservations across restarts when a host sets APTPL; none: PTPL_C=0. */
  readonly reservationStore?: ReservationStore;
  /** Thin provisioned: LBPME, UNMAP, WRITE SAME with UNMAP (the volume's discard deallocates). */
  readonly thin?: boolean;
  /** The node's LUs by NAA id (EXTENDED COPY copy targets). */
  readonly copyTargets?: LuRegistry;
  /** Media rate a SANITIZE runs at, bytes/s (0: as fast as the medium goes). */
  readonly sanitizeRate?: number;
}

export class LogicalUnit {
  readonly lun: number;
  readonly volume: Volume;
  readonly identity: Identity;
  readonly target: TargetContext;
  readonly logger: Logger;
  readonly optimalTransferGranularity: number;
  readonly unitAttentions = new UnitAttentions();
  readonly mode = new ModeParameters();
  /** Commands that write blocks hold their range here (COMPARE AND WRITE atomicity). */
  readonly locks = new RangeLock();
  readonly reservations: Reservations;
  readonly thin: boolean;
  readonly copyTargets: LuRegistry;
  readonly sanitizeRate: number;
  /** EXTENDED COPY status kept for RECEIVE COPY RESULTS. */
  readonly copies = new CopyResults();
  /** A sanitize in progress or failed refuses all but INQUIRY, REPORT LUNS, REQUEST SENSE (SBC-4 4.11). */
  readonly sanitize = new SanitizeState();
  /** Stopped by START STOP UNIT (START=0): media access and TEST UNIT READY are NOT READY until started. */
  stopped = false;
  readonly commands: CommandSet;

  constructor(o: LogicalUnitOptions) {
    this.lun = o.lun;
    this.volume = o.volume;
    this.identity = o.identity;
    this.target = o.target;
    this.logger = o.logger;
    this.optimalTransferGranularity = o.optimalTransferGranularity;
    this.reservations = new Reservations(o.lun, this.unitAttentions, o.logger, o.reservationStore);
    this.thin = o.thin ?? false;
    this.copyTargets = o.copyTargets ?? new LuRegistry();
    this.sanitizeRate = o.sanitizeRate ?? 0;
    this.commands = new CommandSet(COMMANDS.filter((c) => c.availableOn?.(this) ?? true));
  }

  async execute(task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
    if (io.aborted) throw new TaskAbortedError();
    const nexus = task.nexus.id;
    this.unitAttentions.arrive(nexus);
    const cmd = this.commands.lookup(task.cdb);
    // RESERVATION CONFLICT takes precedence over CHECK CONDITION, a unit attention included,
    // which stays pending (SAM-5 5.3.2).
    if (!(cmd instanceof CheckCondition)) {
      const cls = typeof cmd.reservation === 'function' ? cmd.reservation(task.cdb) : cmd.reservation;
      if (this.reservations.conflicts(cls, task.nexus)) return { status: Status.RESERVATION_CONFLICT };
    }
    // A pending unit attention wins over everything but the three commands SPC-4 exempts, even
    // over an unsupported opcode: the host learns about the reset first.
    if (cmd instanceof CheckCondition || !cmd.bypassesUnitAttention) {
      const ua = this.unitAttentions.take(nexus);
      if (ua !== undefined) return new CheckCondition({ key: SenseKey.UNIT_ATTENTION, asc: ua }).toResult();
    }
    if (cmd instanceof CheckCondition) throw cmd;
    // A sanitize in progress refuses commands whatever their CDB says (libiscsi Sanitize.Reset).
    const sanitizing = this.sanitize.refusal(cmd);
    if (sanitizing) throw sanitizing;
    validateCdb(cmd, task.cdb);
    if (this.stopped && (cmd.access !== 'none' || cmd.opcode === TEST_UNIT_READY)) {
      throw new CheckCondition({ key: SenseKey.NOT_READY, asc: Asc.NOT_READY_INITIALIZING_COMMAND_REQUIRED });
    }
    if (cmd.access === 'write') {
      const wp = this.writeProtection();
      if (wp !== undefined) throw new CheckCondition({ key: SenseKey.DATA_PROTECT, asc: wp });
    }
    return await cmd.handler(this, task, io);
  }

  /** Why writes are refused, as an ASC/ASCQ, or undefined when they are allowed. */
  writeProtection(): number | undefined {
    if (this.volume.readOnly) return Asc.WRITE_PROTECTED;
    if (this.mode.swp) return Asc.SOFTWARE_WRITE_PROTECTED;
    return undefined;
  }

  /** Target port group of a target port: each port is its own group (alua.ts). */
  targetPortGroup(relativeTargetPort: number): number {
    return relativeTargetPort;
  }

  /**
   * SCSI target port name as iSCSI defines it: "<target name>,t,0x<TPGT>" (RFC 7143). Assumes the
   * iSCSI layer uses the target portal group tag as the relative target port identifier.
   */
  targetPortName(nexus: Nexus): string {
    return `${this.target.targetName},t,0x${nexus.relativeTargetPort.toString(16).padStart(4, '0')}`;
  }

  /** LOGICAL UNIT RESET or TARGET WARM RESET reached this LU (tasks are aborted by the transport). */
  reset(): void {
    this.mode.reset();
    this.reservations.reset();
    this.unitAttentions.establish(Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED);
  }

  nexusLost(nexus: Nexus): void {
    this.reservations.nexusLost(nexus);
    this.copies.nexusLost(nexus.id);
    this.unitAttentions.lost(nexus.id);
  }

  /** Mode parameters changed through `by`: every other nexus hears about it (SPC-4 5.14). */
  modeParametersChanged(by: Nexus): void {
    this.unitAttentions.establish(Asc.MODE_PARAMETERS_CHANGED, by.id);
  }
}
