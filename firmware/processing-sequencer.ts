/**
 * The processing sequencer (seed [0051], [0058]-[0063]): the state machine behind every command.
 *   write:   allocate a buffer area -> READY (prepareWrite resolves: iSCSI may send R2T, the
 *            seed's "completion of preparation for reception") -> the host fills the area ->
 *            commit(): register the IO(s) with the IO scheduler -> REGISTERED -> the medium
 *            control units report -> DONE (buffer area released, completion to the host).
 *   read:    allocate -> register the read(s) -> the area comes back to the caller with the data.
 *   flush:   register a flush on every medium of the unit.
 *   discard: register a discard on every medium area (every copy).
 * Every command carries its issuing number and the source unit's id [0132]-[0133] (handed out by
 * the communication unit); every IO it registers carries that number as its ID [0063].
 * Registration is synchronous in commit(), flush(), discard(), and in read() whenever the buffer
 * memory has room at once: callers can rely on "registered in call order".
 */
import assert from 'node:assert';
import type { BufferArea, BufferMemory } from './buffer-memory.js';
import type { IoOwner, IoRequest, IoType } from './io-request.js';
import type { PartSink } from './layout.js';
import type { StorageUnit } from './storage-unit.js';
import type { MediumError, ReadResult, WriteReservation } from './volume.js';

/** The command identifier [0132]-[0133]. */
export interface CommandId {
  /** Issuing number: +1 per command issued by the source unit. */
  readonly issue: number;
  /** Id of the storage unit controller that issued the command. */
  readonly sourceUnit: number;
}

export class ControllerClosedError extends Error {
  constructor() {
    super('the controller is closed');
    this.name = 'ControllerClosedError';
  }
}

abstract class Command implements IoOwner, PartSink, CommandId {
  /** Parts registered and not completed, plus one while registering (nothing completes early). */
  private parts = 0;
  private partIndex = 0;
  protected error: MediumError | null = null;
  /** The command's buffer area, exactly blocks * blockSize long; null without data. */
  protected view: Buffer | null = null;
  protected fua = false;

  constructor(
    protected readonly sequencer: ProcessingSequencer,
    readonly unit: StorageUnit,
    readonly sourceUnit: number,
    readonly issue: number,
    readonly lba: number,
    readonly blocks: number,
    private readonly ioType: IoType,
  ) {}

  /** PartSink: register one IO with the IO scheduler [0063]. */
  part(medium: number, offset: number, areaOffset: number, length: number, lba: number): void {
    const scheduler = this.unit.scheduler;
    const io = scheduler.acquire();
    io.type = this.ioType;
    io.id = this.issue;
    io.part = this.partIndex++;
    io.medium = medium;
    io.offset = offset;
    io.length = length;
    const v = this.view;
    io.area = v === null ? null : areaOffset === 0 && length === v.length ? v : v.subarray(areaOffset, areaOffset + length);
    io.fua = this.fua;
    io.lba = lba;
    io.owner = this;
    this.parts++;
    scheduler.register(io);
  }

  ioDone(io: IoRequest, error: MediumError | null): void {
    if (error !== null && !this.retry(io, error)) {
      // Sense data names the first failing block: keep the lowest.
      if (this.error === null || error.lba < this.error.lba) this.error = error;
    }
    this.partDone();
  }

  protected registerParts(): void {
    assert(this.parts === 0, 'sequencer: command registered twice');
    this.parts = 1;
    this.map();
    this.partDone();
  }

  /** Hand every part to part(). */
  protected abstract map(): void;
  /** All parts completed; this.error says how. */
  protected abstract finish(): void;

  /** Re-register a failed part elsewhere; true when it did. */
  protected retry(_io: IoRequest, _error: MediumError): boolean {
    return false;
  }

  private partDone(): void {
    assert(this.parts > 0, 'sequencer: more completions than parts');
    if (--this.parts === 0) this.finish();
  }
}

