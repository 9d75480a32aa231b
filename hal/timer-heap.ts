/**
 * The timer queue shared by the real HAL's precise scheduler (precise-timer.ts) and the simulated
 * HAL's virtual clock (sim/virtual-clock.ts): a binary min-heap ordered by due time, ties by
 * creation sequence. A timer is cancelled by setting its `fn` to null; cancelled entries stay in
 * the heap until they reach the top (dropCancelled). Pure: no I/O, no timers.
 */

/** What the heap orders: the timers of both clocks have this shape. */
export interface HeapTimer {
  readonly due: number;
  readonly seq: number;
  fn: (() => void) | null;
}

function before(x: HeapTimer, y: HeapTimer): boolean {
  return x.due < y.due || (x.due === y.due && x.seq < y.seq);
}

export class TimerHeap<E extends HeapTimer> {
  private readonly h: E[] = [];

  /** Entries held, cancelled ones not yet dropped included. */
  get size(): number {
    return this.h.length;
  }

  /** The earliest entry (possibly cancelled: call dropCancelled first), not removed. */
  peek(): E | undefined {
    return this.h[0];
  }

  /** Pop cancelled entries off the top, so that peek() is the earliest live one. */
  dropCancelled(): void {
    const h = this.h;
    while (h.length > 0 && h[0]!.fn === null) this.pop();
  }

  push(e: E): void {
    const h = this.h;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(e, h[parent]!)) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = e;
  }

  pop(): E | undefined {
    const h = this.h;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const child = r < h.length && before(h[r]!, h[l]!) ? r : l;
        if (!before(h[child]!, last)) break;
        h[i] = h[child]!;
        i = child;
      }
      h[i] = last;
    }
    return top;
  }
}
