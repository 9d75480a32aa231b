/**
 * How close the WAN emulator's links come to their profiles on this machine: for each preset, the
 * round-trip time of a ping-pong of small messages (unloaded: p50 and p99 against twice the
 * one-way delay) and the throughput of a bulk transfer (against the bandwidth), through real TCP on
 * 127.0.0.1 with preciseClock. Both directions use the preset. Prints a markdown table and writes
 * JSON to bench/results/.
 *
 *   npx tsx bench/wan-accuracy.ts [--presets lan,metro,regional,continental] [--split] [--no-stamps]
 *       [--transport-latency <ms|auto>] [--rtt-seconds 3] [--bulk-seconds 2] [--out FILE]
 *
 * By default both ends use arrival stamps, as `kura up` does (hal/wan/arrival-stamps.ts: the
 * receiver times each delivery on the machine's shared clock); --no-stamps shapes on the sending
 * side alone, where --transport-latency applies.
 * --split runs the echo and source services in a child process with its own WanNetwork, as two
 * storage nodes would be; by default both ends share this process. --transport-latency hands
 * bytes to TCP that much early to cancel its own latency (WanStreamOptions.transportLatencyMs);
 * `auto` measures it first (calibrateTransportLatency, in the same process arrangement).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Command, InvalidArgumentError } from 'commander';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { preciseClock, preciseScheduler } from '../hal/precise-timer.js';
import { tcpNetwork } from '../hal/tcp.js';
import type { Network } from '../hal/transport.js';
import { DEFAULT_HORIZON_MS } from '../hal/wan/arrival-stamps.js';
import { WanLinks } from '../hal/wan/links.js';
import { PRESETS, oneWayDelayMs, resolveProfile, type PresetName, type WanProfile } from '../hal/wan/profiles.js';
import { calibrateTransportLatency, measureRtt, measureThroughput, startEchoServer, startSourceServer, type RttResult, type ThroughputResult } from '../hal/wan/wan-accuracy.js';
import { WanNetwork } from '../hal/wan/wan-network.js';
import { machineStampOptions } from '../hal/machine-clock.js';
import { repoRoot } from './lib/repo-root.js';

interface Options {
  presets: PresetName[];
  split: boolean;
  stamps: boolean;
  transportLatency: string;
  rttSeconds: number;
  bulkSeconds: number;
  out?: string;
  serve?: string;
}

interface Row {
  preset: string;
  oneWayMs: number;
  bandwidthBps: number | null;
  profileRttMs: number;
  rtt: Omit<RttResult, 'samples'> & { count: number; p50ErrorPct: number; p50ErrorUs: number; withinSpec: boolean };
  throughput: (ThroughputResult & { errorPct: number }) | null;
}

function positive(v: string): number {
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError('expected a positive number');
  return n;
}

function parseArgs(argv: string[]): Options {
  const names = Object.keys(PRESETS) as PresetName[];
  return new Command('wan-accuracy')
    .description('Profile vs measured RTT and throughput of the WAN presets over real TCP on 127.0.0.1')
    .option('--presets <list>', `comma-separated: ${names.join(', ')}`, (v: string) => {
      const list = v.split(',').map((s) => s.trim()).filter(Boolean);
      for (const p of list) if (!names.includes(p as PresetName)) throw new InvalidArgumentError(`unknown preset ${p}`);
      return list as PresetName[];
    }, names)
    .option('--split', 'run the services in a child process (two nodes)', false)
    .option('--no-stamps', 'shape on the sending side alone, without arrival stamps')
    .option('--transport-latency <ms|auto>', 'compensate the real transport\'s one-way latency (0: none)', '0')
    .option('--rtt-seconds <s>', 'time spent on round trips per preset (30 to 1000 of them)', positive, 3)
    .option('--bulk-seconds <s>', 'length of the bulk transfer per preset', positive, 2)
    .option('--out <file>', 'JSON results file (default bench/results/wan-accuracy-<date>.json)')
    .option('--serve <profile-json>', '(internal) serve echo and source with this profile, ports on stdout')
    .parse(argv)
    .opts<Options>();
}

/** A WanNetwork shaping everything this process sends with `profile`. */
function wan(profile: WanProfile, transportLatencyMs: number, stamps: boolean): Network {
  const opts = stamps ? { stamps: machineStampOptions() } : { transportLatencyMs };
  return new WanNetwork(tcpNetwork, new WanLinks({ clock: preciseClock, select: (c) => ({ name: c.direction, profile }) }), opts);
}

