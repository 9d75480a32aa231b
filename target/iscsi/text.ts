/**
 * The key=value\0 text format of Login and Text PDUs (RFC 7143 §6.1), plus the C-bit
 * continuation of a text across PDUs in both directions.
 */

export type TextPairs = [key: string, value: string][];

export class TextFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TextFormatError';
  }
}

const KEY_RE = /^[A-Za-z0-9.\-+@_]{1,63}$/;

/** Decode a complete text. Throws TextFormatError when it is not key=value\0 pairs. */
export function decodeText(data: Uint8Array): TextPairs {
  const pairs: TextPairs = [];
  if (data.length === 0) return pairs;
  if (data[data.length - 1] !== 0) throw new TextFormatError('text does not end with a null');
  const s = Buffer.from(data.buffer, data.byteOffset, data.length).toString('utf8');
  for (const item of s.split('\0')) {
    if (item === '') continue; // the final null, or extra nulls some initiators add
    const eq = item.indexOf('=');
    if (eq <= 0) throw new TextFormatError(`malformed key=value: ${JSON.stringify(item.slice(0, 64))}`);
    const key = item.slice(0, eq);
    if (!KEY_RE.test(key)) throw new TextFormatError(`bad key name: ${JSON.stringify(key.slice(0, 64))}`);
    pairs.push([key, item.slice(eq + 1)]);
  }
  return pairs;
}

export function encodeText(pairs: TextPairs): Buffer {
  let s = '';
  for (const [k, v] of pairs) s += `${k}=${v}\0`;
  return Buffer.from(s, 'utf8');
}

/** Reassembles a text sent in several PDUs with C=1, bounded so that a peer cannot grow it forever. */
export class TextAccumulator {
  private parts: Buffer[] = [];
  private size = 0;

  constructor(private readonly limit = 65536) {}

  /**
   * Add one PDU's data. Returns the whole text once a PDU without C arrives, undefined while more
   * is expected. Throws TextFormatError past the limit.
   */
  push(data: Buffer, more: boolean): Buffer | undefined {
    this.size += data.length;
    if (this.size > this.limit) {
      this.reset();
      throw new TextFormatError('text too long');
    }
    if (more) {
      // Copy: the PDU's buffer may be a view into a receive chunk we do not want to pin.
      this.parts.push(Buffer.from(data));
      return undefined;
    }
    if (this.parts.length === 0) return data;
    this.parts.push(data);
    const all = Buffer.concat(this.parts);
    this.reset();
    return all;
  }

  get pending(): boolean {
    return this.parts.length > 0;
  }

  reset(): void {
    this.parts = [];
    this.size = 0;
  }
}

/**
 * Split an outgoing text into pieces the peer accepts (its MaxRecvDataSegmentLength). The pieces
 * are sent with C=1 except the last; a key=value pair may straddle two pieces (RFC 7143 §6.1).
 */
export function splitText(text: Buffer, max: number): Buffer[] {
  if (text.length <= max) return [text];
  const out: Buffer[] = [];
  for (let off = 0; off < text.length; off += max) out.push(text.subarray(off, Math.min(text.length, off + max)));
  return out;
}
