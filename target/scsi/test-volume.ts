/**
 * Test support: a RAM Volume that honours the interface (a buffer area per write, returned by
 * commit or abandon, read areas returned by release) and records what was done to it, with
 * switches to fail reads, writes and flushes with MediumError.
 */
import { MediumError, type AllocationExtent, type ReadResult, type Volume, type WriteReservation } from '../../firmware/volume.js';
import { extents } from '../../firmware/allocation.js';

export interface RamVolumeOptions {
  name?: string;
  blockSize?: number;
  blockCount?: number;
  writeCache?: boolean;
  readOnly?: boolean;
  maxTransferBlocks?: number;
}

export type VolumeEvent =
  | { op: 'prepare'; lba: number; blocks: number }
  | { op: 'commit'; lba: number; blocks: number; fua: boolean }
  | { op: 'abandon'; lba: number; blocks: number }
  | { op: 'read'; lba: number; blocks: number }
  | { op: 'release'; lba: number; blocks: number }
  | { op: 'flush' }
  | { op: 'discard'; lba: number; blocks: number };

export class RamVolume implements Volume {
  readonly name: string;
  readonly blockSize: number;
  readonly blockCount: number;
  writeCache: boolean;
  readOnly: boolean;
  readonly maxTransferBlocks: number;
  readonly canDiscard = true;
  readonly data: Uint8Array;
  /** 1 for a block written since it was last discarded (what allocationStatus reports as mapped). */
  readonly mapped: Uint8Array;
  readonly events: VolumeEvent[] = [];
  /** Buffer areas handed out and not yet committed, abandoned or released. */
  outstanding = 0;
  /** First LBA that fails to read / write (MediumError with that LBA), when the range covers it. */
  failReadAt: number | undefined;
  failWriteAt: number | undefined;
  failFlush = false;
  /** When set, prepareWrite waits for this promise (buffer memory backpressure). */
  prepareGate: Promise<void> | undefined;

  constructor(o: RamVolumeOptions = {}) {
    this.name = o.name ?? 'ram';
    this.blockSize = o.blockSize ?? 512;
    this.blockCount = o.blockCount ?? 1024;
    this.writeCache = o.writeCache ?? true;
    this.readOnly = o.readOnly ?? false;
    this.maxTransferBlocks = o.maxTransferBlocks ?? 128;
    this.data = new Uint8Array(this.blockSize * this.blockCount);
    this.mapped = new Uint8Array(this.blockCount);
  }

  private check(lba: number, blocks: number): void {
    if (!Number.isSafeInteger(lba) || lba < 0 || blocks < 1 || lba + blocks > this.blockCount) {
      throw new RangeError(`bad range ${lba}+${blocks}`);
    }
    if (blocks > this.maxTransferBlocks) throw new RangeError(`${blocks} blocks exceed maxTransferBlocks`);
  }

  async prepareWrite(lba: number, blocks: number): Promise<WriteReservation> {
    this.check(lba, blocks);
    if (this.prepareGate) await this.prepareGate;
    this.events.push({ op: 'prepare', lba, blocks });
    this.outstanding++;
    const area = new Uint8Array(blocks * this.blockSize);
    let done = false;
    const finish = (): void => {
      if (done) throw new Error('reservation used twice');
      done = true;
      this.outstanding--;
    };
    return {
      area,
      commit: async ({ fua }) => {
        finish();
        this.events.push({ op: 'commit', lba, blocks, fua });
        const fail = this.failWriteAt;
        if (fail !== undefined && fail >= lba && fail < lba + blocks) {
          throw new MediumError('write', fail, 'injected write error');
        }
        this.data.set(area, lba * this.blockSize);
        this.mapped.fill(1, lba, lba + blocks);
      },
      abandon: () => {
        finish();
        this.events.push({ op: 'abandon', lba, blocks });
      },
    };
  }

  async read(lba: number, blocks: number): Promise<ReadResult> {
    this.check(lba, blocks);
    this.events.push({ op: 'read', lba, blocks });
    const fail = this.failReadAt;
    if (fail !== undefined && fail >= lba && fail < lba + blocks) throw new MediumError('read', fail, 'injected read error');
    this.outstanding++;
    const data = this.data.slice(lba * this.blockSize, (lba + blocks) * this.blockSize);
    let released = false;
    return {
      data,
      release: () => {
        if (released) throw new Error('read area released twice');
        released = true;
        this.outstanding--;
        this.events.push({ op: 'release', lba, blocks });
      },
    };
  }

  async discard(lba: number, blocks: number): Promise<void> {
    if (!Number.isSafeInteger(lba) || lba < 0 || blocks < 1 || lba + blocks > this.blockCount) throw new RangeError(`bad range ${lba}+${blocks}`);
    this.events.push({ op: 'discard', lba, blocks });
    this.data.fill(0, lba * this.blockSize, (lba + blocks) * this.blockSize);
    this.mapped.fill(0, lba, lba + blocks);
  }

  async allocationStatus(lba: number, blocks: number): Promise<AllocationExtent[]> {
    const runs: Array<[number, number]> = [];
    for (let i = lba; i < lba + blocks; i++) {
      if (!this.mapped[i]) continue;
      const last = runs[runs.length - 1];
      if (last && last[1] === i) last[1] = i + 1;
      else runs.push([i, i + 1]);
    }
    return extents(lba, lba + blocks, runs);
  }

  async flush(): Promise<void> {
    this.events.push({ op: 'flush' });
    if (this.failFlush) throw new MediumError('flush', -1, 'injected flush error');
  }
}
