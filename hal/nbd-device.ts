/**
 * A BlockDevice that is an NBD export (qemu-storage-daemon, qemu-nbd, nbdkit), over a Unix socket
 * or TCP. Fixed-newstyle handshake with NBD_OPT_GO (NBD_OPT_EXPORT_NAME when the server lacks it),
 * simple replies only, any number of requests in flight matched by cookie, and every request of one
 * event-loop tick sent with one writev (cork until the next tick).
 *
 * Cache semantics follow the transmission flags: volatileCache = NBD_FLAG_SEND_FLUSH (the server
 * has a cache that only FLUSH empties); FUA is sent when NBD_FLAG_SEND_FUA, emulated with write +
 * FLUSH otherwise. discard() must leave zeroes behind, which NBD_CMD_TRIM does not promise (it is
 * advisory), so discard() sends NBD_CMD_WRITE_ZEROES without NBD_CMD_FLAG_NO_HOLE (the server may
 * deallocate), or writes zeroes when the server has no WRITE_ZEROES; canDiscard is true when the
 * server both can trim and supports WRITE_ZEROES. The advisory trim is there as `trim()`.
 */
import net from 'node:net';
import type { BlockDevice, DeviceOp, WriteOptions } from './block-device.js';
import { DeviceError } from './block-device.js';

export interface NbdConnectOptions {
  socketPath?: string;
  host?: string;
  port?: number;
  exportName: string;
  /** Abort the connection and handshake after this long. Default 10 s. */
  timeoutMs?: number;
}

export interface NbdDevice extends BlockDevice {
  /** The export's transmission flags (NBD_FLAG_*). */
  readonly transmissionFlags: number;
  /** Largest READ/WRITE payload sent in one request; bigger requests are split. */
  readonly maxPayload: number;
  /** NBD_CMD_TRIM: advisory deallocation, the range may read back as old data or zeroes. */
  trim(offset: number, length: number): Promise<void>;
}

// Handshake (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md).
const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const REPLY_MAGIC = 0x0003e889045565a9n;
const FLAG_FIXED_NEWSTYLE = 1 << 0;
const FLAG_NO_ZEROES = 1 << 1;
const OPT_EXPORT_NAME = 1;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_INFO = 3;
const REP_ERR_UNSUP = 0x80000001;
const INFO_EXPORT = 0;
const INFO_BLOCK_SIZE = 3;
const REP_ERRORS: Record<number, string> = {
  0x80000001: 'NBD_REP_ERR_UNSUP', 0x80000002: 'NBD_REP_ERR_POLICY', 0x80000003: 'NBD_REP_ERR_INVALID',
  0x80000004: 'NBD_REP_ERR_PLATFORM', 0x80000005: 'NBD_REP_ERR_TLS_REQD', 0x80000006: 'NBD_REP_ERR_UNKNOWN',
  0x80000007: 'NBD_REP_ERR_SHUTDOWN', 0x80000008: 'NBD_REP_ERR_BLOCK_SIZE_REQD', 0x80000009: 'NBD_REP_ERR_TOO_BIG',
};

// Transmission.
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;
const CMD_FLUSH = 3;
const CMD_TRIM = 4;
const CMD_WRITE_ZEROES = 6;
const CMD_FLAG_FUA = 1 << 0;
const NBD_ERRNO: Record<number, string> = {
  1: 'EPERM', 5: 'EIO', 12: 'ENOMEM', 22: 'EINVAL', 28: 'ENOSPC', 75: 'EOVERFLOW', 95: 'ENOTSUP', 108: 'ESHUTDOWN',
};
/** The protocol's recommended ceiling when the server states no maximum block size. */
const DEFAULT_MAX_PAYLOAD = 32 << 20;
/** TRIM/WRITE_ZEROES carry a 32-bit length; stay well under it and keep 1 MiB alignment. */
const MAX_ZEROING = 1 << 30;
const ZEROES = Buffer.alloc(1 << 20);

