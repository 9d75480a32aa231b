import { expect } from 'chai';
import { TestInitiator, makeServer, tick } from '../../test/iscsi-helpers.js';
import { RamDiskDeviceServer } from '../../test/ramdisk-device-server.js';
import type { ScsiResult, ScsiTask, TaskIo, TaskOwner } from '../scsi/task.js';

class OwnedDisk extends RamDiskDeviceServer {
  owner: TaskOwner | undefined;
  attach(owner: TaskOwner): void {
    this.owner = owner;
  }
}

describe('iscsi server as the device server\'s task owner (PREEMPT AND ABORT)', () => {
  it('aborts the tasks of the named I_T nexuses at that LUN, and only those', async () => {
    const disk = new OwnedDisk(2048, [0, 1]);
    const { server } = makeServer({ disk });
    const hung: Array<{ task: ScsiTask; io: TaskIo }> = [];
    disk.hook = (task, io) => (task.cdb[0] === 0xc0 ? new Promise<ScsiResult>(() => hung.push({ task, io })) : undefined);
    const a = new TestInitiator(server);
    await a.login({ initiatorName: 'iqn.2024-01.test:a' });
    const b = new TestInitiator(server);
    await b.login({ initiatorName: 'iqn.2024-01.test:b' });
    a.scsi({ cdb: [0xc0], lun: 0 });
    a.scsi({ cdb: [0xc0], lun: 1 });
    b.scsi({ cdb: [0xc0], lun: 0 });
    await tick();
    expect(hung).to.have.length(3);
    disk.owner!.abortTasks(0, new Set([hung[0]!.task.nexus.id]));
    expect(hung.map((h) => h.io.aborted)).to.deep.equal([true, false, false]);
  });
});
