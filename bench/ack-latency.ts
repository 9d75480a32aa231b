/**
 * Ack latency per ack mode against distance: 4 KiB random writes through iSCSI at QD1 and QD16 on
 * a primary whose volume replicates through a relay to a secondary, over emulated WAN links of
 * 5 µs/km x 1.5 (metro: secondary 100 km, relay 20 km; regional: 500 / 100 km; continental:
 * 3000 / 100 km). Per case: p50/p99/p99.9 (HDR histograms), IOPS, and the links' RTTs (configured
 * and as the nodes measured them). Writes JSON, a markdown table and an SVG (p50 against distance,
 * one line per mode) into bench/results/, and prints the issue's acceptance check.
 *
 * One topology per profile holds one volume per ack mode (same nodes, links and data path; only
 * the ack point differs), measured one after the other with the replication drained in between;
 * --isolate starts a topology per (profile, mode) instead.
 *
 *   node dist/bench/ack-latency.js [--seconds 10] [--warmup 2] [--modes a,b] [--profiles a,b] [--qd 1,16]
 *                                  [--relay-storage journal|battery-backed-memory]
 */
import { Command, InvalidArgumentError } from 'commander';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BenchTopology, positive, writeResults, type BenchOptions } from './lib/bench-run.js';
import { IscsiClient } from './lib/iscsi-client.js';
import {
  measuredRtts, nodeOf, relayTopology, rttBetween, startTopology, waitDrained, waitPeersUp, type RelayStorage, type RunningTopology,
} from './lib/kura-topology.js';
import { runLoad } from './lib/load.js';
import {
  ACK_MODES, DISTANCE_PROFILES, ackCheck, ackLatencySvg, ackLatencyTable, configuredRttMs,
  type AckCase, type AckMode, type LoadRun,
} from './lib/replication-report.js';
import { machineFloorLine, measureMachineFloor } from './lib/machine-floor.js';
import { repoRoot } from './lib/repo-root.js';
import { RELAY_STORAGES } from '../cli/topology.js';

interface Options extends BenchOptions {
  seconds: number;
  warmup: number;
  modes: AckMode[];
  profiles: string[];
  qd: number[];
  requestBytes: number;
  volumeSize: string;
  bandwidthBps: number;
  isolate: boolean;
  relayStorage: RelayStorage;
}

function list<T extends string>(known: readonly T[], what: string) {
  return (v: string): T[] => {
    const items = v.split(',').map((s) => s.trim()).filter(Boolean);
    for (const i of items) if (!known.includes(i as T)) throw new InvalidArgumentError(`unknown ${what} ${i} (${known.join(', ')})`);
    return [...new Set(items)] as T[];
  };
}

function parseArgs(argv: string[]): Options {
  const profileNames = DISTANCE_PROFILES.map((p) => p.name);
  return new Command('ack-latency')
    .description('Ack latency of 4 KiB writes per ack mode over metro, regional and continental links')
    .option('--seconds <n>', 'measured seconds per queue depth', positive, 10)
    .option('--warmup <n>', 'warm-up seconds per volume', (v) => Number(v), 2)
    .option('--modes <list>', `ack modes: ${ACK_MODES.join(',')}`, list(ACK_MODES, 'ack mode'), [...ACK_MODES])
    .option('--profiles <list>', `profiles: ${profileNames.join(',')}`, list(profileNames, 'profile'), profileNames)
    .option('--qd <list>', 'queue depths', (v: string) => v.split(',').map((x) => {
      const n = Number(x);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`bad queue depth ${x}`);
      return n;
    }), [1, 16])
    .option('--request-bytes <n>', 'bytes per write', (v) => Number(v), 4096)
    .option('--volume-size <size>', 'size of each volume (the random writes cover all of it)', '1GiB')
    .option('--bandwidth-bps <n>', 'bandwidth of every link', positive, 1e9)
    .option('--isolate', 'a topology per (profile, mode) instead of one per profile', false)
    .option('--relay-storage <kind>', 'the relay\'s non-volatile storage: journal (a file, fdatasync per group commit) or battery-backed-memory', (v: string) => {
      const known: readonly string[] = RELAY_STORAGES;
      if (!known.includes(v)) throw new InvalidArgumentError(`unknown relay storage ${v} (${RELAY_STORAGES.join(', ')})`);
      return v as RelayStorage;
    }, 'journal')
    .option('--out <file>', 'JSON results (default bench/results/ack-latency-<date>.json; .md and .svg beside it)')
    .option('--keep', 'keep the temporary directories (topology files, node logs, volumes)', false)
    .option('--tmpdir <dir>', 'where the topologies and their data go', os.tmpdir())
    .parse(argv)
    .opts<Options>();
}

