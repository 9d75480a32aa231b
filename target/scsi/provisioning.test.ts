import { expect } from 'chai';
import { Status } from './task.js';
import {
  ScriptedIo, be16, be32, decodeSense, exec, pattern, readyRig, rw10, type Rig,
} from './test-support.js';

const BS = 512;

function unmapList(ranges: Array<[number, number]>, descriptorLength = ranges.length * 16): Uint8Array {
  const d = new Uint8Array(8 + ranges.length * 16);
  d.set(be16(d.length - 2), 0);
  d.set(be16(descriptorLength), 2);
  ranges.forEach(([lba, n], i) => {
    d.set([0, 0, 0, 0, ...be32(lba), ...be32(n)], 8 + 16 * i);
  });
  return d;
}

async function unmap(r: Rig, list: Uint8Array, length = list.length) {
  return exec(r, [0x42, 0, 0, 0, 0, 0, 0, ...be16(length), 0], { io: new ScriptedIo(list), dataOut: true, expectedLength: list.length });
}

function ws10(lba: number, blocks: number, flags = 0): number[] {
  return [0x41, flags, ...be32(lba), 0, ...be16(blocks), 0];
}

function ws16(lba: number, blocks: number, flags = 0): number[] {
  return [0x93, flags, 0, 0, 0, 0, ...be32(lba), ...be32(blocks), 0, 0];
}

async function writeSame(r: Rig, cdb: number[], block: Uint8Array | null) {
  const io = new ScriptedIo(block ?? new Uint8Array(0));
  return { res: await exec(r, cdb, { io, dataOut: block !== null, expectedLength: block?.length ?? 0 }), io };
}

function getLbaStatus(lba: number, alloc: number): number[] {
  return [0x9e, 0x12, 0, 0, 0, 0, ...be32(lba), ...be32(alloc), 0, 0];
}

function descriptors(d: Uint8Array): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  const length = ((d[0] << 24) >>> 0) + (d[1] << 16) + (d[2] << 8) + d[3];
  for (let at = 8; at < Math.min(d.length, 4 + length); at += 16) {
    out.push([((d[at + 4] << 24) >>> 0) + (d[at + 5] << 16) + (d[at + 6] << 8) + d[at + 7], ((d[at + 8] << 24) >>> 0) + (d[at + 9] << 16) + (d[at + 10] << 8) + d[at + 11], d[at + 12]]);
  }
  return out;
}

function sense(res: { status: number; sense?: Uint8Array }) {
  expect(res.status).to.equal(Status.CHECK_CONDITION);
  return decodeSense(res.sense);
}

