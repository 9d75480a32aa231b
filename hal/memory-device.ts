/**
 * A recording medium in memory. Sparse: 64 KiB chunks are allocated on first write, so a 1 GiB
 * volume costs nothing until written, and discard gives whole chunks back. Nothing is volatile:
 * a resolved write is as durable as this process (the simulated HAL's SimDevice layers a volatile
 * cache and power loss on top of it).
 */
import { DeviceError, type BlockDevice, type DeviceOp, type WriteOptions } from './block-device.js';

export const MEMORY_CHUNK_BYTES = 64 * 1024;

const RESOLVED: Promise<void> = Promise.resolve();

export class MemoryDevice implements BlockDevice {
  readonly volatileCache = false;
  readonly canDiscard = true;
  private readonly chunks = new Map<number, Buffer>();
  private closed = false;

  constructor(
    readonly name: string,
    readonly size: number,
  ) {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`memory device ${name}: bad size ${size}`);
  }

  /** Bytes of memory actually held (allocated chunks). */
  get allocatedBytes(): number {
    return this.chunks.size * MEMORY_CHUNK_BYTES;
  }

  read(offset: number, into: Uint8Array): Promise<void> {
    const err = this.check('read', offset, into.length);
    if (err) return Promise.reject(err);
    this.readSync(offset, into);
    return RESOLVED;
  }

  write(offset: number, from: Uint8Array, _options?: WriteOptions): Promise<void> {
    const err = this.check('write', offset, from.length);
    if (err) return Promise.reject(err);
    this.writeSync(offset, from);
    return RESOLVED;
  }

  flush(): Promise<void> {
    const err = this.check('flush', 0, 0);
    return err ? Promise.reject(err) : RESOLVED;
  }

  discard(offset: number, length: number): Promise<void> {
    const err = this.check('discard', offset, length);
    if (err) return Promise.reject(err);
    this.discardSync(offset, length);
    return RESOLVED;
  }

  /** Chunk-granular: a chunk once written stays allocated until a discard covers all of it. */
  allocated(offset: number, length: number): Promise<Array<[number, number]>> {
    const err = this.check('read', offset, length);
    if (err) return Promise.reject(err);
    const out: Array<[number, number]> = [];
    const end = offset + length;
    for (let index = Math.floor(offset / MEMORY_CHUNK_BYTES); index * MEMORY_CHUNK_BYTES < end; index++) {
      if (!this.chunks.has(index)) continue;
      const from = Math.max(offset, index * MEMORY_CHUNK_BYTES);
      const to = Math.min(end, (index + 1) * MEMORY_CHUNK_BYTES);
      const last = out[out.length - 1];
      if (last && last[1] === from) last[1] = to;
      else out.push([from, to]);
    }
    return Promise.resolve(out);
  }

  close(): Promise<void> {
    this.closed = true;
    this.chunks.clear();
    return RESOLVED;
  }

  /** Synchronous access for the simulator and tests; bounds are the caller's business. */
  readSync(offset: number, into: Uint8Array): void {
    let done = 0;
    while (done < into.length) {
      const pos = offset + done;
      const index = Math.floor(pos / MEMORY_CHUNK_BYTES);
      const within = pos - index * MEMORY_CHUNK_BYTES;
      const n = Math.min(MEMORY_CHUNK_BYTES - within, into.length - done);
      const chunk = this.chunks.get(index);
      // Buffer#copy: no subarray object per operation.
      if (chunk) chunk.copy(into, done, within, within + n);
      else into.fill(0, done, done + n);
      done += n;
    }
  }

  writeSync(offset: number, from: Uint8Array): void {
    let done = 0;
    while (done < from.length) {
      const pos = offset + done;
      const index = Math.floor(pos / MEMORY_CHUNK_BYTES);
      const within = pos - index * MEMORY_CHUNK_BYTES;
      const n = Math.min(MEMORY_CHUNK_BYTES - within, from.length - done);
      let chunk = this.chunks.get(index);
      if (!chunk) {
        chunk = Buffer.alloc(MEMORY_CHUNK_BYTES);
        this.chunks.set(index, chunk);
      }
      chunk.set(n === from.length ? from : from.subarray(done, done + n), within);
      done += n;
    }
  }

  discardSync(offset: number, length: number): void {
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const index = Math.floor(pos / MEMORY_CHUNK_BYTES);
      const within = pos - index * MEMORY_CHUNK_BYTES;
      const n = Math.min(MEMORY_CHUNK_BYTES - within, length - done);
      if (n === MEMORY_CHUNK_BYTES) this.chunks.delete(index);
      else this.chunks.get(index)?.fill(0, within, within + n);
      done += n;
    }
  }

  /** An independent copy of the contents (the simulator's power-loss model restores from one). */
  clone(name = this.name): MemoryDevice {
    const copy = new MemoryDevice(name, this.size);
    for (const [index, chunk] of this.chunks) copy.chunks.set(index, Buffer.from(chunk));
    return copy;
  }

  private check(op: DeviceOp, offset: number, length: number): DeviceError | undefined {
    if (this.closed) return new DeviceError(op, offset, length, 'EBADF', `${this.name}: device is closed`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      return new DeviceError(op, offset, length, 'ERANGE', `${this.name}: ${op} of ${length} bytes at ${offset} is outside 0..${this.size}`);
    }
    return undefined;
  }
}
