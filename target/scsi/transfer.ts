/**
 * Data phase helpers shared by the command families: Data-In is cut to the allocation length
 * (the transport cuts further to the Expected Data Transfer Length and reports residuals), and a
 * Data-Out command whose EDTL cannot carry what its CDB describes is refused before any data moves.
 */
import { Asc, SenseKey, fixedSense, parameterListLengthError } from './sense.js';
import { Status, type ScsiResult, type ScsiTask, type TaskIo } from './task.js';

export function good(): ScsiResult {
  return { status: Status.GOOD };
}

export function dataIn(data: Uint8Array, allocationLength: number): ScsiResult {
  return { status: Status.GOOD, data: allocationLength >= data.length ? data : data.subarray(0, allocationLength) };
}

/**
 * FCP-4 / SAM-5 option (b) for EDTL < SPDTL on a Data-Out command: transfer nothing and answer
 * ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT. Writing a prefix of the data instead
 * would mean writing partial blocks. Returns undefined when the EDTL covers `bytes`.
 */
export function refuseShortDataOut(task: ScsiTask, bytes: number): ScsiResult | undefined {
  if (task.expectedLength >= bytes) return undefined;
  return {
    status: Status.CHECK_CONDITION,
    sense: fixedSense({ key: SenseKey.ILLEGAL_REQUEST, asc: Asc.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT }),
    spdtl: bytes,
  };
}

/**
 * The parameter list of a command whose list has a fixed header (UNMAP, EXTENDED COPY): a length of
 * zero is a no-op (GOOD), one shorter than the header is PARAMETER LIST LENGTH ERROR, a short EDTL
 * is refused before any data moves. Returns the list, or the result to answer with instead.
 */
export async function receiveParameterList(task: ScsiTask, io: TaskIo, length: number, header: number): Promise<Uint8Array | ScsiResult> {
  if (length === 0) return good();
  if (length < header) throw parameterListLengthError();
  const refused = refuseShortDataOut(task, length);
  if (refused) return refused;
  const list = new Uint8Array(length);
  await io.receiveData(list);
  return list;
}

/**
 * How many of a write's `blocks` the EDTL lets us take: all of them, or (EDTL < SPDTL) only the
 * whole blocks the EDTL covers. That is FCP-4 option (a), "process the command normally except
 * that data beyond the FCP_DL count shall not be requested or transferred", which libiscsi's
 * residual tests insist on (GOOD plus an overflow residual); a partial block is never written.
 * The caller reports `spdtl` so the transport counts the overflow against the CDB's length.
 */
export function clipDataOut(task: ScsiTask, blocks: number, blockSize: number): { blocks: number; spdtl?: number } {
  const bytes = blocks * blockSize;
  if (task.expectedLength >= bytes) return { blocks };
  return { blocks: Math.floor(task.expectedLength / blockSize), spdtl: bytes };
}
