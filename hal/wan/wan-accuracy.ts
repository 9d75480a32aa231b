/**
 * Measuring a WAN link on the real HAL: a ping-pong of small messages against an echo service
 * (round-trip time, unloaded) and a bulk transfer from a source service (throughput), through any
 * Network (in practice WanNetwork over tcpNetwork on 127.0.0.1 with preciseClock). The services
 * can run in this process or another one. Shared by the accuracy tests and bench/wan-accuracy.ts.
 */
import type { Network, StreamHandler, StreamListener, StreamTransport } from '../transport.js';

export interface RttResult {
  samples: number[];
  min: number;
  /** The round trips the host did not hold up: a check of the link that holds on a busy machine. */
  p10: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
}

export interface ThroughputResult {
  bytes: number;
  seconds: number;
  /** Payload bits per second, first byte to last (the link's constant delay cancels out). */
  bps: number;
}

export function percentile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

function summary(samples: number[]): RttResult {
  return {
    samples,
    min: Math.min(...samples),
    p10: percentile(samples, 0.1),
    p50: percentile(samples, 0.5),
    p90: percentile(samples, 0.9),
    p99: percentile(samples, 0.99),
    mean: samples.reduce((a, b) => a + b, 0) / samples.length,
  };
}

const quiet = { onDrain(): void {}, onClose(): void {} };

/** Sends back whatever arrives (at once: flushNow where the transport has it). */
export function startEchoServer(net: Network, host = '127.0.0.1', port = 0): Promise<StreamListener> {
  return net.listen(host, port, (t) => ({
    ...quiet,
    onData: (c: Buffer) => {
      t.write([c]);
      t.flushNow?.();
    },
  }));
}

/** Reads an 8-byte big-endian count, then sends that many bytes as fast as backpressure allows. */
export function startSourceServer(net: Network, host = '127.0.0.1', port = 0, chunkBytes = 64 * 1024): Promise<StreamListener> {
  const chunk = Buffer.alloc(chunkBytes, 0xa5);
  return net.listen(host, port, (t) => {
    let header = Buffer.alloc(0);
    let left = -1;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!t.write([n === chunk.length ? chunk : chunk.subarray(0, n)])) return;
      }
    };
    return {
      onData: (c: Buffer) => {
        if (left >= 0) return;
        header = Buffer.concat([header, c]);
        if (header.length < 8) return;
        left = Number(header.readBigUInt64BE(0));
        pump();
      },
      onDrain: pump,
      onClose() {},
    };
  });
}

class Client implements StreamHandler {
  onBytes: (n: number) => void = () => {};
  onData(chunk: Buffer): void {
    this.onBytes(chunk.length);
  }
  onDrain(): void {}
  onClose(): void {}
}

/**
 * `count` round trips of `size`-byte messages to an echo service, one at a time, after `warmup`
 * unrecorded ones; each after `gapMs` of silence when given (an idle path is slower: see
 * calibrateTransportLatency).
 */
export async function measureRtt(net: Network, port: number, opts: { count: number; size?: number; warmup?: number; gapMs?: number; host?: string }): Promise<RttResult> {
  const size = opts.size ?? 64;
  const warmup = opts.warmup ?? 5;
  const client = new Client();
  const t: StreamTransport = await net.connect(opts.host ?? '127.0.0.1', port, () => client);
  const samples: number[] = [];
  const msg = Buffer.alloc(size, 0x5a);
  try {
    for (let i = 0; i < warmup + opts.count; i++) {
      if (opts.gapMs !== undefined && opts.gapMs > 0) await new Promise((r) => setTimeout(r, opts.gapMs));
      let got = 0;
      const t0 = performance.now();
      const rtt = await new Promise<number>((resolve) => {
        client.onBytes = (n) => {
          got += n;
          if (got >= size) resolve(performance.now() - t0);
        };
        t.write([msg]);
        // As the WAN emulation's deliveries do: what is measured is the hand-over to the kernel on.
        t.flushNow?.();
      });
      if (i >= warmup) samples.push(rtt);
    }
  } finally {
    t.destroy();
  }
  return summary(samples);
}

/** Asks a source service for `bytes` and times their arrival. */
export async function measureThroughput(net: Network, port: number, opts: { bytes: number; host?: string }): Promise<ThroughputResult> {
  const client = new Client();
  let got = 0;
  let first = 0;
  let firstLen = 0;
  let last = 0;
  const done = new Promise<void>((resolve) => {
    client.onBytes = (n) => {
      const now = performance.now();
      if (got === 0) {
        first = now;
        firstLen = n;
      }
      got += n;
      last = now;
      if (got >= opts.bytes) resolve();
    };
  });
  const t = await net.connect(opts.host ?? '127.0.0.1', port, () => client);
  try {
    const req = Buffer.alloc(8);
    req.writeBigUInt64BE(BigInt(opts.bytes));
    t.write([req]);
    await done;
  } finally {
    t.destroy();
  }
  const seconds = (last - first) / 1000;
  return { bytes: got, seconds, bps: ((got - firstLen) * 8) / seconds };
}

/**
 * The real transport's one-way latency as a WAN link sees it: half the median round trip of small
 * messages sent `gapMs` apart (a link's traffic comes after idle gaps, and an idle path is slower:
 * on a busy 2-core VM, loopback TCP takes ~20 µs one way back to back but 100-200 µs after a few ms
 * of silence). Give the result to WanNetwork as transportLatencyMs. `port`: an echo service on the
 * unshaped network, in the same arrangement (process or not) as the real peers.
 */
export async function calibrateTransportLatency(net: Network, port: number, opts: { gapMs?: number; count?: number; host?: string } = {}): Promise<number> {
  const r = await measureRtt(net, port, { count: opts.count ?? 60, warmup: 3, gapMs: opts.gapMs ?? 5, host: opts.host });
  return r.p50 / 2;
}

/**
 * An echo service on real TCP in a worker thread of this process (its own event loop): the
 * calibration's echo for a node whose peers are other processes. An echo on this process's own loop
 * answers without any thread waking up (the loop that wrote is the one that reads), and measured a
 * third of what a peer process's wake-up and read cost (0.04 ms against 0.11 ms one way), so the
 * deliveries it compensated for arrived late.
 */
export async function startEchoThread(host = '127.0.0.1'): Promise<{ port: number; close(): Promise<void> }> {
  const { Worker } = await import('node:worker_threads');
  const source = `
const net = require('node:net');
const { parentPort, workerData } = require('node:worker_threads');
const server = net.createServer((s) => {
  s.setNoDelay(true);
  s.on('data', (c) => s.write(c));
  s.on('error', () => {});
});
server.listen(0, workerData.host, () => parentPort.postMessage(server.address().port));
`;
  // No inherited execArgv: under --input-type=module (or a loader) the eval'd CommonJS would not run.
  const w = new Worker(source, { eval: true, workerData: { host }, execArgv: [] });
  w.unref();
  const port = await new Promise<number>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => reject(new Error(`echo thread exited (${code})`)));
  });
  return { port, close: async () => { await w.terminate(); } };
}

/** Echo and source services on one Network, in this process. */
export async function withServices<T>(net: Network, fn: (ports: { echo: number; source: number }) => Promise<T>): Promise<T> {
  const echo = await startEchoServer(net);
  const source = await startSourceServer(net);
  try {
    return await fn({ echo: echo.port, source: source.port });
  } finally {
    await echo.close();
    await source.close();
  }
}