export async function connectNbd(opts: NbdConnectOptions): Promise<NbdDevice> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const where = opts.socketPath ?? `${opts.host ?? '127.0.0.1'}:${opts.port ?? 10809}`;
  const socket = opts.socketPath
    ? net.connect({ path: opts.socketPath })
    : net.connect({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 10809 });
  const reader = new HandshakeReader(socket);
  const timer = setTimeout(() => socket.destroy(new Error(`NBD handshake with ${where} timed out after ${timeoutMs} ms`)), timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    if (!opts.socketPath) socket.setNoDelay(true);
    const info = await handshake(socket, reader, opts.exportName);
    clearTimeout(timer);
    return new NbdClient(`nbd:${where}/${opts.exportName}`, socket, reader.detach(), info);
  } catch (err) {
    clearTimeout(timer);
    socket.destroy();
    const e = err as NodeJS.ErrnoException;
    const wrapped = new Error(`NBD connect to ${where} export ${JSON.stringify(opts.exportName)}: ${e.message}`) as NodeJS.ErrnoException;
    wrapped.code = e.code;
    throw wrapped;
  }
}

interface ExportInfo { size: number; flags: number; maxPayload: number }

async function handshake(socket: net.Socket, reader: HandshakeReader, exportName: string): Promise<ExportInfo> {
  const hello = await reader.need(18);
  if (hello.readBigUInt64BE(0) !== NBDMAGIC) throw new Error('not an NBD server (bad NBDMAGIC)');
  if (hello.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('server does not speak newstyle negotiation');
  const serverFlags = hello.readUInt16BE(16);
  if (!(serverFlags & FLAG_FIXED_NEWSTYLE)) throw new Error('server does not speak fixed newstyle negotiation');
  const noZeroes = (serverFlags & FLAG_NO_ZEROES) !== 0;
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (noZeroes ? FLAG_NO_ZEROES : 0));
  socket.write(clientFlags);

  const name = Buffer.from(exportName, 'utf8');
  // NBD_OPT_GO: name length, name, one information request (block size limits).
  const go = Buffer.alloc(4 + name.length + 2 + 2);
  go.writeUInt32BE(name.length, 0);
  name.copy(go, 4);
  go.writeUInt16BE(1, 4 + name.length);
  go.writeUInt16BE(INFO_BLOCK_SIZE, 6 + name.length);
  socket.write(option(OPT_GO, go));

  let size = -1;
  let flags = 0;
  let maxPayload = DEFAULT_MAX_PAYLOAD;
  for (;;) {
    const head = await reader.need(20);
    if (head.readBigUInt64BE(0) !== REPLY_MAGIC) throw new Error('bad option reply magic');
    const type = head.readUInt32BE(12);
    const length = head.readUInt32BE(16);
    const data = length > 0 ? await reader.need(length) : Buffer.alloc(0);
    if (type === REP_ERR_UNSUP) return exportNameFallback(socket, reader, name, noZeroes);
    if (type & 0x80000000) {
      const why = data.length ? `: ${data.toString('utf8')}` : '';
      throw new Error(`server refused the export: ${REP_ERRORS[type] ?? `error 0x${type.toString(16)}`}${why}`);
    }
    if (type === REP_INFO && data.length >= 2) {
      const infoType = data.readUInt16BE(0);
      if (infoType === INFO_EXPORT && data.length >= 12) {
        size = Number(data.readBigUInt64BE(2));
        flags = data.readUInt16BE(10);
      } else if (infoType === INFO_BLOCK_SIZE && data.length >= 14) {
        const max = data.readUInt32BE(10);
        if (max > 0) maxPayload = Math.min(max, DEFAULT_MAX_PAYLOAD);
      }
    } else if (type === REP_ACK) {
      if (size < 0) throw new Error('server acknowledged NBD_OPT_GO without NBD_INFO_EXPORT');
      return { size, flags, maxPayload };
    }
  }
}

