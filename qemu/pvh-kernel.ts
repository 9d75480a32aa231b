/**
 * The kernel QEMU can enter directly: the ELF vmlinux inside a Debian bzImage, used through its PVH
 * entry (a Xen ELF note, CONFIG_PVH). Booting it skips the real-mode setup and the in-guest
 * decompression, which halves a TCG boot.
 */
import { hasNote } from './elf.js';

/**
 * The vmlinux inside a bzImage (x86 boot protocol >= 2.08: payload_offset/payload_length), when it
 * is xz-compressed and has a PVH entry note; otherwise why not.
 */
export function pvhKernel(bz: Buffer, unxz: (xz: Buffer) => { status: number | null; stdout: Buffer }): Buffer | string {
  if (bz.length < 0x250 || bz.readUInt32LE(0x202) !== 0x53726448) return 'not a bzImage';
  const start = ((bz[0x1f1] || 4) + 1) * 512 + bz.readUInt32LE(0x248);
  const payload = bz.subarray(start, start + bz.readUInt32LE(0x24c));
  if (!payload.subarray(0, 6).equals(Buffer.from('fd377a585a00', 'hex'))) return 'payload is not xz';
  // The build appends the uncompressed size after the stream, which xz then calls truncated input.
  const size = payload.readUInt32LE(payload.length - 4);
  const r = unxz(payload);
  if (r.stdout.length !== size) return `xz gave ${r.stdout.length} bytes, expected ${size} (status ${r.status})`;
  try {
    return hasNote(r.stdout, 'Xen', 18, 'vmlinux') ? r.stdout : 'no PVH entry note (CONFIG_PVH)';
  } catch (err) {
    return (err as Error).message;
  }
}
