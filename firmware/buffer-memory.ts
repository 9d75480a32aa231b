/**
 * The buffer memory (seed [0051]: temporary storage between host / peers and the medium): a pool of
 * bounded size handing out buffer areas. Areas come in power-of-two size classes and go back to a
 * free list per class on release, so the steady state allocates nothing per IO. When the pool is
 * exhausted, requests wait in strict FIFO order (a request never overtakes an earlier waiter, so a
 * large one cannot starve) — that wait is the backpressure that holds back the host's R2T.
 *
 * The bound counts every area the pool holds, in use or cached on a free list. A request that
 * finds no free area of its class but enough cached memory in other classes evicts those (drops
 * them for the garbage collector) and allocates fresh. Memory can briefly exceed the bound by
 * what the collector has not reclaimed yet; the accounting itself never does.
 */
import assert from 'node:assert';
import { Ring } from '../hal/ring.js';

/** Smallest area: one 512-byte block. */
export const MIN_AREA_SHIFT = 9;
/** Largest area a Buffer can reliably be on every platform Node supports. */
export const MAX_AREA_SHIFT = 30;

export class BufferArea {
  /** @internal */ inUse = false;

  constructor(
    /** The whole area, its class size long. */
    readonly bytes: Buffer,
    /** log2 of the class size. */
    readonly sizeShift: number,
  ) {}

  get size(): number {
    return this.bytes.length;
  }

  /** The first `length` bytes (the area itself when it is exactly that long: no allocation). */
  view(length: number): Buffer {
    return length === this.bytes.length ? this.bytes : this.bytes.subarray(0, length);
  }
}

/** A request no amount of waiting can satisfy. */
export class BufferTooLargeError extends RangeError {
  constructor(bytes: number, areaBytes: number, totalBytes: number) {
    super(`buffer memory: a ${bytes}-byte request needs a ${areaBytes}-byte area, larger than the whole pool (${totalBytes} bytes)`);
    this.name = 'BufferTooLargeError';
  }
}

export interface BufferMemoryStats {
  totalBytes: number;
  /** Bytes in areas handed out and not released. */
  inUseBytes: number;
  /** Bytes in areas cached on free lists. */
  cachedBytes: number;
  /** Requests waiting for room. */
  waiters: number;
  /** Highest inUseBytes seen. */
  highWaterBytes: number;
  allocations: number;
  /** Requests that had to wait. */
  waits: number;
  /** Cached areas dropped to make room for another class. */
  evictions: number;
}

interface Waiter {
  shift: number;
  resolve: (area: BufferArea) => void;
}

export class BufferMemory {
  readonly totalBytes: number;
  /** Largest area the pool can ever hand out. */
  readonly maxAreaBytes: number;
  private readonly free: BufferArea[][] = [];
  private inUse = 0;
  private cached = 0;
  private highWater = 0;
  private allocations = 0;
  private waits = 0;
  private evictions = 0;
  private readonly waiters = new Ring<Waiter>();

  constructor(opts: { totalBytes: number }) {
    const total = opts.totalBytes;
    if (!Number.isSafeInteger(total) || total < 1 << MIN_AREA_SHIFT) {
      throw new RangeError(`buffer memory: totalBytes must be an integer >= ${1 << MIN_AREA_SHIFT}, got ${total}`);
    }
    this.totalBytes = total;
    let maxShift = MIN_AREA_SHIFT;
    while (maxShift < MAX_AREA_SHIFT && 2 ** (maxShift + 1) <= total) maxShift++;
    this.maxAreaBytes = 2 ** maxShift;
    for (let s = 0; s <= maxShift; s++) this.free.push([]);
  }

  /** Size of the area a request of `bytes` gets. */
  static areaBytes(bytes: number): number {
    return 2 ** shiftFor(bytes);
  }

