/**
 * Running a topology on this machine, every node its own process on loopback:
 *   kura node --topology FILE --name NODE   one node in this process (cli/run-node.ts; what `kura up` spawns)
 *   kura up [FILE] [--detach]               spawn them all (relays and secondaries before primaries)
 *   kura down [FILE]                        stop them all (primaries first)
 * Book-keeping lives in <topology dataDir>/run/: <node>.pid, <node>.log, up.json (the epoch).
 * Each node answers on its admin socket (cli/admin.ts), which is how readiness, `down`, `status`,
 * `promote`, `link` and `verify` reach it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminClientError, adminClient, adminSocketPath, findAdminSocket, type NodeStatus } from './admin.js';
import { ConfigError, readConfigFile } from './config.js';
import { topologyLinks } from './topology-network.js';
import { checkRelayPlacement, loadTopology, type Topology, type TopologyNode } from './topology.js';

/** Where a command writes: the process's streams, or a test's buffers. */
export interface Io {
  out(s: string): void;
  err(s: string): void;
  isTTY: boolean;
}

export const processIo: Io = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
  isTTY: process.stderr.isTTY === true,
};

const here = dirname(fileURLToPath(import.meta.url));
/** Running from source (tsx: cli/up.ts) or from the build (dist/cli/up.js). */
const fromSource = import.meta.url.endsWith('.ts');
export const repoRoot = fromSource ? resolve(here, '..') : resolve(here, '..', '..');
export const defaultTopologyFile = join(repoRoot, 'topologies', 'default.yaml');

/** How to start `kura` again as a child: the same build this process runs. */
export function kuraCommand(): string[] {
  return fromSource ? [process.execPath, '--import', 'tsx', join(repoRoot, 'cli', 'kura.ts')] : [process.execPath, join(repoRoot, 'dist', 'cli', 'kura.js')];
}

export function runDir(t: Topology): string {
  return join(t.dataDir, 'run');
}
const pidFile = (t: Topology, n: string) => join(runDir(t), `${n}.pid`);
export const logFile = (t: Topology, n: string) => join(runDir(t), `${n}.log`);

/** Controllers that are the primary of some volume start last and stop first. */
export function isPrimary(t: Topology, n: string): boolean {
  return t.volumes.some((v) => v.primary === n);
}

/** Start order, by who dials whom: other controllers (secondaries), relays, then the primaries. */
export function startGroups(t: Topology): TopologyNode[][] {
  const primaries = t.nodes.filter((n) => isPrimary(t, n.name));
  const rest = t.nodes.filter((n) => !isPrimary(t, n.name));
  return [rest.filter((n) => n.role === 'controller'), rest.filter((n) => n.role === 'relay'), primaries].filter((g) => g.length > 0);
}

export function adminSocketOf(n: TopologyNode): string {
  return findAdminSocket(n.dataDir!);
}

/** Loads and checks a topology file; throws ConfigError (exit 2) with every problem. */
export function loadChecked(file: string): Topology {
  const t = loadTopology(file);
  try {
    for (const n of t.nodes) topologyLinks(t, n.name);
  } catch (err) {
    throw new ConfigError(file, [(err as Error).message]);
  }
  return t;
}

// ---- processes --------------------------------------------------------------------------------

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether `pid` still is node `name` (not a reused pid); true where /proc cannot tell. */
function isNodeProcess(pid: number, name: string): boolean {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const i = args.indexOf('--name');
    return i >= 0 && args[i + 1] === name;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT' || !existsSync('/proc/self');
  }
}

/** The recorded pid of a node that still runs, else undefined (and a stale pid file is removed). */
export function runningPid(t: Topology, name: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile(t, name), 'utf8').trim());
  } catch {
    return undefined;
  }
  if (Number.isInteger(pid) && pid > 0 && alive(pid) && isNodeProcess(pid, name)) return pid;
  rmSync(pidFile(t, name), { force: true });
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether a node answers on `socket` at all (a starting one answers 503). */
function answers(socket: string, timeoutMs: number): Promise<boolean> {
  return adminClient.status(socket, timeoutMs).then(() => true, (err: unknown) => err instanceof AdminClientError && err.status !== undefined);
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (alive(pid)) {
    if (Date.now() > end) return false;
    await sleep(50);
  }
  return true;
}

