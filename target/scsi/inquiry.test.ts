import { expect } from 'chai';
import { Status } from './task.js';
import { TARGET, decodeSense, exec, nexus, readyRig, rig, type Rig } from './test-support.js';

const NAA = 0x6001405abcdef0123456789abcdef012n;

function inq(evpd: boolean, page: number, alloc = 0xffff): number[] {
  return [0x12, evpd ? 1 : 0, page, alloc >> 8, alloc & 0xff, 0];
}

function text(b: Uint8Array): string {
  return String.fromCharCode(...b);
}

interface Designator {
  protocol: number;
  codeSet: number;
  piv: boolean;
  assoc: number;
  type: number;
  body: Uint8Array;
}

function designators(page: Uint8Array): Designator[] {
  const out: Designator[] = [];
  const end = 4 + ((page[2] << 8) | page[3]);
  expect(end).to.equal(page.length);
  for (let at = 4; at < end; ) {
    const len = page[at + 3];
    out.push({
      protocol: page[at] >> 4,
      codeSet: page[at] & 0x0f,
      piv: (page[at + 1] & 0x80) !== 0,
      assoc: (page[at + 1] >> 4) & 0x03,
      type: page[at + 1] & 0x0f,
      body: page.subarray(at + 4, at + 4 + len),
    });
    at += 4 + len;
  }
  return out;
}

