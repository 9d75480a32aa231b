/**
 * Where a file device's pread/pwrite run: inline on the event loop, or on libuv's threadpool.
 *
 * Measured on this machine kind (2 vCPU, ext4, 4 KiB QD32 through the whole iSCSI path): with
 * every operation on the threadpool, the submit/wake/complete hop costs more than the copy from
 * the page cache, and the target did ~34k random reads/s; inline it did ~76k. But an inline call
 * blocks the event loop, and with it NOP-In replies and every other session, for as long as the
 * kernel takes: a cache miss on a slow disk, or dirty-page throttling. So `auto` runs inline only
 * while calls stay fast: one that takes longer than `slowMs` sends this device to the threadpool
 * for `backoffMs`, after which one call probes inline again.
 *
 * fdatasync goes the same way only where the owner asked for it (`fdatasync(..., inline)`): a flush
 * on the threadpool costs two thread hand-offs (to a pool thread, and its completion back to the
 * loop), which on a loaded 2-core machine measured ~0.4 ms at the median on top of a ~0.3 ms
 * fdatasync; a relay journal, whose group commit is on every relay-durable write's path, gains that.
 * A device flush is slower than a page-cache copy by nature, so syncs have their own threshold
 * (`syncSlowMs`, default 10 ms) and their own back-off, apart from reads and writes.
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';

export type FileIoMode = 'auto' | 'inline' | 'threadpool';

type Done = (err: NodeJS.ErrnoException | null, bytes: number) => void;

export class FileIoPath {
  private inline: boolean;
  private probeAt = 0;
  private syncInline: boolean;
  private syncProbeAt = 0;
  /** Calls that went inline / to the threadpool, and switches to the threadpool (for stats). */
  inlineCalls = 0;
  poolCalls = 0;
  demotions = 0;

  private readonly slowMs: number;
  private readonly syncSlowMs: number;
  private readonly backoffMs: number;
  private readonly maxInlineBytes: number;
  private readonly now: () => number;

  constructor(
    readonly mode: FileIoMode = 'auto',
    options: {
      slowMs?: number;
      syncSlowMs?: number;
      backoffMs?: number;
      /** Larger transfers always use the threadpool: their copy alone would hold the loop. */
      maxInlineBytes?: number;
      now?: () => number;
    } = {},
  ) {
    this.inline = mode !== 'threadpool';
    this.syncInline = mode !== 'threadpool';
    this.slowMs = options.slowMs ?? 2;
    this.syncSlowMs = options.syncSlowMs ?? 10;
    this.backoffMs = options.backoffMs ?? 1000;
    this.maxInlineBytes = options.maxInlineBytes ?? 256 * 1024;
    this.now = options.now ?? (() => performance.now());
  }

  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number, done: Done): void {
    if (!this.useInline(len)) {
      this.poolCalls++;
      fs.read(fd, buf, off, len, pos, done);
      return;
    }
    const t0 = this.now();
    let n: number;
    try {
      n = fs.readSync(fd, buf, off, len, pos);
    } catch (err) {
      done(err as NodeJS.ErrnoException, 0);
      return;
    }
    this.observe(t0);
    done(null, n);
  }

  write(fd: number, buf: Uint8Array, off: number, len: number, pos: number, done: Done): void {
    if (!this.useInline(len)) {
      this.poolCalls++;
      fs.write(fd, buf, off, len, pos, done);
      return;
    }
    const t0 = this.now();
    let n: number;
    try {
      n = fs.writeSync(fd, buf, off, len, pos);
    } catch (err) {
      done(err as NodeJS.ErrnoException, 0);
      return;
    }
    this.observe(t0);
    done(null, n);
  }

  /** fdatasync(2): inline while fast when `inline` (and the mode allows it), else on the threadpool. */
  fdatasync(fd: number, inline: boolean, done: (err: NodeJS.ErrnoException | null) => void): void {
    if (!inline || !this.useInlineSync()) {
      if (inline) this.poolCalls++;
      fs.fdatasync(fd, done);
      return;
    }
    const t0 = this.now();
    try {
      fs.fdatasyncSync(fd);
    } catch (err) {
      done(err as NodeJS.ErrnoException);
      return;
    }
    if (this.mode === 'auto') {
      const now = this.now();
      if (now - t0 > this.syncSlowMs) {
        this.syncInline = false;
        this.syncProbeAt = now + this.backoffMs;
        this.demotions++;
      }
    }
    done(null);
  }

  private useInlineSync(): boolean {
    if (this.mode === 'threadpool') return false;
    if (this.mode === 'inline') return true;
    if (!this.syncInline && this.now() >= this.syncProbeAt) this.syncInline = true;
    if (this.syncInline) this.inlineCalls++;
    return this.syncInline;
  }

  private useInline(len: number): boolean {
    if (this.mode === 'threadpool' || len > this.maxInlineBytes) return false;
    if (this.mode === 'inline') return true;
    if (!this.inline && this.now() >= this.probeAt) this.inline = true;
    if (this.inline) this.inlineCalls++;
    return this.inline;
  }

  private observe(t0: number): void {
    if (this.mode !== 'auto') return;
    const now = this.now();
    if (now - t0 > this.slowMs) {
      this.inline = false;
      this.probeAt = now + this.backoffMs;
      this.demotions++;
    }
  }
}
