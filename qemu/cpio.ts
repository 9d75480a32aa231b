/**
 * A cpio "newc" archive (the initramfs format the kernel unpacks), written deterministically: entries
 * in the order given, inode numbers by position, every owner root, one fixed mtime. The same tree
 * always gives the same bytes.
 */

export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Buffer; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'char'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function header(fields: number[], name: string): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const head = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}${'0'.repeat(8)}`, 'latin1');
  return Buffer.concat([head, nameBytes, Buffer.alloc(pad4(head.length + nameBytes.length))]);
}

export function cpioNewc(entries: CpioEntry[], mtime = 0): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const push = (mode: number, data: Buffer, name: string, nlink: number, rdev: [number, number] = [0, 0]) => {
    const nameSize = Buffer.byteLength(name) + 1;
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize (check follows)
    parts.push(header([ino++, mode, 0, 0, nlink, mtime, data.length, 0, 0, rdev[0], rdev[1], nameSize], name));
    parts.push(data, Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    if (!name) throw new Error('cpio: empty path');
    switch (e.kind) {
      case 'dir': push(S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0), name, 2); break;
      case 'file': push(S_IFREG | (e.mode ?? 0o644), e.data, name, 1); break;
      case 'symlink': push(S_IFLNK | 0o777, Buffer.from(e.target, 'utf8'), name, 1); break;
      case 'char': push(S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), name, 1, [e.major, e.minor]); break;
    }
  }
  ino = 0;
  push(0, Buffer.alloc(0), 'TRAILER!!!', 1);
  return Buffer.concat(parts);
}
