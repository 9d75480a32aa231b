/**
 * What the replication benches (ack-latency, replication-throughput) share around their
 * measurements: the topology running at the moment, brought down on SIGINT/SIGTERM and after each
 * run (its temporary directory removed unless kept or the run failed), and the results: the table
 * and the acceptance check printed, JSON with the machine's description, a markdown report beside
 * it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InvalidArgumentError } from 'commander';
import type { RunningTopology } from './kura-topology.js';

/** The options every replication bench takes besides its own. */
export interface BenchOptions {
  /** --out: the JSON results. */
  out?: string;
  /** --keep: keep the temporary directories. */
  keep: boolean;
  /** --tmpdir: where the topologies and their data go. */
  tmpdir: string;
}

/** A commander parser of a positive number. */
export function positive(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

/**
 * The topology a bench runs: set `current` once it is up. SIGINT or SIGTERM brings it down and
 * exits 130 (`interrupted` is set first, for loops to stop).
 */
export class BenchTopology {
  current: RunningTopology | undefined;
  interrupted = false;
  private readonly onSignal = (sig: NodeJS.Signals): void => {
    if (this.interrupted) return;
    this.interrupted = true;
    console.error(`\n${sig}: stopping the topology`);
    void (this.current ? this.current.down().catch(() => '') : Promise.resolve('')).finally(() => process.exit(130));
  };

  constructor() {
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
  }

  /**
   * After a run in `dir`: the current topology down (its nodes' log tails first when the run
   * failed), then `dir` removed, or kept (and said so) when asked to or when the run failed.
   * `indent` prefixes the lines printed.
   */
  async teardown(dir: string, o: { failed: boolean; keep: boolean; indent?: string }): Promise<void> {
    const indent = o.indent ?? '';
    if (this.current) {
      if (o.failed) console.error(this.current.logTails(8));
      await this.current.down().catch((err: Error) => console.error(`${indent}kura down: ${err.message}`));
      this.current = undefined;
    }
    if (!o.keep && !o.failed) fs.rmSync(dir, { recursive: true, force: true });
    else console.log(`${indent}kept ${dir}`);
  }

  /** Unhook the signal handlers; true when a signal came (the bench then returns 130). */
  close(): boolean {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    return this.interrupted;
  }
}

export interface BenchResults {
  /** The bench's name: `benchmark` in the JSON, the default file name, the report's title. */
  benchmark: string;
  root: string;
  /** --out: the JSON file (default bench/results/<benchmark>-<date>.json); the others beside it. */
  out?: string;
  loadavgAtStart: number[];
  /** JSON fields between `date` and `machine`. */
  head?: Record<string, unknown>;
  /** JSON fields after `node` (options, cases, check, ...). */
  body: Record<string, unknown>;
  table: string;
  /** The acceptance check's line: printed under the table and in the report ('' for none). */
  check: string;
  /** Printed instead of an empty `check`. */
  noCheck?: string;
  /** The report's paragraph above the table. */
  description: string;
  /** More files beside the JSON, by extension (e.g. svg); named on the `results:` line. */
  files?: Record<string, string>;
}

/** Print the table and the check line, write the JSON, the .md (and `files`); returns the JSON's path. */
export function writeResults(r: BenchResults): string {
  console.log(`\n${r.table}\n`);
  console.log(r.check || (r.noCheck ?? ''));
  const now = new Date().toISOString();
  const out = r.out ?? path.join(r.root, 'bench/results', `${r.benchmark}-${now.replace(/:/g, '-').replace(/\..*/, '')}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const stem = out.replace(/\.json$/, '');
  fs.writeFileSync(out, `${JSON.stringify({
    benchmark: r.benchmark,
    date: now,
    ...r.head,
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryBytes: os.totalmem(), kernel: os.release(), loadavgAtStart: r.loadavgAtStart, loadavgAtEnd: os.loadavg() },
    node: process.version,
    ...r.body,
  }, null, 2)}\n`);
  fs.writeFileSync(`${stem}.md`, [`# ${r.benchmark.replace(/-/g, ' ')} (${now})`, '', r.description, '', r.table, '', r.check, ''].join('\n'));
  const extra = Object.entries(r.files ?? {});
  for (const [ext, content] of extra) fs.writeFileSync(`${stem}.${ext}`, content);
  const beside = extra.length ? ` (${['md', ...extra.map(([ext]) => ext)].map((ext) => `${path.basename(stem)}.${ext}`).join(', ')})` : '';
  console.log(`results: ${out}${beside}`);
  return out;
}