const W_READY = 0;
const W_REGISTERED = 1;
const W_DONE = 2;
const W_ABANDONED = 3;
const W_STATES = ['ready', 'registered', 'done', 'abandoned'];

class WriteCommand extends Command implements WriteReservation {
  readonly area: Buffer;
  private state = W_READY;
  private resolveFn: (() => void) | null = null;
  private rejectFn: ((e: Error) => void) | null = null;

  constructor(sequencer: ProcessingSequencer, unit: StorageUnit, sourceUnit: number, issue: number, lba: number, blocks: number, private readonly buffer: BufferArea) {
    super(sequencer, unit, sourceUnit, issue, lba, blocks, 'write');
    this.area = buffer.view(blocks * unit.blockSize);
    this.view = this.area;
  }

  commit(options: { fua: boolean }): Promise<void> {
    if (this.state !== W_READY) return Promise.reject(new Error(`write #${this.issue}: commit() when ${W_STATES[this.state]}`));
    if (this.sequencer.closed) {
      this.abandon();
      return Promise.reject(new ControllerClosedError());
    }
    this.state = W_REGISTERED;
    this.fua = options.fua === true;
    const done = new Promise<void>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.sequencer.begin();
    this.registerParts();
    return done;
  }

  abandon(): void {
    if (this.state === W_ABANDONED) return;
    if (this.state !== W_READY) throw new Error(`write #${this.issue}: abandon() when ${W_STATES[this.state]}`);
    this.state = W_ABANDONED;
    this.sequencer.buffers.release(this.buffer);
  }

  protected map(): void {
    this.unit.layout.mapWrite(this.lba, this.blocks, this);
  }

  protected finish(): void {
    assert(this.state === W_REGISTERED);
    this.state = W_DONE;
    this.sequencer.buffers.release(this.buffer);
    const unit = this.unit;
    unit.writes++;
    this.sequencer.end();
    if (this.error !== null) {
      unit.errors++;
      this.rejectFn!(this.error);
    } else {
      unit.bytesWritten += this.area.length;
      this.resolveFn!();
    }
    this.resolveFn = this.rejectFn = null;
  }
}

const R_REGISTERED = 0;
const R_DONE = 1;
const R_RELEASED = 2;
const R_FAILED = 3;

class ReadCommand extends Command implements ReadResult {
  readonly done: Promise<ReadResult & CommandId>;
  private state = R_REGISTERED;
  private buffer: BufferArea | null = null;
  private tried = 0;
  private resolveFn!: (r: ReadResult & CommandId) => void;
  private rejectFn!: (e: Error) => void;

