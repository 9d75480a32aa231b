/**
 * Per-LU LBA range lock. COMPARE AND WRITE (SBC-4 5.3) must read, compare and write with no other
 * write to those blocks in between, so every command that changes blocks (WRITE, WRITE SAME,
 * UNMAP, ORWRITE, COMPARE AND WRITE, ...) holds the lock on its range while it does. Reads do not
 * lock: they see either the old or the new blocks, as with any concurrent write.
 *
 * Lock order: the lock is taken before any buffer memory, never while holding a buffer area. A
 * holder may then wait for buffer memory, but nobody who holds buffer memory waits for the lock,
 * so the two cannot deadlock. Waiters are served in arrival order; a waiter also blocks later
 * requests that overlap it, so a long COMPARE AND WRITE is not starved by a stream of writes.
 */
export type Unlock = () => void;

interface Range {
  readonly start: number;
  readonly end: number;
}

interface Waiter extends Range {
  readonly grant: (unlock: Unlock) => void;
}

function overlaps(a: Range, b: Range): boolean {
  return a.start < b.end && b.start < a.end;
}

export class RangeLock {
  private readonly held = new Set<Range>();
  private waiting: Waiter[] = [];

  /** Ranges currently held (for tests and stats). */
  get holders(): number {
    return this.held.size;
  }

  /** Lock `blocks` blocks at `lba`; resolves with the function that unlocks them (call it once). */
  acquire(lba: number, blocks: number): Promise<Unlock> {
    const r = { start: lba, end: lba + Math.max(blocks, 1) };
    if (this.free(r, this.waiting)) return Promise.resolve(this.take(r));
    return new Promise((grant) => this.waiting.push({ ...r, grant }));
  }

  private take(r: Range): Unlock {
    this.held.add(r);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.held.delete(r);
      this.wake();
    };
  }

  private wake(): void {
    const still: Waiter[] = [];
    for (const w of this.waiting) {
      // Checked against the holders and the waiters that stay queued ahead of it.
      if (this.free(w, still)) w.grant(this.take(w));
      else still.push(w);
    }
    this.waiting = still;
  }

  /** Free when no holder and no waiter queued ahead of it overlaps `r`. */
  private free(r: Range, ahead: readonly Range[]): boolean {
    for (const h of this.held) if (overlaps(h, r)) return false;
    for (const w of ahead) if (overlaps(w, r)) return false;
    return true;
  }
}
