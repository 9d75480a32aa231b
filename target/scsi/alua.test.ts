import { expect } from 'chai';
import { prRig } from './pr-test-support.js';
import { Status } from './task.js';
import { decodeSense } from './test-support.js';

const rtpg = (format: number, allocation = 0x100) => [0xa3, (format << 5) | 0x0a, 0, 0, 0, 0, 0, 0, allocation >> 8, allocation & 0xff, 0, 0];

describe('scsi/alua: implicit ALUA, one active/optimized port group per target port', () => {
  it('REPORT TARGET PORT GROUPS, length-only header: every port its own group', async () => {
    const r = await prRig({ targetPorts: [2, 1] });
    const res = await r.run(1, rtpg(0));
    expect(res.status).to.equal(Status.GOOD);
    expect([...res.data!]).to.deep.equal([
      0, 0, 0, 24,
      0x00, 0x01, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1,
      0x00, 0x01, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2,
    ]);
  });

  it('REPORT TARGET PORT GROUPS, extended header (format 001b), cut to the allocation length', async () => {
    const r = await prRig();
    const res = await r.run(1, rtpg(1));
    expect([...res.data!]).to.deep.equal([0, 0, 0, 16, 0x10, 0, 0, 0, 0x00, 0x01, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
    expect([...(await r.run(1, rtpg(1, 4))).data!]).to.deep.equal([0, 0, 0, 16]);
  });

  it('refuses other parameter data formats at byte 1 bit 7', async () => {
    const r = await prRig();
    const s = decodeSense((await r.run(1, rtpg(2))).sense);
    expect([s.key, s.asc, s.cd, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, true, 1, 7]);
  });

  it('VPD 83h names the port and the group the command came through', async () => {
    const r = await prRig({ targetPorts: [1, 2] });
    const d = (await r.run(1, [0x12, 1, 0x83, 1, 0, 0], 2)).data!;
    const found: Array<[number, number[]]> = [];
    for (let at = 4; at < d.length; at += 4 + d[at + 3]) found.push([d[at + 1] & 0x3f, [...d.subarray(at + 4, at + 4 + d[at + 3])]]);
    expect(found.filter(([t]) => t === 0x14 || t === 0x15)).to.deep.equal([[0x14, [0, 0, 0, 2]], [0x15, [0, 0, 0, 2]]]);
  });
});
