import { expect } from 'chai';
import { MAX_REGISTRATIONS, transportId } from './persistent-reservations.js';
import { MemoryReservationStore, TUR, be64, prInCdb, prRig, type PrRig } from './pr-test-support.js';
import { Status } from './task.js';
import { be32, decodeSense, nexus } from './test-support.js';

const REGISTER = 0, RESERVE = 1, RELEASE = 2, CLEAR = 3, PREEMPT = 4, PREEMPT_AND_ABORT = 5, RIEK = 6, MOVE = 7;
const READ_KEYS = 0, READ_RESERVATION = 1, REPORT_CAPABILITIES = 2, READ_FULL_STATUS = 3;
const WE = 1, EA = 3, WERO = 5, EARO = 6, WEAR = 7, EAAR = 8;
const K1 = 0x1122334455667788n;
const K2 = 0xa0a0a0a0b0b0b0b0n;

function sense(res: { status: number; sense?: Uint8Array }): number[] {
  const s = decodeSense(res.sense);
  return [res.status, s.key, s.asc, s.ascq];
}

/** Next unit attention of nexus n as [asc, ascq], or 'GOOD'. */
async function ua(r: PrRig, n: number): Promise<[number, number] | 'GOOD'> {
  const res = await r.run(n, TUR);
  if (res.status === Status.GOOD) return 'GOOD';
  const s = decodeSense(res.sense);
  return [s.asc, s.ascq];
}

/** READ KEYS through nexus 4, which the tests never register, so it never has unit attentions. */
async function keys(r: PrRig): Promise<{ generation: number; keys: bigint[] }> {
  const d = Buffer.from(await r.inData(4, READ_KEYS));
  const n = d.readUInt32BE(4) / 8;
  return { generation: d.readUInt32BE(0), keys: Array.from({ length: n }, (_, i) => d.readBigUInt64BE(8 + 8 * i)) };
}

