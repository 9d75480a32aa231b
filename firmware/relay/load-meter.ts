/**
 * Traffic on a link (the relay -> secondary network of 000-NV), as bytes per second over a sliding
 * window on the Clock. The forwarding policies compare it with their thresholds.
 */
import type { Clock } from '../../hal/clock.js';

export class LoadMeter {
  private readonly bucketMs: number;
  private readonly buckets: number[];
  /** Index of the bucket covering `bucketStart`. */
  private current = 0;
  private bucketStart: number;

  constructor(private readonly clock: Clock, readonly windowMs = 1000, slots = 10) {
    if (!(windowMs > 0) || !(slots >= 1)) throw new RangeError('LoadMeter: window and slots must be positive');
    this.bucketMs = windowMs / slots;
    this.buckets = new Array<number>(slots).fill(0);
    this.bucketStart = clock.now();
  }

  /** Bytes went over the link now. */
  record(bytes: number): void {
    this.roll();
    this.buckets[this.current]! += bytes;
  }

  /** Bytes per second over the last window. */
  rate(): number {
    this.roll();
    let sum = 0;
    for (const b of this.buckets) sum += b;
    return (sum * 1000) / this.windowMs;
  }

  private roll(): void {
    const now = this.clock.now();
    let steps = Math.floor((now - this.bucketStart) / this.bucketMs);
    if (steps <= 0) return;
    this.bucketStart += steps * this.bucketMs;
    if (steps > this.buckets.length) steps = this.buckets.length;
    for (let i = 0; i < steps; i++) {
      this.current = (this.current + 1) % this.buckets.length;
      this.buckets[this.current] = 0;
    }
  }
}
