/**
 * The guest image builder (qemu/): its pieces (cpio newc, ELF reading, console parsing) and the
 * image it builds from Debian packages: an initramfs whose programs find every library they need,
 * whose modules come in dependency order, and an ext4 root that e2fsck passes.
 */
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { cpioNewc } from '../qemu/cpio.js';
import { dynamicInfo, ElfError, hasNote, modinfo } from '../qemu/elf.js';
import { parseConsole, verifyList } from '../qemu/guest-console.js';
import { ensureGuestImage, type GuestImage } from '../qemu/image-builder.js';
import { parseIscsiUrl, sbinTool } from '../qemu/lun.js';
import { pvhKernel } from '../qemu/pvh-kernel.js';
import { kernelCommandLine, qemuArgs } from '../qemu/vm.js';
import { run } from './support/kura-process.js';
import { guestImage, vmDataDir } from './support/vm-guest.js';

interface Entry { name: string; mode: number; data: Buffer; rdev: [number, number] }

/** Read a cpio newc archive back (the format the kernel unpacks). */
function readCpio(buf: Buffer): Entry[] {
  const out: Entry[] = [];
  let p = 0;
  const align = (n: number) => (n + 3) & ~3;
  for (;;) {
    expect(buf.toString('latin1', p, p + 6)).to.equal('070701');
    const field = (i: number) => parseInt(buf.toString('latin1', p + 6 + i * 8, p + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = buf.toString('utf8', p + 110, p + 110 + nameSize - 1);
    const dataAt = align(p + 110 + nameSize);
    if (name === 'TRAILER!!!') return out;
    out.push({ name, mode, data: buf.subarray(dataAt, dataAt + size), rdev: [field(9), field(10)] });
    p = align(dataAt + size);
  }
}

describe('guest image builder', function () {
  this.timeout(600000);

  describe('pieces', () => {
    it('cpio newc: round trip, deterministic, 4-byte aligned, device nodes', () => {
      const entries = [
        { kind: 'dir' as const, path: 'bin' },
        { kind: 'file' as const, path: 'bin/x', data: Buffer.from('hello'), mode: 0o755 },
        { kind: 'symlink' as const, path: 'bin/y', target: 'x' },
        { kind: 'char' as const, path: 'dev/console', major: 5, minor: 1 },
      ];
      const a = cpioNewc(entries, 1234);
      expect(a.equals(cpioNewc(entries, 1234))).to.equal(true);
      expect(a.length % 4).to.equal(0);
      const back = readCpio(a);
      expect(back.map((e) => e.name)).to.deep.equal(['bin', 'bin/x', 'bin/y', 'dev/console']);
      expect(back[1]!.mode).to.equal(0o100755);
      expect(back[1]!.data.toString()).to.equal('hello');
      expect(back[2]!.mode & 0o170000).to.equal(0o120000);
      expect(back[2]!.data.toString()).to.equal('x');
      expect(back[3]!.rdev).to.deep.equal([5, 1]);
    });

    it('ELF: DT_NEEDED and the interpreter of a dynamic executable; errors on other files', () => {
      const node = dynamicInfo(readFileSync(process.execPath));
      expect(node.needed).to.include('libc.so.6');
      expect(node.interpreter).to.match(/ld-linux-x86-64\.so\.2$/);
      expect(() => dynamicInfo(Buffer.from('#!/bin/sh\n'.padEnd(64)))).to.throw(ElfError);
    });

    it('console: fsynced files, markers, failures', () => {
      const sha = 'ab'.repeat(32);
      const r = parseConsole(`[ 1.0] kernel noise\r\nKURA-FSYNCED /a/f1 ${sha}\r\nKURA-FSYNCED /a/f2 ${sha.slice(1)}\nKURA-WORKLOAD-DONE 1\n`
        + 'KURA-VERIFY-BAD /a/f3 want=x got=y\nKURA-VERIFY-RESULT FAIL ok=1 bad=1\nKURA-ISCSI-TEST PASS files=1 digest=None\nKURA-POWEROFF FAIL boom\n');
      expect(r.fsynced).to.deep.equal([{ path: '/a/f1', sha256: sha }]);
      expect(r.workloadDone).to.equal(true);
      expect(r.verify).to.deep.equal({ pass: false, ok: 1, bad: 1, problems: ['KURA-VERIFY-BAD /a/f3 want=x got=y'] });
      expect(r.iscsiTest).to.deep.equal({ pass: true, detail: 'files=1 digest=None' });
      expect(r.failure).to.equal('FAIL boom');
      expect(verifyList(r.fsynced)).to.equal(`KURA-FSYNCED /a/f1 ${sha}\n`);
    });

    it('iSCSI URLs, QEMU arguments and the kernel command line', () => {
      expect(parseIscsiUrl('iscsi://127.0.0.1:3261/iqn.2026-11.dev.kura:x/3')).to.deep.equal({ host: '127.0.0.1', port: 3261, target: 'iqn.2026-11.dev.kura:x', lun: 3 });
      expect(parseIscsiUrl('iscsi://[::1]/iqn.2026-11.dev.kura:x/0')).to.deep.include({ host: '::1', port: 3260 });
      expect(() => parseIscsiUrl('nbd://x')).to.throw(/not an iSCSI URL/);
      const spec = { kernel: { path: 'k' }, initramfs: { path: 'i' }, accel: 'tcg' as const, mode: 'root' as const, disks: [{ url: 'iscsi://h/iqn.2026-11.dev.kura:x/0', bus: 'scsi' as const }] };
      expect(kernelCommandLine(spec)).to.include('root=/dev/sda').and.include('kura.mode=root');
      const args = qemuArgs(spec).join(' ');
      expect(args).to.include('-device virtio-scsi-pci').and.include('scsi-hd,drive=d0').and.include('accel=tcg').and.include('-no-reboot');
      expect(() => qemuArgs({ ...spec, disks: [{ url: 'iscsi://h/a,b/0' }] })).to.throw(/comma/);
      expect(pvhKernel(Buffer.alloc(4096), () => ({ status: 0, stdout: Buffer.alloc(0) }))).to.equal('not a bzImage');
    });
  });

  describe('the image', () => {
    let img: GuestImage;
    let files: Map<string, Entry>;
    before(async () => {
      img = await guestImage();
      files = new Map(readCpio(gunzipSync(readFileSync(img.initramfs.path))).map((e) => [e.name, e]));
    });

    it('is cached under the data directory by a key over its inputs', async () => {
      const started = Date.now();
      const again = await ensureGuestImage({ dataDir: vmDataDir });
      expect(again.built).to.equal(false);
      expect(again.key).to.equal(img.key);
      expect(Date.now() - started).to.be.below(5000);
      for (const f of [img.kernel, img.bzImage, img.initramfs, img.rootfs]) {
        expect(createHash('sha256').update(readFileSync(f.path)).digest('hex'), f.path).to.equal(f.sha256);
      }
      expect(img.packages.map((p) => p.name)).to.include.members(['busybox-static', 'e2fsprogs', 'open-iscsi', 'libc6']);
      expect(img.packages.find((p) => p.name.startsWith('linux-image-'))).to.not.equal(undefined);
    });

    it('boots a PVH kernel when the package has one', () => {
      const k = readFileSync(img.kernel.path);
      if (img.kernel.path !== img.bzImage.path) expect(hasNote(k, 'Xen', 18)).to.equal(true);
      else expect(k.readUInt32LE(0x202)).to.equal(0x53726448); // "HdrS": a bzImage
    });

    it('initramfs: /init, busybox, and every program finds its libraries and ld.so inside', () => {
      expect(files.get('init')!.mode).to.equal(0o100755);
      expect(files.get('dev/console')!.rdev).to.deep.equal([5, 1]);
      expect(files.get('bin/busybox')!.mode).to.equal(0o100755);
      const resolveLink = (name: string): Entry => {
        for (let i = 0; i < 8; i++) {
          const e = files.get(name);
          expect(e, name).to.not.equal(undefined);
          if ((e!.mode & 0o170000) !== 0o120000) return e!;
          const target = e!.data.toString();
          name = target.startsWith('/') ? target.slice(1) : posix.normalize(posix.join(posix.dirname(name), target));
        }
        throw new Error(`${name}: symlink loop`);
      };
      for (const prog of ['sbin/iscsid', 'sbin/iscsiadm', 'sbin/mke2fs', 'sbin/e2fsck', 'sbin/mkfs.ext4', 'sbin/fsck.ext4', 'bin/sh', 'sbin/switch_root']) {
        const elf = resolveLink(prog);
        const info = dynamicInfo(elf.data, prog);
        if (info.interpreter) resolveLink(info.interpreter.slice(1));
        for (const lib of info.needed) {
          const l = resolveLink(`lib/x86_64-linux-gnu/${lib}`);
          for (const dep of dynamicInfo(l.data, lib).needed) resolveLink(`lib/x86_64-linux-gnu/${dep}`);
        }
      }
    });

    it('initramfs: kernel modules in dependency order, iSCSI, ext4, virtio and fw_cfg among them', () => {
      const order = files.get('etc/kura/modules')!.data.toString().trim().split('\n');
      expect(order).to.include.members(['iscsi_tcp', 'libiscsi', 'scsi_transport_iscsi', 'ext4', 'virtio_blk', 'virtio_net', 'sd_mod', 'qemu_fw_cfg', 'crc32c_generic']);
      const loaded = new Set<string>();
      for (const m of order) {
        const info = modinfo(files.get(`lib/modules/${m}.ko`)!.data, m);
        const deps = info.filter(([k]) => k === 'depends').flatMap(([, v]) => v.split(',').filter(Boolean));
        for (const d of deps) expect(loaded.has(d.replace(/-/g, '_')), `${m} needs ${d} first`).to.equal(true);
        loaded.add(m);
      }
    });

    it('ext4 root: e2fsck -fn is clean; guest tools and init are there', async () => {
      const r = await run(sbinTool('e2fsck'), ['-fn', img.rootfs.path]);
      expect(r.code, r.stdout + r.stderr).to.equal(0);
      const ls = await run(sbinTool('debugfs'), ['-R', 'ls -l /bin', img.rootfs.path]);
      expect(ls.stdout).to.include('kura-workload').and.include('kura-verify').and.include('busybox');
    });
  });
});
