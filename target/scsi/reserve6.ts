/**
 * RESERVE(6)/(10) and RELEASE(6)/(10), the SPC-2 reservations (SPC-2 7.21-7.24): one I_T nexus
 * owns the whole LU until it releases it, loses the nexus, or a LUN / target reset clears it
 * (Reservations.reset / nexusLost). Third-party and extent reservations are not supported, so
 * those CDB bits are refused by the usage data. Alongside persistent reservations kura behaves as
 * CRH = 0 (SPC-3 5.6.3): while any PR registration exists both commands conflict, whoever sends them.
 */
import type { LogicalUnit } from './logical-unit.js';
import { Status, type ScsiResult, type ScsiTask } from './task.js';
import { good } from './transfer.js';

const conflict = (): ScsiResult => ({ status: Status.RESERVATION_CONFLICT });

export async function reserveUnit(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const res = lu.reservations;
  if (res.pr.registrations.size > 0) return conflict();
  // Reserving again through the holding nexus is GOOD (SPC-2 7.21.2: it supersedes itself).
  if (res.spc2Holder !== undefined && res.spc2Holder !== task.nexus.id) return conflict();
  res.spc2Holder = task.nexus.id;
  return good();
}

export async function releaseUnit(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const res = lu.reservations;
  if (res.pr.registrations.size > 0) return conflict();
  // A RELEASE from a nexus that holds nothing is GOOD and releases nothing (SPC-2 7.23.2).
  if (res.spc2Holder === task.nexus.id) res.spc2Holder = undefined;
  return good();
}
