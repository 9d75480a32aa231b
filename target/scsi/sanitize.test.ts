import { expect } from 'chai';
import { Simulator } from '../../hal/sim/index.js';
import { ScsiDeviceServer } from './device-server.js';
import { Status } from './task.js';
import { RamVolume } from './test-volume.js';
import { ScriptedIo, be16, decodeSense, exec, nexus, readyRig, rw10, type Rig } from './test-support.js';

const BS = 512;

function sanitizeCdb(sa: number, length = 0, flags = 0): number[] {
  return [0x48, flags | sa, 0, 0, 0, 0, 0, ...be16(length), 0];
}

function overwriteList(pattern: number[], count = 1, invert = false): Uint8Array {
  return Uint8Array.of((invert ? 0x80 : 0) | count, 0, ...be16(pattern.length), ...pattern);
}

async function overwrite(r: Rig, list: Uint8Array, flags = 0, length = list.length) {
  return exec(r, sanitizeCdb(0x01, length, flags), { io: new ScriptedIo(list), dataOut: true, expectedLength: list.length });
}

describe('scsi/sanitize: SANITIZE (SBC-4 5.30)', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await readyRig({ blockSize: BS, blockCount: 100, maxTransferBlocks: 8 }, { thin: true });
  });

  it('OVERWRITE writes the pattern, repeated to fill each block, over every block, then flushes', async () => {
    r.volume.data.fill(0x61);
    expect((await overwrite(r, overwriteList([0x12, 0x34, 0x56]))).status).to.equal(Status.GOOD);
    for (let i = 0; i < r.volume.data.length; i++) {
      if (r.volume.data[i] !== [0x12, 0x34, 0x56][(i % BS) % 3]) expect.fail(`byte ${i}`);
    }
    const commits = r.volume.events.filter((e) => e.op === 'commit');
    expect(commits).to.have.length(Math.ceil(100 / 8));
    expect(commits.every((e) => 'fua' in e && e.fua)).to.equal(true);
    expect(r.volume.events.at(-1)).to.deep.equal({ op: 'flush' });
  });

  it('OVERWRITE COUNT passes, inverted on every other pass with INVERT', async () => {
    expect((await overwrite(r, overwriteList([0x0f], 2, true))).status).to.equal(Status.GOOD);
    expect(r.volume.data.every((b) => b === 0xf0)).to.equal(true);
    expect(r.volume.events.filter((e) => e.op === 'commit')).to.have.length(2 * Math.ceil(100 / 8));
  });

  it('validates the OVERWRITE parameter list', async () => {
    for (const length of [0, 4, BS + 5]) {
      const s = decodeSense((await overwrite(r, new Uint8Array(length), 0, length)).sense);
      expect([s.key, s.asc, s.fieldPointer, s.cd]).to.deep.equal([5, 0x24, 7, true]);
    }
    for (const [list, byte] of [[overwriteList([1], 0), 0], [Uint8Array.of(1, 0, 0, 0, 9), 2], [Uint8Array.of(1, 0, ...be16(BS + 1), ...new Array<number>(BS).fill(0)), 2],
      [Uint8Array.of(0x21, 0, 0, 1, 9), 0]] as const) {
      const s = decodeSense((await overwrite(r, list)).sense);
      expect([s.key, s.asc, s.fieldPointer, s.cd]).to.deep.equal([5, 0x26, byte, false]);
    }
    expect(r.volume.events).to.deep.equal([]);
  });

  it('BLOCK ERASE deallocates every block (thin LUs only) and wants no parameter list', async () => {
    r.volume.data.fill(0x61);
    r.volume.mapped.fill(1);
    expect((await exec(r, sanitizeCdb(0x02))).status).to.equal(Status.GOOD);
    expect(r.volume.data.every((b) => b === 0)).to.equal(true);
    expect(r.volume.mapped.every((b) => b === 0)).to.equal(true);
    let s = decodeSense((await exec(r, sanitizeCdb(0x02, 8), { io: new ScriptedIo(new Uint8Array(8)), dataOut: true, expectedLength: 8 })).sense);
    expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 7]);
    const full = await readyRig();
    s = decodeSense((await exec(full, sanitizeCdb(0x02))).sense);
    expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 1, 4]);
  });

  it('refuses other commands while it runs, with progress; INQUIRY and REQUEST SENSE pass; resets do not stop it', async () => {
    let release!: () => void;
    r.volume.prepareGate = new Promise((res) => { release = res; });
    const running = overwrite(r, overwriteList([0xaa]), 0x80); // IMMED
    expect((await running).status).to.equal(Status.GOOD);
    // Even a CDB that would be refused otherwise (START STOP UNIT with a power condition).
    for (const cdb of [[0, 0, 0, 0, 0, 0], rw10(0x28, 0, 1), [0x1b, 1, 0, 0, 0x11, 0], sanitizeCdb(0x02)]) {
      const s = decodeSense((await exec(r, cdb)).sense);
      expect([s.key, s.asc, s.ascq, s.sksv]).to.deep.equal([2, 0x04, 0x1b, true]);
    }
    expect((await exec(r, [0x12, 0, 0, 0, 96, 0])).status).to.equal(Status.GOOD);
    const rs = await exec(r, [0x03, 0, 0, 0, 18, 0]);
    expect([rs.status, rs.data![2], rs.data![12], rs.data![13]]).to.deep.equal([Status.GOOD, 2, 0x04, 0x1b]);
    r.server.lunReset(0, nexus(1));
    r.server.nexusLost(nexus(1));
    r.volume.prepareGate = undefined;
    release();
    for (let i = 0; i < 50 && r.server.logicalUnit(0)!.sanitize.inProgress; i++) await new Promise((res) => setTimeout(res, 1));
    expect(r.volume.data.every((b) => b === 0xaa)).to.equal(true);
    await exec(r, [0, 0, 0, 0, 0, 0]); // unit attention of the reset
    expect((await exec(r, [0, 0, 0, 0, 0, 0])).status).to.equal(Status.GOOD);
  });

  it('a failed sanitize leaves failure mode: MEDIUM ERROR until EXIT FAILURE MODE (AUSE=1) or a good one', async () => {
    r.volume.failWriteAt = 50;
    let s = decodeSense((await overwrite(r, overwriteList([1]), 0x20)).sense);
    expect([s.key, s.asc, s.ascq]).to.deep.equal([3, 0x31, 0x03]);
    s = decodeSense((await exec(r, rw10(0x28, 0, 1))).sense);
    expect([s.key, s.asc, s.ascq]).to.deep.equal([3, 0x31, 0x03]);
    r.volume.failWriteAt = undefined;
    expect((await exec(r, sanitizeCdb(0x1f))).status).to.equal(Status.GOOD);
    expect((await exec(r, rw10(0x28, 0, 1))).status).to.equal(Status.GOOD);

    r.volume.failWriteAt = 50;
    await overwrite(r, overwriteList([1])); // AUSE=0
    s = decodeSense((await exec(r, sanitizeCdb(0x1f))).sense);
    expect([s.key, s.asc, s.fieldPointer]).to.deep.equal([5, 0x24, 1]);
    r.volume.failWriteAt = undefined;
    expect((await exec(r, sanitizeCdb(0x02))).status).to.equal(Status.GOOD);
    expect((await exec(r, rw10(0x28, 0, 1))).status).to.equal(Status.GOOD);
  });

  it('refuses unknown service actions, reserved bits and a write-protected LU', async () => {
    for (const sa of [0x00, 0x03, 0x04, 0x1e]) {
      const s = decodeSense((await exec(r, sanitizeCdb(sa))).sense);
      expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 1, 4]);
    }
    const s = decodeSense((await exec(r, sanitizeCdb(0x02, 0, 0x40))).sense);
    expect([s.key, s.asc, s.fieldPointer, s.bitPointer]).to.deep.equal([5, 0x24, 1, 6]);
    const ro = await readyRig({ readOnly: true }, { thin: true });
    const p = decodeSense((await exec(ro, sanitizeCdb(0x02))).sense);
    expect([p.key, p.asc]).to.deep.equal([7, 0x27]);
  });
});

