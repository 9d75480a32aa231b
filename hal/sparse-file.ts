/**
 * Hole punching (fallocate(2) FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) and hole finding
 * (lseek(2) SEEK_DATA / SEEK_HOLE) for file media. Node's fs exposes neither, so they are called
 * in libc through the koffi FFI, whose npm package ships prebuilt binaries (no compiler, no install
 * script). Loaded on first use; where koffi, libc or the calls are missing (not Linux, an odd
 * libc), `loadSparseFileOps` answers why, and the file device falls back to writing zeroes.
 */
import { constants as osConstants } from 'node:os';

export interface SparseFileOps {
  /** Deallocate [offset, offset+length): reads return zeroes. Rejects with an Error carrying `code`. */
  punchHole(fd: number, offset: number, length: number): Promise<void>;
  /** Allocated (data) byte ranges within [offset, end), ascending, as [start, end) pairs. */
  dataRanges(fd: number, offset: number, end: number): Array<[number, number]>;
}

export type SparseFileSupport = { ops: SparseFileOps } | { unavailable: string };

const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;

const errnoNames = new Map(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));

export function errnoError(what: string, errno: number): NodeJS.ErrnoException {
  const code = errnoNames.get(errno) ?? `E${errno}`;
  const e = new Error(`${what}: ${code}`) as NodeJS.ErrnoException;
  e.code = code;
  e.errno = errno;
  return e;
}

type Fallocate = ((fd: number, mode: number, offset: number, len: number) => number) & {
  async(fd: number, mode: number, offset: number, len: number, cb: (err: unknown, res: number) => void): void;
};
type Lseek = (fd: number, offset: number, whence: number) => number;

let loading: Promise<SparseFileSupport> | undefined;

/** The FFI functions, loaded once per process. */
export function loadSparseFileOps(): Promise<SparseFileSupport> {
  loading ??= load().catch((err: unknown) => ({ unavailable: `cannot load libc through koffi: ${(err as Error).message}` }));
  return loading;
}

async function load(): Promise<SparseFileSupport> {
  if (process.platform !== 'linux') return { unavailable: `fallocate/SEEK_DATA are Linux calls; this is ${process.platform}` };
  const koffi = (await import('koffi')).default;
  let libc: ReturnType<typeof koffi.load> | undefined;
  const tried: string[] = [];
  for (const name of ['libc.so.6', `libc.musl-${muslArch()}.so.1`]) {
    try {
      libc = koffi.load(name);
      break;
    } catch (err) {
      tried.push(`${name}: ${(err as Error).message}`);
    }
  }
  if (!libc) return { unavailable: `no libc found (${tried.join('; ')})` };
  // off_t is 64-bit on every 64-bit Linux ABI; 32-bit ones need the *64 entry points.
  const lfs = process.arch === 'ia32' || process.arch === 'arm' ? '64' : '';
  const fallocate = libc.func(`int fallocate${lfs}(int fd, int mode, int64_t offset, int64_t len)`) as Fallocate;
  const lseek = libc.func(`int64_t lseek${lfs}(int fd, int64_t offset, int whence)`) as Lseek;
  const errno = (): number => koffi.errno() as number;
  const mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

  const ops: SparseFileOps = {
    punchHole(fd, offset, length) {
      return new Promise((resolve, reject) => {
        const syncRetry = (): void => {
          // errno is not carried back from koffi's worker thread; punching is idempotent, so a
          // failed punch is repeated here on the main thread to read the reason.
          if (fallocate(fd, mode, offset, length) === 0) resolve();
          else reject(errnoError(`fallocate(PUNCH_HOLE) of ${length} bytes at ${offset}`, errno()));
        };
        try {
          // On a worker thread: punching a large range can take milliseconds.
          fallocate.async(fd, mode, offset, length, (err, res) => (err || res !== 0 ? syncRetry() : resolve()));
        } catch {
          syncRetry(); // koffi's async queue is full
        }
      });
    },
    dataRanges(fd, offset, end) {
      const out: Array<[number, number]> = [];
      let pos = offset;
      while (pos < end) {
        const data = lseek(fd, pos, SEEK_DATA);
        if (data < 0) {
          const e = errno();
          if (errnoNames.get(e) === 'ENXIO') break; // no data from pos to the end of the file
          throw errnoError(`lseek(SEEK_DATA) at ${pos}`, e);
        }
        if (data >= end) break;
        const hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0) throw errnoError(`lseek(SEEK_HOLE) at ${data}`, errno());
        out.push([data, Math.min(hole, end)]);
        pos = hole;
      }
      return out;
    },
  };
  return { ops };
}

function muslArch(): string {
  return process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : process.arch;
}
