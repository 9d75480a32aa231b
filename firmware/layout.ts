/**
 * How a storage unit's LBA range lies on its recording media (the seed's disc array, [0050],
 * [0052]): the processing sequencer asks the layout which medium areas an IO touches and
 * registers one IO per part, naming the medium.
 *   - single: one medium, LBA n at byte n * blockSize.
 *   - stripe (RAID-0): stripe units of `stripeBlocks` blocks dealt round-robin over the media; an
 *     IO crossing stripe units becomes one part per unit.
 *   - mirror (RAID-1): every medium holds everything; writes and discards go to all of them,
 *     a read to one (least queued, ties round-robin), and to another when that one fails.
 */
export type LayoutKind = 'single' | 'stripe' | 'mirror';

/** Receives the parts of an IO. */
export interface PartSink {
  /**
   * @param medium index of the medium
   * @param offset byte offset on the medium
   * @param areaOffset byte offset of the part within the command's buffer area
   * @param length bytes
   * @param lba volume LBA of the part's first block
   */
  part(medium: number, offset: number, areaOffset: number, length: number, lba: number): void;
}

/** Outstanding IO per medium, for the mirror's read choice. */
export interface MediumLoad {
  load(medium: number): number;
}

export interface Layout {
  readonly kind: LayoutKind;
  readonly media: number;
  /** Blocks the media can hold in this layout. */
  readonly capacityBlocks: number;
  /** Parts of a write or discard: every copy. */
  mapWrite(lba: number, blocks: number, sink: PartSink): void;
  /** Parts of a read: one copy. */
  mapRead(lba: number, blocks: number, sink: PartSink, load: MediumLoad): void;
  /** Another medium holding the same data, not in the `tried` bit set; -1 when none. */
  alternate(tried: number): number;
}

class SingleLayout implements Layout {
  readonly kind = 'single';
  readonly media = 1;
  readonly capacityBlocks: number;

  constructor(
    private readonly blockSize: number,
    mediumBytes: number,
  ) {
    this.capacityBlocks = Math.floor(mediumBytes / blockSize);
  }

  mapWrite(lba: number, blocks: number, sink: PartSink): void {
    sink.part(0, lba * this.blockSize, 0, blocks * this.blockSize, lba);
  }

  mapRead(lba: number, blocks: number, sink: PartSink): void {
    sink.part(0, lba * this.blockSize, 0, blocks * this.blockSize, lba);
  }

  alternate(): number {
    return -1;
  }
}

class StripeLayout implements Layout {
  readonly kind = 'stripe';
  readonly capacityBlocks: number;

  constructor(
    private readonly blockSize: number,
    readonly media: number,
    private readonly stripeBlocks: number,
    minMediumBytes: number,
  ) {
    const rows = Math.floor(minMediumBytes / (stripeBlocks * blockSize));
    this.capacityBlocks = rows * stripeBlocks * media;
  }

  mapWrite(lba: number, blocks: number, sink: PartSink): void {
    const su = this.stripeBlocks;
    const bs = this.blockSize;
    let done = 0;
    while (done < blocks) {
      const at = lba + done;
      const unit = Math.floor(at / su);
      const within = at - unit * su;
      const n = Math.min(su - within, blocks - done);
      const medium = unit % this.media;
      const row = Math.floor(unit / this.media);
      sink.part(medium, (row * su + within) * bs, done * bs, n * bs, at);
      done += n;
    }
  }

  mapRead(lba: number, blocks: number, sink: PartSink): void {
    this.mapWrite(lba, blocks, sink);
  }

  alternate(): number {
    return -1;
  }
}

class MirrorLayout implements Layout {
  readonly kind = 'mirror';
  readonly capacityBlocks: number;
  private next = 0;

  constructor(
    private readonly blockSize: number,
    readonly media: number,
    minMediumBytes: number,
  ) {
    this.capacityBlocks = Math.floor(minMediumBytes / blockSize);
  }

  mapWrite(lba: number, blocks: number, sink: PartSink): void {
    for (let m = 0; m < this.media; m++) sink.part(m, lba * this.blockSize, 0, blocks * this.blockSize, lba);
  }

  mapRead(lba: number, blocks: number, sink: PartSink, load: MediumLoad): void {
    let chosen = -1;
    let least = Infinity;
    for (let i = 0; i < this.media; i++) {
      const m = (this.next + i) % this.media;
      const l = load.load(m);
      if (l < least) {
        least = l;
        chosen = m;
      }
    }
    this.next = (chosen + 1) % this.media;
    sink.part(chosen, lba * this.blockSize, 0, blocks * this.blockSize, lba);
  }

  alternate(tried: number): number {
    for (let m = 0; m < this.media; m++) if ((tried & (1 << m)) === 0) return m;
    return -1;
  }
}

export interface LayoutOptions {
  kind: LayoutKind;
  blockSize: number;
  /** Size in bytes of each medium. */
  mediaBytes: readonly number[];
  /** Stripe unit in blocks (stripe only). */
  stripeBlocks?: number;
}

/** Throws (with a message for the operator) when the media do not fit the layout. */
export function createLayout(opts: LayoutOptions): Layout {
  const n = opts.mediaBytes.length;
  const min = Math.min(...opts.mediaBytes);
  switch (opts.kind) {
    case 'single':
      if (n !== 1) throw new Error(`layout single needs exactly 1 medium, got ${n}`);
      return new SingleLayout(opts.blockSize, min);
    case 'stripe': {
      if (n < 1) throw new Error('layout stripe needs at least 1 medium');
      const su = opts.stripeBlocks ?? Math.max(1, Math.floor(65536 / opts.blockSize));
      if (!Number.isInteger(su) || su < 1) throw new Error(`stripe unit must be a positive whole number of blocks, got ${su}`);
      return new StripeLayout(opts.blockSize, n, su, min);
    }
    case 'mirror':
      if (n < 2) throw new Error(`layout mirror needs at least 2 media, got ${n}`);
      // The read retry keeps the tried media in a 31-bit set.
      if (n > 31) throw new Error(`layout mirror takes at most 31 media, got ${n}`);
      return new MirrorLayout(opts.blockSize, n, min);
    default:
      throw new Error(`unknown layout ${String(opts.kind)}`);
  }
}
