/**
 * The storage unit controller (seed Fig.2, [0051]-[0052]): buffer memory, processing sequencer and
 * communication unit shared by the controller; per storage unit (volume) a layout over its
 * recording media, one IO scheduler, and one medium control unit per medium.
 */
import type { BlockDevice } from '../hal/block-device.js';
import type { Clock } from '../hal/clock.js';
import { nullLogger, type Logger } from '../hal/types.js';
import { BufferMemory, type BufferMemoryStats } from './buffer-memory.js';
import { CommunicationUnit, type ControllerVolume } from './communication-unit.js';
import { IoScheduler, type SchedulerPolicy } from './io-scheduler.js';
import { createLayout, type LayoutKind } from './layout.js';
import { ProcessingSequencer } from './processing-sequencer.js';
import { StorageUnit, type StorageUnitStats } from './storage-unit.js';

export type { ControllerVolume } from './communication-unit.js';
export type { CommandId } from './processing-sequencer.js';

export interface ControllerOptions {
  clock: Clock;
  logger?: Logger;
  /** Size of the buffer memory shared by every volume, in bytes. */
  bufferBytes: number;
  /** This storage unit controller's id, appended to every command identifier [0133]. Default 1. */
  unitId?: number;
}

export interface AddVolumeOptions {
  name: string;
  blockSize: number;
  blockCount: number;
  media: BlockDevice[];
  layout: LayoutKind;
  /** Stripe unit in blocks (stripe layout). Default: 64 KiB worth. */
  stripeBlocks?: number;
  scheduler: SchedulerPolicy;
  /** IOs outstanding on each medium at once. Default 32; 1 is the seed's one-at-a-time. */
  mediumQueueDepth?: number;
  readOnly?: boolean;
  /** Largest single transfer, in blocks. Default: 4 MiB worth, or less if the buffer memory is smaller. */
  maxTransferBlocks?: number;
  /** SSTF: an IO that has waited this many picks goes next. Default 64. */
  sstfAgeLimit?: number;
}

export interface ControllerStats {
  unitId: number;
  /** Last issuing number handed out. */
  lastIssue: number;
  /** Commands in progress. */
  activeCommands: number;
  closed: boolean;
  buffer: BufferMemoryStats;
  volumes: StorageUnitStats[];
}

export interface Controller {
  readonly unitId: number;
  addVolume(opts: AddVolumeOptions): ControllerVolume;
  volume(name: string): ControllerVolume | undefined;
  stats(): ControllerStats;
  /**
   * Refuse new commands, wait for the ones in progress, flush every medium. Does not close the
   * media: whoever opened them does. Rejects with the first flush error (after trying them all).
   */
  close(): Promise<void>;
}

export const DEFAULT_MAX_TRANSFER_BYTES = 4 * 1024 * 1024;

export function createController(opts: ControllerOptions): Controller {
  return new StorageController(opts);
}

class StorageController implements Controller {
  readonly unitId: number;
  private readonly logger: Logger;
  private readonly buffers: BufferMemory;
  private readonly sequencer: ProcessingSequencer;
  private readonly comm: CommunicationUnit;
  private readonly units: StorageUnit[] = [];
  private readonly volumes = new Map<string, ControllerVolume>();
  private readonly mediaInUse = new Set<BlockDevice>();
  private closing: Promise<void> | null = null;

  constructor(opts: ControllerOptions) {
    this.unitId = opts.unitId ?? 1;
    if (!Number.isSafeInteger(this.unitId) || this.unitId < 0) throw new RangeError(`controller: bad unitId ${this.unitId}`);
    this.logger = opts.logger ?? nullLogger;
    this.buffers = new BufferMemory({ totalBytes: opts.bufferBytes });
    this.sequencer = new ProcessingSequencer(this.buffers);
    this.comm = new CommunicationUnit(this.unitId, this.sequencer);
  }

