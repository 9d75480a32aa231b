import { expect } from 'chai';
import { ScsiDeviceServer } from './device-server.js';
import { LuRegistry } from './lu-registry.js';
import { Status } from './task.js';
import { ScriptedIo, TARGET, be16, be32, decodeSense, exec, fakeClock, pattern, type Rig } from './test-support.js';
import { RamVolume } from './test-volume.js';

const BS = 512;
const NAA_A = (6n << 124n) | 0xaaaan;
const NAA_B = (6n << 124n) | 0xbbbbn;

function target(naa: bigint, blockSize = BS, type = 0xe4, designatorType = 3): number[] {
  const d = new Array<number>(32).fill(0);
  d[0] = type;
  d[4] = 0x01; // binary
  d[5] = designatorType;
  d[7] = 16;
  for (let i = 0; i < 16; i++) d[8 + i] = Number((naa >> BigInt(8 * (15 - i))) & 0xffn);
  d[29] = (blockSize >> 16) & 0xff;
  d[30] = (blockSize >> 8) & 0xff;
  d[31] = blockSize & 0xff;
  return d;
}

function segment(src: number, dst: number, blocks: number, srcLba: number, dstLba: number, type = 0x02): number[] {
  return [type, 0, 0, 0x18, ...be16(src), ...be16(dst), 0, 0, ...be16(blocks), 0, 0, 0, 0, ...be32(srcLba), 0, 0, 0, 0, ...be32(dstLba)];
}

function list(targets: number[][], segments: number[][], listId = 1, usage = 0): Uint8Array {
  const t = targets.flat();
  const s = segments.flat();
  return Uint8Array.of(listId, usage << 3, ...be16(t.length), 0, 0, 0, 0, ...be32(s.length), 0, 0, 0, 0, ...t, ...s);
}

async function xcopy(r: Rig, params: Uint8Array, length = params.length) {
  return exec(r, [0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...be32(length), 0, 0], { io: new ScriptedIo(params), dataOut: true, expectedLength: params.length });
}

function copyStatus(listId: number): number[] {
  return [0x84, 0x00, listId, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0];
}

