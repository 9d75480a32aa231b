/**
 * `kura vm`: QEMU VMs whose disks are kura LUNs. The guest (a Debian kernel, an initramfs and an ext4
 * root, all from Debian packages) is built once per set of package versions into <dataDir>/images/;
 * running VMs are recorded under <dataDir>/vms/<name>/ (pid, serial log).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseConsole } from '../qemu/guest-console.js';
import { ensureGuestImage, type GuestImage } from '../qemu/image-builder.js';
import { fsckLun, parseIscsiUrl, writeImageToLun } from '../qemu/lun.js';
import {
  chooseAccel, freshVmDir, kernelCommandLine, listVms, qemuArgs, runVm, saveVmRecord, startVm, stopVm, vmNameOk, vmProcessName,
  type Accel, type DiskBus, type VmSpec,
} from '../qemu/vm.js';

const say = (msg: string) => process.stderr.write(`kura: ${msg}\n`);

function paths(dataDir: string) {
  const root = resolve(dataDir);
  return { root, vms: join(root, 'vms'), probeCache: join(root, 'images', 'kvm-probe.json') };
}

async function image(dataDir: string): Promise<GuestImage> {
  return ensureGuestImage({ dataDir, log: (m) => say(m) });
}

function workloadArg(value: string): string {
  if (!/^\d+(:\d+)?$/.test(value) || Number(value.split(':')[0]) < 1) throw new InvalidArgumentError('COUNT[:MAXKIB], e.g. 16 or 32:1024');
  return value;
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

/** The guest reaches the host's loopback through QEMU's user network at 10.0.2.2. */
function guestPortal(url: string): { portal: string; target: string } {
  const u = parseIscsiUrl(url);
  const host = ['127.0.0.1', 'localhost', '::1'].includes(u.host) ? '10.0.2.2' : u.host;
  return { portal: `${host}:${u.port}`, target: u.target };
}

interface BootOptions {
  lun: string;
  name?: string;
  install?: boolean;
  kernelArgs?: string;
  serial?: string;
  workload?: string | true;
  verify?: string;
  guestInitiator?: boolean;
  digest: 'None' | 'CRC32C';
  bus: DiskBus;
  accel: 'auto' | Accel;
  memory: number;
  wait?: boolean;
  timeout: number;
  dataDir: string;
}

