/**
 * One processing registered with the IO scheduler (seed [0063]): its type, the ID that names it
 * (the command's issuing number), the area on the medium, the buffer area, and which medium.
 * Records are pooled by the IO scheduler and reused, with their completion callbacks bound once,
 * so registering an IO allocates nothing in the steady state.
 */
import type { MediumControl } from './medium-control.js';
import type { MediumError } from './volume.js';

export type IoType = 'read' | 'write' | 'flush' | 'discard';

/** Whoever registered the IO; told exactly once when it completed. Must not keep the record. */
export interface IoOwner {
  ioDone(io: IoRequest, error: MediumError | null): void;
}

export const IO_FREE = 0;
export const IO_PENDING = 1;
export const IO_DISPATCHED = 2;

export class IoRequest {
  type: IoType = 'read';
  /** The command's issuing number [0132]. */
  id = 0;
  /** Index of this part within its command (striping, mirroring). */
  part = 0;
  medium = 0;
  /** Byte offset and length on the medium. */
  offset = 0;
  length = 0;
  /** The buffer area (read: destination, write: source); null for flush and discard. */
  area: Uint8Array | null = null;
  fua = false;
  /** Volume LBA of the first byte, so a medium error can name the failing block. */
  lba = 0;
  owner: IoOwner | null = null;

  // IO scheduler state
  /** @internal */ state = IO_FREE;
  /** @internal Picks made on the medium when this was registered (SSTF age bound). */
  bornPick = 0;
  /** @internal Earlier IOs this one must wait for (see io-scheduler.ts). */
  blockers = 0;
  /** @internal Registration-order list of every not-completed IO of the medium. */
  prevActive: IoRequest | null = null;
  /** @internal */ nextActive: IoRequest | null = null;
  /** @internal Registration-order list of the not-yet-dispatched IOs of the medium. */
  prevPending: IoRequest | null = null;
  /** @internal */ nextPending: IoRequest | null = null;
  /** @internal Set at dispatch. */
  control: MediumControl | null = null;

  /** Completion callbacks for the device promise, bound once per record. */
  readonly onOk: () => void;
  readonly onErr: (err: unknown) => void;

  constructor() {
    this.onOk = () => this.control!.finished(this, null);
    this.onErr = (err: unknown) => this.control!.finished(this, err ?? new Error('device failed without a reason'));
  }
}