/** The child side of --split: services until stdin closes. */
async function serve(arg: string): Promise<void> {
  const { profile, transportLatencyMs, stamps } = JSON.parse(arg) as { profile: WanProfile; transportLatencyMs: number; stamps: boolean };
  const net = wan(profile, transportLatencyMs, stamps);
  const echo = await startEchoServer(net);
  const source = await startSourceServer(net);
  const raw = await startEchoServer(tcpNetwork);
  process.stdout.write(`${JSON.stringify({ echo: echo.port, source: source.port, raw: raw.port })}\n`);
  process.stdin.resume();
  await new Promise((r) => process.stdin.once('end', r));
  process.exit(0);
}

interface Services {
  echo: number;
  source: number;
  /** An unshaped echo (for calibration). */
  raw: number;
  stop: () => Promise<void>;
}

async function services(profile: WanProfile, transportLatencyMs: number, split: boolean, net: Network, stamps = false): Promise<Services> {
  if (!split) {
    const echo = await startEchoServer(net);
    const source = await startSourceServer(net);
    const raw = await startEchoServer(tcpNetwork);
    return { echo: echo.port, source: source.port, raw: raw.port, stop: async () => { await echo.close(); await source.close(); await raw.close(); } };
  }
  const arg = JSON.stringify({ profile, transportLatencyMs, stamps });
  const child: ChildProcess = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--serve', arg], { stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`service process exited (${code})`)));
  });
  const ports = JSON.parse(line) as { echo: number; source: number; raw: number };
  return {
    ...ports,
    stop: async () => {
      child.stdin!.end();
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** The one-way latency to compensate: a number, or measured against an unshaped echo. */
async function transportLatency(opts: Options): Promise<number> {
  if (opts.transportLatency !== 'auto') {
    const ms = Number(opts.transportLatency);
    if (!(ms >= 0)) throw new InvalidArgumentError('--transport-latency: a number of ms >= 0, or auto');
    return ms;
  }
  const svc = await services({}, 0, opts.split, tcpNetwork);
  try {
    return await calibrateTransportLatency(tcpNetwork, svc.raw, { gapMs: 5, count: 100 });
  } finally {
    await svc.stop();
  }
}

async function measure(name: PresetName, opts: Options, lead: number): Promise<Row> {
  const profile = { ...PRESETS[name] };
  const resolved = resolveProfile(profile);
  const oneWay = oneWayDelayMs(profile);
  const profileRtt = 2 * oneWay;
  const net = wan(profile, lead, opts.stamps);
  const svc = await services(profile, lead, opts.split, net, opts.stamps);
  try {
    const count = Math.max(30, Math.min(1000, Math.round((opts.rttSeconds * 1000) / Math.max(profileRtt, 0.1))));
    const r = await measureRtt(net, svc.echo, { count, warmup: 10 });
    const bw = resolved.bandwidthBps === Infinity ? null : resolved.bandwidthBps;
    let throughput: Row['throughput'] = null;
    if (bw !== null) {
      const t = await measureThroughput(net, svc.source, { bytes: Math.round((bw / 8) * opts.bulkSeconds) });
      throughput = { ...t, errorPct: ((t.bps - bw) / bw) * 100 };
    }
    const { samples: _samples, ...stats } = r;
    const errUs = (r.p50 - profileRtt) * 1000;
    return {
      preset: name,
      oneWayMs: oneWay,
      bandwidthBps: bw,
      profileRttMs: profileRtt,
      rtt: { ...stats, count, p50ErrorUs: errUs, p50ErrorPct: (errUs / 1000 / profileRtt) * 100, withinSpec: Math.abs(errUs) <= Math.max(100, 50 * profileRtt) },
      throughput,
    };
  } finally {
    await svc.stop();
  }
}

function table(rows: Row[], baseline: RttResult): string {
  const f = (x: number, d = 3): string => x.toFixed(d);
  const lines = [
    '| preset | one-way (ms) | profile RTT (ms) | RTT p50 (ms) | RTT p99 (ms) | p50 error | bandwidth (Mb/s) | measured (Mb/s) | error |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    `| raw TCP (no WAN) | 0 | 0 | ${f(baseline.p50)} | ${f(baseline.p99)} | | | | |`,
  ];
  for (const r of rows) {
    const err = `${r.rtt.p50ErrorUs >= 0 ? '+' : ''}${f(r.rtt.p50ErrorUs, 0)} µs (${f(r.rtt.p50ErrorPct, 2)}%)`;
    const bw = r.bandwidthBps === null ? 'unlimited' : f(r.bandwidthBps / 1e6, 0);
    const got = r.throughput ? f(r.throughput.bps / 1e6, 1) : '';
    const e = r.throughput ? `${r.throughput.errorPct >= 0 ? '+' : ''}${f(r.throughput.errorPct, 2)}%` : '';
    lines.push(`| ${r.preset} | ${f(r.oneWayMs)} | ${f(r.profileRttMs)} | ${f(r.rtt.p50)} | ${f(r.rtt.p99)} | ${err} | ${bw} | ${got} | ${e} |`);
  }
  return lines.join('\n');
}


async function main(): Promise<number> {
  const opts = parseArgs(process.argv);
  if (opts.serve !== undefined) {
    await serve(opts.serve);
    return 0;
  }
  const loadBefore = os.loadavg();
  const echo = await startEchoServer(tcpNetwork);
  const baseline = await measureRtt(tcpNetwork, echo.port, { count: 500, warmup: 20 });
  await echo.close();
  const lead = await transportLatency(opts);
  const rows: Row[] = [];
  for (const p of opts.presets) {
    process.stderr.write(`${p}...\n`);
    rows.push(await measure(p, opts, lead));
  }
  const loadAfter = os.loadavg();
  console.log(`\n${table(rows, baseline)}\n`);
  const timing = opts.stamps ? `arrival stamps (the receiver times deliveries; bytes handed over up to ${DEFAULT_HORIZON_MS} ms early)` : `sender-side shaping, transport latency compensated: ${(lead * 1000).toFixed(0)} µs one way${opts.transportLatency === 'auto' ? ' (measured)' : ''}`;
  console.log(`mode: ${opts.split ? 'two processes' : 'one process'}; ${timing}; load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}; ${os.cpus().length} cpus`);
  const date = new Date().toISOString().replace(/:/g, '-').replace(/\..*/, '');
  const out = opts.out ?? path.join(repoRoot(), 'bench/results', `wan-accuracy-${date}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const { samples: _s, ...base } = baseline;
  fs.writeFileSync(out, `${JSON.stringify({
    benchmark: 'wan-accuracy',
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryBytes: os.totalmem(), kernel: os.release(), node: process.version },
    loadAverage: { before: loadBefore, after: loadAfter },
    options: { presets: opts.presets, split: opts.split, stamps: opts.stamps, transportLatency: opts.transportLatency, rttSeconds: opts.rttSeconds, bulkSeconds: opts.bulkSeconds },
    transportLatencyMs: lead,
    timer: { wake: preciseScheduler().mode, spinMs: preciseScheduler().spinMs, maxLateMs: preciseScheduler().stats.maxLateMs },
    baselineTcpRtt: base,
    presets: rows,
  }, null, 2)}\n`);
  console.log(`results: ${out}`);
  return 0;
}

main().then((code) => process.exit(code), (err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
