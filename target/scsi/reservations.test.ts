import { expect } from 'chai';
import { COMMANDS } from './dispatch.js';
import { READ10, TUR, WRITE10, prInCdb, prRig, type PrRig } from './pr-test-support.js';
import { Status } from './task.js';
import { decodeSense, nexus } from './test-support.js';

const REGISTER = 0, RESERVE = 1;
const RESERVE6 = [0x16, 0, 0, 0, 0, 0];
const RELEASE6 = [0x17, 0, 0, 0, 0, 0];
const MODE_SENSE6 = [0x1a, 0, 0x3f, 0, 255, 0];
const INQUIRY = [0x12, 0, 0, 0, 96, 0];
const REPORT_LUNS = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
const REQUEST_SENSE = [0x03, 0, 0, 0, 18, 0];
const READ_CAPACITY10 = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const RTPG = [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
const K1 = 0x1111n, K2 = 0x2222n;
const GOOD = Status.GOOD, CONFLICT = Status.RESERVATION_CONFLICT;

async function status(r: PrRig, n: number, cdb: number[]): Promise<number> {
  return (await r.run(n, cdb)).status;
}

describe('scsi/reservations: the conflict gate, RESERVE(6)/RELEASE(6), resets', () => {
  let r: PrRig;
  beforeEach(async () => {
    r = await prRig();
  });

  describe('the reservation classes of the command table', () => {
    const cls = (c: (typeof COMMANDS)[number]) => (typeof c.reservation === 'function' ? c.reservation(new Uint8Array(16)) : c.reservation);

    it('commands that write the medium conflict with every type; reads at least with Exclusive Access', () => {
      for (const c of COMMANDS.filter((x) => x.access === 'write')) expect(cls(c), c.name).to.equal('write');
      for (const c of COMMANDS.filter((x) => x.access === 'read')) expect(cls(c), c.name).to.be.oneOf(['read', 'write']);
    });

    it('what ALLOW COMMANDS 010b names does not pass Write Exclusive', () => {
      const group = COMMANDS.filter((c) => /^(MODE SENSE|READ BUFFER|RECEIVE COPY|RECEIVE DIAGNOSTIC|REPORT SUPPORTED|READ DEFECT)/.test(c.name));
      expect(group.length).to.be.greaterThan(2);
      for (const c of group) expect(cls(c), c.name).to.equal('write');
    });
  });

  describe('persistent reservation types (SPC-4 table 65; libiscsi ProutReserve.Access*)', () => {
    // [type, registered reads, registered writes, unregistered reads, unregistered writes]
    const matrix: Array<[string, number, boolean, boolean, boolean, boolean]> = [
      ['WE', 1, true, false, true, false],
      ['EA', 3, false, false, false, false],
      ['WERO', 5, true, true, true, false],
      ['EARO', 6, true, true, false, false],
      ['WEAR', 7, true, true, true, false],
      ['EAAR', 8, true, true, false, false],
    ];
    for (const [name, type, regRead, regWrite, unregRead, unregWrite] of matrix) {
      it(`${name}: the holder does everything; others as the type says`, async () => {
        await r.out(1, REGISTER, { sark: K1 });
        await r.out(2, REGISTER, { sark: K2 });
        expect((await r.out(1, RESERVE, { key: K1, type })).status).to.equal(GOOD);
        expect([await status(r, 1, READ10), await status(r, 1, WRITE10)]).to.deep.equal([GOOD, GOOD]);
        const ok = (b: boolean) => (b ? GOOD : CONFLICT);
        expect([await status(r, 2, READ10), await status(r, 2, WRITE10)], 'registered').to.deep.equal([ok(regRead), ok(regWrite)]);
        expect([await status(r, 3, READ10), await status(r, 3, WRITE10)], 'not registered').to.deep.equal([ok(unregRead), ok(unregWrite)]);
      });
    }

    it('TEST UNIT READY, READ CAPACITY, INQUIRY, REPORT LUNS, RTPG and PR IN pass Exclusive Access; MODE SENSE does not pass Write Exclusive', async () => {
      await r.out(1, REGISTER, { sark: K1 });
      await r.out(1, RESERVE, { key: K1, type: 3 });
      for (const cdb of [TUR, READ_CAPACITY10, INQUIRY, REPORT_LUNS, REQUEST_SENSE, RTPG, prInCdb(0)]) {
        expect(await status(r, 2, cdb), `opcode ${cdb[0]}`).to.equal(GOOD);
      }
      const we = await prRig();
      await we.out(1, REGISTER, { sark: K1 });
      await we.out(1, RESERVE, { key: K1, type: 1 });
      expect(await status(we, 2, MODE_SENSE6)).to.equal(CONFLICT);
      expect(await status(we, 2, READ10)).to.equal(GOOD);
    });

    it('RESERVATION CONFLICT wins over a pending unit attention, which stays pending (SAM-5 5.3.2)', async () => {
      await r.out(1, REGISTER, { sark: K1 });
      await r.out(1, RESERVE, { key: K1, type: 3 });
      r.server.lunReset(0, nexus(1));
      expect(await status(r, 2, READ10)).to.equal(CONFLICT);
      const res = await r.run(2, TUR);
      expect([res.status, decodeSense(res.sense).asc, decodeSense(res.sense).ascq]).to.deep.equal([2, 0x29, 0x03]);
    });

    it('registrations and the reservation survive LUN reset, target reset and I_T nexus loss', async () => {
      await r.out(1, REGISTER, { sark: K1 });
      await r.out(1, RESERVE, { key: K1, type: 1 });
      r.server.lunReset(0, nexus(2));
      r.server.targetReset(nexus(2));
      r.server.nexusLost(nexus(1));
      expect(await status(r, 2, WRITE10)).to.equal(CONFLICT);
      expect(await r.drain(2), 'the target reset superseded the LUN reset').to.deep.equal([0x2903]);
      expect((await r.inData(2, 0)).length).to.equal(16);
    });
  });

  describe('RESERVE(6) / RELEASE(6) (SPC-2; libiscsi Reserve6.*)', () => {
    it('one nexus holds the LU; the holder may reserve again, the others conflict on all but INQUIRY & co', async () => {
      expect(await status(r, 1, RESERVE6)).to.equal(GOOD);
      expect(await status(r, 1, RESERVE6)).to.equal(GOOD);
      expect(await status(r, 2, RESERVE6)).to.equal(CONFLICT);
      expect(await status(r, 2, RELEASE6), 'release by a non-holder: GOOD, no effect').to.equal(GOOD);
      for (const cdb of [MODE_SENSE6, TUR, READ10, WRITE10, READ_CAPACITY10, prInCdb(0)]) {
        expect(await status(r, 2, cdb), `opcode ${cdb[0]}`).to.equal(CONFLICT);
      }
      for (const cdb of [INQUIRY, REPORT_LUNS, REQUEST_SENSE, RTPG]) expect(await status(r, 2, cdb), `opcode ${cdb[0]}`).to.equal(GOOD);
      expect(await status(r, 1, MODE_SENSE6)).to.equal(GOOD);
      expect(await status(r, 1, RELEASE6)).to.equal(GOOD);
      expect(await status(r, 2, RESERVE6)).to.equal(GOOD);
    });

    it('is released by LUN reset, target reset and the holder\'s nexus loss, not by another nexus\'s loss', async () => {
      for (const end of [() => r.server.lunReset(0, nexus(3)), () => r.server.targetReset(nexus(3)), () => r.server.nexusLost(nexus(1))]) {
        expect(await status(r, 1, RESERVE6)).to.equal(GOOD);
        r.server.nexusLost(nexus(2));
        expect(await status(r, 3, READ10)).to.equal(CONFLICT);
        end();
        const res = await r.run(3, READ10);
        // After a reset the first command reports the unit attention instead.
        expect(res.status === GOOD || decodeSense(res.sense).key === 6).to.equal(true);
        expect(await status(r, 3, READ10)).to.equal(GOOD);
        await r.run(1, TUR);
      }
    });

    it('conflicts with persistent reservations both ways (CRH = 0; SPC-3 5.6.1)', async () => {
      await r.out(1, REGISTER, { sark: K1 });
      expect(await status(r, 1, RESERVE6)).to.equal(CONFLICT);
      expect(await status(r, 1, RELEASE6)).to.equal(CONFLICT);
      await r.out(1, REGISTER, { key: K1, sark: 0n });
      expect(await status(r, 1, RESERVE6)).to.equal(GOOD);
      expect(await status(r, 1, prInCdb(0)), 'even from the holder').to.equal(CONFLICT);
      expect((await r.out(1, REGISTER, { sark: K1 })).status).to.equal(CONFLICT);
    });
  });
});
