/**
 * One storage unit of the controller (a volume): its geometry, its layout on the recording media,
 * its IO scheduler (one per storage unit, [0052]) and its counters. Plain state: the processing
 * sequencer drives it, the communication unit exposes it.
 */
import type { BlockDevice } from '../hal/block-device.js';
import type { Logger } from '../hal/types.js';
import type { IoScheduler, MediumStats } from './io-scheduler.js';
import type { Layout } from './layout.js';

export interface StorageUnitStats {
  name: string;
  reads: number;
  writes: number;
  flushes: number;
  discards: number;
  /** Commands that completed with a medium error. */
  errors: number;
  bytesRead: number;
  bytesWritten: number;
  /** Mirror reads retried on another medium. */
  readRetries: number;
  /** IOs registered with the IO scheduler (parts, not commands). */
  registeredIos: number;
  media: MediumStats[];
}

export class StorageUnit {
  reads = 0;
  writes = 0;
  flushes = 0;
  discards = 0;
  errors = 0;
  bytesRead = 0;
  bytesWritten = 0;
  readRetries = 0;

  constructor(
    readonly name: string,
    readonly blockSize: number,
    readonly blockCount: number,
    readonly layout: Layout,
    readonly scheduler: IoScheduler,
    readonly readOnly: boolean,
    readonly maxTransferBlocks: number,
    readonly writeCache: boolean,
    readonly canDiscard: boolean,
    readonly logger: Logger,
    /** The recording media, indexed as the layout numbers them (allocation queries only). */
    readonly media: readonly BlockDevice[],
  ) {}

  stats(): StorageUnitStats {
    return {
      name: this.name,
      reads: this.reads,
      writes: this.writes,
      flushes: this.flushes,
      discards: this.discards,
      errors: this.errors,
      bytesRead: this.bytesRead,
      bytesWritten: this.bytesWritten,
      readRetries: this.readRetries,
      registeredIos: this.scheduler.registered,
      media: this.scheduler.stats(),
    };
  }
}
