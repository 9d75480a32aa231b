/**
 * REQUEST SENSE (SPC-4 6.39). Sense data of failed commands goes out with their status
 * (autosense), so no sense data is ever pending here and the answer is NO SENSE. A pending unit
 * attention is preserved, not reported: SPC-4 5.14 lets the device server report pending sense
 * data and keep the unit attention (option a), and kura clears unit attentions only through
 * CHECK CONDITION. A sanitize in progress (or failed) is the exception: its sense data, with the
 * progress indication, is how a host polls it (SBC-4 4.11). Descriptor format is not supported.
 */
import type { LogicalUnit } from './logical-unit.js';
import { Asc, SenseKey, fixedSense, invalidFieldInCdb } from './sense.js';
import type { ScsiResult, ScsiTask } from './task.js';
import { dataIn } from './transfer.js';

function decode(cdb: Uint8Array): number {
  if (cdb[1] & 0x01) throw invalidFieldInCdb(1, 0); // DESC
  return cdb[4];
}

export async function requestSense(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const spec = lu.sanitize.sense() ?? { key: SenseKey.NO_SENSE, asc: Asc.NO_ADDITIONAL_SENSE };
  return dataIn(fixedSense(spec), decode(task.cdb));
}

/** SPC-4 6.39: to a LUN without a logical unit, GOOD with LOGICAL UNIT NOT SUPPORTED as data. */
export function requestSenseWithoutLu(task: ScsiTask): ScsiResult {
  return dataIn(fixedSense({ key: SenseKey.ILLEGAL_REQUEST, asc: Asc.LOGICAL_UNIT_NOT_SUPPORTED }), decode(task.cdb));
}