  addVolume(o: AddVolumeOptions): ControllerVolume {
    if (this.closing) throw new Error('controller: closed');
    const what = `volume ${JSON.stringify(o.name)}`;
    if (typeof o.name !== 'string' || o.name === '') throw new Error('controller: a volume needs a name');
    if (this.volumes.has(o.name)) throw new Error(`controller: ${what} exists already`);
    if (o.blockSize !== 512 && o.blockSize !== 4096) throw new Error(`${what}: block size must be 512 or 4096, got ${o.blockSize}`);
    if (!Number.isSafeInteger(o.blockCount) || o.blockCount < 1) throw new Error(`${what}: block count must be a positive integer, got ${o.blockCount}`);
    if (!Array.isArray(o.media) || o.media.length === 0) throw new Error(`${what}: no media`);
    for (const m of o.media) {
      if (this.mediaInUse.has(m) || o.media.indexOf(m) !== o.media.lastIndexOf(m)) throw new Error(`${what}: medium ${m.name} is used twice`);
    }
    if (o.scheduler !== 'fifo' && o.scheduler !== 'sstf') throw new Error(`${what}: scheduler must be fifo or sstf, got ${String(o.scheduler)}`);
    const depth = o.mediumQueueDepth ?? 32;
    if (!Number.isInteger(depth) || depth < 1) throw new Error(`${what}: medium queue depth must be an integer >= 1, got ${depth}`);

    let layout;
    try {
      layout = createLayout({ kind: o.layout, blockSize: o.blockSize, mediaBytes: o.media.map((m) => m.size), stripeBlocks: o.stripeBlocks });
    } catch (err) {
      throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
    }
    if (layout.capacityBlocks < o.blockCount) {
      throw new Error(`${what}: the media hold ${layout.capacityBlocks} blocks of ${o.blockSize} bytes in a ${o.layout} layout, the volume needs ${o.blockCount}`);
    }

    const maxTransferBlocks = o.maxTransferBlocks ?? Math.max(1, Math.floor(Math.min(DEFAULT_MAX_TRANSFER_BYTES, this.buffers.maxAreaBytes) / o.blockSize));
    if (!Number.isSafeInteger(maxTransferBlocks) || maxTransferBlocks < 1) throw new Error(`${what}: bad maxTransferBlocks ${maxTransferBlocks}`);
    if (BufferMemory.areaBytes(maxTransferBlocks * o.blockSize) > this.buffers.maxAreaBytes) {
      throw new Error(`${what}: a transfer of ${maxTransferBlocks} blocks needs a ${BufferMemory.areaBytes(maxTransferBlocks * o.blockSize)}-byte buffer area; the buffer memory's largest is ${this.buffers.maxAreaBytes}`);
    }

    const logger = this.logger.child({ volume: o.name });
    const scheduler = new IoScheduler({ media: o.media, blockSize: o.blockSize, policy: o.scheduler, depth, ageLimit: o.sstfAgeLimit, logger });
    const unit = new StorageUnit(
      o.name, o.blockSize, o.blockCount, layout, scheduler, o.readOnly === true, maxTransferBlocks,
      o.media.some((m) => m.volatileCache), o.media.every((m) => m.canDiscard), logger, o.media,
    );
    this.units.push(unit);
    for (const m of o.media) this.mediaInUse.add(m);
    const volume = this.comm.hostVolume(unit);
    this.volumes.set(o.name, volume);
    logger.info({ layout: o.layout, media: o.media.map((m) => m.name), blockSize: o.blockSize, blockCount: o.blockCount, scheduler: o.scheduler, depth, writeCache: unit.writeCache }, 'storage unit added');
    return volume;
  }

  volume(name: string): ControllerVolume | undefined {
    return this.volumes.get(name);
  }

  stats(): ControllerStats {
    return {
      unitId: this.unitId,
      lastIssue: this.comm.issued,
      activeCommands: this.sequencer.activeCommands,
      closed: this.closing !== null,
      buffer: this.buffers.stats(),
      volumes: this.units.map((u) => u.stats()),
    };
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    // From now on: no new command, and no commit() of a write prepared before (its data may be
    // half there; the host side is shut down before the controller).
    this.comm.closed = true;
    this.sequencer.closed = true;
    await this.sequencer.whenIdle();
    let first: unknown = null;
    const flushes = this.units.map((u) =>
      this.sequencer.flush(u, this.unitId, this.comm.nextIssue()).catch((err: unknown) => {
        this.logger.error({ volume: u.name, err }, 'flush at close failed');
        first ??= err;
      }),
    );
    await Promise.all(flushes);
    this.logger.info({ lastIssue: this.comm.issued }, 'controller closed');
    if (first !== null) throw first;
  }
}
