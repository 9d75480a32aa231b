/**
 * What the controller's communication unit offers a host protocol for one storage unit (volume).
 * The sequence is the seed's [0059]-[0067]: the sequencer allocates a buffer area ("preparation
 * for reception"), the host transfers the data into it (iSCSI: R2T / Data-Out), the sequencer
 * registers the IO with the IO scheduler, and the completion comes back when the medium control
 * unit(s) finished.
 */
export interface Volume {
  readonly name: string;
  readonly blockSize: number;
  readonly blockCount: number;
  /** Completed writes may be in a volatile cache until flush(): reported to hosts as WCE=1. */
  readonly writeCache: boolean;
  readonly readOnly: boolean;
  /** Largest single transfer, in blocks (bounded by the buffer memory). */
  readonly maxTransferBlocks: number;

  /**
   * Allocate a buffer area for a write of `blocks` blocks at `lba`. Resolves when buffer memory
   * has room (backpressure: waits, never grows past its bound).
   */
  prepareWrite(lba: number, blocks: number): Promise<WriteReservation>;
  /** Read `blocks` blocks at `lba` into a buffer area. The caller must release() it. */
  read(lba: number, blocks: number): Promise<ReadResult>;
  /** Everything completed before this call is durable when it resolves (SYNCHRONIZE CACHE). */
  flush(): Promise<void>;

  /**
   * Optional (UNMAP / WRITE SAME with UNMAP): deallocate `blocks` blocks at `lba`; they read as
   * zeroes afterwards. Ordered like a write against overlapping IO.
   */
  discard?(lba: number, blocks: number): Promise<void>;
  /** True when discard() really deallocates on every medium (thin provisioning: LBPU/LBPME). */
  readonly canDiscard?: boolean;
  /**
   * Optional (GET LBA STATUS): which blocks of [lba, lba+blocks) hold allocated storage, as
   * extents that cover the range in order, adjacent extents differing in `mapped`.
   */
  allocationStatus?(lba: number, blocks: number): Promise<AllocationExtent[]>;
}

/** A run of blocks that are all mapped (allocated) or all deallocated. */
export interface AllocationExtent {
  readonly lba: number;
  readonly blocks: number;
  readonly mapped: boolean;
}

export interface WriteReservation {
  /** The buffer area to fill: exactly blocks * blockSize bytes. */
  readonly area: Uint8Array;
  /** Register the write with the IO scheduler; resolves at completion (durable if fua). */
  commit(options: { fua: boolean }): Promise<void>;
  /** Give the buffer area back without writing (aborted or failed transfer). */
  abandon(): void;
}

export interface ReadResult {
  readonly data: Uint8Array;
  /** Return the buffer area to buffer memory; call once the data has been sent. */
  release(): void;
}

/** A medium operation failed; carries what the SCSI layer needs for sense data. */
export class MediumError extends Error {
  /** The device's error code (EIO, ENOSPC, ...), when known. */
  readonly code: string | undefined;

  constructor(
    readonly op: 'read' | 'write' | 'flush' | 'discard',
    /** First failing block (volume LBA): the sense data's INFORMATION field. */
    readonly lba: number,
    message: string,
    options?: { code?: string; cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MediumError';
    this.code = options?.code;
  }
}

