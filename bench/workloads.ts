/**
 * The benchmark's workloads and how to run and read each load tool against an iSCSI URL.
 *
 * - Writes: `qemu-img bench -w` through QEMU's own libiscsi driver (no VM). QEMU 7.2's bench has
 *   no random mode: it advances the offset by the step (-S) modulo the image size. A step of a
 *   prime number of blocks (coprime with the power-of-two block count) visits every block once per
 *   lap in a scattered order, which is what "random" means here. It runs a fixed count of
 *   requests, so a short calibration run first sizes the count to last about `seconds`.
 * - Reads: `iscsi-perf` (libiscsi), which runs until interrupted and prints one status line per
 *   second (separated by CR); the first second (ramp-up) is dropped and the rest averaged.
 */
import { run } from './processes.js';

export interface Workload {
  id: string;
  title: string;
  tool: 'qemu-img' | 'iscsi-perf';
  /** Bytes per request. */
  requestBytes: number;
  depth: number;
  /** qemu-img: scatter offsets with a prime stride instead of writing sequentially. */
  scattered?: boolean;
  /** qemu-img: FLUSH (SYNCHRONIZE CACHE) after every N writes. */
  flushInterval?: number;
  /** qemu-img: request count of the calibration (and warm-up) run. */
  warmupCount?: number;
  /** iscsi-perf: random instead of sequential reads. */
  random?: boolean;
}

/** 104729 is prime, so coprime with any power-of-two number of blocks. */
const SCATTER_BLOCKS = 104729;
const LBA_BYTES = 512;

export const WORKLOADS: readonly Workload[] = [
  { id: 'randwrite-4k-qd32', title: '4 KiB scattered write, QD32', tool: 'qemu-img', requestBytes: 4096, depth: 32, scattered: true, warmupCount: 20_000 },
  { id: 'randwrite-4k-qd1', title: '4 KiB scattered write, QD1', tool: 'qemu-img', requestBytes: 4096, depth: 1, scattered: true, warmupCount: 5_000 },
  { id: 'write-128k-qd16', title: '128 KiB sequential write, QD16', tool: 'qemu-img', requestBytes: 128 * 1024, depth: 16, warmupCount: 4_000 },
  { id: 'write-4k-flush-qd1', title: '4 KiB write + SYNCHRONIZE CACHE each, QD1', tool: 'qemu-img', requestBytes: 4096, depth: 1, scattered: true, flushInterval: 1, warmupCount: 1_000 },
  { id: 'randread-4k-qd32', title: '4 KiB random read, QD32', tool: 'iscsi-perf', requestBytes: 4096, depth: 32, random: true },
  { id: 'read-128k-qd16', title: '128 KiB sequential read, QD16', tool: 'iscsi-perf', requestBytes: 128 * 1024, depth: 16 },
];

export interface Measurement {
  iops: number;
  /** MiB/s */
  mibps: number;
  seconds: number;
  requests?: number;
  /** iscsi-perf: the per-second IOPS figures used. */
  samples?: number[];
}

export function qemuImgBenchArgs(w: Workload, url: string, count: number): string[] {
  const args = ['bench', '-f', 'raw', '-w', '-t', 'none', '-c', String(count), '-d', String(w.depth), '-s', String(w.requestBytes)];
  if (w.scattered) args.push('-S', String(w.requestBytes * SCATTER_BLOCKS));
  if (w.flushInterval) args.push(`--flush-interval=${w.flushInterval}`);
  args.push(url);
  return args;
}

export function iscsiPerfArgs(w: Workload, url: string): string[] {
  const args = ['-m', String(w.depth), '-b', String(w.requestBytes / LBA_BYTES)];
  if (w.random) args.push('-r');
  args.push(url);
  return args;
}

/** Seconds from qemu-img bench's "Run completed in 4.372 seconds." */
export function parseQemuImgBench(output: string): number {
  const m = /Run completed in ([\d.]+) seconds/.exec(output);
  if (!m) throw new Error(`no "Run completed" line in qemu-img bench output:\n${output.trim().slice(-1000)}`);
  return Number(m[1]);
}

/** Per-second "iops current" figures from iscsi-perf's status lines, in order. */
export function parseIscsiPerf(output: string): number[] {
  const samples: number[] = [];
  for (const line of output.split(/[\r\n]+/)) {
    const m = /^\s*\d+:\d\d:\d\d - lba \d+, iops current (\d+) \([\d.]+ MB\/s\), iops average \d+/.exec(line);
    if (m) samples.push(Number(m[1]));
  }
  return samples;
}

/** Mean of the per-second samples without the first (connection and ramp-up). */
export function steadyIops(samples: readonly number[]): number {
  const steady = samples.length > 1 ? samples.slice(1) : samples;
  if (steady.length === 0) throw new Error('no iscsi-perf samples');
  return steady.reduce((a, b) => a + b, 0) / steady.length;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

async function qemuImgBench(w: Workload, url: string, count: number, timeoutMs: number): Promise<Measurement> {
  const args = qemuImgBenchArgs(w, url, count);
  const r = await run('qemu-img', args, { timeoutMs });
  if (r.code !== 0) throw new Error(`qemu-img ${args.join(' ')} failed (${r.signal ?? `exit ${r.code}`}): ${(r.stderr || r.stdout).trim().slice(-1500)}`);
  const seconds = parseQemuImgBench(r.stdout + r.stderr);
  const iops = count / seconds;
  return { iops, mibps: (iops * w.requestBytes) / (1 << 20), seconds, requests: count };
}

/**
 * Runs of qemu-img bench are sized by a calibration run; the count is kept per workload and target
 * so that every measured run lasts about the same time on the same target.
 */
export class WorkloadRunner {
  private readonly counts = new Map<string, number>();

  constructor(private readonly seconds: number) {}

  /** Warm up (and for qemu-img, calibrate). Not measured. */
  async warmup(w: Workload, target: string, url: string): Promise<void> {
    if (w.tool === 'iscsi-perf') {
      await this.iscsiPerf(w, url, 2);
      return;
    }
    const warm = w.warmupCount ?? 5_000;
    const m = await qemuImgBench(w, url, warm, this.timeoutMs());
    this.counts.set(`${w.id}/${target}`, Math.max(warm, Math.round(m.iops * this.seconds)));
  }

  async measure(w: Workload, target: string, url: string): Promise<Measurement> {
    if (w.tool === 'iscsi-perf') return this.iscsiPerf(w, url, this.seconds + 1);
    const count = this.counts.get(`${w.id}/${target}`) ?? (w.warmupCount ?? 5_000);
    return qemuImgBench(w, url, count, this.timeoutMs());
  }

  private timeoutMs(): number {
    return Math.max(120, this.seconds * 10) * 1000;
  }

  private async iscsiPerf(w: Workload, url: string, seconds: number): Promise<Measurement> {
    const args = iscsiPerfArgs(w, url);
    const r = await run('iscsi-perf', args, { stopAfterMs: seconds * 1000 + 300, stopSignal: 'SIGINT', timeoutMs: seconds * 1000 + 15_000 });
    const samples = parseIscsiPerf(r.stdout + r.stderr);
    if (samples.length === 0) {
      throw new Error(`iscsi-perf ${args.join(' ')} printed no status line (${r.signal ?? `exit ${r.code}`}): ${(r.stdout + r.stderr).trim().slice(-1500)}`);
    }
    const iops = steadyIops(samples);
    return { iops, mibps: (iops * w.requestBytes) / (1 << 20), seconds: samples.length, samples };
  }
}
