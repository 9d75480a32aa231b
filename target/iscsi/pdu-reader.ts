/**
 * Incremental PDU framing from a byte stream. It never buffers more than one PDU's worth of bytes
 * beyond what the caller has not consumed: a data segment longer than the negotiated
 * MaxRecvDataSegmentLength is reported from its header alone and then skipped as it streams in.
 */
import { crc32c } from '@node-rs/crc32';
import { ByteQueue } from '../../firmware/byte-queue.js';
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

  private readonly bytes = new ByteQueue();
  /** Bytes of an oversize data segment still to discard. */
  private skip = 0;

  /** Bytes received and not yet returned as a PDU. */
  get buffered(): number {
    return this.bytes.length;
  }

  push(chunk: Buffer): void {
    this.bytes.push(chunk);
  }

  /** The next complete PDU or framing event, or undefined when more bytes are needed. */
  next(): ReadEvent | undefined {
    const q = this.bytes;
    if (this.skip > 0) {
      const n = Math.min(this.skip, q.length);
      q.consume(n);
      this.skip -= n;
      if (this.skip > 0) return undefined;
    }
    if (q.length < BHS_LENGTH) return undefined;
    const ahsLength = q.byteAt(4) * 4;
    const dsl = (q.byteAt(5) << 16) | (q.byteAt(6) << 8) | q.byteAt(7);
    const headerLength = BHS_LENGTH + ahsLength + (this.headerDigest ? DIGEST_LENGTH : 0);
    const dataLength = dsl === 0 ? 0 : dsl + padLength(dsl) + (this.dataDigest ? DIGEST_LENGTH : 0);

    if (dsl > this.maxDataSegment) {
      if (q.length < headerLength) return undefined;
      const header = q.take(headerLength);
      if (!this.headerOk(header, 0, ahsLength)) return { kind: 'header-digest-error', bhs: header.subarray(0, BHS_LENGTH) };
      this.skip = dataLength;
      return { kind: 'oversize', bhs: header.subarray(0, BHS_LENGTH), length: dsl };
    }

    const total = headerLength + dataLength;
    if (q.length < total) return undefined;
    // Views straight into the receive chunk when the PDU lies in one (the common case).
    let buf = q.first!;
    let at = q.offset;
    if (buf.length - at >= total) q.consume(total);
    else {
      buf = q.take(total);
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
}