async function boot(opts: BootOptions): Promise<number> {
  const p = paths(opts.dataDir);
  const name = opts.name ?? `vm-${randomBytes(3).toString('hex')}`;
  if (!vmNameOk(name)) throw new Error(`"${name}": VM names are letters, digits, "_", "." and "-"`);
  parseIscsiUrl(opts.lun);
  const img = await image(opts.dataDir);
  const accel = await chooseAccel(opts.accel, img, p.probeCache);
  const workload = opts.workload === true ? '16' : opts.workload;
  const kernelArgs = opts.kernelArgs?.split(/\s+/).filter(Boolean) ?? [];
  let spec: VmSpec;
  if (opts.guestInitiator) {
    // No QEMU drive: the guest logs in to the LUN's target itself (and mkfs's its first disk).
    const { portal, target } = guestPortal(opts.lun);
    spec = { kernel: img.kernel, initramfs: img.initramfs, accel, mode: 'iscsi-test', network: true, memoryMiB: opts.memory,
      kernelArgs: [`kura.iscsi.portal=${portal}`, `kura.iscsi.target=${target}`, `kura.iscsi.digest=${opts.digest}`,
        `kura.workload=${workload ?? '16'}`, ...kernelArgs] };
  } else {
    if (opts.install) {
      const t = Date.now();
      await writeImageToLun(img.rootfs.path, opts.lun);
      say(`ext4 root (${(img.rootfs.bytes / 2 ** 20).toFixed(0)} MiB) written to ${opts.lun} in ${Date.now() - t} ms`);
    }
    const fwCfg: Record<string, string> = {};
    if (opts.verify) fwCfg.verify = resolve(opts.verify);
    spec = { kernel: img.kernel, initramfs: img.initramfs, accel, mode: 'root', memoryMiB: opts.memory, disks: [{ url: opts.lun, bus: opts.bus }], fwCfg,
      kernelArgs: [...(workload ? [`kura.workload=${workload}`, `kura.run=${Date.now().toString(36)}`] : []),
        ...(opts.verify ? ['kura.verify=fwcfg', 'ro'] : []), ...kernelArgs] };
  }
  say(`VM ${name}: ${accel}, kernel ${img.kernelVersion}, ${kernelCommandLine(spec)}`);

  if (opts.serial === 'stdio') {
    // Interactive: the console on this terminal (QEMU's mux: Ctrl-A X quits, Ctrl-A C the monitor).
    const child = spawn('qemu-system-x86_64', [...qemuArgs({ ...spec, name: vmProcessName(name) }), '-serial', 'mon:stdio'], { stdio: 'inherit' });
    return new Promise((done) => child.on('close', (code) => done(code ?? 1)));
  }
  const scripted = Boolean(workload || opts.verify || opts.guestInitiator);
  if (!(opts.wait ?? scripted)) {
    const serial = opts.serial === undefined || opts.serial === 'file' ? 'file' : opts.serial === 'pty' ? 'pty' : { file: opts.serial };
    const rec = await startVm(spec, p.vms, { name, serial, lun: opts.lun });
    say(`VM ${name} running (pid ${rec.pid}); serial console ${rec.pty ? `on ${rec.pty}, logged to ` : 'logged to '}${rec.serialLog}`);
    say(`stop it with: kura vm stop ${name}`);
    return 0;
  }
  if (opts.serial === 'pty') throw new Error('--serial pty needs a detached VM: leave out --wait');

  // Attached: wait for the guest to power off, then report what its tools printed.
  const dir = freshVmDir(p.vms, name);
  const serialLog = opts.serial && opts.serial !== 'file' ? resolve(opts.serial) : join(dir, 'serial.log');
  const result = await runVm({ ...spec, name: vmProcessName(name) }, {
    timeoutMs: opts.timeout * 1000,
    serialLog,
    onSpawn: (pid, args) => saveVmRecord(p.vms, { name, pid, accel, mode: spec.mode, lun: opts.lun, serialLog, qemuLog: join(dir, 'qemu.log'),
      startedAt: new Date().toISOString(), args }),
  });
  const report = parseConsole(result.serial);
  say(`VM ${name} powered off after ${(result.ms / 1000).toFixed(1)} s (${accel}): ${report.poweroff ?? 'no reason given'}; serial log ${serialLog}`);
  // stdout: the fsynced files, in the verifier's input format (`kura vm boot --verify FILE`).
  for (const f of report.fsynced) process.stdout.write(`KURA-FSYNCED ${f.path} ${f.sha256}\n`);
  if (report.failure) return fail(`guest: ${report.failure}`);
  if (opts.guestInitiator) {
    if (!report.iscsiTest?.pass) return fail(`Linux initiator test: ${report.iscsiTest ? `FAIL ${report.iscsiTest.detail}` : 'no result'}`);
    say(`Linux initiator test PASS (${report.iscsiTest.detail})`);
  } else if (workload) {
    if (!report.workloadDone) return fail(`workload did not finish (${report.fsynced.length} files fsynced)`);
    say(`workload: ${report.fsynced.length} files written and fsynced`);
  }
  if (opts.verify) {
    if (!report.verify?.pass) return fail(`verify: ${report.verify ? `FAIL ok=${report.verify.ok} bad=${report.verify.bad}\n${report.verify.problems.join('\n')}` : 'no result'}`);
    say(`verify: PASS, ${report.verify.ok} files`);
  }
  return 0;
}

function fail(msg: string): number {
  say(msg);
  return 1;
}

