/**
 * The relay's non-volatile record of commands and data (000-NV, [0114]-[0117]), as the relaying
 * processor sees it, whatever holds it: a journal on a BlockDevice (journal.ts) or battery-backed
 * memory (memory-journal.ts).
 */
import type { CommandId } from '../processing-sequencer.js';

export interface AppendRequest {
  /** The command identifier from the source storage unit, kept for the secondary's dedupe (000-E4). */
  id: CommandId;
  volume: number;
  lba: number;
  blocks: number;
  data: Uint8Array;
  fua?: boolean;
  /** Destination unit named by the source (0: the relay's configured one), [0074]. */
  forwardTo?: number;
  /**
   * The source waits for this record to be durable (it asked 'durable'): its group commit's flush
   * is urgent (BlockDevice FlushOptions). Default false.
   */
  waited?: boolean;
}

export interface AppendResult {
  /** Journal sequence: order of recording, never reused within one journal. */
  seq: number;
  durability: 'durable';
}

export interface JournalEntry {
  readonly seq: number;
  readonly id: CommandId;
  readonly volume: number;
  readonly lba: number;
  readonly blocks: number;
  readonly fua: boolean;
  readonly forwardTo: number;
  /** Payload bytes. */
  readonly length: number;
  /** Wall-clock time of recording (ms since the epoch): "a preset time since recording" survives restarts. */
  readonly recordedAt: number;
}

export interface JournalStats {
  kind: 'device' | 'battery-backed-memory';
  /** Bytes the records may occupy. */
  capacity: number;
  used: number;
  free: number;
  /** Records not yet released, and their payload bytes. */
  records: number;
  pendingBytes: number;
  appends: number;
  /** Group commits (one device flush each when the device has a volatile cache). */
  commits: number;
  flushes: number;
  superblockWrites: number;
  /** Appends waiting for space now. */
  waitingForSpace: number;
  /** Durable head: the first sequence not yet truncated. */
  headSeq: number;
  nextSeq: number;
  failed: boolean;
}

/**
 * Which pending records to list: a forwarding decision needs the first few the scheduler may start,
 * not the whole backlog (listing it on every decision was quadratic in the backlog).
 */
export interface PendingQuery {
  /** At most this many (default: all). */
  limit?: number;
  /** Leave out the records this says (before counting them against the limit). */
  skip?: (e: Pick<JournalEntry, 'seq' | 'id' | 'volume'>) => boolean;
}

export interface RelayJournal {
  readonly kind: 'device' | 'battery-backed-memory';
  /** Record a command and its data; resolves once it survives the failures the medium covers. */
  append(req: AppendRequest): Promise<AppendResult>;
  /**
   * The error append(req) would reject with at once (failed, closed, invalid, too large, full with
   * whenFull 'fail'), or null: lets a 'received' answer be decided without waiting for a turn.
   */
  refusal(req: AppendRequest): Error | null;
  /** Records not yet released, in recording order (the first `limit` that `skip` lets through). */
  pending(query?: PendingQuery): JournalEntry[];
  entry(seq: number): JournalEntry | undefined;
  /** A record's data. */
  read(seq: number): Promise<Buffer>;
  /**
   * The secondary confirmed the record (completion of reception): it may be discarded ([0074]).
   * Resolves once the truncation covering it is durable — which waits for every earlier record to
   * be released too (the journal is truncated from its head).
   */
  release(seq: number): Promise<void>;
  stats(): JournalStats;
  /** Let in-flight commits and truncations finish; refuse further appends. */
  close(): Promise<void>;
}

export class JournalFullError extends Error {
  constructor(readonly needed: number, readonly free: number, readonly capacity: number) {
    super(`journal full: a record needs ${needed} bytes, ${free} of ${capacity} are free`);
    this.name = 'JournalFullError';
  }
}

export class RecordTooLargeError extends RangeError {
  constructor(readonly needed: number, readonly max: number) {
    super(`a journal record of ${needed} bytes exceeds the maximum of ${max}`);
    this.name = 'RecordTooLargeError';
  }
}

/** A device error stopped the journal: reopen it (recovery) to go on. */
export class JournalFailedError extends Error {
  constructor(override readonly cause: unknown) {
    super(`journal failed: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'JournalFailedError';
  }
}

export class JournalClosedError extends Error {
  constructor() {
    super('journal is closed');
    this.name = 'JournalClosedError';
  }
}

export function validateAppend(req: AppendRequest): Error | null {
  const u32 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
  if (req.data.length < 1 || !u32(req.data.length)) return new RangeError(`journal append: data length ${req.data.length}`);
  if (!u32(req.volume) || !u32(req.blocks) || !Number.isSafeInteger(req.lba) || req.lba < 0) {
    return new RangeError(`journal append: bad volume/LBA/blocks (${req.volume}, ${req.lba}, ${req.blocks})`);
  }
  if (!u32(req.id.sourceUnit) || !Number.isSafeInteger(req.id.issue) || req.id.issue < 0) return new RangeError('journal append: bad command identifier');
  if (req.forwardTo !== undefined && !u32(req.forwardTo)) return new RangeError(`journal append: bad forwardTo ${req.forwardTo}`);
  return null;
}
