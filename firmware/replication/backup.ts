/**
 * Backup by copy command (seed 000-E1, Fig.4 S100-S108): copy a range of the primary's volume to
 * the remote storage unit, block by block: read the block through the IO scheduler, send it
 * through the replication path (relay or secondary), wait for its completion of reception, go on;
 * report completion when the whole range is sent. The same walk resynchronises a secondary after
 * the primary restarted from a crash.
 *
 * The copy block size is adapted to the buffers on the way ([0062], [0099]): at most the volume's
 * largest transfer and half the receive window the relay / secondary advertises, so a copy never
 * monopolises the path. A host write to a block while it is being read makes that read stale (the
 * write is already sequenced before the copy's); the block is read again.
 */
import type { ControllerVolume } from '../communication-unit.js';
import type { Mirroring } from './mirroring.js';

export interface BackupOptions {
  /** The local volume to read (the inner volume, not the mirrored face). */
  volume: ControllerVolume;
  mirroring: Mirroring;
  lba: number;
  blocks: number;
  /** Largest copy block in bytes (default 1 MiB), further bounded by buffers and windows. */
  maxChunkBytes?: number;
  /** Copies in flight (default 4): the path's round trip is long. */
  depth?: number;
  onProgress?: (doneBlocks: number, totalBlocks: number) => void;
  /** Checked between blocks. */
  aborted?: () => boolean;
}

export class BackupAbortedError extends Error {
  constructor() {
    super('backup aborted');
    this.name = 'BackupAbortedError';
  }
}

export function copyBlockSize(o: Pick<BackupOptions, 'volume' | 'mirroring' | 'maxChunkBytes'>): number {
  const v = o.volume;
  const window = o.mirroring.pathWindowBytes();
  let bytes = Math.min(o.maxChunkBytes ?? 2 ** 20, v.maxTransferBlocks * v.blockSize);
  if (window > 0) bytes = Math.min(bytes, Math.floor(window / 2));
  return Math.max(1, Math.floor(bytes / v.blockSize));
}

export async function backupRange(o: BackupOptions): Promise<void> {
  const v = o.volume;
  if (!Number.isSafeInteger(o.lba) || !Number.isSafeInteger(o.blocks) || o.lba < 0 || o.blocks < 0 || o.lba + o.blocks > v.blockCount) {
    throw new RangeError(`backup: ${o.blocks} blocks at LBA ${o.lba} is outside volume ${v.name} (0..${v.blockCount})`);
  }
  const depth = Math.max(1, o.depth ?? 4);
  let next = o.lba;
  let done = 0;
  const end = o.lba + o.blocks;
  const copyOne = async (lba: number, n: number): Promise<void> => {
    for (;;) {
      const watch = o.mirroring.watch(lba, n);
      let sent: Promise<void> | undefined;
      try {
        const r = await v.read(lba, n);
        try {
          if (!watch.dirty()) sent = o.mirroring.replicate(lba, n, r.data, false);
        } finally {
          r.release();
        }
      } finally {
        watch.end();
      }
      if (sent !== undefined) return sent;
    }
  };
  const worker = async (): Promise<void> => {
    while (next < end) {
      if (o.aborted?.()) throw new BackupAbortedError();
      const lba = next;
      const n = Math.min(copyBlockSize(o), end - lba);
      next += n;
      await copyOne(lba, n);
      done += n;
      o.onProgress?.(done, o.blocks);
    }
  };
  await Promise.all(Array.from({ length: depth }, worker));
  // Even in the asynchronous ack mode a backup is complete only once the path has everything.
  await o.mirroring.drain();
}
