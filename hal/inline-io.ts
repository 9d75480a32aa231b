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

/**
 * Whether one kind of call runs inline: open until a call takes longer than `slowMs`, then closed
 * for the back-off, after which the next call probes inline again.
 */
interface Gate {
  open: boolean;
  probeAt: number;
  readonly slowMs: number;
}

export class FileIoPath {
  /** Reads and writes; syncs (slower by nature) have their own threshold and back-off. */
  private readonly transfers: Gate;
  private readonly syncs: Gate;
  /** Calls that went inline / to the threadpool, and switches to the threadpool (for stats). */
  inlineCalls = 0;
  poolCalls = 0;
  demotions = 0;

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
    const open = mode !== 'threadpool';
    this.transfers = { open, probeAt: 0, slowMs: options.slowMs ?? 2 };
    this.syncs = { open, probeAt: 0, slowMs: options.syncSlowMs ?? 10 };
    this.backoffMs = options.backoffMs ?? 1000;
    this.maxInlineBytes = options.maxInlineBytes ?? 256 * 1024;
    this.now = options.now ?? (() => performance.now());
  }

  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number, done: Done): void {
    this.transfer(fs.readSync, fs.read, fd, buf, off, len, pos, done);
  }

  write(fd: number, buf: Uint8Array, off: number, len: number, pos: number, done: Done): void {
    this.transfer(fs.writeSync, fs.write, fd, buf, off, len, pos, done);
  }

  /** fdatasync(2): inline while fast when `inline` (and the mode allows it), else on the threadpool. */
  fdatasync(fd: number, inline: boolean, done: (err: NodeJS.ErrnoException | null) => void): void {
    if (!inline || !this.admit(this.syncs)) {
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
    this.observe(this.syncs, t0);
    done(null);
  }

  private transfer(
    inline: (fd: number, buf: Uint8Array, off: number, len: number, pos: number) => number,
    pooled: (fd: number, buf: Uint8Array, off: number, len: number, pos: number, done: Done) => void,
    fd: number, buf: Uint8Array, off: number, len: number, pos: number, done: Done,
  ): void {
    if (len > this.maxInlineBytes || !this.admit(this.transfers)) {
      this.poolCalls++;
      pooled(fd, buf, off, len, pos, done);
      return;
    }
    const t0 = this.now();
    let n: number;
    try {
      n = inline(fd, buf, off, len, pos);
    } catch (err) {
      done(err as NodeJS.ErrnoException, 0);
      return;
    }
    this.observe(this.transfers, t0);
    done(null, n);
  }

  private admit(g: Gate): boolean {
    if (this.mode === 'threadpool') return false;
    if (this.mode === 'inline') return true;
    if (!g.open && this.now() >= g.probeAt) g.open = true;
    if (g.open) this.inlineCalls++;
    return g.open;
  }

  private observe(g: Gate, t0: number): void {
    if (this.mode !== 'auto') return;
    const now = this.now();
    if (now - t0 > g.slowMs) {
      g.open = false;
      g.probeAt = now + this.backoffMs;
      this.demotions++;
    }
  }
}
