/**
 * Fixed-format sense data (SPC-4 4.5.3) and the CheckCondition error handlers throw to end a
 * command with CHECK CONDITION. Only the fixed format exists here: the control mode page reports
 * D_SENSE=0 and does not let hosts change it.
 */
import { Status, type ScsiResult } from './task.js';

export const SenseKey = {
  NO_SENSE: 0x0,
  RECOVERED_ERROR: 0x1,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  COPY_ABORTED: 0xa,
  ABORTED_COMMAND: 0xb,
  MISCOMPARE: 0xe,
} as const;

/** Additional sense code and qualifier as one 16-bit value: ASC << 8 | ASCQ. */
export const Asc = {
  NO_ADDITIONAL_SENSE: 0x0000,
  OPERATION_IN_PROGRESS: 0x0016,
  NOT_READY_INITIALIZING_COMMAND_REQUIRED: 0x0402,
  NOT_READY_SANITIZE_IN_PROGRESS: 0x041b,
  UNREACHABLE_COPY_TARGET: 0x0804,
  WRITE_ERROR: 0x0c00,
  INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT: 0x0e03,
  UNRECOVERED_READ_ERROR: 0x1100,
  PARAMETER_LIST_LENGTH_ERROR: 0x1a00,
  MISCOMPARE_DURING_VERIFY: 0x1d00,
  INVALID_COMMAND_OPERATION_CODE: 0x2000,
  LBA_OUT_OF_RANGE: 0x2100,
  INVALID_FIELD_IN_CDB: 0x2400,
  LOGICAL_UNIT_NOT_SUPPORTED: 0x2500,
  INVALID_FIELD_IN_PARAMETER_LIST: 0x2600,
  TOO_MANY_TARGET_DESCRIPTORS: 0x2606,
  UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: 0x2607,
  TOO_MANY_SEGMENT_DESCRIPTORS: 0x2608,
  UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: 0x2609,
  INVALID_RELEASE_OF_PERSISTENT_RESERVATION: 0x2604,
  WRITE_PROTECTED: 0x2700,
  SOFTWARE_WRITE_PROTECTED: 0x2702,
  POWER_ON_RESET_OCCURRED: 0x2900,
  BUS_DEVICE_RESET_FUNCTION_OCCURRED: 0x2903,
  I_T_NEXUS_LOSS_OCCURRED: 0x2907,
  MODE_PARAMETERS_CHANGED: 0x2a01,
  RESERVATIONS_PREEMPTED: 0x2a03,
  RESERVATIONS_RELEASED: 0x2a04,
  REGISTRATIONS_PREEMPTED: 0x2a05,
  SANITIZE_COMMAND_FAILED: 0x3103,
  SAVING_PARAMETERS_NOT_SUPPORTED: 0x3900,
  INTERNAL_TARGET_FAILURE: 0x4400,
  INSUFFICIENT_REGISTRATION_RESOURCES: 0x5504,
} as const;

/** Sense-key specific field pointer (SPC-4 4.5.2.4.2) for ILLEGAL REQUEST. */
export interface FieldPointer {
  /** true: the error is in the CDB (C/D=1); false: in the parameter list. */
  readonly cdb: boolean;
  readonly byte: number;
  /** Most significant bit of the field in error; omitted when the field is whole bytes. */
  readonly bit?: number;
}

export interface SenseSpec {
  readonly key: number;
  /** ASC << 8 | ASCQ, one of `Asc`. */
  readonly asc: number;
  /** INFORMATION field; VALID is set only when present and it fits the 4-byte field. */
  readonly information?: number | bigint;
  readonly fieldPointer?: FieldPointer;
  /** COMMAND-SPECIFIC INFORMATION (bytes 8-11), e.g. the failed segment of an EXTENDED COPY. */
  readonly commandSpecific?: number;
  /** NOT READY progress indication (SPC-4 4.5.2.4.4): done / 65536. */
  readonly progress?: number;
}

