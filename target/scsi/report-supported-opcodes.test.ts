import { expect } from 'chai';
import { COMMANDS } from './dispatch.js';
import { Status } from './task.js';
import { be16, be32, decodeSense, exec, readyRig, type Rig } from './test-support.js';

function rsoc(options: number, opcode = 0, sa = 0, alloc = 0xffff, rctd = false): number[] {
  return [0xa3, 0x0c, (rctd ? 0x80 : 0) | options, opcode, ...be16(sa), ...be32(alloc), 0, 0];
}

interface Descriptor {
  opcode: number;
  sa: number;
  servactv: boolean;
  ctdp: boolean;
  cdbLength: number;
}

function parseAll(d: Uint8Array, size: number): Descriptor[] {
  const length = ((d[0] << 24) >>> 0) + (d[1] << 16) + (d[2] << 8) + d[3];
  expect(length % size).to.equal(0);
  expect(d.length).to.equal(4 + length);
  const out: Descriptor[] = [];
  for (let at = 4; at < d.length; at += size) {
    expect(d[at + 1], 'reserved').to.equal(0);
    out.push({
      opcode: d[at],
      sa: (d[at + 2] << 8) | d[at + 3],
      servactv: (d[at + 5] & 0x01) !== 0,
      ctdp: (d[at + 5] & 0x02) !== 0,
      cdbLength: (d[at + 6] << 8) | d[at + 7],
    });
  }
  return out;
}

/** The CDB usage data RSOC reports for one command. */
async function usageOf(r: Rig, d: Descriptor): Promise<Uint8Array> {
  const res = await exec(r, rsoc(d.servactv ? 2 : 1, d.opcode, d.sa));
  expect(res.status).to.equal(Status.GOOD);
  const data = res.data!;
  expect(data[1] & 0x07, 'SUPPORT').to.equal(0b011);
  const n = (data[2] << 8) | data[3];
  expect(data.length).to.equal(4 + n);
  return data.subarray(4, 4 + n);
}

