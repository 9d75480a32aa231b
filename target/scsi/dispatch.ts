/**
 * The command table: opcode (and service action) -> handler, with the CDB usage data that both the
 * dispatcher enforces and REPORT SUPPORTED OPERATION CODES reports. Anything not in it is INVALID
 * COMMAND OPERATION CODE; a known opcode with an unknown service action is INVALID FIELD IN CDB.
 */
import { reportTargetPortGroups } from './alua.js';
import { SERVICE_ACTION_MASK, type CommandDescriptor } from './command.js';
import { compareAndWrite } from './compare-and-write.js';
import { receiveCopyResults } from './copy-results.js';
import { extendedCopy } from './extended-copy.js';
import { getLbaStatus } from './get-lba-status.js';
import { inquiry } from './inquiry.js';
import type { LogicalUnit } from './logical-unit.js';
import { modeSelect10, modeSelect6, modeSense10, modeSense6 } from './mode.js';
import { orWrite } from './orwrite.js';
import { persistentReserveIn, persistentReserveOut } from './persistent-reservations.js';
import { prefetch } from './prefetch.js';
import { readCapacity10, readCapacity16 } from './read-capacity.js';
import { readDefectData10, readDefectData12 } from './read-defect-data.js';
import { read10, read12, read16, read6, write10, write12, write16, write6 } from './read-write.js';
import { reportLuns } from './report-luns.js';
import { reportSupportedOpcodes } from './report-supported-opcodes.js';
import { requestSense } from './request-sense.js';
import { releaseUnit, reserveUnit } from './reserve6.js';
import { SANITIZE_BLOCK_ERASE, SANITIZE_EXIT_FAILURE_MODE, SANITIZE_OVERWRITE, sanitize } from './sanitize.js';
import { Asc, CheckCondition, illegalRequest, invalidFieldInCdb, msb } from './sense.js';
import {
  preventAllowMediumRemoval, preventAllowReservation, startStopReservation, startStopUnit,
} from './start-stop-unit.js';
import { synchronizeCache } from './synchronize-cache.js';
import { testUnitReady } from './test-unit-ready.js';
import { unmap } from './unmap.js';
import { verify } from './verify.js';
import { writeAndVerify } from './write-and-verify.js';
import { writeAtomic16 } from './write-atomic.js';
import { writeSame } from './write-same.js';

// Usage data building blocks. The control byte is all zero: NACA is refused (no ACA support),
// the obsolete FLAG/LINK and the vendor-specific bits are not used.
const CONTROL = 0x00;
const LBA4 = [0xff, 0xff, 0xff, 0xff];
const LBA8 = [...LBA4, ...LBA4];
const LEN2 = [0xff, 0xff];
const LEN4 = [0xff, 0xff, 0xff, 0xff];
/** GROUP NUMBER (SBC-4): accepted, and ignored as a hint. */
const GROUP = 0x3f;
/** DPO, FUA, and the obsolete FUA_NV that SBC-3 initiators may still set. */
const DPO_FUA = 0x1a;
/** DPO and BYTCHK (2 bits). */
const DPO_BYTCHK = 0x16;
/** SYNC_NV (obsolete, ignored) and IMMED. */
const SYNC_IMMED = 0x06;

/** READ(16) / WRITE(16) byte 14: command duration limit bits DLD1 and DLD0 (not supported). */
const DLD = 0xc0;

const MEDIA_TIMEOUTS = { nominal: 0, recommended: 30 };

// PERSISTENT RESERVE IN / OUT: one entry per service action, so REPORT SUPPORTED OPERATION CODES
// lists exactly the ones handled; the handlers check keys themselves, hence `allowed`.
const PR_IN: CommandDescriptor[] = ['READ KEYS', 'READ RESERVATION', 'REPORT CAPABILITIES', 'READ FULL STATUS']
  .map((sa, i) => ({ opcode: 0x5e, serviceAction: i, name: `PERSISTENT RESERVE IN (${sa})`, access: 'none',
    reservation: 'allowed', handler: persistentReserveIn, usage: [0x5e, 0x00, 0, 0, 0, 0, 0, ...LEN2, CONTROL] }));
