import { expect } from 'chai';
import { Status } from './task.js';
import { be16, be32, decodeSense, exec, readyRig, rw10, type Rig } from './test-support.js';

const BS = 512;

function ssu(flags4: number, immed = false, pcm = 0): number[] {
  return [0x1b, immed ? 1 : 0, 0, pcm, flags4, 0];
}

describe('scsi/start-stop-unit, PREVENT ALLOW, PRE-FETCH, READ DEFECT DATA', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await readyRig({ blockSize: BS, blockCount: 1000, maxTransferBlocks: 64 });
  });

  describe('START STOP UNIT (not removable)', () => {
    it('START=0 flushes, then media access and TEST UNIT READY are NOT READY until START=1', async () => {
      expect((await exec(r, ssu(0x00))).status).to.equal(Status.GOOD);
      expect(r.volume.events).to.deep.equal([{ op: 'flush' }]);
      for (const cdb of [[0, 0, 0, 0, 0, 0], rw10(0x28, 0, 1)]) {
        const s = decodeSense((await exec(r, cdb)).sense);
        expect([s.key, s.asc, s.ascq]).to.deep.equal([2, 0x04, 0x02]);
      }
      // What does not touch the medium still works.
      expect((await exec(r, [0x12, 0, 0, 0, 96, 0])).status).to.equal(Status.GOOD);
      expect((await exec(r, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])).status).to.equal(Status.GOOD);
      expect((await exec(r, ssu(0x01))).status).to.equal(Status.GOOD);
      expect((await exec(r, [0, 0, 0, 0, 0, 0])).status).to.equal(Status.GOOD);
    });

    it('NO_FLUSH stops without flushing; IMMED answers before the flush', async () => {
      expect((await exec(r, ssu(0x04))).status).to.equal(Status.GOOD);
      expect(r.volume.events).to.deep.equal([]);
      let done = false;
      r.volume.flush = () => new Promise((res) => setTimeout(() => { done = true; res(); }, 20));
      expect((await exec(r, ssu(0x00, true))).status).to.equal(Status.GOOD);
      expect(done).to.equal(false);
    });

    it('refuses LOEJ (nothing to load or eject) and power conditions', async () => {
      for (const [cdb, byte, bit] of [[ssu(0x02), 4, 1], [ssu(0x11), 4, 7], [ssu(0x01, false, 1), 3, 3]] as const) {
        const s = decodeSense((await exec(r, cdb)).sense);
        expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, byte, bit]);
      }
    });
  });

  it('PREVENT ALLOW MEDIUM REMOVAL: 00b/01b accepted (nothing to prevent), 1xb refused', async () => {
    expect((await exec(r, [0x1e, 0, 0, 0, 1, 0])).status).to.equal(Status.GOOD);
    expect((await exec(r, [0x1e, 0, 0, 0, 0, 0])).status).to.equal(Status.GOOD);
    const s = decodeSense((await exec(r, [0x1e, 0, 0, 0, 2, 0])).sense);
    expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 4, 1]);
  });

  describe('PRE-FETCH', () => {
    it('reads the blocks and answers CONDITION MET; 0 blocks means to the last LBA', async () => {
      expect((await exec(r, [0x34, 0, ...be32(10), 0, ...be16(100), 0])).status).to.equal(Status.CONDITION_MET);
      expect(r.volume.events.filter((e) => e.op === 'read')).to.deep.equal([{ op: 'read', lba: 10, blocks: 64 }, { op: 'read', lba: 74, blocks: 36 }]);
      expect(r.volume.outstanding).to.equal(0);
      expect((await exec(r, [0x90, 0, 0, 0, 0, 0, ...be32(990), 0, 0, 0, 0, 0, 0])).status).to.equal(Status.CONDITION_MET);
      expect(r.volume.events.filter((e) => e.op === 'read').pop()).to.deep.equal({ op: 'read', lba: 990, blocks: 10 });
    });

    it('answers GOOD without reading what does not fit, and refuses ranges past the end', async () => {
      const big = await readyRig({ blockSize: 4096, blockCount: 20000, maxTransferBlocks: 64 });
      expect((await exec(big, [0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...be32(20000), 0, 0])).status).to.equal(Status.GOOD);
      expect(big.volume.events).to.deep.equal([]);
      const s = decodeSense((await exec(r, [0x34, 0, ...be32(999), 0, ...be16(2), 0])).sense);
      expect([s.key, s.asc]).to.deep.equal([5, 0x21]);
    });
  });

  it('READ DEFECT DATA (10)/(12): empty lists, in the format asked for', async () => {
    const ten = await exec(r, [0x37, 0, 0x1d, 0, 0, 0, 0, 0, 32, 0]);
    expect([...ten.data!]).to.deep.equal([0, 0x1d, 0, 0]);
    const twelve = await exec(r, [0xb7, 0x0b, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
    expect([...twelve.data!]).to.deep.equal([0, 0x0b, 0, 0, 0, 0, 0, 0]);
  });
});
