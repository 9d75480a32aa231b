/**
 * What this machine itself costs a replicated write, measured beside the benches so their figures
 * can be read: a round trip between two idle processes over loopback TCP, and a 4 KiB write plus
 * fdatasync on the file system holding the nodes' data, each after 1 ms of idleness (a QD1 write's
 * hops wait that long for the emulated link). On a quiet bare-metal machine both are tens of µs; on
 * a shared VM whose idle vCPUs are slow to wake they were 0.1-0.5 ms at the median, and every
 * relay-durable write pays four process wake-ups and one such flush on top of the link's RTT.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tcpNetwork } from '../../hal/tcp.js';
import { measureRtt, percentile } from '../../hal/wan/wan-accuracy.js';

export interface Spread {
  p50: number;
  p90: number;
  p99: number;
}

export interface MachineFloor {
  /** Loopback TCP round trip between this process and another, 64 bytes, after 1 ms idle, ms. */
  processRttMs: Spread;
  /** pwrite 4 KiB + fdatasync in `dir`, after 1 ms idle, ms. */
  syncAfterIdleMs: Spread;
  samples: number;
}

function spread(xs: number[]): Spread {
  return { p50: percentile(xs, 0.5), p90: percentile(xs, 0.9), p99: percentile(xs, 0.99) };
}

const idle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const ECHO = `
const net = require('node:net');
const s = net.createServer((c) => { c.setNoDelay(true); c.on('data', (d) => c.write(d)); c.on('error', () => {}); });
s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'));
`;

/** The echo in another process: its wake-up is what a peer node's costs. */
async function processRtt(samples: number): Promise<Spread> {
  const child = spawn(process.execPath, ['-e', ECHO], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`echo process exited (${code})`)));
      child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    });
    const r = await measureRtt(tcpNetwork, port, { count: samples, warmup: 3, gapMs: 1 });
    return { p50: r.p50, p90: r.p90, p99: r.p99 };
  } finally {
    child.kill();
  }
}

async function syncAfterIdle(dir: string, samples: number): Promise<number[]> {
  const file = path.join(dir, `.machine-floor-${process.pid}`);
  const block = Buffer.alloc(4096, 1);
  // Written through once first, so that the timed writes change no file metadata.
  fs.writeFileSync(file, Buffer.alloc(64 * block.length));
  const fd = fs.openSync(file, 'r+');
  try {
    fs.fdatasyncSync(fd);
    const out: number[] = [];
    for (let i = 0; i < samples; i++) {
      await idle(1);
      const t = performance.now();
      fs.writeSync(fd, block, 0, block.length, (i % 64) * block.length);
      fs.fdatasyncSync(fd);
      out.push(performance.now() - t);
    }
    return out;
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
}

/** Both floors, one after the other (about 2 x samples x 1.1 ms). */
export async function measureMachineFloor(dir: string, samples = 300): Promise<MachineFloor> {
  const processRttMs = await processRtt(samples);
  const sync = await syncAfterIdle(dir, samples);
  return { processRttMs, syncAfterIdleMs: spread(sync), samples };
}

export function machineFloorLine(f: MachineFloor): string {
  const s = (x: Spread): string => `p50 ${x.p50.toFixed(3)} / p90 ${x.p90.toFixed(3)} / p99 ${x.p99.toFixed(3)} ms`;
  return `machine floor (after 1 ms idle, ${f.samples} samples): process round trip ${s(f.processRttMs)}; 4 KiB write + fdatasync ${s(f.syncAfterIdleMs)}`;
}