describe('scsi/sanitize: media rate', () => {
  it('runs an OVERWRITE at the LU\'s sanitize rate, as a drive would, so it is still in progress seconds later', async () => {
    const sim = new Simulator({ seed: 1 });
    const volume = new RamVolume({ blockSize: BS, blockCount: 100, maxTransferBlocks: 8 });
    const bytes = 100 * BS;
    const server = new ScsiDeviceServer({
      luns: new Map([[0, { volume, serial: 'RATE', thin: true, sanitizeRate: bytes / 2 }]]), targetName: 'iqn.2026-11.dev.kura:t', clock: sim.clock,
    });
    await exec(server, [0x00, 0, 0, 0, 0, 0]); // consume the power-on unit attention
    let done = false;
    const sanitize = exec(server, sanitizeCdb(0x01, 5), { io: new ScriptedIo(overwriteList([0x5a])), dataOut: true, expectedLength: 5 })
      .then((r) => { done = true; return r; });
    await sim.advance(1000);
    expect(done).to.equal(false);
    const tur = decodeSense((await exec(server, [0x00, 0, 0, 0, 0, 0])).sense);
    expect([tur.key, tur.asc, tur.ascq]).to.deep.equal([2, 0x04, 0x1b]); // NOT READY, SANITIZE IN PROGRESS
    await sim.advance(1100);
    expect(done).to.equal(true);
    expect((await sanitize).status).to.equal(Status.GOOD);
    expect(sim.clock.now()).to.be.at.least(2000);
  });
});
