/**
 * The guest image: a Debian kernel, an initramfs and an ext4 root file system, built only from
 * Debian packages fetched with apt (linux-image-amd64, busybox-static, e2fsprogs, open-iscsi and the
 * libraries their ELF files need). Cached in <dataDir>/images/<key>/, where the key hashes every
 * input (package versions, builder version, guest scripts, module list, sizes): rebuilt only when
 * one of them changes. The outputs are reproducible: same inputs, same bytes.
 *
 * Boot: the initramfs loads the drivers and mounts root=/dev/... (the kura LUN, through QEMU's iSCSI
 * driver), then switch_root to the ext4 root, whose /sbin/init runs the workload / verifier / a shell.
 * kura.mode=iscsi-test runs Linux's own initiator test straight from the initramfs instead.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { cpioNewc, type CpioEntry } from './cpio.js';
import {
  AptError, aptFingerprint, aptUpdateOnce, candidates, concretePackage, debFileName, dependencyClosure, download, extract, type DebPackage,
} from './debian.js';
import { dynamicInfo } from './elf.js';
import { inPackage, Tree } from './file-tree.js';
import { resolveModules } from './kernel-modules.js';
import { pvhKernel } from './pvh-kernel.js';

/** Bump when the builder's output changes for the same packages. */
export const BUILDER_VERSION = 2;

/** Every timestamp inside the images (SOURCE_DATE_EPOCH style): 2026-11-01T00:00:00Z. */
const EPOCH = 1793491200;

const KERNEL_META = 'linux-image-amd64';
const USERLAND = ['busybox-static', 'e2fsprogs', 'open-iscsi'];

/** Disks (virtio-blk, virtio-scsi, IDE), NICs (virtio-net, e1000), ext4, Linux's iSCSI initiator, fw_cfg. */
export const GUEST_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_scsi', 'virtio_net', 'e1000', 'ata_piix', 'ata_generic',
  'sd_mod', 'ext4', 'crc32c_generic', 'crc32c-intel', 'iscsi_tcp', 'qemu_fw_cfg'];
const OPTIONAL_MODULES = ['crc32c-intel'];

/** ELF programs of the initramfs, by package. */
const INITRAMFS_PROGRAMS: [pkg: string, path: string][] = [
  ['e2fsprogs', 'sbin/mke2fs'], ['e2fsprogs', 'sbin/e2fsck'],
  ['open-iscsi', 'sbin/iscsid'], ['open-iscsi', 'sbin/iscsiadm'],
];
/** Run on the host during the build (ext4 image, kernel decompression), from their own packages. */
const BUILD_PACKAGES = ['xz-utils'];
const BUILD_TOOLS: [pkg: string, path: string][] = [['e2fsprogs', 'sbin/mke2fs'], ['e2fsprogs', 'sbin/debugfs'], ['xz-utils', 'usr/bin/xz']];
const LIB_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu', 'lib', 'usr/lib'];
const GUEST_LIB_DIR = 'lib/x86_64-linux-gnu';

export interface BuildOptions {
  dataDir: string;
  /** Size of the ext4 root file system image. */
  rootfsBytes?: number;
  log?: (msg: string) => void;
}

export interface ImageFile { path: string; bytes: number; sha256: string }

export interface GuestImage {
  key: string;
  dir: string;
  /** What VMs boot: the uncompressed ELF with its PVH entry (vmlinux) when there is one, else the bzImage. */
  kernel: ImageFile;
  /** The package's compressed kernel (vmlinuz). */
  bzImage: ImageFile;
  initramfs: ImageFile;
  /** Raw ext4 image (sparse on disk); `allocated` is what it occupies. */
  rootfs: ImageFile & { allocated: number };
  kernelVersion: string;
  packages: { name: string; version: string }[];
  modules: string[];
  libraries: string[];
  buildMs: number;
  /** false when the cached image was used. */
  built: boolean;
}

interface Manifest extends Omit<GuestImage, 'dir' | 'built' | 'kernel' | 'bzImage' | 'initramfs' | 'rootfs'> {
  builderVersion: number;
  files: { kernel: Omit<ImageFile, 'path'>; bzImage: Omit<ImageFile, 'path'>; initramfs: Omit<ImageFile, 'path'>; rootfs: Omit<ImageFile, 'path'> & { allocated: number } };
}