/** The last `n` lines of a node's log. */
export function tail(file: string, n = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Stops one node: asks its admin socket, then SIGTERM, then SIGKILL; returns how it went.
 * `pid` undefined: a node that runs without a pid file (started by hand) can still be asked.
 */
export async function stopNode(t: Topology, n: TopologyNode, pid: number | undefined, graceMs = 15_000): Promise<string> {
  const socket = adminSocketOf(n);
  const asked = await adminClient.stop(socket, 2000).then(() => true, () => false);
  if (pid === undefined) {
    if (!asked) return 'not running';
    // Without a pid, the socket going quiet is the sign.
    const end = Date.now() + graceMs;
    while (Date.now() < end && (await answers(socket, 500))) await sleep(100);
    return 'stopped (no pid file)';
  }
  try {
    if (asked && (await waitGone(pid, graceMs))) return `stopped (pid ${pid})`;
    process.kill(pid, 'SIGTERM');
    if (await waitGone(pid, 5000)) return `stopped by SIGTERM (pid ${pid})`;
    process.kill(pid, 'SIGKILL');
    await waitGone(pid, 5000);
    return `killed with SIGKILL after ${graceMs / 1000 + 5} s (pid ${pid})`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return `stopped (pid ${pid})`;
    throw err;
  } finally {
    rmSync(pidFile(t, n.name), { force: true });
  }
}

/** Stops every node of the topology, primaries first; one line per node. */
export async function stopAll(t: Topology, io: Io, only?: Set<string>): Promise<number> {
  let failed = 0;
  for (const group of [...startGroups(t)].reverse()) {
    await Promise.all(group.filter((n) => only === undefined || only.has(n.name)).map(async (n) => {
      try {
        io.out(`${n.name}: ${await stopNode(t, n, runningPid(t, n.name))}\n`);
      } catch (err) {
        failed++;
        io.err(`kura: ${n.name}: could not stop: ${(err as Error).message}\n`);
      }
    }));
  }
  // The epoch stays while nodes of the topology may still run (a node restarted later keeps it).
  if (failed === 0 && only === undefined) rmSync(join(runDir(t), 'up.json'), { force: true });
  return failed === 0 ? 0 : 1;
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = net.createServer();
    s.once('error', () => res(false));
    s.listen(port, host, () => s.close(() => res(true)));
  });
}

/** Refuses to start over running nodes or taken ports, with what to do instead. */
async function checkNothingRuns(t: Topology, file: string, only?: ReadonlySet<string>): Promise<void> {
  const running: string[] = [];
  const nodes = t.nodes.filter((n) => only === undefined || only.has(n.name));
  for (const n of nodes) {
    const pid = runningPid(t, n.name);
    if (pid !== undefined) running.push(`${n.name} pid ${pid}`);
    else if (await answers(adminSocketOf(n), 1000)) running.push(`${n.name} (admin socket answers)`);
  }
  if (running.length > 0) {
    throw new Error(only === undefined
      ? `topology "${t.name}" is already up (${running.join(', ')}): run kura down ${file} first`
      : `already running: ${running.join(', ')}`);
  }
  for (const [i, n] of t.nodes.entries()) {
    if (only !== undefined && !only.has(n.name)) continue;
    const eps = n.role === 'controller' && n.iscsi ? [['peer', n.peer], ['iscsi', n.iscsi]] as const : [['peer', n.peer]] as const;
    for (const [field, ep] of eps) {
      if (ep.port !== 0 && !(await portFree(ep.host, ep.port))) {
        throw new Error(`${ep.host}:${ep.port} (nodes[${i}].${field} of "${n.name}") is in use by another process: stop it or change the port in ${file}`);
      }
    }
  }
}

