/**
 * libiscsi's conformance suite (iscsi-test-cu) against kura and against tgt, the reference target,
 * in several variants: plain, header digests forced to CRC32C, CHAP (mutual), and both. kura runs
 * as users run it (dist/cli/kura.js with a node config): two portals, so that the MultipathIO tests
 * have a second path, and a thin-provisioned file volume; tgt serves a file of the same size as
 * LUN 1 through one portal. Builds nothing: run `npm run build` first.
 *
 *   npm run conformance -- [--variant all|plain,digests,chap,digests+chap] [--targets kura,tgt] [--tests ALL]
 *
 * Prints one score line per target and variant (bench/lib/iscsi-test-cu.ts counts a SKIPPED test
 * as skipped, not passed), kura's failures and skips with their reasons, and writes JSON to
 * bench/results/. kura and tgt are stopped on errors and on SIGINT/SIGTERM.
 */
import { Command, InvalidArgumentError } from 'commander';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type KuraConfig, startKura } from './kura-target.js';
import { type Score, parseTestCu, scoreLine } from './lib/iscsi-test-cu.js';
import { killChildren, run } from './processes.js';
import { startTgt } from './tgt-target.js';
import { repoRoot } from './lib/repo-root.js';

const VARIANTS = ['plain', 'digests', 'chap', 'digests+chap'] as const;
type Variant = (typeof VARIANTS)[number];
type TargetName = 'kura' | 'tgt';

interface Options {
  variant: Variant[];
  targets: TargetName[];
  tests: string;
  size: string;
  iqn1: string;
  iqn2: string;
  kuraPort: number;
  tgtPort: number;
  timeoutMin: number;
  tmpdir: string;
  keep: boolean;
  out?: string;
}

/** CHAP credentials of the variants with CHAP; characters that need no escaping in a URL. */
const CHAP = { user: 'conformance-user', secret: 'ChapSecret4kura' };
const MUTUAL = { user: 'conformance-target', secret: 'TargetSecret4kura' };

interface RunResult {
  target: TargetName;
  variant: Variant;
  urls: string[];
  seconds: number;
  score?: { passed: number; failed: number; skipped: number };
  tests?: Score['tests'];
  /** iscsi-test-cu's output (not written to the JSON). */
  output?: string;
  error?: string;
  exit?: string;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function parseArgs(argv: string[]): Options {
  return new Command('conformance')
    .description("Run libiscsi's iscsi-test-cu against kura and tgt in plain, digest and CHAP variants")
    .option('--variant <list>', `comma-separated: ${VARIANTS.join(', ')}, or all`, (v: string) => {
      if (v === 'all') return [...VARIANTS];
      const list = v.split(',').map((s) => s.trim()).filter(Boolean);
      for (const x of list) if (!VARIANTS.includes(x as Variant)) throw new InvalidArgumentError(`unknown variant ${x} (${VARIANTS.join(', ')}, all)`);
      return [...new Set(list)] as Variant[];
    }, [...VARIANTS])
    .option('--targets <list>', 'kura,tgt', (v: string) => {
      const list = v.split(',').map((s) => s.trim());
      for (const t of list) if (t !== 'kura' && t !== 'tgt') throw new InvalidArgumentError(`unknown target ${t}`);
      return [...new Set(list)] as TargetName[];
    }, ['kura', 'tgt'] as TargetName[])
    .option('--tests <pattern>', 'iscsi-test-cu --test (FAMILY[.SUITE[.TEST]])', 'ALL')
    // Sanitize.Reset needs a SANITIZE OVERWRITE that outlasts its 3 s wait and five resets: at
    // kura's modelled 128 MiB/s (volumes[].sanitizeRate) that takes a volume of 1 GiB.
    .option('--size <size>', 'volume size (both targets)', '1GiB')
    .option('--iqn1 <name>', 'initiator name (-i)', 'iqn.2026-11.dev.kura.conformance:initiator1')
    .option('--iqn2 <name>', 'second initiator name (-I)', 'iqn.2026-11.dev.kura.conformance:initiator2')
    .option('--kura-port <n>', 'first kura portal; the second is the next port', positiveInt, 3272)
    .option('--tgt-port <n>', 'tgt portal', positiveInt, 3275)
    .option('--timeout-min <n>', 'deadline of one iscsi-test-cu run, in minutes', positiveInt, 30)
    .option('--tmpdir <dir>', 'where the backing files and logs go', os.tmpdir())
    .option('--keep', 'keep the working directory (logs, configs, iscsi-test-cu output)', false)
    .option('--out <file>', 'JSON results (default bench/results/conformance-<date>.json)')
    .parse(argv)
    .opts<Options>();
}


function bytes(size: string): number {
  const m = /^(\d+)(MiB|GiB)$/.exec(size);
  if (!m) throw new Error(`--size ${size}: use <n>MiB or <n>GiB`);
  return Number(m[1]) * (m[2] === 'GiB' ? 2 ** 30 : 2 ** 20);
}

/** libiscsi URL options: header digest (libiscsi has no data digest support) and the target's mutual CHAP name. */
function url(base: string, v: Variant): string {
  const chap = v === 'chap' || v === 'digests+chap';
  const digests = v === 'digests' || v === 'digests+chap';
  let u = chap ? base.replace('iscsi://', `iscsi://${CHAP.user}%${CHAP.secret}@`) : base;
  const query = [...(digests ? ['header_digest=crc32c'] : []), ...(chap ? [`target_user=${MUTUAL.user}`, `target_password=${MUTUAL.secret}`] : [])];
  if (query.length) u += `?${query.join('&')}`;
  return u;
}

/** kura's node configuration for a variant: a thin volume, forced header digests, CHAP. */
function configureKura(v: Variant): (c: KuraConfig) => void {
  return (c) => {
    c.volumes[0]!.thin = true;
    c.log = { level: 'info' };
    if (v === 'digests' || v === 'digests+chap') c.digests = { header: 'required', data: 'optional' };
    if (v === 'chap' || v === 'digests+chap') Object.assign(c.targets[0]!, { chap: CHAP, mutualChap: MUTUAL });
  };
}

async function toolVersions(): Promise<Record<string, string>> {
  const out = async (cmd: string, args: string[]): Promise<string> => {
    const r = await run(cmd, args, { timeoutMs: 10_000 }).catch((e: Error) => ({ stdout: '', stderr: e.message }));
    return (r.stdout + r.stderr).split('\n').map((l) => l.trim()).filter(Boolean)[0] ?? '';
  };
  return {
    libiscsi: await out('dpkg-query', ['-W', '-f=${Version}', 'libiscsi-bin']),
    tgt: await out('dpkg-query', ['-W', '-f=${Version}', 'tgt']),
    node: process.version,
  };
}

async function requireTools(targets: TargetName[]): Promise<void> {
  for (const t of ['iscsi-test-cu', ...(targets.includes('tgt') ? ['tgtd', 'tgtadm'] : [])]) {
    const r = await run('sh', ['-c', `command -v ${t}`]);
    if (r.code !== 0) throw new Error(`${t} not found: apt-get install -y libiscsi-bin tgt`);
  }
}

function makeBacking(file: string, size: number): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, size);
  } finally {
    fs.closeSync(fd);
  }
}

