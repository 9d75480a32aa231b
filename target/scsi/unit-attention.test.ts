import { expect } from 'chai';
import { Asc } from './sense.js';
import { Status } from './task.js';
import { MAX_LOST_NEXUSES, UnitAttentions } from './unit-attention.js';
import { RamVolume } from './test-volume.js';
import { decodeSense, exec, nexus, rig, type Rig } from './test-support.js';

const TUR = [0x00, 0, 0, 0, 0, 0];
const REQUEST_SENSE = [0x03, 0, 0, 0, 252, 0];
const REPORT_LUNS = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];

async function ua(r: Rig, o: { n?: number; lun?: number } = {}): Promise<[number, number, number] | 'GOOD'> {
  const res = await exec(r, TUR, { nexus: nexus(o.n ?? 1), lun: o.lun ?? 0 });
  if (res.status === Status.GOOD) return 'GOOD';
  const s = decodeSense(res.sense);
  return [s.key, s.asc, s.ascq];
}

describe('scsi/unit attentions (SAM-5 5.14, SPC-4 5.14)', () => {
  let r: Rig;
  beforeEach(() => {
    r = rig({}, {}, [[1, { volume: new RamVolume(), serial: 'LU1' }]]);
  });

  it('reports POWER ON, RESET OCCURRED once to each nexus that first appears', async () => {
    expect(await ua(r)).to.deep.equal([6, 0x29, 0x00]);
    expect(await ua(r)).to.equal('GOOD');
    expect(await ua(r, { n: 2 })).to.deep.equal([6, 0x29, 0x00]);
    expect(await ua(r, { n: 2 })).to.equal('GOOD');
  });

  it('keeps them per logical unit', async () => {
    expect(await ua(r, { lun: 0 })).to.deep.equal([6, 0x29, 0x00]);
    expect(await ua(r, { lun: 1 })).to.deep.equal([6, 0x29, 0x00]);
    expect(await ua(r, { lun: 1 })).to.equal('GOOD');
  });

  it('INQUIRY, REPORT LUNS and REQUEST SENSE neither report nor clear a unit attention', async () => {
    expect((await exec(r, [0x12, 0, 0, 0, 96, 0])).status).to.equal(Status.GOOD);
    expect((await exec(r, REPORT_LUNS)).status).to.equal(Status.GOOD);
    expect((await exec(r, REQUEST_SENSE)).status).to.equal(Status.GOOD);
    expect(await ua(r)).to.deep.equal([6, 0x29, 0x00]);
  });

  it('REQUEST SENSE answers NO SENSE with GOOD and preserves the unit attention (SPC-4 5.14 option a)', async () => {
    const res = await exec(r, REQUEST_SENSE);
    expect(res.status).to.equal(Status.GOOD);
    const s = decodeSense(res.data);
    expect([s.responseCode, s.key, s.asc, s.ascq, res.data!.length]).to.deep.equal([0x70, 0, 0, 0, 18]);
    expect(await ua(r)).to.deep.equal([6, 0x29, 0x00]);
    expect(await ua(r)).to.equal('GOOD');
    expect((await exec(r, [0x03, 0, 0, 0, 4, 0])).data!.length).to.equal(4);
  });

  it('REQUEST SENSE refuses descriptor format', async () => {
    const s = decodeSense((await exec(r, [0x03, 0x01, 0, 0, 252, 0])).sense);
    expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 1, 0]);
  });

  it('reports a pending unit attention before refusing an unsupported opcode', async () => {
    const first = decodeSense((await exec(r, [0xc0, 0, 0, 0, 0, 0])).sense);
    expect([first.key, first.asc]).to.deep.equal([6, 0x29]);
    const then = decodeSense((await exec(r, [0xc0, 0, 0, 0, 0, 0])).sense);
    expect([then.key, then.asc]).to.deep.equal([5, 0x20]);
  });

  it('LUN RESET: BUS DEVICE RESET FUNCTION OCCURRED for every nexus of that LU, issuer included', async () => {
    await ua(r, { n: 1 });
    await ua(r, { n: 2 });
    await ua(r, { n: 1, lun: 1 });
    r.server.lunReset(0, nexus(1));
    expect(await ua(r, { n: 1 })).to.deep.equal([6, 0x29, 0x03]);
    expect(await ua(r, { n: 2 })).to.deep.equal([6, 0x29, 0x03]);
    expect(await ua(r, { n: 1, lun: 1 })).to.equal('GOOD');
    expect(await ua(r, { n: 3 })).to.deep.equal([6, 0x29, 0x00]);
  });

  it('TARGET RESET reaches every logical unit', async () => {
    await ua(r, { lun: 0 });
    await ua(r, { lun: 1 });
    r.server.targetReset(nexus(2));
    expect(await ua(r, { lun: 0 })).to.deep.equal([6, 0x29, 0x03]);
    expect(await ua(r, { lun: 1 })).to.deep.equal([6, 0x29, 0x03]);
  });

  it('a reset supersedes queued conditions; others queue in order without duplicates', async () => {
    await ua(r, { n: 1 });
    await ua(r, { n: 2 });
    const lu = r.server.logicalUnit(0)!;
    lu.modeParametersChanged(nexus(2));
    lu.modeParametersChanged(nexus(2));
    r.server.lunReset(0, nexus(2));
    expect(await ua(r)).to.deep.equal([6, 0x29, 0x03]);
    expect(await ua(r)).to.equal('GOOD');
    lu.modeParametersChanged(nexus(2));
    lu.unitAttentions.establishFor(nexus(1).id, 0x2a01);
    expect(await ua(r)).to.deep.equal([6, 0x2a, 0x01]);
    expect(await ua(r)).to.equal('GOOD');
  });

  it('I_T nexus loss: I_T NEXUS LOSS OCCURRED when that nexus comes back, others untouched', async () => {
    await ua(r, { n: 1 });
    await ua(r, { n: 2 });
    r.server.nexusLost(nexus(1));
    expect(await ua(r, { n: 2 })).to.equal('GOOD');
    expect(await ua(r, { n: 1 })).to.deep.equal([6, 0x29, 0x07]);
    expect(await ua(r, { n: 1 })).to.equal('GOOD');
  });

  it('a nexus lost before it ever talked to the LU starts with POWER ON', async () => {
    r.server.nexusLost(nexus(5));
    expect(await ua(r, { n: 5 })).to.deep.equal([6, 0x29, 0x00]);
  });

  it('a LUN without a logical unit has no unit attentions', async () => {
    const s = decodeSense((await exec(r, TUR, { lun: 9 })).sense);
    expect([s.key, s.asc, s.ascq]).to.deep.equal([5, 0x25, 0x00]);
    r.server.lunReset(9, nexus(1));
  });
});

describe('scsi/unit-attention: memory bound', () => {
  it('forgets the oldest lost nexuses beyond the bound; a forgotten one that returns gets POWER ON, RESET', () => {
    const ua = new UnitAttentions();
    for (let i = 0; i < MAX_LOST_NEXUSES + 50; i++) {
      ua.arrive(`n${i}`);
      ua.take(`n${i}`);
      ua.lost(`n${i}`);
    }
    expect(ua.size).to.equal(MAX_LOST_NEXUSES);
    expect(ua.knows('n0')).to.equal(false);
    expect(ua.peek(`n${MAX_LOST_NEXUSES + 49}`)).to.equal(Asc.I_T_NEXUS_LOSS_OCCURRED);
    ua.arrive('n0');
    expect(ua.take('n0')).to.equal(Asc.POWER_ON_RESET_OCCURRED);
    // A nexus that came back is live again and is never evicted as lost.
    ua.arrive('live');
    ua.lost('live');
    ua.arrive('live');
    for (let i = 0; i < MAX_LOST_NEXUSES + 10; i++) {
      ua.arrive(`m${i}`);
      ua.lost(`m${i}`);
    }
    expect(ua.knows('live')).to.equal(true);
  });
});
