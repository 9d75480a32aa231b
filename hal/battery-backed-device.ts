/**
 * Battery-backed memory for the real HAL (seed 000-NV: "a memory with battery backup"), modelled on
 * an NVDIMM-N: DRAM that a battery keeps through a controller reset, saved to flash when the power
 * is switched off and restored when it comes back.
 *
 * - The DRAM is a file on the machine's shared memory (tmpfs, /dev/shm): a write is a copy into
 *   RAM, with no file system block mapping or writeback behind it, and it outlives the relay
 *   process (SIGKILL, crash, restart): `kept`.
 * - A clean shutdown (close()) saves it to `nvram.img` in the data directory (written, fdatasync'd,
 *   renamed into place) and frees the RAM; the next start copies it back and deletes the save:
 *   `restored`. Only one copy is ever live, so a stale save can never come back.
 * - A machine that went down while the relay held the memory (no memory file, no save, but the
 *   marker `nvram.in-memory` the open left in the data directory) has lost it, as a flat battery
 *   would: `lost`, a new empty memory, reported loudly by the caller. Records the relay had
 *   acknowledged are gone; that is what the ack-mode table says of this storage.
 *
 * A relay killed and never started again leaves its memory file in /dev/shm (named after its data
 * directory), as a board on battery keeps its DRAM: start the relay and stop it cleanly, or delete
 * the file, to free it.
 *
 * Where there is no /dev/shm the memory is `nvram.img` in the data directory itself, written and
 * never flushed: the page cache outlives the process, not the machine.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { dirname, join } from 'node:path';
import type { BlockDevice } from './block-device.js';
import { fsyncDirectory, openFileDevice } from './file-device.js';
import type { Logger } from './types.js';

export type MemoryOrigin = 'new' | 'kept' | 'restored' | 'lost';

export interface BatteryBackedMemory {
  /** Writes count as stored (volatileCache false); flush() is a no-op; close() saves and frees. */
  readonly device: BlockDevice;
  readonly origin: MemoryOrigin;
  /** Where the memory lives while the relay runs. */
  readonly path: string;
}

export interface BatteryBackedMemoryOptions {
  dataDir: string;
  size: number;
  logger?: Logger;
  /** The machine's shared memory (default /dev/shm); null: none, the data directory holds it. */
  memoryDir?: string | null;
}

export const SAVED_NAME = 'nvram.img';
export const MARKER_NAME = 'nvram.in-memory';

/** The memory file of a data directory: one per directory, named by its real path. */
export function memoryPathOf(dataDir: string, memoryDir: string): string {
  const id = createHash('sha256').update(fs.realpathSync(dataDir)).digest('hex').slice(0, 16);
  return join(memoryDir, `kura-nvram-${id}.img`);
}

export async function openBatteryBackedMemory(o: BatteryBackedMemoryOptions): Promise<BatteryBackedMemory> {
  const memoryDir = o.memoryDir === undefined ? defaultMemoryDir() : o.memoryDir;
  const saved = join(o.dataDir, SAVED_NAME);
  if (memoryDir === null) {
    const origin: MemoryOrigin = fs.existsSync(saved) ? 'kept' : 'new';
    const file = await openFileDevice(saved, { size: o.size, create: true, logger: o.logger });
    return { device: batteryBacked(file, () => Promise.resolve()), origin, path: saved };
  }
  const path = memoryPathOf(o.dataDir, memoryDir);
  const marker = join(o.dataDir, MARKER_NAME);
  let origin: MemoryOrigin;
  if (fs.existsSync(path)) {
    origin = 'kept';
    // The memory is newer than any save (one can only be left by a crash between the two steps of
    // a restore or a save): the save goes.
    fs.rmSync(saved, { force: true });
  } else if (fs.existsSync(saved)) {
    origin = 'restored';
    const tmp = `${path}.restoring-${process.pid}`;
    await copySparse(saved, tmp, false);
    await fs.promises.rename(tmp, path);
    await fs.promises.unlink(saved);
  } else {
    origin = fs.existsSync(marker) ? 'lost' : 'new';
    // Sparse: RAM is taken as the ring is written, not up front.
    const fd = fs.openSync(path, 'w', 0o600);
    fs.ftruncateSync(fd, o.size);
    fs.closeSync(fd);
  }
  writeDurably(marker, `${path}\n`);
  const file = await openFileDevice(path, { size: o.size, create: true, logger: o.logger, punchHoles: false });
  return { device: batteryBacked(file, () => save(path, saved, marker)), origin, path };
}

function defaultMemoryDir(): string | null {
  return process.platform === 'linux' && fs.existsSync('/dev/shm') ? '/dev/shm' : null;
}

/** Power-off: the memory goes to the data directory, durably, before its RAM is freed. */
async function save(path: string, saved: string, marker: string): Promise<void> {
  const tmp = `${saved}.saving-${process.pid}`;
  await copySparse(path, tmp, true);
  await fs.promises.rename(tmp, saved);
  // The save's name is durable before the RAM goes: a machine crash in between restores it.
  fsyncDirectory(dirname(saved));
  await fs.promises.unlink(path);
  await fs.promises.unlink(marker);
}

const CHUNK = 1 << 20;
const ZEROES = Buffer.alloc(CHUNK);

/**
 * Copy `from` to a new file `to`, leaving holes where `from` reads as zeroes: the memory is sparse
 * (a relay that wrote a little of its ring holds little RAM), and its save and restore should cost
 * what was written, not the whole size.
 */
async function copySparse(from: string, to: string, sync: boolean): Promise<void> {
  const src = await fs.promises.open(from, 'r');
  const dst = await fs.promises.open(to, 'w', 0o600);
  try {
    const size = (await src.stat()).size;
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let pos = 0; pos < size; pos += CHUNK) {
      const { bytesRead } = await src.read(buf, 0, Math.min(CHUNK, size - pos), pos);
      const chunk = buf.subarray(0, bytesRead);
      if (!chunk.equals(ZEROES.subarray(0, bytesRead))) await dst.write(chunk, 0, bytesRead, pos);
    }
    await dst.truncate(size);
    if (sync) await dst.datasync();
  } finally {
    await src.close();
    await dst.close();
  }
}

function writeDurably(file: string, text: string): void {
  const fd = fs.openSync(file, 'w', 0o644);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fsyncDirectory(dirname(file));
}

/** `device` with its writes counted as stored and flush() a no-op; close() then `onClose`. */
function batteryBacked(device: BlockDevice, onClose: () => Promise<void>): BlockDevice {
  let closing: Promise<void> | undefined;
  return {
    name: `${device.name} (battery-backed memory)`,
    size: device.size,
    volatileCache: false,
    canDiscard: device.canDiscard,
    read: (offset, into) => device.read(offset, into),
    write: (offset, from) => device.write(offset, from),
    flush: () => Promise.resolve(),
    discard: (offset, length) => device.discard(offset, length),
    close: () => (closing ??= device.close().then(onClose)),
  };
}
