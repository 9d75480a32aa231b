import { expect } from 'chai';
import { Status } from './task.js';
import {
  ScriptedIo, decodeSense, exec, geometryOnlyVolume, nexus, pattern, readyRig, rw10, serverFor, type Rig,
} from './test-support.js';

const CACHING = [0x08, 0x12, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const CONTROL = [0x0a, 0x0a, 0x02, 0x10, 0x00, 0x00, 0, 0, 0xff, 0xff, 0, 0];
const IEC = [0x1c, 0x0a, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0];

function sense6(page: number, opts: { pc?: number; dbd?: boolean; subpage?: number; alloc?: number } = {}): number[] {
  return [0x1a, opts.dbd ? 0x08 : 0, ((opts.pc ?? 0) << 6) | page, opts.subpage ?? 0, opts.alloc ?? 255, 0];
}

function sense10(page: number, opts: { pc?: number; dbd?: boolean; llbaa?: boolean; alloc?: number } = {}): number[] {
  const alloc = opts.alloc ?? 0xffff;
  return [0x5a, (opts.dbd ? 0x08 : 0) | (opts.llbaa ? 0x10 : 0), ((opts.pc ?? 0) << 6) | page, 0, 0, 0, 0, alloc >> 8, alloc & 0xff, 0];
}

async function select6(r: Rig, list: number[], o: { sp?: boolean; pf?: boolean; n?: number; expectedLength?: number } = {}) {
  const io = new ScriptedIo(Uint8Array.from(list));
  const cdb = [0x15, (o.pf ?? true ? 0x10 : 0) | (o.sp ? 0x01 : 0), 0, 0, list.length, 0];
  return exec(r, cdb, { io, dataOut: true, expectedLength: o.expectedLength ?? list.length, nexus: nexus(o.n ?? 1) });
}

async function select10(r: Rig, list: number[]) {
  const io = new ScriptedIo(Uint8Array.from(list));
  return exec(r, [0x55, 0x10, 0, 0, 0, 0, 0, list.length >> 8, list.length & 0xff, 0], { io, dataOut: true, expectedLength: list.length });
}

function controlWithSwp(swp: boolean): number[] {
  const p = [...CONTROL];
  if (swp) p[4] |= 0x08;
  return p;
}

function illegal(res: { status: number; sense?: Uint8Array }, asc: number, ascq = 0) {
  expect(res.status).to.equal(Status.CHECK_CONDITION);
  const s = decodeSense(res.sense);
  expect([s.key, s.asc, s.ascq]).to.deep.equal([5, asc, ascq]);
  return s;
}

describe('scsi/mode: MODE SENSE and MODE SELECT', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await readyRig({ blockSize: 512, blockCount: 2048, writeCache: true });
  });

  it('MODE SENSE(6) 3Fh: header, short block descriptor, caching, control, IEC pages', async () => {
    const res = await exec(r, sense6(0x3f));
    expect(res.status).to.equal(Status.GOOD);
    const d = [...res.data!];
    const total = 4 + 8 + CACHING.length + CONTROL.length + IEC.length;
    expect(d.slice(0, 4)).to.deep.equal([total - 1, 0x00, 0x10, 8]);
    expect(d.slice(4, 12)).to.deep.equal([0, 0, 0x08, 0x00, 0, 0, 0x02, 0x00]);
    expect(d.slice(12)).to.deep.equal([...CACHING, ...CONTROL, ...IEC]);
  });

  it('reports WCE exactly as the volume caches', async () => {
    const wt = await readyRig({ writeCache: false });
    const d = (await exec(wt, sense6(0x08, { dbd: true }))).data!;
    expect([...d]).to.deep.equal([3 + CACHING.length, 0, 0x10, 0, 0x08, 0x12, 0x00, ...CACHING.slice(3)]);
  });

  it('sets WP in the device-specific parameter for a read-only volume', async () => {
    const ro = await readyRig({ readOnly: true });
    expect((await exec(ro, sense6(0x3f))).data![2]).to.equal(0x90);
    expect((await exec(ro, sense10(0x3f))).data![3]).to.equal(0x90);
  });

  it('MODE SENSE(10) with LLBAA: long LBA block descriptor and LONGLBA', async () => {
    const d = [...(await exec(r, sense10(0x0a, { llbaa: true }))).data!];
    const total = 8 + 16 + CONTROL.length;
    expect(d.slice(0, 8)).to.deep.equal([0, total - 2, 0, 0x10, 0x01, 0, 0, 16]);
    expect(d.slice(8, 24)).to.deep.equal([0, 0, 0, 0, 0, 0, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0x02, 0x00]);
    expect(d.slice(24)).to.deep.equal(CONTROL);
  });

  it('MODE SENSE(10) with DBD: no block descriptor', async () => {
    const d = [...(await exec(r, sense10(0x1c, { dbd: true, llbaa: true }))).data!];
    expect(d).to.deep.equal([0, 6 + IEC.length, 0, 0x10, 0, 0, 0, 0, ...IEC]);
  });

  it('caps the short block descriptor at FFFFFFFFh blocks', async () => {
    const server = serverFor(geometryOnlyVolume(2 ** 33));
    await exec(server, [0, 0, 0, 0, 0, 0]);
    const d = [...(await exec(server, sense6(0x08))).data!];
    expect(d.slice(4, 8)).to.deep.equal([0xff, 0xff, 0xff, 0xff]);
    const l = [...(await exec(server, sense10(0x08, { llbaa: true }))).data!];
    expect(l.slice(8, 16)).to.deep.equal([0, 0, 0, 2, 0, 0, 0, 0]);
  });

  it('PC=01b reports only SWP as changeable, PC=10b the defaults', async () => {
    const ch = [...(await exec(r, sense6(0x3f, { pc: 1 }))).data!];
    expect(ch.slice(0, 4)).to.deep.equal([ch.length - 1, 0, 0, 8]);
    expect(ch.slice(4, 12)).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(ch.slice(12)).to.deep.equal([
      0x08, 0x12, ...new Array(18).fill(0),
      0x0a, 0x0a, 0, 0, 0x08, 0, 0, 0, 0, 0, 0, 0,
      0x1c, 0x0a, ...new Array(10).fill(0),
    ]);
    const df = [...(await exec(r, sense6(0x3f, { pc: 2 }))).data!];
    expect(df.slice(12)).to.deep.equal([...CACHING, ...CONTROL, ...IEC]);
  });

  it('PC=11b: SAVING PARAMETERS NOT SUPPORTED', async () => {
    const s = illegal(await exec(r, sense6(0x08, { pc: 3 })), 0x39);
    expect([s.cd, s.fieldPointer, s.bitPointer]).to.deep.equal([true, 2, 7]);
  });

  it('refuses pages it does not have and subpages', async () => {
    let s = illegal(await exec(r, sense6(0x01)), 0x24);
    expect([s.fieldPointer, s.bitPointer]).to.deep.equal([2, 5]);
    s = illegal(await exec(r, sense6(0x0a, { subpage: 1 })), 0x24);
    expect(s.fieldPointer).to.equal(3);
    expect((await exec(r, sense6(0x3f, { subpage: 0xff }))).status).to.equal(Status.GOOD);
  });

  it('returns at most the allocation length (libiscsi modesense6 residuals)', async () => {
    expect((await exec(r, sense6(0x3f, { alloc: 4 }))).data!.length).to.equal(4);
    expect((await exec(r, sense10(0x3f, { alloc: 3 }))).data!.length).to.equal(3);
  });

  it('MODE SELECT(6) sets SWP: writes become SOFTWARE WRITE PROTECTED, WP shows, others get a UA', async () => {
    await exec(r, [0, 0, 0, 0, 0, 0], { nexus: nexus(2) }); // nexus 2 consumes its POWER ON
    expect((await select6(r, [0, 0, 0, 0, ...controlWithSwp(true)])).status).to.equal(Status.GOOD);
    expect((await exec(r, sense6(0x0a, { dbd: true }))).data![4 + 4]).to.equal(0x08);
    expect((await exec(r, sense6(0x0a))).data![2]).to.equal(0x90);
    const w = await exec(r, rw10(0x2a, 0, 1), { io: new ScriptedIo(pattern(512)), dataOut: true, expectedLength: 512 });
    expect([decodeSense(w.sense).key, decodeSense(w.sense).asc, decodeSense(w.sense).ascq]).to.deep.equal([7, 0x27, 0x02]);
    // The nexus that changed the parameters gets no unit attention; nexus 2 does.
    expect((await exec(r, [0, 0, 0, 0, 0, 0])).status).to.equal(Status.GOOD);
    const ua = decodeSense((await exec(r, [0, 0, 0, 0, 0, 0], { nexus: nexus(2) })).sense);
    expect([ua.key, ua.asc, ua.ascq]).to.deep.equal([6, 0x2a, 0x01]);
    expect((await select10(r, [0, 0, 0, 0, 0, 0, 0, 0, ...controlWithSwp(false)])).status).to.equal(Status.GOOD);
    const again = await exec(r, rw10(0x2a, 0, 1), { io: new ScriptedIo(pattern(512)), dataOut: true, expectedLength: 512 });
    expect(again.status).to.equal(Status.GOOD);
  });

  it('restating the current values changes nothing and raises no unit attention', async () => {
    await exec(r, [0, 0, 0, 0, 0, 0], { nexus: nexus(2) });
    expect((await select6(r, [0, 0, 0, 0, ...CACHING, ...CONTROL])).status).to.equal(Status.GOOD);
    expect((await exec(r, [0, 0, 0, 0, 0, 0], { nexus: nexus(2) })).status).to.equal(Status.GOOD);
  });

  it('accepts a block descriptor that restates the geometry (or says 0 blocks)', async () => {
    const bd = [0, 0, 0x08, 0x00, 0, 0, 0x02, 0x00];
    expect((await select6(r, [0, 0, 0, 8, ...bd, ...CONTROL])).status).to.equal(Status.GOOD);
    expect((await select6(r, [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x02, 0x00])).status).to.equal(Status.GOOD);
  });

  it('refuses a change to WCE (not changeable) pointing at the bit in the parameter list', async () => {
    const caching = [...CACHING];
    caching[2] = 0x00;
    const s = illegal(await select6(r, [0, 0, 0, 0, ...caching]), 0x26);
    expect([s.cd, s.bpv, s.fieldPointer, s.bitPointer]).to.deep.equal([false, true, 4 + 2, 2]);
  });

  it('refuses changes to other control page fields, e.g. D_SENSE', async () => {
    const control = [...CONTROL];
    control[2] |= 0x04;
    const s = illegal(await select6(r, [0, 0, 0, 0, ...control]), 0x26);
    expect([s.fieldPointer, s.bitPointer]).to.deep.equal([6, 2]);
  });

  it('validates the whole list before applying any page', async () => {
    const badIec = [...IEC];
    badIec[3] = 0x06;
    illegal(await select6(r, [0, 0, 0, 0, ...controlWithSwp(true), ...badIec]), 0x26);
    expect((await exec(r, sense6(0x0a, { dbd: true }))).data![8]).to.equal(0x00);
  });

  it('refuses a wrong page length, an unknown page, a subpage and a medium type', async () => {
    let s = illegal(await select6(r, [0, 0, 0, 0, 0x0a, 0x0b, ...CONTROL.slice(2), 0]), 0x26);
    expect(s.fieldPointer).to.equal(5);
    s = illegal(await select6(r, [0, 0, 0, 0, 0x01, 0x0a, ...new Array(10).fill(0)]), 0x26);
    expect([s.fieldPointer, s.bitPointer]).to.deep.equal([4, 5]);
    s = illegal(await select6(r, [0, 0, 0, 0, 0x4a, 0x01, 0, 0x0a, ...new Array(10).fill(0)]), 0x26);
    expect([s.fieldPointer, s.bitPointer]).to.deep.equal([4, 6]);
    s = illegal(await select6(r, [0, 0x05, 0, 0]), 0x26);
    expect(s.fieldPointer).to.equal(1);
  });

  it('refuses a block descriptor that would change the block size or capacity', async () => {
    let s = illegal(await select6(r, [0, 0, 0, 8, 0, 0, 0x08, 0x00, 0, 0, 0x10, 0x00]), 0x26);
    expect(s.fieldPointer).to.equal(4 + 5);
    s = illegal(await select6(r, [0, 0, 0, 8, 0, 0, 0x04, 0x00, 0, 0, 0x02, 0x00]), 0x26);
    expect(s.fieldPointer).to.equal(4);
    s = illegal(await select6(r, [0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]), 0x26);
    expect(s.fieldPointer).to.equal(3);
  });

  it('PARAMETER LIST LENGTH ERROR for a truncated header, descriptor or page', async () => {
    illegal(await select6(r, [0, 0, 0]), 0x1a);
    illegal(await select6(r, [0, 0, 0, 8, 0, 0]), 0x1a);
    illegal(await select6(r, [0, 0, 0, 0, ...CONTROL.slice(0, 8)]), 0x1a);
    illegal(await select6(r, [0, 0, 0, 0, 0x0a]), 0x1a);
  });

  it('refuses SP=1 (no savable pages) and PF=0 with pages', async () => {
    let s = illegal(await select6(r, [0, 0, 0, 0, ...CONTROL], { sp: true }), 0x24);
    expect([s.cd, s.fieldPointer, s.bitPointer]).to.deep.equal([true, 1, 0]);
    s = illegal(await select6(r, [0, 0, 0, 0, ...CONTROL], { pf: false }), 0x24);
    expect([s.fieldPointer, s.bitPointer]).to.deep.equal([1, 4]);
  });

  it('parameter list length 0 is not an error and transfers nothing', async () => {
    const io = new ScriptedIo();
    expect((await exec(r, [0x15, 0x10, 0, 0, 0, 0], { io, dataOut: true })).status).to.equal(Status.GOOD);
    expect(io.calls).to.deep.equal([]);
  });

  it('refuses a parameter list longer than the EDTL', async () => {
    const res = await select6(r, [0, 0, 0, 0, ...CONTROL], { expectedLength: 4 });
    illegal(res, 0x0e, 0x03);
    expect(res.spdtl).to.equal(16);
  });

  it('a LUN reset restores the default mode parameters', async () => {
    await select6(r, [0, 0, 0, 0, ...controlWithSwp(true)]);
    r.server.lunReset(0, nexus(1));
    await exec(r, [0, 0, 0, 0, 0, 0]);
    expect((await exec(r, sense6(0x0a, { dbd: true }))).data![8]).to.equal(0x00);
  });
});
