/**
 * MODE SENSE (6/10) and MODE SELECT (6/10), SPC-4 6.11-6.14 with the SBC-4 block descriptor and
 * device-specific parameter. MODE SELECT validates the whole parameter list before applying any
 * of it, so a refused list changes nothing.
 */
import { putU16, putU32, putU64, u16, u24, u32, u64 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { MODE_PAGES, findModePage, type ModePage } from './mode-pages.js';
import {
  Asc, illegalRequest, invalidFieldInCdb, invalidFieldInParameterList, msb, parameterListLengthError,
} from './sense.js';
import type { ScsiResult, ScsiTask, TaskIo } from './task.js';
import { dataIn, good, refuseShortDataOut } from './transfer.js';

const PC_CURRENT = 0;
const PC_CHANGEABLE = 1;
const PC_DEFAULT = 2;
const PC_SAVED = 3;
const ALL_PAGES = 0x3f;
const ALL_SUBPAGES = 0xff;

/** Device-specific parameter (SBC-4 6.5.1): WP, and DPOFUA since DPO and FUA are honoured. */
function deviceSpecific(lu: LogicalUnit): number {
  return (lu.writeProtection() !== undefined ? 0x80 : 0) | 0x10;
}

function blockDescriptor(lu: LogicalUnit, long: boolean): Uint8Array {
  const v = lu.volume;
  if (long) {
    const d = new Uint8Array(16);
    putU64(d, 0, v.blockCount);
    putU32(d, 12, v.blockSize);
    return d;
  }
  const d = new Uint8Array(8);
  putU32(d, 0, Math.min(v.blockCount, 0xffffffff));
  d[5] = (v.blockSize >> 16) & 0xff;
  putU16(d, 6, v.blockSize & 0xffff);
  return d;
}

function pageImage(lu: LogicalUnit, p: ModePage, pc: number): Uint8Array {
  switch (pc) {
    case PC_CHANGEABLE: return p.changeable();
    case PC_DEFAULT: return p.defaults(lu);
    case PC_CURRENT: return p.current(lu);
    default: throw new Error(`page control ${pc}`);
  }
}

async function modeSense(lu: LogicalUnit, task: ScsiTask, ten: boolean): Promise<ScsiResult> {
  const cdb = task.cdb;
  const dbd = (cdb[1] & 0x08) !== 0;
  const llbaa = ten && (cdb[1] & 0x10) !== 0;
  const pc = cdb[2] >> 6;
  const code = cdb[2] & 0x3f;
  const subpage = cdb[3];
  const allocationLength = ten ? u16(cdb, 7) : cdb[4];
  if (pc === PC_SAVED) throw illegalRequest(Asc.SAVING_PARAMETERS_NOT_SUPPORTED, { cdb: true, byte: 2, bit: 7 });
  // No page has subpages: subpage 00h is the page itself and FFh ("all subpages") is the same.
  if (subpage !== 0 && subpage !== ALL_SUBPAGES) throw invalidFieldInCdb(3);
  let pages: readonly ModePage[];
  if (code === ALL_PAGES) {
    pages = MODE_PAGES;
  } else {
    const p = findModePage(code);
    if (!p) throw invalidFieldInCdb(2, 5);
    pages = [p];
  }
  const images = pages.map((p) => pageImage(lu, p, pc));
  // Changeable values of the header and block descriptor: nothing there can be changed.
  const bd = dbd ? new Uint8Array(0) : blockDescriptor(lu, llbaa);
  if (pc === PC_CHANGEABLE) bd.fill(0);
  const dsp = pc === PC_CHANGEABLE ? 0 : deviceSpecific(lu);
  const headerLength = ten ? 8 : 4;
  const total = headerLength + bd.length + images.reduce((n, i) => n + i.length, 0);
  const d = new Uint8Array(total);
  if (ten) {
    putU16(d, 0, total - 2);
    d[3] = dsp;
    if (llbaa && !dbd) d[4] = 0x01; // LONGLBA
    putU16(d, 6, bd.length);
  } else {
    d[0] = total - 1;
    d[2] = dsp;
    d[3] = bd.length;
  }
  d.set(bd, headerLength);
  let at = headerLength + bd.length;
  for (const img of images) {
    d.set(img, at);
    at += img.length;
  }
  return dataIn(d, allocationLength);
}

export const modeSense6 = (lu: LogicalUnit, task: ScsiTask) => modeSense(lu, task, false);
export const modeSense10 = (lu: LogicalUnit, task: ScsiTask) => modeSense(lu, task, true);

async function modeSelect(lu: LogicalUnit, task: ScsiTask, io: TaskIo, ten: boolean): Promise<ScsiResult> {
  const cdb = task.cdb;
  const pf = (cdb[1] & 0x10) !== 0;
  if (cdb[1] & 0x01) throw invalidFieldInCdb(1, 0); // SP: no savable pages
  const length = ten ? u16(cdb, 7) : cdb[4];
  if (length === 0) return good();
  const refused = refuseShortDataOut(task, length);
  if (refused) return refused;
  const list = new Uint8Array(length);
  await io.receiveData(list);
  const updates = parseParameterList(lu, list, ten, pf);
  let changed = false;
  for (const [page, image] of updates) {
    const before = page.current(lu);
    page.apply?.(lu, image);
    if (!equal(before, page.current(lu))) changed = true;
  }
  if (changed) lu.modeParametersChanged(task.nexus);
  return good();
}

export const modeSelect6 = (lu: LogicalUnit, task: ScsiTask, io: TaskIo) => modeSelect(lu, task, io, false);
export const modeSelect10 = (lu: LogicalUnit, task: ScsiTask, io: TaskIo) => modeSelect(lu, task, io, true);

/** Validates a MODE SELECT parameter list; returns the pages to apply. Throws on the first error. */
function parseParameterList(
  lu: LogicalUnit, list: Uint8Array, ten: boolean, pf: boolean,
): Array<[ModePage, Uint8Array]> {
  const headerLength = ten ? 8 : 4;
  if (list.length < headerLength) throw parameterListLengthError();
  // MODE DATA LENGTH is reserved for MODE SELECT and the device-specific parameter's WP / DPOFUA
  // are ignored (SBC-4 6.5.1); the medium type of a direct-access LU is 00h.
  const mediumTypeAt = ten ? 2 : 1;
  if (list[mediumTypeAt] !== 0) throw invalidFieldInParameterList(mediumTypeAt);
  const longLba = ten && (list[4] & 0x01) !== 0;
  if (ten && (list[4] & 0xfe) !== 0) throw invalidFieldInParameterList(4, msb(list[4] & 0xfe));
  if (ten && list[5] !== 0) throw invalidFieldInParameterList(5, msb(list[5]));
  const bdLengthAt = ten ? 6 : 3;
  const bdLength = ten ? u16(list, 6) : list[3];
  const bdSize = longLba ? 16 : 8;
  if (bdLength % bdSize !== 0) throw invalidFieldInParameterList(bdLengthAt);
  if (headerLength + bdLength > list.length) throw parameterListLengthError();
  for (let at = headerLength; at < headerLength + bdLength; at += bdSize) checkBlockDescriptor(lu, list, at, longLba);

  const updates: Array<[ModePage, Uint8Array]> = [];
  let at = headerLength + bdLength;
  // PF=0 would mean vendor-specific page formats, and kura has none.
  if (at < list.length && !pf) throw invalidFieldInCdb(1, 4);
  while (at < list.length) {
    if (at + 2 > list.length) throw parameterListLengthError();
    if (list[at] & 0x40) throw invalidFieldInParameterList(at, 6); // SPF: no subpages
    const page = findModePage(list[at] & 0x3f);
    if (!page) throw invalidFieldInParameterList(at, 5);
    if (list[at + 1] !== page.length - 2) throw invalidFieldInParameterList(at + 1);
    if (at + page.length > list.length) throw parameterListLengthError();
    const image = list.slice(at, at + page.length);
    const current = page.current(lu);
    const changeable = page.changeable();
    for (let i = 2; i < page.length; i++) {
      const bad = (image[i] ^ current[i]) & ~changeable[i] & 0xff;
      if (bad) throw invalidFieldInParameterList(at + i, msb(bad));
    }
    updates.push([page, image]);
    at += page.length;
  }
  return updates;
}

/** The block descriptor may restate the geometry but not change it (0 blocks: "no change"). */
function checkBlockDescriptor(lu: LogicalUnit, list: Uint8Array, at: number, longLba: boolean): void {
  const v = lu.volume;
  if (longLba) {
    const blocks = u64(list, at);
    if (blocks !== 0n && blocks !== BigInt(v.blockCount)) throw invalidFieldInParameterList(at);
    if (u32(list, at + 8) !== 0) throw invalidFieldInParameterList(at + 8);
    if (u32(list, at + 12) !== v.blockSize) throw invalidFieldInParameterList(at + 12);
    return;
  }
  const blocks = u32(list, at);
  if (blocks !== 0 && blocks !== Math.min(v.blockCount, 0xffffffff)) throw invalidFieldInParameterList(at);
  if (list[at + 4] !== 0) throw invalidFieldInParameterList(at + 4);
  if (u24(list, at + 5) !== v.blockSize) throw invalidFieldInParameterList(at + 5);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
