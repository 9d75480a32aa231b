/**
 * The SCSI target device behind one iSCSI target: routes each task to its logical unit, answers
 * for LUNs that have none, and turns every failure into a SCSI status. Nothing escapes execute():
 * errors are host-visible answers (sense data), and an unexpected one is a HARDWARE ERROR plus a
 * log line, never an exception into the transport.
 */
import type { Volume } from '../../firmware/volume.js';
import { MediumError } from '../../firmware/volume.js';
import type { Clock } from '../../hal/clock.js';
import { nullLogger, type Logger } from '../../hal/types.js';
import { COMMANDS, validateCdb } from './dispatch.js';
import { inquiryWithoutLu } from './inquiry.js';
import { LuRegistry } from './lu-registry.js';
import { LogicalUnit, type Identity, type ProductIdentity, type TargetContext } from './logical-unit.js';
import { MAX_LUN, reportLunsFor } from './report-luns.js';
import type { ReservationStore } from './reservations.js';
import { requestSenseWithoutLu } from './request-sense.js';
import { Asc, CheckCondition, SenseKey, checkConditionResult, illegalRequest, mediumErrorSense } from './sense.js';
import {
  Status, TaskAbortedError, type DeviceServer, type TaskOwner, type Nexus, type ScsiResult, type ScsiTask, type TaskIo,
} from './task.js';

const DEFAULT_SANITIZE_RATE = 128 * 2 ** 20;

export interface LogicalUnitConfig {
  volume: Volume;
  /** Unit serial number (VPD 80h), printable ASCII. */
  serial: string;
  /** NAA IEEE Registered Extended (NAA 6) identifier, 128 bits, for VPD 83h. */
  naa?: bigint;
  /** Standard INQUIRY identification: up to 8 / 16 / 4 printable ASCII characters. */
  vendor?: string;
  product?: string;
  revision?: string;
  /** Block limits OPTIMAL TRANSFER LENGTH GRANULARITY in blocks; default: 4 KiB worth, at least 1. */
  optimalTransferGranularity?: number;
  /** Thin provisioned (LBPME, UNMAP, GET LBA STATUS): needs a volume whose discard deallocates. */
  thin?: boolean;
  /**
   * SANITIZE runs as a background operation at this media rate (bytes/s), as a drive's does: an
   * overwrite of a real disk takes capacity / media rate, and hosts (and libiscsi's Sanitize.Reset)
   * rely on it still running seconds later. Default 128 MiB/s (a disk's sequential rate); 0 = as fast as the medium goes.
   */
  sanitizeRate?: number;
}

export interface ScsiDeviceServerOptions {
  luns: Map<number, LogicalUnitConfig>;
  targetName: string;
  clock: Clock;
  logger?: Logger;
  /** Relative target port identifiers (iSCSI target portal group tags); default [1]. */
  targetPorts?: readonly number[];
  /** Where APTPL persistent reservations are kept; without one APTPL=1 is refused (PTPL_C=0). */
  reservationStore?: ReservationStore;
  /** Every LU of the node by NAA id, for EXTENDED COPY between targets; default: this target's. */
  copyTargets?: LuRegistry;
}

const DEFAULT_VENDOR = 'KURA';
const DEFAULT_PRODUCT = 'KURA VOLUME';
const DEFAULT_REVISION = '0001';

/** Opcodes a LUN without a logical unit still answers (SPC-4 6.6, 6.33, 6.39). */
const INQUIRY = 0x12;
const REPORT_LUNS = 0xa0;
const REQUEST_SENSE = 0x03;

export class ScsiDeviceServer implements DeviceServer {
  private readonly units = new Map<number, LogicalUnit>();
  private readonly target: TargetContext;
  private readonly logger: Logger;
  private readonly absentIdentity: ProductIdentity;
  private owner: TaskOwner | undefined;

