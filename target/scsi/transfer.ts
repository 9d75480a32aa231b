/**
 * Data phase helpers shared by the command families: Data-In is cut to the allocation length
 * (the transport cuts further to the Expected Data Transfer Length and reports residuals), and a
 * Data-Out command whose EDTL cannot carry what its CDB describes is refused before any data moves.
 */
import { Asc, SenseKey, fixedSense } from './sense.js';
import { Status, type ScsiResult, type ScsiTask } from './task.js';

export function good(): ScsiResult {
  return { status: Status.GOOD };
}

export function dataIn(data: Uint8Array, allocationLength: number): ScsiResult {
  return { status: Status.GOOD, data: allocationLength >= data.length ? data : data.subarray(0, allocationLength) };
}

/**
 * FCP-4 / SAM-5 option (b) for EDTL < SPDTL on a Data-Out command: transfer nothing and answer
 * ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT. Writing a prefix of the data instead
 * would mean writing partial blocks. Returns undefined when the EDTL covers `bytes`.
 */
export function refuseShortDataOut(task: ScsiTask, bytes: number): ScsiResult | undefined {
  if (task.expectedLength >= bytes) return undefined;
  return {
    status: Status.CHECK_CONDITION,
    sense: fixedSense({ key: SenseKey.ILLEGAL_REQUEST, asc: Asc.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT }),
    spdtl: bytes,
  };
}