  /** An area now, or null when the pool has no room (or earlier requests are waiting: FIFO). */
  tryAllocate(bytes: number): BufferArea | null {
    const shift = this.checkedShift(bytes);
    if (this.waiters.length > 0) return null;
    const area = this.take(shift);
    if (area) this.allocations++;
    return area;
  }

  /**
   * An area of at least `bytes`, waiting (FIFO) while the pool is full. Rejects at once with
   * BufferTooLargeError when the request is larger than the pool.
   */
  allocate(bytes: number): Promise<BufferArea> {
    let shift: number;
    try {
      shift = this.checkedShift(bytes);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (this.waiters.length === 0) {
      const area = this.take(shift);
      if (area) {
        this.allocations++;
        return Promise.resolve(area);
      }
    }
    this.waits++;
    return new Promise((resolve) => this.waiters.push({ shift, resolve }));
  }

  release(area: BufferArea): void {
    assert(area.inUse, 'buffer memory: area released twice (or not from this pool)');
    area.inUse = false;
    this.inUse -= area.size;
    this.free[area.sizeShift]!.push(area);
    this.cached += area.size;
    if (this.waiters.length > 0) this.serveWaiters();
    this.checkInvariants();
  }

  stats(): BufferMemoryStats {
    return {
      totalBytes: this.totalBytes,
      inUseBytes: this.inUse,
      cachedBytes: this.cached,
      waiters: this.waiters.length,
      highWaterBytes: this.highWater,
      allocations: this.allocations,
      waits: this.waits,
      evictions: this.evictions,
    };
  }

  private checkedShift(bytes: number): number {
    if (!Number.isSafeInteger(bytes) || bytes < 1) throw new RangeError(`buffer memory: bad request size ${bytes}`);
    const shift = shiftFor(bytes);
    if (2 ** shift > this.maxAreaBytes) throw new BufferTooLargeError(bytes, 2 ** shift, this.totalBytes);
    return shift;
  }

  private serveWaiters(): void {
    for (let w = this.waiters.peek(); w !== undefined; w = this.waiters.peek()) {
      const area = this.take(w.shift);
      if (!area) return;
      this.waiters.shift();
      this.allocations++;
      w.resolve(area);
    }
  }

  /** A free area of the class, or a new one if the bound allows (after evicting cached areas). */
  private take(shift: number): BufferArea | null {
    const size = 2 ** shift;
    let area = this.free[shift]!.pop();
    if (area) {
      this.cached -= size;
    } else {
      if (this.inUse + size > this.totalBytes) return null;
      if (this.inUse + this.cached + size > this.totalBytes) this.evict(this.inUse + this.cached + size - this.totalBytes);
      area = new BufferArea(Buffer.allocUnsafeSlow(size), shift);
    }
    area.inUse = true;
    this.inUse += size;
    if (this.inUse > this.highWater) this.highWater = this.inUse;
    this.checkInvariants();
    return area;
  }

  /** Drop cached areas, largest classes first (fewest objects), until `bytes` are gone. */
  private evict(bytes: number): void {
    for (let s = this.free.length - 1; s >= 0 && bytes > 0; s--) {
      const list = this.free[s]!;
      while (list.length > 0 && bytes > 0) {
        const area = list.pop()!;
        this.cached -= area.size;
        bytes -= area.size;
        this.evictions++;
      }
    }
    assert(bytes <= 0, 'buffer memory: eviction could not make the room take() computed');
  }

  private checkInvariants(): void {
    assert(this.inUse >= 0 && this.cached >= 0, 'buffer memory: negative accounting');
    assert(this.inUse + this.cached <= this.totalBytes, 'buffer memory: bound exceeded');
  }
}

function shiftFor(bytes: number): number {
  if (bytes <= 1 << MIN_AREA_SHIFT) return MIN_AREA_SHIFT;
  if (bytes <= 2 ** 31) return 32 - Math.clz32(bytes - 1);
  return Math.ceil(Math.log2(bytes));
}
