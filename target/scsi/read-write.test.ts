import { expect } from 'chai';
import { Status, TaskAbortedError, type TaskIo } from './task.js';
import {
  ScriptedIo, decodeSense, exec, pattern, readyRig, rw10, rw12, rw16, rw6, type Rig,
} from './test-support.js';

const BS = 512;

const FORMS = [
  { name: '6', read: (lba: number, n: number) => rw6(0x08, lba, n), write: (lba: number, n: number) => rw6(0x0a, lba, n), lengthByte: 4 },
  { name: '10', read: (lba: number, n: number, f = 0) => rw10(0x28, lba, n, f), write: (lba: number, n: number, f = 0) => rw10(0x2a, lba, n, f), lengthByte: 7 },
  { name: '12', read: (lba: number, n: number, f = 0) => rw12(0xa8, lba, n, f), write: (lba: number, n: number, f = 0) => rw12(0xaa, lba, n, f), lengthByte: 6 },
  { name: '16', read: (lba: number, n: number, f = 0) => rw16(0x88, lba, n, f), write: (lba: number, n: number, f = 0) => rw16(0x8a, lba, n, f), lengthByte: 10 },
];

async function write(r: Rig, cdb: number[], data: Uint8Array, expectedLength = data.length) {
  const io = new ScriptedIo(data);
  const res = await exec(r, cdb, { io, dataOut: true, expectedLength });
  return { res, io };
}

function expectSense(res: { status: number; sense?: Uint8Array }, key: number, asc: number, ascq: number) {
  expect(res.status).to.equal(Status.CHECK_CONDITION);
  const s = decodeSense(res.sense);
  expect([s.key, s.asc, s.ascq]).to.deep.equal([key, asc, ascq]);
  return s;
}

