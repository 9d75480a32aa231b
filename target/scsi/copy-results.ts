/**
 * RECEIVE COPY RESULTS (SPC-4 6.22, LID1 service actions) and the copy status it reports.
 * EXTENDED COPY (extended-copy.ts) records, per I_T nexus and list identifier, how far a copy
 * got; COPY STATUS reports it, OPERATING PARAMETERS the copy manager's limits, which
 * extended-copy.ts enforces.
 */
import { putU16, putU32, u32 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { invalidFieldInCdb } from './sense.js';
import type { ScsiResult, ScsiTask } from './task.js';
import { dataIn } from './transfer.js';

/** Copy manager limits (OPERATING PARAMETERS). */
export const MAX_CSCD_DESCRIPTORS = 8;
export const MAX_SEGMENT_DESCRIPTORS = 64;
export const MAX_DESCRIPTOR_LIST_LENGTH = 2048;
/** Segment descriptor type codes handled: block to block. CSCD: identification descriptor. */
export const BLOCK_TO_BLOCK = 0x02;
export const IDENTIFICATION_CSCD = 0xe4;

export const COPY_STATUS = 0x00;
export const OPERATING_PARAMETERS = 0x03;

export interface CopyStatus {
  state: 'running' | 'done' | 'failed';
  segmentsProcessed: number;
  bytes: number;
}

/** Statuses kept per nexus: enough for any sane host, bounded against one that never asks. */
const KEPT_PER_NEXUS = 256;

export class CopyResults {
  private readonly byNexus = new Map<string, Map<number, CopyStatus>>();

  get(nexus: string, listId: number): CopyStatus | undefined {
    return this.byNexus.get(nexus)?.get(listId);
  }

  /** A new copy with this list id; the caller checked that none with it is running. */
  start(nexus: string, listId: number): CopyStatus {
    let m = this.byNexus.get(nexus);
    if (!m) this.byNexus.set(nexus, (m = new Map()));
    m.delete(listId);
    if (m.size >= KEPT_PER_NEXUS) {
      for (const [id, s] of m) {
        if (s.state !== 'running') {
          m.delete(id);
          break;
        }
      }
    }
    const status: CopyStatus = { state: 'running', segmentsProcessed: 0, bytes: 0 };
    m.set(listId, status);
    return status;
  }

  forget(nexus: string, listId: number): void {
    this.byNexus.get(nexus)?.delete(listId);
  }

  nexusLost(nexus: string): void {
    this.byNexus.delete(nexus);
  }
}

export async function receiveCopyResults(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const cdb = task.cdb;
  const allocationLength = u32(cdb, 10);
  if ((cdb[1] & 0x1f) === OPERATING_PARAMETERS) return dataIn(operatingParameters(lu), allocationLength);
  const status = lu.copies.get(task.nexus.id, cdb[2]);
  if (!status) throw invalidFieldInCdb(2);
  return dataIn(copyStatus(status), allocationLength);
}

function copyStatus(s: CopyStatus): Uint8Array {
  const d = new Uint8Array(12);
  putU32(d, 0, 8);
  d[4] = s.state === 'running' ? 0x00 : s.state === 'done' ? 0x01 : 0x02; // COPY MANAGER STATUS
  putU16(d, 5, Math.min(s.segmentsProcessed, 0xffff));
  // TRANSFER COUNT in the smallest unit (bytes, KiB, MiB, ...) that fits 32 bits.
  let units = 0;
  let count = s.bytes;
  while (count > 0xffffffff) {
    count = Math.floor(count / 1024);
    units++;
  }
  d[7] = units;
  putU32(d, 8, count);
  return d;
}

function operatingParameters(lu: LogicalUnit): Uint8Array {
  const implemented = [BLOCK_TO_BLOCK, IDENTIFICATION_CSCD];
  const d = new Uint8Array(44 + implemented.length);
  putU32(d, 0, d.length - 4);
  d[4] = 0x01; // SNLID: LIST ID USAGE 11b (no list identifier) is supported
  putU16(d, 8, MAX_CSCD_DESCRIPTORS);
  putU16(d, 10, MAX_SEGMENT_DESCRIPTORS);
  putU32(d, 12, MAX_DESCRIPTOR_LIST_LENGTH);
  putU32(d, 16, 0xffff * lu.volume.blockSize); // MAXIMUM SEGMENT LENGTH: a 16-bit block count
  // No inline or held data, no stream devices (20..31 zero). Copies run concurrently without a
  // limit of their own: each is bounded by the buffer memory like any command.
  putU16(d, 34, 0xffff);
  d[36] = 0xff;
  const granularity = Math.log2(lu.volume.blockSize);
  d[37] = granularity; // DATA SEGMENT GRANULARITY
  d[38] = granularity;
  d[39] = granularity;
  d[43] = implemented.length;
  d.set(implemented, 44);
  return d;
}