export function guestScriptDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // From source (qemu/) or from the build (dist/qemu/): the scripts stay in the source tree.
  for (const d of [join(here, 'guest'), join(here, '..', '..', 'qemu', 'guest')]) if (existsSync(join(d, 'init'))) return d;
  throw new Error(`guest scripts not found next to ${here}`);
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, env: { ...process.env, LC_ALL: 'C', ...env } });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

interface Inputs {
  key: string;
  kernelPackage: string;
  /** Candidate version of every package the build may use (roots and their library closure). */
  packages: Map<string, DebPackage>;
  scripts: Map<string, Buffer>;
  rootfsBytes: number;
}

interface ResolvedPackages { fingerprint: string; kernelPackage: string; packages: DebPackage[] }

/** apt-cache's answers (three calls, ~2 s), kept in `cacheFile` until apt's lists or the dpkg status change. */
function resolvePackages(cacheFile: string | undefined): { kernelPackage: string; packages: Map<string, DebPackage> } {
  // What was asked belongs to the fingerprint: a builder asking for other packages resolves afresh.
  const fingerprint = `${aptFingerprint()} ${KERNEL_META} ${[...USERLAND, ...BUILD_PACKAGES].join(' ')}`;
  if (cacheFile && existsSync(cacheFile)) {
    try {
      const c = JSON.parse(readFileSync(cacheFile, 'utf8')) as ResolvedPackages;
      if (c.fingerprint === fingerprint) return { kernelPackage: c.kernelPackage, packages: new Map(c.packages.map((p) => [p.name, p])) };
    } catch {
      // Torn or old: resolve again.
    }
  }
  const kernelPackage = concretePackage(KERNEL_META, 'linux-image-');
  const libs = dependencyClosure([...USERLAND, ...BUILD_PACKAGES], (n) => n.startsWith('lib'));
  const packages = candidates([...new Set([kernelPackage, ...USERLAND, ...BUILD_PACKAGES, ...libs])]);
  if (cacheFile) {
    mkdirSync(dirname(cacheFile), { recursive: true });
    const tmp = `${cacheFile}.${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ fingerprint, kernelPackage, packages: [...packages.values()] } satisfies ResolvedPackages));
    renameSync(tmp, cacheFile);
  }
  return { kernelPackage, packages };
}

/** Everything the image depends on, from apt's metadata alone (no download): the cache key. */
export function imageInputs(options: { rootfsBytes?: number; dataDir?: string } = {}): Inputs {
  const { kernelPackage, packages } = resolvePackages(options.dataDir ? join(resolve(options.dataDir), 'images', 'apt-resolved.json') : undefined);
  const dir = guestScriptDir();
  const scripts = new Map(readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f))]));
  const rootfsBytes = options.rootfsBytes ?? 64 * 2 ** 20;
  const key = sha256(JSON.stringify({
    builder: BUILDER_VERSION,
    packages: [...packages.values()].map((p) => `${p.name}=${p.version}`).sort(),
    modules: GUEST_MODULES,
    scripts: [...scripts].map(([f, d]) => `${f}:${sha256(d)}`),
    rootfsBytes,
  })).slice(0, 16);
  return { key, kernelPackage, packages, scripts, rootfsBytes };
}

/** The cached image for the current inputs, built first if needed. */
export async function ensureGuestImage(options: BuildOptions): Promise<GuestImage> {
  const log = options.log ?? (() => {});
  try {
    return await ensureOnce(options, log);
  } catch (err) {
    if (err instanceof AptError && aptUpdateOnce(log)) return ensureOnce(options, log);
    throw err;
  }
}

async function ensureOnce(options: BuildOptions, log: (m: string) => void): Promise<GuestImage> {
  const started = Date.now();
  const inputs = imageInputs(options);
  const imagesDir = join(resolve(options.dataDir), 'images');
  const dir = join(imagesDir, inputs.key);
  if (existsSync(join(dir, 'manifest.json'))) return loadImage(dir, false);
  log(`building guest image ${inputs.key} in ${dir}`);
  const work = join(imagesDir, `.build-${inputs.key}-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    const manifest = await build(inputs, join(imagesDir, 'debs'), work, log);
    manifest.buildMs = Date.now() - started;
    writeFileSync(join(work, 'out', 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    try {
      renameSync(join(work, 'out'), dir);
    } catch (err) {
      // Another builder finished the same key first: its image is as good as ours.
      if (!existsSync(join(dir, 'manifest.json'))) throw err;
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  prune(imagesDir, inputs.key, new Set([...inputs.packages.values()].map(debFileName)), log);
  const image = loadImage(dir, true);
  log(`guest image built in ${(image.buildMs / 1000).toFixed(1)} s: ${describeImage(image)}`);
  return image;
}

/**
 * Keep the cache bounded: the two newest other images (another checkout may still use one) and,
 * of the downloaded packages, only the versions the current inputs name.
 */
function prune(imagesDir: string, current: string, debNames: Set<string>, log: (m: string) => void): void {
  const others = readdirSync(imagesDir)
    .filter((d) => d !== current && /^[0-9a-f]{16}$/.test(d) && existsSync(join(imagesDir, d, 'manifest.json')))
    .map((d) => ({ d, t: statSync(join(imagesDir, d)).mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const { d } of others.slice(2)) {
    rmSync(join(imagesDir, d), { recursive: true, force: true });
    log(`removed the old guest image ${d}`);
  }
  const debs = join(imagesDir, 'debs');
  if (!existsSync(debs)) return;
  for (const f of readdirSync(debs)) if (f.endsWith('.deb') && !debNames.has(f)) rmSync(join(debs, f), { force: true });
}

/** One line: kernel, initramfs and root sizes. */
export function describeImage(img: GuestImage): string {
  const kernel = img.kernel.path === img.bzImage.path ? `bzImage ${mib(img.bzImage.bytes)}`
    : `vmlinux (PVH) ${mib(img.kernel.bytes)}, bzImage ${mib(img.bzImage.bytes)}`;
  return `kernel ${img.kernelVersion}: ${kernel}; initramfs ${mib(img.initramfs.bytes)}; ext4 root ${mib(img.rootfs.bytes)} `
    + `(${mib(img.rootfs.allocated)} allocated)`;
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

export function loadImage(dir: string, built: boolean): GuestImage {
  const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  const { files, builderVersion: _v, ...rest } = m;
  return {
    ...rest,
    dir,
    built,
    kernel: { path: join(dir, existsSync(join(dir, 'vmlinux')) ? 'vmlinux' : 'vmlinuz'), ...files.kernel },
    bzImage: { path: join(dir, 'vmlinuz'), ...files.bzImage },
    initramfs: { path: join(dir, 'initramfs.img'), ...files.initramfs },
    rootfs: { path: join(dir, 'rootfs.ext4'), ...files.rootfs },
  };
}

async function build(inputs: Inputs, debCache: string, work: string, log: (m: string) => void): Promise<Manifest> {
  const pkgDir = (name: string) => join(work, 'pkg', name);
  let lap = Date.now();
  const step = (what: string) => {
    log(`  ${what} (${Date.now() - lap} ms)`);
    lap = Date.now();
  };
  const used = new Map<string, DebPackage>();
  const libIndex = new Map<string, { path: string; pkg: string }>();
  const indexPackage = (name: string) => {
    for (const d of LIB_DIRS) {
      const abs = join(pkgDir(name), d);
      if (!existsSync(abs)) continue;
      for (const f of readdirSync(abs)) {
        if (/\.so(\.|$)/.test(f) && !libIndex.has(f)) libIndex.set(f, { path: inPackage(pkgDir(name), join(abs, f)), pkg: name });
      }
    }
  };
  /** Download (one apt-get call) and unpack packages not fetched yet. */
  const fetch = async (names: string[]) => {
    const todo = names.filter((n) => !used.has(n)).map((n) => {
      const p = inputs.packages.get(n);
      if (!p) throw new Error(`package ${n} is not among the resolved inputs`);
      return p;
    });
    if (todo.length === 0) return;
    const debs = await download(todo, debCache);
    todo.forEach((p, i) => {
      extract(debs[i]!, pkgDir(p.name));
      used.set(p.name, p);
      indexPackage(p.name);
    });
    step(todo.map((p) => `${p.name} ${p.version}`).join(', '));
  };
  await fetch([inputs.kernelPackage, ...USERLAND, ...BUILD_PACKAGES]);

  // Kernel and modules.
  const kernelRoot = pkgDir(inputs.kernelPackage);
  const kernelVersion = readdirSync(join(kernelRoot, 'lib', 'modules'))[0]!;
  const modules = resolveModules(join(kernelRoot, 'lib', 'modules', kernelVersion), GUEST_MODULES, OPTIONAL_MODULES);

  // Shared libraries: follow DT_NEEDED from the programs; a soname is looked up in the packages
  // fetched so far, then in the library packages the owner depends on (dpkg-shlibdeps put every
  // library package it links against into Depends). The program interpreter (ld.so) comes along.
  const resolveLibraries = async (programs: [pkg: string, path: string][]) => {
    const libs = new Map<string, string>();
    let interp: string | undefined;
    const queue: [file: string, pkg: string][] = programs.map(([pkg, p]) => [join(pkgDir(pkg), p), pkg]);
    while (queue.length > 0) {
      const [file, pkg] = queue.shift()!;
      const info = dynamicInfo(readFileSync(file), file);
      if (info.interpreter) interp ??= info.interpreter;
      for (const soname of info.needed) {
        if (libs.has(soname)) continue;
        if (!libIndex.has(soname)) await fetch(used.get(pkg)!.depends.filter((d) => d.startsWith('lib') && inputs.packages.has(d)));
        const found = libIndex.get(soname);
        if (!found) throw new Error(`${basename(file)} (${pkg}) needs ${soname}, which none of ${pkg}'s library dependencies provides`);
        libs.set(soname, found.path);
        queue.push([found.path, found.pkg]);
      }
    }
    if (!interp) throw new Error('no program interpreter (ld.so) found');
    const ld = libs.get(basename(interp)) ?? libIndex.get(basename(interp))?.path;
    if (!ld) throw new Error(`the program interpreter ${interp} is in no fetched package`);
    libs.set(basename(interp), ld);
    return { libs, interpreter: interp, ldso: ld };
  };
  const { libs: libraries, interpreter } = await resolveLibraries(INITRAMFS_PROGRAMS);
  // Host-side tools of the build, run through their own ld.so: the host's versions play no part.
  const tools = await resolveLibraries(BUILD_TOOLS);
  const toolLibPath = [...new Set([...tools.libs.values()].map((f) => dirname(f)))].join(':');
  const tool = (pkg: string, path: string, args: string[], opts: { input?: Buffer; env?: NodeJS.ProcessEnv } = {}) => spawnSync(tools.ldso,
    ['--library-path', toolLibPath, join(pkgDir(pkg), path), ...args],
    { input: opts.input, maxBuffer: 1024 * 2 ** 20, env: { ...process.env, LC_ALL: 'C', ...opts.env } });

  const scripts = (t: Tree) => {
    t.file('lib/kura/kura-lib.sh', inputs.scripts.get('kura-lib.sh')!);
    for (const s of ['kura-workload', 'kura-verify']) t.file(`bin/${s}`, inputs.scripts.get(s)!, 0o755);
  };
  const busybox = join(pkgDir('busybox-static'), 'bin', 'busybox');
  const applets = run(busybox, ['--list-full']).split('\n').filter(Boolean).sort();
  const base = (t: Tree) => {
    for (const d of ['dev', 'proc', 'sys', 'run', 'tmp', 'mnt', 'root', 'var/lib/kura', 'etc']) t.dir(d);
    t.file('bin/busybox', readFileSync(busybox), 0o755);
    t.file('etc/passwd', Buffer.from('root:x:0:0:root:/root:/bin/sh\n'));
    t.file('etc/group', Buffer.from('root:x:0:\n'));
    t.file('etc/hostname', Buffer.from('kura-guest\n'));
    t.file('etc/profile', Buffer.from('export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1="kura-guest:\\w# "\n'));
    scripts(t);
  };
  const linkApplets = (t: Tree) => {
    for (const a of applets) if (!t.has(a)) t.symlink(a, posix.relative(posix.dirname(a), 'bin/busybox'));
  };

  // The initramfs.
  const initrd = new Tree();
  base(initrd);
  initrd.file('init', inputs.scripts.get('init')!, 0o755);
  initrd.file('bin/kura-iscsi-test', inputs.scripts.get('kura-iscsi-test')!, 0o755);
  for (const m of modules.order) initrd.file(`lib/modules/${m.name}.ko`, readFileSync(m.path));
  initrd.file('etc/kura/modules', Buffer.from(modules.order.map((m) => `${m.name}\n`).join('')));
  for (const [pkg, p] of INITRAMFS_PROGRAMS) initrd.file(p, readFileSync(join(pkgDir(pkg), p)), 0o755);
  initrd.symlink('sbin/mkfs.ext4', 'mke2fs');
  initrd.symlink('sbin/fsck.ext4', 'e2fsck');
  for (const [soname, file] of libraries) initrd.file(`${GUEST_LIB_DIR}/${soname}`, readFileSync(file), 0o755);
  initrd.symlink(interpreter.replace(/^\//, ''), `/${GUEST_LIB_DIR}/${basename(interpreter)}`);
  initrd.file('etc/mke2fs.conf', readFileSync(join(pkgDir('e2fsprogs'), 'etc', 'mke2fs.conf')));
  initrd.file('etc/iscsi/iscsid.conf', readFileSync(join(pkgDir('open-iscsi'), 'etc', 'iscsi', 'iscsid.conf')));
  linkApplets(initrd);
  // The kernel opens /dev/console for /init before anything is mounted.
  const cpioEntries = [...initrd.sorted(), { kind: 'char', path: 'dev/console', major: 5, minor: 1 } as CpioEntry,
    { kind: 'char', path: 'dev/null', major: 1, minor: 3, mode: 0o666 } as CpioEntry];

  const out = join(work, 'out');
  mkdirSync(out);
  const initramfs = gzipSync(cpioNewc(cpioEntries, EPOCH), { level: 6 });
  writeFileSync(join(out, 'initramfs.img'), initramfs);
  step(`initramfs: ${modules.order.length} modules, ${libraries.size} libraries, ${initrd.entries.size} entries`);
  const bzImage = join(kernelRoot, 'boot', `vmlinuz-${kernelVersion}`);
  copyFileSync(bzImage, join(out, 'vmlinuz'));
  // QEMU boots an uncompressed ELF kernel through its PVH entry: no real-mode setup and no
  // decompression in the guest, which halves a TCG boot.
  const pvh = pvhKernel(readFileSync(bzImage), (input) => tool('xz-utils', 'usr/bin/xz', ['-dc'], { input }));
  if (typeof pvh === 'string') log(`  no PVH kernel (${pvh}): VMs boot the bzImage`);
  else writeFileSync(join(out, 'vmlinux'), pvh);
  step(typeof pvh === 'string' ? 'kernel' : `kernel: PVH ELF ${(pvh.length / 2 ** 20).toFixed(1)} MiB`);

  // The ext4 root: busybox and the guest tools. Made by the e2fsprogs being packaged (run through
  // its own ld.so), so the host's version plays no part.
  const rootTree = new Tree();
  base(rootTree);
  rootTree.file('sbin/init', inputs.scripts.get('root-init')!, 0o755);
  linkApplets(rootTree);
  const stage = join(work, 'rootfs');
  mkdirSync(stage);
  rootTree.writeTo(stage, EPOCH);
  const e2 = (prog: string, args: string[]) => {
    const r = tool('e2fsprogs', `sbin/${prog}`, args,
      { env: { E2FSPROGS_FAKE_TIME: String(EPOCH), MKE2FS_CONFIG: join(pkgDir('e2fsprogs'), 'etc', 'mke2fs.conf') } });
    if (r.status !== 0) throw new Error(`${prog} ${args.join(' ')} failed (${r.status}): ${r.stdout}${r.stderr}`);
  };
  const uuid = [8, 4, 4, 4, 12].reduce<[string[], number]>(([acc, at], n) => [[...acc, inputs.key.padEnd(32, '0').slice(at, at + n)], at + n], [[], 0])[0].join('-');
  const rootfs = join(out, 'rootfs.ext4');
  e2('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-L', 'kura-root', '-U', uuid, '-E', `hash_seed=${uuid},root_owner=0:0`,
    '-d', stage, rootfs, `${Math.floor(inputs.rootfsBytes / 1024)}k`]);
  // mke2fs -d copies each file's ctime, which no one can set: pin it like every other time.
  const cmds = ['/', ...rootTree.sorted().map((e) => `/${e.path}`)].map((p) => `set_inode_field ${p} ctime @${EPOCH}`).join('\n');
  writeFileSync(join(work, 'debugfs.cmds'), `${cmds}\n`);
  e2('debugfs', ['-w', '-f', join(work, 'debugfs.cmds'), rootfs]);
  step('ext4 root file system');

  const fileInfo = (p: string) => ({ bytes: statSync(p).size, sha256: sha256(readFileSync(p)) });
  return {
    key: inputs.key,
    builderVersion: BUILDER_VERSION,
    kernelVersion,
    packages: [...used.values()].map((p) => ({ name: p.name, version: p.version })),
    modules: modules.order.map((m) => m.name),
    libraries: [...libraries.keys()],
    buildMs: 0,
    files: {
      kernel: fileInfo(join(out, existsSync(join(out, 'vmlinux')) ? 'vmlinux' : 'vmlinuz')),
      bzImage: fileInfo(join(out, 'vmlinuz')),
      initramfs: fileInfo(join(out, 'initramfs.img')),
      rootfs: { ...fileInfo(rootfs), allocated: statSync(rootfs).blocks * 512 },
    },
  };
}
