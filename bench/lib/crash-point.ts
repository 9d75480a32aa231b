/**
 * One crash point of the remote-site crash-consistency check (issue 5): a Linux VM on the primary's
 * LUN runs the workload (files written, fsynced, announced on the console); at a random moment the
 * primary site is destroyed (the VM and the primary controller, kill -9); the relay forwards what
 * it holds; the secondary is promoted; a VM boots from the secondary's LUN (ext4 replays its
 * journal) and verifies every file announced before the crash; e2fsck -fn then checks the file
 * system. Clean = the verifier found every file with its checksum and e2fsck found nothing.
 *
 * Used by test/e2e-crash-consistency.test.ts (a few points) and bench/crash-consistency.ts (100).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseConsole, verifyList, type FsyncedFile } from '../../qemu/guest-console.js';
import type { GuestImage } from '../../qemu/image-builder.js';
import { fsckLun, writeImageToLun } from '../../qemu/lun.js';
import { runVm, type Accel } from '../../qemu/vm.js';
import { Random } from '../../hal/sim/random.js';
import { kura, nodeOf, relayTopology, startTopology, waitPeersUp, waitRelaysDrained, type KuraCli, type RunningTopology } from './kura-topology.js';

export interface CrashPointOptions {
  cli: KuraCli;
  img: GuestImage;
  accel: Accel;
  /** A fresh directory for this point (topology, data, logs). */
  dir: string;
  seed: number;
  /** Files the workload writes (it is killed before the last one). Default 60, up to 256 KiB each. */
  files?: number;
  maxKib?: number;
  log?: (line: string) => void;
}

export interface CrashPointResult {
  seed: number;
  /** The crash came after this many files were announced fsynced (and `extraMs` later). */
  killAfterFiles: number;
  extraMs: number;
  fsyncedBeforeCrash: number;
  verify: { pass: boolean; ok: number; bad: number; problems: string[] } | undefined;
  fsck: { clean: boolean; output: string };
  clean: boolean;
  ms: { install: number; workload: number; drain: number; verify: number; fsck: number };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends `sig`; false when the process had already exited (ESRCH), any other error is thrown. */
function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

function pidOf(t: RunningTopology, node: string): number {
  return Number(fs.readFileSync(path.join(t.dataDir, 'run', `${node}.pid`), 'utf8').trim());
}

export async function runCrashPoint(o: CrashPointOptions): Promise<CrashPointResult> {
  const log = o.log ?? (() => {});
  const rnd = new Random(o.seed);
  const files = o.files ?? 60;
  const killAfterFiles = 1 + rnd.int(files - 2);
  const extraMs = rnd.int(400);
  fs.mkdirSync(o.dir, { recursive: true });
  const spec = relayTopology({ name: `crash-${o.seed}`, relayKm: 100, secondaryKm: 500 }, ['relay-durable'], { bandwidthBps: 1e9, volumeSize: '96MiB' });
  spec.volumes[0]!.name = 'root';
  const t = await startTopology(o.cli, o.dir, spec);
  const url = (node: string) => {
    const p = t.iscsi.get(node)!;
    return `iscsi://${p.host}:${p.port}/iqn.2026-11.dev.kura:root/0`;
  };
  try {
    await waitPeersUp(t, 'primary', ['root']);
    let at = Date.now();
    await writeImageToLun(o.img.rootfs.path, url('primary'));
    const install = Date.now() - at;

    // The workload VM; the crash fires once `killAfterFiles` files were announced, `extraMs` later.
    at = Date.now();
    let vmPid: number | undefined;
    let serial = '';
    let announced: FsyncedFile[] = [];
    let killed = false;
    let fire: (() => void) | undefined;
    const crash = new Promise<void>((resolve) => { fire = resolve; });
    const vm = runVm({
      kernel: o.img.kernel, initramfs: o.img.initramfs, accel: o.accel, mode: 'root', disks: [{ url: url('primary') }],
      kernelArgs: [`kura.workload=${files}:${o.maxKib ?? 256}`, `kura.run=crash${o.seed}`],
    }, {
      timeoutMs: 300_000, serialLog: path.join(o.dir, 'workload.log'),
      onSpawn: (pid) => { vmPid = pid; },
      onSerial: (text) => {
        serial += text;
        if (killed) return;
        if (parseConsole(serial).fsynced.length >= killAfterFiles) fire?.();
      },
    }).then(() => 'powered off' as const, (err: Error) => (killed ? 'killed' as const : err));
    const ended = await Promise.race([crash.then(() => 'crash' as const), vm]);
    if (ended !== 'crash') throw ended instanceof Error ? ended : new Error(`the workload finished before the crash point (${killAfterFiles} files)\n${serial}`);
    await sleep(extraMs);
    // The primary site goes: VM and controller at once. What the console showed until now was
    // printed before the kill, so every announced file was fsynced (acknowledged) before it.
    killed = true;
    announced = parseConsole(serial).fsynced;
    const primaryPid = pidOf(t, 'primary');
    // A crash point near the end can come after the guest wrote its last file and powered off
    // during `extraMs`: the site still dies, there is just no VM left in it to kill.
    const vmGone = vmPid === undefined || !signal(vmPid, 'SIGKILL');
    if (!signal(primaryPid, 'SIGKILL')) throw new Error(`the primary controller (pid ${primaryPid}) was no longer running at the crash point`);
    const vmEnd = await vm;
    if (vmEnd instanceof Error) throw vmEnd;
    if (vmGone) log(`seed ${o.seed}: the workload had already ${vmEnd} before the crash; the crash took the controller only`);
    const workload = Date.now() - at;
    log(`seed ${o.seed}: crashed after ${announced.length} fsynced files (target ${killAfterFiles} + ${extraMs} ms)`);

    at = Date.now();
    // The primary is gone: what is left to wait for is the relay forwarding all it holds.
    await waitRelaysDrained(t, 60_000);
    const drain = Date.now() - at;
    await kura(o.cli, ['promote', 'root', t.file]);
    const sec = nodeOf(await t.status(), 'secondary').volumes.find((v) => v.volume === 'root');
    log(`seed ${o.seed}: secondary promoted at sequence ${sec?.sequence}`);

    // Boot on the secondary: ext4 replays its journal on mount; the verifier checks the files.
    at = Date.now();
    const list = path.join(o.dir, 'fsynced.txt');
    fs.writeFileSync(list, verifyList(announced));
    const check = await runVm({
      kernel: o.img.kernel, initramfs: o.img.initramfs, accel: o.accel, mode: 'root', disks: [{ url: url('secondary') }],
      fwCfg: { verify: list }, kernelArgs: ['kura.verify=fwcfg'],
    }, { timeoutMs: 300_000, serialLog: path.join(o.dir, 'verify.log') });
    const verify = parseConsole(check.serial).verify;
    const verifyMs = Date.now() - at;
    at = Date.now();
    const fsck = await fsckLun(url('secondary'));
    const fsckMs = Date.now() - at;
    return {
      seed: o.seed, killAfterFiles, extraMs, fsyncedBeforeCrash: announced.length, verify, fsck: { clean: fsck.clean, output: fsck.output },
      clean: verify?.pass === true && verify.ok === announced.length && fsck.clean,
      ms: { install, workload, drain, verify: verifyMs, fsck: fsckMs },
    };
  } finally {
    await t.down().catch(() => '');
  }
}