describe('scsi/read-write: READ and WRITE 6/10/12/16', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await readyRig({ blockSize: BS, blockCount: 1000, maxTransferBlocks: 64 });
  });

  for (const f of FORMS) {
    describe(`READ(${f.name}) / WRITE(${f.name})`, () => {
      it('writes through a buffer area and reads the data back', async () => {
        const data = pattern(3 * BS, 3);
        const { res, io } = await write(r, f.write(10, 3), data);
        expect(res.status).to.equal(Status.GOOD);
        expect(io.calls).to.deep.equal([3 * BS]);
        expect(r.volume.data.subarray(10 * BS, 13 * BS)).to.deep.equal(data);
        const rd = await exec(r, f.read(10, 3));
        expect(rd.status).to.equal(Status.GOOD);
        expect(rd.data).to.deep.equal(data);
        expect(r.volume.outstanding).to.equal(1);
        rd.release!();
        expect(r.volume.outstanding).to.equal(0);
      });

      it('refuses a range that runs past the last LBA with LBA OUT OF RANGE', async () => {
        expectSense(await exec(r, f.read(999, 2)), 5, 0x21, 0);
        expectSense((await write(r, f.write(998, 3), pattern(3 * BS))).res, 5, 0x21, 0);
        expect(r.volume.events.filter((e) => e.op !== 'release')).to.deep.equal([]);
      });

      it(`refuses more than maxTransferBlocks with INVALID FIELD IN CDB at byte ${f.lengthByte}`, async () => {
        const s = expectSense(await exec(r, f.read(0, 65)), 5, 0x24, 0);
        expect([s.cd, s.fieldPointer]).to.deep.equal([true, f.lengthByte]);
        const w = expectSense((await write(r, f.write(0, 65), pattern(65 * BS))).res, 5, 0x24, 0);
        expect(w.fieldPointer).to.equal(f.lengthByte);
      });
    });
  }

  it('READ(6) / WRITE(6) transfer length 0 means 256 blocks', async () => {
    const big = await readyRig({ blockSize: BS, blockCount: 1000, maxTransferBlocks: 256 });
    const data = pattern(256 * BS, 5);
    const { res, io } = await write(big, rw6(0x0a, 1, 0), data);
    expect(res.status).to.equal(Status.GOOD);
    expect(io.calls).to.deep.equal([256 * BS]);
    const rd = await exec(big, rw6(0x08, 1, 0));
    expect(rd.data!.length).to.equal(256 * BS);
    expect(rd.data).to.deep.equal(data);
    // ...and is refused like any length over the limit when the buffer memory cannot take 256.
    expectSense(await exec(r, rw6(0x08, 1, 0)), 5, 0x24, 0);
  });

  it('transfer length 0 is a no-op that transfers nothing but still checks the LBA (libiscsi 0blocks)', async () => {
    for (const f of FORMS.slice(1)) {
      expect((await exec(r, f.read(0, 0))).data).to.equal(undefined);
      const { res, io } = await write(r, f.write(999, 0), new Uint8Array(0), 0);
      expect(res.status).to.equal(Status.GOOD);
      expect(io.calls).to.deep.equal([]);
      expectSense(await exec(r, f.read(1001, 0)), 5, 0x21, 0);
      expectSense(await exec(r, f.read(1000, 0)), 5, 0x21, 0);
      expectSense(await exec(r, f.read(0x80000000, 0)), 5, 0x21, 0);
      expectSense(await exec(r, f.read(0xffffffff, 0)), 5, 0x21, 0);
    }
    expect(r.volume.events).to.deep.equal([]);
  });

  it('READ(16) / WRITE(16) with 64-bit LBAs past 2^53 are out of range, not truncated', async () => {
    expectSense(await exec(r, rw16(0x88, 0xffffffffffffffffn, 1)), 5, 0x21, 0);
    expectSense(await exec(r, rw16(0x88, 1n << 60n, 1)), 5, 0x21, 0);
    expectSense((await write(r, rw16(0x8a, 0xfffffffffffffffen, 1), pattern(BS))).res, 5, 0x21, 0);
  });

  it('accepts DPO, FUA and FUA_NV (libiscsi write10_flags) and commits with fua', async () => {
    for (const flags of [0x10, 0x08, 0x0a, 0x02, 0x1a]) {
      const { res } = await write(r, rw10(0x2a, 4, 1, flags), pattern(BS));
      expect(res.status).to.equal(Status.GOOD);
      const commit = r.volume.events.filter((e) => e.op === 'commit').pop();
      expect(commit).to.deep.include({ fua: (flags & 0x08) !== 0 });
      const rd = await exec(r, rw10(0x28, 4, 1, flags));
      expect(rd.status).to.equal(Status.GOOD);
      rd.release!();
    }
  });

  it('refuses writes to a read-only volume with DATA PROTECT / WRITE PROTECTED, reads still work', async () => {
    const ro = await readyRig({ readOnly: true });
    for (const f of FORMS) {
      const { res, io } = await write(ro, f.write(0, 1), pattern(BS));
      expectSense(res, 7, 0x27, 0x00);
      expect(io.calls).to.deep.equal([]);
    }
    expect(ro.volume.events).to.deep.equal([]);
    expect((await exec(ro, rw10(0x28, 0, 1))).status).to.equal(Status.GOOD);
  });

  it('maps a read MediumError to MEDIUM ERROR / UNRECOVERED READ ERROR with the LBA', async () => {
    r.volume.failReadAt = 17;
    const s = expectSense(await exec(r, rw10(0x28, 15, 4)), 3, 0x11, 0x00);
    expect([s.valid, s.information]).to.deep.equal([true, 17]);
    expect(r.logger.lines.some((l) => l.level === 'warn')).to.equal(true);
  });

  it('maps a write MediumError to MEDIUM ERROR / WRITE ERROR with the LBA', async () => {
    r.volume.failWriteAt = 21;
    const { res } = await write(r, rw16(0x8a, 20, 2), pattern(2 * BS));
    const s = expectSense(res, 3, 0x0c, 0x00);
    expect([s.valid, s.information]).to.deep.equal([true, 21]);
    expect(r.volume.outstanding).to.equal(0);
  });

  it('asks for Data-Out only once prepareWrite has resolved (R2T after buffer allocation)', async () => {
    let open!: () => void;
    r.volume.prepareGate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const io = new ScriptedIo(pattern(2 * BS));
    const pending = exec(r, rw10(0x2a, 0, 2), { io, dataOut: true, expectedLength: 2 * BS });
    for (let i = 0; i < 20; i++) await Promise.resolve();
    expect(io.calls, 'no receiveData while the buffer area is pending').to.deep.equal([]);
    let prepared = false;
    io.onReceive = () => {
      prepared = r.volume.events.some((e) => e.op === 'prepare');
    };
    open();
    expect((await pending).status).to.equal(Status.GOOD);
    expect(prepared).to.equal(true);
    expect(r.volume.events.map((e) => e.op)).to.deep.equal(['prepare', 'commit']);
  });

  it('abandons the reservation when the Data-Out transfer is aborted', async () => {
    const io = new ScriptedIo(pattern(BS));
    io.failReceive = true;
    const res = await exec(r, rw10(0x2a, 0, 1), { io, dataOut: true, expectedLength: BS });
    expect(res.status).to.equal(Status.TASK_ABORTED);
    expect(r.volume.events.map((e) => e.op)).to.deep.equal(['prepare', 'abandon']);
    expect(r.volume.outstanding).to.equal(0);
  });

  it('abandons the reservation when receiveData fails with any other error', async () => {
    const io: TaskIo = { aborted: false, receiveData: async () => { throw new Error('digest error'); } };
    const res = await exec(r, rw10(0x2a, 0, 1), { io, dataOut: true, expectedLength: BS });
    expectSense(res, 4, 0x44, 0x00);
    expect(r.volume.events.map((e) => e.op)).to.deep.equal(['prepare', 'abandon']);
    expect(r.logger.lines.filter((l) => l.level === 'error')).to.have.length(1);
  });

  it('does not commit a write whose task was aborted while its data arrived', async () => {
    const io: TaskIo & { aborted: boolean } = {
      aborted: false,
      receiveData: async () => {
        io.aborted = true;
      },
    };
    const res = await exec(r, rw10(0x2a, 0, 1), { io, dataOut: true, expectedLength: BS });
    expect(res.status).to.equal(Status.TASK_ABORTED);
    expect(r.volume.events.map((e) => e.op)).to.deep.equal(['prepare', 'abandon']);
  });

  it('abandons the area when the task was aborted while waiting for buffer memory', async () => {
    let open!: () => void;
    r.volume.prepareGate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const io = new ScriptedIo(pattern(BS));
    const pending = exec(r, rw10(0x2a, 0, 1), { io, dataOut: true, expectedLength: BS });
    await Promise.resolve();
    io.aborted = true;
    open();
    expect((await pending).status).to.equal(Status.TASK_ABORTED);
    expect(io.calls).to.deep.equal([]);
    expect(r.volume.events.map((e) => e.op)).to.deep.equal(['prepare', 'abandon']);
  });

  it('releases the read area when the task was aborted during the read', async () => {
    const io = new ScriptedIo();
    const origRead = r.volume.read.bind(r.volume);
    r.volume.read = async (lba, blocks) => {
      const res = await origRead(lba, blocks);
      io.aborted = true;
      return res;
    };
    const res = await exec(r, rw10(0x28, 0, 1), { io });
    expect(res.status).to.equal(Status.TASK_ABORTED);
    expect(r.volume.outstanding).to.equal(0);
  });

  it('answers TASK ABORTED without touching the volume when the task is already aborted', async () => {
    const io = new ScriptedIo();
    io.aborted = true;
    expect((await exec(r, rw10(0x28, 0, 1), { io })).status).to.equal(Status.TASK_ABORTED);
    expect(r.volume.events).to.deep.equal([]);
  });

  it('writes only the whole blocks an EDTL shorter than the CDB covers, GOOD with spdtl (libiscsi residuals)', async () => {
    r.volume.data.fill(0x61, 0, 2 * BS);
    for (const edtl of [0, 200]) {
      const { res, io } = await write(r, rw10(0x2a, 0, 2), pattern(2 * BS), edtl);
      expect(res).to.deep.equal({ status: Status.GOOD, spdtl: 2 * BS });
      expect(io.calls).to.deep.equal([]);
    }
    expect(r.volume.events).to.deep.equal([]);
    const data = pattern(BS, 9);
    const { res, io } = await write(r, rw10(0x2a, 0, 2), data, BS);
    expect(res).to.deep.equal({ status: Status.GOOD, spdtl: 2 * BS });
    expect(io.calls).to.deep.equal([BS]);
    expect(r.volume.data.subarray(0, BS)).to.deep.equal(data);
    expect(r.volume.data.subarray(BS, 2 * BS).every((b) => b === 0x61)).to.equal(true);
  });

  it('takes exactly the blocks described when EDTL is longer; the transport keeps the residual', async () => {
    const { res, io } = await write(r, rw10(0x2a, 0, 1), pattern(10000), 10000);
    expect(res.status).to.equal(Status.GOOD);
    expect(io.calls).to.deep.equal([BS]);
  });

  it('returns all the blocks read whatever the EDTL: the transport cuts and reports overflow', async () => {
    const res = await exec(r, rw10(0x28, 0, 2), { expectedLength: 200 });
    expect(res.data!.length).to.equal(2 * BS);
    res.release!();
  });

  it('turns an unexpected volume failure into HARDWARE ERROR / INTERNAL TARGET FAILURE with a log line', async () => {
    r.volume.read = async () => {
      throw new TypeError('boom');
    };
    expectSense(await exec(r, rw10(0x28, 0, 1)), 4, 0x44, 0x00);
    const line = r.logger.lines.find((l) => l.level === 'error');
    expect(line?.obj).to.deep.include({ lun: 0, opcode: 0x28 });
  });

  it('rejects a volume read that returns the wrong amount of data and releases it', async () => {
    const orig = r.volume.read.bind(r.volume);
    r.volume.read = async (lba, blocks) => {
      const res = await orig(lba, blocks);
      return { data: res.data.subarray(0, 10), release: res.release };
    };
    expectSense(await exec(r, rw10(0x28, 0, 1)), 4, 0x44, 0x00);
    expect(r.volume.outstanding).to.equal(0);
  });

  it('TaskAbortedError from anywhere becomes TASK ABORTED status', async () => {
    r.volume.flush = async () => {
      throw new TaskAbortedError();
    };
    expect((await exec(r, [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0])).status).to.equal(Status.TASK_ABORTED);
  });
});
