/**
 * A small JSON record that must survive a crash and is rewritten often (the secondary's applied
 * watermark, after every group commit): two 512-byte slots at fixed offsets of a file of 1 KiB,
 * written alternately, each with a counter and a CRC32C. A save is one pwrite on an O_DSYNC fd:
 * one system call (and one threadpool hop) instead of JsonStateStore's open, write, fsync, close,
 * rename, open, fsync, close of the directory (two journal commits). The file's blocks are
 * allocated when it is made, so a save changes no metadata and the O_DSYNC write is a data flush.
 *
 * A save torn by a crash spoils only the slot it was writing (a 512-byte sector is written whole
 * by most devices; if not, its CRC fails): load() takes the valid slot with the higher counter,
 * i.e. the last completed save or the one before it. So once save() resolved, load() after any
 * crash returns that record or a later one. A failed write leaves the file failed: every later save
 * is refused (writing on into the other slot could spoil the last good record as well).
 */
import { crc32c } from '@node-rs/crc32';
import fs from 'node:fs';
import { dirname } from 'node:path';

const SLOT = 512;
const MAGIC = 0x4b524543; // 'KREC'
const HEADER = 20;
/** Largest JSON text a record holds, bytes. */
export const MAX_RECORD_BYTES = SLOT - HEADER;

interface Slot {
  counter: number;
  text: string;
}

function decode(b: Buffer): Slot | undefined {
  if (b.length < SLOT || b.readUInt32BE(0) !== MAGIC) return undefined;
  const len = b.readUInt16BE(4);
  if (len > MAX_RECORD_BYTES) return undefined;
  const crc = b.readUInt32BE(16);
  const check = crc32c(b.subarray(HEADER, HEADER + len), crc32c(b.subarray(0, 16))) >>> 0;
  if (check !== crc) return undefined;
  return { counter: b.readUInt32BE(8) * 2 ** 32 + b.readUInt32BE(12), text: b.toString('utf8', HEADER, HEADER + len) };
}

function encode(counter: number, text: string): Buffer {
  const b = Buffer.alloc(SLOT);
  const len = b.write(text, HEADER, 'utf8');
  if (Buffer.byteLength(text) > MAX_RECORD_BYTES) throw new RangeError(`record of ${Buffer.byteLength(text)} bytes exceeds ${MAX_RECORD_BYTES}`);
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt16BE(len, 4);
  b.writeUInt32BE(Math.floor(counter / 2 ** 32), 8);
  b.writeUInt32BE(counter >>> 0, 12);
  b.writeUInt32BE(crc32c(b.subarray(HEADER, HEADER + len), crc32c(b.subarray(0, 16))) >>> 0, 16);
  return b;
}

export class RecordFile {
  private counter: number;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;
  private failure: Error | undefined;

  private constructor(readonly path: string, private readonly fd: number, private current: Slot | undefined) {
    this.counter = current?.counter ?? 0;
  }

  /** Open (making it, durably, if missing) the record file at `path`. */
  static async open(path: string): Promise<RecordFile> {
    let fd: number;
    try {
      fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_DSYNC);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      fs.mkdirSync(dirname(path), { recursive: true });
      // Made under a temporary name with its blocks written, then renamed: a crash never leaves a
      // short file under the real name.
      const tmp = `${path}.tmp-${process.pid}`;
      const t = fs.openSync(tmp, 'w', 0o600);
      try {
        fs.writeSync(t, Buffer.alloc(2 * SLOT), 0, 2 * SLOT, 0);
        fs.fsyncSync(t);
      } finally {
        fs.closeSync(t);
      }
      fs.renameSync(tmp, path);
      const d = fs.openSync(dirname(path), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      try {
        fs.fsyncSync(d);
      } finally {
        fs.closeSync(d);
      }
      fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_DSYNC);
    }
    try {
      const b = Buffer.alloc(2 * SLOT);
      const n = fs.readSync(fd, b, 0, b.length, 0);
      const slots = [decode(b.subarray(0, Math.min(n, SLOT))), n > SLOT ? decode(b.subarray(SLOT, n)) : undefined].filter((s): s is Slot => s !== undefined);
      const best = slots.reduce<Slot | undefined>((a, s) => (a === undefined || s.counter > a.counter ? s : a), undefined);
      return new RecordFile(path, fd, best);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** The last record saved, or undefined if none ever was. Throws on a record that is not JSON. */
  load(): unknown {
    if (this.current === undefined) return undefined;
    try {
      return JSON.parse(this.current.text) as unknown;
    } catch (err) {
      throw new Error(`${this.path}: record is not valid JSON (${(err as Error).message})`, { cause: err });
    }
  }

  /** Save `data` (JSON of at most MAX_RECORD_BYTES); resolves once it is on stable storage. In call order. */
  save(data: unknown): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`${this.path} is closed`));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const text = JSON.stringify(data);
    const counter = ++this.counter;
    let buf: Buffer;
    try {
      buf = encode(counter, text);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const run = this.queue.then(() => new Promise<void>((resolve, reject) => {
      if (this.failure !== undefined) return reject(this.failure);
      fs.write(this.fd, buf, 0, SLOT, (counter % 2) * SLOT, (err, n) => {
        if (!err && n !== SLOT) err = Object.assign(new Error(`${this.path}: short write (${n} of ${SLOT} bytes)`), { code: 'EIO' });
        if (err) {
          this.failure ??= new Error(`${this.path}: saving a record failed: ${err.message}`, { cause: err });
          return reject(this.failure);
        }
        this.current = { counter, text };
        resolve();
      });
    }));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    fs.closeSync(this.fd);
  }
}
