import { expect } from 'chai';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { AdminClientError, AdminRequestError, adminClient, adminPathRecord, adminRequest, adminSocketPath, findAdminSocket, startAdminServer, type AdminHandlers, type AdminServer, type NodeStatus } from './admin.js';
import { tempDir } from '../test/support/temp-dir.js';

const status: NodeStatus = { node: 'n', role: 'relay', site: 's', pid: 1, uptimeMs: 5, volumes: [], links: [] };

function handlers(calls: string[]): AdminHandlers {
  return {
    status: () => status,
    promote: async (v) => {
      calls.push(`promote ${v}`);
      if (v === 'bad') throw new AdminRequestError(409, 'not a secondary');
      if (v === 'boom') throw new Error('disk on fire');
    },
    digest: async (v, lba, blocks, chunk) => ({ blockSize: 512, blockCount: 100, digests: [`${v}:${lba}:${blocks}:${chunk}`] }),
    link: (peer, on) => { calls.push(`link ${peer} ${on}`); },
    copy: async (v, lba, blocks) => { calls.push(`copy ${v} ${lba} ${blocks}`); },
    pull: async (v, l) => { calls.push(`pull ${v} ${l.maxWrites} ${l.maxBytes}`); return ['r1', 'r2']; },
    stop: () => { calls.push('stop'); },
  };
}

async function rejection(p: Promise<unknown>): Promise<AdminClientError> {
  try {
    await p;
  } catch (err) {
    return err as AdminClientError;
  }
  throw new Error('did not reject');
}

describe('cli/admin: the node admin endpoint over a unix socket', () => {
  let dir: string;
  let server: AdminServer;
  let calls: string[];

  beforeEach(async () => {
    dir = tempDir('kura-admin-');
    calls = [];
    server = await startAdminServer({ dataDir: dir, handlers: handlers(calls) });
  });
  afterEach(async () => {
    await server.close();
  });

  it('serves status, promote, digest and link as JSON on <dataDir>/run/admin.sock (owner only), recorded in admin.path', async () => {
    expect(server.socketPath).to.equal(join(dir, 'run', 'admin.sock'));
    expect(statSync(server.socketPath).mode & 0o777).to.equal(0o600);
    expect(readFileSync(adminPathRecord(dir), 'utf8').trim()).to.equal(server.socketPath);
    expect(findAdminSocket(dir)).to.equal(server.socketPath);
    expect(await adminClient.status(server.socketPath)).to.deep.equal(status);
    expect(await adminClient.promote(server.socketPath, 'vol0')).to.deep.equal({ ok: true });
    expect((await adminClient.digest(server.socketPath, { volume: 'vol0', lba: 8, blocks: 64, chunk: 16 })).digests).to.deep.equal(['vol0:8:64:16']);
    expect(await adminClient.link(server.socketPath, 'relay1', true)).to.deep.equal({ ok: true });
    expect(await adminClient.pull(server.socketPath, 'vol0', { maxWrites: 10 })).to.deep.equal({ relays: ['r1', 'r2'] });
    expect(calls).to.deep.equal(['promote vol0', 'link relay1 true', 'pull vol0 10 undefined']);
  });

  it('answers errors as {error} with a status: handler errors, bad fields by name, unknown endpoints and methods', async () => {
    const s = server.socketPath;
    expect(await rejection(adminClient.promote(s, 'bad'))).to.include({ status: 409, message: 'not a secondary' });
    expect(await rejection(adminClient.promote(s, 'boom'))).to.include({ status: 500, message: 'disk on fire' });
    expect((await rejection(adminRequest(s, 'POST', '/promote', {}))).message).to.equal('volume: is required (a string)');
    expect((await rejection(adminRequest(s, 'POST', '/link', { peer: 'x', partitioned: 'yes' }))).message).to.equal('partitioned: must be true or false');
    expect((await rejection(adminRequest(s, 'POST', '/pull', { volume: 'v', maxWrites: 0 }))).message).to.equal('maxWrites: must be >= 1');
    expect((await rejection(adminRequest(s, 'GET', '/digest?volume=v&lba=-1&blocks=1&chunk=0'))).message).to.equal('lba: must be >= 0; chunk: must be >= 1');
    expect((await rejection(adminRequest(s, 'GET', '/digest?volume=v&lba=0&blocks=100000000&chunk=1'))).message).to.match(/at most 65536 per request/);
    const missing = await rejection(adminRequest(s, 'GET', '/nope'));
    expect(missing.status).to.equal(404);
    expect(missing.message).to.include('endpoints: GET /status, POST /promote');
    expect(await rejection(adminRequest(s, 'GET', '/stop'))).to.include({ status: 405, message: '/stop takes POST, not GET' });
  });

  it('POST /stop answers first, then calls stop once', async () => {
    expect(await adminClient.stop(server.socketPath)).to.deep.equal({ stopping: true });
    await adminClient.stop(server.socketPath);
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).to.deep.equal(['stop']);
  });

  it('refuses to start over a live node; replaces a stale socket file', async () => {
    let err: Error | undefined;
    await startAdminServer({ dataDir: dir, handlers: handlers([]) }).catch((e: Error) => { err = e; });
    expect(err?.message).to.match(/another node already serves the admin socket .*admin\.sock: stop it first/);
    await server.close();
    expect(existsSync(adminPathRecord(dir))).to.equal(false);
    // A socket file nobody listens on (a node that was killed) is taken over.
    const stale = net.createServer().listen(server.socketPath);
    await new Promise((r) => stale.once('listening', r));
    stale.close();
    writeFileSync(server.socketPath, '');
    server = await startAdminServer({ dataDir: dir, handlers: handlers([]) });
    expect((await adminClient.status(server.socketPath)).node).to.equal('n');
  });

  it('a client reaching no node says so, and times out on one that does not answer', async () => {
    const e = await rejection(adminClient.status(join(dir, 'nothing.sock')));
    expect(e.code).to.equal('ENOENT');
    expect(e.message).to.include('the node is not running');
    const silent = net.createServer(() => {}).listen(join(dir, 'silent.sock'));
    await new Promise((r) => silent.once('listening', r));
    const t = await rejection(adminClient.status(join(dir, 'silent.sock'), 100));
    expect(t.message).to.include('did not answer GET /status within 100 ms');
    silent.close();
  });

  it('puts the socket under the temp directory when the data directory is too deep for a unix socket path', () => {
    const deep = join(dir, 'x'.repeat(120));
    const p = adminSocketPath(deep);
    expect(p.startsWith(os.tmpdir())).to.equal(true);
    expect(p).to.match(/kura-[0-9a-f]{16}\.sock$/);
    expect(adminSocketPath(deep)).to.equal(p);
    expect(adminSocketPath(`${deep}y`)).to.not.equal(p);
  });
});
