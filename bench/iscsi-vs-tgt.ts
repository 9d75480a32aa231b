/**
 * kura against tgt, the reference user-space target, on the same kind of backing (a 1 GiB file each,
 * in one temporary directory, so on one filesystem) and the same loopback, driven by the same
 * initiators (QEMU's libiscsi driver through `qemu-img bench`, and `iscsi-perf`). Both targets run
 * for the whole session; each workload alternates them (kura, tgt, kura, tgt, ...) so drift in the
 * machine hits both alike, and the median of the rounds is reported.
 *
 *   node dist/bench/iscsi-vs-tgt.js [--seconds 10] [--rounds 3] [--only id,id] [--targets kura,tgt] [--out FILE]
 */
import { Command, InvalidArgumentError } from 'commander';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startKura } from './kura-target.js';
import { killChildren, run, runOk } from './processes.js';
import { startTgt } from './tgt-target.js';
import { WORKLOADS, WorkloadRunner, median } from './workloads.js';
import type { Measurement, Workload } from './workloads.js';
import { repoRoot } from './lib/repo-root.js';

type TargetName = 'kura' | 'tgt';

interface Options {
  seconds: number;
  rounds: number;
  only?: string[];
  targets: TargetName[];
  out?: string;
  kuraPort: number;
  tgtPort: number;
  tmpdir: string;
  prefill: boolean;
  keep: boolean;
}

interface WorkloadResult {
  id: string;
  title: string;
  tool: string;
  requestBytes: number;
  depth: number;
  results: Partial<Record<TargetName, { runs: Measurement[]; medianIops: number; medianMibps: number } | { error: string }>>;
  ratio?: number;
}

const SIZE_BYTES = 1 << 30;

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function parseArgs(argv: string[]): Options {
  const ids = WORKLOADS.map((w) => w.id);
  const program = new Command('iscsi-vs-tgt')
    .description('Benchmark kura against tgt on the same file backing and initiators')
    .option('--seconds <n>', 'duration of each measured run', positiveInt, 10)
    .option('--rounds <n>', 'measured runs per target and workload (median reported)', positiveInt, 3)
    .option('--only <ids>', `comma-separated workloads: ${ids.join(', ')}`, (v: string) => {
      const list = v.split(',').map((s) => s.trim()).filter(Boolean);
      for (const id of list) if (!ids.includes(id)) throw new InvalidArgumentError(`unknown workload ${id} (${ids.join(', ')})`);
      return list;
    })
    .option('--targets <list>', 'targets to run: kura,tgt', (v: string) => {
      const list = v.split(',').map((s) => s.trim());
      for (const t of list) if (t !== 'kura' && t !== 'tgt') throw new InvalidArgumentError(`unknown target ${t}`);
      return [...new Set(list)] as TargetName[];
    }, ['kura', 'tgt'] as TargetName[])
    .option('--out <file>', 'JSON results file (default bench/results/iscsi-vs-tgt-<date>.json)')
    .option('--kura-port <n>', 'kura portal port', positiveInt, 3262)
    .option('--tgt-port <n>', 'tgt portal port', positiveInt, 3263)
    .option('--tmpdir <dir>', 'where the backing files go (one filesystem for both)', os.tmpdir())
    .option('--no-prefill', 'leave the backing files sparse instead of writing them once')
    .option('--keep', 'keep the temporary directory (logs, configs, images)', false)
    .parse(argv);
  return program.opts<Options>();
}


/**
 * A sparse file of `size` bytes, optionally written through once so reads hit allocated blocks.
 * The prefill writes 4 KiB at a time on purpose: the page cache keeps the folio size a page was
 * first cached with, and on this machine kind (Linux 6.18, ext4) a 4 KiB overwrite of a clean page
 * that sits in a large folio (as 4 MiB writes leave them) runs ~7x slower than one in a 4 KiB folio.
 * Filling both files the same way keeps that out of the kura/tgt comparison.
 */
