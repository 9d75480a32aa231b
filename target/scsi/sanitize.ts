/**
 * SANITIZE (SBC-4 5.30): OVERWRITE writes the initialization pattern (repeated to fill each
 * block, inverted on alternate passes with INVERT) over every block, OVERWRITE COUNT times, with
 * FUA: the progress reported is what is on the medium, and a sanitize does not fill the host's
 * page cache with gigabytes of dirty pattern; BLOCK ERASE (thin LUs) deallocates every block, which then reads as
 * zeroes; EXIT FAILURE MODE leaves the failure state a failed sanitize left behind (when that one
 * had AUSE=1). There is no CRYPTOGRAPHIC ERASE: kura does not encrypt.
 *
 * The operation belongs to the LU, not to the task: aborting the task, resets and lost nexuses
 * do not stop it (sanitize-state.ts refuses other commands meanwhile). Without IMMED the status
 * goes out when it is done; with IMMED right away, and hosts poll REQUEST SENSE for progress.
 */
import { u16 } from './cdb.js';
import type { LogicalUnit } from './logical-unit.js';
import { Asc, CheckCondition, SenseKey, invalidFieldInCdb, invalidFieldInParameterList } from './sense.js';
import type { ScsiResult, ScsiTask, TaskIo } from './task.js';
import { good, refuseShortDataOut } from './transfer.js';
import { discardLocked } from './unmap.js';
import { writePattern } from './write-same.js';

export const SANITIZE_OVERWRITE = 0x01;
export const SANITIZE_BLOCK_ERASE = 0x02;
export const SANITIZE_EXIT_FAILURE_MODE = 0x1f;

/** The sanitize's writes must not stop when the task that started it is aborted. */
const UNABORTABLE: TaskIo = { aborted: false, receiveData: () => Promise.reject(new Error('sanitize has no Data-Out')) };

/** Blocks deallocated per step of a BLOCK ERASE: the progress indication moves in these steps. */
const ERASE_STEP = 1 << 20;

export async function sanitize(lu: LogicalUnit, task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
  const cdb = task.cdb;
  const action = cdb[1] & 0x1f;
  const immed = (cdb[1] & 0x80) !== 0;
  const ause = (cdb[1] & 0x20) !== 0;
  const length = u16(cdb, 7);
  let operation: () => Promise<void>;
  switch (action) {
    case SANITIZE_OVERWRITE: {
      // At least a header and one pattern byte; at most a block of pattern.
      if (length <= 4 || length > lu.volume.blockSize + 4) throw invalidFieldInCdb(7);
      const refused = refuseShortDataOut(task, length);
      if (refused) return refused;
      const pass = await overwriteParameters(lu, io, length);
      operation = () => overwrite(lu, pass);
      break;
    }
    case SANITIZE_BLOCK_ERASE:
      if (length !== 0) throw invalidFieldInCdb(7);
      operation = () => blockErase(lu);
      break;
    case SANITIZE_EXIT_FAILURE_MODE:
      if (length !== 0) throw invalidFieldInCdb(7);
      if (lu.sanitize.failed && !lu.sanitize.exitAllowed) throw invalidFieldInCdb(1, 4);
      lu.sanitize.exitFailureMode();
      return good();
    default:
      throw invalidFieldInCdb(1, 4);
  }
  const running = run(lu, operation, ause);
  if (immed) {
    running.catch(() => {}); // logged and kept as the LU's failure state by run()
    return good();
  }
  await running;
  return good();
}

async function run(lu: LogicalUnit, operation: () => Promise<void>, ause: boolean): Promise<void> {
  lu.sanitize.begin(lu.volume.blockCount);
  lu.logger.info({ lun: lu.lun }, 'sanitize started');
  try {
    await operation();
    await lu.volume.flush();
  } catch (err) {
    lu.sanitize.finish(false, ause);
    lu.logger.error({ err, lun: lu.lun }, 'sanitize failed: the LU stays in sanitize failure mode');
    throw new CheckCondition({ key: SenseKey.MEDIUM_ERROR, asc: Asc.SANITIZE_COMMAND_FAILED });
  }
  lu.sanitize.finish(true, ause);
  lu.logger.info({ lun: lu.lun }, 'sanitize completed');
}

interface Overwrite {
  readonly count: number;
  readonly invert: boolean;
  /** One block of the pattern, repeated to the block size. */
  readonly block: Uint8Array;
}

/** Parameter list (SBC-4 5.30.3.2): INVERT, TEST, OVERWRITE COUNT, pattern length, pattern. */
async function overwriteParameters(lu: LogicalUnit, io: TaskIo, length: number): Promise<Overwrite> {
  const bs = lu.volume.blockSize;
  const p = new Uint8Array(length);
  await io.receiveData(p);
  if (p[0] & 0x60) throw invalidFieldInParameterList(0, 6); // TEST: vendor-specific test modes, none here
  const count = p[0] & 0x1f;
  if (count === 0) throw invalidFieldInParameterList(0, 4);
  const patternLength = u16(p, 2);
  if (patternLength === 0 || patternLength > bs || patternLength > length - 4) throw invalidFieldInParameterList(2);
  const block = new Uint8Array(bs);
  Buffer.from(block.buffer).fill(p.subarray(4, 4 + patternLength));
  return { count, invert: (p[0] & 0x80) !== 0, block };
}

/** Holds a background sanitize to the LU's media rate: `bytes` done since `started`. */
async function pace(lu: LogicalUnit, started: number, bytes: number): Promise<void> {
  if (lu.sanitizeRate <= 0) return;
  const due = started + (bytes / lu.sanitizeRate) * 1000;
  const wait = due - lu.target.clock.now();
  if (wait > 1) await new Promise<void>((resolve) => lu.target.clock.setTimer(wait, resolve));
}

async function overwrite(lu: LogicalUnit, o: Overwrite): Promise<void> {
  const total = lu.volume.blockCount;
  const inverted = o.block.map((b) => ~b & 0xff);
  const chunk = lu.volume.maxTransferBlocks * 16;
  const started = lu.target.clock.now();
  for (let pass = 0; pass < o.count; pass++) {
    const block = o.invert && pass % 2 === 1 ? inverted : o.block;
    for (let done = 0; done < total; done += chunk) {
      const n = Math.min(chunk, total - done);
      await writePattern(lu, UNABORTABLE, done, n, block, true);
      lu.sanitize.progress((pass * total + done) / o.count);
      await pace(lu, started, (pass * total + done + n) * lu.volume.blockSize);
    }
  }
}

async function blockErase(lu: LogicalUnit): Promise<void> {
  const total = lu.volume.blockCount;
  for (let done = 0; done < total; done += ERASE_STEP) {
    await discardLocked(lu, done, Math.min(ERASE_STEP, total - done));
    lu.sanitize.progress(done);
  }
}
