/**
 * Boots a QEMU VM and watches its serial console for a marker. KVM when /dev/kvm works, else TCG.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

export function accelerator(): string {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return 'kvm:tcg';
  } catch {
    return 'tcg';
  }
}

/** Run qemu-system-x86_64 with `args` until `marker` appears on the serial console (stdio), then kill it. */
export async function bootUntil(args: string[], marker: string, timeoutMs: number, accel = accelerator()): Promise<{ serial: string; ms: number }> {
  const started = Date.now();
  const child = spawn('qemu-system-x86_64', ['-machine', `pc,accel=${accel}`, '-m', '256', '-display', 'none',
    '-monitor', 'none', '-serial', 'stdio', '-no-reboot', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let serial = '';
  let stderr = '';
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${marker}" on the serial console within ${timeoutMs} ms\nserial: ${serial}\nstderr: ${stderr}`)), timeoutMs);
      child.stdout.on('data', (d: Buffer) => {
        serial += d.toString('latin1');
        if (serial.includes(marker)) {
          clearTimeout(timer);
          resolve({ serial, ms: Date.now() - started });
        }
      });
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`qemu exited (${code}) before "${marker}"\nserial: ${serial}\nstderr: ${stderr}`));
      });
    });
  } finally {
    child.kill('SIGKILL');
  }
}
