import { expect } from 'chai';
import { Status } from './task.js';
import { ScriptedIo, be16, be32, decodeSense, exec, pattern, readyRig, rw10, rw12, rw16, type Rig } from './test-support.js';

const BS = 512;

async function send(r: Rig, cdb: number[], data: Uint8Array, expectedLength = data.length) {
  const io = new ScriptedIo(data);
  return { res: await exec(r, cdb, { io, dataOut: true, expectedLength }), io };
}

function atomic16(lba: number, blocks: number, flags = 0, boundary = 0): number[] {
  return [0x9c, flags, 0, 0, 0, 0, ...be32(lba), ...be16(boundary), ...be16(blocks), 0, 0];
}

describe('scsi/write variants: ORWRITE, WRITE ATOMIC, WRITE AND VERIFY', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await readyRig({ blockSize: BS, blockCount: 100, maxTransferBlocks: 16 });
  });

  describe('ORWRITE(16)', () => {
    it('ORs the Data-Out into the blocks under the range lock, one buffer area at a time', async () => {
      r.volume.data.fill(0x0f, 0, 2 * BS);
      const { res } = await send(r, rw16(0x8b, 0, 2, 0x08), new Uint8Array(2 * BS).fill(0xa0));
      expect(res.status).to.equal(Status.GOOD);
      expect(r.volume.data.subarray(0, 2 * BS).every((b) => b === 0xaf)).to.equal(true);
      expect(r.volume.events.map((e) => e.op)).to.deep.equal(['read', 'release', 'prepare', 'commit']);
      expect(r.volume.events[3]).to.deep.equal({ op: 'commit', lba: 0, blocks: 2, fua: true });
    });

    it('clips to the whole blocks an EDTL covers, like WRITE; checks range and ORPROTECT', async () => {
      const { res } = await send(r, rw16(0x8b, 0, 2), new Uint8Array(BS).fill(1), BS);
      expect(res).to.deep.equal({ status: Status.GOOD, spdtl: 2 * BS });
      expect(r.volume.data[BS]).to.equal(0);
      expect(r.volume.data[0]).to.equal(1);
      let s = decodeSense((await send(r, rw16(0x8b, 99, 2), new Uint8Array(2 * BS))).res.sense);
      expect([s.key, s.asc]).to.deep.equal([5, 0x21]);
      s = decodeSense((await send(r, rw16(0x8b, 0, 1, 0x20), new Uint8Array(BS))).res.sense);
      expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 1, 7]);
      expect((await send(r, rw16(0x8b, 99, 0), new Uint8Array(0))).res.status).to.equal(Status.GOOD);
    });
  });

  describe('WRITE ATOMIC(16)', () => {
    it('writes the blocks as one buffer area under the range lock, FUA honoured', async () => {
      const data = pattern(4 * BS, 7);
      const { res } = await send(r, atomic16(3, 4, 0x08), data);
      expect(res.status).to.equal(Status.GOOD);
      expect(r.volume.data.subarray(3 * BS, 7 * BS)).to.deep.equal(data);
      expect(r.volume.events.filter((e) => e.op === 'commit')).to.deep.equal([{ op: 'commit', lba: 3, blocks: 4, fua: true }]);
    });

    it('refuses more than MAXIMUM ATOMIC TRANSFER LENGTH, an atomic boundary, a short EDTL; 0 blocks checks the LBA', async () => {
      let s = decodeSense((await send(r, atomic16(0, 17), new Uint8Array(17 * BS))).res.sense);
      expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 12]);
      s = decodeSense((await send(r, atomic16(0, 1, 0, 1), new Uint8Array(BS))).res.sense);
      expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 11]);
      const short = await send(r, atomic16(0, 2), new Uint8Array(BS), BS);
      s = decodeSense(short.res.sense);
      expect([s.key, s.asc, s.ascq, short.res.spdtl]).to.deep.equal([5, 0x0e, 0x03, 2 * BS]);
      expect(r.volume.events).to.deep.equal([]);
      expect((await send(r, atomic16(99, 0), new Uint8Array(0))).res.status).to.equal(Status.GOOD);
      s = decodeSense((await send(r, atomic16(101, 0), new Uint8Array(0))).res.sense);
      expect([s.key, s.asc]).to.deep.equal([5, 0x21]);
    });

    it('advertises its limits in the block limits page', async () => {
      const b0 = (await exec(r, [0x12, 1, 0xb0, 0, 255, 0])).data!;
      expect(b0.subarray(44, 64)).to.deep.equal(Uint8Array.of(0, 0, 0, 16, ...new Array<number>(16).fill(0)));
    });
  });

  describe('WRITE AND VERIFY (10/12/16)', () => {
    for (const [name, cdb] of [['10', rw10], ['12', rw12], ['16', rw16]] as const) {
      const op = { '10': 0x2e, '12': 0xae, '16': 0x8e }[name];
      it(`(${name}) writes with FUA, reads back, compares with BYTCHK=1`, async () => {
        const data = pattern(3 * BS, 5);
        const { res } = await send(r, cdb(op, 20, 3, 0x02), data);
        expect(res.status).to.equal(Status.GOOD);
        expect(r.volume.data.subarray(20 * BS, 23 * BS)).to.deep.equal(data);
        expect(r.volume.events.map((e) => e.op)).to.deep.equal(['prepare', 'commit', 'read', 'release']);
        expect(r.volume.events[1]).to.deep.equal({ op: 'commit', lba: 20, blocks: 3, fua: true });
      });
    }

    it('reports a medium that does not keep the data as MISCOMPARE', async () => {
      const orig = r.volume.prepareWrite.bind(r.volume);
      r.volume.prepareWrite = async (lba, blocks) => {
        const w = await orig(lba, blocks);
        return { area: w.area, abandon: () => w.abandon(), commit: async (o) => { w.area[100] ^= 1; await w.commit(o); } };
      };
      const s = decodeSense((await send(r, rw10(0x2e, 0, 1, 0x02), pattern(BS, 1))).res.sense);
      expect([s.key, s.asc, s.information]).to.deep.equal([0x0e, 0x1d, 100]);
    });

    it('clips to the EDTL like WRITE; refuses BYTCHK 1xb; is write-protected on a read-only LU', async () => {
      const { res } = await send(r, rw10(0x2e, 0, 2, 0x02), pattern(BS, 1), BS);
      expect(res).to.deep.equal({ status: Status.GOOD, spdtl: 2 * BS });
      let s = decodeSense((await send(r, rw10(0x2e, 0, 1, 0x04), pattern(BS))).res.sense);
      expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 1, 2]);
      const ro = await readyRig({ readOnly: true });
      s = decodeSense((await send(ro, rw16(0x8e, 0, 1, 0x02), pattern(BS))).res.sense);
      expect([s.key, s.asc]).to.deep.equal([7, 0x27]);
    });
  });
});
