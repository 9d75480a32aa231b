/**
 * The long run of the iSCSI fuzzer (test/fuzz/iscsi-fuzz.ts): millions of mutated PDU sequences
 * against one long-lived IscsiServer, with every oracle of the short run in `npm test` plus the
 * heap: sampled after a forced GC, it must not grow past a bound once warm.
 *
 *   npm run fuzz -- --inputs 1000000 --seed 7 [--device ramdisk|scsi] [--max-held-bytes N]
 *   npm run fuzz -- --seed 7 --only 123456        (replay one input, with a trace)
 *
 * Prints inputs/s, the outcome counts, the largest heap, and each failure with its reproducer.
 */
import { Command, InvalidArgumentError } from 'commander';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { IscsiFuzzer, type InputReport } from '../test/fuzz/iscsi-fuzz.js';

interface Options {
  inputs: number;
  seed: number;
  from: number;
  only?: number;
  device: 'ramdisk' | 'scsi';
  maxHeldBytes: number;
  heapGrowthMib: number;
  out?: string;
  quiet: boolean;
}

function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

function parseArgs(argv: string[]): Options {
  return new Command('fuzz-iscsi')
    .description('Fuzz the iSCSI target (PDU framing, login, full feature phase) with mutated PDU sequences')
    .option('--inputs <n>', 'inputs to run', nonNegativeInt, 100000)
    .option('--seed <n>', 'seed (an input is reproducible from seed and index)', nonNegativeInt, Date.now() % 2147483647)
    .option('--from <index>', 'first input index', nonNegativeInt, 0)
    .option('--only <index>', 'replay this one input on a fresh server and print its trace', nonNegativeInt)
    .option('--device <kind>', 'ramdisk (test/ramdisk-device-server.ts) or scsi (ScsiDeviceServer on a controller volume)', (v: string) => {
      if (v !== 'ramdisk' && v !== 'scsi') throw new InvalidArgumentError('ramdisk or scsi');
      return v;
    }, 'ramdisk')
    // Below the CmdSN window's worth of unsolicited data (2 x 32 x 64 KiB), so that the read pause
    // is exercised; 0 keeps the server's default.
    .option('--max-held-bytes <n>', "the server's maxHeldBytes (0: its default)", nonNegativeInt, 256 * 1024)
    .option('--heap-growth-mib <n>', 'fail when the heap after GC grows more than this past its warm level', nonNegativeInt, 64)
    .option('--out <file>', 'JSON results (default bench/results/fuzz-iscsi-<date>.json)')
    .option('--quiet', 'no progress lines', false)
    .parse(argv)
    .opts<Options>();
}

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;

function table(m: Map<string, number>): string {
  return [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `  ${String(v).padStart(9)}  ${k}`).join('\n');
}