const PR_OUT: CommandDescriptor[] = ['REGISTER', 'RESERVE', 'RELEASE', 'CLEAR', 'PREEMPT', 'PREEMPT AND ABORT',
  'REGISTER AND IGNORE EXISTING KEY', 'REGISTER AND MOVE']
  .map((sa, i) => ({ opcode: 0x5f, serviceAction: i, name: `PERSISTENT RESERVE OUT (${sa})`, access: 'none',
    reservation: 'allowed', handler: persistentReserveOut, usage: [0x5f, 0x00, 0xff, 0, 0, ...LEN4, CONTROL] }));

const thin = (lu: LogicalUnit): boolean => lu.thin;
const fullyProvisioned = (lu: LogicalUnit): boolean => !lu.thin;
/** WRITE SAME byte 1: WRPROTECT 7:5, then one-bit fields ANCHOR, UNMAP, PBDATA, LBDATA, NDOB. */
const WRITE_SAME_TOPS = { 1: 0x9f };
/** SANITIZE byte 1: IMMED, (ZNR, reserved here), AUSE, and the service action. */
const SANITIZE_FLAGS = 0xa0;

// Block commands beyond READ/WRITE: provisioning, COMPARE AND WRITE and friends, power, sanitize,
// third-party copy. The UNMAP bit of WRITE SAME is evaluated on thin LUs only, so there are two
// entries for each, one per kind of LU.
const BLOCK_COMMANDS: CommandDescriptor[] = [
  { opcode: 0x1b, name: 'START STOP UNIT', access: 'none', reservation: startStopReservation, handler: startStopUnit,
    timeouts: MEDIA_TIMEOUTS, usage: [0x1b, 0x01, 0, 0x00, 0x05, CONTROL], fieldTops: { 3: 0x88, 4: 0x8a } },
  { opcode: 0x1e, name: 'PREVENT ALLOW MEDIUM REMOVAL', access: 'none', reservation: preventAllowReservation,
    handler: preventAllowMediumRemoval, usage: [0x1e, 0, 0, 0, 0x03, CONTROL] },
  { opcode: 0x2e, name: 'WRITE AND VERIFY(10)', access: 'write', reservation: 'write', handler: writeAndVerify, timeouts: MEDIA_TIMEOUTS,
    usage: [0x2e, DPO_BYTCHK, ...LBA4, GROUP, ...LEN2, CONTROL] },
  { opcode: 0x34, name: 'PRE-FETCH(10)', access: 'read', reservation: 'read', handler: prefetch, timeouts: MEDIA_TIMEOUTS,
    usage: [0x34, 0x02, ...LBA4, GROUP, ...LEN2, CONTROL] },
  { opcode: 0x37, name: 'READ DEFECT DATA(10)', access: 'none', reservation: 'write', handler: readDefectData10,
    usage: [0x37, 0, 0x1f, 0, 0, 0, 0, ...LEN2, CONTROL] },
  { opcode: 0x41, name: 'WRITE SAME(10)', access: 'write', reservation: 'write', handler: writeSame, timeouts: MEDIA_TIMEOUTS,
    usage: [0x41, 0x08, ...LBA4, GROUP, ...LEN2, CONTROL], fieldTops: WRITE_SAME_TOPS, availableOn: thin },
  { opcode: 0x41, name: 'WRITE SAME(10)', access: 'write', reservation: 'write', handler: writeSame, timeouts: MEDIA_TIMEOUTS,
    usage: [0x41, 0x00, ...LBA4, GROUP, ...LEN2, CONTROL], fieldTops: WRITE_SAME_TOPS, availableOn: fullyProvisioned },
  { opcode: 0x42, name: 'UNMAP', access: 'write', reservation: 'write', handler: unmap, timeouts: MEDIA_TIMEOUTS,
    usage: [0x42, 0, 0, 0, 0, 0, GROUP, ...LEN2, CONTROL], fieldTops: { 1: 0x81 /* ANCHOR */ }, availableOn: thin },
  ...([[SANITIZE_OVERWRITE, 'OVERWRITE'], [SANITIZE_BLOCK_ERASE, 'BLOCK ERASE'], [SANITIZE_EXIT_FAILURE_MODE, 'EXIT FAILURE MODE']] as const)
    .map(([sa, what]): CommandDescriptor => ({
      opcode: 0x48, serviceAction: sa, name: `SANITIZE (${what})`, access: 'write', reservation: 'write', handler: sanitize,
      usage: [0x48, SANITIZE_FLAGS | sa, 0, 0, 0, 0, 0, ...LEN2, CONTROL],
      // Block erase deallocates: only where that is real and reads zeroes (thin, LBPRZ).
      availableOn: sa === SANITIZE_BLOCK_ERASE ? thin : undefined,
    })),
  { opcode: 0x83, serviceAction: 0x00, name: 'EXTENDED COPY(LID1)', access: 'none', reservation: 'write', handler: extendedCopy,
    timeouts: MEDIA_TIMEOUTS, usage: [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, ...LEN4, 0, CONTROL] },
  { opcode: 0x84, serviceAction: 0x00, name: 'RECEIVE COPY RESULTS (COPY STATUS)', access: 'none', reservation: 'write',
    handler: receiveCopyResults, usage: [0x84, 0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, ...LEN4, 0, CONTROL] },
  { opcode: 0x84, serviceAction: 0x03, name: 'RECEIVE COPY RESULTS (OPERATING PARAMETERS)', access: 'none', reservation: 'write',
    handler: receiveCopyResults, usage: [0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, ...LEN4, 0, CONTROL] },
  { opcode: 0x89, name: 'COMPARE AND WRITE', access: 'write', reservation: 'write', handler: compareAndWrite, timeouts: MEDIA_TIMEOUTS,
    usage: [0x89, DPO_FUA, ...LBA8, 0, 0, 0, 0xff, GROUP, CONTROL] },
  { opcode: 0x8b, name: 'ORWRITE(16)', access: 'write', reservation: 'write', handler: orWrite, timeouts: MEDIA_TIMEOUTS,
    usage: [0x8b, DPO_FUA, ...LBA8, ...LEN4, GROUP, CONTROL] },
  { opcode: 0x8e, name: 'WRITE AND VERIFY(16)', access: 'write', reservation: 'write', handler: writeAndVerify, timeouts: MEDIA_TIMEOUTS,
    usage: [0x8e, DPO_BYTCHK, ...LBA8, ...LEN4, GROUP, CONTROL] },
  { opcode: 0x90, name: 'PRE-FETCH(16)', access: 'read', reservation: 'read', handler: prefetch, timeouts: MEDIA_TIMEOUTS,
    usage: [0x90, 0x02, ...LBA8, ...LEN4, GROUP, CONTROL] },
  { opcode: 0x93, name: 'WRITE SAME(16)', access: 'write', reservation: 'write', handler: writeSame, timeouts: MEDIA_TIMEOUTS,
    usage: [0x93, 0x09, ...LBA8, ...LEN4, GROUP, CONTROL], fieldTops: WRITE_SAME_TOPS, availableOn: thin },
  { opcode: 0x93, name: 'WRITE SAME(16)', access: 'write', reservation: 'write', handler: writeSame, timeouts: MEDIA_TIMEOUTS,
    usage: [0x93, 0x01, ...LBA8, ...LEN4, GROUP, CONTROL], fieldTops: WRITE_SAME_TOPS, availableOn: fullyProvisioned },
  { opcode: 0x9c, name: 'WRITE ATOMIC(16)', access: 'write', reservation: 'write', handler: writeAtomic16, timeouts: MEDIA_TIMEOUTS,
    usage: [0x9c, 0x18, ...LBA8, 0, 0, ...LEN2, GROUP, CONTROL] },
  { opcode: 0x9e, serviceAction: 0x12, name: 'GET LBA STATUS', access: 'read', reservation: 'read', handler: getLbaStatus,
    usage: [0x9e, 0x12, ...LBA8, ...LEN4, 0, CONTROL] },
  { opcode: 0xae, name: 'WRITE AND VERIFY(12)', access: 'write', reservation: 'write', handler: writeAndVerify, timeouts: MEDIA_TIMEOUTS,
    usage: [0xae, DPO_BYTCHK, ...LBA4, ...LEN4, GROUP, CONTROL] },
  { opcode: 0xb7, name: 'READ DEFECT DATA(12)', access: 'none', reservation: 'write', handler: readDefectData12,
    usage: [0xb7, 0x1f, ...LBA4, ...LEN4, 0, CONTROL] },
];

