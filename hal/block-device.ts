/**
 * A recording medium as the medium control unit sees it: byte-addressed, asynchronous,
 * honest about its cache. Implementations: memory, file (regular file or block device),
 * a QEMU drive over NBD, and the simulated HAL's device with injected latency and errors.
 */
export interface WriteOptions {
  /** Force Unit Access: the write is on stable storage when the promise resolves. */
  fua?: boolean;
}

export interface FlushOptions {
  /**
   * Someone waits on this flush right now (a relay journal's group commit with a 'durable' answer
   * pending): a device may then do it sooner at its caller's expense (the file device, when asked
   * to, runs such an fdatasync on the event loop instead of the threadpool).
   */
  urgent?: boolean;
}

export interface BlockDevice {
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  /**
   * True when a resolved write may still sit in a volatile cache until flush() (page cache,
   * qemu's writeback cache). The SCSI layer reports it as WCE; it must never be false when
   * writes can still be lost after they resolved.
   */
  readonly volatileCache: boolean;
  /** True when discard() really deallocates (punches holes / NBD trim). */
  readonly canDiscard: boolean;
  read(offset: number, into: Uint8Array): Promise<void>;
  write(offset: number, from: Uint8Array, options?: WriteOptions): Promise<void>;
  /** Everything written before this call is on stable storage when it resolves. */
  flush(options?: FlushOptions): Promise<void>;
  /** Deallocate a range; reads of it return zeroes afterwards. */
  discard(offset: number, length: number): Promise<void>;
  /**
   * Optional: which bytes of [offset, offset+length) hold allocated storage, as ascending
   * [start, end) ranges (GET LBA STATUS). A device without it counts as fully allocated.
   */
  allocated?(offset: number, length: number): Promise<Array<[number, number]>>;
  close(): Promise<void>;
}

export type DeviceOp = 'read' | 'write' | 'flush' | 'discard';

/** A device operation failed: the medium control unit turns it into sense data. */
export class DeviceError extends Error {
  constructor(
    readonly op: DeviceOp,
    readonly offset: number,
    readonly length: number,
    readonly code: string,
    message?: string,
  ) {
    super(message ?? `${op} of ${length} bytes at offset ${offset} failed: ${code}`);
    this.name = 'DeviceError';
  }
}
