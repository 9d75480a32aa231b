/**
 * A minimal RAM-disk DeviceServer for the iSCSI transport's tests (the real one lives in
 * target/scsi/). It knows just enough SCSI for libiscsi's tools and the transport's unit tests:
 * INQUIRY, TEST UNIT READY, READ CAPACITY (10/16), READ/WRITE (10/16), REPORT LUNS, MODE SENSE,
 * SYNCHRONIZE CACHE. A hook lets a test take over execute() (hang a task, return odd results).
 */
import type { DeviceServer, Nexus, ScsiResult, ScsiTask, TaskIo } from '../target/scsi/task.js';
import { Status } from '../target/scsi/task.js';

export function sense(key: number, asc: number, ascq: number): Buffer {
  const s = Buffer.alloc(18);
  s[0] = 0x70;
  s[2] = key;
  s[7] = 10;
  s[12] = asc;
  s[13] = ascq;
  return s;
}

const check = (key: number, asc: number, ascq: number): ScsiResult => ({ status: Status.CHECK_CONDITION, sense: sense(key, asc, ascq) });
const ILLEGAL_REQUEST = 0x05;

export type ExecuteHook = (task: ScsiTask, io: TaskIo) => Promise<ScsiResult> | undefined;

export class RamDiskDeviceServer implements DeviceServer {
  readonly blockSize = 512;
  readonly disk: Buffer;
  /** What the transport told us: 'lunReset:0', 'targetReset', 'nexusLost:<id>', 'taskAborted:<itt>'. */
  readonly events: string[] = [];
  hook: ExecuteHook | undefined;
  executed = 0;

  constructor(readonly blocks = 2048, readonly luns: number[] = [0]) {
    this.disk = Buffer.alloc(blocks * this.blockSize);
  }

  hasLun(lun: number): boolean {
    return this.luns.includes(lun);
  }

  async execute(task: ScsiTask, io: TaskIo): Promise<ScsiResult> {
    this.executed++;
    const hooked = this.hook?.(task, io);
    if (hooked) return hooked;
    const cdb = Buffer.from(task.cdb);
    const op = cdb[0];
    if (op === 0x12) return this.inquiry(cdb, task.lun);
    if (op === 0xa0) return this.reportLuns(cdb);
    if (!this.luns.includes(task.lun)) return check(ILLEGAL_REQUEST, 0x25, 0x00);
    switch (op) {
      case 0x00: // TEST UNIT READY
      case 0x35: // SYNCHRONIZE CACHE (10)
        return { status: Status.GOOD };
      case 0x25: { // READ CAPACITY (10)
        const d = Buffer.alloc(8);
        d.writeUInt32BE(this.blocks - 1, 0);
        d.writeUInt32BE(this.blockSize, 4);
        return { status: Status.GOOD, data: d };
      }
      case 0x9e: { // SERVICE ACTION IN (16): READ CAPACITY (16)
        if ((cdb[1] & 0x1f) !== 0x10) return check(ILLEGAL_REQUEST, 0x24, 0x00);
        const d = Buffer.alloc(32);
        d.writeBigUInt64BE(BigInt(this.blocks - 1), 0);
        d.writeUInt32BE(this.blockSize, 8);
        return { status: Status.GOOD, data: d.subarray(0, Math.min(32, cdb.readUInt32BE(10))) };
      }
      case 0x1a: // MODE SENSE (6): header only
        return { status: Status.GOOD, data: Buffer.from([3, 0, 0, 0]).subarray(0, cdb[4]) };
      case 0x5a: { // MODE SENSE (10)
        const d = Buffer.alloc(8);
        d.writeUInt16BE(6, 0);
        return { status: Status.GOOD, data: d.subarray(0, cdb.readUInt16BE(7)) };
      }
      case 0x28: return this.read(cdb.readUInt32BE(2), cdb.readUInt16BE(7));
      case 0x88: return this.read(Number(cdb.readBigUInt64BE(2)), cdb.readUInt32BE(10));
      case 0x2a: return this.write(task, io, cdb.readUInt32BE(2), cdb.readUInt16BE(7));
      case 0x8a: return this.write(task, io, Number(cdb.readBigUInt64BE(2)), cdb.readUInt32BE(10));
      default:
        return check(ILLEGAL_REQUEST, 0x20, 0x00);
    }
  }

  lunReset(lun: number, _from: Nexus): void {
    this.events.push(`lunReset:${lun}`);
  }

  targetReset(_from: Nexus): void {
    this.events.push('targetReset');
  }

  nexusLost(nexus: Nexus): void {
    this.events.push(`nexusLost:${nexus.id}`);
  }

  taskAborted(task: ScsiTask): void {
    this.events.push(`taskAborted:${task.tag}`);
  }

  private inquiry(cdb: Buffer, lun: number): ScsiResult {
    const alloc = cdb.readUInt16BE(3);
    const present = this.luns.includes(lun);
    let d: Buffer;
    if (cdb[1] & 1) {
      if (!present) return check(ILLEGAL_REQUEST, 0x25, 0x00);
      const page = cdb[2];
      if (page === 0x00) d = Buffer.from([0, 0x00, 0, 3, 0x00, 0x80, 0x83]);
      else if (page === 0x80) d = Buffer.concat([Buffer.from([0, 0x80, 0, 8]), Buffer.from('KURA0001')]);
      else if (page === 0x83) {
        const id = Buffer.from('KURA    ramdisk0');
        d = Buffer.concat([Buffer.from([0, 0x83, 0, id.length + 4, 0x02, 0x01, 0, id.length]), id]);
      } else return check(ILLEGAL_REQUEST, 0x24, 0x00);
    } else {
      d = Buffer.alloc(36, 0x20);
      d[0] = present ? 0x00 : 0x7f; // direct access block device, or "no LU here"
      d[1] = 0;
      d[2] = 0x06; // SPC-4
      d[3] = 0x02;
      d[4] = 31;
      d[5] = 0;
      d[6] = 0;
      d[7] = 0x02; // CmdQue
      d.write('KURA    ', 8);
      d.write('RAMDISK         ', 16);
      d.write('0001', 32);
    }
    return { status: Status.GOOD, data: d.subarray(0, alloc) };
  }

  private reportLuns(cdb: Buffer): ScsiResult {
    const d = Buffer.alloc(8 + 8 * this.luns.length);
    d.writeUInt32BE(8 * this.luns.length, 0);
    this.luns.forEach((l, i) => d.writeUInt16BE(l < 256 ? l : 0x4000 | l, 8 + 8 * i));
    return { status: Status.GOOD, data: d.subarray(0, cdb.readUInt32BE(6)) };
  }

  private read(lba: number, blocks: number): ScsiResult {
    if (lba + blocks > this.blocks) return check(ILLEGAL_REQUEST, 0x21, 0x00);
    const start = lba * this.blockSize;
    return { status: Status.GOOD, data: Buffer.from(this.disk.subarray(start, start + blocks * this.blockSize)) };
  }

  /** Writes no more than the EDTL brings (what libiscsi's residual tests expect) and says how much the CDB wanted. */
  private async write(task: ScsiTask, io: TaskIo, lba: number, blocks: number): Promise<ScsiResult> {
    if (lba + blocks > this.blocks) return check(ILLEGAL_REQUEST, 0x21, 0x00);
    const length = blocks * this.blockSize;
    const buf = Buffer.alloc(Math.min(length, task.expectedLength));
    if (buf.length > 0) await io.receiveData(buf);
    buf.copy(this.disk, lba * this.blockSize);
    return { status: Status.GOOD, spdtl: length };
  }
}
