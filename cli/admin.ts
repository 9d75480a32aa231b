/**
 * A node's admin endpoint: HTTP with JSON bodies over a unix socket at <node dataDir>/run/admin.sock
 * (only the owner may connect: it can stop the node). The `kura` commands (status, promote, verify,
 * link, down) are its clients.
 *
 *   GET  /status                                   -> NodeStatus
 *   POST /promote {volume}                         -> {ok: true}
 *   POST /copy {volume, lba?, blocks?}             -> 202 {ok: true} (progress: /status, volumes[].resync)
 *   GET  /digest?volume=&lba=&blocks=&chunk=       -> {blockSize, blockCount, digests}
 *   POST /link {peer, partitioned}                 -> {ok: true}
 *   POST /pull {volume, maxWrites?, maxBytes?}     -> {relays: [names asked]} (a secondary's pull, 000-NV)
 *   POST /stop                                     -> {stopping: true}, then the node stops
 * Errors: {error: message}, 4xx for the request, 5xx for the node.
 *
 * Unix socket paths are limited to 107 bytes: a deeper data directory gets a socket under
 * os.tmpdir() named by a hash of it; <dataDir>/run/admin.path always says which path is in use.
 */
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import type { Logger } from '../hal/types.js';
import type { WanLinkState } from './topology-network.js';
import type { NodeStatus as TopologyNodeStatus } from './topology-node.js';
import type { PreciseSchedulerStats } from '../hal/precise-timer.js';

/** What `GET /status` answers: the node's own status, plus the emulated links leaving it. */
export interface NodeStatus extends TopologyNodeStatus {
  wan?: WanLinkState[];
  /** The WAN emulation's sub-millisecond timers (hal/precise-timer.ts) in this process. */
  timer?: PreciseSchedulerStats & { mode: string; spinMs: number };
}

export interface DigestResult {
  blockSize: number;
  blockCount: number;
  /** SHA-256, hex, of consecutive chunks of `chunk` blocks from `lba` (the last may be short). */
  digests: string[];
}

export interface AdminHandlers {
  status(): NodeStatus | Promise<NodeStatus>;
  promote(volume: string): Promise<void>;
  digest(volume: string, lba: number, blocks: number, chunkBlocks: number): Promise<DigestResult>;
  link(peer: string, partitioned: boolean): void | Promise<void>;
  /**
   * On a volume's secondary: ask the volume's connected relays to forward what they hold for it
   * (000-NV "when the secondary asks for it"); resolves with the relays asked.
   */
  pull(volume: string, limits: { maxWrites?: number; maxBytes?: number }): Promise<string[]>;
  /** Start a backup copy of a primary volume to its secondary; progress shows in /status (resync). */
  copy(volume: string, lba: number | undefined, blocks: number | undefined): Promise<void>;
  /** Called after the answer to POST /stop went out. */
  stop(): void | Promise<void>;
}

/** Thrown by a handler for an answer other than 500. */
export class AdminRequestError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Longest unix socket path Linux takes (sun_path is 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;
const MAX_BODY_BYTES = 64 * 1024;
/** One answer of digests stays a few MB of JSON. */
export const MAX_DIGESTS_PER_REQUEST = 65_536;

export function adminRunDir(dataDir: string): string {
  return join(resolve(dataDir), 'run');
}

/** The file that names the socket in use. */
export function adminPathRecord(dataDir: string): string {
  return join(adminRunDir(dataDir), 'admin.path');
}

/** Where a node with this data directory puts its socket. */
export function adminSocketPath(dataDir: string): string {
  const preferred = join(adminRunDir(dataDir), 'admin.sock');
  if (Buffer.byteLength(preferred) <= MAX_SOCKET_PATH) return preferred;
  const hash = createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 16);
  const short = join(os.tmpdir(), `kura-${hash}.sock`);
  if (Buffer.byteLength(short) > MAX_SOCKET_PATH) {
    throw new Error(`admin socket paths ${preferred} and ${short} are both longer than ${MAX_SOCKET_PATH} bytes: use a shorter data directory or TMPDIR`);
  }
  return short;
}

/** The socket a running node (or the last one) announced, else where it would be. */
export function findAdminSocket(dataDir: string): string {
  try {
    const recorded = readFileSync(adminPathRecord(dataDir), 'utf8').trim();
    if (recorded) return recorded;
  } catch {
    // No record: the node never ran here, or cleaned up.
  }
  return adminSocketPath(dataDir);
}

export interface AdminServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

