/**
 * EXTENDED COPY (LID1), SPC-4 6.4: the LU acts as copy manager for block-to-block segments
 * (02h) between copy targets named by identification descriptors (E4h) holding an NAA designator
 * of VPD 83h, i.e. any LU of this node (lu-registry.ts). The whole parameter list is checked
 * before anything is copied; segments then run in order, in buffer-area-sized chunks read from
 * the source volume and written to the destination under its range lock, each chunk passing
 * through plain memory so a copy never holds two buffer areas at once. A failing segment ends
 * the command with COPY ABORTED and its index in COMMAND-SPECIFIC INFORMATION.
 */
import { u16, u32, u64 } from './cdb.js';
import {
  BLOCK_TO_BLOCK, IDENTIFICATION_CSCD, MAX_CSCD_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH, MAX_SEGMENT_DESCRIPTORS, type CopyStatus,
} from './copy-results.js';
import type { LogicalUnit } from './logical-unit.js';
import { lockedWrite } from './read-write.js';
import {
  Asc, CheckCondition, SenseKey, illegalRequest, invalidFieldInParameterList, parameterListLengthError,
} from './sense.js';
import { TaskAbortedError, type ScsiResult, type ScsiTask, type TaskIo } from './task.js';
import { good, receiveParameterList } from './transfer.js';

const HEADER = 16;
const CSCD_LENGTH = 32;
/** CSCD descriptor type codes that are 64 bytes long (IPv6, IP copy service, ROD). */
const LONG_CSCD = new Set([0xea, 0xeb, 0xfe]);
const DESIGNATOR_NAA = 0x3;
const PERIPHERAL_DISK = 0x00;

interface Segment {
  readonly index: number;
  readonly source: number;
  readonly destination: number;
  readonly blocks: number;
  readonly sourceLba: bigint;
  readonly destinationLba: bigint;
}

export async function extendedCopy(lu: LogicalUnit, task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
  const list = await receiveParameterList(task, io, u32(task.cdb, 10), HEADER);
  if (!(list instanceof Uint8Array)) return list;
  const length = list.length;

  const listId = list[0];
  const usage = (list[1] >> 3) & 0x03;
  if (usage === 0x01) throw invalidFieldInParameterList(1, 4);
  const cscdLength = u16(list, 2);
  const segmentLength = u32(list, 8);
  if (cscdLength + segmentLength > MAX_DESCRIPTOR_LIST_LENGTH) throw parameterListLengthError();
  if (HEADER + cscdLength + segmentLength + u32(list, 12) > length) throw parameterListLengthError();
  if (u32(list, 12) !== 0) throw invalidFieldInParameterList(12); // no inline data
  const targets = parseTargets(lu, list, HEADER, cscdLength);
  const segments = parseSegments(list, HEADER + cscdLength, segmentLength);

  const nexus = task.nexus.id;
  // LIST ID USAGE 11b: no list identifier, nothing kept; 00b: status held; 10b: not kept.
  const tracked = usage !== 0x03;
  if (tracked && lu.copies.get(nexus, listId)?.state === 'running') {
    throw illegalRequest(Asc.OPERATION_IN_PROGRESS);
  }
  const status: CopyStatus = tracked ? lu.copies.start(nexus, listId) : { state: 'running', segmentsProcessed: 0, bytes: 0 };
  try {
    for (const s of segments) {
      await copySegment(s, targets, task, io, status);
      status.segmentsProcessed++;
    }
    status.state = 'done';
  } catch (err) {
    status.state = 'failed';
    throw err;
  } finally {
    if (usage === 0x02) lu.copies.forget(nexus, listId);
  }
  return good();
}

/**
 * The copy targets, in descriptor order: the LU an identification descriptor names, or undefined
 * when none of this node has that NAA id (a segment using it is then UNREACHABLE COPY TARGET).
 */
