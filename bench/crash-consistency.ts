/**
 * 100 random crash points of the remote-site crash-consistency check (bench/lib/crash-point.ts):
 * how many came back clean (every fsynced file verified, e2fsck -fn clean). The goal is all.
 *   npm run bench:crash -- [--points 100] [--seed 1] [--files 40]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { ensureGuestImage } from '../qemu/image-builder.js';
import { chooseAccel } from '../qemu/vm.js';
import { runCrashPoint, type CrashPointResult } from './lib/crash-point.js';
import { repoRoot as findRepoRoot } from './lib/repo-root.js';

const repoRoot = findRepoRoot();

const opts = new Command()
  .option('--points <n>', 'crash points', (v) => Number(v), 100)
  .option('--seed <n>', 'seed of the first point (the others follow)', (v) => Number(v), 1)
  .option('--files <n>', 'files per workload', (v) => Number(v), 40)
  .parse()
  .opts<{ points: number; seed: number; files: number }>();

const dataDir = process.env.KURA_DATA_DIR ? path.resolve(process.env.KURA_DATA_DIR) : path.join(repoRoot, 'data');
const img = await ensureGuestImage({ dataDir, log: (m) => console.log(m) });
const accel = await chooseAccel('auto', img, path.join(dataDir, 'images', 'kvm-probe.json'));
const results: CrashPointResult[] = [];
const started = Date.now();
for (let i = 0; i < opts.points; i++) {
  const seed = opts.seed + i;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kura-crash-${seed}-`));
  try {
    const r = await runCrashPoint({ cli: { root: repoRoot }, img, accel, dir, seed, files: opts.files });
    results.push(r);
    console.log(`point ${i + 1}/${opts.points} seed ${seed}: ${r.clean ? 'clean' : 'NOT CLEAN'} (${r.fsyncedBeforeCrash} fsynced files, verify ${r.verify?.ok ?? '-'} ok ${r.verify?.bad ?? '-'} bad, fsck ${r.fsck.clean ? 'clean' : 'errors'})`);
    if (r.clean) fs.rmSync(dir, { recursive: true, force: true });
    else console.log(`  kept ${dir}`);
  } catch (err) {
    console.log(`point ${i + 1}/${opts.points} seed ${seed}: ERROR ${(err as Error).message.split('\n')[0]} (kept ${dir})`);
    results.push({ seed, killAfterFiles: 0, extraMs: 0, fsyncedBeforeCrash: 0, verify: undefined, fsck: { clean: false, output: String(err) }, clean: false, ms: { install: 0, workload: 0, drain: 0, verify: 0, fsck: 0 } });
  }
}
const clean = results.filter((r) => r.clean).length;
const out = path.join(repoRoot, 'bench', 'results', `crash-consistency-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify({ accel, points: results.length, clean, minutes: (Date.now() - started) / 60000, results }, null, 2));
console.log(`\n${clean}/${results.length} crash points clean (${accel}, ${((Date.now() - started) / 60000).toFixed(1)} min); results in ${out}`);
process.exitCode = clean === results.length ? 0 : 1;
