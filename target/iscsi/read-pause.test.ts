/**
 * Regressions found by the fuzzer (test/fuzz/): a connection that stops reading because too much
 * unsolicited data waits must never wait for data only the initiator can still send.
 */
import { expect } from 'chai';
import { OP, TestInitiator, makeServer, tick, write10 } from '../../test/iscsi-helpers.js';
import { sense } from '../../test/ramdisk-device-server.js';
import { Status } from '../scsi/task.js';

const KEYS = { InitialR2T: 'No', ImmediateData: 'Yes', FirstBurstLength: '65536', MaxRecvDataSegmentLength: '262144' };

describe('iscsi read pause', () => {
  it('keeps reading while a command waits for a CmdSN gap, however much it holds', async () => {
    const { server } = makeServer({ maxHeldBytes: 1024 });
    const ini = new TestInitiator(server);
    await ini.login({ keys: KEYS });
    const gap = ini.cmdSN;
    // Past the gap: held by the target, with more immediate data than it may hold.
    const itt = ini.scsi({ cdb: write10(0, 8), write: true, edtl: 4096, data: Buffer.alloc(4096, 7), cmdSN: gap + 1 });
    await tick();
    expect(ini.transport.paused).to.equal(false);
    const tur = ini.scsi({ cdb: Buffer.alloc(16), cmdSN: gap });
    await tick();
    const rsp = ini.take(OP.SCSI_RSP);
    expect(rsp.map((r) => r.itt).sort()).to.deep.equal([itt, tur].sort());
    expect(rsp.every((r) => r.bhs[3] === 0)).to.equal(true);
  });

  it('keeps reading while a task waits for the rest of its unsolicited data', async () => {
    const { server, disk } = makeServer({ maxHeldBytes: 1024 });
    // The device server answers at once without taking the data: the task still owes its burst.
    disk.hook = () => Promise.resolve({ status: Status.CHECK_CONDITION, sense: sense(5, 0x24, 0) });
    const ini = new TestInitiator(server);
    await ini.login({ keys: KEYS });
    const itt = ini.scsi({ cdb: write10(0, 16), write: true, final: false, edtl: 8192, data: Buffer.alloc(4096, 1) });
    await tick();
    expect(ini.transport.paused).to.equal(false);
    ini.dataOut({ itt, dataSN: 0, offset: 4096, data: Buffer.alloc(4096, 2) });
    await tick();
    const rsp = ini.next(OP.SCSI_RSP);
    expect(rsp.itt).to.equal(itt);
    expect(rsp.bhs[3]).to.equal(Status.CHECK_CONDITION);
  });
});
