/**
 * Received bytes not yet parsed, as the chunks they came in: the buffer behind the incremental
 * stream readers (the peer protocol's FrameDecoder, the iSCSI PduReader). Bytes are copied only
 * when what is taken spans chunks; otherwise the reader gets a view into the receive chunk.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Read offset into chunks[0]. */
  private head = 0;
  private bytes = 0;

  /** Bytes held. */
  get length(): number {
    return this.bytes;
  }

  /** The chunk holding the first byte (undefined when empty); it starts at `offset`. */
  get first(): Buffer | undefined {
    return this.chunks[0];
  }

  /** Where the first byte lies in `first`. */
  get offset(): number {
    return this.head;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  /** Drop everything. */
  clear(): void {
    this.chunks = [];
    this.bytes = 0;
    this.head = 0;
  }

  /** Byte i from the front (i < length). */
  byteAt(i: number): number {
    let pos = this.head + i;
    for (const c of this.chunks) {
      if (pos < c.length) return c[pos]!;
      pos -= c.length;
    }
    throw new RangeError('byteAt past the buffered bytes');
  }

  /** The first n bytes (n <= length), not consumed: a view when they lie in one chunk. */
  peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) return first.subarray(this.head, this.head + n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let pos = this.head;
    for (const c of this.chunks) {
      const k = Math.min(n - filled, c.length - pos);
      c.copy(out, filled, pos, pos + k);
      filled += k;
      pos = 0;
      if (filled === n) break;
    }
    return out;
  }

  /** Remove n bytes (n <= length) from the front, as one Buffer: a view when they lie in one chunk. */
  take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.consume(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(n - filled, c.length - this.head);
      c.copy(out, filled, this.head, this.head + k);
      filled += k;
      this.consume(k);
    }
    return out;
  }

  /** Drop n bytes (n <= length) from the front. */
  consume(n: number): void {
    this.bytes -= n;
    this.head += n;
    while (this.chunks.length > 0 && this.head >= this.chunks[0]!.length) {
      this.head -= this.chunks[0]!.length;
      this.chunks.shift();
    }
  }
}