describe('scsi/extended-copy: EXTENDED COPY (LID1) and RECEIVE COPY RESULTS', () => {
  let r: Rig;
  let a: RamVolume;
  let b: RamVolume;
  beforeEach(async () => {
    a = new RamVolume({ blockCount: 100, maxTransferBlocks: 8 });
    b = new RamVolume({ blockCount: 50, maxTransferBlocks: 4 });
    const server = new ScsiDeviceServer({
      luns: new Map([[0, { volume: a, serial: 'A', naa: NAA_A }], [1, { volume: b, serial: 'B', naa: NAA_B }]]),
      targetName: TARGET, clock: fakeClock,
    });
    r = { server, volume: a, logger: undefined as never };
    await exec(r, [0, 0, 0, 0, 0, 0]);
  });

  it('copies block-to-block segments within an LU and to another LU, chunked by both volumes', async () => {
    a.data.set(pattern(20 * BS, 1), 0);
    const res = await xcopy(r, list([target(NAA_A), target(NAA_B)], [segment(0, 1, 10, 0, 40), segment(0, 0, 20, 0, 60)]));
    expect(res.status).to.equal(Status.GOOD);
    expect(b.data.subarray(40 * BS, 50 * BS)).to.deep.equal(a.data.subarray(0, 10 * BS));
    expect(a.data.subarray(60 * BS, 80 * BS)).to.deep.equal(pattern(20 * BS, 1));
    expect(b.events.filter((e) => e.op === 'commit').map((e) => 'blocks' in e && e.blocks)).to.deep.equal([4, 4, 2]);
    const st = await exec(r, copyStatus(1));
    expect([...st.data!]).to.deep.equal([0, 0, 0, 8, 0x01, 0, 2, 0, ...be32(30 * BS)]);
  });

  it('copies an overlapping range further on back to front, like memmove', async () => {
    a.data.set(pattern(20 * BS, 2), 0);
    expect((await xcopy(r, list([target(NAA_A)], [segment(0, 0, 20, 0, 5)]))).status).to.equal(Status.GOOD);
    expect(a.data.subarray(5 * BS, 25 * BS)).to.deep.equal(pattern(20 * BS, 2));
  });

  it('finds LUs of other targets through the node registry', async () => {
    const registry = new LuRegistry();
    const other = new RamVolume({ blockCount: 10 });
    const t1 = new ScsiDeviceServer({ luns: new Map([[0, { volume: a, serial: 'A', naa: NAA_A }]]), targetName: TARGET, clock: fakeClock, copyTargets: registry });
    new ScsiDeviceServer({ luns: new Map([[0, { volume: other, serial: 'O', naa: NAA_B }]]), targetName: `${TARGET}2`, clock: fakeClock, copyTargets: registry });
    a.data.set(pattern(BS, 3), 0);
    await exec(t1, [0, 0, 0, 0, 0, 0]);
    expect((await xcopy({ server: t1, volume: a, logger: undefined as never }, list([target(NAA_A), target(NAA_B)], [segment(0, 1, 1, 0, 9)]))).status).to.equal(Status.GOOD);
    expect(other.data.subarray(9 * BS)).to.deep.equal(pattern(BS, 3));
  });

  it('checks the parameter list before copying anything', async () => {
    const cases: Array<[Uint8Array, number, number, number?]> = [
      [list(Array.from({ length: 9 }, () => target(NAA_A)), [segment(0, 0, 1, 0, 1)]), 0x26, 0x06],
      [list([target(NAA_A)], Array.from({ length: 65 }, () => segment(0, 0, 1, 0, 1))), 0x26, 0x08],
      [list(Array.from({ length: 9 }, () => target(NAA_A)), Array.from({ length: 70 }, () => segment(0, 0, 1, 0, 1))), 0x1a, 0x00],
      [list([target(NAA_A, BS, 0xe0)], [segment(0, 0, 1, 0, 1)]), 0x26, 0x07],
      [list([target(NAA_A)], [[0x03, 0, 0, 0x10, ...new Array<number>(16).fill(0)]]), 0x26, 0x09],
      [list([target(NAA_A, 4096)], [segment(0, 0, 1, 0, 1)]), 0x26, 0x00, 16 + 29],
      [list([target(NAA_A)], [segment(0, 0, 1, 0, 1)], 1, 1), 0x26, 0x00, 1],
    ];
    for (const [params, asc, ascq, field] of cases) {
      const s = decodeSense((await xcopy(r, params)).sense);
      expect([s.key, s.asc, s.ascq], `${asc}/${ascq}`).to.deep.equal([5, asc, ascq]);
      if (field !== undefined) expect([s.cd, s.fieldPointer]).to.deep.equal([false, field]);
    }
    const whole = list([target(NAA_A)], [segment(0, 0, 1, 0, 1)]);
    for (const length of [15, 16 + 31, whole.length - 1]) {
      const s = decodeSense((await xcopy(r, whole.subarray(0, length), length)).sense);
      expect([s.key, s.asc]).to.deep.equal([5, 0x1a]);
    }
    expect((await xcopy(r, new Uint8Array(0), 0)).status).to.equal(Status.GOOD);
    expect(a.events.filter((e) => e.op !== 'release' && e.op !== 'read')).to.deep.equal([]);
  });

  it('aborts a segment it cannot do with COPY ABORTED and the segment number', async () => {
    const cases: Array<[Uint8Array, number]> = [
      [list([target(NAA_A)], [segment(0, 0, 1, 0, 1), segment(0, 1, 1, 0, 1)]), 0x0804],
      [list([target(NAA_A), target((6n << 124n) | 1n)], [segment(0, 0, 1, 0, 1), segment(0, 1, 1, 0, 1)]), 0x0804],
      [list([target(NAA_A)], [segment(0, 0, 1, 0, 1), segment(0, 0, 2, 0, 99)]), 0x0000],
      [list([target(NAA_A), target(NAA_A, BS, 0xe4, 1)], [segment(0, 0, 1, 0, 1), segment(0, 1, 1, 0, 1)]), 0x0804],
    ];
    for (const [params, asc] of cases) {
      const s = decodeSense((await xcopy(r, params)).sense);
      expect([s.key, (s.asc << 8) | s.ascq]).to.deep.equal([0x0a, asc]);
      const raw = (await xcopy(r, params)).sense!;
      expect(((raw[8] << 24) | (raw[9] << 16) | (raw[10] << 8) | raw[11]) >>> 0).to.equal(1);
    }
    const st = await exec(r, copyStatus(1));
    expect([st.data![4], st.data![6]]).to.deep.equal([0x02, 1]);
  });

  it('COPY STATUS: unknown list ids are refused; discarded lists leave nothing; status is per nexus', async () => {
    let s = decodeSense((await exec(r, copyStatus(7))).sense);
    expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 2]);
    expect((await xcopy(r, list([target(NAA_A)], [segment(0, 0, 1, 0, 1)], 7, 2))).status).to.equal(Status.GOOD);
    s = decodeSense((await exec(r, copyStatus(7))).sense);
    expect(s.asc).to.equal(0x24);
    expect((await xcopy(r, list([target(NAA_A)], [segment(0, 0, 1, 0, 1)], 8, 0))).status).to.equal(Status.GOOD);
    const { nexus } = await import('./test-support.js');
    await exec(r, [0, 0, 0, 0, 0, 0], { nexus: nexus(2) });
    s = decodeSense((await exec(r, copyStatus(8), { nexus: nexus(2) })).sense);
    expect(s.asc).to.equal(0x24);
    expect((await exec(r, copyStatus(8))).status).to.equal(Status.GOOD);
  });

  it('OPERATING PARAMETERS reports the limits the parameter checks enforce', async () => {
    const d = (await exec(r, [0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0])).data!;
    expect(d.length).to.equal(46);
    expect([...d.subarray(0, 20)]).to.deep.equal([0, 0, 0, 42, 1, 0, 0, 0, 0, 8, 0, 64, 0, 0, 8, 0, ...be32(0xffff * BS)]);
    expect([...d.subarray(36, 46)]).to.deep.equal([0xff, 9, 9, 9, 0, 0, 0, 2, 0x02, 0xe4]);
  });

  it('says so in standard INQUIRY (3PC)', async () => {
    expect((await exec(r, [0x12, 0, 0, 0, 96, 0])).data![5] & 0x08).to.equal(0x08);
  });
});