  constructor(sequencer: ProcessingSequencer, unit: StorageUnit, sourceUnit: number, issue: number, lba: number, blocks: number) {
    super(sequencer, unit, sourceUnit, issue, lba, blocks, 'read');
    this.done = new Promise((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
  }

  get data(): Uint8Array {
    return this.view!;
  }

  /** The buffer area is here: register the read(s). */
  start(buffer: BufferArea): void {
    this.buffer = buffer;
    this.view = buffer.view(this.blocks * this.unit.blockSize);
    this.registerParts();
  }

  /** No buffer area could be had. */
  fail(err: Error): void {
    this.sequencer.end();
    this.state = R_FAILED;
    this.rejectFn(err);
  }

  release(): void {
    if (this.state !== R_DONE) throw new Error(`read #${this.issue}: release() ${this.state === R_RELEASED ? 'twice' : 'before the data came'}`);
    this.state = R_RELEASED;
    this.sequencer.buffers.release(this.buffer!);
  }

  protected map(): void {
    this.unit.layout.mapRead(this.lba, this.blocks, this, this.unit.scheduler);
  }

  protected override retry(io: IoRequest, error: MediumError): boolean {
    this.tried |= 1 << io.medium;
    const alt = this.unit.layout.alternate(this.tried);
    if (alt < 0) return false;
    this.unit.readRetries++;
    this.unit.logger.warn({ id: this.issue, lba: error.lba, failed: io.medium, retry: alt }, 'read error: retrying on another mirror');
    this.part(alt, io.offset, io.area!.byteOffset - this.view!.byteOffset, io.length, io.lba);
    return true;
  }

  protected finish(): void {
    assert(this.state === R_REGISTERED);
    const unit = this.unit;
    unit.reads++;
    this.sequencer.end();
    if (this.error !== null) {
      unit.errors++;
      this.state = R_FAILED;
      this.sequencer.buffers.release(this.buffer!);
      this.rejectFn(this.error);
    } else {
      unit.bytesRead += this.view!.length;
      this.state = R_DONE;
      this.resolveFn(this);
    }
  }
}

/** Flush and discard: no buffer area, a plain completion. */
class PlainCommand extends Command {
  readonly done: Promise<void>;
  private resolveFn!: () => void;
  private rejectFn!: (e: Error) => void;

  constructor(sequencer: ProcessingSequencer, unit: StorageUnit, sourceUnit: number, issue: number, lba: number, blocks: number, type: 'flush' | 'discard') {
    super(sequencer, unit, sourceUnit, issue, lba, blocks, type);
    this.done = new Promise((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    sequencer.begin();
    this.registerParts();
  }

  protected map(): void {
    if (this.blocks === 0) {
      for (let m = 0; m < this.unit.layout.media; m++) this.part(m, 0, 0, 0, 0);
    } else {
      this.unit.layout.mapWrite(this.lba, this.blocks, this);
    }
  }

  protected finish(): void {
    const unit = this.unit;
    if (this.blocks === 0) unit.flushes++;
    else unit.discards++;
    this.sequencer.end();
    if (this.error !== null) {
      unit.errors++;
      this.rejectFn(this.error);
    } else this.resolveFn();
  }
}

export class ProcessingSequencer {
  /** Set by the controller's close(): no command is registered any more. */
  closed = false;
  private active = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(readonly buffers: BufferMemory) {}

  /** Commands registered (or allocating, for reads) and not completed. */
  get activeCommands(): number {
    return this.active;
  }

  write(unit: StorageUnit, sourceUnit: number, issue: number, lba: number, blocks: number): Promise<WriteReservation & CommandId> {
    const bytes = blocks * unit.blockSize;
    const area = this.buffers.tryAllocate(bytes);
    if (area !== null) return Promise.resolve(new WriteCommand(this, unit, sourceUnit, issue, lba, blocks, area));
    // Backpressure: the host hears "ready" (R2T) only once buffer memory has room.
    return this.buffers.allocate(bytes).then((a) => new WriteCommand(this, unit, sourceUnit, issue, lba, blocks, a));
  }

  read(unit: StorageUnit, sourceUnit: number, issue: number, lba: number, blocks: number): Promise<ReadResult & CommandId> {
    const cmd = new ReadCommand(this, unit, sourceUnit, issue, lba, blocks);
    this.begin();
    const bytes = blocks * unit.blockSize;
    const area = this.buffers.tryAllocate(bytes);
    if (area !== null) cmd.start(area);
    else this.buffers.allocate(bytes).then((a) => cmd.start(a), (e: Error) => cmd.fail(e));
    return cmd.done;
  }

  flush(unit: StorageUnit, sourceUnit: number, issue: number): Promise<void> {
    return new PlainCommand(this, unit, sourceUnit, issue, 0, 0, 'flush').done;
  }

  discard(unit: StorageUnit, sourceUnit: number, issue: number, lba: number, blocks: number): Promise<void> {
    assert(blocks > 0, 'sequencer: empty discard');
    return new PlainCommand(this, unit, sourceUnit, issue, lba, blocks, 'discard').done;
  }

  /** Resolves when no command is in progress. */
  whenIdle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** @internal */
  begin(): void {
    this.active++;
  }

  /** @internal */
  end(): void {
    assert(this.active > 0, 'sequencer: command ended twice');
    if (--this.active === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