describe('scsi/inquiry: standard data and VPD pages', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await readyRig({ blockSize: 512, maxTransferBlocks: 256 }, { naa: NAA, serial: 'SN-0042', product: 'TEST DISK' });
  });

  it('returns 96 bytes of SPC-4 standard data', async () => {
    const res = await exec(r, inq(false, 0, 260));
    expect(res.status).to.equal(Status.GOOD);
    const d = res.data!;
    expect(d.length).to.equal(96);
    expect(d[0], 'PQ 000b, direct access').to.equal(0x00);
    expect(d[1], 'not removable').to.equal(0x00);
    expect(d[2], 'VERSION SPC-4').to.equal(0x06);
    expect(d[3], 'HISUP, response data format 2, no NORMACA').to.equal(0x12);
    expect(d[4], 'ADDITIONAL LENGTH').to.equal(91);
    expect(d[5], 'TPGS 01b (implicit ALUA), 3PC (EXTENDED COPY), no PROTECT').to.equal(0x18);
    expect(d[7], 'CMDQUE').to.equal(0x02);
    expect(text(d.subarray(8, 16))).to.equal('KURA    ');
    expect(text(d.subarray(16, 32))).to.equal('TEST DISK       ');
    expect(text(d.subarray(32, 36))).to.equal('0001');
    const versions = [];
    for (let i = 58; i < 74; i += 2) versions.push((d[i] << 8) | d[i + 1]);
    expect(versions).to.deep.equal([0x00a0, 0x0960, 0x0460, 0x04c0, 0, 0, 0, 0]);
  });

  it('returns at most the allocation length (libiscsi AllocLength 5..255)', async () => {
    for (const n of [0, 5, 36, 95, 96, 255, 512]) {
      const res = await exec(r, inq(false, 0, n));
      expect(res.status).to.equal(Status.GOOD);
      expect(res.data!.length).to.equal(Math.min(n, 96));
    }
  });

  it('refuses a page code without EVPD and the obsolete CMDDT bit', async () => {
    let s = decodeSense((await exec(r, inq(false, 1, 256))).sense);
    expect([s.key, s.asc, s.ascq, s.cd, s.fieldPointer, s.bpv]).to.deep.equal([5, 0x24, 0, true, 2, false]);
    s = decodeSense((await exec(r, [0x12, 0x02, 0, 0, 255, 0])).sense);
    expect([s.key, s.asc, s.fieldPointer, s.bitPointer], 'CMDDT').to.deep.equal([5, 0x24, 1, 1]);
    s = decodeSense((await exec(r, [0x12, 0x04, 0, 0, 255, 0])).sense);
    expect([s.key, s.asc, s.fieldPointer, s.bitPointer], 'reserved 7:2').to.deep.equal([5, 0x24, 1, 7]);
  });

  it('VPD 00h lists the supported pages in ascending order, and each of them answers', async () => {
    const d = (await exec(r, inq(true, 0x00))).data!;
    expect([...d]).to.deep.equal([0, 0x00, 0, 5, 0x00, 0x80, 0x83, 0xb0, 0xb1]);
    for (const p of d.subarray(4)) {
      const res = await exec(r, inq(true, p));
      expect(res.status, `page ${p}`).to.equal(Status.GOOD);
      expect(res.data![1]).to.equal(p);
    }
  });

  it('refuses a VPD page it does not have (B2h without thin provisioning)', async () => {
    const s = decodeSense((await exec(r, inq(true, 0xb2))).sense);
    expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 2]);
  });

  it('VPD 80h carries the serial number', async () => {
    const d = (await exec(r, inq(true, 0x80))).data!;
    expect([...d.subarray(0, 4)]).to.deep.equal([0, 0x80, 0, 7]);
    expect(text(d.subarray(4))).to.equal('SN-0042');
  });

  it('VPD 83h: NAA, T10 vendor ID, relative port, port group, and iSCSI names', async () => {
    const res = await exec(r, inq(true, 0x83), { nexus: nexus(1, 3) });
    const ds = designators(res.data!);
    expect(ds.map((d) => [d.assoc, d.type, d.codeSet, d.piv, d.protocol])).to.deep.equal([
      [0, 3, 1, false, 0],
      [0, 1, 2, false, 0],
      [1, 4, 1, true, 5],
      [1, 5, 1, true, 5],
      [1, 8, 3, true, 5],
      [2, 8, 3, true, 5],
    ]);
    expect(Buffer.from(ds[0].body).toString('hex')).to.equal(NAA.toString(16));
    expect(text(ds[1].body)).to.equal('KURA    TEST DISK       SN-0042');
    expect([...ds[2].body]).to.deep.equal([0, 0, 0, 3]);
    expect([...ds[3].body], 'each target port is its own port group').to.deep.equal([0, 0, 0, 3]);
    const portName = `${TARGET},t,0x0003`;
    expect(ds[4].body.length % 4).to.equal(0);
    expect(ds[4].body.length).to.be.greaterThan(portName.length);
    expect(text(ds[4].body).replace(/\0+$/, '')).to.equal(portName);
    expect(text(ds[5].body).replace(/\0+$/, '')).to.equal(TARGET);
    expect(ds[5].body[TARGET.length]).to.equal(0);
  });

  it('VPD 83h without an NAA id starts with the T10 vendor ID designator', async () => {
    const plain = await readyRig({}, { serial: 'X1' });
    const ds = designators((await exec(plain, inq(true, 0x83))).data!);
    expect([ds[0].assoc, ds[0].type]).to.deep.equal([0, 1]);
  });

  it('VPD B0h: SBC-3 page length, max transfer = maxTransferBlocks, 4 KiB granularity', async () => {
    const d = (await exec(r, inq(true, 0xb0))).data!;
    expect(d.length).to.equal(64);
    expect([d[1], d[2], d[3]]).to.deep.equal([0xb0, 0, 0x3c]);
    expect((d[6] << 8) | d[7], 'OPTIMAL TRANSFER LENGTH GRANULARITY').to.equal(8);
    expect(Buffer.from(d).readUInt32BE(8), 'MAXIMUM TRANSFER LENGTH').to.equal(256);
    expect(Buffer.from(d).readUInt32BE(12), 'OPTIMAL TRANSFER LENGTH').to.equal(256);
    expect(Buffer.from(d).readUInt32BE(20), 'MAXIMUM UNMAP LBA COUNT').to.equal(0);
    expect(Buffer.from(d).readUInt32BE(24), 'MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT').to.equal(0);
    expect(d[4] & 0x01, 'WSNZ').to.equal(0);
  });

  it('VPD B0h granularity follows the configuration', async () => {
    const g = await readyRig({ blockSize: 4096 }, { optimalTransferGranularity: 16 });
    const d = (await exec(g, inq(true, 0xb0))).data!;
    expect((d[6] << 8) | d[7]).to.equal(16);
    const four = await readyRig({ blockSize: 4096 });
    expect((await exec(four, inq(true, 0xb0))).data![7]).to.equal(1);
  });

  it('VPD B1h: non-rotating medium', async () => {
    const d = (await exec(r, inq(true, 0xb1))).data!;
    expect(d.length).to.equal(64);
    expect([d[1], d[3], d[4], d[5]]).to.deep.equal([0xb1, 0x3c, 0x00, 0x01]);
  });

  it('a LUN without a logical unit: PQ 011b / type 1Fh, VPD 00h only', async () => {
    const std = await exec(r, inq(false, 0, 96), { lun: 7 });
    expect(std.status).to.equal(Status.GOOD);
    expect(std.data![0]).to.equal(0x7f);
    expect(std.data!.length).to.equal(96);
    expect([...(await exec(r, inq(true, 0), { lun: 7 })).data!]).to.deep.equal([0x7f, 0, 0, 1, 0]);
    const s = decodeSense((await exec(r, inq(true, 0x83), { lun: 7 })).sense);
    expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 2]);
  });

  it('neither reports nor clears a unit attention', async () => {
    const fresh = rig();
    expect((await exec(fresh, inq(false, 0, 96))).status).to.equal(Status.GOOD);
    const s = decodeSense((await exec(fresh, [0, 0, 0, 0, 0, 0])).sense);
    expect([s.key, s.asc, s.ascq]).to.deep.equal([6, 0x29, 0x00]);
  });

  it('rejects identification that is not printable ASCII or too long', () => {
    expect(() => rig({}, { vendor: 'TOO LONG VENDOR' })).to.throw(/vendor/);
    expect(() => rig({}, { product: 'caf\u00e9' })).to.throw(/product/);
    expect(() => rig({}, { serial: '' })).to.throw(/serial/);
    expect(() => rig({}, { naa: 0x5001405abcdef012n })).to.throw(/NAA 6/);
  });
});