function reproducer(o: Options, index: number): string {
  const extra = `${o.device === 'scsi' ? ' --device scsi' : ''}${o.maxHeldBytes !== 256 * 1024 ? ` --max-held-bytes ${o.maxHeldBytes}` : ''}`;
  return `npm run fuzz -- --seed ${o.seed} --only ${index}${extra}`;
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv);
  const gc = (globalThis as { gc?: () => void }).gc;
  const fuzzer = await IscsiFuzzer.create({
    seed: o.seed, device: o.device, trace: o.only !== undefined, maxHeldBytes: o.maxHeldBytes || undefined,
  });
  process.on('unhandledRejection', (e) => fuzzer.noteEscape(e));
  process.on('uncaughtException', (e) => fuzzer.noteEscape(e));

  if (o.only !== undefined) {
    const r = await fuzzer.runInput(o.only);
    console.log(r.trace.join('\n'));
    console.log(`outcome: ${r.outcome}`);
    console.log(r.failures.length ? `FAILED:\n  ${r.failures.join('\n  ')}` : 'no failure');
    return r.failures.length ? 1 : 0;
  }

  console.log(`fuzzing the iSCSI target: ${o.inputs} inputs from ${o.from}, seed ${o.seed}, device ${o.device}, maxHeldBytes ${o.maxHeldBytes || 'default'}`);
  if (!gc) console.log('(no --expose-gc: heap samples are taken without a forced GC)');
  const failures: InputReport[] = [];
  const heap: { inputs: number; bytes: number }[] = [];
  const sample = (inputs: number): void => {
    gc?.();
    heap.push({ inputs, bytes: process.memoryUsage().heapUsed });
  };
  sample(0);
  const started = Date.now();
  let lastPrint = started;
  const every = Math.max(1000, Math.min(20000, Math.floor(o.inputs / 50)));
  // Virtual time bounds every input; this bounds real time (a loop that never yields, a promise
  // chain that never settles): one input may not take a minute.
  let current = o.from;
  let currentSince = Date.now();
  const watchdog = setInterval(() => {
    if (Date.now() - currentSince < 60_000) return;
    console.log(`HANG: input ${current} has run for ${((Date.now() - currentSince) / 1000).toFixed(0)} s of real time\n  reproduce: ${reproducer(o, current)}`);
    process.exit(1);
  }, 5_000);
  watchdog.unref();
  for (let i = 0; i < o.inputs; i++) {
    current = o.from + i;
    currentSince = Date.now();
    const r = await fuzzer.runInput(o.from + i);
    if (r.failures.length > 0) {
      failures.push(r);
      if (failures.length <= 20) console.log(`FAIL input ${r.index} (${r.kind}, ${r.outcome}):\n  ${r.failures.slice(0, 6).join('\n  ')}\n  reproduce: ${reproducer(o, r.index)}`);
    }
    if ((i + 1) % every === 0) {
      sample(i + 1);
      const now = Date.now();
      if (!o.quiet && now - lastPrint > 5000) {
        lastPrint = now;
        const rate = ((i + 1) / (now - started)) * 1000;
        console.log(`  ${i + 1} inputs, ${rate.toFixed(0)}/s, ${failures.length} failed, heap ${mib(heap[heap.length - 1]!.bytes)}`);
      }
    }
  }
  clearInterval(watchdog);
  sample(o.inputs);
  const seconds = (Date.now() - started) / 1000;
  const s = fuzzer.stats;
  // Warm level: the smallest sample in the first tenth (JIT, caches and pools filled by then).
  const warmSamples = heap.filter((h) => h.inputs > 0 && h.inputs <= Math.max(every, o.inputs / 10));
  const warm = Math.min(...(warmSamples.length ? warmSamples : heap).map((h) => h.bytes));
  const maxHeap = Math.max(...heap.map((h) => h.bytes));
  const lastHeap = heap[heap.length - 1]!.bytes;
  const growth = lastHeap - warm;
  const heapOk = growth <= o.heapGrowthMib * 2 ** 20;

  console.log(`\n${s.inputs} inputs in ${seconds.toFixed(1)} s: ${(s.inputs / seconds).toFixed(0)} inputs/s, ${(s.virtualMs / 3.6e6).toFixed(1)} h of virtual time`);
  console.log(`failed inputs: ${s.failedInputs}`);
  console.log(`heap after GC: warm ${mib(warm)}, max ${mib(maxHeap)}, last ${mib(lastHeap)} (growth ${mib(growth)}, bound ${o.heapGrowthMib} MiB)${heapOk ? '' : '  HEAP GROWTH'}`);
  console.log(`largest per connection: reader ${s.maxReaderBytes} B, held unsolicited data ${s.maxHeldBytes} B, queued output ${s.maxQueuedOutBytes} B`);
  console.log(`\nhow the first connection of each input ended:\n${table(s.outcomes)}`);
  console.log(`\nscenarios:\n${table(s.kinds)}`);
  console.log(`\nwhat the target answered (opcodes, Reject reasons, login statuses):\n${table(s.answers)}`);
  if (failures.length > 0) console.log(`\nfailures (first ${Math.min(20, failures.length)} above); reproduce any with: ${reproducer(o, failures[0]!.index)}`);

  const date = new Date().toISOString().replace(/:/g, '-').replace(/\..*/, '');
  const out = o.out ?? path.join(repoRoot(), 'bench/results', `fuzz-iscsi-${date}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify({
    benchmark: 'fuzz-iscsi',
    date: new Date().toISOString(),
    command: `npm run fuzz -- ${process.argv.slice(2).join(' ')}`.trim(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version },
    options: o,
    seconds,
    inputsPerSecond: s.inputs / seconds,
    inputs: s.inputs,
    failedInputs: s.failedInputs,
    heap: { warmBytes: warm, maxBytes: maxHeap, lastBytes: lastHeap, samples: heap },
    perConnectionMax: { readerBytes: s.maxReaderBytes, heldBytes: s.maxHeldBytes, queuedOutBytes: s.maxQueuedOutBytes },
    outcomes: Object.fromEntries(s.outcomes),
    cleanOutcomes: Object.fromEntries(s.cleanOutcomes),
    kinds: Object.fromEntries(s.kinds),
    answers: Object.fromEntries(s.answers),
    failures: failures.slice(0, 100).map((r) => ({ index: r.index, kind: r.kind, outcome: r.outcome, failures: r.failures, reproduce: reproducer(o, r.index) })),
  }, null, 2)}\n`);
  console.log(`results: ${out}`);
  return failures.length > 0 || !heapOk ? 1 : 0;
}

main().then((code) => process.exit(code), (err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
