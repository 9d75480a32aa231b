import { expect } from 'chai';
import { OP, TestInitiator, makeServer, parseText, parseTextList, textOf, tick } from '../../test/iscsi-helpers.js';
import type { ScsiTask } from '../scsi/task.js';
import type { IscsiServer } from './iscsi-server.js';

/** A TestInitiator whose connection arrives on the portal group `tag`. */
function through(server: IscsiServer, tag: number): TestInitiator {
  return new TestInitiator({ accept: (t: Parameters<IscsiServer['accept']>[0]) => server.accept(t, tag) } as unknown as IscsiServer);
}

const TUR = [0, 0, 0, 0, 0, 0];

describe('iscsi portal groups: one SCSI target port per target portal group', () => {
  function setup() {
    const made = makeServer({ portals: [{ host: '192.0.2.1', port: 3260, portalGroupTag: 1 }, { host: '192.0.2.2', port: 3260, portalGroupTag: 2 }] });
    const seen: ScsiTask[] = [];
    made.disk.hook = (task) => {
      seen.push(task);
      return undefined;
    };
    return { ...made, seen };
  }

  it('tells the initiator its portal group tag and gives the device server that relative target port', async () => {
    const { server, seen } = setup();
    const ini = through(server, 2);
    ini.loginPdu({ csg: 0, nsg: 1, transit: true, text: textOf({ InitiatorName: 'iqn.2024-01.test:i', SessionType: 'Normal', TargetName: 'iqn.2024-01.test:disk', AuthMethod: 'None' }) });
    await tick();
    expect(parseText(ini.next(OP.LOGIN_RSP).data).get('TargetPortalGroupTag')).to.equal('2');
    ini.loginPdu({ csg: 1, nsg: 3, transit: true, text: textOf({}) });
    await tick();
    ini.next(OP.LOGIN_RSP);
    ini.scsi({ cdb: TUR });
    await tick();
    const n = seen[0]!.nexus;
    expect([n.id, n.initiatorPort, n.relativeTargetPort]).to.deep.equal([
      'iqn.2024-01.test:i,i,0x801234560001|2', 'iqn.2024-01.test:i,i,0x801234560001', 2]);
  });

  it('reinstates a session only through the same portal group: another group is another I_T nexus', async () => {
    const { server, disk } = setup();
    const a = through(server, 1);
    await a.login();
    const b = through(server, 2);
    await b.login();
    expect(server.sessions()).to.have.length(2);
    expect(disk.events.filter((e) => e.startsWith('nexusLost'))).to.deep.equal([]);
    const again = through(server, 2);
    await again.login();
    expect(server.sessions()).to.have.length(2);
    expect(disk.events.filter((e) => e.startsWith('nexusLost'))).to.deep.equal(['nexusLost:iqn.2024-01.test:initiator,i,0x801234560001|2']);
    expect(a.closed).to.equal(false);
    expect(b.closed).to.equal(true);
  });

  it('does not let a connection join a session of another portal group', async () => {
    const { server } = setup();
    const a = through(server, 1);
    await a.login();
    const b = through(server, 2);
    b.tsih = a.tsih;
    let status = 0;
    await b.login().catch((e: { status: number }) => { status = e.status; });
    expect(status, 'SESSION DOES NOT EXIST').to.equal(0x020a);
  });

  it('lists every portal with its own tag in SendTargets', async () => {
    const { server } = setup();
    const d = through(server, 1);
    await d.login({ discovery: true });
    const b = Buffer.alloc(48);
    b[0] = 0x40 | OP.TEXT;
    b[1] = 0x80;
    b.writeUInt32BE(0x77, 16);
    b.writeUInt32BE(0xffffffff, 20);
    b.writeUInt32BE(d.cmdSN, 24);
    d.send(b, textOf({ SendTargets: 'All' }));
    await tick();
    const pairs = parseTextList(d.next(OP.TEXT_RSP).data).filter(([k]) => k === 'TargetAddress').map(([, v]) => v);
    expect(pairs).to.deep.equal(['192.0.2.1:3260,1', '192.0.2.2:3260,2']);
  });
});