export const FIXED_SENSE_LENGTH = 18;

export function fixedSense(spec: SenseSpec): Uint8Array {
  const s = new Uint8Array(FIXED_SENSE_LENGTH);
  s[0] = 0x70; // current error, fixed format
  s[2] = spec.key & 0x0f;
  if (spec.information !== undefined) {
    const i = spec.information;
    const info = typeof i === 'bigint' ? i : Number.isSafeInteger(i) ? BigInt(i) : -1n;
    if (info >= 0n && info <= 0xffffffffn) {
      s[0] |= 0x80;
      writeU32(s, 3, Number(info));
    }
  }
  s[7] = FIXED_SENSE_LENGTH - 8;
  s[12] = (spec.asc >> 8) & 0xff;
  s[13] = spec.asc & 0xff;
  if (spec.commandSpecific !== undefined) writeU32(s, 8, spec.commandSpecific);
  if (spec.progress !== undefined) {
    const p = Math.max(0, Math.min(0xffff, Math.floor(spec.progress)));
    s[15] = 0x80;
    s[16] = p >> 8;
    s[17] = p & 0xff;
  }
  const fp = spec.fieldPointer;
  if (fp) {
    s[15] = 0x80 | (fp.cdb ? 0x40 : 0) | (fp.bit !== undefined ? 0x08 | (fp.bit & 0x07) : 0);
    s[16] = (fp.byte >> 8) & 0xff;
    s[17] = fp.byte & 0xff;
  }
  return s;
}

/** Thrown by a handler to end the command with CHECK CONDITION and this sense data. */
export class CheckCondition extends Error {
  constructor(readonly spec: SenseSpec) {
    super(`CHECK CONDITION key=${spec.key.toString(16)} asc/ascq=${spec.asc.toString(16).padStart(4, '0')}`);
    this.name = 'CheckCondition';
  }

  get sense(): Uint8Array {
    return fixedSense(this.spec);
  }

  toResult(): ScsiResult {
    return checkConditionResult(this.spec);
  }
}

export function checkConditionResult(spec: SenseSpec): ScsiResult {
  return { status: Status.CHECK_CONDITION, sense: fixedSense(spec) };
}

export function illegalRequest(asc: number, fieldPointer?: FieldPointer): CheckCondition {
  return new CheckCondition({ key: SenseKey.ILLEGAL_REQUEST, asc, fieldPointer });
}

export function invalidFieldInCdb(byte: number, bit?: number): CheckCondition {
  return illegalRequest(Asc.INVALID_FIELD_IN_CDB, { cdb: true, byte, bit });
}

export function invalidFieldInParameterList(byte: number, bit?: number): CheckCondition {
  return illegalRequest(Asc.INVALID_FIELD_IN_PARAMETER_LIST, { cdb: false, byte, bit });
}

export function parameterListLengthError(): CheckCondition {
  return illegalRequest(Asc.PARAMETER_LIST_LENGTH_ERROR);
}

export function lbaOutOfRange(): CheckCondition {
  return illegalRequest(Asc.LBA_OUT_OF_RANGE);
}

/** Index of the most significant set bit of a byte (0..7); the bit pointer of a bad field. */
export function msb(byte: number): number {
  return 31 - Math.clz32(byte & 0xff);
}

function writeU32(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 24) & 0xff;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}

/**
 * A failed medium operation as sense data: reads are UNRECOVERED READ ERROR, everything that
 * writes (write, flush, discard) WRITE ERROR; the LBA goes to the INFORMATION field when known.
 */
export function mediumErrorSense(op: 'read' | 'write' | 'flush' | 'discard', lba: number): SenseSpec {
  const asc = op === 'read' ? Asc.UNRECOVERED_READ_ERROR : Asc.WRITE_ERROR;
  const information = Number.isSafeInteger(lba) && lba >= 0 ? lba : undefined;
  return { key: SenseKey.MEDIUM_ERROR, asc, information };
}
