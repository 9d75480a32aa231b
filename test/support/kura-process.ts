/**
 * Runs a real kura controller node as its own process (the compiled CLI, as users run it) for
 * end-to-end tests with real initiators.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from '../../bench/lib/ports.js';
import { tempDir } from './temp-dir.js';

export const repoRoot = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
export const kuraCli = join(repoRoot, 'dist', 'cli', 'kura.js');

export { tempDir };

/** A free TCP port on 127.0.0.1 (bind to 0, read it back, close). */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

export interface KuraProcess {
  readonly urls: string[];
  readonly child: ChildProcess;
  output(): string;
  /** SIGTERM and wait for a clean exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Start `kura node` with a config object (written to a file in `dir`) or with extra CLI args. */
export async function startKura(options: { dir: string; config?: object; args?: string[]; timeoutMs?: number }): Promise<KuraProcess> {
  const args = [kuraCli, 'node'];
  if (options.config) {
    const file = join(options.dir, 'kura.json');
    writeFileSync(file, JSON.stringify(options.config, null, 2));
    args.push('--config', file);
  }
  args.push(...(options.args ?? []));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const urls = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kura did not start within ${options.timeoutMs ?? 20000} ms:\n${out}`));
    }, options.timeoutMs ?? 20000);
    const check = () => {
      const found = [...out.matchAll(/kura: serving (iscsi:\/\/\S+)/g)].map((m) => m[1]!);
      if (found.length > 0) {
        clearTimeout(timer);
        // All portals/LUNs are printed together; give the writer a moment to flush the rest.
        setTimeout(() => resolve([...out.matchAll(/kura: serving (iscsi:\/\/\S+)/g)].map((m) => m[1]!)), 50);
        child.stderr!.off('data', check);
      }
    };
    child.stderr!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`kura exited with ${code} before serving:\n${out}`));
    });
  });
  return {
    urls,
    child,
    output: () => out,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

/** Run a command to completion, capturing its output; rejects on a timeout, never on exit status. */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} timed out after ${opts.timeoutMs ?? 60000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.timeoutMs ?? 60000);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    // The tool may exit before reading its input: that is not the test's failure.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}