export const COMMANDS: readonly CommandDescriptor[] = [
  { opcode: 0x00, name: 'TEST UNIT READY', access: 'none', reservation: 'allowed', handler: testUnitReady,
    usage: [0x00, 0, 0, 0, 0, CONTROL] },
  { opcode: 0x03, name: 'REQUEST SENSE', access: 'none', reservation: 'exempt', handler: requestSense, bypassesUnitAttention: true,
    usage: [0x03, 0x01, 0, 0, 0xff, CONTROL] },
  { opcode: 0x08, name: 'READ(6)', access: 'read', reservation: 'read', handler: read6, timeouts: MEDIA_TIMEOUTS,
    usage: [0x08, 0x1f, 0xff, 0xff, 0xff, CONTROL] },
  { opcode: 0x0a, name: 'WRITE(6)', access: 'write', reservation: 'write', handler: write6, timeouts: MEDIA_TIMEOUTS,
    usage: [0x0a, 0x1f, 0xff, 0xff, 0xff, CONTROL] },
  { opcode: 0x12, name: 'INQUIRY', access: 'none', reservation: 'exempt', handler: inquiry, bypassesUnitAttention: true,
    usage: [0x12, 0x01, 0xff, 0xff, 0xff, CONTROL], fieldTops: { 1: 0x02 /* CMDDT (obsolete) */ } },
  { opcode: 0x15, name: 'MODE SELECT(6)', access: 'none', reservation: 'write', handler: modeSelect6,
    usage: [0x15, 0x11, 0, 0, 0xff, CONTROL] },
  { opcode: 0x1a, name: 'MODE SENSE(6)', access: 'none', reservation: 'write', handler: modeSense6,
    usage: [0x1a, 0x08, 0xff, 0xff, 0xff, CONTROL] },
  { opcode: 0x16, name: 'RESERVE(6)', access: 'none', reservation: 'exempt', handler: reserveUnit,
    usage: [0x16, 0, 0, 0, 0, CONTROL] },
  { opcode: 0x17, name: 'RELEASE(6)', access: 'none', reservation: 'exempt', handler: releaseUnit,
    usage: [0x17, 0, 0, 0, 0, CONTROL] },
  { opcode: 0x25, name: 'READ CAPACITY(10)', access: 'none', reservation: 'allowed', handler: readCapacity10,
    usage: [0x25, 0x00, ...LBA4, 0, 0, 0x01, CONTROL], fieldTops: { 1: 0x01 /* RELADR (obsolete) */ } },
  { opcode: 0x28, name: 'READ(10)', access: 'read', reservation: 'read', handler: read10, timeouts: MEDIA_TIMEOUTS,
    usage: [0x28, DPO_FUA, ...LBA4, GROUP, ...LEN2, CONTROL] },
  { opcode: 0x2a, name: 'WRITE(10)', access: 'write', reservation: 'write', handler: write10, timeouts: MEDIA_TIMEOUTS,
    usage: [0x2a, DPO_FUA, ...LBA4, GROUP, ...LEN2, CONTROL] },
  { opcode: 0x2f, name: 'VERIFY(10)', access: 'read', reservation: 'read', handler: verify, timeouts: MEDIA_TIMEOUTS,
    usage: [0x2f, DPO_BYTCHK, ...LBA4, GROUP, ...LEN2, CONTROL] },
  { opcode: 0x35, name: 'SYNCHRONIZE CACHE(10)', access: 'none', reservation: 'write', handler: synchronizeCache, timeouts: MEDIA_TIMEOUTS,
    usage: [0x35, SYNC_IMMED, ...LBA4, GROUP, ...LEN2, CONTROL] },
  { opcode: 0x55, name: 'MODE SELECT(10)', access: 'none', reservation: 'write', handler: modeSelect10,
    usage: [0x55, 0x11, 0, 0, 0, 0, 0, ...LEN2, CONTROL] },
  { opcode: 0x56, name: 'RESERVE(10)', access: 'none', reservation: 'exempt', handler: reserveUnit,
    usage: [0x56, 0, 0, 0, 0, 0, 0, 0, 0, CONTROL] },
  { opcode: 0x57, name: 'RELEASE(10)', access: 'none', reservation: 'exempt', handler: releaseUnit,
    usage: [0x57, 0, 0, 0, 0, 0, 0, 0, 0, CONTROL] },
  { opcode: 0x5a, name: 'MODE SENSE(10)', access: 'none', reservation: 'write', handler: modeSense10,
    usage: [0x5a, 0x18, 0xff, 0xff, 0, 0, 0, ...LEN2, CONTROL] },
  ...PR_IN, ...PR_OUT,
  { opcode: 0x88, name: 'READ(16)', access: 'read', reservation: 'read', handler: read16, timeouts: MEDIA_TIMEOUTS,
    usage: [0x88, DPO_FUA, ...LBA8, ...LEN4, GROUP, CONTROL], fieldTops: { 14: DLD } },
  { opcode: 0x8a, name: 'WRITE(16)', access: 'write', reservation: 'write', handler: write16, timeouts: MEDIA_TIMEOUTS,
    usage: [0x8a, DPO_FUA, ...LBA8, ...LEN4, GROUP, CONTROL], fieldTops: { 14: DLD } },
  { opcode: 0x8f, name: 'VERIFY(16)', access: 'read', reservation: 'read', handler: verify, timeouts: MEDIA_TIMEOUTS,
    usage: [0x8f, DPO_BYTCHK, ...LBA8, ...LEN4, GROUP, CONTROL] },
  { opcode: 0x91, name: 'SYNCHRONIZE CACHE(16)', access: 'none', reservation: 'write', handler: synchronizeCache, timeouts: MEDIA_TIMEOUTS,
    usage: [0x91, SYNC_IMMED, ...LBA8, ...LEN4, GROUP, CONTROL] },
  { opcode: 0x9e, serviceAction: 0x10, name: 'READ CAPACITY(16)', access: 'none', reservation: 'allowed', handler: readCapacity16,
    usage: [0x9e, 0x10, ...LBA8, ...LEN4, 0x01, CONTROL] },
  { opcode: 0xa0, name: 'REPORT LUNS', access: 'none', reservation: 'exempt', handler: reportLuns, bypassesUnitAttention: true,
    usage: [0xa0, 0x00, 0xff, 0, 0, 0, ...LEN4, 0, CONTROL] },
  { opcode: 0xa3, serviceAction: 0x0a, name: 'REPORT TARGET PORT GROUPS', access: 'none', reservation: 'exempt',
    handler: reportTargetPortGroups, usage: [0xa3, 0xe0, 0, 0, 0, 0, ...LEN4, 0, CONTROL] },
  { opcode: 0xa3, serviceAction: 0x0c, name: 'REPORT SUPPORTED OPERATION CODES', access: 'none', reservation: 'write',
    handler: reportSupportedOpcodes,
    usage: [0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, ...LEN4, 0, CONTROL] },
  { opcode: 0xa8, name: 'READ(12)', access: 'read', reservation: 'read', handler: read12, timeouts: MEDIA_TIMEOUTS,
    usage: [0xa8, DPO_FUA, ...LBA4, ...LEN4, GROUP, CONTROL] },
  { opcode: 0xaa, name: 'WRITE(12)', access: 'write', reservation: 'write', handler: write12, timeouts: MEDIA_TIMEOUTS,
    usage: [0xaa, DPO_FUA, ...LBA4, ...LEN4, GROUP, CONTROL] },
  ...BLOCK_COMMANDS,
  { opcode: 0xaf, name: 'VERIFY(12)', access: 'read', reservation: 'read', handler: verify, timeouts: MEDIA_TIMEOUTS,
    usage: [0xaf, DPO_BYTCHK, ...LBA4, ...LEN4, GROUP, CONTROL] },
];

