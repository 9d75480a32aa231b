import { expect } from 'chai';
import {
  LoginError, OP, TARGET, TestInitiator, makeServer, parseText, parseTextList, textOf, tick,
} from '../../test/iscsi-helpers.js';
import { RamDiskDeviceServer } from '../../test/ramdisk-device-server.js';

const ID = { InitiatorName: 'iqn.2024-01.test:initiator', SessionType: 'Normal', TargetName: TARGET };

async function loginStatus(ini: TestInitiator, text: Buffer, csg = 0, nsg = 1, extra: { versionMin?: number; tsih?: number } = {}) {
  ini.loginPdu({ csg, nsg, transit: true, text, ...extra });
  await tick();
  return ini.next(OP.LOGIN_RSP);
}

describe('iscsi login', () => {
  it('logs in to a Normal session and negotiates every key by its rule', async () => {
    const { server } = makeServer({ queueDepth: 64 });
    const ini = new TestInitiator(server);
    ini.cmdSN = 1000;
    ini.loginPdu({ csg: 0, nsg: 1, transit: true, text: textOf({ ...ID, AuthMethod: 'None' }) });
    await tick();
    const first = ini.next(OP.LOGIN_RSP);
    expect(first.bhs.readUInt16BE(36)).to.equal(0);
    expect(first.flags).to.equal(0x80 | 1); // T=1, CSG=0, NSG=1
    const f = parseText(first.data);
    expect(f.get('AuthMethod')).to.equal('None');
    expect(f.get('TargetPortalGroupTag')).to.equal('1');
    expect(first.bhs.readUInt16BE(14)).to.equal(0); // no TSIH before the final response

    ini.loginPdu({
      csg: 1, nsg: 3, transit: true, text: textOf({
        HeaderDigest: 'None,CRC32C', DataDigest: 'None', MaxRecvDataSegmentLength: '65536', MaxBurstLength: '262144',
        FirstBurstLength: '131072', InitialR2T: 'No', ImmediateData: 'Yes', MaxOutstandingR2T: '4', DataPDUInOrder: 'Yes',
        DataSequenceInOrder: 'Yes', DefaultTime2Wait: '0', DefaultTime2Retain: '20', MaxConnections: '4', ErrorRecoveryLevel: '2',
        'X-com.example.Key': 'v', IFMarker: 'No', OFMarker: 'No',
      }),
    });
    await tick();
    const fin = ini.next(OP.LOGIN_RSP);
    expect(fin.bhs.readUInt16BE(36)).to.equal(0);
    expect(fin.flags).to.equal(0x80 | (1 << 2) | 3);
    expect(fin.bhs.readUInt16BE(14)).to.not.equal(0);
    expect(fin.statSN).to.equal(first.statSN + 1);
    expect(fin.expCmdSN).to.equal(1000);
    expect(fin.maxCmdSN).to.equal(1000 + 64 - 1);
    const a = parseText(fin.data);
    expect(Object.fromEntries(a)).to.deep.include({
      HeaderDigest: 'None', DataDigest: 'None', MaxRecvDataSegmentLength: '262144', MaxBurstLength: '262144',
      FirstBurstLength: '65536', InitialR2T: 'No', ImmediateData: 'Yes', MaxOutstandingR2T: '4', DataPDUInOrder: 'Yes',
      DataSequenceInOrder: 'Yes', DefaultTime2Wait: '2', DefaultTime2Retain: '0', MaxConnections: '1', ErrorRecoveryLevel: '0',
      'X-com.example.Key': 'NotUnderstood', IFMarker: 'No', OFMarker: 'No',
    });
    expect(server.sessions()).to.deep.equal([{ tsih: fin.bhs.readUInt16BE(14), initiator: ID.InitiatorName, target: TARGET, connections: 1 }]);
  });

  it('starts digests with the first PDU after login, both ways', async () => {
    const { server } = makeServer();
    const ini = new TestInitiator(server);
    const a = await ini.login({ keys: { HeaderDigest: 'CRC32C', DataDigest: 'CRC32C' } });
    expect(a.get('HeaderDigest')).to.equal('CRC32C');
    const itt = ini.nopOut({ data: Buffer.from('ping!') });
    await tick();
    const r = ini.next(OP.NOP_IN); // the helper checks both digests
    expect(r.itt).to.equal(itt);
    expect(r.data.toString()).to.equal('ping!');
  });

  describe('CHAP', () => {
    const chap = { user: 'alice', secret: 'alice-secret' };
    const mutualChap = { user: 'disk', secret: 'target-secret' };

    it('accepts one-way CHAP', async () => {
      const { server } = makeServer({ target: { chap } });
      await new TestInitiator(server).login({ chap });
      expect(server.sessions()).to.have.length(1);
    });

    it('accepts mutual CHAP and proves the target', async () => {
      const { server } = makeServer({ target: { chap, mutualChap } });
      await new TestInitiator(server).login({ chap, mutual: mutualChap });
      expect(server.sessions()).to.have.length(1);
    });

    it('refuses a wrong secret with 0x0201 and closes', async () => {
      const { server } = makeServer({ target: { chap } });
      const ini = new TestInitiator(server);
      let err: unknown;
      await ini.login({ chap: { user: 'alice', secret: 'wrong' } }).catch((e: unknown) => { err = e; });
      expect((err as LoginError).status).to.equal(0x0201);
      await tick();
      expect(ini.closed).to.equal(true);
      expect(server.sessions()).to.have.length(0);
    });

    it('refuses mutual CHAP when the target has no credentials of its own', async () => {
      const { server } = makeServer({ target: { chap } });
      let err: unknown;
      await new TestInitiator(server).login({ chap, mutual: mutualChap }).catch((e: unknown) => { err = e; });
      expect((err as LoginError).status).to.equal(0x0201);
    });

    it('refuses AuthMethod=None and a skipped security stage when CHAP is required', async () => {
      const { server } = makeServer({ target: { chap } });
      let r = await loginStatus(new TestInitiator(server), textOf({ ...ID, AuthMethod: 'None' }));
      expect(r.bhs.readUInt16BE(36)).to.equal(0x0201);
      r = await loginStatus(new TestInitiator(server), textOf(ID), 1, 3);
      expect(r.bhs.readUInt16BE(36)).to.equal(0x0201);
      r = await loginStatus(new TestInitiator(server), textOf(ID), 0, 1);
      expect(r.bhs.readUInt16BE(36)).to.equal(0x0201);
    });

    it('protects discovery sessions with discoveryChap', async () => {
      const { server } = makeServer({ discoveryChap: chap });
      const r = await loginStatus(new TestInitiator(server), textOf({ InitiatorName: ID.InitiatorName, SessionType: 'Discovery', AuthMethod: 'None' }));
      expect(r.bhs.readUInt16BE(36)).to.equal(0x0201);
      await new TestInitiator(server).login({ discovery: true, chap });
    });
  });

  describe('failures', () => {
    const cases: [string, () => Promise<number>][] = [];
    const status = async (text: Buffer, csg = 0, nsg = 1, extra = {}, setup = {}) => {
      const { server } = makeServer(setup);
      const ini = new TestInitiator(server);
      const r = await loginStatus(ini, text, csg, nsg, extra);
      await tick();
      expect(ini.closed, 'connection closed after a login reject').to.equal(true);
      return r.bhs.readUInt16BE(36);
    };
    cases.push(['unknown target -> 0x0203', () => status(textOf({ ...ID, TargetName: 'iqn.2024-01.test:nope' }))]);
    cases.push(['ACL -> 0x0202', () => status(textOf(ID), 0, 1, {}, { target: { allowedInitiators: ['iqn.2024-01.test:other'] } })]);
    cases.push(['no TargetName -> 0x0207', () => status(textOf({ InitiatorName: 'iqn.x', SessionType: 'Normal' }))]);
    cases.push(['no InitiatorName -> 0x0207', () => status(textOf({ TargetName: TARGET }))]);
    cases.push(['bad SessionType -> 0x0209', () => status(textOf({ ...ID, SessionType: 'Weird' }))]);
    cases.push(['version-min 1 -> 0x0205', () => status(textOf(ID), 0, 1, { versionMin: 1 })]);
    cases.push(['unknown TSIH -> 0x020a', () => status(textOf(ID), 1, 3, { tsih: 77 })]);
    cases.push(['transition to stage 2 -> 0x0200', () => status(textOf(ID), 0, 2)]);
    cases.push(['malformed text -> 0x0200', () => status(Buffer.from('InitiatorName'))]);
    cases.push(['key twice -> 0x0200', () => status(Buffer.concat([textOf(ID), textOf({ TargetName: TARGET })]))]);
    const expected = [0x0203, 0x0202, 0x0207, 0x0207, 0x0209, 0x0205, 0x020a, 0x0200, 0x0200, 0x0200];
    cases.forEach(([name, run], i) => it(name, async () => expect(await run()).to.equal(expected[i])));

    it('refuses a non-login PDU during login with 0x020b', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      ini.nopOut();
      await tick();
      expect(ini.next(OP.LOGIN_RSP).bhs.readUInt16BE(36)).to.equal(0x020b);
    });

    it('refuses an operational key negotiated twice across PDUs', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      ini.loginPdu({ csg: 1, nsg: 3, transit: false, text: textOf({ ...ID, InitialR2T: 'No' }) });
      await tick();
      expect(ini.next(OP.LOGIN_RSP).bhs.readUInt16BE(36)).to.equal(0);
      ini.loginPdu({ csg: 1, nsg: 3, transit: true, text: textOf({ InitialR2T: 'No' }) });
      await tick();
      expect(ini.next(OP.LOGIN_RSP).bhs.readUInt16BE(36)).to.equal(0x0200);
    });

    it('drops a connection that does not finish its login in time', async () => {
      const { server, clock } = makeServer();
      const ini = new TestInitiator(server);
      clock.advance(16000);
      await tick();
      expect(ini.transport.destroyed).to.equal(true);
    });
  });

  it('reassembles a login text sent with the C bit', async () => {
    const { server } = makeServer();
    const ini = new TestInitiator(server);
    const text = textOf({ ...ID, AuthMethod: 'None' });
    ini.loginPdu({ csg: 0, nsg: 1, transit: false, cont: true, text: text.subarray(0, 10) });
    await tick();
    const empty = ini.next(OP.LOGIN_RSP);
    expect(empty.data.length).to.equal(0);
    expect(empty.bhs.readUInt16BE(36)).to.equal(0);
    ini.loginPdu({ csg: 0, nsg: 1, transit: true, text: text.subarray(10) });
    await tick();
    const r = ini.next(OP.LOGIN_RSP);
    expect(parseText(r.data).get('AuthMethod')).to.equal('None');
    expect(r.flags & 0x80).to.equal(0x80);
  });

  describe('discovery', () => {
    it('answers SendTargets=All with every allowed target and each portal', async () => {
      const disk = new RamDiskDeviceServer();
      const { server } = makeServer({
        portals: [{ host: '192.0.2.1', port: 3260 }, { host: '0.0.0.0', port: 3261 }],
        portalGroupTag: 7,
        targets: [
          { name: 'iqn.2024-01.test:a', deviceServer: disk },
          { name: 'iqn.2024-01.test:b', deviceServer: disk, allowedInitiators: [ID.InitiatorName] },
          { name: 'iqn.2024-01.test:hidden', deviceServer: disk, allowedInitiators: ['iqn.someone.else'] },
        ],
      });
      const ini = new TestInitiator(server);
      const a = await ini.login({ discovery: true, keys: { InitialR2T: 'No', MaxRecvDataSegmentLength: '8192' } });
      expect(a.get('InitialR2T')).to.equal('Irrelevant');
      ini.textRequest({ text: textOf({ SendTargets: 'All' }) });
      await tick();
      const r = ini.next(OP.TEXT_RSP);
      expect(r.flags & 0x80).to.equal(0x80);
      expect(r.ttt).to.equal(0xffffffff);
      expect(parseTextList(r.data)).to.deep.equal([
        ['TargetName', 'iqn.2024-01.test:a'], ['TargetAddress', '192.0.2.1:3260,7'], ['TargetAddress', '192.0.2.1:3261,7'],
        ['TargetName', 'iqn.2024-01.test:b'], ['TargetAddress', '192.0.2.1:3260,7'], ['TargetAddress', '192.0.2.1:3261,7'],
      ]);
      ini.textRequest({ text: textOf({ SendTargets: 'iqn.2024-01.test:b' }) });
      await tick();
      expect(parseTextList(ini.next(OP.TEXT_RSP).data).map(([k]) => k)).to.deep.equal(['TargetName', 'TargetAddress', 'TargetAddress']);
      // SCSI commands have no place in a discovery session.
      ini.scsi({ cdb: [0, 0, 0, 0, 0, 0] });
      await tick();
      expect(ini.next(OP.REJECT).bhs[2]).to.equal(0x04);
      ini.logout();
      await tick();
      expect(ini.next(OP.LOGOUT_RSP).bhs[2]).to.equal(0);
      expect(ini.closed).to.equal(true);
    });

    it('splits a long SendTargets answer over several Text Responses', async () => {
      const disk = new RamDiskDeviceServer();
      const targets = Array.from({ length: 300 }, (_, i) => ({ name: `iqn.2024-01.test:target-number-${i}`, deviceServer: disk }));
      const { server } = makeServer({ targets });
      const ini = new TestInitiator(server);
      await ini.login({ discovery: true, keys: { MaxRecvDataSegmentLength: '4096' } });
      const itt = ini.textRequest({ text: textOf({ SendTargets: 'All' }) });
      const parts: Buffer[] = [];
      for (;;) {
        await tick();
        const r = ini.next(OP.TEXT_RSP);
        expect(r.data.length).to.be.at.most(4096);
        parts.push(r.data);
        if (r.flags & 0x80) break;
        expect(r.flags & 0x40).to.equal(0x40);
        ini.textRequest({ itt, ttt: r.ttt, text: Buffer.alloc(0) });
      }
      expect(parts.length).to.be.above(2);
      expect(parseTextList(Buffer.concat(parts)).filter(([k]) => k === 'TargetName')).to.have.length(300);
    });

    it('takes a Text request continued with the C bit', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      await ini.login({ discovery: true });
      const text = textOf({ 'X-com.example.A': 'x'.repeat(100), SendTargets: 'All' });
      const itt = ini.textRequest({ text: text.subarray(0, 50), cont: true, final: false });
      await tick();
      const ask = ini.next(OP.TEXT_RSP);
      expect([ask.flags & 0xc0, ask.data.length]).to.deep.equal([0, 0]);
      expect(ask.ttt).to.not.equal(0xffffffff);
      ini.textRequest({ itt, ttt: ask.ttt, text: text.subarray(50) });
      await tick();
      const r = ini.next(OP.TEXT_RSP);
      expect(r.flags & 0x80).to.equal(0x80);
      expect(parseTextList(r.data)).to.deep.equal([['X-com.example.A', 'NotUnderstood'], ['TargetName', TARGET], ['TargetAddress', '192.0.2.1:3260,1']]);
      // A TTT we never gave out is refused.
      ini.textRequest({ itt, ttt: 0x5555, text: Buffer.alloc(0) });
      await tick();
      expect(ini.next(OP.REJECT).bhs[2]).to.equal(0x09);
    });

    it('answers SendTargets in a Normal session with its own target only', async () => {
      const disk = new RamDiskDeviceServer();
      const { server } = makeServer({ targets: [{ name: TARGET, deviceServer: disk }, { name: 'iqn.2024-01.test:other', deviceServer: disk }] });
      const ini = new TestInitiator(server);
      await ini.login();
      ini.textRequest({ text: textOf({ SendTargets: 'All' }) });
      await tick();
      expect(parseTextList(ini.next(OP.TEXT_RSP).data)).to.deep.equal([['TargetName', TARGET], ['TargetAddress', '192.0.2.1:3260,1']]);
    });
  });
});