function parseTargets(lu: LogicalUnit, list: Uint8Array, start: number, length: number): Array<LogicalUnit | undefined> {
  const found: Array<{ at: number; type: number }> = [];
  for (let at = start; at < start + length;) {
    const type = list[at]!;
    found.push({ at, type });
    at += LONG_CSCD.has(type) ? 2 * CSCD_LENGTH : CSCD_LENGTH;
  }
  if (found.length > MAX_CSCD_DESCRIPTORS) throw illegalRequest(Asc.TOO_MANY_TARGET_DESCRIPTORS);
  return found.map(({ at, type }) => {
    if (type !== IDENTIFICATION_CSCD || at + CSCD_LENGTH > start + length) {
      throw illegalRequest(Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, { cdb: false, byte: at });
    }
    // Byte 1: LU ID TYPE and NUL are obsolete in SPC-4 and ignored; the device type must be a disk.
    if ((list[at + 1]! & 0x1f) !== PERIPHERAL_DISK) throw invalidFieldInParameterList(at + 1, 4);
    const designatorType = list[at + 5]! & 0x0f;
    const designatorLength = list[at + 7]!;
    if (designatorType !== DESIGNATOR_NAA || designatorLength !== 16) return undefined;
    const naa = (u64(list, at + 8) << 64n) | u64(list, at + 16);
    const target = lu.copyTargets.find(naa);
    const blockLength = (list[at + 29]! << 16) | u16(list, at + 30);
    if (target && blockLength !== target.volume.blockSize) throw invalidFieldInParameterList(at + 29);
    return target;
  });
}

function parseSegments(list: Uint8Array, start: number, length: number): Segment[] {
  const found: Array<{ at: number; type: number; size: number }> = [];
  for (let at = start; at + 4 <= start + length;) {
    const size = 4 + u16(list, at + 2);
    found.push({ at, type: list[at]!, size });
    at += size;
  }
  if (found.length > MAX_SEGMENT_DESCRIPTORS) throw illegalRequest(Asc.TOO_MANY_SEGMENT_DESCRIPTORS);
  return found.map(({ at, type, size }, index) => {
    if (type !== BLOCK_TO_BLOCK) throw illegalRequest(Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, { cdb: false, byte: at });
    if (size !== 0x1c || at + size > start + length) throw invalidFieldInParameterList(at + 2);
    // DC and CAT (byte 1) change nothing when source and destination share the block size,
    // which the copy requires.
    return {
      index,
      source: u16(list, at + 4),
      destination: u16(list, at + 6),
      blocks: u16(list, at + 10),
      sourceLba: u64(list, at + 12),
      destinationLba: u64(list, at + 20),
    };
  });
}

function aborted(segment: number, asc: number = Asc.NO_ADDITIONAL_SENSE): CheckCondition {
  return new CheckCondition({ key: SenseKey.COPY_ABORTED, asc, commandSpecific: segment });
}

async function copySegment(s: Segment, targets: ReadonlyArray<LogicalUnit | undefined>, task: ScsiTask, io: TaskIo, status: CopyStatus): Promise<void> {
  const src = targets[s.source];
  const dst = targets[s.destination];
  if (!src || !dst) throw aborted(s.index, Asc.UNREACHABLE_COPY_TARGET);
  if (src.volume.blockSize !== dst.volume.blockSize) throw aborted(s.index);
  if (s.sourceLba + BigInt(s.blocks) > BigInt(src.volume.blockCount)) throw aborted(s.index);
  if (s.destinationLba + BigInt(s.blocks) > BigInt(dst.volume.blockCount)) throw aborted(s.index);
  if (dst.writeProtection() !== undefined) throw aborted(s.index, Asc.WRITE_PROTECTED);
  if (src.reservations.conflicts('read', task.nexus) || dst.reservations.conflicts('write', task.nexus)) throw aborted(s.index);
  const from = Number(s.sourceLba);
  const to = Number(s.destinationLba);
  const chunk = Math.min(src.volume.maxTransferBlocks, dst.volume.maxTransferBlocks);
  // Copying forward over an overlapping range further on would read blocks it already wrote.
  const backwards = src.volume === dst.volume && to > from && to < from + s.blocks;
  const steps = Math.ceil(s.blocks / chunk);
  try {
    for (let i = 0; i < steps; i++) {
      if (io.aborted) throw new TaskAbortedError();
      const done = (backwards ? steps - 1 - i : i) * chunk;
      const n = Math.min(chunk, s.blocks - done);
      const r = await src.volume.read(from + done, n);
      const data = Uint8Array.from(r.data);
      r.release();
      await lockedWrite(dst, io, to + done, n, false, async (area) => area.set(data));
      status.bytes += data.length;
    }
  } catch (err) {
    if (err instanceof TaskAbortedError) throw err;
    src.logger.warn({ err, segment: s.index }, 'EXTENDED COPY segment failed');
    throw aborted(s.index);
  }
}
