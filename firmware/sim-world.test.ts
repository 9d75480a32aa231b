/**
 * Test support (no tests here): a controller with one volume on simulated media, in virtual time.
 * Named *.test.ts so that, like the tests, it may use the simulated HAL.
 */
import { SimDevice, type Latency } from '../hal/sim/sim-device.js';
import { Simulator } from '../hal/sim/simulator.js';
import { createController, type Controller, type ControllerVolume } from './controller.js';
import type { LayoutKind } from './layout.js';
import type { SchedulerPolicy } from './io-scheduler.js';

export interface WorldOptions {
  seed?: number;
  media?: number;
  /** Bytes per medium. Default 1 MiB. */
  mediumBytes?: number;
  layout?: LayoutKind;
  scheduler?: SchedulerPolicy;
  depth?: number;
  /** Per-medium latency (default 1 ms). */
  latency?: Latency;
  /** Latency for medium i; wins over `latency`. */
  latencyOf?: (medium: number) => Latency;
  serial?: boolean;
  volatileCache?: boolean;
  blockSize?: number;
  blockCount?: number;
  bufferBytes?: number;
  stripeBlocks?: number;
  maxTransferBlocks?: number;
  sstfAgeLimit?: number;
}

export interface World {
  sim: Simulator;
  devices: SimDevice[];
  controller: Controller;
  vol: ControllerVolume;
  /** Run a promise to completion in virtual time. */
  run<T>(p: Promise<T>): Promise<T>;
}

export function world(o: WorldOptions = {}): World {
  const sim = new Simulator({ seed: o.seed ?? 1 });
  const n = o.media ?? (o.layout === 'mirror' || o.layout === 'stripe' ? 2 : 1);
  const mediumBytes = o.mediumBytes ?? 1 << 20;
  const devices = Array.from({ length: n }, (_, i) => new SimDevice({
    clock: sim.clock,
    size: mediumBytes,
    name: `m${i}`,
    latency: o.latencyOf ? o.latencyOf(i) : o.latency ?? 1,
    serial: o.serial,
    volatileCache: o.volatileCache,
  }));
  const blockSize = o.blockSize ?? 512;
  const layout = o.layout ?? 'single';
  const controller = createController({ clock: sim.clock, bufferBytes: o.bufferBytes ?? 8 << 20, unitId: 7 });
  const capacity = layout === 'stripe' ? Math.floor(mediumBytes / blockSize) * n : Math.floor(mediumBytes / blockSize);
  const vol = controller.addVolume({
    name: 'vol',
    blockSize,
    blockCount: o.blockCount ?? capacity,
    media: devices,
    layout,
    stripeBlocks: o.stripeBlocks,
    scheduler: o.scheduler ?? 'fifo',
    mediumQueueDepth: o.depth,
    maxTransferBlocks: o.maxTransferBlocks,
    sstfAgeLimit: o.sstfAgeLimit,
  });
  return { sim, devices, controller, vol, run: (p) => sim.run(p) };
}

/** Deterministic contents for `blocks` blocks tagged `tag`. */
export function pattern(tag: number, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (tag * 31 + i * 7 + (i >> 9)) & 0xff;
  return b;
}

/** prepareWrite + fill + commit. */
export async function writeBlocks(vol: ControllerVolume, lba: number, data: Uint8Array, fua = false): Promise<void> {
  const r = await vol.prepareWrite(lba, data.length / vol.blockSize);
  r.area.set(data);
  await r.commit({ fua });
}

/** read + copy out + release. */
export async function readBlocks(vol: ControllerVolume, lba: number, blocks: number): Promise<Buffer> {
  const r = await vol.read(lba, blocks);
  const out = Buffer.from(r.data);
  r.release();
  return out;
}

/** A settled promise's outcome, as a value (for asserting rejections). */
export function outcome<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
}
