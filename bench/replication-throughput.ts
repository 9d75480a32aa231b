/**
 * Replication throughput: a primary and a secondary joined by one emulated link of 1 Gb/s and
 * 10 ms RTT (delayMs 5 each way); the host writes sequentially (1 MiB at QD32 by default) through
 * iSCSI for T seconds, with ack mode remote-received and local. While it writes, the nodes' status
 * is sampled (admin sockets, every 250 ms): the secondary's `appliedBytes` (write payload applied),
 * the primary's `ackedBytes` (answered by the secondary: delivered, not just queued). Over the steady part (after the first quarter, at least 1 s) the
 * applied rate is the replication goodput, reported as % of the link's bit rate; the host's own
 * rate beside it. The issue's bar: at least 90% (remote-received).
 *
 *   node dist/bench/replication-throughput.js [--seconds 10] [--modes remote-received,local] [--qd 32] [--request-bytes 1048576]
 */
import { Command, InvalidArgumentError } from 'commander';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BenchTopology, positive, writeResults, type BenchOptions } from './lib/bench-run.js';
import { IscsiClient } from './lib/iscsi-client.js';
import {
  measuredRtts, nodeOf, rttBetween, startTopology, waitDrained, waitPeersUp, type RunningTopology, type TopologySpec,
} from './lib/kura-topology.js';
import { runLoad } from './lib/load.js';
import {
  ACK_MODES, steadyRate, throughputCheck, throughputTable, type AckMode, type RttFigure, type ThroughputCase, type ThroughputSample,
} from './lib/replication-report.js';
import { repoRoot } from './lib/repo-root.js';

interface Options extends BenchOptions {
  seconds: number;
  warmup: number;
  modes: AckMode[];
  qd: number;
  requestBytes: number;
  bandwidthBps: number;
  delayMs: number;
  volumeSize: string;
  sampleMs: number;
}

function parseArgs(argv: string[]): Options {
  return new Command('replication-throughput')
    .description('Replication goodput over an emulated 1 Gb/s, 10 ms RTT link')
    .option('--seconds <n>', 'measured seconds per mode', positive, 10)
    .option('--warmup <n>', 'warm-up seconds per mode', (v) => Number(v), 2)
    .option('--modes <list>', 'ack modes (no relay in this topology: local, remote-received, remote-durable)', (v: string) => {
      const items = v.split(',').map((s) => s.trim()).filter(Boolean);
      for (const i of items) {
        if (!ACK_MODES.includes(i as AckMode) || i.startsWith('relay-')) throw new InvalidArgumentError(`ack mode ${i}: one of local, remote-received, remote-durable`);
      }
      return items as AckMode[];
    }, ['remote-received', 'local'] as AckMode[])
    .option('--qd <n>', 'queue depth', (v) => Number(v), 32)
    .option('--request-bytes <n>', 'bytes per sequential write', (v) => Number(v), 2 ** 20)
    .option('--bandwidth-bps <n>', 'link bandwidth', positive, 1e9)
    .option('--delay-ms <n>', 'one-way delay of the link', (v) => Number(v), 5)
    .option('--volume-size <size>', 'volume size (sequential writes wrap around in it)', '2GiB')
    .option('--sample-ms <n>', 'status sampling interval', positive, 250)
    .option('--out <file>', 'JSON results (default bench/results/replication-throughput-<date>.json; .md beside it)')
    .option('--keep', 'keep the temporary directory', false)
    .option('--tmpdir <dir>', 'where the topology and its data go', os.tmpdir())
    .parse(argv)
    .opts<Options>();
}

function spec(o: Options): TopologySpec {
  return {
    name: 'bench-throughput',
    disasterRadiusKm: 10,
    nodes: [{ name: 'primary', role: 'controller', km: 0 }, { name: 'secondary', role: 'controller', km: 1000 }],
    links: [{ between: ['primary', 'secondary'], delayMs: o.delayMs, bandwidthBps: o.bandwidthBps }],
    volumes: o.modes.map((m) => ({ name: m, size: o.volumeSize, primary: 'primary', secondary: 'secondary', ackMode: m })),
  };
}