  constructor(options: ScsiDeviceServerOptions) {
    this.logger = options.logger ?? nullLogger;
    const entries = [...options.luns].sort(([a], [b]) => a - b);
    const luns = entries.map(([lun]) => lun);
    const ports = [...new Set(options.targetPorts ?? [1])].sort((a, b) => a - b);
    if (ports.length === 0 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 0xffff)) {
      throw new Error(`target ports ${ports.join(',')} are not 1..65535`);
    }
    this.target = {
      targetName: options.targetName, clock: options.clock, lunList: () => luns, targetPorts: () => ports,
      abortTasks: (lun, ids) => this.owner?.abortTasks(lun, ids),
    };
    this.absentIdentity = productIdentity({});
    const copyTargets = options.copyTargets ?? new LuRegistry();
    for (const [lun, config] of entries) {
      if (!Number.isInteger(lun) || lun < 0 || lun > MAX_LUN) throw new Error(`LUN ${lun} is outside 0..${MAX_LUN}`);
      checkVolume(lun, config.volume);
      const granularity = config.optimalTransferGranularity ?? Math.max(1, Math.floor(4096 / config.volume.blockSize));
      if (!Number.isInteger(granularity) || granularity < 1 || granularity > 0xffff) {
        throw new Error(`LUN ${lun}: optimalTransferGranularity ${granularity} is not in 1..65535`);
      }
      if (config.thin && !(config.volume.canDiscard && config.volume.discard)) {
        throw new Error(`LUN ${lun}: thin provisioning needs a volume whose media deallocate on discard (volume ${config.volume.name} cannot)`);
      }
      const lu = new LogicalUnit({
        lun,
        volume: config.volume,
        identity: identity(lun, config),
        target: this.target,
        logger: this.logger.child({ lun }),
        optimalTransferGranularity: granularity,
        reservationStore: options.reservationStore,
        thin: config.thin ?? false,
        sanitizeRate: config.sanitizeRate ?? DEFAULT_SANITIZE_RATE,
        copyTargets,
      });
      this.units.set(lun, lu);
      copyTargets.add(lu);
    }
  }

  /** The logical unit at `lun`, if any. */
  logicalUnit(lun: number): LogicalUnit | undefined {
    return this.units.get(lun);
  }

  attach(owner: TaskOwner): void {
    this.owner = owner;
  }

  /** Power on: brings back persistent reservations a host asked to keep (APTPL). Before serving. */
  async restore(): Promise<void> {
    for (const lu of this.units.values()) {
      try {
        await lu.reservations.restore();
      } catch (err) {
        throw new Error(`target ${this.target.targetName} LUN ${lu.lun}: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  hasLun(lun: number): boolean {
    return this.units.has(lun);
  }

  async execute(task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
    try {
      const lu = this.units.get(task.lun);
      return lu ? await lu.execute(task, io) : this.executeWithoutLu(task);
    } catch (err) {
      return this.failure(task, err);
    }
  }

  lunReset(lun: number, from: Nexus): void {
    const lu = this.units.get(lun);
    if (!lu) return;
    this.logger.info({ lun, nexus: from.id }, 'logical unit reset');
    lu.reset();
  }

  targetReset(from: Nexus): void {
    this.logger.info({ nexus: from.id }, 'target reset');
    for (const lu of this.units.values()) lu.reset();
  }

  nexusLost(nexus: Nexus): void {
    for (const lu of this.units.values()) lu.nexusLost(nexus);
  }

  private executeWithoutLu(task: ScsiTask): ScsiResult {
    const cmd = COMMANDS.find((c) => c.opcode === task.cdb[0]);
    switch (cmd?.opcode) {
      case INQUIRY:
        validateCdb(cmd, task.cdb);
        return inquiryWithoutLu(this.absentIdentity, task);
      case REPORT_LUNS:
        validateCdb(cmd, task.cdb);
        return reportLunsFor(this.target, task);
      case REQUEST_SENSE:
        validateCdb(cmd, task.cdb);
        return requestSenseWithoutLu(task);
      default:
        throw illegalRequest(Asc.LOGICAL_UNIT_NOT_SUPPORTED);
    }
  }

  private failure(task: ScsiTask, err: unknown): ScsiResult {
    if (err instanceof CheckCondition) return err.toResult();
    if (err instanceof TaskAbortedError) return { status: Status.TASK_ABORTED };
    if (err instanceof MediumError) {
      this.logger.warn({ lun: task.lun, tag: task.tag, op: err.op, lba: err.lba, err }, 'medium error');
      return checkConditionResult(mediumErrorSense(err.op, err.lba));
    }
    this.logger.error({ lun: task.lun, tag: task.tag, opcode: task.cdb[0], err }, 'internal error executing SCSI command');
    return checkConditionResult({ key: SenseKey.HARDWARE_ERROR, asc: Asc.INTERNAL_TARGET_FAILURE });
  }
}

function checkVolume(lun: number, v: Volume): void {
  if (!Number.isSafeInteger(v.blockCount) || v.blockCount < 1) throw new Error(`LUN ${lun}: volume has no blocks`);
  if (!Number.isInteger(v.blockSize) || v.blockSize < 1 || v.blockSize > 0xffffff) {
    throw new Error(`LUN ${lun}: block size ${v.blockSize} does not fit the block descriptor`);
  }
  if (!Number.isInteger(v.maxTransferBlocks) || v.maxTransferBlocks < 1) {
    throw new Error(`LUN ${lun}: maxTransferBlocks must be a positive integer`);
  }
}

/** SPC-4 4.4.1: ASCII data fields hold 20h..7Eh only. */
function printable(what: string, s: string, max: number): string {
  if (s.length > max || !/^[\x20-\x7e]*$/.test(s)) throw new Error(`${what} "${s}" is not up to ${max} printable ASCII characters`);
  return s;
}

function productIdentity(c: { vendor?: string; product?: string; revision?: string }): ProductIdentity {
  return {
    vendor: printable('vendor', c.vendor ?? DEFAULT_VENDOR, 8).padEnd(8, ' '),
    product: printable('product', c.product ?? DEFAULT_PRODUCT, 16).padEnd(16, ' '),
    revision: printable('revision', c.revision ?? DEFAULT_REVISION, 4).padEnd(4, ' '),
  };
}

function identity(lun: number, c: LogicalUnitConfig): Identity {
  // The T10 vendor ID designator holds vendor + product + serial in at most 255 bytes.
  const serial = printable(`LUN ${lun} serial`, c.serial, 255 - 24);
  if (serial.length === 0) throw new Error(`LUN ${lun}: serial must not be empty`);
  if (c.naa !== undefined && (c.naa >> 124n !== 6n || c.naa >= 1n << 128n)) {
    throw new Error(`LUN ${lun}: naa is not a 128-bit NAA 6 identifier`);
  }
  return { ...productIdentity(c), serial, naa: c.naa };
}
