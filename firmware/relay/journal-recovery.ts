/**
 * Journal recovery: follow the record chain from the persisted head and rebuild the index of the
 * records not yet released. The chain ends at the first place that does not hold the next live
 * record: never-written space, a torn record (CRC), a record of an earlier lap (sequence), of an
 * earlier epoch than its predecessor or the superblock's floor (a record orphaned by a crash whose
 * sequence number was given again), or of another journal (id).
 */
import type { BlockDevice } from '../../hal/block-device.js';
import { KIND_PAD, KIND_WRITE, RECORD_FUA, RECORD_HEADER, alignUp, decodeRecordHeader, payloadOk, type Superblock } from './journal-format.js';
import type { AppendResult, JournalEntry } from './journal-types.js';

/** A record or pad in memory, from the durable head on. */
export interface JournalRecord extends JournalEntry {
  readonly kind: number;
  readonly offset: number;
  readonly span: number;
  readonly epoch: number;
  payloadCrc: number;
  durable: boolean;
  released: boolean;
  data: Buffer | null;
  resolve: ((r: AppendResult) => void) | null;
  reject: ((e: Error) => void) | null;
}

export interface ScanEnd {
  offset: number;
  seq: number;
  reason: string;
}

export interface ScanResult {
  entries: JournalRecord[];
  tail: number;
  nextSeq: number;
  used: number;
  cached: number;
  stop: ScanEnd | null;
}

/** Follow the chain from the head; stop at the first record that is not the next live one. */
export async function scanRing(device: BlockDevice, sb: Superblock, epoch: number, cacheBytes: number): Promise<ScanResult> {
  const capacity = sb.ringEnd - sb.ringStart;
  const entries: JournalRecord[] = [];
  let pos = sb.headOffset;
  let seq = sb.headSeq;
  let used = 0;
  let cached = 0;
  let prevEpoch = sb.floorEpoch;
  let stop: ScanEnd | null = null;
  const header = Buffer.alloc(RECORD_HEADER);
  while (used < capacity) {
    if (pos === sb.ringEnd) pos = sb.ringStart;
    await device.read(pos, header);
    const h = decodeRecordHeader(header);
    const why = typeof h === 'string' ? h
      : h.journalId !== sb.journalId ? `journal id ${h.journalId}`
        : h.seq !== seq ? `sequence ${h.seq}, expected ${seq}`
          : h.epoch < prevEpoch || h.epoch >= epoch ? `epoch ${h.epoch} outside ${prevEpoch}..${epoch - 1}`
            : h.kind === KIND_PAD && h.span !== sb.ringEnd - pos ? `pad of ${h.span} bytes at ${pos}`
              : h.kind === KIND_WRITE && h.span !== alignUp(RECORD_HEADER + h.payloadLength, sb.align) ? `span ${h.span} for ${h.payloadLength} bytes`
                : pos + h.span > sb.ringEnd || used + h.span > capacity ? `span ${h.span} beyond the ring`
                  : null;
    if (why !== null || typeof h === 'string') {
      stop = { offset: pos, seq, reason: why ?? 'bad header' };
      break;
    }
    let data: Buffer | null = null;
    if (h.kind === KIND_WRITE) {
      data = Buffer.alloc(h.payloadLength);
      await device.read(pos + RECORD_HEADER, data);
      if (!payloadOk(h, data)) {
        stop = { offset: pos, seq, reason: 'payload CRC mismatch (torn record)' };
        break;
      }
      if (cached + data.length <= cacheBytes) cached += data.length;
      else data = null;
    }
    entries.push({
      kind: h.kind, offset: pos, span: h.span, epoch: h.epoch, payloadCrc: h.payloadCrc,
      seq: h.seq, id: { sourceUnit: h.sourceUnit, issue: h.issue }, volume: h.volume, lba: h.lba, blocks: h.blocks,
      fua: (h.flags & RECORD_FUA) !== 0, forwardTo: h.forwardTo, length: h.kind === KIND_WRITE ? h.payloadLength : 0, recordedAt: h.recordedAt,
      durable: true, released: h.kind === KIND_PAD, data, resolve: null, reject: null,
    });
    used += h.span;
    pos += h.span;
    prevEpoch = h.epoch;
    seq++;
  }
  if (pos === sb.ringEnd) pos = sb.ringStart;
  return { entries, tail: pos, nextSeq: seq, used, cached, stop };
}
