/**
 * qemu-storage-daemon as a child process exporting one image (qcow2 or raw) over NBD on a Unix
 * socket: the real-HAL way to back a volume with any QEMU block driver (connect with connectNbd).
 */
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface StorageDaemonOptions {
  image: string;
  format: 'qcow2' | 'raw';
  /** Directory for the NBD socket. */
  runDir: string;
  exportName?: string;
  /**
   * writeback (default): QEMU goes through the host page cache; none: O_DIRECT. Either way the
   * export has a volatile cache that NBD FLUSH empties.
   */
  cache?: 'writeback' | 'none';
  /** Size for creating `image` when it does not exist (bytes, or a qemu-img size such as "1G"). */
  size?: number | string;
  /** Executable; default `qemu-storage-daemon` from PATH. */
  binary?: string;
  /** Give up waiting for the socket after this long. Default 15 s. */
  startTimeoutMs?: number;
}

export interface StorageDaemon {
  socketPath: string;
  exportName: string;
  pid: number;
  /** SIGTERM: QEMU drains and flushes every node, then exits. */
  stop(): Promise<void>;
  /** SIGKILL: a crash; only what NBD FLUSH (or FUA) made durable is guaranteed to survive. */
  kill(): Promise<void>;
}

/** `qemu-img create -f FORMAT PATH SIZE`. */
export function createImage(image: string, format: 'qcow2' | 'raw', size: number | string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('qemu-img', ['create', '-q', '-f', format, image, String(size)], (err, _stdout, stderr) => {
      if (err) reject(new Error(`qemu-img create ${image}: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

/** QEMU option values are comma-separated; a literal comma is written twice. */
function qemuValue(value: string): string {
  return value.replaceAll(',', ',,');
}

let instances = 0;

export async function startStorageDaemon(opts: StorageDaemonOptions): Promise<StorageDaemon> {
  const exportName = opts.exportName ?? path.basename(opts.image);
  if (!fs.existsSync(opts.image)) {
    if (opts.size === undefined) throw new Error(`${opts.image} does not exist and no size was given to create it`);
    await createImage(opts.image, opts.format, opts.size);
  }
  await fs.promises.mkdir(opts.runDir, { recursive: true });
  const socketPath = path.join(opts.runDir, `qsd-${process.pid}-${instances++}.sock`);
  // sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
  if (Buffer.byteLength(socketPath) > 107) throw new Error(`socket path too long for a Unix socket: ${socketPath}`);
  await fs.promises.rm(socketPath, { force: true });

  const direct = opts.cache === 'none' ? 'on' : 'off';
  const args = [
    // discard=unmap: without it QEMU ignores TRIM and unmapping WRITE_ZEROES (the default is ignore).
    '--blockdev', `driver=file,node-name=file0,filename=${qemuValue(path.resolve(opts.image))},cache.direct=${direct},discard=unmap`,
    '--blockdev', `driver=${opts.format},node-name=fmt0,file=file0,discard=unmap`,
    '--nbd-server', `addr.type=unix,addr.path=${qemuValue(socketPath)}`,
    '--export', `type=nbd,id=exp0,node-name=fmt0,name=${qemuValue(exportName)},writable=on`,
  ];
  const child = spawn(opts.binary ?? 'qemu-storage-daemon', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (b: Buffer): void => { output = (output + b.toString()).slice(-4000); };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  // A binary that cannot be spawned emits 'error' and never 'exit'.
  const exited = Promise.race([
    new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
    }),
    spawnError.then(() => ({ code: null, signal: null })),
  ]);
  let running = true;
  void exited.then(() => { running = false; });

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (running) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await fs.promises.rm(socketPath, { force: true });
  };

  const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000);
  for (;;) {
    const state = await Promise.race([
      exited.then((e) => `exited (code ${e.code}, signal ${e.signal})`),
      spawnError.then((e) => `could not start: ${e.message}`),
      canConnect(socketPath).then((ok) => (ok ? 'ready' : 'waiting')),
    ]);
    if (state === 'ready') break;
    if (state !== 'waiting' || Date.now() > deadline) {
      await stop();
      const why = state === 'waiting' ? 'socket not accepting in time' : state;
      throw new Error(`qemu-storage-daemon for ${opts.image}: ${why}\n${output.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { socketPath, exportName, pid: child.pid ?? -1, stop: () => stop('SIGTERM'), kill: () => stop('SIGKILL') };
}

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path: socketPath });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}
