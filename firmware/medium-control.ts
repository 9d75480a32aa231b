/**
 * The medium control unit (seed [0065]): executes one processing on its recording medium — read
 * (medium -> buffer area), write (buffer area -> medium), flush, discard — and reports the
 * completion, with the IO's ID, to the IO scheduler. The device reads and writes straight from and
 * into the buffer area: no copy. Device failures become MediumError carrying the volume LBA of the
 * first failing block, which is what the SCSI layer puts in the sense data.
 */
import { DeviceError, type BlockDevice, type WriteOptions } from '../hal/block-device.js';
import type { Logger } from '../hal/types.js';
import type { IoRequest } from './io-request.js';
import { MediumError } from './volume.js';

export interface MediumReport {
  mediumDone(io: IoRequest, error: MediumError | null): void;
}

const FUA: WriteOptions = Object.freeze({ fua: true });
const NO_FUA: WriteOptions = Object.freeze({ fua: false });

export class MediumControl {
  /** Operations handed to the device and not yet finished. */
  busy = 0;
  errors = 0;

  constructor(
    readonly index: number,
    readonly device: BlockDevice,
    private readonly blockSize: number,
    private readonly report: MediumReport,
    private readonly logger: Logger,
  ) {}

  execute(io: IoRequest): void {
    io.control = this;
    this.busy++;
    let done: Promise<void>;
    try {
      switch (io.type) {
        case 'read':
          done = this.device.read(io.offset, io.area!);
          break;
        case 'write':
          done = this.device.write(io.offset, io.area!, io.fua ? FUA : NO_FUA);
          break;
        case 'flush':
          done = this.device.flush();
          break;
        case 'discard':
          done = this.device.discard(io.offset, io.length);
          break;
      }
    } catch (err) {
      // A device that throws instead of rejecting still completes asynchronously, like every other.
      done = Promise.reject(err as Error);
    }
    done.then(io.onOk, io.onErr);
  }

  /** @internal Called by the IO record's bound callbacks. */
  finished(io: IoRequest, err: unknown): void {
    this.busy--;
    io.control = null;
    let error: MediumError | null = null;
    if (err !== null) {
      this.errors++;
      error = this.toMediumError(io, err);
      this.logger.warn({ medium: this.device.name, op: io.type, id: io.id, lba: error.lba, err }, 'medium error');
    }
    this.report.mediumDone(io, error);
  }

  private toMediumError(io: IoRequest, err: unknown): MediumError {
    let lba = io.lba;
    let code = 'EIO';
    if (err instanceof DeviceError) {
      code = err.code;
      if (io.type !== 'flush' && err.offset >= io.offset && err.offset < io.offset + io.length) {
        lba = io.lba + Math.floor((err.offset - io.offset) / this.blockSize);
      }
    }
    const reason = err instanceof Error ? err.message : String(err);
    return new MediumError(io.type, lba, `${io.type} failed on medium ${this.device.name} at LBA ${lba}: ${reason}`, { code, cause: err });
  }
}