describe('scsi/report-supported-opcodes + dispatch: one table for both', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await readyRig();
  });

  it('reports every command of the table, sorted, with SERVACTV only for service-action opcodes', async () => {
    const res = await exec(r, rsoc(0));
    expect(res.status).to.equal(Status.GOOD);
    const ds = parseAll(res.data!, 8);
    const lu = r.server.logicalUnit(0)!;
    expect(ds.map((d) => [d.opcode, d.sa])).to.deep.equal(
      COMMANDS.filter((c) => c.availableOn?.(lu) ?? true).sort((a, b) => a.opcode - b.opcode || (a.serviceAction ?? 0) - (b.serviceAction ?? 0))
        .map((c) => [c.opcode, c.serviceAction ?? 0]),
    );
    for (const d of ds) {
      expect(d.ctdp).to.equal(false);
      if (!d.servactv) expect(d.sa).to.equal(0);
      expect(d.servactv).to.equal([0x48, 0x5e, 0x5f, 0x83, 0x84, 0x9e, 0xa3].includes(d.opcode));
    }
    const rc16 = ds.find((d) => d.opcode === 0x9e)!;
    expect([rc16.sa, rc16.cdbLength]).to.deep.equal([0x10, 16]);
  });

  it('adds a 12-byte command timeouts descriptor to every command with RCTD', async () => {
    const res = await exec(r, rsoc(0, 0, 0, 0xffff, true));
    const d = res.data!;
    const ds = parseAll(d, 20);
    expect(ds.every((x) => x.ctdp)).to.equal(true);
    for (let at = 4; at < d.length; at += 20) expect((d[at + 8] << 8) | d[at + 9]).to.equal(0x0a);
  });

  it('one-command forms: 001b refuses service-action opcodes, 010b refuses the others (libiscsi OneCommand)', async () => {
    const all = parseAll((await exec(r, rsoc(0))).data!, 8);
    for (const d of all) {
      const one = await exec(r, rsoc(1, d.opcode, d.sa));
      const two = await exec(r, rsoc(2, d.opcode, d.sa));
      const [ok, refused] = d.servactv ? [two, one] : [one, two];
      expect(ok.status, `opcode ${d.opcode}`).to.equal(Status.GOOD);
      expect(ok.data![4], 'CDB usage byte 0 is the opcode').to.equal(d.opcode);
      expect((ok.data![2] << 8) | ok.data![3]).to.equal(d.cdbLength);
      const s = decodeSense(refused.sense);
      expect([refused.status, s.key, s.asc, s.ascq, s.fieldPointer, s.bitPointer]).to.deep.equal([2, 5, 0x24, 0, 2, 2]);
    }
  });

  it('reports unsupported opcodes and service actions as SUPPORT 001b', async () => {
    // UNMAP and SANITIZE BLOCK ERASE exist on thin LUs only; READ LONG(16) nowhere.
    expect([...(await exec(r, rsoc(1, 0x42))).data!]).to.deep.equal([0, 0b001, 0, 0]);
    expect([...(await exec(r, rsoc(2, 0x48, 0x02))).data!]).to.deep.equal([0, 0b001, 0, 0]);
    expect([...(await exec(r, rsoc(2, 0x9e, 0x11))).data!]).to.deep.equal([0, 0b001, 0, 0]);
    expect([...(await exec(r, rsoc(3, 0x28, 0x55))).data!.subarray(0, 5)]).to.deep.equal([0, 0b011, 0, 10, 0x28]);
  });

  it('one-command with RCTD sets CTDP and appends the timeouts descriptor', async () => {
    const d = (await exec(r, rsoc(1, 0x28, 0, 0xffff, true))).data!;
    expect(d[1]).to.equal(0x80 | 0b011);
    expect(d.length).to.equal(4 + 10 + 12);
    expect((d[14] << 8) | d[15]).to.equal(0x0a);
  });

  it('announces DPO/FUA for READ/WRITE and DPO for VERIFY, matching DPOFUA in MODE SENSE', async () => {
    for (const op of [0x28, 0x2a, 0x88, 0x8a, 0xa8, 0xaa]) {
      const u = await usageOf(r, { opcode: op, sa: 0, servactv: false, ctdp: false, cdbLength: 0 });
      expect(u[1] & 0x18, `opcode ${op}`).to.equal(0x18);
    }
    const v = await usageOf(r, { opcode: 0x2f, sa: 0, servactv: false, ctdp: false, cdbLength: 0 });
    expect(v[1] & 0x10).to.equal(0x10);
    const ms = await exec(r, [0x1a, 0, 0x3f, 0, 255, 0]);
    expect(ms.data![2] & 0x10).to.equal(0x10);
  });

  it('refuses with a field pointer exactly the bits the reported usage data leaves out', async () => {
    const all = parseAll((await exec(r, rsoc(0))).data!, 8);
    for (const d of all) {
      const usage = await usageOf(r, d);
      for (let byte = 1; byte < usage.length; byte++) {
        for (let bit = 0; bit < 8; bit++) {
          if (usage[byte] & (1 << bit)) continue;
          if (d.servactv && byte === 1 && bit < 5) continue; // the SERVICE ACTION field itself
          const cdb = new Uint8Array(usage.length);
          cdb[0] = d.opcode;
          if (d.servactv) cdb[1] = d.sa;
          cdb[byte] |= 1 << bit;
          const res = await exec(r, cdb);
          const s = decodeSense(res.sense);
          const where = `opcode ${d.opcode.toString(16)} byte ${byte} bit ${bit}`;
          expect([res.status, s.key, s.asc, s.ascq], where).to.deep.equal([2, 5, 0x24, 0]);
          expect([s.sksv, s.cd, s.bpv, s.fieldPointer], where).to.deep.equal([true, true, true, byte]);
          // The bit pointer names the top of the field (a run of unused bits) the bit belongs to.
          expect(s.bitPointer, where).to.be.at.least(bit);
          for (let b = bit + 1; b <= s.bitPointer; b++) expect(usage[byte] & (1 << b), where).to.equal(0);
          if (byte === usage.length - 1) expect(s.bitPointer, where).to.equal([0, 1, 2, 5, 5, 5, 7, 7][bit]);
          if (d.opcode === 0x28 && byte === 1) expect(s.bitPointer, where).to.equal([0, -1, 2, -1, -1, 7, 7, 7][bit]);
        }
      }
    }
  });

  it('RDPROTECT / WRPROTECT / VRPROTECT 1..7 are INVALID FIELD IN CDB pointing at byte 1 bit 7', async () => {
    for (const op of [0x28, 0x2a, 0x2f, 0x88, 0x8a, 0x8f, 0xa8, 0xaa, 0xaf]) {
      const len = op >= 0xa0 ? 12 : op >= 0x80 ? 16 : 10;
      for (let p = 1; p < 8; p++) {
        const cdb = new Uint8Array(len);
        cdb[0] = op;
        cdb[1] = p << 5;
        const s = decodeSense((await exec(r, cdb, { dataOut: true, expectedLength: 512 })).sense);
        expect([s.key, s.asc, s.fieldPointer, s.bitPointer], `op ${op} protect ${p}`).to.deep.equal([5, 0x24, 1, 7]);
      }
    }
  });

  it('answers INVALID COMMAND OPERATION CODE for every opcode not in the table', async () => {
    const known = new Set(COMMANDS.map((c) => c.opcode));
    for (let op = 0; op < 256; op++) {
      if (known.has(op)) continue;
      const res = await exec(r, [op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
      const s = decodeSense(res.sense);
      expect([res.status, s.key, s.asc, s.ascq], `opcode ${op}`).to.deep.equal([2, 5, 0x20, 0]);
    }
  });

  it('answers INVALID FIELD IN CDB (byte 1, bit 4) for an unknown service action of a known opcode', async () => {
    for (const [op, sa] of [[0x9e, 0x11], [0xa3, 0x1f], [0x5e, 0x04], [0x5f, 0x08]]) {
      const s = decodeSense((await exec(r, [op, sa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])).sense);
      expect([s.key, s.asc, s.fieldPointer, s.bitPointer, s.cd]).to.deep.equal([5, 0x24, 1, 4, true]);
    }
  });

  it('ignores the transport padding after the CDB and refuses a CDB shorter than its command', async () => {
    const padded = [0x00, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    expect((await exec(r, padded)).status).to.equal(Status.GOOD);
    const s = decodeSense((await exec(r, [0x28, 0, 0, 0])).sense);
    expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 0]);
  });

  it('refuses NACA in the control byte (no ACA support)', async () => {
    const s = decodeSense((await exec(r, [0x00, 0, 0, 0, 0, 0x04])).sense);
    expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 5, 2]);
    const link = decodeSense((await exec(r, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0x01])).sense);
    expect([link.key, link.asc, link.fieldPointer, link.bitPointer]).to.deep.equal([5, 0x24, 9, 0]);
  });

  it('refuses reserved REPORTING OPTIONS values and cuts the data at the allocation length', async () => {
    const s = decodeSense((await exec(r, rsoc(4))).sense);
    expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 2, 2]);
    expect((await exec(r, rsoc(0, 0, 0, 10))).data!.length).to.equal(10);
    expect((await exec(r, rsoc(0, 0, 0, 0))).data!.length).to.equal(0);
  });
});
