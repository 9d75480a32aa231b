/**
 * A VM boots from a kura LUN both ways a BIOS can: SeaBIOS from QEMU's iscsi:// drive, and iPXE's
 * sanboot (InitialR2T=Yes, ImmediateData=No, so every write-free boot still exercises R2T-free
 * reads and iPXE's own login). The boot sector prints a marker on COM1.
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootSector } from './support/boot-sector.js';
import { bootUntil } from './support/qemu-vm.js';
import { freePort, run, startKura, tempDir, type KuraProcess } from './support/kura-process.js';

describe('booting a QEMU VM from a kura LUN', function () {
  this.timeout(180000);
  let kura: KuraProcess;
  let dir: string;
  let port: number;
  const iqn = 'iqn.2026-11.dev.kura:boot';
  const marker = `KURA-BOOT-${process.pid}`;

  before(async () => {
    dir = tempDir();
    port = await freePort();
    kura = await startKura({
      dir,
      config: {
        node: { name: 'boot-test', dataDir: join(dir, 'data') },
        portals: [{ host: '127.0.0.1', port }],
        volumes: [{ name: 'boot', size: '32MiB', backing: { type: 'file', path: 'boot.img' } }],
        targets: [{ name: iqn, luns: [{ lun: 0, volume: 'boot' }] }],
      },
    });
    // Install the boot sector through iSCSI, as a user would.
    const mbr = join(dir, 'mbr.bin');
    writeFileSync(mbr, bootSector(marker));
    const r = await run('qemu-io', ['-f', 'raw', '-c', `write -s ${mbr} 0 512`, kura.urls[0]!]);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
  });
  after(async () => {
    await kura?.stop();
  });

  it('SeaBIOS boots from an iscsi:// drive', async () => {
    const { serial, ms } = await bootUntil(['-drive', `file=${kura.urls[0]},format=raw,if=ide,cache=none`, '-boot', 'c'], marker, 90000);
    expect(serial).to.include(marker);
    console.log(`      SeaBIOS reached the boot sector in ${ms} ms`);
  });

  it('iPXE sanboot boots from the LUN', async () => {
    const tftp = join(dir, 'tftp');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(tftp, { recursive: true });
    // 10.0.2.2 is the host's loopback as seen from QEMU's user-mode network.
    writeFileSync(join(tftp, 'boot.ipxe'), `#!ipxe\ndhcp\nsanboot iscsi:10.0.2.2::${port}:0:${iqn}\n`);
    const { serial, ms } = await bootUntil([
      '-netdev', `user,id=n0,tftp=${tftp},bootfile=boot.ipxe`,
      '-device', 'e1000,netdev=n0,romfile=/usr/lib/ipxe/qemu/pxe-e1000.rom',
      '-boot', 'n',
      // iPXE's real-mode network stack spins forever under this host's (nested) KVM, with the
      // default CPU model and with -cpu host alike; TCG boots it reliably.
    ], marker, 150000, 'tcg');
    expect(serial).to.include(marker);
    console.log(`      iPXE sanboot reached the boot sector in ${ms} ms (TCG)`);
  });
});
