/**
 * START STOP UNIT (SBC-4 5.26) and PREVENT ALLOW MEDIUM REMOVAL (SBC-4 5.13) for a logical unit
 * whose medium is not removable (RMB=0). START=0 stops the LU: the cache is flushed first (unless
 * NO_FLUSH), then media access and TEST UNIT READY are NOT READY, INITIALIZING COMMAND REQUIRED
 * until START=1, which is what makes an initiator (Linux sd) send that START. Loading or ejecting
 * (LOEJ) and power conditions are not offered: the dispatcher refuses those bits. With nothing to
 * remove, PREVENT 00b/01b have nothing to prevent and are accepted; 1xb are obsolete.
 */
import type { LogicalUnit } from './logical-unit.js';
import type { ReservationClass } from './reservations.js';
import { invalidFieldInCdb } from './sense.js';
import type { ScsiResult, ScsiTask } from './task.js';
import { good } from './transfer.js';

export async function startStopUnit(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const cdb = task.cdb;
  if ((cdb[4] & 0x01) !== 0) {
    lu.stopped = false;
    return good();
  }
  // Stopped from now on: nothing new reaches the medium while the cache is written back.
  lu.stopped = true;
  if ((cdb[4] & 0x04) !== 0) return good();
  const flushing = lu.volume.flush();
  if ((cdb[1] & 0x01) !== 0) {
    flushing.catch((err: unknown) => lu.logger.error({ err, lun: lu.lun }, 'START STOP UNIT (IMMED) flush failed after GOOD status'));
    return good();
  }
  await flushing;
  return good();
}

/** SBC-4 table 13: starting is allowed through another nexus's reservation, stopping is not. */
export function startStopReservation(cdb: Uint8Array): ReservationClass {
  return (cdb[4] & 0x01) !== 0 ? 'allowed' : 'write';
}

export async function preventAllowMediumRemoval(_lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  if ((task.cdb[4] & 0x02) !== 0) throw invalidFieldInCdb(4, 1);
  return good();
}

export function preventAllowReservation(cdb: Uint8Array): ReservationClass {
  return (cdb[4] & 0x03) === 0 ? 'allowed' : 'write';
}