async function measureVolume(t: RunningTopology, mode: AckMode, o: Options, log: (s: string) => void): Promise<LoadRun[]> {
  const portal = t.iscsi.get('primary')!;
  const client = await IscsiClient.connect({ host: portal.host, port: portal.port, targetName: `iqn.2026-11.dev.kura:${mode}` });
  try {
    const cap = await client.readCapacity16();
    const base = { client, blockSize: cap.blockSize, requestBytes: o.requestBytes, pattern: 'random' as const, regionBlocks: cap.blockCount };
    if (o.warmup > 0) {
      await runLoad({ ...base, queueDepth: Math.max(...o.qd), durationMs: o.warmup * 1000 });
      await waitDrained(t, 'primary', mode);
    }
    const runs: LoadRun[] = [];
    for (const qd of o.qd) {
      const r = await runLoad({ ...base, queueDepth: qd, durationMs: o.seconds * 1000 });
      runs.push({ qd, ops: r.ops, iops: r.iops, mibps: r.mibps, elapsedMs: r.elapsedMs, latencyMs: r.latencyMs, histogram: r.histogram });
      log(`  ${mode} QD${qd}: p50 ${r.latencyMs.p50.toFixed(3)} ms, p99 ${r.latencyMs.p99.toFixed(3)} ms, p99.9 ${r.latencyMs.p999.toFixed(3)} ms, ${Math.round(r.iops)} IOPS`);
      await waitDrained(t, 'primary', mode);
    }
    await client.logout();
    return runs;
  } finally {
    client.close();
  }
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv);
  const root = repoRoot();
  const cli = { root };
  if (!fs.existsSync(path.join(root, 'dist/cli/kura.js'))) throw new Error('dist/cli/kura.js not found: build first (npm run build)');
  const profiles = DISTANCE_PROFILES.filter((p) => o.profiles.includes(p.name));
  const cases: AckCase[] = [];
  const run = new BenchTopology();
  const started = Date.now();
  const loadavgAtStart = os.loadavg();
  // What this machine adds to every hop, whatever kura does: read the figures against it.
  const floor = await measureMachineFloor(o.tmpdir);
  console.log(machineFloorLine(floor));

  for (const p of profiles) {
    const groups = o.isolate ? o.modes.map((m) => [m]) : [o.modes];
    for (const modes of groups) {
      if (run.interrupted) break;
      const dir = fs.mkdtempSync(path.join(o.tmpdir, `kura-ack-${p.name}-`));
      const rttCfg = {
        primaryRelay: { configuredMs: configuredRttMs(p.relayKm) },
        primarySecondary: { configuredMs: configuredRttMs(p.secondaryKm) },
        relaySecondary: { configuredMs: configuredRttMs(p.secondaryKm - p.relayKm) },
      };
      const mine = modes.map((mode): AckCase => ({ profile: p.name, secondaryKm: p.secondaryKm, relayKm: p.relayKm, mode, volume: mode, rtt: structuredClone(rttCfg), runs: [] }));
      cases.push(...mine);
      console.log(`${p.name}: secondary ${p.secondaryKm} km, relay ${p.relayKm} km; ${modes.join(', ')} (${dir})`);
      let failed = false;
      try {
        const t = await startTopology(cli, dir, relayTopology(p, modes, { bandwidthBps: o.bandwidthBps, volumeSize: o.volumeSize, relayStorage: o.relayStorage }));
        run.current = t;
        const status = await waitPeersUp(t, 'primary', modes);
        const iscsi = nodeOf(status, 'primary').iscsi ?? [];
        console.log(`  up: ${iscsi.join(' ')}`);
        const { rttMs, samples, oneWayMs } = await measuredRtts(t, ['primary', 'relay', 'secondary']);
        const pairs = { primaryRelay: ['primary', 'relay'], primarySecondary: ['primary', 'secondary'], relaySecondary: ['relay', 'secondary'] } as const;
        const measured = {
          primaryRelay: rttBetween(rttMs, 'primary', 'relay'),
          primarySecondary: rttBetween(rttMs, 'primary', 'secondary'),
          relaySecondary: rttBetween(rttMs, 'relay', 'secondary'),
        };
        const f = (v: number | undefined): string => (v === undefined ? '-' : v.toFixed(3));
        console.log(`  RTT ms configured / measured: p-relay ${f(rttCfg.primaryRelay.configuredMs)} / ${f(measured.primaryRelay)}, ` +
          `p-secondary ${f(rttCfg.primarySecondary.configuredMs)} / ${f(measured.primarySecondary)}, relay-secondary ${f(rttCfg.relaySecondary.configuredMs)} / ${f(measured.relaySecondary)}` +
          (Object.keys(oneWayMs).length ? `; one-way delays the nodes shape: ${Object.entries(oneWayMs).map(([k, v]) => `${k} ${f(v)}`).join(', ')}` : ''));
        for (const c of mine) {
          for (const k of ['primaryRelay', 'primarySecondary', 'relaySecondary'] as const) {
            if (measured[k] === undefined) continue;
            c.rtt[k].measuredMs = measured[k];
            c.rtt[k].heartbeats = rttBetween(samples, pairs[k][0], pairs[k][1]);
          }
        }
        for (const c of mine) {
          if (run.interrupted) break;
          try {
            c.runs = await measureVolume(t, c.mode, o, (s) => console.log(s));
          } catch (err) {
            c.error = (err as Error).message;
            console.error(`  ${c.mode}: ${c.error}`);
            failed = true;
          }
        }
      } catch (err) {
        failed = true;
        for (const c of mine) c.error ??= (err as Error).message;
        console.error(`  ${p.name}: ${(err as Error).message}`);
      } finally {
        await run.teardown(dir, { failed, keep: o.keep, indent: '  ' });
      }
    }
  }
  if (run.close()) return 130;

  const check = ackCheck(cases);
  writeResults({
    benchmark: 'ack-latency', root, out: o.out, loadavgAtStart,
    table: ackLatencyTable(cases),
    check: check ? `${check.line} (relay storage: ${o.relayStorage})` : '',
    noCheck: 'acceptance check: needs relay-durable and remote-durable at relay 100 km / secondary 500 km (--profiles regional)',
    description: `${o.requestBytes} B random writes, ${o.seconds} s per queue depth after ${o.warmup} s of warm-up; links ${o.bandwidthBps / 1e9} Gb/s, 5 us/km x 1.5 each way; relay storage ${o.relayStorage}; RTTs configured / measured by the nodes. The ${machineFloorLine(floor)}.`,
    files: { svg: ackLatencySvg(cases) },
    head: { durationS: (Date.now() - started) / 1000, machineFloor: floor },
    body: {
      options: { seconds: o.seconds, warmup: o.warmup, modes: o.modes, profiles: o.profiles, qd: o.qd, requestBytes: o.requestBytes, volumeSize: o.volumeSize, bandwidthBps: o.bandwidthBps, isolate: o.isolate, relayStorage: o.relayStorage },
      units: { latency: 'ms', histogram: 'HdrHistogram compressed base64, values in ns' },
      cases,
      check,
    },
  });
  // Exit 1 when a case could not be measured; a FAIL of the check is a finding, not a broken bench.
  return cases.some((c) => c.error) ? 1 : 0;
}

main().then((code) => process.exit(code), (err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
