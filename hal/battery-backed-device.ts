/**
 * Battery-backed memory for the real HAL (seed 000-NV: "a memory with battery backup"), modelled on
 * an NVDIMM-N: DRAM that a battery keeps through a controller reset, saved to flash when the power
 * is switched off and restored when it comes back.
 *
 * - The DRAM is a file on the machine's shared memory (tmpfs, /dev/shm), all of its size taken when
 *   it is made (as a board's DRAM is: a write never finds it full): a write is a copy into RAM,
 *   with no file system block mapping or writeback behind it, and it outlives the relay process
 *   (SIGKILL, crash, restart): `kept`.
 * - A clean shutdown (close()) saves it to `nvram.img` in the data directory (written, fdatasync'd,
 *   renamed into place) and frees the RAM; the next start copies it back and deletes the save:
 *   `restored`. Only one copy is ever live, so a stale save can never come back.
 * - A machine that went down while the relay held the memory (no memory file, no save, but the
 *   marker `nvram.in-memory.json` the open left in the data directory) has lost it, as a flat battery
 *   would: `lost`, a new empty memory, reported loudly by the caller. Records the relay had
 *   acknowledged are gone; that is what the ack-mode table says of this storage.
 *
 * A relay killed and never started again leaves its memory file in /dev/shm (named after its data
 * directory), as a board on battery keeps its DRAM: start the relay and stop it cleanly, or delete
 * the file, to free it.
 *
 * Where there is no /dev/shm, or too little of it for the memory (a container's default is 64 MiB),
 * the memory is `nvram.img` in the data directory itself, written and never flushed (`note` says
 * why): the page cache outlives the process, not the machine.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { BlockDevice } from './block-device.js';
import { fsyncDirectory, openFileDevice } from './file-device.js';
import { JsonStateStore } from './state-store.js';
import type { Logger } from './types.js';

export type MemoryOrigin = 'new' | 'kept' | 'restored' | 'lost';

export interface BatteryBackedMemory {
  /** Writes count as stored (volatileCache false); flush() is a no-op; close() saves and frees. */
  readonly device: BlockDevice;
  readonly origin: MemoryOrigin;
  /** Where the memory lives while the relay runs. */
  readonly path: string;
  /** Why it is not where it should be (shared memory missing or too small). */
  readonly note?: string;
}

export interface BatteryBackedMemoryOptions {
  dataDir: string;
  size: number;
  logger?: Logger;
  /** The machine's shared memory (default /dev/shm); null: none, the data directory holds it. */
  memoryDir?: string | null;
}

export const SAVED_NAME = 'nvram.img';
/** The marker's state document (hal/state-store.ts): the memory this data directory's relay holds. */
const MARKER_DOC = 'nvram.in-memory';
export const MARKER_NAME = `${MARKER_DOC}.json`;

/** The memory file of a data directory: one per directory, named by its real path. */
export function memoryPathOf(dataDir: string, memoryDir: string): string {
  const id = createHash('sha256').update(fs.realpathSync(dataDir)).digest('hex').slice(0, 16);
  return join(memoryDir, `kura-nvram-${id}.img`);
}

export async function openBatteryBackedMemory(o: BatteryBackedMemoryOptions): Promise<BatteryBackedMemory> {
  const memoryDir = o.memoryDir === undefined ? defaultMemoryDir() : o.memoryDir;
  const saved = join(o.dataDir, SAVED_NAME);
  const marker = join(o.dataDir, MARKER_NAME);
  const path = memoryDir === null ? undefined : memoryPathOf(o.dataDir, memoryDir);
  removeLeftovers(o.dataDir, `${SAVED_NAME}.saving-`);
  if (memoryDir !== null) removeLeftovers(memoryDir, `${basename(path!)}.`);
  if (path !== undefined && fs.existsSync(path)) {
    // The memory is newer than any save (one can only be left by a crash between the two steps of
    // a restore or a save): the save goes.
    fs.rmSync(saved, { force: true });
    return openMemory(o, path, saved, marker, 'kept');
  }
  const room = memoryDir === null ? undefined : roomIn(memoryDir, o.size);
  if (path === undefined || room !== undefined) {
    return openInDataDirectory(o, saved, marker, room ?? 'this machine has no /dev/shm');
  }
  // The whole size is taken now, as a board's DRAM is: a write can never find the memory full.
  const tmp = `${path}.${process.pid}`;
  let origin: MemoryOrigin;
  if (fs.existsSync(saved)) {
    origin = 'restored';
    await copy(saved, tmp, { holes: false, sync: false });
  } else {
    origin = fs.existsSync(marker) ? 'lost' : 'new';
    await fill(tmp, o.size);
  }
  await fs.promises.rename(tmp, path);
  // One live copy: once the memory holds it, the save goes (a stale save must never come back).
  await fs.promises.rm(saved, { force: true });
  return openMemory(o, path, saved, marker, origin);
}