async function measureMode(t: RunningTopology, mode: AckMode, o: Options, rtt: RttFigure): Promise<ThroughputCase> {
  const portal = t.iscsi.get('primary')!;
  const client = await IscsiClient.connect({ host: portal.host, port: portal.port, targetName: `iqn.2026-11.dev.kura:${mode}` });
  const c: ThroughputCase = { mode, requestBytes: o.requestBytes, qd: o.qd, linkBps: o.bandwidthBps, rttMs: rtt, samples: [] };
  try {
    const cap = await client.readCapacity16();
    const base = { client, blockSize: cap.blockSize, requestBytes: o.requestBytes, queueDepth: o.qd, pattern: 'sequential' as const, regionBlocks: cap.blockCount };
    if (o.warmup > 0) {
      await runLoad({ ...base, durationMs: o.warmup * 1000 });
      await waitDrained(t, 'primary', mode, 300_000);
    }
    // The mode before left GiBs of dirty page cache on the nodes' volumes (both sites share this
    // machine's disk): its writeback would run during this mode's measurement.
    execFileSync('sync');
    let hostBytes = 0;
    const t0 = Date.now();
    let sampling = true;
    const sample = async (): Promise<void> => {
      const tMs = Date.now() - t0;
      const host = hostBytes;
      const [p, s] = await Promise.all([t.nodeStatus('primary').catch(() => undefined), t.nodeStatus('secondary').catch(() => undefined)]);
      const pv = p?.volumes.find((v) => v.volume === mode && v.role === 'primary');
      const sv = s?.volumes.find((v) => v.volume === mode && v.role === 'secondary');
      c.samples.push({ tMs, hostBytes: host, appliedBytes: sv?.appliedBytes, replicatedBytes: pv?.ackedBytes, sequence: sv?.sequence });
    };
    const sampler = (async () => {
      while (sampling) {
        const next = Date.now() + o.sampleMs;
        await sample();
        await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
      }
    })();
    const r = await runLoad({ ...base, durationMs: o.seconds * 1000, onComplete: (b) => { hostBytes += b; } });
    sampling = false;
    await sampler;
    await sample();
    c.host = { ops: r.ops, mibps: r.mibps, iops: r.iops, elapsedMs: r.elapsedMs, latencyMs: r.latencyMs };
    // Steady part: after the first quarter (at least 1 s), up to the end of the host's writes.
    const fromMs = Math.max(1000, (o.seconds * 1000) / 4);
    const during = c.samples.filter((s) => s.tMs <= r.elapsedMs);
    const pct = (bps: number): number => (bps * 8 * 100) / o.bandwidthBps;
    const applied = steadyRate(during, (s: ThroughputSample) => s.appliedBytes, fromMs);
    if (applied) c.applied = { ...applied, percentOfLink: pct(applied.bytesPerSec) };
    const replicated = steadyRate(during, (s: ThroughputSample) => s.replicatedBytes, fromMs);
    if (replicated) c.replicated = { bytesPerSec: replicated.bytesPerSec, percentOfLink: pct(replicated.bytesPerSec) };
    const host = steadyRate(during, (s: ThroughputSample) => s.hostBytes, fromMs);
    if (host) c.hostWindow = { bytesPerSec: host.bytesPerSec, percentOfLink: pct(host.bytesPerSec) };
    if (!applied) c.error = `no appliedBytes in the secondary's status during the run (samples: ${JSON.stringify(c.samples.slice(0, 2))})`;
    await waitDrained(t, 'primary', mode, 300_000);
    await client.logout();
  } finally {
    client.close();
  }
  return c;
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv);
  const root = repoRoot();
  if (!fs.existsSync(path.join(root, 'dist/cli/kura.js'))) throw new Error('dist/cli/kura.js not found: build first (npm run build)');
  const dir = fs.mkdtempSync(path.join(o.tmpdir, 'kura-throughput-'));
  const cases: ThroughputCase[] = [];
  let failed = false;
  const run = new BenchTopology();
  const configuredMs = 2 * o.delayMs;
  const loadavgAtStart = os.loadavg();
  try {
    console.log(`link ${o.bandwidthBps / 1e9} Gb/s, RTT ${configuredMs} ms; ${o.requestBytes} B sequential writes at QD${o.qd} (${dir})`);
    const t = await startTopology({ root }, dir, spec(o));
    run.current = t;
    const st = await waitPeersUp(t, 'primary', o.modes);
    console.log(`  up: ${(nodeOf(st, 'primary').iscsi ?? []).join(' ')}`);
    const { rttMs, samples } = await measuredRtts(t, ['primary', 'secondary']);
    const rtt = { configuredMs, measuredMs: rttBetween(rttMs, 'primary', 'secondary'), heartbeats: rttBetween(samples, 'primary', 'secondary') };
    console.log(`  RTT configured ${configuredMs} ms, measured ${rtt.measuredMs === undefined ? '-' : rtt.measuredMs.toFixed(3)} ms`);
    for (const mode of o.modes) {
      if (run.interrupted) break;
      try {
        const c = await measureMode(t, mode, o, rtt);
        cases.push(c);
        console.log(`  ${mode}: host ${c.host?.mibps.toFixed(1)} MiB/s (p50 ${c.host?.latencyMs.p50.toFixed(2)} ms); applied at the secondary ${c.applied ? `${(c.applied.bytesPerSec / 1e6).toFixed(1)} MB/s = ${c.applied.percentOfLink.toFixed(1)}% of the link` : '-'}`);
        if (c.error) failed = true;
      } catch (err) {
        failed = true;
        cases.push({ mode, requestBytes: o.requestBytes, qd: o.qd, linkBps: o.bandwidthBps, rttMs: rtt, samples: [], error: (err as Error).message });
        console.error(`  ${mode}: ${(err as Error).message}`);
      }
    }
  } catch (err) {
    failed = true;
    console.error((err as Error).message);
  } finally {
    await run.teardown(dir, { failed, keep: o.keep });
  }
  if (run.close()) return 130;
  const check = throughputCheck(cases);
  writeResults({
    benchmark: 'replication-throughput', root, out: o.out, loadavgAtStart,
    table: throughputTable(cases),
    check: check.line,
    description: `${o.requestBytes} B sequential writes at QD${o.qd}, ${o.seconds} s per mode; one link of ${o.bandwidthBps / 1e9} Gb/s, RTT ${configuredMs} ms. ` +
      'Applied = write payload bytes the secondary applied per second over the steady part; % of the link = its bit rate over the link\'s.',
    body: {
      options: { seconds: o.seconds, warmup: o.warmup, modes: o.modes, qd: o.qd, requestBytes: o.requestBytes, bandwidthBps: o.bandwidthBps, delayMs: o.delayMs, volumeSize: o.volumeSize, sampleMs: o.sampleMs },
      cases,
      check,
    },
  });
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
