/**
 * Incremental frame decoder: bytes in arbitrary chunks in, frames or precise errors out. It never
 * holds more than one frame: the header length is bounded (MAX_HEADER_LENGTH) before its CRC can be
 * checked, and the payload length is judged against the type and maxPayload from the checked
 * header, before any payload byte is buffered.
 *
 * Order of checks (each names what was wrong): magic -> version -> header length within bounds ->
 * header CRC -> known type -> header length of that type -> u64 fields in range -> payload length
 * for that type / maxPayload -> payload CRC. Every error is fatal (the decoder stops: the framing
 * can no longer be trusted, or the peer lies about lengths) except a payload CRC mismatch, which
 * spoils one frame whose header is sound: that error carries the frame, and decoding goes on.
 */
import { crc32c } from '@node-rs/crc32';
import { ByteQueue } from '../byte-queue.js';
import {
  BASE_HEADER_LENGTH, FRAME_MAGIC, FrameType, MAX_HEADER_LENGTH, SUPPORTED_VERSIONS, TRAILER_LENGTH, frameTypeName, headerLengthOf,
  isFrameType, parseHeader, payloadBounds, type Frame,
} from './frame.js';

export type FrameErrorCode =
  | 'bad-magic'
  | 'unsupported-version'
  | 'header-length'
  | 'header-crc'
  | 'unknown-type'
  | 'field-range'
  | 'payload-length'
  | 'oversize'
  | 'payload-crc';

export class FrameError extends Error {
  constructor(
    readonly code: FrameErrorCode,
    message: string,
    readonly fatal: boolean,
    /** payload-crc: the frame (header sound, payload not). */
    readonly frame?: Frame,
    /** unsupported-version: what the peer sent and what we speak. */
    readonly versions?: { got: number; supported: readonly number[] },
  ) {
    super(message);
    this.name = 'FrameError';
  }
}

export type DecodeEvent = { readonly kind: 'frame'; readonly frame: Frame } | { readonly kind: 'error'; readonly error: FrameError };

export interface FrameDecoderOptions {
  /** Largest payload accepted (DATA); larger is a fatal 'oversize' error. */
  maxPayload: number;
  /** Versions accepted in frame headers (default SUPPORTED_VERSIONS). */
  versions?: readonly number[];
}

/** Header bytes needed before the header length can be read. */
const PREFIX = 12;

export class FrameDecoder {
  readonly maxPayload: number;
  readonly versions: readonly number[];
  private readonly bytes = new ByteQueue();
  /** A checked header waiting for its payload. */
  private pending: Omit<Frame, 'payload'> | null = null;
  private pendingLength = 0;
  private pendingHeader: Buffer | null = null;
  private error: FrameError | null = null;

  constructor(opts: FrameDecoderOptions) {
    if (!(Number.isSafeInteger(opts.maxPayload) && opts.maxPayload > 0 && opts.maxPayload <= 0xffffffff)) {
      throw new RangeError(`FrameDecoder: maxPayload ${opts.maxPayload} out of range`);
    }
    this.maxPayload = opts.maxPayload;
    this.versions = opts.versions ?? SUPPORTED_VERSIONS;
  }

  /** Bytes received and not yet returned in a frame. */
  get buffered(): number {
    return this.bytes.length;
  }

  /** The fatal error that stopped this decoder, if any. */
  get failed(): FrameError | null {
    return this.error;
  }

  push(chunk: Buffer): void {
    if (this.error !== null) return;
    this.bytes.push(chunk);
  }

  /** The next frame or error, or undefined when more bytes are needed (or after a fatal error). */
  next(): DecodeEvent | undefined {
    if (this.error !== null) return undefined;
    if (this.pending === null) {
      const ev = this.readHeader();
      if (ev !== undefined) return ev;
      if (this.pending === null) return undefined;
    }
    const h = this.pending;
    if (this.bytes.length < this.pendingLength) return undefined;
    const payload = this.pendingLength === 0 ? Buffer.alloc(0) : this.bytes.take(this.pendingLength);
    const header = this.pendingHeader!;
    this.pending = null;
    this.pendingHeader = null;
    const frame = { ...h, payload } as unknown as Frame;
    const want = header.readUInt32BE(header.length - TRAILER_LENGTH);
    if (crc32c(payload) >>> 0 !== want) {
      return this.fail(new FrameError('payload-crc', `${frameTypeName(h.type)} frame seq ${h.seq}: payload CRC32C mismatch`, false, frame));
    }
    return { kind: 'frame', frame };
  }

  private readHeader(): DecodeEvent | undefined {
    if (this.bytes.length < PREFIX) return undefined;
    const prefix = this.bytes.peek(PREFIX);
    const magic = prefix.readUInt32BE(0);
    if (magic !== FRAME_MAGIC) {
      return this.fail(new FrameError('bad-magic', `bad frame magic 0x${magic.toString(16).padStart(8, '0')} (want 0x${FRAME_MAGIC.toString(16)})`, true));
    }
    const version = prefix[4]!;
    if (!this.versions.includes(version)) {
      return this.fail(new FrameError('unsupported-version', `unsupported protocol version ${version}; this peer speaks ${this.versions.join(', ')}`, true, undefined, {
        got: version, supported: this.versions,
      }));
    }
    const headerLength = prefix.readUInt16BE(8);
    if (headerLength < BASE_HEADER_LENGTH + TRAILER_LENGTH || headerLength > MAX_HEADER_LENGTH || headerLength % 4 !== 0) {
      return this.fail(new FrameError('header-length', `header length ${headerLength} is not a multiple of 4 in ${BASE_HEADER_LENGTH + TRAILER_LENGTH}..${MAX_HEADER_LENGTH}`, true));
    }
    if (this.bytes.length < headerLength) return undefined;
    const header = this.bytes.take(headerLength);
    const crc = crc32c(header.subarray(0, headerLength - 4)) >>> 0;
    if (crc !== header.readUInt32BE(headerLength - 4)) {
      return this.fail(new FrameError('header-crc', `header CRC32C mismatch (${header.length} header bytes)`, true));
    }
    const type = header[5]!;
    if (!isFrameType(type)) return this.fail(new FrameError('unknown-type', `unknown frame type ${type}`, true));
    const name = frameTypeName(type);
    if (headerLength !== headerLengthOf(type)) {
      return this.fail(new FrameError('header-length', `${name} header length ${headerLength}, want ${headerLengthOf(type)}`, true));
    }
    const parsed = parseHeader(header);
    if (typeof parsed === 'string') return this.fail(new FrameError('field-range', `${name}: field ${parsed} exceeds 2^53-1`, true));
    const payloadLength = header.readUInt32BE(12);
    const [min, max] = payloadBounds(type, this.maxPayload);
    if (type === FrameType.DATA && payloadLength > this.maxPayload) {
      return this.fail(new FrameError('oversize', `${name} payload of ${payloadLength} bytes exceeds the maximum of ${max}`, true));
    }
    if (payloadLength < min || payloadLength > max) {
      return this.fail(new FrameError('payload-length', `${name} payload length ${payloadLength}, want ${min === max ? min : `${min}..${max}`}`, true));
    }
    this.pending = parsed;
    this.pendingLength = payloadLength;
    this.pendingHeader = header;
    return undefined;
  }

  private fail(error: FrameError): DecodeEvent {
    if (error.fatal) {
      this.error = error;
      this.bytes.clear();
    }
    return { kind: 'error', error };
  }
}