const fieldError = (e: z.ZodError) => e.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
const count = (min: number) => z.coerce.number({ error: 'must be a number' }).int('must be an integer').min(min, `must be >= ${min}`);
const digestQuery = z.object({ volume: z.string({ error: 'is required' }).min(1, 'is required'), lba: count(0), blocks: count(0), chunk: count(1) });
const promoteBody = z.object({ volume: z.string({ error: 'is required (a string)' }).min(1, 'is required') });
const linkBody = z.object({ peer: z.string({ error: 'is required (a string)' }).min(1, 'is required'), partitioned: z.boolean({ error: 'must be true or false' }) });

const pullBody = z.object({
  volume: z.string({ error: 'is required (a string)' }).min(1, 'is required'),
  maxWrites: z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be >= 1').max(0xfffffffe, 'must be < 2^32 - 1').optional(),
  maxBytes: z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be >= 1').max(0xfffffffe, 'must be < 2^32 - 1').optional(),
});

const copyBody = z.object({
  volume: z.string({ error: 'is required (a string)' }).min(1, 'is required'),
  lba: z.number().int().min(0).optional(),
  blocks: z.number().int().min(1).optional(),
});

const ROUTES: Record<string, string> = { '/status': 'GET', '/promote': 'POST', '/digest': 'GET', '/link': 'POST', '/copy': 'POST', '/pull': 'POST', '/stop': 'POST' };

function readBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolveBody, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new AdminRequestError(413, `request body over ${MAX_BODY_BYTES} bytes`));
        req.destroy();
      } else parts.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8');
      if (text.trim() === '') return resolveBody({});
      try {
        resolveBody(JSON.parse(text));
      } catch {
        reject(new AdminRequestError(400, 'request body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new AdminRequestError(400, fieldError(r.error));
  return r.data;
}

/** Connects to `path`: true when something answers (a live node), false for a stale socket file. */
function answers(path: string): Promise<boolean> {
  return new Promise((res) => {
    const s = net.connect(path);
    s.once('connect', () => { s.destroy(); res(true); });
    s.once('error', () => res(false));
  });
}

export async function startAdminServer(o: { dataDir: string; handlers: AdminHandlers; logger?: Logger }): Promise<AdminServer> {
  const socketPath = adminSocketPath(o.dataDir);
  mkdirSync(adminRunDir(o.dataDir), { recursive: true });
  if (await answers(socketPath)) throw new Error(`another node already serves the admin socket ${socketPath}: stop it first (kura down)`);
  rmSync(socketPath, { force: true });
  const h = o.handlers;
  let stopping = false;

  const handle = async (req: http.IncomingMessage): Promise<{ status: number; body: unknown; after?: () => void }> => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const want = ROUTES[url.pathname];
    if (want === undefined) {
      throw new AdminRequestError(404, `no endpoint ${req.method} ${url.pathname} (endpoints: ${Object.entries(ROUTES).map(([p, m]) => `${m} ${p}`).join(', ')})`);
    }
    if (req.method !== want) throw new AdminRequestError(405, `${url.pathname} takes ${want}, not ${req.method}`);
    const body = want === 'POST' ? await readBody(req) : undefined;
    switch (url.pathname) {
      case '/status':
        return { status: 200, body: await h.status() };
      case '/promote': {
        const { volume } = parse(promoteBody, body);
        await h.promote(volume);
        return { status: 200, body: { ok: true } };
      }
      case '/copy': {
        const { volume, lba, blocks } = parse(copyBody, body);
        await h.copy(volume, lba, blocks);
        return { status: 202, body: { ok: true } };
      }
      case '/pull': {
        const { volume, maxWrites, maxBytes } = parse(pullBody, body);
        return { status: 200, body: { relays: await h.pull(volume, { maxWrites, maxBytes }) } };
      }
      case '/digest': {
        const q = parse(digestQuery, Object.fromEntries(url.searchParams));
        const n = Math.ceil(q.blocks / q.chunk);
        if (n > MAX_DIGESTS_PER_REQUEST) throw new AdminRequestError(400, `blocks/chunk asks for ${n} digests: at most ${MAX_DIGESTS_PER_REQUEST} per request`);
        return { status: 200, body: await h.digest(q.volume, q.lba, q.blocks, q.chunk) };
      }
      case '/link': {
        const { peer, partitioned } = parse(linkBody, body);
        await h.link(peer, partitioned);
        return { status: 200, body: { ok: true } };
      }
      default: {
        const first = !stopping;
        stopping = true;
        return { status: 202, body: { stopping: true }, after: first ? () => void Promise.resolve().then(() => h.stop()).catch((err: unknown) => o.logger?.error({ err }, 'stop failed')) : undefined };
      }
    }
  };

  const server = http.createServer((req, res) => {
    const answer = (status: number, body: unknown, after?: () => void) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      if (after) res.once('finish', after);
      res.end(text);
    };
    handle(req).then(
      (r) => answer(r.status, r.body, r.after),
      (err: unknown) => {
        const status = err instanceof AdminRequestError ? err.status : 500;
        // 503 is "still starting", which `kura up` and `kura status` poll for: not a failure.
        if (status >= 500 && status !== 503) o.logger?.error({ err, url: req.url }, 'admin request failed');
        answer(status, { error: err instanceof Error ? err.message : String(err) });
      },
    );
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(socketPath, () => {
      server.off('error', rej);
      res();
    });
  });
  chmodSync(socketPath, 0o600);
  writeFileSync(adminPathRecord(o.dataDir), `${socketPath}\n`);
  return {
    socketPath,
    close: () => new Promise<void>((res) => {
      server.close(() => res());
      server.closeAllConnections();
      rmSync(socketPath, { force: true });
      rmSync(adminPathRecord(o.dataDir), { force: true });
    }),
  };
}