export function registerVmCommands(program: Command): void {
  const dataDir = () => new Option('--data-dir <dir>', 'data directory: guest images in images/, VM records in vms/').default(process.env.KURA_DATA_DIR ?? 'data');
  const vm = program.command('vm').description('QEMU VMs booting from kura LUNs (guest built from Debian packages)');
  const exit = (p: Promise<number>) => p.then((code) => { process.exitCode = code; }, (err: unknown) => {
    say(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  });

  vm.command('image')
    .description('build (or find in the cache) the guest image and print its files, versions and sizes')
    .addOption(dataDir())
    .option('--json', 'print the whole manifest as JSON')
    .action((opts: { dataDir: string; json?: boolean }) => exit((async () => {
      const t = Date.now();
      const img = await image(opts.dataDir);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(img, null, 2)}\n`);
        return 0;
      }
      const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
      process.stdout.write([
        `image      ${img.dir} (${img.built ? `built in ${(img.buildMs / 1000).toFixed(1)} s` : `cached, found in ${Date.now() - t} ms`})`,
        `kernel     ${img.kernel.path} (${img.kernelVersion}, ${mib(img.kernel.bytes)}${img.kernel.path === img.bzImage.path ? '' : ', PVH entry'})`,
        `bzImage    ${img.bzImage.path} (${mib(img.bzImage.bytes)})`,
        `initramfs  ${img.initramfs.path} (${mib(img.initramfs.bytes)}, ${img.modules.length} modules, ${img.libraries.length} libraries)`,
        `rootfs     ${img.rootfs.path} (ext4, ${mib(img.rootfs.bytes)}, ${mib(img.rootfs.allocated)} allocated)`,
        `packages   ${img.packages.map((p) => `${p.name}=${p.version}`).join(' ')}`,
      ].join('\n') + '\n');
      return 0;
    })()));

  vm.command('install')
    .description('write the guest\'s ext4 root file system onto a LUN (replaces its start)')
    .requiredOption('--lun <url>', 'iscsi://host[:port]/iqn/lun')
    .addOption(dataDir())
    .action((opts: { lun: string; dataDir: string }) => exit((async () => {
      const img = await image(opts.dataDir);
      const t = Date.now();
      await writeImageToLun(img.rootfs.path, opts.lun);
      say(`ext4 root written to ${opts.lun} in ${Date.now() - t} ms`);
      return 0;
    })()));

  vm.command('fsck')
    .description('e2fsck -fn the ext4 file system on a LUN (on a copy read through iSCSI)')
    .requiredOption('--lun <url>', 'iscsi://host[:port]/iqn/lun')
    .action((opts: { lun: string }) => exit((async () => {
      const r = await fsckLun(opts.lun);
      process.stdout.write(r.output);
      say(r.clean ? 'file system clean' : `e2fsck exited with ${r.code}`);
      return r.clean ? 0 : 1;
    })()));

  vm.command('boot')
    .description('boot a VM from a LUN (ext4 root through QEMU\'s iSCSI driver), or with --guest-initiator run Linux\'s own initiator against the LUN\'s target')
    .requiredOption('--lun <url>', 'iscsi://host[:port]/iqn/lun')
    .option('--name <name>', 'VM name (default: vm-<random>)')
    .option('--install', 'first write the guest\'s ext4 root onto the LUN (replaces its start)')
    .option('--kernel-args <args>', 'extra kernel command line arguments')
    .option('--serial <where>', 'serial console: "file" (a log in the VM\'s record, default), a file path, "pty", or "stdio" (interactive)')
    .option('--workload [count[:maxkib]]', 'write, fsync and announce COUNT files (default 16, up to MAXKIB KiB each), then power off', workloadArg)
    .option('--verify <list>', 'check the files in LIST (lines "KURA-FSYNCED <path> <sha256>", as printed by --workload), then power off')
    .option('--guest-initiator', 'no QEMU drive: the guest logs in with Linux\'s iscsi_tcp + open-iscsi, mkfs.ext4, writes, fscks (ERASES the LUN)')
    .addOption(new Option('--digest <digest>', 'header/data digests of the guest initiator').choices(['None', 'CRC32C']).default('None'))
    .addOption(new Option('--bus <bus>', 'how the guest sees the LUN').choices(['virtio', 'scsi', 'ide']).default('virtio'))
    .addOption(new Option('--accel <accel>', 'auto: KVM if a guest boots with it here, else TCG').choices(['auto', 'kvm', 'tcg']).default('auto'))
    .option('--memory <mib>', 'guest memory in MiB', positive, 256)
    .option('--wait', 'stay attached until the guest powers off (default with --workload, --verify, --guest-initiator)')
    .option('--no-wait', 'return once the VM runs')
    .option('--timeout <seconds>', 'with --wait: kill the VM after this long', positive, 600)
    .addOption(dataDir())
    .action((opts: BootOptions) => exit(boot(opts)));

  vm.command('list')
    .description('VMs recorded in the data directory, running or not')
    .addOption(dataDir())
    .option('--json', 'as JSON')
    .action((opts: { dataDir: string; json?: boolean }) => {
      const vms = listVms(paths(opts.dataDir).vms);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(vms, null, 2)}\n`);
        return;
      }
      if (vms.length === 0) say('no VMs');
      else process.stdout.write('NAME\tSTATE\tPID\tACCEL\tMODE\tLUN\tCONSOLE\n');
      for (const v of vms) {
        process.stdout.write(`${v.name}\t${v.running ? 'running' : 'stopped'}\t${v.pid}\t${v.accel}\t${v.mode}\t${v.lun ?? '-'}\t${v.pty ?? v.serialLog}\n`);
      }
    });

  vm.command('stop <name>')
    .description('power a VM off at once (QEMU quits; the guest gets no warning) and forget its record')
    .addOption(dataDir())
    .action((name: string, opts: { dataDir: string }) => exit((async () => {
      const wasRunning = await stopVm(paths(opts.dataDir).vms, name);
      say(wasRunning ? `VM ${name} stopped` : `VM ${name} was not running; record removed`);
      return 0;
    })()));
}
