/**
 * QEMU VMs on kura LUNs, with a guest built from Debian packages (qemu/image-builder.ts):
 * - a VM boots from an ext4 root on a kura LUN (QEMU's iSCSI driver, virtio-blk), runs the workload
 *   (files written, fsynced, announced on the console), powers off; e2fsck -fn on the LUN, read back
 *   through iSCSI, is clean, and a second boot verifies every announced file;
 * - Linux's own initiator inside a guest (iscsi_tcp + open-iscsi, CRC32C digests) against kura;
 * - `kura vm boot` / `list` / `stop`.
 * KVM when a guest boots with it here, else TCG (the timeouts allow for TCG).
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConsole, verifyList } from '../qemu/guest-console.js';
import type { GuestImage } from '../qemu/image-builder.js';
import { fsckLun, writeImageToLun } from '../qemu/lun.js';
import { runVm, type Accel, type VmRecord } from '../qemu/vm.js';
import { freePort, kuraCli, run, startKura, tempDir, type KuraProcess } from './support/kura-process.js';
import { guestAccel, guestImage, vmDataDir } from './support/vm-guest.js';

describe('QEMU VMs booting from kura LUNs (guest from Debian packages)', function () {
  this.timeout(600000);
  let kura: KuraProcess;
  let dir: string;
  let port: number;
  let img: GuestImage;
  let accel: Accel;
  const rootIqn = 'iqn.2026-11.dev.kura:vm-root';
  const dataIqn = 'iqn.2026-11.dev.kura:vm-data';
  const rootUrl = () => `iscsi://127.0.0.1:${port}/${rootIqn}/0`;
  const dataUrl = () => `iscsi://127.0.0.1:${port}/${dataIqn}/0`;

  before(async () => {
    img = await guestImage();
    accel = await guestAccel(img);
    dir = tempDir('kura-vm-');
    port = await freePort();
    kura = await startKura({
      dir,
      config: {
        node: { name: 'vm-test', dataDir: join(dir, 'data') },
        portals: [{ host: '127.0.0.1', port }],
        volumes: [
          { name: 'root', size: '96MiB', backing: { type: 'file', path: 'root.img' } },
          { name: 'data', size: '64MiB', backing: { type: 'file', path: 'data.img' } },
        ],
        targets: [
          { name: rootIqn, luns: [{ lun: 0, volume: 'root' }] },
          { name: dataIqn, luns: [{ lun: 0, volume: 'data' }] },
        ],
      },
    });
  });
  after(async () => {
    await kura?.stop();
  });

  it('boots from an ext4 root on a LUN, runs the workload, powers off; e2fsck -fn is clean and every fsynced file verifies', async () => {
    let t = Date.now();
    await writeImageToLun(img.rootfs.path, rootUrl());
    const installMs = Date.now() - t;

    const count = 24;
    const work = await runVm({ kernel: img.kernel, initramfs: img.initramfs, accel, mode: 'root', disks: [{ url: rootUrl() }],
      kernelArgs: [`kura.workload=${count}:512`, 'kura.run=e2e'] }, { timeoutMs: 240000, serialLog: join(dir, 'workload.log') });
    const report = parseConsole(work.serial);
    expect(report.failure, work.serial).to.equal(undefined);
    expect(report.workloadDone, work.serial).to.equal(true);
    expect(report.poweroff, work.serial).to.equal('workload done');
    expect(report.fsynced, work.serial).to.have.length(count);
    expect(new Set(report.fsynced.map((f) => f.path)).size).to.equal(count);

    t = Date.now();
    const fsck = await fsckLun(rootUrl());
    const fsckMs = Date.now() - t;
    expect(fsck.clean, fsck.output).to.equal(true);

    // Second boot, root mounted read-only: the verifier gets the list the first boot printed (fw_cfg).
    const list = join(dir, 'fsynced.txt');
    writeFileSync(list, verifyList(report.fsynced));
    const check = await runVm({ kernel: img.kernel, initramfs: img.initramfs, accel, mode: 'root', disks: [{ url: rootUrl() }],
      fwCfg: { verify: list }, kernelArgs: ['kura.verify=fwcfg', 'ro'] }, { timeoutMs: 240000, serialLog: join(dir, 'verify.log') });
    const verified = parseConsole(check.serial);
    expect(verified.verify, check.serial).to.deep.include({ pass: true, ok: count, bad: 0 });
    console.log(`      ${accel}: root installed in ${installMs} ms; workload boot ${(work.ms / 1000).toFixed(1)} s (${count} files fsynced); `
      + `e2fsck through iSCSI ${fsckMs} ms; verify boot ${(check.ms / 1000).toFixed(1)} s`);
  });

  it("Linux's own initiator in the guest (iscsi_tcp + open-iscsi, CRC32C digests): discovery, login, mkfs.ext4, fsynced writes, fsck, logout", async () => {
    const r = await runVm({ kernel: img.kernel, initramfs: img.initramfs, accel, mode: 'iscsi-test', network: true,
      kernelArgs: [`kura.iscsi.portal=10.0.2.2:${port}`, `kura.iscsi.target=${dataIqn}`, 'kura.iscsi.digest=CRC32C', 'kura.workload=16:256'] },
    { timeoutMs: 240000, serialLog: join(dir, 'iscsi-test.log') });
    const report = parseConsole(r.serial);
    expect(report.iscsiTest, r.serial).to.deep.equal({ pass: true, detail: 'files=16 digest=CRC32C' });
    expect(r.serial).to.match(new RegExp(`KURA-ISCSI-DISCOVERED \\S+ ${dataIqn.replace(/\./g, '\\.')}`));
    expect(report.fsynced).to.have.length(16);
    // And from the host, through QEMU's initiator: the file system the guest made is clean.
    const fsck = await fsckLun(dataUrl());
    expect(fsck.clean, fsck.output).to.equal(true);
    console.log(`      ${accel}: Linux initiator test ${(r.ms / 1000).toFixed(1)} s`);
  });

  it('kura vm boot (detached, serial on a pty) / list / stop', async () => {
    const name = `e2e-${process.pid}`;
    const cli = (args: string[]) => run(process.execPath, [kuraCli, 'vm', ...args, '--data-dir', vmDataDir], { timeoutMs: 120000 });
    const boot = await cli(['boot', '--lun', rootUrl(), '--name', name, '--serial', 'pty']);
    expect(boot.code, boot.stderr).to.equal(0);
    expect(boot.stderr).to.include(`VM ${name} running`);
    try {
      const listed = await cli(['list', '--json']);
      const vm = (JSON.parse(listed.stdout) as (VmRecord & { running: boolean })[]).find((v) => v.name === name);
      expect(vm, listed.stdout).to.deep.include({ running: true, lun: rootUrl(), mode: 'root' });
      expect(vm!.pty).to.match(/^\/dev\/pts\/\d+$/);
    } finally {
      const stop = await cli(['stop', name]);
      expect(stop.code, stop.stderr).to.equal(0);
      expect(stop.stderr).to.include(`VM ${name} stopped`);
    }
    const after = await cli(['list', '--json']);
    expect((JSON.parse(after.stdout) as VmRecord[]).map((v) => v.name)).to.not.include(name);
  });
});
