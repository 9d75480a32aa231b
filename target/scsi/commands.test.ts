import { expect } from 'chai';
import { RamVolume } from './test-volume.js';
import { Status } from './task.js';
import {
  ScriptedIo, be32, decodeSense, exec, geometryOnlyVolume, pattern, readyRig, rig, rw10, rw12, rw16, serverFor, type Rig,
} from './test-support.js';

const BS = 512;

function expectSense(res: { status: number; sense?: Uint8Array }, key: number, asc: number, ascq: number) {
  expect(res.status).to.equal(Status.CHECK_CONDITION);
  const s = decodeSense(res.sense);
  expect([s.key, s.asc, s.ascq]).to.deep.equal([key, asc, ascq]);
  return s;
}

function rc16(alloc: number, lba = 0n, pmi = false): number[] {
  return [0x9e, 0x10, ...be32(Number(lba >> 32n)), ...be32(Number(lba & 0xffffffffn)), ...be32(alloc), pmi ? 1 : 0, 0];
}

describe('scsi commands: TEST UNIT READY, READ CAPACITY, REPORT LUNS, SYNCHRONIZE CACHE, VERIFY', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await readyRig({ blockSize: BS, blockCount: 1000, maxTransferBlocks: 64 });
  });

  describe('TEST UNIT READY', () => {
    it('is GOOD with no data once the unit attention is gone', async () => {
      const res = await exec(r, [0, 0, 0, 0, 0, 0]);
      expect(res).to.deep.equal({ status: Status.GOOD });
    });
  });

  describe('READ CAPACITY', () => {
    it('(10) returns the last LBA and the block length', async () => {
      const res = await exec(r, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
      expect([...res.data!]).to.deep.equal([0, 0, 0x03, 0xe7, 0, 0, 0x02, 0x00]);
    });

    it('(10) returns FFFFFFFFh when the last LBA does not fit', async () => {
      for (const [count, expected] of [[2 ** 32, [0xff, 0xff, 0xff, 0xff]], [2 ** 32 + 5, [0xff, 0xff, 0xff, 0xff]], [2 ** 32 - 1, [0xff, 0xff, 0xff, 0xfe]]] as const) {
        const server = serverFor(geometryOnlyVolume(count, 4096));
        await exec(server, [0, 0, 0, 0, 0, 0]);
        const d = (await exec(server, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])).data!;
        expect([...d]).to.deep.equal([...expected, 0, 0, 0x10, 0x00]);
      }
    });

    it('(10) refuses an LBA without PMI, accepts PMI', async () => {
      const s = expectSense(await exec(r, [0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]), 5, 0x24, 0);
      expect(s.fieldPointer).to.equal(2);
      expect((await exec(r, [0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0])).status).to.equal(Status.GOOD);
    });

    it('(16) returns 32 bytes: 64-bit last LBA, block length, no protection, no provisioning', async () => {
      const server = serverFor(geometryOnlyVolume(2 ** 40, 4096));
      await exec(server, [0, 0, 0, 0, 0, 0]);
      const d = [...(await exec(server, rc16(32))).data!];
      expect(d).to.deep.equal([0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x10, 0, ...new Array(20).fill(0)]);
    });

    it('(16) honours every allocation length, 0 included (libiscsi Alloclen)', async () => {
      for (let n = 0; n <= 40; n++) {
        const res = await exec(r, rc16(n));
        expect(res.status).to.equal(Status.GOOD);
        expect(res.data!.length).to.equal(Math.min(n, 32));
      }
    });

    it('(16) refuses an LBA without PMI', async () => {
      expectSense(await exec(r, rc16(32, 5n)), 5, 0x24, 0);
      expect((await exec(r, rc16(32, 5n, true))).status).to.equal(Status.GOOD);
    });
  });

  describe('REPORT LUNS', () => {
    const rl = (select = 0, alloc = 4096) => [0xa0, 0, select, 0, 0, 0, ...be32(alloc), 0, 0];

    it('lists every LUN, peripheral addressing below 256 and flat space above, on any LUN', async () => {
      const multi = rig({}, {}, [[5, { volume: new RamVolume(), serial: 'B' }], [300, { volume: new RamVolume(), serial: 'C' }]]);
      for (const lun of [0, 5, 9]) {
        const d = [...(await exec(multi, rl(), { lun })).data!];
        expect(d).to.deep.equal([
          0, 0, 0, 24, 0, 0, 0, 0,
          0, 0, 0, 0, 0, 0, 0, 0,
          0, 5, 0, 0, 0, 0, 0, 0,
          0x41, 0x2c, 0, 0, 0, 0, 0, 0,
        ]);
      }
    });

    it('SELECT REPORT 01h (well-known only) is empty, 02h is everything, others are refused', async () => {
      expect([...(await exec(r, rl(1))).data!]).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0]);
      expect((await exec(r, rl(2))).data!.length).to.equal(16);
      const s = expectSense(await exec(r, rl(3)), 5, 0x24, 0);
      expect(s.fieldPointer).to.equal(2);
    });

    it('refuses allocation lengths below 16 and cuts at the allocation length', async () => {
      const s = expectSense(await exec(r, rl(0, 15)), 5, 0x24, 0);
      expect(s.fieldPointer).to.equal(6);
      const multi = rig({}, {}, [[1, { volume: new RamVolume(), serial: 'B' }]]);
      const d = (await exec(multi, rl(0, 16))).data!;
      expect([...d.subarray(0, 4)]).to.deep.equal([0, 0, 0, 16]);
      expect(d.length).to.equal(16);
    });
  });

  describe('LUNs without a logical unit', () => {
    it('answer everything but INQUIRY, REPORT LUNS and REQUEST SENSE with LOGICAL UNIT NOT SUPPORTED', async () => {
      for (const cdb of [[0, 0, 0, 0, 0, 0], rw10(0x28, 0, 1), [0xc0, 0, 0, 0, 0, 0]]) {
        expectSense(await exec(r, cdb, { lun: 3 }), 5, 0x25, 0x00);
      }
    });

    it('REQUEST SENSE returns LOGICAL UNIT NOT SUPPORTED as data with GOOD', async () => {
      const res = await exec(r, [0x03, 0, 0, 0, 18, 0], { lun: 3 });
      expect(res.status).to.equal(Status.GOOD);
      const s = decodeSense(res.data);
      expect([s.key, s.asc, s.ascq]).to.deep.equal([5, 0x25, 0]);
    });

    it('still validate the CDB of the commands they answer', async () => {
      expectSense(await exec(r, [0x12, 0x04, 0, 0, 96, 0], { lun: 3 }), 5, 0x24, 0);
    });
  });

  describe('SYNCHRONIZE CACHE', () => {
    it('(10) and (16) flush the volume', async () => {
      expect((await exec(r, [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0])).status).to.equal(Status.GOOD);
      expect((await exec(r, rw16(0x91, 10, 990))).status).to.equal(Status.GOOD);
      expect(r.volume.events.filter((e) => e.op === 'flush')).to.have.length(2);
    });

    it('checks the LBA range', async () => {
      expectSense(await exec(r, rw10(0x35, 999, 2)), 5, 0x21, 0);
      expectSense(await exec(r, rw10(0x35, 1000, 0)), 5, 0x21, 0);
      expectSense(await exec(r, rw16(0x91, 0xffffffffffffffffn, 0)), 5, 0x21, 0);
      expect(r.volume.events).to.deep.equal([]);
    });

    it('reports a flush failure as MEDIUM ERROR / WRITE ERROR without INFORMATION', async () => {
      r.volume.failFlush = true;
      const s = expectSense(await exec(r, [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 3, 0x0c, 0x00);
      expect(s.valid).to.equal(false);
    });

    it('with IMMED answers GOOD before the flush completes and logs a later failure', async () => {
      let finish!: (e?: Error) => void;
      r.volume.flush = () => new Promise<void>((resolve, reject) => {
        finish = (e) => (e ? reject(e) : resolve());
      });
      const res = await exec(r, [0x35, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]);
      expect(res.status).to.equal(Status.GOOD);
      finish(new Error('disk gone'));
      await new Promise((resolve) => setImmediate(resolve));
      expect(r.logger.lines.some((l) => l.level === 'error' && /IMMED/.test(l.msg ?? ''))).to.equal(true);
    });
  });

  describe('VERIFY', () => {
    const v10 = (lba: number, n: number, bytchk: number, dpo = false) => rw10(0x2f, lba, n, (bytchk << 1) | (dpo ? 0x10 : 0));

    async function verifyWith(cdb: number[], data: Uint8Array, expectedLength = data.length) {
      const io = new ScriptedIo(data);
      return { res: await exec(r, cdb, { io, dataOut: true, expectedLength }), io };
    }

    beforeEach(() => {
      r.volume.data.set(pattern(1000 * BS, 9));
    });

    it('BYTCHK 0: medium verification reads and releases the blocks, no Data-Out', async () => {
      const { res, io } = await verifyWith(v10(5, 3, 0, true), new Uint8Array(0), 0);
      expect(res.status).to.equal(Status.GOOD);
      expect(io.calls).to.deep.equal([]);
      expect(r.volume.events.map((e) => e.op)).to.deep.equal(['read', 'release']);
    });

    it('BYTCHK 1: GOOD when the Data-Out matches the medium (10, 12 and 16)', async () => {
      const same = r.volume.data.slice(7 * BS, 9 * BS);
      for (const cdb of [v10(7, 2, 1), rw12(0xaf, 7, 2, 0x02), rw16(0x8f, 7, 2, 0x02)]) {
        const { res, io } = await verifyWith(cdb, same);
        expect(res.status).to.equal(Status.GOOD);
        expect(io.calls).to.deep.equal([2 * BS]);
      }
      expect(r.volume.outstanding).to.equal(0);
    });

    it('BYTCHK 1: MISCOMPARE DURING VERIFY with the offset of the first differing byte', async () => {
      const data = r.volume.data.slice(7 * BS, 9 * BS);
      data[700] ^= 0x58;
      data[900] ^= 0x01;
      const { res } = await verifyWith(v10(7, 2, 1), data);
      const s = expectSense(res, 0x0e, 0x1d, 0x00);
      expect([s.valid, s.information]).to.deep.equal([true, 700]);
      expect(r.volume.outstanding).to.equal(0);
    });

    it('BYTCHK 10b (reserved) and 11b (not implemented) are INVALID FIELD IN CDB at byte 1 bit 2', async () => {
      for (const b of [2, 3]) {
        const s = expectSense((await verifyWith(v10(0, 1, b), pattern(BS))).res, 5, 0x24, 0);
        expect([s.fieldPointer, s.bitPointer]).to.deep.equal([1, 2]);
      }
    });

    it('checks range and transfer length like READ, and 0 blocks is a no-op', async () => {
      expectSense((await verifyWith(v10(999, 2, 0), new Uint8Array(0), 0)).res, 5, 0x21, 0);
      expectSense((await verifyWith(v10(1001, 0, 1), new Uint8Array(0), 0)).res, 5, 0x21, 0);
      const s = expectSense((await verifyWith(v10(0, 65, 0), new Uint8Array(0), 0)).res, 5, 0x24, 0);
      expect(s.fieldPointer).to.equal(7);
      expect((await verifyWith(v10(0, 0, 1), new Uint8Array(0), 0)).res.status).to.equal(Status.GOOD);
      expect(r.volume.events).to.deep.equal([]);
    });

    it('a medium error while verifying is MEDIUM ERROR / UNRECOVERED READ ERROR', async () => {
      r.volume.failReadAt = 3;
      const s = expectSense((await verifyWith(v10(2, 4, 0), new Uint8Array(0), 0)).res, 3, 0x11, 0);
      expect(s.information).to.equal(3);
    });

    it('refuses a compare whose Data-Out is longer than the EDTL', async () => {
      const { res, io } = await verifyWith(v10(0, 2, 1), pattern(2 * BS), BS);
      expectSense(res, 5, 0x0e, 0x03);
      expect(res.spdtl).to.equal(2 * BS);
      expect(io.calls).to.deep.equal([]);
    });

    it('works on a read-only volume', async () => {
      const ro = await readyRig({ readOnly: true });
      expect((await exec(ro, v10(0, 1, 0))).status).to.equal(Status.GOOD);
    });
  });
});