/** The commands one LU offers, indexed for dispatch. */
export class CommandSet {
  private readonly sorted: readonly CommandDescriptor[];
  private readonly byOpcode = new Map<number, CommandDescriptor[]>();

  constructor(commands: readonly CommandDescriptor[]) {
    this.sorted = [...commands].sort((a, b) => a.opcode - b.opcode || (a.serviceAction ?? 0) - (b.serviceAction ?? 0));
    for (const c of this.sorted) {
      const list = this.byOpcode.get(c.opcode) ?? [];
      if (list.some((o) => o.serviceAction === c.serviceAction)) throw new Error(`duplicate command ${c.name}`);
      if (list.length > 0 && (list[0].serviceAction === undefined) !== (c.serviceAction === undefined)) {
        throw new Error(`opcode ${c.opcode.toString(16)} mixes commands with and without service actions`);
      }
      list.push(c);
      this.byOpcode.set(c.opcode, list);
    }
  }

  all(): readonly CommandDescriptor[] {
    return this.sorted;
  }

  hasServiceActions(opcode: number): boolean {
    return this.byOpcode.get(opcode)?.[0]?.serviceAction !== undefined;
  }

  find(opcode: number, serviceAction?: number): CommandDescriptor | undefined {
    return this.byOpcode.get(opcode)?.find((c) => c.serviceAction === serviceAction);
  }

