/**
 * Asymmetric logical unit access (SPC-4 5.16), the implicit kind (TPGS = 01b): every target port
 * (an iSCSI target portal group) is its own target port group, always active/optimized, since one
 * controller serves every port with the same path to the media. Multipath hosts (dm-multipath's
 * ALUA handler, libiscsi's MultipathIO) read this to see the ports are equal, not to fail over.
 */
import { putU16, putU32, u32 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { invalidFieldInCdb } from './sense.js';
import type { ScsiResult, ScsiTask } from './task.js';
import { dataIn } from './transfer.js';

/** Standard INQUIRY byte 5 TPGS field: implicit asymmetric access only. */
export const TPGS_IMPLICIT = 0x10;

const LENGTH_ONLY = 0b000;
const EXTENDED = 0b001;
const ACTIVE_OPTIMIZED = 0x0;
/** Supported states: AO_SUP only, nothing else is ever reported. */
const SUPPORTED_STATES = 0x01;

/** REPORT TARGET PORT GROUPS (MAINTENANCE IN, service action 0Ah; SPC-4 6.36). */
export async function reportTargetPortGroups(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const format = task.cdb[1] >> 5;
  if (format !== LENGTH_ONLY && format !== EXTENDED) throw invalidFieldInCdb(1, 7);
  const ports = lu.target.targetPorts();
  const header = format === EXTENDED ? 8 : 4;
  const d = new Uint8Array(header + ports.length * 12);
  putU32(d, 0, d.length - 4);
  if (format === EXTENDED) d[4] = 0x10; // FORMAT TYPE 001b; IMPLICIT TRANSITION TIME 0: there are none
  ports.forEach((port, i) => {
    const at = header + 12 * i;
    d[at] = ACTIVE_OPTIMIZED;
    d[at + 1] = SUPPORTED_STATES;
    putU16(d, at + 2, lu.targetPortGroup(port));
    d[at + 7] = 1; // TARGET PORT COUNT
    putU16(d, at + 10, port);
  });
  return dataIn(d, u32(task.cdb, 6));
}
