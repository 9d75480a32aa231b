/**
 * The two faces a replicated volume shows its hosts:
 * - on the primary, mirroredVolume(): every committed write also goes to the Mirroring, and the
 *   host's completion waits for both the local medium and the ack mode's point (000-E3 Fig.7
 *   S169-S170); SYNCHRONIZE CACHE waits for both flushes; UNMAP goes out as zeroes.
 * - on the secondary, guardedVolume(): read-only (the SCSI layer reports write protect) until
 *   `kura promote`; the SecondaryUnit writes through the inner volume, not through this face.
 */
import { WriteProtectedError, type ControllerVolume } from '../communication-unit.js';
import type { CommandId } from '../processing-sequencer.js';
import type { AllocationExtent, ReadResult, Volume, WriteReservation } from '../volume.js';
import type { Mirroring } from './mirroring.js';

abstract class VolumeFace implements ControllerVolume {
  readonly name: string;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly writeCache: boolean;
  readonly maxTransferBlocks: number;
  readonly canDiscard: boolean;
  readonly unitId: number;

  constructor(protected readonly inner: ControllerVolume) {
    this.name = inner.name;
    this.blockSize = inner.blockSize;
    this.blockCount = inner.blockCount;
    this.writeCache = inner.writeCache;
    this.maxTransferBlocks = inner.maxTransferBlocks;
    this.canDiscard = inner.canDiscard;
    this.unitId = inner.unitId;
  }

  abstract get readOnly(): boolean;
  abstract prepareWrite(lba: number, blocks: number): Promise<WriteReservation & CommandId>;
  abstract flush(): Promise<void>;
  abstract discard(lba: number, blocks: number): Promise<void>;

  read(lba: number, blocks: number): Promise<ReadResult & CommandId> {
    return this.inner.read(lba, blocks);
  }

  allocationStatus(lba: number, blocks: number): Promise<AllocationExtent[]> {
    return this.inner.allocationStatus(lba, blocks);
  }

  stats(): ReturnType<ControllerVolume['stats']> {
    return this.inner.stats();
  }
}

class MirroredVolume extends VolumeFace {
  private zeroes: Buffer | null = null;

  constructor(inner: ControllerVolume, private readonly mirroring: Mirroring) {
    super(inner);
  }

  get readOnly(): boolean {
    return this.inner.readOnly || this.mirroring.fenced !== null;
  }

  async prepareWrite(lba: number, blocks: number): Promise<WriteReservation & CommandId> {
    if (this.mirroring.fenced !== null) throw new WriteProtectedError(this.name);
    const r = await this.inner.prepareWrite(lba, blocks);
    const m = this.mirroring;
    return {
      issue: r.issue,
      sourceUnit: r.sourceUnit,
      area: r.area,
      abandon: () => r.abandon(),
      // Both start in the same turn, so overlapping writes are ordered alike here and remotely. The
      // replication first: the local commit may write the medium inline (hal/inline-io.ts), and the
      // remote round trip is the longer path, so it must not wait for that.
      commit: (o) => {
        let remote: Promise<void>;
        try {
          remote = m.replicate(lba, blocks, r.area, o.fua);
        } catch (err) {
          remote = Promise.reject(err as Error);
        }
        return Promise.all([r.commit(o), remote]).then(() => undefined);
      },
    };
  }

  flush(): Promise<void> {
    return Promise.all([this.inner.flush(), this.mirroring.flush()]).then(() => undefined);
  }

  async discard(lba: number, blocks: number): Promise<void> {
    // The wire has no discard: the secondary gets zeroes, which is what the blocks read as after
    // it. Handed to the mirroring in the same turn as the local discard registers (like a write's
    // commit), so a write overlapping it is ordered alike here and remotely. A discard the volume
    // refuses outright is not replicated.
    if (this.mirroring.fenced !== null) throw new WriteProtectedError(this.name);
    if (this.readOnly || !Number.isSafeInteger(lba) || !Number.isSafeInteger(blocks) || lba < 0 || blocks < 1 || lba + blocks > this.blockCount) {
      return this.inner.discard(lba, blocks);
    }
    const local = this.inner.discard(lba, blocks);
    const step = this.maxTransferBlocks;
    this.zeroes ??= Buffer.alloc(step * this.blockSize);
    const sent: Promise<void>[] = [local];
    for (let off = 0; off < blocks; off += step) {
      const n = Math.min(step, blocks - off);
      sent.push(this.mirroring.replicate(lba + off, n, this.zeroes.subarray(0, n * this.blockSize), false));
    }
    await Promise.all(sent);
  }
}

class GuardedVolume extends VolumeFace {
  constructor(inner: ControllerVolume, private readonly writable: () => boolean) {
    super(inner);
  }

  get readOnly(): boolean {
    return this.inner.readOnly || !this.writable();
  }

  prepareWrite(lba: number, blocks: number): Promise<WriteReservation & CommandId> {
    if (!this.writable()) return Promise.reject(new WriteProtectedError(this.name));
    return this.inner.prepareWrite(lba, blocks);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  discard(lba: number, blocks: number): Promise<void> {
    if (!this.writable()) return Promise.reject(new WriteProtectedError(this.name));
    return this.inner.discard(lba, blocks);
  }
}

export function mirroredVolume(inner: ControllerVolume, mirroring: Mirroring): ControllerVolume {
  return new MirroredVolume(inner, mirroring);
}

export function guardedVolume(inner: ControllerVolume, writable: () => boolean): ControllerVolume {
  return new GuardedVolume(inner, writable);
}

/**
 * The secondary's copy of a volume as the primary's copy manager sees it (000-E1 backup: an
 * EXTENDED COPY naming the remote LU): writes go down the replication path in the volume's
 * sequence; it cannot be read from here.
 */
type RemoteShape = Pick<Volume, 'name' | 'blockSize' | 'blockCount' | 'maxTransferBlocks'>;

class RemoteCopyVolume implements Volume {
  readonly writeCache = false;
  readonly readOnly = false;

  constructor(private readonly local: RemoteShape, private readonly mirroring: Mirroring) {}

  get name(): string {
    return `${this.local.name} (remote copy)`;
  }
  get blockSize(): number {
    return this.local.blockSize;
  }
  get blockCount(): number {
    return this.local.blockCount;
  }
  get maxTransferBlocks(): number {
    return this.local.maxTransferBlocks;
  }

  prepareWrite(lba: number, blocks: number): Promise<WriteReservation> {
    const area = new Uint8Array(blocks * this.blockSize);
    return Promise.resolve({
      area,
      // Complete only when the path has it, whatever the volume's ack mode ([0061]: backup completes on reception).
      commit: () => this.mirroring.replicate(lba, blocks, area, false).then(() => this.mirroring.drain()),
      abandon: () => {},
    });
  }

  read(): Promise<ReadResult> {
    return Promise.reject(new Error(`${this.name} is the remote copy: read it at its own node`));
  }

  flush(): Promise<void> {
    return this.mirroring.drain();
  }
}

export function remoteCopyVolume(local: RemoteShape, mirroring: Mirroring): Volume {
  return new RemoteCopyVolume(local, mirroring);
}
