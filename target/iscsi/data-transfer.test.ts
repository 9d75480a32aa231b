import { expect } from 'chai';
import {
  OP, TestInitiator, inquiry, makeServer, read10, tick, write10,
} from '../../test/iscsi-helpers.js';
import { sense } from '../../test/ramdisk-device-server.js';
import { Status } from '../scsi/task.js';

const S_BIT = 0x01;
const U_BIT = 0x02;
const O_BIT = 0x04;

function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

describe('iscsi data transfer', () => {
  it('splits Data-In by MaxRecvDataSegmentLength and MaxBurstLength, status in the last PDU', async () => {
    const { server, disk } = makeServer();
    pattern(64 * 512).copy(disk.disk, 0);
    const ini = new TestInitiator(server);
    await ini.login({ keys: { MaxRecvDataSegmentLength: '8192', MaxBurstLength: '16384' } });
    const itt = ini.scsi({ cdb: read10(0, 64), read: true, edtl: 64 * 512 });
    await tick();
    const pdus = ini.take(OP.DATA_IN);
    expect(ini.received).to.have.length(0); // no separate SCSI Response
    expect(pdus.map((p) => p.bhs.readUInt32BE(36))).to.deep.equal([0, 1, 2, 3]); // DataSN
    expect(pdus.map((p) => p.bhs.readUInt32BE(40))).to.deep.equal([0, 8192, 16384, 24576]); // BufferOffset
    expect(pdus.map((p) => p.flags & 0x80)).to.deep.equal([0, 0x80, 0, 0x80]); // F ends each burst
    expect(pdus.map((p) => p.flags & S_BIT)).to.deep.equal([0, 0, 0, 1]);
    expect(pdus.every((p) => p.itt === itt && p.ttt === 0xffffffff)).to.equal(true);
    const last = pdus[3];
    expect(last.bhs[3]).to.equal(Status.GOOD);
    expect(last.bhs.readUInt32BE(44)).to.equal(0);
    expect(Buffer.concat(pdus.map((p) => p.data)).equals(disk.disk.subarray(0, 64 * 512))).to.equal(true);
  });

  it('reports residual underflow and overflow', async () => {
    const { server } = makeServer();
    const ini = new TestInitiator(server);
    await ini.login();
    ini.scsi({ cdb: inquiry(36), read: true, edtl: 100 });
    await tick();
    let p = ini.next(OP.DATA_IN);
    expect(p.flags & (S_BIT | U_BIT | O_BIT)).to.equal(S_BIT | U_BIT);
    expect(p.bhs.readUInt32BE(44)).to.equal(64);
    expect(p.data.length).to.equal(36);

    ini.scsi({ cdb: inquiry(36), read: true, edtl: 10 });
    await tick();
    p = ini.next(OP.DATA_IN);
    expect(p.flags & (S_BIT | U_BIT | O_BIT)).to.equal(S_BIT | O_BIT);
    expect(p.bhs.readUInt32BE(44)).to.equal(26);
    expect(p.data.length).to.equal(10);

    // A write the device server consumes less of than the EDTL: underflow in the SCSI Response.
    ini.scsi({ cdb: write10(0, 1), write: true, edtl: 1024, data: pattern(1024) });
    await tick();
    const rsp = ini.next(OP.SCSI_RSP);
    expect(rsp.flags & (U_BIT | O_BIT)).to.equal(U_BIT);
    expect(rsp.bhs.readUInt32BE(44)).to.equal(512);
  });

  it('refuses a device server request past the EDTL, with an overflow residual', async () => {
    const { server, disk } = makeServer();
    let written = false;
    disk.hook = async (_task, io) => {
      await io.receiveData(Buffer.alloc(1024)); // the CDB's length, not the EDTL's
      written = true;
      return { status: Status.GOOD };
    };
    const ini = new TestInitiator(server);
    await ini.login();
    ini.scsi({ cdb: write10(0, 2), write: true, edtl: 512, data: Buffer.alloc(512, 0xbb) });
    await tick();
    const rsp = ini.next(OP.SCSI_RSP);
    expect(written).to.equal(false);
    expect(rsp.bhs[3]).to.equal(Status.CHECK_CONDITION);
    expect([rsp.data[2 + 2], rsp.data[2 + 12]]).to.deep.equal([0x05, 0x24]);
    expect(rsp.flags & (U_BIT | O_BIT)).to.equal(O_BIT);
    expect(rsp.bhs.readUInt32BE(44)).to.equal(512);
  });

  it('counts residuals against the transfer length the device server states (spdtl)', async () => {
    const { server, disk } = makeServer();
    disk.disk.fill(0xaa, 0, 1024);
    const ini = new TestInitiator(server);
    await ini.login();
    // The RAM disk writes only what the EDTL brings and reports the CDB's length.
    ini.scsi({ cdb: write10(0, 2), write: true, edtl: 512, data: Buffer.alloc(512, 0xbb) });
    await tick();
    const rsp = ini.next(OP.SCSI_RSP);
    expect(rsp.bhs[3]).to.equal(Status.GOOD);
    expect(rsp.flags & (U_BIT | O_BIT)).to.equal(O_BIT);
    expect(rsp.bhs.readUInt32BE(44)).to.equal(512);
    expect(disk.disk.subarray(0, 512).every((b) => b === 0xbb)).to.equal(true);
    expect(disk.disk.subarray(512, 1024).every((b) => b === 0xaa)).to.equal(true);
  });

  it('sends sense data in a separate SCSI Response after the Data-In', async () => {
    const { server, disk } = makeServer();
    disk.hook = () => Promise.resolve({ status: Status.CHECK_CONDITION, sense: sense(0x03, 0x11, 0x00), data: Buffer.alloc(1024, 1) });
    const ini = new TestInitiator(server);
    await ini.login();
    ini.scsi({ cdb: read10(0, 4), read: true, edtl: 2048 });
    await tick();
    const din = ini.next(OP.DATA_IN);
    expect(din.flags & S_BIT).to.equal(0);
    expect(din.data.length).to.equal(1024);
    const rsp = ini.next(OP.SCSI_RSP);
    expect(rsp.bhs[3]).to.equal(Status.CHECK_CONDITION);
    expect(rsp.bhs.readUInt32BE(36)).to.equal(1); // ExpDataSN
    expect(rsp.flags & U_BIT).to.equal(U_BIT);
    expect(rsp.bhs.readUInt32BE(44)).to.equal(1024);
    expect(rsp.data.readUInt16BE(0)).to.equal(18);
    expect(rsp.data[2 + 12]).to.equal(0x11);
  });

  it('solicits writes with R2T when InitialR2T=Yes and ImmediateData=No (iPXE style)', async () => {
    const { server, disk } = makeServer();
    const ini = new TestInitiator(server);
    await ini.login({ keys: { InitialR2T: 'Yes', ImmediateData: 'No', MaxRecvDataSegmentLength: '8192', MaxBurstLength: '16384', FirstBurstLength: '8192' } });
    const data = pattern(64 * 1024);
    const itt = ini.scsi({ cdb: write10(100, 128), write: true, edtl: data.length });
    const r2ts: number[][] = [];
    for (;;) {
      await tick();
      if (ini.received[0]?.op === OP.SCSI_RSP) break;
      const r2t = ini.next(OP.R2T);
      expect(ini.received).to.have.length(0); // MaxOutstandingR2T=1
      const [sn, off, len] = [r2t.bhs.readUInt32BE(36), r2t.bhs.readUInt32BE(40), r2t.bhs.readUInt32BE(44)];
      r2ts.push([sn, off, len]);
      expect(r2t.itt).to.equal(itt);
      for (let o = 0, dsn = 0; o < len; o += 8192, dsn++) {
        ini.dataOut({ itt, ttt: r2t.ttt, dataSN: dsn, offset: off + o, final: o + 8192 >= len, data: data.subarray(off + o, off + o + 8192) });
      }
    }
    expect(r2ts).to.deep.equal([[0, 0, 16384], [1, 16384, 16384], [2, 32768, 16384], [3, 49152, 16384]]);
    const rsp = ini.next(OP.SCSI_RSP);
    expect(rsp.bhs[3]).to.equal(Status.GOOD);
    expect(rsp.flags & (U_BIT | O_BIT)).to.equal(0);
    expect(disk.disk.subarray(100 * 512, 100 * 512 + data.length).equals(data)).to.equal(true);
  });

  it('takes immediate and unsolicited data up to FirstBurstLength, then R2Ts (InitialR2T=No)', async () => {
    const { server, disk } = makeServer();
    const ini = new TestInitiator(server);
    const a = await ini.login({ keys: { InitialR2T: 'No', ImmediateData: 'Yes', FirstBurstLength: '65536', MaxBurstLength: '262144' } });
    expect(a.get('InitialR2T')).to.equal('No');
    const data = pattern(128 * 1024, 3);
    const itt = ini.scsi({ cdb: write10(0, 256), write: true, edtl: data.length, final: false, data: data.subarray(0, 8192) });
    for (let off = 8192, dsn = 0; off < 65536; off += 8192, dsn++) {
      ini.dataOut({ itt, dataSN: dsn, offset: off, final: off + 8192 === 65536, data: data.subarray(off, off + 8192) });
    }
    await tick();
    const r2t = ini.next(OP.R2T);
    expect([r2t.bhs.readUInt32BE(36), r2t.bhs.readUInt32BE(40), r2t.bhs.readUInt32BE(44)]).to.deep.equal([0, 65536, 65536]);
    for (let off = 65536, dsn = 0; off < data.length; off += 8192, dsn++) {
      ini.dataOut({ itt, ttt: r2t.ttt, dataSN: dsn, offset: off, final: off + 8192 === data.length, data: data.subarray(off, off + 8192) });
    }
    await tick();
    expect(ini.next(OP.SCSI_RSP).bhs[3]).to.equal(Status.GOOD);
    expect(disk.disk.subarray(0, data.length).equals(data)).to.equal(true);
  });

  it('completes a write carried entirely as immediate data without any R2T', async () => {
    const { server, disk } = makeServer();
    const ini = new TestInitiator(server);
    await ini.login();
    ini.scsi({ cdb: write10(8, 8), write: true, edtl: 4096, data: pattern(4096, 9) });
    await tick();
    expect(ini.next(OP.SCSI_RSP).bhs[3]).to.equal(Status.GOOD);
    expect(disk.disk.subarray(8 * 512, 8 * 512 + 4096).equals(pattern(4096, 9))).to.equal(true);
  });

  it('keeps MaxOutstandingR2T R2Ts in flight, each within MaxBurstLength', async () => {
    const { server } = makeServer();
    const ini = new TestInitiator(server);
    await ini.login({ keys: { InitialR2T: 'Yes', MaxBurstLength: '8192', MaxOutstandingR2T: '3' } });
    const itt = ini.scsi({ cdb: write10(0, 64), write: true, edtl: 32768 });
    await tick();
    const r2ts = ini.take(OP.R2T);
    expect(r2ts.map((r) => [r.bhs.readUInt32BE(36), r.bhs.readUInt32BE(40), r.bhs.readUInt32BE(44)])).to.deep.equal([[0, 0, 8192], [1, 8192, 8192], [2, 16384, 8192]]);
    expect(new Set(r2ts.map((r) => r.ttt)).size).to.equal(3);
    ini.dataOut({ itt, ttt: r2ts[0].ttt, dataSN: 0, offset: 0, data: pattern(8192) });
    await tick();
    const fourth = ini.next(OP.R2T);
    expect([fourth.bhs.readUInt32BE(36), fourth.bhs.readUInt32BE(40)]).to.deep.equal([3, 24576]);
  });

  it('rejects a Data-Out out of sequence and fails the task with DATA PHASE ERROR', async () => {
    const { server } = makeServer();
    const ini = new TestInitiator(server);
    await ini.login({ keys: { InitialR2T: 'Yes' } });
    const itt = ini.scsi({ cdb: write10(0, 16), write: true, edtl: 8192 });
    await tick();
    const r2t = ini.next(OP.R2T);
    ini.dataOut({ itt, ttt: r2t.ttt, dataSN: 5, offset: 0, final: false, data: pattern(4096) });
    ini.dataOut({ itt, ttt: r2t.ttt, dataSN: 6, offset: 4096, final: true, data: pattern(4096) });
    await tick();
    const rej = ini.next(OP.REJECT);
    expect(rej.bhs[2]).to.equal(0x04);
    expect(rej.data.readUInt32BE(16)).to.equal(itt); // the rejected header comes back
    const rsp = ini.next(OP.SCSI_RSP);
    expect(rsp.bhs[3]).to.equal(Status.CHECK_CONDITION);
    expect([rsp.data[2 + 2], rsp.data[2 + 12], rsp.data[2 + 13]]).to.deep.equal([0x0b, 0x4b, 0x00]);
  });

  it('rejects a Data-Out with a data digest error and ends the task with a CRC error', async () => {
    const { server } = makeServer();
    const ini = new TestInitiator(server);
    await ini.login({ keys: { InitialR2T: 'Yes', DataDigest: 'CRC32C' } });
    const itt = ini.scsi({ cdb: write10(0, 8), write: true, edtl: 4096 });
    await tick();
    const r2t = ini.next(OP.R2T);
    ini.dataOut({ itt, ttt: r2t.ttt, dataSN: 0, offset: 0, data: pattern(4096), corruptDataDigest: true });
    await tick();
    expect(ini.next(OP.REJECT).bhs[2]).to.equal(0x02);
    const rsp = ini.next(OP.SCSI_RSP);
    expect([rsp.bhs[3], rsp.data[2 + 12], rsp.data[2 + 13]]).to.deep.equal([Status.CHECK_CONDITION, 0x47, 0x05]);
  });

  it('passes extended CDBs from the AHS and refuses a malformed AHS', async () => {
    const { server, disk } = makeServer();
    let seen: Uint8Array | undefined;
    disk.hook = (task) => { seen = task.cdb; return Promise.resolve({ status: Status.GOOD }); };
    const ini = new TestInitiator(server);
    await ini.login();
    const ahs = Buffer.alloc(20);
    ahs.writeUInt16BE(17, 0); // 1 reserved byte + 16 more CDB bytes
    ahs[2] = 1;
    for (let i = 0; i < 16; i++) ahs[4 + i] = 0xe0 + i;
    const cdb = Buffer.alloc(16, 0x7f);
    ini.scsi({ cdb, ahs });
    await tick();
    expect(ini.next(OP.SCSI_RSP).bhs[3]).to.equal(Status.GOOD);
    expect(seen?.length).to.equal(32);
    expect(seen?.[16]).to.equal(0xe0);
    const bad = Buffer.alloc(4);
    bad.writeUInt16BE(200, 0);
    ini.scsi({ cdb, ahs: bad });
    await tick();
    expect(ini.next(OP.REJECT).bhs[2]).to.equal(0x09);
  });

  it('hands the device server buffers only once it asks, and releases Data-In after the write completes', async () => {
    const { server, disk } = makeServer();
    let released = 0;
    disk.hook = () => Promise.resolve({ status: Status.GOOD, data: Buffer.alloc(4096, 5), release: () => { released++; } });
    const ini = new TestInitiator(server);
    await ini.login();
    ini.transport.autoComplete = false;
    ini.scsi({ cdb: read10(0, 8), read: true, edtl: 4096 });
    await tick();
    expect(ini.next(OP.DATA_IN).data.length).to.equal(4096);
    expect(released).to.equal(0);
    ini.transport.completeWrites();
    expect(released).to.equal(1);
  });
});
