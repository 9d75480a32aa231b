/**
 * Just enough ELF64 (little endian, x86-64) to build a guest image without binutils on the host:
 * the shared libraries an executable needs (DT_NEEDED), its program interpreter, a library's
 * DT_SONAME, notes (the kernel's PVH entry), and a kernel module's `.modinfo` (depends=, softdep=).
 */

const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const PT_LOAD = 1;
const PT_NOTE = 4;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_SONAME = 14n;

export class ElfError extends Error {}

interface Segment { type: number; offset: number; vaddr: number; filesz: number }

function check(buf: Buffer, what: string): void {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw new ElfError(`${what}: not an ELF file`);
  if (buf[4] !== 2 || buf[5] !== 1) throw new ElfError(`${what}: not a little-endian ELF64 file`);
}

function segments(buf: Buffer): Segment[] {
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  const out: Segment[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    out.push({
      type: buf.readUInt32LE(p),
      offset: Number(buf.readBigUInt64LE(p + 8)),
      vaddr: Number(buf.readBigUInt64LE(p + 16)),
      filesz: Number(buf.readBigUInt64LE(p + 32)),
    });
  }
  return out;
}

function cString(buf: Buffer, at: number): string {
  const end = buf.indexOf(0, at);
  return buf.toString('latin1', at, end < 0 ? buf.length : end);
}

export interface DynamicInfo {
  /** DT_NEEDED, in order. */
  needed: string[];
  soname?: string;
  /** PT_INTERP (the dynamic loader), absent for static executables and most libraries. */
  interpreter?: string;
}

/** What a dynamically linked executable or shared library needs at load time. */
export function dynamicInfo(buf: Buffer, what = 'ELF file'): DynamicInfo {
  check(buf, what);
  const segs = segments(buf);
  const info: DynamicInfo = { needed: [] };
  const interp = segs.find((s) => s.type === PT_INTERP);
  if (interp) info.interpreter = cString(buf, interp.offset);
  const dyn = segs.find((s) => s.type === PT_DYNAMIC);
  if (!dyn) return info;
  const entries: [bigint, bigint][] = [];
  for (let p = dyn.offset; p + 16 <= dyn.offset + dyn.filesz; p += 16) {
    const tag = buf.readBigInt64LE(p);
    if (tag === 0n) break;
    entries.push([tag, buf.readBigUInt64LE(p + 8)]);
  }
  const strtabAddr = entries.find(([t]) => t === DT_STRTAB)?.[1];
  if (strtabAddr === undefined) throw new ElfError(`${what}: dynamic section without DT_STRTAB`);
  // DT_STRTAB is a virtual address: map it back to a file offset through its PT_LOAD segment.
  const addr = Number(strtabAddr);
  const load = segs.find((s) => s.type === PT_LOAD && addr >= s.vaddr && addr < s.vaddr + s.filesz);
  if (!load) throw new ElfError(`${what}: DT_STRTAB outside every loaded segment`);
  const strtab = addr - load.vaddr + load.offset;
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) info.needed.push(cString(buf, strtab + Number(val)));
    else if (tag === DT_SONAME) info.soname = cString(buf, strtab + Number(val));
  }
  return info;
}

/** Is there an ELF note `owner`/`type` in a PT_NOTE segment (e.g. Xen/18: a PVH entry point)? */
export function hasNote(buf: Buffer, owner: string, type: number, what = 'ELF file'): boolean {
  check(buf, what);
  for (const seg of segments(buf).filter((s) => s.type === PT_NOTE)) {
    for (let p = seg.offset; p + 12 <= seg.offset + seg.filesz;) {
      const namesz = buf.readUInt32LE(p);
      const descsz = buf.readUInt32LE(p + 4);
      const ntype = buf.readUInt32LE(p + 8);
      const name = buf.toString('latin1', p + 12, p + 12 + Math.max(0, namesz - 1));
      if (name === owner && ntype === type) return true;
      p += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
    }
  }
  return false;
}

/** The contents of one named section (kernel modules are relocatable objects: sections, no segments). */
export function section(buf: Buffer, name: string, what = 'ELF file'): Buffer | undefined {
  check(buf, what);
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a);
  const shnum = buf.readUInt16LE(0x3c);
  const shstrndx = buf.readUInt16LE(0x3e);
  const header = (i: number) => {
    const p = shoff + i * shentsize;
    return { name: buf.readUInt32LE(p), offset: Number(buf.readBigUInt64LE(p + 24)), size: Number(buf.readBigUInt64LE(p + 32)) };
  };
  const names = header(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    if (cString(buf, names.offset + h.name) === name) return buf.subarray(h.offset, h.offset + h.size);
  }
  return undefined;
}

/** A kernel module's `.modinfo`: key=value strings; keys may repeat (alias=, softdep=). */
export function modinfo(buf: Buffer, what = 'module'): [string, string][] {
  const sec = section(buf, '.modinfo', what);
  if (!sec) throw new ElfError(`${what}: no .modinfo section (not a kernel module?)`);
  const out: [string, string][] = [];
  for (const s of sec.toString('latin1').split('\0')) {
    const eq = s.indexOf('=');
    if (eq > 0) out.push([s.slice(0, eq), s.slice(eq + 1)]);
  }
  return out;
}