describe('scsi/persistent reservations: PERSISTENT RESERVE IN / OUT (SPC-4 6.15, 6.16)', () => {
  let r: PrRig;
  beforeEach(async () => {
    r = await prRig();
  });

  describe('PERSISTENT RESERVE IN data', () => {
    it('READ KEYS: PRGENERATION, ADDITIONAL LENGTH, keys in registration order', async () => {
      expect([...await r.inData(1, READ_KEYS)]).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0]);
      expect((await r.out(1, REGISTER, { sark: K1 })).status).to.equal(Status.GOOD);
      expect((await r.out(2, RIEK, { sark: K2 })).status).to.equal(Status.GOOD);
      expect([...await r.inData(3, READ_KEYS)]).to.deep.equal([0, 0, 0, 2, 0, 0, 0, 16, ...be64(K1), ...be64(K2)]);
    });

    it('READ KEYS truncated to the allocation length keeps the full ADDITIONAL LENGTH', async () => {
      await r.out(1, REGISTER, { sark: K1 });
      expect([...await r.inData(1, READ_KEYS, 8)]).to.deep.equal([0, 0, 0, 1, 0, 0, 0, 8]);
    });

    it('READ RESERVATION: 8 bytes without a reservation, 24 with holder key, scope and type', async () => {
      await r.out(1, REGISTER, { sark: K1 });
      expect([...await r.inData(2, READ_RESERVATION)]).to.deep.equal([0, 0, 0, 1, 0, 0, 0, 0]);
      expect((await r.out(1, RESERVE, { key: K1, type: WERO })).status).to.equal(Status.GOOD);
      expect([...await r.inData(2, READ_RESERVATION)]).to.deep.equal([
        0, 0, 0, 1, 0, 0, 0, 16, ...be64(K1), 0, 0, 0, 0, 0, 0x05, 0, 0]);
    });

    it('READ RESERVATION reports key zero for all-registrants types', async () => {
      await r.out(1, REGISTER, { sark: K1 });
      await r.out(1, RESERVE, { key: K1, type: EAAR });
      expect([...await r.inData(1, READ_RESERVATION)].slice(8)).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0, 0]);
    });

    it('REPORT CAPABILITIES: every type, ALLOW COMMANDS 010b, PTPL_C only with a store', async () => {
      expect([...await r.inData(1, REPORT_CAPABILITIES)]).to.deep.equal([0, 8, 0x00, 0xa0, 0xea, 0x01, 0, 0]);
      const p = await prRig({ store: new MemoryReservationStore() });
      expect([...await p.inData(1, REPORT_CAPABILITIES)]).to.deep.equal([0, 8, 0x01, 0xa0, 0xea, 0x01, 0, 0]);
      await p.out(1, REGISTER, { sark: K1, flags: 0x01 });
      expect((await p.inData(1, REPORT_CAPABILITIES))[3], 'PTPL_A').to.equal(0xa1);
    });

    it('READ FULL STATUS: key, R_HOLDER, scope/type, relative port and an iSCSI TransportID per registration', async () => {
      const p = await prRig({ targetPorts: [1, 2] });
      await p.out(1, REGISTER, { sark: K1 });
      await p.drain(2, 2);
      await p.out(2, REGISTER, { sark: K2 }, 2);
      await p.out(1, RESERVE, { key: K1, type: EA });
      const d = await p.inData(3, READ_FULL_STATUS);
      const port1 = nexus(1).initiatorPort; // 46 characters, NUL, one byte of padding
      expect(port1.length).to.equal(46);
      const tid1 = [0x45, 0, 0, 48, ...Buffer.from(port1), 0, 0];
      expect([...d.subarray(0, 8)]).to.deep.equal([0, 0, 0, 2, ...be32(2 * (24 + 52))]);
      expect([...d.subarray(8, 8 + 24 + 52)]).to.deep.equal([
        ...be64(K1), 0, 0, 0, 0, 0x01, 0x03, 0, 0, 0, 0, 0, 1, ...be32(52), ...tid1]);
      const second = d.subarray(8 + 76);
      expect([...second.subarray(0, 24)]).to.deep.equal([...be64(K2), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, ...be32(52)]);
      expect(Buffer.from(second.subarray(28, 28 + 46)).toString()).to.equal(nexus(2).initiatorPort);
    });

    it('TransportIDs are at least 24 bytes and NUL-terminated', () => {
      expect([...transportId('iqn.a,i,0x1')]).to.deep.equal([0x45, 0, 0, 20, ...Buffer.from('iqn.a,i,0x1'), ...new Array(9).fill(0)]);
    });

    it('refuses unknown service actions with INVALID FIELD IN CDB at byte 1 bit 4', async () => {
      const res = await r.run(1, prInCdb(4));
      const s = decodeSense(res.sense);
      expect([res.status, s.key, s.asc, s.fieldPointer, s.bitPointer, s.cd]).to.deep.equal([2, 5, 0x24, 1, 4, true]);
    });
  });

  describe('REGISTER / REGISTER AND IGNORE EXISTING KEY', () => {
    it('registers, changes and removes a key, counting PRgeneration each time', async () => {
      await r.out(1, REGISTER, { sark: K1 });
      expect(await keys(r)).to.deep.equal({ generation: 1, keys: [K1] });
      await r.out(1, REGISTER, { key: K1, sark: K2 });
      expect(await keys(r)).to.deep.equal({ generation: 2, keys: [K2] });
      await r.out(1, REGISTER, { key: K2, sark: 0n });
      expect(await keys(r)).to.deep.equal({ generation: 3, keys: [] });
    });

    it('answers RESERVATION CONFLICT for a wrong key, or a key from an unregistered nexus', async () => {
      await r.out(1, REGISTER, { sark: K1 });
      expect((await r.out(1, REGISTER, { key: K2, sark: K2 })).status).to.equal(Status.RESERVATION_CONFLICT);
      expect((await r.out(1, REGISTER, { sark: K2 })).status, 'registered, key 0').to.equal(Status.RESERVATION_CONFLICT);
      expect((await r.out(2, REGISTER, { key: K1, sark: K2 })).status).to.equal(Status.RESERVATION_CONFLICT);
      expect(await keys(r)).to.deep.equal({ generation: 1, keys: [K1] });
    });

    it('an unregistered nexus registering key zero gets GOOD and changes nothing', async () => {
      expect((await r.out(1, REGISTER, { sark: 0n })).status).to.equal(Status.GOOD);
      expect(await keys(r)).to.deep.equal({ generation: 0, keys: [] });
    });

    it('REGISTER AND IGNORE EXISTING KEY replaces whatever key is registered', async () => {
      await r.out(1, REGISTER, { sark: K1 });
      expect((await r.out(1, RIEK, { key: 0x99n, sark: K2 })).status).to.equal(Status.GOOD);
      expect(await keys(r)).to.deep.equal({ generation: 2, keys: [K2] });
    });

    it('refuses SPEC_I_PT, ALL_TG_PT and (without a store) APTPL with INVALID FIELD IN PARAMETER LIST', async () => {
      for (const [flags, bit] of [[0x08, 3], [0x04, 2], [0x01, 0]]) {
        const res = await r.out(1, REGISTER, { sark: K1, flags });
        const s = decodeSense(res.sense);
        expect([res.status, s.key, s.asc, s.cd, s.fieldPointer, s.bpv, s.bitPointer]).to.deep.equal([2, 5, 0x26, false, 20, true, bit]);
      }
      expect(await keys(r)).to.deep.equal({ generation: 0, keys: [] });
    });

    it('refuses a parameter list that is not 24 bytes with PARAMETER LIST LENGTH ERROR', async () => {
      expect(sense(await r.out(1, REGISTER, { list: new Uint8Array(28) }))).to.deep.equal([2, 5, 0x1a, 0]);
      expect(sense(await r.out(1, REGISTER, { list: new Uint8Array(16) }))).to.deep.equal([2, 5, 0x1a, 0]);
    });

    it(`refuses registration ${MAX_REGISTRATIONS + 1} with INSUFFICIENT REGISTRATION RESOURCES`, async () => {
      for (let n = 1; n <= MAX_REGISTRATIONS; n++) {
        await r.drain(100 + n);
        expect((await r.out(100 + n, REGISTER, { sark: BigInt(n) })).status).to.equal(Status.GOOD);
      }
      await r.drain(99);
      expect(sense(await r.out(99, REGISTER, { sark: K1 }))).to.deep.equal([2, 5, 0x55, 0x04]);
    });
  });

  describe('RESERVE / RELEASE', () => {
    beforeEach(async () => {
      await r.out(1, REGISTER, { sark: K1 });
      await r.out(2, REGISTER, { sark: K2 });
    });

    it('RESERVE does not count PRgeneration; reserving the same again is GOOD, another type conflicts', async () => {
      expect((await r.out(1, RESERVE, { key: K1, type: WE })).status).to.equal(Status.GOOD);
      expect((await r.out(1, RESERVE, { key: K1, type: WE })).status).to.equal(Status.GOOD);
      expect((await r.out(1, RESERVE, { key: K1, type: EA })).status).to.equal(Status.RESERVATION_CONFLICT);
      expect((await r.out(2, RESERVE, { key: K2, type: WE })).status).to.equal(Status.RESERVATION_CONFLICT);
      expect((await keys(r)).generation).to.equal(2);
    });

    it('refuses a bad scope or type with INVALID FIELD IN CDB at byte 2', async () => {
      for (const [o, bit] of [[{ scope: 1, type: WE }, 7], [{ type: 2 }, 3], [{ type: 9 }, 3]] as const) {
        const res = await r.out(1, RESERVE, { key: K1, ...o });
        const s = decodeSense(res.sense);
        expect([res.status, s.key, s.asc, s.cd, s.fieldPointer, s.bitPointer]).to.deep.equal([2, 5, 0x24, true, 2, bit]);
      }
    });

    it('RELEASE by a non-holder is GOOD and changes nothing; with another type it is INVALID RELEASE', async () => {
      await r.out(1, RESERVE, { key: K1, type: WE });
      expect((await r.out(2, RELEASE, { key: K2, type: WE })).status).to.equal(Status.GOOD);
      expect((await r.inData(1, READ_RESERVATION)).length).to.equal(24);
      expect(sense(await r.out(1, RELEASE, { key: K1, type: EA }))).to.deep.equal([2, 5, 0x26, 0x04]);
      expect((await r.out(1, RELEASE, { key: K1, type: WE })).status).to.equal(Status.GOOD);
      expect((await r.inData(1, READ_RESERVATION)).length).to.equal(8);
    });

    it('RELEASE of a registrants-only reservation tells the other registrants RESERVATIONS RELEASED', async () => {
      await r.out(1, RESERVE, { key: K1, type: EARO });
      await r.out(1, RELEASE, { key: K1, type: EARO });
      expect(await ua(r, 2)).to.deep.equal([0x2a, 0x04]);
      expect(await ua(r, 1)).to.equal('GOOD');
      expect(await ua(r, 3), 'not registered').to.equal('GOOD');
    });

    it('releasing Write Exclusive tells nobody', async () => {
      await r.out(1, RESERVE, { key: K1, type: WE });
      await r.out(1, RELEASE, { key: K1, type: WE });
      expect(await ua(r, 2)).to.equal('GOOD');
    });

    it('the holder unregistering releases a registrants-only reservation, with RESERVATIONS RELEASED', async () => {
      await r.out(1, RESERVE, { key: K1, type: WERO });
      await r.out(1, REGISTER, { key: K1, sark: 0n });
      expect((await r.inData(4, READ_RESERVATION)).length).to.equal(8);
      expect(await ua(r, 2)).to.deep.equal([0x2a, 0x04]);
    });

    it('an all-registrants reservation lasts until its last registrant leaves', async () => {
      await r.out(1, RESERVE, { key: K1, type: WEAR });
      await r.out(1, REGISTER, { key: K1, sark: 0n });
      expect((await r.inData(2, READ_RESERVATION))[21]).to.equal(WEAR);
      expect((await r.out(2, RELEASE, { key: K2, type: WEAR })).status).to.equal(Status.GOOD);
      expect((await r.inData(2, READ_RESERVATION)).length).to.equal(8);
    });
  });

  describe('CLEAR / PREEMPT', () => {
    beforeEach(async () => {
      await r.out(1, REGISTER, { sark: K1 });
      await r.out(2, REGISTER, { sark: K2 });
      await r.out(3, REGISTER, { sark: 0x33n });
    });

    it('CLEAR removes everything, counts once and tells the others RESERVATIONS PREEMPTED', async () => {
      await r.out(1, RESERVE, { key: K1, type: EA });
      expect((await r.out(2, CLEAR, { key: K2 })).status).to.equal(Status.GOOD);
      expect(await keys(r)).to.deep.equal({ generation: 4, keys: [] });
      expect((await r.inData(4, READ_RESERVATION)).length).to.equal(8);
      expect(await ua(r, 1)).to.deep.equal([0x2a, 0x03]);
      expect(await ua(r, 3)).to.deep.equal([0x2a, 0x03]);
      expect(await ua(r, 2)).to.equal('GOOD');
    });

    it('PREEMPT without a reservation removes the registrations of that key (REGISTRATIONS PREEMPTED)', async () => {
      r.server.attach({ abortTasks: () => expect.fail('plain PREEMPT aborts nothing') });
      expect((await r.out(2, PREEMPT, { key: K2, sark: K1, type: EA })).status).to.equal(Status.GOOD);
      expect(await keys(r)).to.deep.equal({ generation: 4, keys: [K2, 0x33n] });
      expect(await ua(r, 1)).to.deep.equal([0x2a, 0x05]);
      expect(await ua(r, 3)).to.equal('GOOD');
      expect((await r.inData(2, READ_RESERVATION)).length, 'no reservation made').to.equal(8);
    });

    it('PREEMPT of the holder takes the reservation with the new type; the rest hear RESERVATIONS RELEASED', async () => {
      const aborts: Array<[number, string[]]> = [];
      r.server.attach({ abortTasks: (lun, ids) => void aborts.push([lun, [...ids]]) });
      await r.out(1, RESERVE, { key: K1, type: WE });
      expect((await r.out(2, PREEMPT_AND_ABORT, { key: K2, sark: K1, type: EARO })).status).to.equal(Status.GOOD);
      expect(aborts, 'PREEMPT AND ABORT aborts the preempted nexus\'s tasks').to.deep.equal([[0, [nexus(1).id]]]);
      expect([...await r.inData(2, READ_RESERVATION)].slice(8, 16)).to.deep.equal(be64(K2));
      expect((await r.inData(2, READ_RESERVATION))[21]).to.equal(EARO);
      expect(await ua(r, 1)).to.deep.equal([0x2a, 0x05]);
      expect(await ua(r, 3)).to.deep.equal([0x2a, 0x04]);
      expect(await ua(r, 2)).to.equal('GOOD');
    });

    it('PREEMPT with service action key zero ends an all-registrants reservation for everyone else', async () => {
      await r.out(1, RESERVE, { key: K1, type: EAAR });
      expect((await r.out(3, PREEMPT, { key: 0x33n, sark: 0n, type: WE })).status).to.equal(Status.GOOD);
      expect((await keys(r)).keys).to.deep.equal([0x33n]);
      expect([...await r.inData(3, READ_RESERVATION)].slice(8)).to.deep.equal([...be64(0x33n), 0, 0, 0, 0, 0, WE, 0, 0]);
    });

    it('PREEMPT of an unknown key conflicts; of key zero without a reservation is INVALID FIELD IN PARAMETER LIST', async () => {
      expect((await r.out(2, PREEMPT, { key: K2, sark: 0x77n, type: WE })).status).to.equal(Status.RESERVATION_CONFLICT);
      const s = decodeSense((await r.out(2, PREEMPT, { key: K2, sark: 0n, type: WE })).sense);
      expect([s.key, s.asc, s.cd, s.fieldPointer]).to.deep.equal([5, 0x26, false, 8]);
      expect((await keys(r)).generation).to.equal(3);
    });
  });

  describe('REGISTER AND MOVE', () => {
    function moveList(key: bigint, sark: bigint, port: number, initiatorPort: string, flags = 0): Uint8Array {
      const tid = transportId(initiatorPort);
      const l = new Uint8Array(24 + tid.length);
      l.set(be64(key), 0);
      l.set(be64(sark), 8);
      l[17] = flags;
      l[18] = port >> 8;
      l[19] = port & 0xff;
      l.set(be32(tid.length), 20);
      l.set(tid, 24);
      return l;
    }

    it('hands the reservation to another I_T nexus, registering it, and UNREG drops the mover', async () => {
      const p = await prRig({ targetPorts: [1, 2] });
      await p.out(1, REGISTER, { sark: K1 });
      await p.out(1, RESERVE, { key: K1, type: EA });
      const res = await p.out(1, MOVE, { list: moveList(K1, K2, 2, nexus(2).initiatorPort, 0x02) });
      expect(res.status).to.equal(Status.GOOD);
      await p.drain(2, 2);
      expect(await keys(p), 'REGISTER and REGISTER AND MOVE count, RESERVE does not').to.deep.equal({ generation: 2, keys: [K2] });
      expect((await p.run(2, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 2)).status, 'new holder reads').to.equal(Status.GOOD);
      expect((await p.run(2, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 1)).status, 'same initiator, other port').to.equal(Status.RESERVATION_CONFLICT);
    });

    it('is refused unless the nexus holds the reservation, and for unknown ports or itself', async () => {
      const p = await prRig({ targetPorts: [1, 2] });
      await p.out(1, REGISTER, { sark: K1 });
      await p.out(2, REGISTER, { sark: K2 });
      expect((await p.out(1, MOVE, { list: moveList(K1, K2, 2, nexus(2).initiatorPort) })).status, 'no reservation').to.equal(Status.RESERVATION_CONFLICT);
      await p.out(1, RESERVE, { key: K1, type: WE });
      expect((await p.out(2, MOVE, { list: moveList(K2, K1, 1, nexus(3).initiatorPort) })).status, 'not the holder').to.equal(Status.RESERVATION_CONFLICT);
      expect(decodeSense((await p.out(1, MOVE, { list: moveList(K1, K2, 9, nexus(2).initiatorPort) })).sense).fieldPointer).to.equal(18);
      expect(decodeSense((await p.out(1, MOVE, { list: moveList(K1, K2, 1, nexus(1).initiatorPort) })).sense).asc).to.equal(0x26);
      expect((await p.inData(1, READ_RESERVATION)).length).to.equal(24);
    });
  });

  describe('APTPL', () => {
    it('saves state while APTPL is set and a new device server on the same store restores it', async () => {
      const store = new MemoryReservationStore();
      const p = await prRig({ store });
      await p.out(1, REGISTER, { sark: K1, flags: 0x01 });
      await p.out(1, RESERVE, { key: K1, type: WERO });
      expect(store.saves).to.equal(2);
      const after = await prRig({ store });
      expect(await keys(after)).to.deep.equal({ generation: 1, keys: [K1] });
      expect([...await after.inData(2, READ_RESERVATION)].slice(8, 16)).to.deep.equal(be64(K1));
      expect((await after.run(2, [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0])).status, 'still fenced').to.equal(Status.RESERVATION_CONFLICT);
    });

    it('a later REGISTER with APTPL=0 is saved too, and then nothing comes back', async () => {
      const store = new MemoryReservationStore();
      const p = await prRig({ store });
      await p.out(1, REGISTER, { sark: K1, flags: 0x01 });
      await p.out(2, REGISTER, { sark: K2 });
      expect(store.saved.get(0)!.aptpl).to.equal(false);
      await p.out(2, REGISTER, { key: K2, sark: 0x5n });
      expect(store.saves, 'not saved while APTPL stays off').to.equal(2);
      expect(await keys(await prRig({ store }))).to.deep.equal({ generation: 0, keys: [] });
    });

    it('a failed save leaves the state as it was and answers HARDWARE ERROR', async () => {
      const store = new MemoryReservationStore();
      const p = await prRig({ store });
      await p.out(1, REGISTER, { sark: K1, flags: 0x01 });
      store.fail = true;
      expect(sense(await p.out(1, RESERVE, { key: K1, type: EA }))).to.deep.equal([2, 4, 0x44, 0]);
      expect((await p.inData(1, READ_RESERVATION)).length).to.equal(8);
    });
  });
});