interface Spawned {
  node: TopologyNode;
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnNode(t: Topology, file: string, n: TopologyNode, epochWallMs: number, logLevel: string | undefined, resync: boolean): Spawned {
  const fd = openSync(logFile(t, n.name), 'w');
  const [cmd, ...pre] = kuraCommand();
  // KURA_NODE_OPTIONS: Node flags for every node (--cpu-prof and the like, which NODE_OPTIONS refuses).
  const nodeFlags = (process.env.KURA_NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean);
  const args = [...nodeFlags, ...pre, 'node', '--topology', resolve(file), '--name', n.name, '--epoch', String(epochWallMs)];
  if (logLevel) args.push('--log-level', logLevel);
  if (resync) args.push('--resync');
  // Its own process group: a Ctrl-C at the terminal reaches `kura up` only, which stops the nodes in order.
  const child = spawn(cmd!, args, { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })));
  if (child.pid !== undefined) writeFileSync(pidFile(t, n.name), `${child.pid}\n`);
  return { node: n, child, exit };
}

function describeExit(e: { code: number | null; signal: NodeJS.Signals | null }): string {
  return e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
}

/** Resolves with the node's status once its admin socket answers; rejects if it dies or times out. */
async function waitReady(t: Topology, s: Spawned, timeoutMs: number): Promise<NodeStatus> {
  const socket = adminSocketPath(s.node.dataDir!);
  const end = Date.now() + timeoutMs;
  let died: string | undefined;
  void s.exit.then((e) => { died = describeExit(e); });
  for (;;) {
    if (died) throw new Error(`node "${s.node.name}" ${died} while starting; last lines of ${logFile(t, s.node.name)}:\n${tail(logFile(t, s.node.name))}`);
    const st = await adminClient.status(socket, 1000).catch(() => undefined);
    if (st) return st;
    if (Date.now() > end) {
      throw new Error(`node "${s.node.name}" did not answer on ${socket} within ${timeoutMs / 1000} s; last lines of ${logFile(t, s.node.name)}:\n${tail(logFile(t, s.node.name))}`);
    }
    await sleep(100);
  }
}

export interface UpOptions {
  detach?: boolean;
  /** Start only these nodes (the others keep running, e.g. a node restarted after kill -9); the topology's epoch is kept. */
  nodes?: string[];
  timeoutMs?: number;
  logLevel?: string;
  /** The primaries among the nodes started open a new replication generation and copy their volumes whole. */
  resync?: boolean;
}

export async function up(file: string, o: UpOptions, io: Io = processIo): Promise<number> {
  const t = loadChecked(file);
  for (const f of checkRelayPlacement(t)) io.err(`kura: warning: placement: ${f.message}\n`);
  const only = o.nodes === undefined ? undefined : new Set(o.nodes);
  for (const n of only ?? []) {
    if (!t.nodes.some((x) => x.name === n)) throw new Error(`no node named "${n}" in ${file} (nodes: ${t.nodes.map((x) => x.name).join(', ')})`);
  }
  await checkNothingRuns(t, file, only);
  mkdirSync(runDir(t), { recursive: true });
  const upFile = join(runDir(t), 'up.json');
  // Restarting some nodes keeps the running topology's epoch: outage schedules stay in step.
  const previous = only !== undefined && existsSync(upFile) ? (JSON.parse(readFileSync(upFile, 'utf8')) as { epochWallMs?: number }).epochWallMs : undefined;
  const epochWallMs = previous ?? Date.now();
  if (previous === undefined) writeFileSync(upFile, `${JSON.stringify({ file: resolve(file), topology: t.name, epochWallMs, startedBy: process.pid }, null, 2)}\n`);
  const spawned: Spawned[] = [];
  const statuses = new Map<string, NodeStatus>();
  try {
    for (const group of startGroups(t)) {
      const batch = group.filter((n) => only === undefined || only.has(n.name)).map((n) => spawnNode(t, file, n, epochWallMs, o.logLevel, o.resync === true));
      spawned.push(...batch);
      const ready = await Promise.allSettled(batch.map((s) => waitReady(t, s, o.timeoutMs ?? 60_000)));
      const failures = ready.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
      if (failures.length > 0) throw new Error(failures.join('\n'));
      batch.forEach((s, i) => statuses.set(s.node.name, (ready[i] as PromiseFulfilledResult<NodeStatus>).value));
    }
  } catch (err) {
    io.err(`kura: ${(err as Error).message}\nkura: stopping the nodes already started\n`);
    await stopAll(t, { ...io, out: () => {} }, new Set(spawned.map((s) => s.node.name)));
    if (only === undefined) rmSync(join(runDir(t), 'up.json'), { force: true });
    return 1;
  }
  io.out(summary(t, file, statuses));
  if (o.detach) {
    for (const s of spawned) s.child.unref();
    return 0;
  }
  return foreground(t, spawned, io);
}

