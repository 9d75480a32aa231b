/**
 * REPORT SUPPORTED OPERATION CODES (MAINTENANCE IN, SPC-4 6.35). It reads the LU's CommandSet,
 * the same object the dispatcher looks commands up in, so the CDB usage data reported is exactly
 * the set of bits the dispatcher lets through.
 */
import { putU16, putU32, u16, u32 } from './cdb.js';
import type { CommandDescriptor } from './command.js';
import type { LogicalUnit } from './logical-unit.js';
import { invalidFieldInCdb } from './sense.js';
import type { ScsiResult, ScsiTask } from './task.js';
import { dataIn } from './transfer.js';

const ALL = 0b000;
const ONE_OPCODE = 0b001;
const ONE_OPCODE_AND_SA = 0b010;
const ONE_OPCODE_MAYBE_SA = 0b011;

const SUPPORT_NOT_SUPPORTED = 0b001;
const SUPPORT_STANDARD = 0b011;

const TIMEOUTS_LENGTH = 12;

function timeoutsDescriptor(c: CommandDescriptor): Uint8Array {
  const d = new Uint8Array(TIMEOUTS_LENGTH);
  putU16(d, 0, TIMEOUTS_LENGTH - 2);
  putU32(d, 4, c.timeouts?.nominal ?? 0);
  putU32(d, 8, c.timeouts?.recommended ?? 0);
  return d;
}

function allCommands(lu: LogicalUnit, rctd: boolean): Uint8Array {
  const cmds = lu.commands.all();
  const size = 8 + (rctd ? TIMEOUTS_LENGTH : 0);
  const d = new Uint8Array(4 + size * cmds.length);
  putU32(d, 0, size * cmds.length);
  cmds.forEach((c, i) => {
    const at = 4 + size * i;
    d[at] = c.opcode;
    putU16(d, at + 2, c.serviceAction ?? 0);
    d[at + 5] = (rctd ? 0x02 : 0) | (c.serviceAction !== undefined ? 0x01 : 0); // CTDP, SERVACTV
    putU16(d, at + 6, c.usage.length);
    if (rctd) d.set(timeoutsDescriptor(c), at + 8);
  });
  return d;
}

function oneCommand(c: CommandDescriptor | undefined, rctd: boolean): Uint8Array {
  if (!c) return Uint8Array.of(0, SUPPORT_NOT_SUPPORTED, 0, 0);
  const n = c.usage.length;
  const d = new Uint8Array(4 + n + (rctd ? TIMEOUTS_LENGTH : 0));
  d[1] = (rctd ? 0x80 : 0) | SUPPORT_STANDARD;
  putU16(d, 2, n);
  d.set(c.usage, 4);
  if (rctd) d.set(timeoutsDescriptor(c), 4 + n);
  return d;
}

export async function reportSupportedOpcodes(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const cdb = task.cdb;
  const rctd = (cdb[2] & 0x80) !== 0;
  const options = cdb[2] & 0x07;
  const opcode = cdb[3];
  const sa = u16(cdb, 4);
  const allocationLength = u32(cdb, 6);
  const set = lu.commands;
  switch (options) {
    case ALL:
      return dataIn(allCommands(lu, rctd), allocationLength);
    case ONE_OPCODE:
      // This form cannot name a service action, so it is refused for opcodes that have them.
      if (set.hasServiceActions(opcode)) throw invalidFieldInCdb(2, 2);
      return dataIn(oneCommand(set.find(opcode), rctd), allocationLength);
    case ONE_OPCODE_AND_SA:
      if (!set.hasServiceActions(opcode)) throw invalidFieldInCdb(2, 2);
      return dataIn(oneCommand(set.find(opcode, sa), rctd), allocationLength);
    case ONE_OPCODE_MAYBE_SA:
      return dataIn(oneCommand(set.hasServiceActions(opcode) ? set.find(opcode, sa) : set.find(opcode), rctd), allocationLength);
    default:
      throw invalidFieldInCdb(2, 2);
  }
}
