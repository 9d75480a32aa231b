/**
 * Test support for the device server tests: tasks, a scripted TaskIo, a recording logger, CDB
 * builders and a fixed-format sense decoder.
 */
import type { Clock } from '../../hal/clock.js';
import type { Volume } from '../../firmware/volume.js';
import type { Logger } from '../../hal/types.js';
import { ScsiDeviceServer, type LogicalUnitConfig } from './device-server.js';
import type { Nexus, ScsiResult, ScsiTask, TaskIo } from './task.js';
import { TaskAbortedError, nexusId } from './task.js';
import { RamVolume, type RamVolumeOptions } from './test-volume.js';

export const TARGET = 'iqn.2024-01.dev.kura:test';

export function nexus(n = 1, relativeTargetPort = 1): Nexus {
  const initiatorName = `iqn.1994-05.com.example:host${n}`;
  const initiatorPort = `${initiatorName},i,0x00023d00000${n}`;
  return { id: nexusId(initiatorPort, relativeTargetPort), initiatorName, initiatorPort, relativeTargetPort };
}

export const fakeClock: Clock = {
  now: () => 0,
  wallTime: () => 0,
  setTimer: () => ({ cancel() {} }),
};

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  obj: object;
  msg?: string;
}

export function recordingLogger(lines: LogLine[] = []): Logger & { lines: LogLine[] } {
  const make = (): Logger & { lines: LogLine[] } => ({
    lines,
    debug: (obj, msg) => void lines.push({ level: 'debug', obj, msg }),
    info: (obj, msg) => void lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => void lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => void lines.push({ level: 'error', obj, msg }),
    child: () => make(),
  });
  return make();
}

export interface Rig {
  server: ScsiDeviceServer;
  volume: RamVolume;
  logger: ReturnType<typeof recordingLogger>;
}

export function rig(
  volume: RamVolumeOptions = {},
  lu: Partial<LogicalUnitConfig> = {},
  extraLuns: Array<[number, LogicalUnitConfig]> = [],
): Rig {
  const v = new RamVolume(volume);
  const logger = recordingLogger();
  const luns = new Map<number, LogicalUnitConfig>([[0, { volume: v, serial: 'KURA0001', ...lu }], ...extraLuns]);
  return { server: new ScsiDeviceServer({ luns, targetName: TARGET, clock: fakeClock, logger }), volume: v, logger };
}

export interface TaskOptions {
  lun?: number;
  nexus?: Nexus;
  expectedLength?: number;
  dataOut?: boolean;
  tag?: number;
}

let nextTag = 1;

export function task(cdb: ArrayLike<number>, o: TaskOptions = {}): ScsiTask {
  const bytes = Uint8Array.from(cdb);
  return {
    nexus: o.nexus ?? nexus(1),
    lun: o.lun ?? 0,
    cdb: bytes,
    attribute: 'simple',
    tag: o.tag ?? nextTag++,
    expectedLength: o.expectedLength ?? 0x10000000,
    dataIn: !(o.dataOut ?? false),
    dataOut: o.dataOut ?? false,
  };
}

/** A TaskIo that serves `data` as the Data-Out buffer and records every receiveData call. */
export class ScriptedIo implements TaskIo {
  aborted = false;
  readonly calls: number[] = [];
  private offset = 0;
  /** Runs inside receiveData, before the data is copied (e.g. to abort mid-transfer). */
  onReceive: (() => void) | undefined;
  /** Reject receiveData with TaskAbortedError (connection dropped / task aborted). */
  failReceive = false;

  constructor(readonly data: Uint8Array = new Uint8Array(0)) {}

  async receiveData(into: Uint8Array): Promise<void> {
    this.calls.push(into.length);
    this.onReceive?.();
    if (this.failReceive || this.aborted) throw new TaskAbortedError();
    if (this.offset + into.length > this.data.length) throw new Error('receiveData past the Data-Out buffer');
    into.set(this.data.subarray(this.offset, this.offset + into.length));
    this.offset += into.length;
  }
}

export async function exec(r: Rig | ScsiDeviceServer, cdb: ArrayLike<number>, o: TaskOptions & { io?: TaskIo } = {}): Promise<ScsiResult> {
  const server = 'server' in r ? r.server : r;
  return server.execute(task(cdb, o), o.io ?? new ScriptedIo());
}

/** A volume too big for RAM: geometry only, every IO fails. */
export function geometryOnlyVolume(blockCount: number, blockSize = 512): Volume {
  const no = (): Promise<never> => Promise.reject(new Error('geometry-only volume'));
  return { name: 'huge', blockSize, blockCount, writeCache: false, readOnly: false, maxTransferBlocks: 8, prepareWrite: no, read: no, flush: () => Promise.resolve() };
}

export function serverFor(volume: Volume): ScsiDeviceServer {
  return new ScsiDeviceServer({ luns: new Map([[0, { volume, serial: 'H' }]]), targetName: TARGET, clock: fakeClock });
}

/** A rig whose nexus 1 already consumed its POWER ON unit attention. */
export async function readyRig(volume: RamVolumeOptions = {}, lu: Partial<LogicalUnitConfig> = {}): Promise<Rig> {
  const r = rig(volume, lu);
  await exec(r, [0x00, 0, 0, 0, 0, 0]);
  return r;
}

export interface DecodedSense {
  valid: boolean;
  responseCode: number;
  key: number;
  asc: number;
  ascq: number;
  information: number;
  additionalLength: number;
  sksv: boolean;
  cd: boolean;
  bpv: boolean;
  bitPointer: number;
  fieldPointer: number;
}

export function decodeSense(s: Uint8Array | undefined): DecodedSense {
  if (!s) throw new Error('no sense data');
  return {
    valid: (s[0] & 0x80) !== 0,
    responseCode: s[0] & 0x7f,
    key: s[2] & 0x0f,
    asc: s[12],
    ascq: s[13],
    information: ((s[3] << 24) >>> 0) + (s[4] << 16) + (s[5] << 8) + s[6],
    additionalLength: s[7],
    sksv: (s[15] & 0x80) !== 0,
    cd: (s[15] & 0x40) !== 0,
    bpv: (s[15] & 0x08) !== 0,
    bitPointer: s[15] & 0x07,
    fieldPointer: (s[16] << 8) | s[17],
  };
}

// CDB builders.
export function rw10(op: number, lba: number, blocks: number, flags = 0): number[] {
  return [op, flags, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];
}

export function rw12(op: number, lba: number, blocks: number, flags = 0): number[] {
  return [op, flags, ...be32(lba), ...be32(blocks), 0, 0];
}

export function rw16(op: number, lba: bigint | number, blocks: number, flags = 0): number[] {
  const l = BigInt(lba);
  return [op, flags, ...be32(Number(l >> 32n)), ...be32(Number(l & 0xffffffffn)), ...be32(blocks), 0, 0];
}

export function rw6(op: number, lba: number, blocks: number): number[] {
  return [op, (lba >> 16) & 0x1f, (lba >> 8) & 0xff, lba & 0xff, blocks & 0xff, 0];
}

export function be32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

export function be16(v: number): number[] {
  return [(v >> 8) & 0xff, v & 0xff];
}

export function pattern(bytes: number, seed = 1): Uint8Array {
  const b = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}
