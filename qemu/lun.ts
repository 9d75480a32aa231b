/**
 * A kura LUN seen from the host through QEMU's own iSCSI driver (qemu-img, libiscsi): put the guest's
 * ext4 root on it, copy it back, and check the file system on the copy with e2fsck.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface IscsiUrl { host: string; port: number; target: string; lun: number }

/** iscsi://host[:port]/iqn/lun, as QEMU and libiscsi write it. */
export function parseIscsiUrl(url: string): IscsiUrl {
  const m = /^iscsi:\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/([^/]+)\/(\d+)\/?$/.exec(url);
  if (!m) throw new Error(`"${url}" is not an iSCSI URL: iscsi://host[:port]/iqn/lun`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : 3260, target: m[3]!, lun: Number(m[4]) };
}

function tool(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => { clearTimeout(timer); reject(new Error(`${cmd}: ${err.message}`)); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

/** Write a raw image onto the LUN from offset 0 (the rest of the LUN is left as it is). */
export async function writeImageToLun(image: string, url: string, timeoutMs = 120000): Promise<void> {
  const r = await tool('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', '-t', 'none', image, url], timeoutMs);
  if (r.code !== 0) throw new Error(`qemu-img convert ${image} -> ${url} failed (${r.code}): ${r.out.trim()}`);
}

/** Copy the whole LUN to a local raw file. */
export async function copyLunToFile(url: string, file: string, timeoutMs = 120000): Promise<void> {
  const r = await tool('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', '-T', 'none', url, file], timeoutMs);
  if (r.code !== 0) throw new Error(`qemu-img convert ${url} -> ${file} failed (${r.code}): ${r.out.trim()}`);
}

/** e2fsck lives in /usr/sbin, which a user's PATH often lacks. */
export function sbinTool(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean).concat(['/usr/sbin', '/sbin'])) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  return name;
}

export interface FsckResult { clean: boolean; code: number | null; output: string }

/** `e2fsck -fn` (forced, read-only) on a copy of the LUN taken through iSCSI. */
export async function fsckLun(url: string, timeoutMs = 120000): Promise<FsckResult> {
  const dir = mkdtempSync(join(tmpdir(), 'kura-fsck-'));
  try {
    const copy = join(dir, 'lun.img');
    await copyLunToFile(url, copy, timeoutMs);
    const r = await tool(sbinTool('e2fsck'), ['-fn', copy], timeoutMs);
    return { clean: r.code === 0, code: r.code, output: r.out };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
