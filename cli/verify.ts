/**
 * `kura verify VOLUME [FILE] [--chunk SIZE]`: compares the primary's and the secondary's copy of a
 * volume by SHA-256 digests of chunks (DRBD's online verify): both nodes digest their own blocks,
 * only digests cross the sockets. Asked in slices of about 64 MiB, both nodes at once. Prints the
 * differing LBA ranges, merged; exit 0 identical, 1 different, 2 on error. Writes still in flight
 * show up as differences: quiesce the host, or read the lag in `kura status` first.
 */
import { adminClient, MAX_DIGESTS_PER_REQUEST, type DigestResult } from './admin.js';
import { parseSize } from './config.js';
import { bytes } from './status.js';
import { adminSocketOf, loadChecked, processIo, type Io } from './up.js';

export interface LbaRange {
  lba: number;
  blocks: number;
}

const SLICE_BYTES = 64 * 2 ** 20;
export const DEFAULT_CHUNK = '1MiB';

/** Chunks whose digests differ, as LBA ranges (the last chunk may end at `total`), adjacent ones merged. */
export function differingRanges(a: readonly string[], b: readonly string[], lba: number, chunkBlocks: number, total: number): LbaRange[] {
  const out: LbaRange[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] === b[i]) continue;
    const start = lba + i * chunkBlocks;
    out.push({ lba: start, blocks: Math.min(chunkBlocks, total - start) });
  }
  return mergeRanges(out);
}

export function mergeRanges(ranges: readonly LbaRange[]): LbaRange[] {
  const sorted = [...ranges].sort((x, y) => x.lba - y.lba);
  const out: LbaRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && last.lba + last.blocks >= r.lba) last.blocks = Math.max(last.blocks, r.lba + r.blocks - last.lba);
    else out.push({ ...r });
  }
  return out;
}

/** "[#####.....]  42% 430.0 MiB of 1.0 GiB" */
export function progressBar(done: number, total: number, width = 30): string {
  const f = total === 0 ? 1 : done / total;
  const fill = Math.round(f * width);
  return `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(Math.floor(f * 100)).padStart(3)}%`;
}

class VerifyError extends Error {}

export async function verify(volume: string, file: string, o: { chunk?: string }, io: Io = processIo): Promise<number> {
  try {
    return await run(volume, file, o, io);
  } catch (err) {
    io.err(`${io.isTTY ? '\n' : ''}kura: verify: ${(err as Error).message}\n`);
    return 2;
  }
}

async function run(volume: string, file: string, o: { chunk?: string }, io: Io): Promise<number> {
  const t = loadChecked(file);
  const v = t.volumes.find((x) => x.name === volume);
  if (!v) throw new VerifyError(`no volume "${volume}" in ${file} (volumes: ${t.volumes.map((x) => x.name).join(', ') || 'none'})`);
  if (v.secondary === undefined) throw new VerifyError(`volume "${volume}" has no secondary to compare with`);
  const chunkBytes = parseSize(o.chunk ?? DEFAULT_CHUNK);
  if (chunkBytes === undefined || chunkBytes === 0 || chunkBytes % v.blockSize !== 0) {
    const is = chunkBytes === undefined ? 'is not a size' : `is ${chunkBytes} bytes`;
    throw new VerifyError(`--chunk ${o.chunk} ${is}: it must be a positive multiple of the volume's block size (${v.blockSize} bytes); binary units are: 4KiB, 1MiB`);
  }
  const chunk = chunkBytes / v.blockSize;
  const node = (n: string) => adminSocketOf(t.nodes.find((x) => x.name === n)!);
  const sockets = { primary: node(v.primary), secondary: node(v.secondary) };
  const total = Math.floor(v.size / v.blockSize);
  const perSlice = Math.max(1, Math.min(Math.floor(SLICE_BYTES / chunkBytes), MAX_DIGESTS_PER_REQUEST)) * chunk;

  const lag = await adminClient.status(sockets.primary, 5000).then((s) => s.volumes.find((x) => x.volume === volume), (err: Error) => {
    throw new VerifyError(`primary "${v.primary}": ${err.message}`);
  });
  if (lag && lag.lagWrites > 0) io.err(`kura: warning: the secondary lags ${lag.lagWrites} writes (${bytes(lag.lagBytes)}): they will show as differences\n`);

  const ask = (who: 'primary' | 'secondary', lba: number, blocks: number): Promise<DigestResult> =>
    adminClient.digest(sockets[who], { volume, lba, blocks, chunk }).catch((err: Error) => {
      throw new VerifyError(`${who} "${who === 'primary' ? v.primary : v.secondary}": ${err.message}`);
    });
  const ranges: LbaRange[] = [];
  let lastShown = -1;
  const show = (done: number) => {
    if (io.isTTY) io.err(`\r${volume}: ${progressBar(done, total)} ${bytes(done * v.blockSize)} of ${bytes(total * v.blockSize)}, ${mergeRanges(ranges).length} differing ranges`);
    else {
      const pct = Math.floor((100 * done) / Math.max(1, total) / 10) * 10;
      if (pct !== lastShown) io.err(`${volume}: ${pct}% verified\n`);
      lastShown = pct;
    }
  };
  show(0);
  for (let lba = 0; lba < total; lba += perSlice) {
    const blocks = Math.min(perSlice, total - lba);
    const [p, s] = await Promise.all([ask('primary', lba, blocks), ask('secondary', lba, blocks)]);
    for (const [who, d] of [['primary', p], ['secondary', s]] as const) {
      if (d.blockSize !== v.blockSize || d.blockCount !== total) {
        throw new VerifyError(`${who} has ${d.blockCount} blocks of ${d.blockSize} bytes, the topology says ${total} of ${v.blockSize}: is it running another version of ${file}?`);
      }
    }
    ranges.push(...differingRanges(p.digests, s.digests, lba, chunk, total));
    show(lba + blocks);
  }
  if (io.isTTY) io.err('\n');
  const merged = mergeRanges(ranges);
  for (const r of merged) io.out(`differs: LBA ${r.lba}-${r.lba + r.blocks - 1} (${r.blocks} blocks, ${bytes(r.blocks * v.blockSize)})\n`);
  const what = `${bytes(total * v.blockSize)} in chunks of ${bytes(chunkBytes)}`;
  if (merged.length === 0) {
    io.out(`${volume}: ${v.primary} and ${v.secondary} are identical (${what})\n`);
    return 0;
  }
  const diff = merged.reduce((n, r) => n + r.blocks, 0);
  io.out(`${volume}: ${merged.length} differing ranges, ${bytes(diff * v.blockSize)} of ${what}\n`);
  return 1;
}
