import { expect } from 'chai';
import { Status } from './task.js';
import { ScriptedIo, be32, decodeSense, exec, pattern, readyRig, rw10, type Rig } from './test-support.js';

const BS = 512;

function caw(lba: number, blocks: number, flags = 0): number[] {
  return [0x89, flags, 0, 0, 0, 0, ...be32(lba), 0, 0, 0, blocks, 0, 0];
}

async function run(r: Rig, cdb: number[], data: Uint8Array, expectedLength = data.length) {
  const io = new ScriptedIo(data);
  return { res: await exec(r, cdb, { io, dataOut: true, expectedLength }), io };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

describe('scsi/compare-and-write: COMPARE AND WRITE (SBC-4 5.3)', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await readyRig({ blockSize: BS, blockCount: 100, maxTransferBlocks: 16 });
  });

  it('writes the second half when the first matches the medium', async () => {
    const old = pattern(3 * BS, 1);
    r.volume.data.set(old, 10 * BS);
    const next = pattern(3 * BS, 2);
    const { res, io } = await run(r, caw(10, 3, 0x08), concat(old, next));
    expect(res.status).to.equal(Status.GOOD);
    expect(io.calls).to.deep.equal([3 * BS, 3 * BS]);
    expect(r.volume.data.subarray(10 * BS, 13 * BS)).to.deep.equal(next);
    expect(r.volume.events.find((e) => e.op === 'commit')).to.deep.equal({ op: 'commit', lba: 10, blocks: 3, fua: true });
    expect(r.volume.outstanding).to.equal(0);
    expect(r.server.logicalUnit(0)!.locks.holders).to.equal(0);
  });

  it('leaves the medium alone on a miscompare: MISCOMPARE, offset of the first differing byte', async () => {
    const old = pattern(2 * BS, 1);
    r.volume.data.set(old, 0);
    const expected = Uint8Array.from(old);
    expected[BS + 37] ^= 0xff;
    const { res } = await run(r, caw(0, 2), concat(expected, pattern(2 * BS, 3)));
    const s = decodeSense(res.sense);
    expect([res.status, s.key, s.asc, s.ascq, s.valid, s.information]).to.deep.equal([Status.CHECK_CONDITION, 0x0e, 0x1d, 0, true, BS + 37]);
    expect(r.volume.data.subarray(0, 2 * BS)).to.deep.equal(old);
    expect(r.volume.events.some((e) => e.op === 'prepare')).to.equal(false);
    expect(r.server.logicalUnit(0)!.locks.holders).to.equal(0);
  });

  it('is atomic against a WRITE to the same blocks: the write waits for the range lock', async () => {
    const old = pattern(BS, 1);
    r.volume.data.set(old, 5 * BS);
    let release!: () => void;
    r.volume.prepareGate = new Promise((res) => { release = res; });
    const cawDone = run(r, caw(5, 1), concat(old, pattern(BS, 2)));
    await new Promise((res) => setImmediate(res));
    const writeDone = run(r, rw10(0x2a, 5, 1), pattern(BS, 3));
    await new Promise((res) => setImmediate(res));
    // The CAW holds the lock (waiting for a buffer area); the WRITE has not even asked for one.
    expect(r.volume.events.filter((e) => e.op === 'read')).to.have.length(1);
    r.volume.prepareGate = undefined;
    release();
    expect((await cawDone).res.status).to.equal(Status.GOOD);
    expect((await writeDone).res.status).to.equal(Status.GOOD);
    expect(r.volume.events.filter((e) => e.op === 'commit').map((e) => 'lba' in e && e.lba)).to.deep.equal([5, 5]);
    expect(r.volume.data.subarray(5 * BS, 6 * BS)).to.deep.equal(pattern(BS, 3));
  });

  it('checks the length against MAXIMUM COMPARE AND WRITE LENGTH, the range, and the EDTL', async () => {
    let s = decodeSense((await run(r, caw(0, 17), new Uint8Array(34 * BS))).res.sense);
    expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 13]);
    s = decodeSense((await run(r, caw(99, 2), new Uint8Array(4 * BS))).res.sense);
    expect([s.key, s.asc]).to.deep.equal([5, 0x21]);
    const short = await run(r, caw(0, 2), new Uint8Array(4 * BS), 3 * BS);
    s = decodeSense(short.res.sense);
    expect([s.key, s.asc, s.ascq, short.res.spdtl, short.io.calls.length]).to.deep.equal([5, 0x0e, 0x03, 4 * BS, 0]);
    expect((await run(r, caw(99, 0), new Uint8Array(0))).res.status).to.equal(Status.GOOD);
    // 256 blocks do not fit the one-byte field: zero blocks with 256 blocks' worth of Data-Out.
    s = decodeSense((await run(r, caw(0, 0), new Uint8Array(512 * BS))).res.sense);
    expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 13]);
  });

  it('is refused on a write-protected LU and with WRPROTECT', async () => {
    const ro = await readyRig({ readOnly: true });
    let s = decodeSense((await run(ro, caw(0, 1), new Uint8Array(2 * BS))).res.sense);
    expect([s.key, s.asc]).to.deep.equal([7, 0x27]);
    s = decodeSense((await run(r, caw(0, 1, 0x20), new Uint8Array(2 * BS))).res.sense);
    expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 1, 7]);
  });
});
