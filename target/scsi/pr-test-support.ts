/**
 * Test support for reservations: PERSISTENT RESERVE IN/OUT CDB and parameter list builders, an
 * in-memory ReservationStore, and a device server with several nexuses that already consumed
 * their POWER ON unit attention.
 */
import { ScsiDeviceServer } from './device-server.js';
import type { PersistentReservationData } from './pr-state.js';
import type { ReservationStore } from './reservations.js';
import type { ScsiResult } from './task.js';
import { RamVolume } from './test-volume.js';
import { ScriptedIo, TARGET, be16, be32, exec, fakeClock, nexus } from './test-support.js';

export const TUR = [0x00, 0, 0, 0, 0, 0];
export const READ10 = [0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0];
export const WRITE10 = [0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0];

export function be64(v: bigint): number[] {
  return [...be32(Number(v >> 32n)), ...be32(Number(v & 0xffffffffn))];
}

export function prInCdb(sa: number, allocation = 0x2000): number[] {
  return [0x5e, sa, 0, 0, 0, 0, 0, ...be16(allocation), 0];
}

export interface OutOptions {
  key?: bigint;
  sark?: bigint;
  /** Byte 20: SPEC_I_PT 08h, ALL_TG_PT 04h, APTPL 01h. */
  flags?: number;
  scope?: number;
  type?: number;
  /** Override the parameter list (REGISTER AND MOVE, bad lengths). */
  list?: Uint8Array;
}

export function basicList(o: OutOptions): Uint8Array {
  const l = new Uint8Array(24);
  l.set(be64(o.key ?? 0n), 0);
  l.set(be64(o.sark ?? 0n), 8);
  l[20] = o.flags ?? 0;
  return l;
}

export class MemoryReservationStore implements ReservationStore {
  readonly saved = new Map<number, PersistentReservationData>();
  saves = 0;
  fail = false;

  async load(lun: number): Promise<unknown> {
    const d = this.saved.get(lun);
    return d && JSON.parse(JSON.stringify(d));
  }

  async save(lun: number, data: PersistentReservationData): Promise<void> {
    if (this.fail) throw new Error('disk full');
    this.saves++;
    this.saved.set(lun, JSON.parse(JSON.stringify(data)) as PersistentReservationData);
  }
}

export interface PrRig {
  server: ScsiDeviceServer;
  volume: RamVolume;
  /** Run a CDB through nexus n (1-based; nexus(n, port)); a WRITE(10) gets zeroes as its Data-Out. */
  run(n: number, cdb: number[], port?: number): Promise<ScsiResult>;
  out(n: number, sa: number, o?: OutOptions, port?: number): Promise<ScsiResult>;
  /** TEST UNIT READY until GOOD: the unit attentions of nexus n, oldest first, as ASC << 8 | ASCQ. */
  drain(n: number, port?: number): Promise<number[]>;
  inData(n: number, sa: number, allocation?: number): Promise<Uint8Array>;
}

/** A device server whose nexuses 1..4 (port 1) have consumed their POWER ON unit attention. */
export async function prRig(o: { store?: ReservationStore; targetPorts?: number[] } = {}): Promise<PrRig> {
  const volume = new RamVolume();
  const server = new ScsiDeviceServer({
    luns: new Map([[0, { volume, serial: 'PR0001' }]]), targetName: TARGET, clock: fakeClock,
    targetPorts: o.targetPorts, reservationStore: o.store,
  });
  await server.restore();
  const run = (n: number, cdb: number[], port = 1, io = new ScriptedIo()) => exec(server, cdb, { nexus: nexus(n, port), io, dataOut: io.data.length > 0 });
  for (let n = 1; n <= 4; n++) await run(n, TUR);
  const r: PrRig = {
    server,
    volume,
    run: (n, cdb, port) => run(n, cdb, port, new ScriptedIo(cdb[0] === 0x2a ? new Uint8Array(512 * cdb[8]!) : undefined)),
    out(n, sa, opts = {}, port) {
      const list = opts.list ?? basicList(opts);
      const cdb = [0x5f, sa, ((opts.scope ?? 0) << 4) | (opts.type ?? 0), 0, 0, ...be32(list.length), 0];
      return run(n, cdb, port, new ScriptedIo(list));
    },
    async drain(n, port) {
      const seen: number[] = [];
      for (let res = await run(n, TUR, port); res.status !== 0; res = await run(n, TUR, port)) {
        if (seen.length > 20 || !res.sense) throw new Error(`TEST UNIT READY status ${res.status}`);
        seen.push((res.sense[12]! << 8) | res.sense[13]!);
      }
      return seen;
    },
    async inData(n, sa, allocation) {
      const res = await run(n, prInCdb(sa, allocation));
      if (res.status !== 0) throw new Error(`PR IN status ${res.status}`);
      return res.data!;
    },
  };
  return r;
}