/** A failed admin call; `status` is set when the node answered, `code` when it could not be reached. */
export class AdminClientError extends Error {
  constructor(message: string, readonly status?: number, readonly code?: string) {
    super(message);
  }
}

export async function adminRequest<T>(socketPath: string, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 5000): Promise<T> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise<T>((resolveReq, reject) => {
    const req = http.request({
      // A connection per call: a pooled keep-alive one may belong to a node that has just stopped.
      socketPath, method, path, agent: false,
      headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(parts).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          return reject(new AdminClientError(`admin socket ${socketPath}: ${method} ${path} answered ${res.statusCode} with non-JSON: ${text.slice(0, 200)}`, res.statusCode));
        }
        const status = res.statusCode ?? 0;
        if (status >= 400) {
          const msg = typeof json === 'object' && json !== null && 'error' in json ? String((json as { error: unknown }).error) : text;
          return reject(new AdminClientError(msg, status));
        }
        resolveReq(json as T);
      });
      res.on('error', (err) => reject(new AdminClientError(`admin socket ${socketPath}: ${err.message}`)));
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new AdminClientError(`admin socket ${socketPath} did not answer ${method} ${path} within ${timeoutMs} ms`, undefined, 'ETIMEDOUT'));
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = err.code === 'ENOENT' ? 'no such socket: the node is not running'
        : err.code === 'ECONNREFUSED' ? 'nothing listens on it: the node is not running (stale socket)'
          : err.message;
      reject(new AdminClientError(`admin socket ${socketPath}: ${why}`, undefined, err.code));
    });
    req.end(payload);
  });
}

/** The typed calls the CLI makes. */
export const adminClient = {
  status: (socket: string, timeoutMs?: number) => adminRequest<NodeStatus>(socket, 'GET', '/status', undefined, timeoutMs),
  promote: (socket: string, volume: string, timeoutMs = 30_000) => adminRequest<{ ok: true }>(socket, 'POST', '/promote', { volume }, timeoutMs),
  pull: (socket: string, volume: string, limits: { maxWrites?: number; maxBytes?: number } = {}, timeoutMs = 30_000) =>
    adminRequest<{ relays: string[] }>(socket, 'POST', '/pull', { volume, ...limits }, timeoutMs),
  copy: (socket: string, volume: string, range: { lba?: number; blocks?: number } = {}, timeoutMs = 30_000) =>
    adminRequest<{ ok: true }>(socket, 'POST', '/copy', { volume, ...range }, timeoutMs),
  digest: (socket: string, q: { volume: string; lba: number; blocks: number; chunk: number }, timeoutMs = 120_000) =>
    adminRequest<DigestResult>(socket, 'GET', `/digest?${new URLSearchParams({ volume: q.volume, lba: String(q.lba), blocks: String(q.blocks), chunk: String(q.chunk) })}`, undefined, timeoutMs),
  link: (socket: string, peer: string, partitioned: boolean, timeoutMs?: number) => adminRequest<{ ok: true }>(socket, 'POST', '/link', { peer, partitioned }, timeoutMs),
  stop: (socket: string, timeoutMs?: number) => adminRequest<{ stopping: true }>(socket, 'POST', '/stop', undefined, timeoutMs),
};