function makeBacking(file: string, size: number, prefill: boolean): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, size);
    if (prefill) {
      const page = Buffer.alloc(4096);
      for (let off = 0; off < size; off += page.length) {
        page.writeUInt32LE(off / page.length, 0);
        page.fill(0x5a, 4);
        fs.writeSync(fd, page, 0, page.length, off);
      }
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function toolVersions(): Promise<Record<string, string>> {
  const first = async (cmd: string, args: string[]): Promise<string> => {
    const r = await run(cmd, args, { timeoutMs: 10_000 }).catch((e: Error) => ({ stdout: '', stderr: e.message }));
    const lines = (r.stdout + r.stderr).split('\n').map((l) => l.trim()).filter(Boolean);
    return lines.find((l) => /version/i.test(l)) ?? lines[0] ?? '';
  };
  return {
    qemuImg: await first('qemu-img', ['--version']),
    iscsiPerf: await first('iscsi-perf', ['-x']),
    tgtd: await first('tgtd', ['--version']),
    node: process.version,
  };
}

async function requireTools(targets: TargetName[]): Promise<void> {
  const tools = ['qemu-img', 'iscsi-perf', ...(targets.includes('tgt') ? ['tgtd', 'tgtadm'] : [])];
  for (const t of tools) {
    const r = await run('sh', ['-c', `command -v ${t}`]);
    if (r.code !== 0) throw new Error(`${t} not found: apt-get install -y qemu-utils qemu-block-extra libiscsi-bin tgt`);
  }
}

function formatTable(rows: WorkloadResult[], targets: TargetName[]): string {
  const fmt = (r: WorkloadResult, t: TargetName): string => {
    const x = r.results[t];
    if (!x) return '-';
    if ('error' in x) return 'error';
    return `${Math.round(x.medianIops).toLocaleString('en-US')} (${x.medianMibps.toFixed(0)} MiB/s)`;
  };
  const header = ['workload', ...targets.map((t) => `${t} IOPS`), ...(targets.length === 2 ? ['kura/tgt'] : [])];
  const body = rows.map((r) => [
    `${r.id}: ${r.title}`,
    ...targets.map((t) => fmt(r, t)),
    ...(targets.length === 2 ? [r.ratio === undefined ? '-' : r.ratio.toFixed(2)] : []),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv);
  const root = repoRoot();
  const workloads: Workload[] = WORKLOADS.filter((w) => !opts.only || opts.only.includes(w.id));
  const targets = opts.targets;
  await requireTools(targets);

  const dir = fs.mkdtempSync(path.join(opts.tmpdir, 'kura-bench-'));
  const stops: Array<() => Promise<void>> = [];
  const servers = new Set<ChildProcess>();
  let cleaning: Promise<void> | null = null;
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      for (const stop of stops.reverse()) await stop().catch((e: Error) => console.error(`cleanup: ${e.message}`));
      if (!opts.keep) fs.rmSync(dir, { recursive: true, force: true });
    })();
    return cleaning;
  };
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    console.error(`\n${sig}: stopping the load tools and the targets`);
    // The load tools first: the targets' own shutdown would otherwise wait on their sessions.
    killChildren(servers);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const urls: Partial<Record<TargetName, string>> = {};
  const rows: WorkloadResult[] = [];
  let failures = 0;
  try {
    console.log(`working directory ${dir}${opts.keep ? ' (kept)' : ''}`);
    for (const t of targets) {
      const file = path.join(dir, `${t}.img`);
      makeBacking(file, SIZE_BYTES, opts.prefill);
      if (t === 'tgt') {
        const tgt = await startTgt({ dir, backingStore: file, port: opts.tgtPort });
        stops.push(tgt.stop);
        servers.add(tgt.child);
        urls.tgt = tgt.url;
      } else {
        const kura = await startKura({ root, dir, backingFile: file, size: '1GiB', port: opts.kuraPort });
        stops.push(kura.stop);
        servers.add(kura.child);
        urls.kura = kura.url;
      }
      console.log(`${t}: ${urls[t]}`);
    }

    const runner = new WorkloadRunner(opts.seconds);
    for (const w of workloads) {
      const row: WorkloadResult = { id: w.id, title: w.title, tool: w.tool, requestBytes: w.requestBytes, depth: w.depth, results: {} };
      rows.push(row);
      const runs: Partial<Record<TargetName, Measurement[]>> = {};
      const failed = new Set<TargetName>();
      const attempt = async (t: TargetName, what: () => Promise<void>): Promise<void> => {
        if (failed.has(t) || interrupted) return;
        try {
          await what();
        } catch (err) {
          failed.add(t);
          failures++;
          row.results[t] = { error: (err as Error).message };
          console.error(`${w.id} on ${t}: ${(err as Error).message}`);
        }
      };
      // Every run starts from the same page-cache state (nothing dirty), whatever the run before it
      // left behind and however long ago: otherwise later rounds rewrite still-dirty pages and run
      // faster than the first one.
      const settle = (): Promise<unknown> => runOk('sync', ['-f', dir], { timeoutMs: 120_000 });
      for (const t of targets) {
        await attempt(t, async () => {
          await settle();
          await runner.warmup(w, t, urls[t]!);
        });
      }
      for (let round = 1; round <= opts.rounds; round++) {
        for (const t of targets) {
          await attempt(t, async () => {
            await settle();
            const m = await runner.measure(w, t, urls[t]!);
            (runs[t] ??= []).push(m);
            console.log(`${w.id} round ${round} ${t}: ${Math.round(m.iops)} IOPS, ${m.mibps.toFixed(1)} MiB/s`);
          });
        }
      }
      for (const t of targets) {
        const ms = runs[t];
        if (!failed.has(t) && ms?.length) {
          row.results[t] = { runs: ms, medianIops: median(ms.map((m) => m.iops)), medianMibps: median(ms.map((m) => m.mibps)) };
        }
      }
      const k = row.results.kura;
      const g = row.results.tgt;
      if (k && g && 'medianIops' in k && 'medianIops' in g) row.ratio = k.medianIops / g.medianIops;
    }
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (interrupted) return 130;

  console.log(`\n${formatTable(rows, targets)}\n`);
  const date = new Date().toISOString().replace(/:/g, '-').replace(/\..*/, '');
  const out = opts.out ?? path.join(root, 'bench/results', `iscsi-vs-tgt-${date}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({
    benchmark: 'iscsi-vs-tgt',
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryBytes: os.totalmem(), kernel: os.release() },
    tools: await toolVersions(),
    options: { seconds: opts.seconds, rounds: opts.rounds, targets, prefill: opts.prefill, backingBytes: SIZE_BYTES, filesystemDir: opts.tmpdir },
    urls,
    workloads: rows,
  }, null, 2)}\n`);
  console.log(`results: ${out}`);
  return failures ? 1 : 0;
}

main().then((code) => process.exit(code), (err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