/** The "[FAILED] ..." lines libiscsi logged inside one test: what went wrong, beyond CUnit's line numbers. */
function failedChecks(output: string, suite: string, test: string): string[] {
  const lines = output.split('\n');
  const out: string[] = [];
  let inSuite = false;
  let inTest = false;
  for (const line of lines) {
    const s = /^Suite: (.+)$/.exec(line);
    if (s) {
      inSuite = s[1]!.trim() === suite;
      inTest = false;
      continue;
    }
    const t = /^\s+Test: (\S+) \.\.\./.exec(line);
    if (t) inTest = inSuite && t[1] === test;
    if (inTest) for (const m of line.matchAll(/\[FAILED\]([^[]*)/g)) out.push(m[1]!.trim());
  }
  return out;
}

function describeTests(r: RunResult, outcome: 'failed' | 'skipped', compare?: Score['tests']): string[] {
  const other = new Map((compare ?? []).map((t) => [`${t.suite}.${t.test}`, t.outcome]));
  return r.tests!.filter((t) => t.outcome === outcome).map((t) => {
    const ref = other.get(`${t.suite}.${t.test}`);
    const detail = t.detail.replace(/\s+/g, ' ').slice(0, 240);
    const checks = outcome === 'failed' && r.output ? failedChecks(r.output, t.suite, t.test).map((c) => `\n      ${c.slice(0, 200)}`).join('') : '';
    return `  ${t.suite}.${t.test}${ref ? ` [tgt: ${ref}]` : ''}${detail ? `: ${detail}` : ''}${checks}`;
  });
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv);
  const root = repoRoot();
  await requireTools(o.targets);
  if (o.targets.includes('kura') && !fs.existsSync(path.join(root, 'dist/cli/kura.js'))) throw new Error('dist/cli/kura.js not found: npm run build first');
  const size = bytes(o.size);
  const dir = fs.mkdtempSync(path.join(o.tmpdir, 'kura-conformance-'));
  const stops: (() => Promise<void>)[] = [];
  const servers = new Set<ChildProcess>();
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.splice(0).reverse()) await stop().catch((e: Error) => console.error(`cleanup: ${e.message}`));
  };
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) {
      // A second signal: no more patience.
      killChildren();
      process.exit(130);
    }
    interrupted = true;
    console.error(`\n${sig}: stopping iscsi-test-cu, then kura and tgt`);
    // The test tool (and any tgtadm) now; the loop below then stops the targets in order (their
    // own shutdown would otherwise wait for the tool's sessions) and removes the directory.
    killChildren(servers);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const results: RunResult[] = [];
  console.log(`working directory ${dir}${o.keep ? ' (kept)' : ''}`);
  try {
    for (const variant of o.variant) {
      for (const target of o.targets) {
        if (interrupted) break;
        const work = path.join(dir, `${target}-${variant.replace('+', '-')}`);
        fs.mkdirSync(work, { recursive: true });
        const file = path.join(work, `${target}.img`);
        makeBacking(file, size);
        const result: RunResult = { target, variant, urls: [], seconds: 0 };
        results.push(result);
        const started = Date.now();
        try {
          let base: string[];
          if (target === 'kura') {
            const kura = await startKura({
              root, dir: work, backingFile: file, size: o.size, port: o.kuraPort, extraPorts: [o.kuraPort + 1], configure: configureKura(variant),
            });
            stops.push(kura.stop);
            servers.add(kura.child);
            base = kura.urls;
          } else {
            const chap = variant === 'chap' || variant === 'digests+chap';
            const tgt = await startTgt({ dir: work, backingStore: file, port: o.tgtPort, chap: chap ? CHAP : undefined, mutualChap: chap ? MUTUAL : undefined });
            stops.push(tgt.stop);
            servers.add(tgt.child);
            base = [tgt.url];
          }
          result.urls = base.map((u) => url(u, variant));
          const args = ['-d', '-S', `--test=${o.tests}`, '-i', o.iqn1, '-I', o.iqn2, ...result.urls];
          console.log(`\n${target} ${variant}: iscsi-test-cu ${args.join(' ')}`);
          const r = await run('iscsi-test-cu', args, { timeoutMs: o.timeoutMin * 60_000 });
          if (interrupted) break;
          const output = r.stdout + r.stderr;
          fs.writeFileSync(path.join(work, 'iscsi-test-cu.txt'), output);
          result.exit = r.signal ? `killed by ${r.signal} (deadline ${o.timeoutMin} min)` : `exit ${r.code}`;
          const score = parseTestCu(output);
          result.score = { passed: score.passed, failed: score.failed, skipped: score.skipped };
          result.tests = score.tests;
          result.output = output;
          if (score.tests.length === 0) result.error = `no test ran (${result.exit}): ${output.trim().split('\n').slice(-5).join(' | ')}`;
          console.log(scoreLine(`${target} ${variant}`, score) + (result.error ? `  (${result.error})` : ''));
        } catch (err) {
          result.error = (err as Error).message;
          console.error(`${target} ${variant}: ${result.error}`);
        } finally {
          result.seconds = (Date.now() - started) / 1000;
          await stopAll();
          servers.clear();
        }
      }
    }
  } finally {
    await stopAll();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (interrupted) {
    if (!o.keep) fs.rmSync(dir, { recursive: true, force: true });
    return 130;
  }

  console.log('\n== scores (a SKIPPED test counts as skipped, not passed)');
  for (const r of results) console.log(r.score ? scoreLine(`${r.target} ${r.variant}`.padEnd(18), { ...r.score, tests: [] }) : `${r.target} ${r.variant}: ${r.error}`);
  for (const r of results.filter((x) => x.target === 'kura' && x.tests)) {
    const tgt = results.find((x) => x.target === 'tgt' && x.variant === r.variant)?.tests;
    const failed = describeTests(r, 'failed', tgt);
    const skipped = describeTests(r, 'skipped', tgt);
    console.log(`\n== kura ${r.variant}: ${failed.length} failed${failed.length ? '' : '.'}`);
    if (failed.length) console.log(failed.join('\n'));
    console.log(`== kura ${r.variant}: ${skipped.length} skipped`);
    if (skipped.length) console.log(skipped.join('\n'));
  }

  const date = new Date().toISOString().replace(/:/g, '-').replace(/\..*/, '');
  const out = o.out ?? path.join(root, 'bench/results', `conformance-${date}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({
    benchmark: 'conformance',
    date: new Date().toISOString(),
    tools: await toolVersions(),
    options: { variants: o.variant, targets: o.targets, tests: o.tests, size: o.size, initiators: [o.iqn1, o.iqn2] },
    results: results.map(({ output: _output, ...r }) => r),
  }, null, 2)}\n`);
  console.log(`\nresults: ${out}${o.keep ? `; logs and iscsi-test-cu output in ${dir}` : ''}`);
  if (!o.keep) fs.rmSync(dir, { recursive: true, force: true });
  return results.some((r) => r.error) ? 1 : 0;
}

main().then((code) => process.exit(code), (err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