describe('scsi/provisioning: thin LUs, UNMAP, WRITE SAME, GET LBA STATUS', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await readyRig({ blockSize: BS, blockCount: 1000, maxTransferBlocks: 64 }, { thin: true });
  });

  it('a thin LU reports LBPME and LBPRZ, the provisioning page and unmap limits; a full one none of it', async () => {
    const rc = await exec(r, [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
    expect(rc.data![14]).to.equal(0xc0);
    const b2 = await exec(r, [0x12, 1, 0xb2, 0, 255, 0]);
    expect([...b2.data!]).to.deep.equal([0, 0xb2, 0, 4, 0, 0xe4, 0x02, 0]);
    const pages = await exec(r, [0x12, 1, 0x00, 0, 255, 0]);
    expect([...pages.data!.subarray(4)]).to.deep.equal([0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
    const b0 = (await exec(r, [0x12, 1, 0xb0, 0, 255, 0])).data!;
    expect(b0[5]).to.equal(64); // MAXIMUM COMPARE AND WRITE LENGTH: one buffer area
    expect(b0.subarray(20, 32)).to.deep.equal(Uint8Array.of(0, 0x10, 0, 0, 0, 0, 0, 255, 0, 0, 0, 8));
    expect(b0.subarray(36, 48)).to.deep.equal(Uint8Array.of(0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 64));
    expect((await exec(r, [0x12, 1, 0xb1, 0, 255, 0])).data![7]).to.equal(0x40); // WABEREQ 01b

    const full = await readyRig({ blockSize: BS, blockCount: 1000 });
    expect((await exec(full, [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0])).data![14]).to.equal(0);
    const s = sense(await exec(full, [0x12, 1, 0xb2, 0, 255, 0]));
    expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 2]);
    const fb0 = (await exec(full, [0x12, 1, 0xb0, 0, 255, 0])).data!;
    expect(fb0.subarray(20, 32).every((b) => b === 0)).to.equal(true);
    const op = sense(await unmap(full, unmapList([[0, 1]])));
    expect([op.key, op.asc, op.ascq]).to.deep.equal([5, 0x20, 0]);
  });

  it('refuses thin provisioning on a volume whose discard does not deallocate', async () => {
    const { ScsiDeviceServer } = await import('./device-server.js');
    const { RamVolume } = await import('./test-volume.js');
    const v = new RamVolume();
    Object.defineProperty(v, 'canDiscard', { value: false });
    expect(() => new ScsiDeviceServer({ luns: new Map([[0, { volume: v, serial: 'X', thin: true }]]), targetName: 'iqn.2024-01.x:y', clock: { now: () => 0, wallTime: () => 0, setTimer: () => ({ cancel() {} }) } }))
      .to.throw(/thin provisioning needs/);
  });

  describe('UNMAP', () => {
    it('deallocates every descriptor\'s range: zeroes read back, GET LBA STATUS says deallocated', async () => {
      r.volume.data.fill(0x61);
      r.volume.mapped.fill(1);
      const res = await unmap(r, unmapList([[10, 5], [100, 1], [20, 0]]));
      expect(res.status).to.equal(Status.GOOD);
      expect(r.volume.events.filter((e) => e.op === 'discard')).to.deep.equal([
        { op: 'discard', lba: 10, blocks: 5 }, { op: 'discard', lba: 100, blocks: 1 },
      ]);
      expect(r.volume.data.subarray(10 * BS, 15 * BS).every((b) => b === 0)).to.equal(true);
      expect(r.volume.data[15 * BS]).to.equal(0x61);
      const st = await exec(r, getLbaStatus(8, 1024));
      expect(descriptors(st.data!).slice(0, 4)).to.deep.equal([[8, 2, 0], [10, 5, 1], [15, 85, 0], [100, 1, 1]]);
    });

    it('a zero-length parameter list, or no descriptors, or zero blocks at the capacity is a no-op', async () => {
      expect((await exec(r, [0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0])).status).to.equal(Status.GOOD);
      expect((await unmap(r, unmapList([]))).status).to.equal(Status.GOOD);
      expect((await unmap(r, unmapList([[1000, 0]]))).status).to.equal(Status.GOOD);
      expect(r.volume.events.filter((e) => e.op === 'discard')).to.deep.equal([]);
    });

    it('validates the whole list before deallocating anything', async () => {
      let s = sense(await exec(r, [0x42, 0, 0, 0, 0, 0, 0, 0, 7, 0], { io: new ScriptedIo(new Uint8Array(7)), dataOut: true, expectedLength: 7 }));
      expect([s.key, s.asc, s.ascq]).to.deep.equal([5, 0x1a, 0]);
      s = sense(await unmap(r, unmapList([[0, 8], [999, 2]])));
      expect([s.key, s.asc, s.ascq]).to.deep.equal([5, 0x21, 0]);
      s = sense(await unmap(r, unmapList([[0, 1 << 20], [0, 1]])));
      expect([s.key, s.asc, s.cd, s.fieldPointer]).to.deep.equal([5, 0x26, false, 24 + 8]);
      s = sense(await unmap(r, unmapList(Array.from({ length: 256 }, (_, i): [number, number] => [i, 1]))));
      expect([s.key, s.asc, s.cd, s.fieldPointer]).to.deep.equal([5, 0x26, false, 2]);
      expect(r.volume.events.filter((e) => e.op === 'discard')).to.deep.equal([]);
    });

    it('ignores a truncated last descriptor and a descriptor length past the list', async () => {
      const list = unmapList([[5, 1], [6, 1]], 16 + 15);
      expect((await unmap(r, list)).status).to.equal(Status.GOOD);
      expect(r.volume.events.filter((e) => e.op === 'discard')).to.deep.equal([{ op: 'discard', lba: 5, blocks: 1 }]);
      expect((await unmap(r, unmapList([[7, 1]], 64))).status).to.equal(Status.GOOD);
    });

    it('is refused with ANCHOR, and on a write-protected LU with DATA PROTECT', async () => {
      const s = sense(await exec(r, [0x42, 1, 0, 0, 0, 0, 0, 0, 24, 0], { io: new ScriptedIo(unmapList([[0, 1]])), dataOut: true, expectedLength: 24 }));
      expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 1, 0]);
      const ro = await readyRig({ readOnly: true }, { thin: true });
      const p = sense(await unmap(ro, unmapList([[0, 1]])));
      expect([p.key, p.asc, p.ascq]).to.deep.equal([7, 0x27, 0]);
    });
  });

  describe('WRITE SAME', () => {
    it('repeats the block over the range in buffer-area chunks (10 and 16)', async () => {
      const block = pattern(BS, 4);
      const { res, io } = await writeSame(r, ws10(10, 150), block);
      expect(res.status).to.equal(Status.GOOD);
      expect(io.calls).to.deep.equal([BS]);
      for (let i = 10; i < 160; i++) expect(r.volume.data.subarray(i * BS, (i + 1) * BS)).to.deep.equal(block);
      expect(r.volume.data[160 * BS]).to.equal(0);
      expect(r.volume.events.filter((e) => e.op === 'commit').map((e) => 'blocks' in e && e.blocks)).to.deep.equal([64, 64, 22]);
      const b2 = pattern(BS, 9);
      expect((await writeSame(r, ws16(990, 10), b2)).res.status).to.equal(Status.GOOD);
      expect(r.volume.data.subarray(999 * BS)).to.deep.equal(b2);
    });

    it('NUMBER OF BLOCKS 0 runs to the last LBA; NDOB writes zeroes without Data-Out', async () => {
      r.volume.data.fill(0x55);
      expect((await writeSame(r, ws16(900, 0, 0x01), null)).res.status).to.equal(Status.GOOD);
      expect(r.volume.data.subarray(900 * BS).every((b) => b === 0)).to.equal(true);
      expect(r.volume.data[900 * BS - 1]).to.equal(0x55);
      expect(r.volume.events.some((e) => e.op === 'discard')).to.equal(false);
    });

    it('UNMAP deallocates whatever the block holds (the blocks then read as zeroes: LBPRZ)', async () => {
      r.volume.data.fill(0x55);
      r.volume.mapped.fill(1);
      expect((await writeSame(r, ws10(0, 8, 0x08), new Uint8Array(BS))).res.status).to.equal(Status.GOOD);
      expect(r.volume.events.filter((e) => e.op === 'discard')).to.deep.equal([{ op: 'discard', lba: 0, blocks: 8 }]);
      expect((await writeSame(r, ws16(8, 2, 0x09), null)).res.status).to.equal(Status.GOOD);
      expect(r.volume.events.filter((e) => e.op === 'discard')).to.have.length(2);
      expect((await writeSame(r, ws16(20, 1, 0x08), pattern(BS, 2))).res.status).to.equal(Status.GOOD);
      expect(r.volume.data.subarray(20 * BS, 21 * BS).every((b) => b === 0)).to.equal(true);
      expect(r.volume.events.filter((e) => e.op === 'discard')).to.have.length(3);
      expect(r.volume.events.some((e) => e.op === 'commit')).to.equal(false);
    });

    it('refuses UNMAP on a fully provisioned LU, ANCHOR, WRPROTECT, LBDATA', async () => {
      const full = await readyRig({ blockSize: BS, blockCount: 1000 });
      for (const [rig, flags, bit] of [[full, 0x08, 3], [r, 0x10, 4], [r, 0x20, 7], [r, 0x02, 1]] as const) {
        const s = sense((await writeSame(rig, ws10(0, 1, flags), new Uint8Array(BS))).res);
        expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 1, bit]);
      }
    });

    it('checks the LBA first, then MAXIMUM WRITE SAME LENGTH, then the range', async () => {
      const big = await readyRig({ blockSize: BS, blockCount: 200000, maxTransferBlocks: 64 });
      let s = sense((await writeSame(big, ws10(200001, 0), new Uint8Array(BS))).res);
      expect([s.key, s.asc]).to.deep.equal([5, 0x21]);
      s = sense((await writeSame(big, ws10(0, 0), new Uint8Array(BS))).res);
      expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 7]);
      s = sense((await writeSame(big, ws16(0, 0x10000), new Uint8Array(BS))).res);
      expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 10]);
      s = sense((await writeSame(r, ws10(999, 2), new Uint8Array(BS))).res);
      expect([s.key, s.asc]).to.deep.equal([5, 0x21]);
    });

    it('refuses a Data-Out shorter than a block', async () => {
      const { res, io } = await writeSame(r, ws10(0, 1), new Uint8Array(BS / 2));
      const s = sense(res);
      expect([s.key, s.asc, s.ascq]).to.deep.equal([5, 0x0e, 0x03]);
      expect(res.spdtl).to.equal(BS);
      expect(io.calls).to.deep.equal([]);
    });
  });

  describe('GET LBA STATUS', () => {
    it('describes mapped and deallocated runs from the starting LBA, as many as fit', async () => {
      await exec(r, rw10(0x2a, 100, 10), { io: new ScriptedIo(pattern(10 * BS)), dataOut: true, expectedLength: 10 * BS });
      const all = await exec(r, getLbaStatus(50, 1024));
      expect(descriptors(all.data!)).to.deep.equal([[50, 50, 1], [100, 10, 0], [110, 890, 1]]);
      expect(all.data!.subarray(0, 4)).to.deep.equal(Uint8Array.of(0, 0, 0, 4 + 48));
      const one = await exec(r, getLbaStatus(105, 24));
      expect(one.data!.length).to.equal(24);
      expect(descriptors(one.data!)).to.deep.equal([[105, 5, 0]]);
      const cut = await exec(r, getLbaStatus(0, 16));
      expect(cut.data!.length).to.equal(16);
    });

    it('reports a fully provisioned LU as mapped, and refuses an LBA past the last', async () => {
      const full = await readyRig({ blockSize: BS, blockCount: 1000 });
      expect(descriptors((await exec(full, getLbaStatus(999, 24))).data!)).to.deep.equal([[999, 1, 0]]);
      const s = sense(await exec(full, getLbaStatus(1000, 24)));
      expect([s.key, s.asc, s.ascq]).to.deep.equal([5, 0x21, 0]);
    });
  });
});