async function openMemory(o: BatteryBackedMemoryOptions, path: string, saved: string, marker: string, origin: MemoryOrigin): Promise<BatteryBackedMemory> {
  await new JsonStateStore(o.dataDir).save(MARKER_DOC, { memory: path });
  const file = await openFileDevice(path, { size: o.size, create: true, logger: o.logger, punchHoles: false });
  return { device: batteryBacked(file, () => save(path, saved, marker)), origin, path };
}

/** No room in shared memory: the memory is the data directory's file, written and never flushed. */
async function openInDataDirectory(o: BatteryBackedMemoryOptions, saved: string, marker: string, why: string): Promise<BatteryBackedMemory> {
  const origin: MemoryOrigin = fs.existsSync(saved) ? 'kept' : fs.existsSync(marker) ? 'lost' : 'new';
  fs.rmSync(marker, { force: true });
  const file = await openFileDevice(saved, { size: o.size, create: true, logger: o.logger });
  return { device: batteryBacked(file, () => Promise.resolve()), origin, path: saved, note: `in the data directory: ${why}` };
}

/** Why `size` bytes do not fit in `dir` (with 64 MiB to spare for others), or undefined. */
function roomIn(dir: string, size: number): string | undefined {
  const st = fs.statfsSync(dir);
  const free = st.bavail * st.bsize;
  const spare = 64 << 20;
  return free >= size + spare ? undefined : `${dir} has ${mib(free)} MiB free, the memory needs ${mib(size)} MiB (+${mib(spare)})`;
}

/** Whole MiB of a byte count: arithmetic, not `>> 20`, which wraps above 2 GiB. */
function mib(bytes: number): number {
  return Math.floor(bytes / 2 ** 20);
}

/** Half-made copies a crash left in the middle of a save or a restore (named `<prefix><pid>`). */
function removeLeftovers(dir: string, prefix: string): void {
  for (const name of fs.readdirSync(dir)) if (name.startsWith(prefix)) fs.rmSync(join(dir, name), { force: true });
}

function defaultMemoryDir(): string | null {
  return process.platform === 'linux' && fs.existsSync('/dev/shm') ? '/dev/shm' : null;
}

/** Power-off: the memory goes to the data directory, durably, before its RAM is freed. */
async function save(path: string, saved: string, marker: string): Promise<void> {
  const tmp = `${saved}.saving-${process.pid}`;
  await copy(path, tmp, { holes: true, sync: true });
  await fs.promises.rename(tmp, saved);
  // The save's name is durable before the RAM goes: a machine crash in between restores it.
  fsyncDirectory(dirname(saved));
  await fs.promises.unlink(path);
  await fs.promises.unlink(marker);
}

const CHUNK = 1 << 20;
const ZEROES = Buffer.alloc(CHUNK);

/**
 * Copy `from` to a new file `to`. With `holes`, chunks that read as zeroes are left as holes: a
 * save costs what the relay wrote, not the memory's size.
 */
async function copy(from: string, to: string, o: { holes: boolean; sync: boolean }): Promise<void> {
  const src = await fs.promises.open(from, 'r');
  const dst = await fs.promises.open(to, 'w', 0o600);
  try {
    const size = (await src.stat()).size;
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let pos = 0; pos < size; pos += CHUNK) {
      const { bytesRead } = await src.read(buf, 0, Math.min(CHUNK, size - pos), pos);
      const chunk = buf.subarray(0, bytesRead);
      if (!o.holes || !chunk.equals(ZEROES.subarray(0, bytesRead))) await dst.write(chunk, 0, bytesRead, pos);
    }
    await dst.truncate(size);
    if (o.sync) await dst.datasync();
  } finally {
    await src.close();
    await dst.close();
  }
}

/** A new file of `size` zero bytes, every page of it allocated. */
async function fill(to: string, size: number): Promise<void> {
  const dst = await fs.promises.open(to, 'w', 0o600);
  try {
    for (let pos = 0; pos < size; pos += CHUNK) await dst.write(ZEROES, 0, Math.min(CHUNK, size - pos), pos);
  } finally {
    await dst.close();
  }
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