async function exportNameFallback(socket: net.Socket, reader: HandshakeReader, name: Buffer, noZeroes: boolean): Promise<ExportInfo> {
  socket.write(option(OPT_EXPORT_NAME, name));
  const reply = await reader.need(noZeroes ? 10 : 134);
  return { size: Number(reply.readBigUInt64BE(0)), flags: reply.readUInt16BE(8), maxPayload: DEFAULT_MAX_PAYLOAD };
}

function option(code: number, data: Buffer): Buffer {
  const head = Buffer.alloc(16);
  head.writeBigUInt64BE(IHAVEOPT, 0);
  head.writeUInt32BE(code, 8);
  head.writeUInt32BE(data.length, 12);
  return Buffer.concat([head, data]);
}

/** Buffers the socket's bytes while the handshake awaits fixed-size pieces. */
class HandshakeReader {
  private chunks: Buffer[] = [];
  private length = 0;
  private wanted: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private readonly onData = (chunk: Buffer): void => {
    this.chunks.push(chunk);
    this.length += chunk.length;
    this.serve();
  };
  private readonly onEnd = (err?: Error): void => {
    this.failure ??= err instanceof Error ? err : new Error('server closed the connection during the handshake');
    this.wanted?.reject(this.failure);
    this.wanted = null;
  };

  constructor(private readonly socket: net.Socket) {
    socket.on('data', this.onData);
    socket.on('error', this.onEnd);
    socket.on('close', this.onEnd);
  }

  need(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.failure && this.length < n) return reject(this.failure);
      this.wanted = { n, resolve, reject };
      this.serve();
    });
  }

  /** Hand over what arrived after the handshake, and stop listening. */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('error', this.onEnd);
    this.socket.off('close', this.onEnd);
    return Buffer.concat(this.chunks);
  }

  private serve(): void {
    if (!this.wanted || this.length < this.wanted.n) return;
    const all = Buffer.concat(this.chunks);
    const { n, resolve } = this.wanted;
    this.wanted = null;
    this.chunks = n < all.length ? [all.subarray(n)] : [];
    this.length = all.length - n;
    resolve(all.subarray(0, n));
  }
}

interface Pending {
  cookie: number;
  op: DeviceOp;
  offset: number;
  length: number;
  /** Destination of a READ's payload. */
  into?: Uint8Array;
  resolve(): void;
  reject(err: DeviceError): void;
}

class NbdClient implements NbdDevice {
  readonly size: number;
  readonly volatileCache: boolean;
  readonly canDiscard: boolean;
  readonly transmissionFlags: number;
  readonly maxPayload: number;
  private readonly pending = new Map<number, Pending>();
  private nextCookie = 1;
  private corked = false;
  private failure: { code: string; message: string } | null = null;
  private closing = false;
  private idle: (() => void) | null = null;
  // Reply parser state.
  private readonly header = Buffer.alloc(16);
  private headerFill = 0;
  private payloadFor: Pending | null = null;
  private payloadDone = 0;