function summary(t: Topology, file: string, statuses: Map<string, NodeStatus>): string {
  const w = Math.max(...t.nodes.map((n) => n.name.length));
  const lines = [`topology "${t.name}" is up (${t.nodes.length} nodes; logs in ${runDir(t)}):`];
  for (const n of t.nodes) {
    const st = statuses.get(n.name);
    const what = n.role === 'relay' ? `relay at ${n.site}` : `controller at ${n.site}`;
    lines.push(`  ${n.name.padEnd(w)}  ${what}, pid ${st?.pid ?? '?'}${(st?.iscsi ?? []).map((u) => `\n  ${' '.repeat(w)}  ${u}`).join('')}`);
  }
  const f = file === defaultTopologyFile ? '' : ` ${file}`;
  lines.push(`kura status${f} shows replication; kura down${f} stops it.`, '');
  return lines.join('\n');
}

/** Signals this soon after the first are the same Ctrl-C delivered twice, not a second one. */
export const DUPLICATE_SIGNAL_MS = 2000;

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** A pino line, shortened for a terminal: time, level, message, the other fields as JSON. */
export function renderLogLine(line: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof o !== 'object' || o === null) return line;
  const { level, time, msg, pid: _pid, name: _name, node: _node, hostname: _host, ...rest } = o;
  const when = typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : '';
  const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  return `${when} ${(LEVELS[level as number] ?? String(level)).padEnd(5)} ${typeof msg === 'string' ? msg : ''}${extra}`;
}

/** Follows the nodes' log files, prints them prefixed, and stops everything on SIGINT / SIGTERM. */
async function foreground(t: Topology, spawned: Spawned[], io: Io): Promise<number> {
  const w = Math.max(...spawned.map((s) => s.node.name.length));
  const offsets = new Map(spawned.map((s) => [s.node.name, 0]));
  const partial = new Map(spawned.map((s) => [s.node.name, '']));
  const buf = Buffer.alloc(64 * 1024);
  const pump = () => {
    for (const s of spawned) {
      const name = s.node.name;
      let fd: number;
      try {
        fd = openSync(logFile(t, name), 'r');
      } catch {
        continue;
      }
      try {
        for (;;) {
          const n = readSync(fd, buf, 0, buf.length, offsets.get(name)!);
          if (n <= 0) break;
          offsets.set(name, offsets.get(name)! + n);
          const lines = (partial.get(name)! + buf.toString('utf8', 0, n)).split('\n');
          partial.set(name, lines.pop()!);
          for (const l of lines) if (l.trim()) io.out(`${name.padEnd(w)} | ${renderLogLine(l)}\n`);
        }
      } finally {
        closeSync(fd);
      }
    }
  };
  const timer = setInterval(pump, 100);
  let died = 0;
  let stopping = false;
  const exits = spawned.map((s) => s.exit.then((e) => {
    rmSync(pidFile(t, s.node.name), { force: true });
    if (stopping) return;
    died++;
    io.err(`kura: node "${s.node.name}" ${describeExit(e)}; the others keep running (Ctrl-C stops them)\n`);
  }));
  // One listener for the whole run, installed now: one Ctrl-C arrives several times at once (from
  // the terminal to the whole process group, and forwarded by npm and scripts/start.mjs), and a
  // copy arriving while no listener is installed would take Node's default action, exiting at once
  // and leaving the nodes running.
  let firstAt = -1;
  let onFirst: (sig: string) => void = () => {};
  const signalled = new Promise<string>((res) => { onFirst = res; });
  const onSignal = (sig: string): void => {
    if (firstAt < 0) {
      firstAt = Date.now();
      onFirst(sig);
      return;
    }
    if (Date.now() - firstAt < DUPLICATE_SIGNAL_MS) return;
    io.err('kura: second signal: killing the nodes\n');
    for (const s of spawned) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  };
  const onInt = (): void => onSignal('SIGINT');
  const onTerm = (): void => onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    const sig = await Promise.race([signalled, Promise.all(exits).then(() => undefined)]);
    if (sig !== undefined) {
      stopping = true;
      io.err(`kura: ${sig}: stopping the nodes, primaries first\n`);
      await stopAll(t, io);
    } else io.err('kura: every node has exited\n');
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
  pump();
  clearInterval(timer);
  return died > 0 ? 1 : 0;
}

