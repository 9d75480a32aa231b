/**
 * Child-process plumbing shared by the benchmarks: run a tool to completion with a deadline, keep a
 * long-running server's output in a log file (a full pipe would stall it), and stop it for sure.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** Kill with `killSignal` after this long; the result then has that signal. */
  timeoutMs?: number;
  /** Stop the tool after this long on purpose (tools that run until interrupted). */
  stopAfterMs?: number;
  stopSignal?: NodeJS.Signals;
}

/** Every child started here that has not exited yet, so an interrupted benchmark can end them. */
const live = new Set<ChildProcess>();

function track<T extends ChildProcess>(child: T): T {
  live.add(child);
  const forget = (): void => { live.delete(child); };
  child.once('exit', forget);
  child.once('error', forget);
  return child;
}

/** SIGKILL every tool and server still running (on an interrupt, before cleanup talks to them). */
export function killChildren(except: ReadonlySet<ChildProcess> = new Set()): void {
  for (const c of live) if (!except.has(c)) c.kill('SIGKILL');
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    const timers: NodeJS.Timeout[] = [];
    if (opts.stopAfterMs !== undefined) timers.push(setTimeout(() => child.kill(opts.stopSignal ?? 'SIGINT'), opts.stopAfterMs));
    if (opts.timeoutMs !== undefined) timers.push(setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs));
    child.once('error', (err) => {
      timers.forEach(clearTimeout);
      reject(new Error(`${cmd}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      timers.forEach(clearTimeout);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Run and insist on exit code 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.signal ?? `exit ${r.code}`}): ${(r.stderr || r.stdout).trim().slice(-2000)}`);
  }
  return r.stdout;
}

export interface Server {
  readonly child: ChildProcess;
  readonly logPath: string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  running(): boolean;
  /** Last lines of its log, for error messages. */
  tail(chars?: number): string;
  /** Signal, wait up to `graceMs`, then SIGKILL. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/** Start a long-running process whose stdout and stderr go to `logPath` (and to `onOutput`). */
export function startServer(cmd: string, args: readonly string[], logPath: string,
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; onOutput?: (text: string) => void } = {}): Server {
  const log = fs.createWriteStream(logPath);
  const child = track(spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] }));
  let alive = true;
  let recent = '';
  const onData = (b: Buffer): void => {
    log.write(b);
    const text = b.toString();
    recent = (recent + text).slice(-8000);
    opts.onOutput?.(text);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<void>((resolve) => {
    const done = (): void => {
      alive = false;
      log.end();
      resolve();
    };
    child.once('exit', done);
    child.once('error', (err) => {
      recent += `\n${cmd}: ${err.message}`;
      done();
    });
  });
  return {
    child,
    logPath,
    exited,
    running: () => alive,
    tail: (chars = 2000) => recent.slice(-chars),
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000) {
      if (!alive) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `probe` until it returns true; fail when `server` dies first or `timeoutMs` passes. */
export async function waitFor(what: string, probe: () => Promise<boolean> | boolean, timeoutMs: number, server?: Server): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (server && !server.running()) throw new Error(`${what}: the process exited first; log ${server.logPath}:\n${server.tail()}`);
    if (Date.now() > deadline) throw new Error(`${what}: not ready after ${timeoutMs} ms${server ? `; log ${server.logPath}:\n${server.tail()}` : ''}`);
    await sleep(50);
  }
}

/** True when something accepts TCP connections on host:port. */
export function acceptsTcp(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}
