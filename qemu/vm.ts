/**
 * QEMU VMs booting the guest image (direct kernel boot: -kernel/-initrd) with their disks on kura
 * LUNs through QEMU's iSCSI driver. KVM when it works (probed once per process), else TCG. A VM runs
 * attached (`runVm`: the caller waits for it to power off) or detached (`startVm`: a record under
 * <dataDir>/vms/<name>/ with the pid and the serial log, for `kura vm list` / `kura vm stop`).
 */
import { spawn } from 'node:child_process';
import {
  accessSync, closeSync, constants, createWriteStream, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { ImageFile } from './image-builder.js';

export type Accel = 'kvm' | 'tcg';
export type DiskBus = 'virtio' | 'scsi' | 'ide';
export type GuestMode = 'root' | 'iscsi-test' | 'shell' | 'probe';

const QEMU = 'qemu-system-x86_64';

export interface KvmProbe { ok: boolean; why: string; ms: number }

const probes = new Map<string, Promise<KvmProbe>>();

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/**
 * Does KVM run this kernel? /dev/kvm opening is not enough: on some (nested) hosts KVM starts,
 * SeaBIOS runs, and a Linux kernel hangs right after its real-mode setup. So the probe boots the
 * guest kernel (kura.mode=probe: /init prints a marker and powers off, ~1 s under KVM) and gives
 * it `timeoutMs`. The answer is cached in `cacheFile` per host boot, QEMU binary and kernel.
 */
export function probeKvm(image: { kernel: ImageFile; initramfs: Pick<ImageFile, 'path'> }, cacheFile?: string, timeoutMs = 15000): Promise<KvmProbe> {
  const key = `${bootId()} ${image.kernel.sha256}`;
  let probe = probes.get(key);
  if (probe) return probe;
  probe = (async () => {
    let cache: Record<string, KvmProbe> = {};
    try {
      if (cacheFile) cache = JSON.parse(readFileSync(cacheFile, 'utf8')) as Record<string, KvmProbe>;
    } catch {
      // No cache yet, or a torn one: probe again.
    }
    if (cache[key]) return cache[key]!;
    const started = Date.now();
    let result: KvmProbe;
    try {
      accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
      const r = await runVm({ kernel: image.kernel, initramfs: image.initramfs, accel: 'kvm', mode: 'probe', memoryMiB: 128 }, { timeoutMs });
      const ok = r.serial.includes('KURA-PROBE-OK');
      result = { ok, why: ok ? 'a Linux guest booted under KVM' : 'the guest gave no probe marker', ms: Date.now() - started };
    } catch (err) {
      const msg = (err as Error).message;
      result = { ok: false, why: /did not power off/.test(msg) ? `a Linux guest did not boot under KVM within ${timeoutMs} ms` : msg.split('\n')[0]!, ms: Date.now() - started };
    }
    if (cacheFile) {
      mkdirSync(dirname(cacheFile), { recursive: true });
      writeFileSync(cacheFile, `${JSON.stringify({ [key]: result }, null, 2)}\n`);
    }
    return result;
  })();
  probes.set(key, probe);
  return probe;
}

/** auto: $KURA_VM_ACCEL if set, else KVM when the probe booted a guest with it, else TCG. */
export async function chooseAccel(choice: 'auto' | Accel, image: { kernel: ImageFile; initramfs: Pick<ImageFile, 'path'> }, cacheFile?: string): Promise<Accel> {
  const wanted = choice === 'auto' ? (process.env.KURA_VM_ACCEL as Accel | undefined) ?? 'auto' : choice;
  if (wanted === 'tcg') return 'tcg';
  const kvm = await probeKvm(image, cacheFile);
  if (wanted === 'kvm' && !kvm.ok) throw new Error(`KVM does not work here: ${kvm.why}`);
  return kvm.ok ? 'kvm' : 'tcg';
}

export interface VmDisk { url: string; bus?: DiskBus; cache?: 'none' | 'writeback' | 'writethrough' | 'directsync' }

export interface VmSpec {
  kernel: Pick<ImageFile, 'path'>;
  initramfs: Pick<ImageFile, 'path'>;
  accel: Accel;
  mode: GuestMode;
  /** The first disk is the root in mode "root". */
  disks?: VmDisk[];
  /** A NIC on QEMU user networking (the host's 127.0.0.1 is 10.0.2.2 inside). */
  network?: boolean;
  kernelArgs?: string[];
  /** fw_cfg blobs: opt/kura/<name> -> file (the guest reads /sys/firmware/qemu_fw_cfg/by_name/...). */
  fwCfg?: Record<string, string>;
  memoryMiB?: number;
  cpus?: number;
  name?: string;
}

/** The device the guest sees for the first disk on `bus`. */
export function rootDevice(bus: DiskBus = 'virtio'): string {
  return bus === 'virtio' ? '/dev/vda' : '/dev/sda';
}

export function kernelCommandLine(spec: VmSpec): string {
  const args = ['console=ttyS0', 'panic=-1', 'loglevel=4', `kura.mode=${spec.mode}`];
  if (spec.mode === 'root') {
    const root = spec.disks?.[0];
    if (!root) throw new Error('mode "root" needs a disk');
    args.push(`root=${rootDevice(root.bus)}`, 'rootfstype=ext4');
  }
  return [...args, ...(spec.kernelArgs ?? [])].join(' ');
}

/** qemu-system-x86_64 arguments, without the serial console (the caller adds `-serial`). */
export function qemuArgs(spec: VmSpec): string[] {
  const args = ['-machine', `pc,accel=${spec.accel}`, '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-m', String(spec.memoryMiB ?? 256), '-smp', String(spec.cpus ?? 1)];
  if (spec.accel === 'kvm') args.push('-cpu', 'host');
  if (spec.name) args.push('-name', spec.name);
  args.push('-kernel', spec.kernel.path, '-initrd', spec.initramfs.path, '-append', kernelCommandLine(spec));
  let scsi = false;
  (spec.disks ?? []).forEach((d, i) => {
    if (d.url.includes(',')) throw new Error(`${d.url}: a comma would end QEMU's -drive option`);
    args.push('-drive', `file=${d.url},format=raw,if=none,id=d${i},cache=${d.cache ?? 'writeback'}`);
    const bus = d.bus ?? 'virtio';
    if (bus === 'virtio') args.push('-device', `virtio-blk-pci,drive=d${i}`);
    else if (bus === 'ide') args.push('-device', `ide-hd,drive=d${i}`);
    else {
      if (!scsi) args.push('-device', 'virtio-scsi-pci,id=scsi0');
      scsi = true;
      args.push('-device', `scsi-hd,drive=d${i},bus=scsi0.0`);
    }
  });
  if (spec.network) args.push('-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0');
  for (const [name, file] of Object.entries(spec.fwCfg ?? {})) args.push('-fw_cfg', `name=opt/kura/${name},file=${file}`);
  return args;
}

export interface RunResult { code: number | null; serial: string; ms: number; accel: Accel }

/**
 * Run a VM attached until QEMU exits (the guest powered off); the serial console is collected
 * (and written to `serialLog` if given). Rejects on timeout, after killing QEMU.
 */
export function runVm(spec: VmSpec, opts: {
  timeoutMs: number;
  serialLog?: string;
  onSerial?: (text: string) => void;
  /** QEMU is running: its pid and arguments (to record it for `kura vm list`). */
  onSpawn?: (pid: number, args: string[]) => void;
}): Promise<RunResult> {
  const started = Date.now();
  const args = [...qemuArgs(spec), '-chardev', 'stdio,id=s0,signal=off', '-serial', 'chardev:s0'];
  const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid !== undefined) opts.onSpawn?.(child.pid, args);
  const log = opts.serialLog ? createWriteStream(opts.serialLog) : undefined;
  let serial = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    const text = d.toString('latin1');
    serial += text;
    log?.write(d);
    opts.onSerial?.(text);
  });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the VM did not power off within ${opts.timeoutMs} ms (${spec.accel})\nserial:\n${serial}\nqemu: ${stderr}`));
    }, opts.timeoutMs);
    child.on('error', (err) => { clearTimeout(timer); reject(new Error(`${QEMU}: ${err.message}`)); });
    child.on('close', (code) => {
      clearTimeout(timer);
      log?.end();
      if (code !== 0) {
        reject(new Error(`${QEMU} exited with ${code}: ${stderr.trim()}\nserial:\n${serial}`));
        return;
      }
      resolvePromise({ code, serial, ms: Date.now() - started, accel: spec.accel });
    });
  });
}

export interface VmRecord {
  name: string;
  pid: number;
  accel: Accel;
  mode: GuestMode;
  lun?: string;
  serialLog: string;
  /** The pty the serial console is on (`--serial pty`). */
  pty?: string;
  qemuLog: string;
  startedAt: string;
  args: string[];
}

const recordFile = (stateDir: string, name: string) => join(stateDir, name, 'vm.json');

/** QEMU's -name for a recorded VM: how `list` tells it from a process that reused its pid. */
export const vmProcessName = (name: string) => `kura-vm-${name}`;

/** The state directory of VM `name` (created empty: an earlier VM of that name is forgotten). */
export function freshVmDir(stateDir: string, name: string): string {
  if (!vmNameOk(name)) throw new Error(`"${name}": VM names are letters, digits, "_", "." and "-"`);
  const existing = listVms(stateDir).find((v) => v.name === name);
  if (existing?.running) throw new Error(`VM "${name}" is already running (pid ${existing.pid})`);
  const dir = resolve(stateDir, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function saveVmRecord(stateDir: string, record: VmRecord): void {
  writeFileSync(recordFile(stateDir, record.name), `${JSON.stringify(record, null, 2)}\n`);
}

export function vmNameOk(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name);
}

/** Start a VM detached from this process; its record stays in `stateDir`/<name>/. */
export async function startVm(spec: VmSpec, stateDir: string, options: { name: string; serial: 'file' | 'pty' | { file: string }; lun?: string }): Promise<VmRecord> {
  const { name } = options;
  const dir = freshVmDir(stateDir, name);
  const serialLog = typeof options.serial === 'object' ? resolve(options.serial.file) : join(dir, 'serial.log');
  const qemuLog = join(dir, 'qemu.log');
  const serialArgs = options.serial === 'pty'
    ? ['-chardev', `pty,id=s0,logfile=${serialLog},logappend=off`, '-serial', 'chardev:s0']
    : ['-chardev', `file,id=s0,path=${serialLog}`, '-serial', 'chardev:s0'];
  const args = [...qemuArgs({ ...spec, name: vmProcessName(name) }), ...serialArgs];
  const fd = openSync(qemuLog, 'w');
  const child = spawn(QEMU, args, { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.once('error', () => {});
  if (child.pid === undefined) throw new Error(`${QEMU} did not start`);
  const record: VmRecord = { name, pid: child.pid, accel: spec.accel, mode: spec.mode, lun: options.lun, serialLog, qemuLog,
    startedAt: new Date().toISOString(), args };
  // QEMU opens the iSCSI drives before it runs the guest: a bad LUN ends it within a moment.
  const deadline = Date.now() + 5000;
  let early: number | null | undefined;
  void exited.then((c) => { early = c; });
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    if (early !== undefined) throw new Error(`QEMU exited (${early}): ${readFileSync(qemuLog, 'utf8').trim()}`);
    const log = readFileSync(qemuLog, 'utf8');
    if (options.serial === 'pty') {
      const m = /char device redirected to (\/dev\/pts\/\d+) \(label s0\)/.exec(log);
      if (m) record.pty = m[1]!;
      else continue;
    }
    if (existsSync(serialLog) && readFileSync(serialLog).length > 0) break;
  }
  child.unref();
  saveVmRecord(stateDir, record);
  return record;
}

/** Is `pid` still this VM's QEMU (and not a recycled pid)? */
function alive(record: VmRecord): boolean {
  try {
    process.kill(record.pid, 0);
  } catch {
    return false;
  }
  try {
    return readFileSync(`/proc/${record.pid}/cmdline`, 'latin1').split('\0').includes(vmProcessName(record.name));
  } catch {
    return false;
  }
}

export function listVms(stateDir: string): (VmRecord & { running: boolean })[] {
  if (!existsSync(stateDir)) return [];
  const out: (VmRecord & { running: boolean })[] = [];
  for (const name of readdirSync(stateDir).sort()) {
    const file = recordFile(stateDir, name);
    if (!existsSync(file)) continue;
    try {
      const r = JSON.parse(readFileSync(file, 'utf8')) as VmRecord;
      out.push({ ...r, running: alive(r) });
    } catch {
      // A record being written by a concurrent `vm boot`: not listed yet.
    }
  }
  return out;
}

/**
 * Stop a VM like pulling its power cord (SIGTERM: QEMU exits at once, the guest gets no say; what it
 * fsynced is on the LUN) and forget it. Resolves with whether it was still running.
 */
export async function stopVm(stateDir: string, name: string, timeoutMs = 10000): Promise<boolean> {
  const record = listVms(stateDir).find((v) => v.name === name);
  if (!record) throw new Error(`no VM named "${name}" (see kura vm list)`);
  const wasRunning = record.running;
  if (wasRunning) {
    process.kill(record.pid, 'SIGTERM');
    const deadline = Date.now() + timeoutMs;
    while (alive(record) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (alive(record)) process.kill(record.pid, 'SIGKILL');
  }
  rmSync(join(stateDir, name), { recursive: true, force: true });
  return wasRunning;
}