  constructor(readonly name: string, private readonly socket: net.Socket, leftover: Buffer, info: ExportInfo) {
    this.size = info.size;
    this.transmissionFlags = info.flags;
    this.maxPayload = info.maxPayload;
    this.volatileCache = (info.flags & NBD_FLAG_SEND_FLUSH) !== 0;
    this.canDiscard = (info.flags & NBD_FLAG_SEND_TRIM) !== 0 && (info.flags & NBD_FLAG_SEND_WRITE_ZEROES) !== 0;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => this.fail(err.code ?? 'EIO', err.message));
    socket.on('close', () => this.fail('ECONNRESET', 'NBD connection closed'));
    if (leftover.length) this.onData(leftover);
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    this.check('read', offset, into.length);
    if (into.length <= this.maxPayload) return this.send('read', CMD_READ, 0, offset, into.length, into);
    const parts: Promise<void>[] = [];
    for (let pos = 0; pos < into.length; pos += this.maxPayload) {
      const n = Math.min(this.maxPayload, into.length - pos);
      parts.push(this.send('read', CMD_READ, 0, offset + pos, n, into.subarray(pos, pos + n)));
    }
    await Promise.all(parts);
  }

  async write(offset: number, from: Uint8Array, options?: WriteOptions): Promise<void> {
    this.check('write', offset, from.length);
    const fua = !!options?.fua && this.volatileCache;
    const nativeFua = fua && (this.transmissionFlags & NBD_FLAG_SEND_FUA) !== 0;
    const flags = nativeFua ? CMD_FLAG_FUA : 0;
    const parts: Promise<void>[] = [];
    for (let pos = 0; pos < from.length; pos += this.maxPayload) {
      const n = Math.min(this.maxPayload, from.length - pos);
      parts.push(this.send('write', CMD_WRITE, flags, offset + pos, n, undefined, from.subarray(pos, pos + n)));
    }
    await Promise.all(parts);
    if (fua && (!nativeFua || from.length === 0)) {
      await this.flush().catch((e: DeviceError) => {
        throw new DeviceError('write', offset, from.length, e.code, `FUA write not made durable: ${e.message}`);
      });
    }
  }

  flush(): Promise<void> {
    try {
      this.check('flush', 0, 0);
    } catch (err) {
      return Promise.reject(err);
    }
    if (!this.volatileCache) return Promise.resolve();
    return this.send('flush', CMD_FLUSH, 0, 0, 0);
  }

  async discard(offset: number, length: number): Promise<void> {
    this.check('discard', offset, length);
    if (length === 0) return;
    const parts: Promise<void>[] = [];
    if (this.transmissionFlags & NBD_FLAG_SEND_WRITE_ZEROES) {
      for (let pos = 0; pos < length; pos += MAX_ZEROING) {
        parts.push(this.send('discard', CMD_WRITE_ZEROES, 0, offset + pos, Math.min(MAX_ZEROING, length - pos)));
      }
    } else {
      const chunk = Math.min(ZEROES.length, this.maxPayload);
      for (let pos = 0; pos < length; pos += chunk) {
        const n = Math.min(chunk, length - pos);
        parts.push(this.send('discard', CMD_WRITE, 0, offset + pos, n, undefined, ZEROES.subarray(0, n)));
      }
    }
    await Promise.all(parts);
  }

  async trim(offset: number, length: number): Promise<void> {
    this.check('discard', offset, length);
    if (!(this.transmissionFlags & NBD_FLAG_SEND_TRIM) || length === 0) return;
    const parts: Promise<void>[] = [];
    for (let pos = 0; pos < length; pos += MAX_ZEROING) {
      parts.push(this.send('discard', CMD_TRIM, 0, offset + pos, Math.min(MAX_ZEROING, length - pos)));
    }
    await Promise.all(parts);
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // Requests already sent get their replies; NBD_CMD_DISC goes last and has none.
    if (this.pending.size > 0 && !this.failure) await new Promise<void>((r) => { this.idle = r; });
    if (!this.failure && !this.socket.destroyed) {
      const closed = new Promise<void>((r) => this.socket.once('close', () => r()));
      this.socket.end(this.request(CMD_DISC, 0, 0, 0, 0));
      const timer = setTimeout(() => this.socket.destroy(), 5_000);
      await closed;
      clearTimeout(timer);
    }
    this.socket.destroy();
  }

  private check(op: DeviceOp, offset: number, length: number): void {
    if (this.failure) throw this.failedAs(op, offset, length);
    if (this.closing) throw new DeviceError(op, offset, length, 'ESHUTDOWN', `${this.name} is closed`);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0 || offset + length > this.size) {
      throw new DeviceError(op, offset, length, 'EINVAL', `${op} of ${length} bytes at ${offset} is outside ${this.name} (${this.size} bytes)`);
    }
    if (op !== 'read' && op !== 'flush' && (this.transmissionFlags & NBD_FLAG_READ_ONLY)) {
      throw new DeviceError(op, offset, length, 'EPERM', `${this.name} is a read-only export`);
    }
  }

  private send(op: DeviceOp, type: number, flags: number, offset: number, length: number, into?: Uint8Array, data?: Uint8Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failedAs(op, offset, length));
    let cookie = this.nextCookie;
    while (this.pending.has(cookie)) cookie = cookie >= 0xffffffff ? 1 : cookie + 1;
    this.nextCookie = cookie >= 0xffffffff ? 1 : cookie + 1;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(cookie, { cookie, op, offset, length, into, resolve, reject });
      if (!this.corked) {
        // Everything sent in this tick leaves in one writev.
        this.corked = true;
        this.socket.cork();
        process.nextTick(() => {
          this.corked = false;
          this.socket.uncork();
        });
      }
      this.socket.write(this.request(type, flags, cookie, offset, length));
      if (data && data.length) this.socket.write(data);
    });
  }

  private request(type: number, flags: number, cookie: number, offset: number, length: number): Buffer {
    const h = Buffer.allocUnsafe(28);
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(0, 8);
    h.writeUInt32BE(cookie, 12);
    h.writeUInt32BE(Math.floor(offset / 0x100000000), 16);
    h.writeUInt32BE(offset >>> 0, 20);
    h.writeUInt32BE(length, 24);
    return h;
  }

  private onData(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const p = this.payloadFor;
      if (p) {
        const into = p.into as Uint8Array;
        const n = Math.min(into.length - this.payloadDone, chunk.length - pos);
        into.set(chunk.subarray(pos, pos + n), this.payloadDone);
        this.payloadDone += n;
        pos += n;
        if (this.payloadDone === into.length) {
          this.payloadFor = null;
          this.complete(p);
        }
        continue;
      }
      const n = Math.min(16 - this.headerFill, chunk.length - pos);
      chunk.copy(this.header, this.headerFill, pos, pos + n);
      this.headerFill += n;
      pos += n;
      if (this.headerFill < 16) break;
      this.headerFill = 0;
      if (!this.onReplyHeader()) return;
    }
  }

  /** False when the stream is unusable from here on. */
  private onReplyHeader(): boolean {
    const h = this.header;
    const magic = h.readUInt32BE(0);
    const error = h.readUInt32BE(4);
    const cookieHigh = h.readUInt32BE(8);
    const cookie = h.readUInt32BE(12);
    const p = cookieHigh === 0 ? this.pending.get(cookie) : undefined;
    if (magic !== SIMPLE_REPLY_MAGIC || !p) {
      const why = magic !== SIMPLE_REPLY_MAGIC ? `bad reply magic 0x${magic.toString(16)}` : `reply for unknown cookie ${cookieHigh}:${cookie}`;
      this.fail('EPROTO', why);
      this.socket.destroy();
      return false;
    }
    if (error !== 0) {
      this.pending.delete(cookie);
      const code = NBD_ERRNO[error] ?? 'EIO';
      p.reject(new DeviceError(p.op, p.offset, p.length, code, `${p.op} of ${p.length} bytes at offset ${p.offset}: server error ${code} (${error})`));
      this.checkIdle();
    } else if (p.into && p.into.length > 0) {
      this.payloadFor = p;
      this.payloadDone = 0;
    } else {
      this.complete(p);
    }
    return true;
  }

  private complete(p: Pending): void {
    this.pending.delete(p.cookie);
    p.resolve();
    this.checkIdle();
  }

  private failedAs(op: DeviceOp, offset: number, length: number): DeviceError {
    const f = this.failure ?? { code: 'EIO', message: 'failed' };
    return new DeviceError(op, offset, length, f.code, `${op} of ${length} bytes at offset ${offset}: ${f.message}`);
  }

  private checkIdle(): void {
    if (this.pending.size === 0 && this.idle) {
      const idle = this.idle;
      this.idle = null;
      idle();
    }
  }

  private fail(code: string, message: string): void {
    this.failure ??= { code, message: `${this.name}: ${message}` };
    for (const p of this.pending.values()) p.reject(this.failedAs(p.op, p.offset, p.length));
    this.pending.clear();
    this.payloadFor = null;
    this.checkIdle();
  }
}
