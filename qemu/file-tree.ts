/**
 * A file tree staged in memory for the guest image: written out as cpio entries (initramfs) or to a
 * directory for `mke2fs -d` (ext4 root), in sorted order so that both are reproducible.
 */
import { chmodSync, lstatSync, lutimesSync, mkdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import type { CpioEntry } from './cpio.js';

/** Follow symlinks inside an unpacked package: absolute targets are relative to its root, not the host's. */
export function inPackage(root: string, path: string): string {
  for (let hops = 0; hops < 16; hops++) {
    if (!lstatSync(path).isSymbolicLink()) return path;
    const target = readlinkSync(path);
    path = target.startsWith('/') ? join(root, target) : join(dirname(path), target);
  }
  throw new Error(`${path}: too many symbolic links`);
}

/** A staged file tree: written to disk for mke2fs -d, or to cpio entries for the initramfs. */
export class Tree {
  readonly entries = new Map<string, CpioEntry>();
  dir(path: string): void {
    const parts = path.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const p = parts.slice(0, i).join('/');
      if (!this.entries.has(p)) this.entries.set(p, { kind: 'dir', path: p });
    }
  }
  file(path: string, data: Buffer, mode = 0o644): void {
    this.dir(posix.dirname(path));
    this.entries.set(path, { kind: 'file', path, data, mode });
  }
  symlink(path: string, target: string): void {
    this.dir(posix.dirname(path));
    this.entries.set(path, { kind: 'symlink', path, target });
  }
  has(path: string): boolean {
    return this.entries.has(path);
  }
  sorted(): CpioEntry[] {
    return [...this.entries.keys()].sort().map((k) => this.entries.get(k)!);
  }
  /** Materialize under `root` with every timestamp at `epoch` (mke2fs -d copies them). */
  writeTo(root: string, epoch: number): void {
    for (const e of this.sorted()) {
      const p = join(root, e.path);
      if (e.kind === 'dir') mkdirSync(p, { recursive: true });
      else if (e.kind === 'file') {
        writeFileSync(p, e.data);
        chmodSync(p, e.mode ?? 0o644);
      } else if (e.kind === 'symlink') symlinkSync(e.target, p);
    }
    for (const e of [...this.sorted()].reverse()) lutimesSync(join(root, e.path), epoch, epoch);
    lutimesSync(root, epoch, epoch);
  }
}