  /** The command a CDB names, or the CheckCondition that refuses it. */
  lookup(cdb: Uint8Array): CommandDescriptor | CheckCondition {
    if (cdb.length === 0) return invalidFieldInCdb(0);
    const list = this.byOpcode.get(cdb[0]);
    if (!list) return illegalRequest(Asc.INVALID_COMMAND_OPERATION_CODE, { cdb: true, byte: 0 });
    if (list[0].serviceAction === undefined) return list[0];
    if (cdb.length < 2) return invalidFieldInCdb(0);
    const sa = cdb[1] & SERVICE_ACTION_MASK;
    return list.find((c) => c.serviceAction === sa) ?? invalidFieldInCdb(1, 4);
  }
}

/**
 * Rejects a CDB shorter than its command or with any bit set that the usage data does not claim
 * (reserved fields, unsupported options, protection fields, NACA), pointing at the first such bit.
 * Bytes after the command's length are the transport's padding (iSCSI carries 16) and are ignored.
 */
export function validateCdb(cmd: CommandDescriptor, cdb: Uint8Array): void {
  const n = cmd.usage.length;
  if (cdb.length < n) throw invalidFieldInCdb(0);
  for (let i = 1; i < n; i++) {
    let allowed = cmd.usage[i];
    if (i === 1 && cmd.serviceAction !== undefined) allowed |= SERVICE_ACTION_MASK;
    const bad = cdb[i] & ~allowed & 0xff;
    if (bad) {
      const tops = i === n - 1 ? CONTROL_FIELD_TOPS : cmd.fieldTops?.[i] ?? 0;
      throw invalidFieldInCdb(i, fieldTop(allowed, tops, msb(bad)));
    }
  }
}

/** CONTROL byte fields (SAM-5 5.2): vendor specific 7:6, reserved 5:3, NACA 2, obsolete 1, 0. */
const CONTROL_FIELD_TOPS = 0b1010_0111;

/**
 * SPC-4 wants the bit pointer on the most significant bit of the field in error. Unused bits
 * next to each other are one field (RDPROTECT, a reserved byte, ...) unless `tops` splits them.
 */
function fieldTop(allowed: number, tops: number, bit: number): number {
  let top = bit;
  while (top < 7 && (tops & (1 << top)) === 0 && (allowed & (1 << (top + 1))) === 0) top++;
  return top;
}
