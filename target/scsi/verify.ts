/**
 * VERIFY (10/12/16), SBC-4 5.33-5.35. BYTCHK 00b: medium verification, i.e. the blocks must be
 * readable. BYTCHK 01b: the Data-Out buffer is compared with the medium and the first differing
 * byte's offset goes to the INFORMATION field of MISCOMPARE sense data.
 */
import { decodeVerify } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { checkRange, checkTransferLength } from './read-write.js';
import { Asc, CheckCondition, SenseKey, invalidFieldInCdb } from './sense.js';
import { TaskAbortedError, type ScsiResult, type ScsiTask, type TaskIo } from './task.js';
import { good, refuseShortDataOut } from './transfer.js';

export async function verify(lu: LogicalUnit, task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
  const v = decodeVerify(task.cdb);
  // 10b is reserved; 11b (one block compared against every block) is not implemented.
  if (v.bytchk > 1) throw invalidFieldInCdb(1, 2);
  checkTransferLength(lu, v);
  const lba = checkRange(lu, v);
  if (v.blocks === 0) return good();
  const bytes = v.blocks * lu.volume.blockSize;
  let expected: Uint8Array | undefined;
  if (v.bytchk === 1) {
    const refused = refuseShortDataOut(task, bytes);
    if (refused) return refused;
    expected = new Uint8Array(bytes);
    await io.receiveData(expected);
  }
  const r = await lu.volume.read(lba, v.blocks);
  try {
    if (io.aborted) throw new TaskAbortedError();
    if (expected) {
      const at = firstDifference(expected, r.data);
      if (at >= 0) throw new CheckCondition({ key: SenseKey.MISCOMPARE, asc: Asc.MISCOMPARE_DURING_VERIFY, information: at });
    }
  } finally {
    r.release();
  }
  return good();
}

export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
