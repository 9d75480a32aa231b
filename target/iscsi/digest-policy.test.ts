import { expect } from 'chai';
import { ManualClock, OP, TARGET, TestInitiator, inquiry, makeServer, parseText, textOf, tick } from '../../test/iscsi-helpers.js';
import { RamDiskDeviceServer } from '../../test/ramdisk-device-server.js';
import { IscsiServer } from './iscsi-server.js';
import { nullLogger } from '../../hal/types.js';
import type { DigestPolicies } from './params.js';

const ID = { InitiatorName: 'iqn.2024-01.test:initiator', SessionType: 'Normal', TargetName: TARGET };

/** Security stage, then one operational PDU with `keys`; returns the final Login Response. */
async function loginWith(ini: TestInitiator, keys: Record<string, string>) {
  ini.loginPdu({ csg: 0, nsg: 1, transit: true, text: textOf({ ...ID, AuthMethod: 'None' }) });
  await tick();
  expect(ini.next(OP.LOGIN_RSP).bhs.readUInt16BE(36)).to.equal(0);
  ini.loginPdu({ csg: 1, nsg: 3, transit: true, text: textOf(keys) });
  await tick();
  return ini.next(OP.LOGIN_RSP);
}

function serverWith(digests: Partial<DigestPolicies>, target: Partial<DigestPolicies> | undefined = undefined) {
  return makeServer({ digests, target: target ? { digests: target } : {} });
}

describe('iscsi digest policy', () => {
  it('optional (the default) takes the initiator\'s first choice', async () => {
    const { server } = makeServer();
    for (const [offer, answer] of [['None,CRC32C', 'None'], ['CRC32C,None', 'CRC32C'], ['CRC32C', 'CRC32C'], ['None', 'None']]) {
      const ini = new TestInitiator(server);
      const r = await loginWith(ini, { HeaderDigest: offer, DataDigest: offer });
      expect(r.bhs.readUInt16BE(36)).to.equal(0);
      expect(parseText(r.data).get('HeaderDigest')).to.equal(answer);
      expect(parseText(r.data).get('DataDigest')).to.equal(answer);
    }
  });

  it('required answers CRC32C even when the initiator prefers None, and the session runs with digests', async () => {
    const { server } = serverWith({ header: 'required', data: 'required' });
    const ini = new TestInitiator(server);
    const a = await ini.login({ keys: { HeaderDigest: 'None,CRC32C', DataDigest: 'None,CRC32C' } });
    expect(a.get('HeaderDigest')).to.equal('CRC32C');
    expect(a.get('DataDigest')).to.equal('CRC32C');
    expect(ini.headerDigest && ini.dataDigest).to.equal(true);
    ini.scsi({ cdb: inquiry(), read: true, edtl: 36 });
    await tick();
    expect(ini.next(OP.DATA_IN).data.length).to.equal(36);
  });

  it('required refuses an initiator that offers only None with 0x0200 and closes', async () => {
    for (const key of ['HeaderDigest', 'DataDigest']) {
      const { server } = serverWith({ header: 'required', data: 'required' });
      const ini = new TestInitiator(server);
      const other = key === 'HeaderDigest' ? 'DataDigest' : 'HeaderDigest';
      const r = await loginWith(ini, { [key]: 'None', [other]: 'CRC32C' });
      expect(r.bhs.readUInt16BE(36), key).to.equal(0x0200);
      await tick();
      expect(ini.closed).to.equal(true);
      expect(server.sessions()).to.have.length(0);
    }
  });

  it('required refuses a login that never offers the digest with 0x0207 (missing parameter)', async () => {
    const { server } = serverWith({ header: 'required' });
    const ini = new TestInitiator(server);
    const r = await loginWith(ini, { DataDigest: 'None' });
    expect(r.bhs.readUInt16BE(36)).to.equal(0x0207);
    // Also when the login goes from the security stage straight to the full feature phase.
    const direct = new TestInitiator(server);
    direct.loginPdu({ csg: 0, nsg: 3, transit: true, text: textOf({ ...ID, AuthMethod: 'None' }) });
    await tick();
    expect(direct.next(OP.LOGIN_RSP).bhs.readUInt16BE(36)).to.equal(0x0207);
  });

  it('none answers None and refuses an initiator that insists on CRC32C', async () => {
    const { server } = serverWith({ header: 'none', data: 'none' });
    const ok = new TestInitiator(server);
    const r = await loginWith(ok, { HeaderDigest: 'CRC32C,None', DataDigest: 'CRC32C,None' });
    expect(r.bhs.readUInt16BE(36)).to.equal(0);
    expect(parseText(r.data).get('HeaderDigest')).to.equal('None');
    expect(parseText(r.data).get('DataDigest')).to.equal('None');
    const insists = new TestInitiator(server);
    expect((await loginWith(insists, { HeaderDigest: 'CRC32C' })).bhs.readUInt16BE(36)).to.equal(0x0200);
  });

  it('a target\'s own policy overrides the server\'s, field by field; discovery follows the server', async () => {
    const { server } = serverWith({ header: 'none', data: 'none' }, { data: 'required' });
    const ini = new TestInitiator(server);
    const a = await ini.login({ keys: { HeaderDigest: 'CRC32C,None', DataDigest: 'None,CRC32C' } });
    expect(a.get('HeaderDigest')).to.equal('None');
    expect(a.get('DataDigest')).to.equal('CRC32C');
    const disc = new TestInitiator(server);
    const d = await disc.login({ discovery: true, keys: { HeaderDigest: 'CRC32C,None', DataDigest: 'CRC32C,None' } });
    expect(d.get('HeaderDigest')).to.equal('None');
    expect(d.get('DataDigest')).to.equal('None');
  });

  it('refuses an unknown policy when the server is built', () => {
    const make = (digests: object) => new IscsiServer({
      clock: new ManualClock(), logger: nullLogger, portals: [],
      targets: [{ name: TARGET, deviceServer: new RamDiskDeviceServer(), digests: digests as Partial<DigestPolicies> }],
    });
    expect(() => make({ header: 'always' })).to.throw(/digests.header must be none, optional or required/);
    expect(() => make({ data: 'required' })).to.not.throw();
  });

  it('keeps the login going when the policy is met across several operational PDUs', async () => {
    const { server } = serverWith({ header: 'required' });
    const ini = new TestInitiator(server);
    ini.loginPdu({ csg: 1, nsg: 3, transit: false, text: textOf({ ...ID, HeaderDigest: 'CRC32C' }) });
    await tick();
    const first = ini.next(OP.LOGIN_RSP);
    expect(first.bhs.readUInt16BE(36)).to.equal(0);
    expect(parseText(first.data).get('HeaderDigest')).to.equal('CRC32C');
    ini.loginPdu({ csg: 1, nsg: 3, transit: true, text: textOf({ DataDigest: 'None' }) });
    await tick();
    expect(ini.next(OP.LOGIN_RSP).bhs.readUInt16BE(36)).to.equal(0);
  });
});