/**
 * Stops the topology's nodes. A file that no longer validates (edited while the nodes run, or a
 * newer kura with a stricter rule) must not leave them running: its data directory is still read
 * from it, and the nodes its run directory records are stopped by their pids.
 */
export async function down(file: string, io: Io = processIo, nodes?: readonly string[]): Promise<number> {
  let t: Topology;
  try {
    t = loadChecked(file);
  } catch (err) {
    const recorded = err instanceof ConfigError && nodes === undefined ? recordedNodes(file) : undefined;
    if (recorded === undefined || recorded.nodes.length === 0) throw err;
    io.err(`${err instanceof Error ? err.message : String(err)}
kura: stopping the nodes recorded in ${recorded.runDir} by their pids instead (SIGTERM: each stops cleanly)
`);
    return stopRecorded(recorded, io);
  }
  const unknown = (nodes ?? []).filter((x) => !t.nodes.some((n) => n.name === x));
  if (unknown.length > 0) throw new Error(`no node named ${unknown.map((x) => `"${x}"`).join(', ')} in ${file} (nodes: ${t.nodes.map((n) => n.name).join(', ')})`);
  return stopAll(t, io, nodes === undefined ? undefined : new Set(nodes));
}

interface Recorded {
  runDir: string;
  /** Node names with a pid file, the primaries of the file's volumes first. */
  nodes: string[];
}

/** What an invalid topology file's run directory records, if the file still names its data directory. */
function recordedNodes(file: string): Recorded | undefined {
  let raw: unknown;
  try {
    raw = readConfigFile(file);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as { dataDir?: unknown; volumes?: unknown };
  const dataDir = typeof o.dataDir === 'string' ? o.dataDir : 'data';
  const dir = join(resolve(dirname(resolve(file)), dataDir), 'run');
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => f.endsWith('.pid')).map((f) => f.slice(0, -'.pid'.length));
  } catch {
    return undefined;
  }
  const primaries = new Set(Array.isArray(o.volumes) ? o.volumes.map((v: unknown) => (v as { primary?: unknown } | null)?.primary).filter((x): x is string => typeof x === 'string') : []);
  names.sort((a, b) => Number(primaries.has(b)) - Number(primaries.has(a)) || a.localeCompare(b));
  return { runDir: dir, nodes: names };
}

async function stopRecorded(r: Recorded, io: Io): Promise<number> {
  let failed = 0;
  for (const name of r.nodes) {
    const file = join(r.runDir, `${name}.pid`);
    try {
      io.out(`${name}: ${await stopByPid(Number(readFileSync(file, 'utf8').trim()), name)}\n`);
      rmSync(file, { force: true });
    } catch (err) {
      failed++;
      io.err(`kura: ${name}: could not stop: ${(err as Error).message}\n`);
    }
  }
  if (failed === 0) rmSync(join(r.runDir, 'up.json'), { force: true });
  return failed === 0 ? 0 : 1;
}

/** SIGTERM (a node's clean stop), then SIGKILL after 20 s. */
async function stopByPid(pid: number, name: string): Promise<string> {
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid) || !isNodeProcess(pid, name)) return 'not running';
  try {
    process.kill(pid, 'SIGTERM');
    if (await waitGone(pid, 20_000)) return `stopped by SIGTERM (pid ${pid})`;
    process.kill(pid, 'SIGKILL');
    await waitGone(pid, 5000);
    return `killed with SIGKILL after 20 s (pid ${pid})`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return `stopped (pid ${pid})`;
    throw err;
  }
}
