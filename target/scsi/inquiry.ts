/**
 * INQUIRY (SPC-4 6.6): standard data and, with EVPD, the VPD pages of vpd.ts. A LUN with no
 * logical unit behind it answers with peripheral qualifier 011b / device type 1Fh.
 */
import { TPGS_IMPLICIT } from './alua.js';
import { u16 } from './cdb.js';
import type { LogicalUnit, ProductIdentity } from './logical-unit.js';
import { invalidFieldInCdb } from './sense.js';
import type { ScsiResult, ScsiTask } from './task.js';
import { dataIn } from './transfer.js';
import { PERIPHERAL_NO_LU, vpdPage } from './vpd.js';

export const PERIPHERAL_DISK = 0x00;

/** SAM-5, iSCSI, SPC-4, SBC-3, each "no version claimed". */
const VERSION_DESCRIPTORS = [0x00a0, 0x0960, 0x0460, 0x04c0];

const STANDARD_LENGTH = 96;
/** Standard INQUIRY byte 5 bit 3: 3PC. */
const THIRD_PARTY_COPY = 0x08;

/** `tpgs`: byte 5 TPGS field, for a logical unit (alua.ts); zero where there is none. */
export function standardInquiryData(id: ProductIdentity, peripheral: number, tpgs = 0): Uint8Array {
  const d = new Uint8Array(STANDARD_LENGTH);
  d[0] = peripheral;
  d[2] = 0x06; // VERSION: SPC-4
  d[3] = 0x12; // HISUP, RESPONSE DATA FORMAT 2
  d[4] = STANDARD_LENGTH - 5;
  d[5] = tpgs;
  d[7] = 0x02; // CMDQUE
  ascii(d, 8, id.vendor, 8);
  ascii(d, 16, id.product, 16);
  ascii(d, 32, id.revision, 4);
  VERSION_DESCRIPTORS.forEach((v, i) => {
    d[58 + 2 * i] = v >> 8;
    d[59 + 2 * i] = v & 0xff;
  });
  return d;
}

function ascii(d: Uint8Array, at: number, s: string, width: number): void {
  for (let i = 0; i < width; i++) d[at + i] = i < s.length ? s.charCodeAt(i) : 0x20;
}

interface InquiryCdb {
  readonly evpd: boolean;
  readonly page: number;
  readonly allocationLength: number;
}

function decode(cdb: Uint8Array): InquiryCdb {
  const evpd = (cdb[1] & 0x01) !== 0;
  // Without EVPD the PAGE CODE must be zero (SPC-4 6.6.1).
  if (!evpd && cdb[2] !== 0) throw invalidFieldInCdb(2);
  return { evpd, page: cdb[2], allocationLength: u16(cdb, 3) };
}

export async function inquiry(lu: LogicalUnit, task: ScsiTask): Promise<ScsiResult> {
  const q = decode(task.cdb);
  if (!q.evpd) {
    const d = standardInquiryData(lu.identity, PERIPHERAL_DISK, TPGS_IMPLICIT);
    d[5] |= THIRD_PARTY_COPY; // the LU is a copy manager: EXTENDED COPY (extended-copy.ts)
    return dataIn(d, q.allocationLength);
  }
  const page = vpdPage(lu, q.page, task.nexus);
  if (!page) throw invalidFieldInCdb(2);
  return dataIn(page, q.allocationLength);
}

/** INQUIRY to a LUN without a logical unit: SPC-4 wants data, not CHECK CONDITION, when it can. */
export function inquiryWithoutLu(id: ProductIdentity, task: ScsiTask): ScsiResult {
  const q = decode(task.cdb);
  if (!q.evpd) return dataIn(standardInquiryData(id, PERIPHERAL_NO_LU), q.allocationLength);
  if (q.page !== 0x00) throw invalidFieldInCdb(2);
  return dataIn(Uint8Array.of(PERIPHERAL_NO_LU, 0x00, 0x00, 0x01, 0x00), q.allocationLength);
}
