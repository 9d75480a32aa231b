import { expect } from 'chai';
import fc from 'fast-check';
import {
  OP, TestInitiator, inquiry, makeServer, read10, textOf, tick, write10,
} from '../../test/iscsi-helpers.js';
import { ScsiResult, ScsiTask, Status, TaskAbortedError, TaskIo } from '../scsi/task.js';

interface Pending {
  task: ScsiTask;
  io: TaskIo;
  resolve: (r: ScsiResult) => void;
}

/** Make the device server hang on every command whose CDB starts with `op`, until released. */
function hangOn(disk: { hook: unknown }, op: number): Pending[] {
  const pending: Pending[] = [];
  (disk as { hook: (t: ScsiTask, io: TaskIo) => Promise<ScsiResult> | undefined }).hook = (task, io) => {
    if (task.cdb[0] !== op) return undefined;
    return new Promise((resolve) => pending.push({ task, io, resolve }));
  };
  return pending;
}

const TUR = [0, 0, 0, 0, 0, 0];
const HANG = 0xc0; // a vendor opcode the hook takes over

describe('iscsi session', () => {
  describe('CmdSN window', () => {
    it('narrows MaxCmdSN while tasks run and reopens it as they complete', async () => {
      const { server, disk } = makeServer({ queueDepth: 4 });
      const pending = hangOn(disk, HANG);
      const ini = new TestInitiator(server);
      await ini.login();
      for (let i = 0; i < 4; i++) ini.scsi({ cdb: [HANG] });
      await tick();
      expect(pending).to.have.length(4);
      ini.nopOut();
      await tick();
      let nop = ini.next(OP.NOP_IN);
      expect(nop.expCmdSN).to.equal(5);
      expect(nop.maxCmdSN).to.equal(4); // closed: MaxCmdSN = ExpCmdSN - 1
      // Outside the window: dropped silently, never executed.
      ini.scsi({ cdb: TUR, cmdSN: 5 });
      await tick();
      expect(ini.received).to.have.length(0);
      expect(disk.executed).to.equal(4);
      pending[2].resolve({ status: Status.GOOD });
      await tick();
      const rsp = ini.next(OP.SCSI_RSP);
      expect(rsp.itt).to.equal(0x103);
      expect(rsp.maxCmdSN).to.equal(5);
      ini.scsi({ cdb: TUR, cmdSN: 5 });
      await tick();
      nop = ini.next(OP.SCSI_RSP);
      expect(nop.expCmdSN).to.equal(6);
    });

    it('executes commands in CmdSN order even when they arrive out of order', async () => {
      const { server, disk } = makeServer();
      const order: number[] = [];
      disk.hook = (task) => { order.push(task.tag); return Promise.resolve({ status: Status.GOOD }); };
      const ini = new TestInitiator(server);
      await ini.login();
      ini.scsi({ cdb: TUR, itt: 3, cmdSN: 3 });
      ini.scsi({ cdb: TUR, itt: 2, cmdSN: 2 });
      await tick();
      expect(order).to.deep.equal([]);
      ini.scsi({ cdb: TUR, itt: 1, cmdSN: 1 });
      await tick();
      expect(order).to.deep.equal([1, 2, 3]);
      expect(ini.take(OP.SCSI_RSP).map((r) => r.itt).sort()).to.deep.equal([1, 2, 3]);
    });

    it('completes out of order and keeps answering while a task hangs', async () => {
      const { server, disk } = makeServer();
      const pending = hangOn(disk, HANG);
      const ini = new TestInitiator(server);
      await ini.login();
      const slow = ini.scsi({ cdb: [HANG] });
      const fast = ini.scsi({ cdb: inquiry(), read: true, edtl: 36 });
      const ping = ini.nopOut({ immediate: false, data: Buffer.from('x') });
      await tick();
      expect(ini.take(OP.DATA_IN).map((p) => p.itt)).to.deep.equal([fast]);
      expect(ini.take(OP.NOP_IN).map((p) => p.itt)).to.deep.equal([ping]);
      pending[0].resolve({ status: Status.GOOD });
      await tick();
      const rsp = ini.next(OP.SCSI_RSP);
      expect(rsp.itt).to.equal(slow);
    });

    it('numbers StatSN across every status-bearing PDU', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      await ini.login({ keys: { InitialR2T: 'Yes' } });
      ini.nopOut();
      ini.scsi({ cdb: inquiry(), read: true, edtl: 36 });
      const w = ini.scsi({ cdb: write10(0, 1), write: true, edtl: 512 });
      await tick();
      const [nop] = ini.take(OP.NOP_IN);
      const [din] = ini.take(OP.DATA_IN);
      const [r2] = ini.take(OP.R2T);
      ini.dataOut({ itt: w, ttt: r2.ttt, dataSN: 0, offset: 0, data: Buffer.alloc(512) });
      await tick();
      const rsp = ini.next(OP.SCSI_RSP);
      expect(din.statSN).to.equal(nop.statSN + 1);
      // R2T shows the next StatSN without taking it (sent before or after the Data-In).
      expect([din.statSN, din.statSN + 1]).to.include(r2.statSN);
      expect(rsp.statSN).to.equal(din.statSN + 1);
    });
  });

  describe('task management', () => {
    it('aborts a pending task: receiveData rejects, no response, function complete', async () => {
      const { server, disk } = makeServer();
      let ioError: unknown;
      let started!: () => void;
      const running = new Promise<void>((r) => { started = r; });
      disk.hook = (task, io) => {
        if (task.cdb[0] !== 0x2a) return undefined;
        started();
        return io.receiveData(Buffer.alloc(4096)).then(() => ({ status: Status.GOOD }), (e: unknown) => { ioError = e; throw e; });
      };
      const ini = new TestInitiator(server);
      await ini.login({ keys: { InitialR2T: 'Yes' } });
      const itt = ini.scsi({ cdb: write10(0, 8), write: true, edtl: 4096 });
      await running;
      await tick();
      const r2t = ini.next(OP.R2T);
      ini.tmf({ fn: 1, rtt: itt, refCmdSN: 1 });
      await tick();
      const rsp = ini.next(OP.TMF_RSP);
      expect(rsp.bhs[2]).to.equal(0);
      expect(ioError).to.be.instanceOf(TaskAbortedError);
      expect(disk.events).to.include(`taskAborted:${itt}`);
      // Data still in flight for the aborted task is dropped quietly.
      ini.dataOut({ itt, ttt: r2t.ttt, dataSN: 0, offset: 0, data: Buffer.alloc(4096) });
      await tick();
      expect(ini.received).to.have.length(0);
      // The ITT is free again.
      ini.scsi({ cdb: TUR, itt });
      await tick();
      expect(ini.next(OP.SCSI_RSP).itt).to.equal(itt);
    });

    it('answers task does not exist, LUN does not exist and not supported', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      await ini.login();
      const codes: number[] = [];
      for (const [fn, lun] of [[1, 0], [2, 5], [5, 9], [3, 0], [8, 0], [20, 0]]) {
        ini.tmf({ fn, lun, rtt: 0x999, refCmdSN: 0x7000 });
        await tick();
        codes.push(ini.next(OP.TMF_RSP).bhs[2]);
      }
      expect(codes).to.deep.equal([1, 2, 2, 5, 4, 5]);
    });

    it('LUN RESET and TARGET WARM RESET abort the tasks of every session and reach the device server', async () => {
      const { server, disk } = makeServer();
      const pending = hangOn(disk, HANG);
      const a = new TestInitiator(server);
      const b = new TestInitiator(server);
      b.isid = Buffer.from([0x80, 0, 0, 0, 0, 9]);
      await a.login();
      await b.login({ initiatorName: 'iqn.2024-01.test:b' });
      a.scsi({ cdb: [HANG] });
      b.scsi({ cdb: [HANG] });
      await tick();
      expect(pending).to.have.length(2);
      a.tmf({ fn: 5, lun: 0 });
      await tick();
      expect(a.next(OP.TMF_RSP).bhs[2]).to.equal(0);
      expect(disk.events).to.include('lunReset:0');
      expect(pending.every((p) => p.io.aborted)).to.equal(true);
      pending.forEach((p) => p.resolve({ status: Status.GOOD }));
      await tick();
      expect(a.received.concat(b.received)).to.have.length(0);
      a.tmf({ fn: 6 });
      await tick();
      expect(a.next(OP.TMF_RSP).bhs[2]).to.equal(0);
      expect(disk.events).to.include('targetReset');
    });

    it('TARGET COLD RESET answers, then drops every connection to the target', async () => {
      const { server } = makeServer();
      const a = new TestInitiator(server);
      const b = new TestInitiator(server);
      b.isid = Buffer.from([0x80, 0, 0, 0, 0, 9]);
      await a.login();
      await b.login();
      a.tmf({ fn: 7 });
      await tick();
      await tick();
      expect(a.next(OP.TMF_RSP).bhs[2]).to.equal(0);
      expect(a.closed && b.closed).to.equal(true);
      expect(server.sessions()).to.have.length(0);
    });

    it('ABORT TASK SET aborts the LUN\'s tasks of this session only', async () => {
      const { server, disk } = makeServer({ disk: undefined });
      const pending = hangOn(disk, HANG);
      const ini = new TestInitiator(server);
      await ini.login();
      ini.scsi({ cdb: [HANG] });
      ini.scsi({ cdb: [HANG] });
      await tick();
      ini.tmf({ fn: 2, lun: 0 });
      await tick();
      expect(ini.next(OP.TMF_RSP).bhs[2]).to.equal(0);
      expect(pending.map((p) => p.io.aborted)).to.deep.equal([true, true]);
    });
  });

  describe('NOP', () => {
    it('echoes a ping with its data', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      await ini.login();
      const itt = ini.nopOut({ data: Buffer.from('hello') });
      await tick();
      const r = ini.next(OP.NOP_IN);
      expect([r.itt, r.ttt, r.data.toString()]).to.deep.equal([itt, 0xffffffff, 'hello']);
    });

    it('pings with NOP-In while a task hangs and drops an initiator that stops answering', async () => {
      const { server, disk, clock } = makeServer({ nopInIntervalMs: 1000, nopInTimeoutMs: 2000 });
      hangOn(disk, HANG);
      const ini = new TestInitiator(server);
      await ini.login();
      ini.scsi({ cdb: [HANG] });
      await tick();
      clock.advance(1000);
      await tick();
      const ping = ini.next(OP.NOP_IN);
      expect(ping.itt).to.equal(0xffffffff);
      expect(ping.ttt).to.not.equal(0xffffffff);
      ini.nopOut({ itt: 0xffffffff, ttt: ping.ttt });
      await tick();
      expect(ini.received).to.have.length(0); // an answer to a ping gets no answer
      clock.advance(1000);
      await tick();
      const again = ini.next(OP.NOP_IN);
      expect(again.statSN).to.equal(ping.statSN); // unsolicited NOP-In does not take a StatSN
      clock.advance(1000);
      await tick();
      expect(ini.transport.destroyed).to.equal(false); // unanswered for 1 s of the 2 s timeout
      expect(ini.received).to.have.length(0); // no second ping while one is outstanding
      clock.advance(1000);
      await tick();
      expect(ini.transport.destroyed).to.equal(true);
      expect(server.sessions()).to.have.length(0);
    });
  });

  describe('errors', () => {
    it('rejects unknown opcodes, SNACK, bad immediate data and oversize segments, and goes on', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      await ini.login({ keys: { ImmediateData: 'No', MaxRecvDataSegmentLength: '8192' } });
      const bhs = Buffer.alloc(48);
      bhs[0] = 0x1c;
      ini.send(bhs);
      const snack = Buffer.alloc(48);
      snack[0] = OP.SNACK;
      ini.send(snack);
      ini.scsi({ cdb: write10(0, 1), write: true, edtl: 512, data: Buffer.alloc(512) }); // immediate data not negotiated
      ini.scsi({ cdb: write10(0, 1000), write: true, edtl: 512000, data: Buffer.alloc(300000) }); // above our MaxRecvDataSegmentLength
      const orphan = Buffer.alloc(48);
      orphan[0] = OP.DATA_OUT;
      orphan.writeUInt32BE(0x4444, 16);
      ini.send(orphan, Buffer.alloc(16));
      await tick();
      expect(ini.take(OP.REJECT).map((r) => r.bhs[2])).to.deep.equal([0x05, 0x04, 0x04, 0x04, 0x09]);
      // The rejected commands used up their CmdSNs: the next one runs at once.
      ini.scsi({ cdb: TUR });
      await tick();
      expect(ini.next(OP.SCSI_RSP).bhs[3]).to.equal(0);
    });

    it('answers TASK ABORTED when the device server aborts a task on its own', async () => {
      const { server, disk } = makeServer();
      disk.hook = () => Promise.reject(new TaskAbortedError());
      const ini = new TestInitiator(server);
      await ini.login();
      ini.scsi({ cdb: TUR });
      await tick();
      const r = ini.next(OP.SCSI_RSP);
      expect([r.bhs[3], r.data.length]).to.deep.equal([Status.TASK_ABORTED, 0]);
    });

    it('rejects a PDU with a data digest error without consuming its CmdSN', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      await ini.login({ keys: { DataDigest: 'CRC32C', HeaderDigest: 'CRC32C' } });
      ini.scsi({ cdb: write10(0, 1), write: true, edtl: 512, data: Buffer.alloc(512), cmdSN: 1, corruptDataDigest: true });
      await tick();
      expect(ini.next(OP.REJECT).bhs[2]).to.equal(0x02);
      ini.scsi({ cdb: write10(0, 1), write: true, edtl: 512, data: Buffer.alloc(512), cmdSN: 1 }); // the retry
      await tick();
      expect(ini.next(OP.SCSI_RSP).expCmdSN).to.equal(2);
    });

    it('closes only the connection with a header digest error', async () => {
      const { server } = makeServer();
      const a = new TestInitiator(server);
      const b = new TestInitiator(server);
      b.isid = Buffer.from([0x80, 0, 0, 0, 0, 2]);
      await a.login({ keys: { HeaderDigest: 'CRC32C' } });
      await b.login({ keys: { HeaderDigest: 'CRC32C' } });
      const bhs = Buffer.alloc(48);
      bhs[0] = 0x40;
      bhs[1] = 0x80;
      bhs.writeUInt32BE(9, 16);
      a.send(bhs, undefined, { corruptHeaderDigest: true });
      await tick();
      expect(a.transport.destroyed).to.equal(true);
      expect(a.received).to.have.length(0);
      b.nopOut();
      await tick();
      expect(b.next(OP.NOP_IN).op).to.equal(OP.NOP_IN);
      expect(server.sessions()).to.have.length(1);
    });

    it('survives random garbage without throwing, and other sessions keep working', async () => {
      const { server } = makeServer();
      const good = new TestInitiator(server);
      good.isid = Buffer.from([0x80, 0, 0, 0, 0, 3]);
      await good.login();
      await fc.assert(fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 400 }), fc.boolean(), async (bytes, afterLogin) => {
        const ini = new TestInitiator(server);
        if (afterLogin) await ini.login();
        const header = Buffer.alloc(48);
        Buffer.from(bytes).copy(header);
        expect(() => ini.sendRaw(Buffer.concat([header, Buffer.from(bytes)]))).to.not.throw();
        await tick();
        ini.transport.close();
        await tick();
      }), { numRuns: 150 });
      good.scsi({ cdb: inquiry(), read: true, edtl: 36 });
      await tick();
      expect(good.next(OP.DATA_IN).data.length).to.equal(36);
    });
  });

  describe('lifetime', () => {
    it('reinstates a session logged in again from the same initiator port', async () => {
      const { server, disk } = makeServer();
      const pending = hangOn(disk, HANG);
      const old = new TestInitiator(server);
      await old.login();
      old.scsi({ cdb: [HANG] });
      await tick();
      const again = new TestInitiator(server);
      await again.login();
      await tick();
      expect(old.transport.destroyed).to.equal(true);
      expect(pending[0].io.aborted).to.equal(true);
      expect(disk.events.filter((e) => e.startsWith('nexusLost:'))).to.deep.equal(['nexusLost:iqn.2024-01.test:initiator,i,0x801234560001|1']);
      expect(server.sessions()).to.have.length(1);
      again.scsi({ cdb: TUR });
      await tick();
      expect(again.next(OP.SCSI_RSP).bhs[3]).to.equal(0);
    });

    it('lets a new connection take over its session (connection reinstatement), one connection at most', async () => {
      const { server, disk } = makeServer();
      const pending = hangOn(disk, HANG);
      const old = new TestInitiator(server);
      await old.login();
      old.scsi({ cdb: [HANG] });
      await tick();
      const tsih = old.tsih;
      const other = new TestInitiator(server);
      other.tsih = tsih;
      other.loginPdu({ csg: 1, nsg: 3, transit: true, cid: 2, text: textOf({ InitiatorName: 'iqn.2024-01.test:initiator', TargetName: 'iqn.2024-01.test:disk' }) });
      await tick();
      expect(other.next(OP.LOGIN_RSP).bhs.readUInt16BE(36)).to.equal(0x0206);
      const next = new TestInitiator(server);
      next.tsih = tsih;
      next.cmdSN = 50;
      next.loginPdu({ csg: 1, nsg: 3, transit: true, text: textOf({ InitiatorName: 'iqn.2024-01.test:initiator', TargetName: 'iqn.2024-01.test:disk' }) });
      await tick();
      const r = next.next(OP.LOGIN_RSP);
      expect([r.bhs.readUInt16BE(36), r.bhs.readUInt16BE(14), r.expCmdSN]).to.deep.equal([0, tsih, 50]);
      expect(old.transport.destroyed).to.equal(true);
      expect(pending[0].io.aborted).to.equal(true);
      expect(server.sessions()).to.deep.equal([{ tsih, initiator: 'iqn.2024-01.test:initiator', target: 'iqn.2024-01.test:disk', connections: 1 }]);
      next.scsi({ cdb: TUR });
      await tick();
      expect(next.next(OP.SCSI_RSP).bhs[3]).to.equal(0);
    });

    it('logs out after in-flight tasks complete', async () => {
      const { server, disk } = makeServer();
      const pending = hangOn(disk, HANG);
      const ini = new TestInitiator(server);
      await ini.login();
      const itt = ini.scsi({ cdb: [HANG] });
      ini.logout({ reason: 2 });
      await tick();
      expect(ini.next(OP.LOGOUT_RSP).bhs[2]).to.equal(2); // no connection recovery at ERL 0
      ini.logout({ reason: 0 });
      await tick();
      expect(ini.received).to.have.length(0);
      pending[0].resolve({ status: Status.GOOD });
      await tick();
      await tick();
      expect(ini.next(OP.SCSI_RSP).itt).to.equal(itt);
      expect(ini.next(OP.LOGOUT_RSP).bhs[2]).to.equal(0);
      expect(ini.transport.ended).to.equal(true);
      expect(server.sessions()).to.have.length(0);
      expect(disk.events.some((e) => e.startsWith('nexusLost:'))).to.equal(true);
    });

    it('aborts every task when the connection drops', async () => {
      const { server, disk } = makeServer();
      const pending = hangOn(disk, HANG);
      const ini = new TestInitiator(server);
      await ini.login();
      ini.scsi({ cdb: [HANG] });
      await tick();
      ini.transport.close(new Error('ECONNRESET'));
      await tick();
      expect(pending[0].io.aborted).to.equal(true);
      expect(server.sessions()).to.have.length(0);
      expect(disk.events.some((e) => e.startsWith('nexusLost:'))).to.equal(true);
    });

    it('stops reading when the transport is full and resumes on drain', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      await ini.login();
      ini.transport.writable = false;
      ini.nopOut();
      await tick();
      expect(ini.transport.paused).to.equal(true);
      const writes = ini.transport.writes;
      ini.nopOut(); // already in the pipe: answered, but held until drain
      await tick();
      expect(ini.transport.writes).to.equal(writes);
      ini.transport.writable = true;
      ini.handler.onDrain();
      expect(ini.transport.paused).to.equal(false);
      expect(ini.take(OP.NOP_IN)).to.have.length(2);
    });

    it('stops reading while too much unsolicited data waits for the device server', async () => {
      const { server, disk } = makeServer({ maxHeldBytes: 8192 });
      const gates: (() => void)[] = [];
      disk.hook = (task, io) => {
        if (task.cdb[0] !== 0x2a) return undefined;
        // Busy: the device server asks for the data only later.
        return new Promise<void>((r) => gates.push(r)).then(() => io.receiveData(Buffer.alloc(4096))).then(() => ({ status: Status.GOOD }));
      };
      const ini = new TestInitiator(server);
      await ini.login();
      for (let i = 0; i < 3; i++) ini.scsi({ cdb: write10(i * 8, 8), write: true, edtl: 4096, data: Buffer.alloc(4096, i) });
      await tick();
      expect(ini.transport.paused).to.equal(true);
      gates.forEach((g) => g());
      await tick();
      expect(ini.transport.paused).to.equal(false);
      expect(ini.take(OP.SCSI_RSP)).to.have.length(3);
    });

    it('shuts down after in-flight tasks complete', async () => {
      const { server, disk } = makeServer();
      const pending = hangOn(disk, HANG);
      const ini = new TestInitiator(server);
      await ini.login();
      ini.scsi({ cdb: [HANG] });
      await tick();
      let done = false;
      const stopping = server.shutdown().then(() => { done = true; });
      await tick();
      expect(done).to.equal(false);
      // No new logins meanwhile.
      const late = new TestInitiator(server);
      late.loginPdu({ csg: 0, nsg: 1, transit: true, text: textOf({ InitiatorName: 'iqn.x', TargetName: 'iqn.2024-01.test:disk' }) });
      await tick();
      expect(late.next(OP.LOGIN_RSP).bhs.readUInt16BE(36)).to.equal(0x0301);
      pending[0].resolve({ status: Status.GOOD });
      await stopping;
      expect(ini.next(OP.SCSI_RSP).bhs[3]).to.equal(0);
      expect(ini.next(OP.ASYNC).bhs[36]).to.equal(3);
      expect(server.sessions()).to.have.length(0);
    });

    it('bounds the shutdown wait for a task that never ends', async () => {
      const { server, disk, clock } = makeServer({ drainTimeoutMs: 100 });
      const pending = hangOn(disk, HANG);
      const ini = new TestInitiator(server);
      await ini.login();
      ini.scsi({ cdb: read10(0, 1) });
      ini.scsi({ cdb: [HANG] });
      await tick();
      const stopping = server.shutdown();
      await tick();
      clock.advance(100);
      await stopping;
      expect(pending[0].io.aborted).to.equal(true);
    });
  });
});
