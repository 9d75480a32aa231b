/**
 * PERSISTENT RESERVE IN and OUT (SPC-4 6.15, 6.16, 5.13). Every service action of OUT works on a
 * clone of the LU's PrState and commits it through Reservations.commit(), which saves it first
 * when APTPL is in force: what a host was told GOOD for is what survives a restart.
 * PREEMPT AND ABORT has the transport abort the preempted nexuses' tasks (TargetContext.abortTasks).
 * Not supported, and refused as SPC-4 asks: SPEC_I_PT and ALL_TG_PT (SIP_C = ATP_C = 0),
 * REPLACE LOST RESERVATION, and the RESERVE/RELEASE compatibility mode (CRH = 0).
 */
import { putU16, putU32, putU64, u16, u32, u64 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import {
  LU_SCOPE, PrState, VALID_TYPES, allRegistrantsType, registrantsType, type Registration,
} from './pr-state.js';
import {
  Asc, illegalRequest, invalidFieldInCdb, invalidFieldInParameterList, parameterListLengthError,
} from './sense.js';
import { Status, nexusId, type Nexus, type ScsiResult, type ScsiTask, type TaskIo } from './task.js';
import { dataIn, good, refuseShortDataOut } from './transfer.js';

const READ_KEYS = 0x00;
const READ_RESERVATION = 0x01;
const REPORT_CAPABILITIES = 0x02;
const READ_FULL_STATUS = 0x03;

const REGISTER = 0x00;
const RESERVE = 0x01;
const RELEASE = 0x02;
const CLEAR = 0x03;
const PREEMPT = 0x04;
const PREEMPT_AND_ABORT = 0x05;
const REGISTER_AND_IGNORE_EXISTING_KEY = 0x06;
const REGISTER_AND_MOVE = 0x07;

/** Registrations one LU keeps: hosts must not be able to grow the target without bound. */
export const MAX_REGISTRATIONS = 256;
const BASIC_LIST_LENGTH = 24;
/** REGISTER AND MOVE: header plus one TransportID (an iSCSI name is at most 223 bytes). */
const MAX_LIST_LENGTH = 24 + 4 + 256 + 16;

const SPEC_I_PT = 0x08;
const ALL_TG_PT = 0x04;
const APTPL = 0x01;
const PROTOCOL_ISCSI = 0x5;

/** ALLOW COMMANDS 010b: TEST UNIT READY passes WE and EA; MODE SENSE & co. do not pass WE. */
const ALLOW_COMMANDS = 0x2;

const conflict = (): ScsiResult => ({ status: Status.RESERVATION_CONFLICT });

// ---- PERSISTENT RESERVE IN ----

export async function persistentReserveIn(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const res = lu.reservations;
  // SPC-3 5.6.1: while a RESERVE(6)/(10) reservation exists every PR command conflicts.
  if (res.spc2Holder !== undefined) return conflict();
  const allocationLength = u16(task.cdb, 7);
  const pr = res.pr;
  switch (task.cdb[1] & 0x1f) {
    case READ_KEYS: return dataIn(readKeys(pr), allocationLength);
    case READ_RESERVATION: return dataIn(readReservation(pr), allocationLength);
    case REPORT_CAPABILITIES: return dataIn(reportCapabilities(pr, res.persistent), allocationLength);
    case READ_FULL_STATUS: return dataIn(readFullStatus(pr), allocationLength);
    default: throw invalidFieldInCdb(1, 4);
  }
}

function readKeys(pr: PrState): Uint8Array {
  const regs = [...pr.registrations.values()];
  const d = new Uint8Array(8 + 8 * regs.length);
  putU32(d, 0, pr.generation);
  putU32(d, 4, 8 * regs.length);
  regs.forEach((r, i) => putU64(d, 8 + 8 * i, r.key));
  return d;
}

function readReservation(pr: PrState): Uint8Array {
  const r = pr.reservation;
  const d = new Uint8Array(r ? 24 : 8);
  putU32(d, 0, pr.generation);
  if (!r) return d;
  putU32(d, 4, 16);
  // All-registrants reservations report key 0 (SPC-4 6.15.3.2).
  if (!allRegistrantsType(r.type)) putU64(d, 8, pr.registrations.get(r.holder)?.key ?? 0n);
  d[21] = (r.scope << 4) | r.type;
  return d;
}

function reportCapabilities(pr: PrState, ptplCapable: boolean): Uint8Array {
  const d = new Uint8Array(8);
  putU16(d, 0, 8);
  d[2] = ptplCapable ? 0x01 : 0x00; // PTPL_C; CRH, SIP_C, ATP_C all zero
  d[3] = 0x80 | (ALLOW_COMMANDS << 4) | (pr.aptpl ? 0x01 : 0); // TMV, ALLOW COMMANDS, PTPL_A
  d[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
  d[5] = 0x01; // EX_AC_AR
  return d;
}

function readFullStatus(pr: PrState): Uint8Array {
  const descriptors = [...pr.registrations.values()].map((reg) => {
    const tid = transportId(reg.initiatorPort);
    const d = new Uint8Array(24 + tid.length);
    putU64(d, 0, reg.key);
    if (pr.isHolder(reg.nexusId)) {
      const r = pr.reservation!;
      d[12] = 0x01; // R_HOLDER (ALL_TG_PT is never set: registrations are per target port)
      d[13] = (r.scope << 4) | r.type;
    }
    putU16(d, 18, reg.relativeTargetPort);
    putU32(d, 20, tid.length);
    d.set(tid, 24);
    return d;
  });
  const length = descriptors.reduce((n, d) => n + d.length, 0);
  const out = new Uint8Array(8 + length);
  putU32(out, 0, pr.generation);
  putU32(out, 4, length);
  let at = 8;
  for (const d of descriptors) {
    out.set(d, at);
    at += d.length;
  }
  return out;
}

/** iSCSI TransportID, format 01b: "<name>,i,0x<ISID>", NUL-terminated, padded to 4n >= 20. */
export function transportId(initiatorPort: string): Uint8Array {
  const name = new TextEncoder().encode(initiatorPort);
  const length = Math.max(20, (name.length + 4) & ~3);
  const t = new Uint8Array(4 + length);
  t[0] = 0x40 | PROTOCOL_ISCSI;
  putU16(t, 2, length);
  t.set(name, 4);
  return t;
}

/** The initiator port a REGISTER AND MOVE TransportID names; `at` is its offset in the list. */
function parseTransportId(t: Uint8Array, at: number): string {
  if ((t[0] & 0x0f) !== PROTOCOL_ISCSI) throw invalidFieldInParameterList(at, 3);
  // Format 00b names an iSCSI device, not a port: it cannot pick one I_T nexus.
  if (t[0] >> 6 !== 0x1) throw invalidFieldInParameterList(at, 7);
  const length = u16(t, 2);
  if (length < 20 || 4 + length > t.length) throw invalidFieldInParameterList(at + 2);
  const body = t.subarray(4, 4 + length);
  const end = body.indexOf(0);
  const text = new TextDecoder().decode(body.subarray(0, end < 0 ? body.length : end));
  const m = /^(.+),i,0x([0-9a-fA-F]{12})$/.exec(text);
  if (!m) throw invalidFieldInParameterList(at + 4);
  return `${m[1]},i,0x${m[2]!.toLowerCase()}`;
}

// ---- PERSISTENT RESERVE OUT ----

export async function persistentReserveOut(lu: LogicalUnit, task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
  const length = u32(task.cdb, 5);
  if (length < BASIC_LIST_LENGTH || length > MAX_LIST_LENGTH) throw parameterListLengthError();
  const refused = refuseShortDataOut(task, length);
  if (refused) return refused;
  const list = new Uint8Array(length);
  await io.receiveData(list);
  return lu.reservations.exclusive(() => serviceAction(lu, task, list));
}

interface Request {
  readonly lu: LogicalUnit;
  readonly nexus: Nexus;
  readonly scope: number;
  readonly type: number;
  readonly list: Uint8Array;
  readonly key: bigint;
  readonly sark: bigint;
  readonly cur: PrState;
  readonly reg: Registration | undefined;
}

/** A state change to commit: the new state and who hears about it. */
class Change {
  readonly next: PrState;
  readonly attentions: Array<readonly [string, number]> = [];
  /** Nexuses whose registrations a PREEMPT removed: PREEMPT AND ABORT aborts their tasks. */
  readonly preempted: string[] = [];

  constructor(cur: PrState) {
    this.next = cur.clone();
  }

  tell(ids: Iterable<string>, asc: number): void {
    for (const id of ids) this.attentions.push([id, asc]);
  }
}

async function serviceAction(lu: LogicalUnit, task: ScsiTask, list: Uint8Array): Promise<ScsiResult> {
  const res = lu.reservations;
  if (res.spc2Holder !== undefined) return conflict();
  const sa = task.cdb[1] & 0x1f;
  const cur = res.pr;
  const r: Request = {
    lu, nexus: task.nexus, scope: task.cdb[2] >> 4, type: task.cdb[2] & 0x0f, list,
    key: u64(list, 0), sark: u64(list, 8), cur, reg: cur.registrations.get(task.nexus.id),
  };
  if (sa === REGISTER_AND_MOVE) return run(r, registerAndMove(r));
  const flags = list[20];
  // SIP_C = 0 and ATP_C = 0: SPEC_I_PT is refused everywhere, ALL_TG_PT where it would count.
  if (flags & SPEC_I_PT) throw invalidFieldInParameterList(20, 3);
  const registering = sa === REGISTER || sa === REGISTER_AND_IGNORE_EXISTING_KEY;
  if (registering && flags & ALL_TG_PT) throw invalidFieldInParameterList(20, 2);
  if (list.length !== BASIC_LIST_LENGTH) throw parameterListLengthError();
  if (registering && flags & APTPL && !res.persistent) throw invalidFieldInParameterList(20, 0);
  // Everything but REGISTER AND IGNORE EXISTING KEY proves the nexus's key (SPC-4 5.13.5).
  if (sa !== REGISTER_AND_IGNORE_EXISTING_KEY) {
    const expected = r.reg?.key ?? 0n;
    if (r.key !== expected || (!r.reg && sa !== REGISTER)) return conflict();
  }
  switch (sa) {
    case REGISTER:
    case REGISTER_AND_IGNORE_EXISTING_KEY: return run(r, register(r, (flags & APTPL) !== 0));
    case RESERVE: return run(r, reserve(r));
    case RELEASE: return run(r, release(r));
    case CLEAR: return run(r, clear(r));
    case PREEMPT: return run(r, preempt(r));
    case PREEMPT_AND_ABORT: {
      const outcome = preempt(r);
      const result = await run(r, outcome);
      // Only once committed: the preempted nexuses' tasks go, this one's stay (SPC-4 5.13.11.4.5).
      if (outcome instanceof Change && outcome.preempted.length > 0) lu.target.abortTasks(lu.lun, new Set(outcome.preempted));
      return result;
    }
    default: throw invalidFieldInCdb(1, 4);
  }
}

/** A service action's outcome: a change to commit, GOOD with nothing to change, or a conflict. */
type Outcome = Change | 'unchanged' | 'conflict';

async function run(r: Request, outcome: Outcome): Promise<ScsiResult> {
  if (outcome === 'conflict') return conflict();
  if (outcome !== 'unchanged') await r.lu.reservations.commit(outcome.next, outcome.attentions);
  return good();
}

function registration(nexus: { id: string; initiatorPort: string; relativeTargetPort: number }, key: bigint): Registration {
  return { nexusId: nexus.id, initiatorPort: nexus.initiatorPort, relativeTargetPort: nexus.relativeTargetPort, key };
}

function checkCapacity(pr: PrState): void {
  if (pr.registrations.size >= MAX_REGISTRATIONS) throw illegalRequest(Asc.INSUFFICIENT_REGISTRATION_RESOURCES);
}

function register(r: Request, aptpl: boolean): Outcome {
  // An unregistered nexus registering key zero: GOOD, and nothing happens (SPC-4 5.13.7).
  if (!r.reg && r.sark === 0n) return 'unchanged';
  const c = new Change(r.cur);
  const next = c.next;
  if (!r.reg) {
    checkCapacity(next);
    next.registrations.set(r.nexus.id, registration(r.nexus, r.sark));
  } else if (r.sark !== 0n) {
    next.registrations.set(r.nexus.id, { ...r.reg, key: r.sark });
  } else {
    const type = r.cur.reservation?.type;
    // A registrants-only holder leaving releases the reservation, and the others must know.
    if (next.unregister(r.nexus.id) && type !== undefined && registrantsType(type) && !allRegistrantsType(type)) {
      c.tell(next.registrations.keys(), Asc.RESERVATIONS_RELEASED);
    }
  }
  next.aptpl = aptpl;
  next.bumpGeneration();
  return c;
}

function checkScopeAndType(r: Request): void {
  if (r.scope !== LU_SCOPE) throw invalidFieldInCdb(2, 7);
  if (!VALID_TYPES.has(r.type)) throw invalidFieldInCdb(2, 3);
}

function reserve(r: Request): Outcome {
  checkScopeAndType(r);
  const held = r.cur.reservation;
  if (held) {
    // Reserving again what one already holds is GOOD; anything else conflicts (SPC-4 5.13.9).
    return r.cur.isHolder(r.nexus.id) && held.type === r.type && held.scope === r.scope ? 'unchanged' : 'conflict';
  }
  const c = new Change(r.cur);
  c.next.reservation = { holder: r.nexus.id, type: r.type, scope: r.scope };
  return c;
}

function release(r: Request): Outcome {
  const held = r.cur.reservation;
  // Releasing what one does not hold is GOOD and changes nothing (SPC-4 5.13.11.2.2).
  if (!held || !r.cur.isHolder(r.nexus.id)) return 'unchanged';
  if (r.scope !== held.scope || r.type !== held.type) throw illegalRequest(Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION);
  const c = new Change(r.cur);
  c.next.reservation = undefined;
  if (registrantsType(held.type)) c.tell(others(r.cur, r.nexus.id), Asc.RESERVATIONS_RELEASED);
  return c;
}

function clear(r: Request): Outcome {
  const c = new Change(r.cur);
  c.tell(others(r.cur, r.nexus.id), Asc.RESERVATIONS_PREEMPTED);
  c.next.registrations.clear();
  c.next.reservation = undefined;
  c.next.bumpGeneration();
  return c;
}

function preempt(r: Request): Outcome {
  checkScopeAndType(r);
  const held = r.cur.reservation;
  const self = r.nexus.id;
  const c = new Change(r.cur);
  const next = c.next;
  const removeKey = (key: bigint | undefined): string[] => {
    const gone = [...r.cur.registrations.values()].filter((g) => (key === undefined || g.key === key) && g.nexusId !== self);
    for (const g of gone) next.registrations.delete(g.nexusId);
    c.tell(gone.map((g) => g.nexusId), Asc.REGISTRATIONS_PREEMPTED);
    c.preempted.push(...gone.map((g) => g.nexusId));
    return gone.map((g) => g.nexusId);
  };
  if (held && allRegistrantsType(held.type) && r.sark === 0n) {
    // Preempting an all-registrants reservation: everyone else goes, the preemptor reserves.
    removeKey(undefined);
    next.reservation = { holder: self, type: r.type, scope: r.scope };
  } else {
    if (r.sark === 0n) throw invalidFieldInParameterList(8);
    if (![...r.cur.registrations.values()].some((g) => g.key === r.sark)) return 'conflict';
    const holderKey = held && !allRegistrantsType(held.type) ? r.cur.registrations.get(held.holder)?.key : undefined;
    const removed = removeKey(r.sark);
    if (held && holderKey === r.sark) {
      next.reservation = { holder: self, type: r.type, scope: r.scope };
      if (held.type !== r.type || held.scope !== r.scope) {
        const kept = [...next.registrations.keys()].filter((id) => id !== self && !removed.includes(id));
        c.tell(kept, Asc.RESERVATIONS_RELEASED);
      }
    }
  }
  next.bumpGeneration();
  return c;
}

function registerAndMove(r: Request): Outcome {
  const { list, lu } = r;
  if (!r.reg || r.key !== r.reg.key) return 'conflict';
  const held = r.cur.reservation;
  // Only the holder of a reservation that has one holder can hand it over (SPC-4 5.13.8).
  if (!held || allRegistrantsType(held.type) || held.holder !== r.nexus.id) return 'conflict';
  const tidLength = u32(list, 20);
  if (24 + tidLength > list.length || tidLength < 24) throw parameterListLengthError();
  if (r.sark === 0n) throw invalidFieldInParameterList(8);
  const aptpl = (list[17] & APTPL) !== 0;
  if (aptpl && !lu.reservations.persistent) throw invalidFieldInParameterList(17, 0);
  const port = parseTransportId(list.subarray(24, 24 + tidLength), 24);
  const rtpi = u16(list, 18);
  if (!lu.target.targetPorts().includes(rtpi)) throw invalidFieldInParameterList(18);
  const dest = nexusId(port, rtpi);
  if (dest === r.nexus.id) throw invalidFieldInParameterList(24);
  const c = new Change(r.cur);
  const next = c.next;
  // An already registered destination keeps its own key.
  if (!next.registrations.has(dest)) {
    checkCapacity(next);
    next.registrations.set(dest, registration({ id: dest, initiatorPort: port, relativeTargetPort: rtpi }, r.sark));
  }
  next.reservation = { holder: dest, type: held.type, scope: held.scope };
  if (list[17] & 0x02) next.registrations.delete(r.nexus.id); // UNREG
  next.aptpl = aptpl;
  next.bumpGeneration();
  return c;
}

function others(pr: PrState, self: string): string[] {
  return [...pr.registrations.keys()].filter((id) => id !== self);
}
