/**
 * A closed-loop load generator on top of the bench iSCSI client: keeps `queueDepth` writes (or
 * reads) in flight for a while and records every command's latency in an HDR histogram (ns).
 */
import * as hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';
import { randomBytes } from 'node:crypto';
import type { IscsiClient } from './iscsi-client.js';

export interface LoadOptions {
  client: IscsiClient;
  blockSize: number;
  /** Bytes per command (a multiple of blockSize). */
  requestBytes: number;
  queueDepth: number;
  durationMs: number;
  /** random: uniformly placed, request-aligned; sequential: one shared cursor, wrapping. */
  pattern: 'random' | 'sequential';
  op?: 'write' | 'read';
  /** Blocks the load stays within, from `startLba`. Default: 1 GiB worth, or what fits. */
  regionBlocks: number;
  startLba?: number;
  /** Called with the bytes of each completed command (for throughput sampling). */
  onComplete?: (bytes: number) => void;
  /** Stops the run early when it returns true (checked at each completion). */
  stop?: () => boolean;
}

export interface LatencySummary {
  /** Milliseconds. */
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  min: number;
  mean: number;
  max: number;
}

export interface LoadResult {
  ops: number;
  bytes: number;
  elapsedMs: number;
  iops: number;
  mibps: number;
  latencyMs: LatencySummary;
  /** The HDR histogram (values in ns), compressed and base64-encoded (HdrHistogram's format). */
  histogram: string;
}

export function newLatencyHistogram(): Histogram {
  return hdr.build({ bitBucketSize: 64, lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: 3, autoResize: true });
}

export function summarize(h: Histogram): LatencySummary {
  const ms = (ns: number): number => ns / 1e6;
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    min: ms(h.totalCount ? h.minNonZeroValue : 0),
    mean: ms(h.totalCount ? h.mean : 0),
    max: ms(h.maxValue),
  };
}

export function encodeHistogram(h: Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

/** Run the load; rejects with the first failed command's error (after the others drained). */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  if (o.requestBytes % o.blockSize !== 0) throw new RangeError(`request size ${o.requestBytes} is not a multiple of the ${o.blockSize}-byte block`);
  const blocks = o.requestBytes / o.blockSize;
  const slots = Math.floor(o.regionBlocks / blocks);
  if (slots < 1) throw new RangeError(`region of ${o.regionBlocks} blocks holds no ${blocks}-block request`);
  const start = o.startLba ?? 0;
  const op = o.op ?? 'write';
  const h = newLatencyHistogram();
  let cursor = 0;
  const nextLba = (): number => {
    if (o.pattern === 'sequential') {
      const lba = start + cursor * blocks;
      cursor = (cursor + 1) % slots;
      return lba;
    }
    return start + Math.floor(Math.random() * slots) * blocks;
  };
  let ops = 0;
  let bytes = 0;
  let failure: Error | undefined;
  const t0 = process.hrtime.bigint();
  const endNs = t0 + BigInt(Math.round(o.durationMs * 1e6));
  const worker = async (): Promise<void> => {
    // Each slot writes its own buffer (random content, so nothing along the way can compress it).
    const buf = op === 'write' ? randomBytes(o.requestBytes) : undefined;
    while (!failure && process.hrtime.bigint() < endNs && !o.stop?.()) {
      try {
        const r = buf ? await o.client.write(nextLba(), o.blockSize, buf) : await o.client.read(nextLba(), o.blockSize, blocks);
        h.recordValue(Math.max(1, r.latencyNs));
        ops++;
        bytes += o.requestBytes;
        o.onComplete?.(o.requestBytes);
      } catch (err) {
        failure ??= err as Error;
      }
    }
  };
  await Promise.all(Array.from({ length: o.queueDepth }, worker));
  const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (failure) throw failure;
  return {
    ops, bytes, elapsedMs,
    iops: ops / (elapsedMs / 1000),
    mibps: bytes / 2 ** 20 / (elapsedMs / 1000),
    latencyMs: summarize(h),
    histogram: encodeHistogram(h),
  };
}
