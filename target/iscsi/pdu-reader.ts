/**
 * Incremental PDU framing from a byte stream. It never buffers more than one PDU's worth of bytes
 * beyond what the caller has not consumed: a data segment longer than the negotiated
 * MaxRecvDataSegmentLength is reported from its header alone and then skipped as it streams in.
 */
import { crc32c } from '@node-rs/crc32';
import { BHS_LENGTH, DIGEST_LENGTH, Pdu, padLength } from './pdu.js';

export type ReadEvent =
  | { readonly kind: 'pdu'; readonly pdu: Pdu }
  /** The header cannot be trusted, so neither can the framing: the connection must close. */
  | { readonly kind: 'header-digest-error'; readonly bhs: Buffer }
  /** The data segment exceeds our limit; its bytes are being discarded. */
  | { readonly kind: 'oversize'; readonly bhs: Buffer; readonly length: number };

export class PduReader {
  headerDigest = false;
  dataDigest = false;
  /** Our declared MaxRecvDataSegmentLength (8192 until the login says otherwise). */
  maxDataSegment = 8192;

  private chunks: Buffer[] = [];
  /** Read offset into chunks[0]. */
  private head = 0;
  private length = 0;
  /** Bytes of an oversize data segment still to discard. */
  private skip = 0;

  /** Bytes received and not yet returned as a PDU. */
  get buffered(): number {
    return this.length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The next complete PDU or framing event, or undefined when more bytes are needed. */
  next(): ReadEvent | undefined {
    if (this.skip > 0) {
      const n = Math.min(this.skip, this.length);
      this.consume(n);
      this.skip -= n;
      if (this.skip > 0) return undefined;
    }
    if (this.length < BHS_LENGTH) return undefined;
    const ahsLength = this.byteAt(4) * 4;
    const dsl = (this.byteAt(5) << 16) | (this.byteAt(6) << 8) | this.byteAt(7);
    const headerLength = BHS_LENGTH + ahsLength + (this.headerDigest ? DIGEST_LENGTH : 0);
    const dataLength = dsl === 0 ? 0 : dsl + padLength(dsl) + (this.dataDigest ? DIGEST_LENGTH : 0);

    if (dsl > this.maxDataSegment) {
      if (this.length < headerLength) return undefined;
      const header = this.take(headerLength);
      if (!this.headerOk(header, 0, ahsLength)) return { kind: 'header-digest-error', bhs: header.subarray(0, BHS_LENGTH) };
      this.skip = dataLength;
      return { kind: 'oversize', bhs: header.subarray(0, BHS_LENGTH), length: dsl };
    }

    const total = headerLength + dataLength;
    if (this.length < total) return undefined;
    // Views straight into the receive chunk when the PDU lies in one (the common case).
    let buf = this.chunks[0];
    let at = this.head;
    if (buf.length - at >= total) this.consume(total);
    else {
      buf = this.take(total);
      at = 0;
    }
    const bhs = buf.subarray(at, at + BHS_LENGTH);
    if (!this.headerOk(buf, at, ahsLength)) return { kind: 'header-digest-error', bhs };
    const ahs = ahsLength ? buf.subarray(at + BHS_LENGTH, at + BHS_LENGTH + ahsLength) : undefined;
    const dataAt = at + headerLength;
    const data = buf.subarray(dataAt, dataAt + dsl);
    let dataDigestOk = true;
    if (this.dataDigest && dsl > 0) {
      const padded = dsl + padLength(dsl);
      const crc = crc32c(buf.subarray(dataAt, dataAt + padded));
      dataDigestOk = crc >>> 0 === buf.readUInt32LE(dataAt + padded);
    }
    return { kind: 'pdu', pdu: { bhs, ahs, data, dataDigestOk } };
  }

  private headerOk(buf: Buffer, at: number, ahsLength: number): boolean {
    if (!this.headerDigest) return true;
    const end = at + BHS_LENGTH + ahsLength;
    return crc32c(buf.subarray(at, end)) >>> 0 === buf.readUInt32LE(end);
  }

  private byteAt(i: number): number {
    let pos = this.head + i;
    for (const c of this.chunks) {
      if (pos < c.length) return c[pos];
      pos -= c.length;
    }
    throw new RangeError('byteAt past the buffered bytes');
  }

  /** Remove n bytes from the front, as one Buffer: a view when they lie in one chunk. */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.consume(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const k = Math.min(n - filled, c.length - this.head);
      c.copy(out, filled, this.head, this.head + k);
      filled += k;
      this.consume(k);
    }
    return out;
  }

  private consume(n: number): void {
    this.length -= n;
    while (n > 0) {
      const c = this.chunks[0];
      const k = Math.min(n, c.length - this.head);
      this.head += k;
      n -= k;
      if (this.head === c.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
  }
}
