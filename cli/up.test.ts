/**
 * The topology commands: validation and argument errors, and status / verify / link / promote
 * against fake nodes (admin servers with canned answers); then the real thing: `kura up --detach`
 * on a small topology, `kura status --json`, `kura down`.
 */
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { ReplicationStatus } from '../firmware/replication/types.js';
import { freePort, run } from '../test/support/kura-process.js';
import { startAdminServer, type AdminHandlers, type AdminServer, type NodeStatus } from './admin.js';
import { ConfigError } from './config.js';
import { collectStatus, renderStatus, statusCommand } from './status.js';
import { link, promote } from './topology-ops.js';
import { alive, kuraCommand, loadChecked, renderLogLine, startGroups, up, type Io } from './up.js';
import { differingRanges, mergeRanges, progressBar, verify } from './verify.js';
import { tempDir } from '../test/support/temp-dir.js';

function capture(isTTY = false): Io & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', isTTY, out: (s: string) => { io.stdout += s; }, err: (s: string) => { io.stderr += s; } };
  return io;
}

function topologyFile(ports: number[] = [3260, 7400, 7401, 3261, 7402], extra: object = {}): string {
  const dir = tempDir('kura-up-');
  const file = join(dir, 'topology.yaml');
  writeFileSync(file, stringify({
    name: 'small', psk: 'small-test-psk-0123456789', dataDir: './data',
    sites: [
      { name: 'tokyo', lat: 35.6812, lon: 139.7671, disasterRadiusKm: 60 },
      { name: 'utsunomiya', lat: 36.5551, lon: 139.8828, disasterRadiusKm: 60 },
      { name: 'okayama', lat: 34.6654, lon: 133.9185, disasterRadiusKm: 60 },
    ],
    nodes: [
      { role: 'controller', name: 'primary', site: 'tokyo', iscsi: `127.0.0.1:${ports[0]}`, peer: `127.0.0.1:${ports[1]}` },
      { role: 'relay', name: 'relay1', site: 'utsunomiya', peer: `127.0.0.1:${ports[2]}` },
      { role: 'controller', name: 'secondary', site: 'okayama', iscsi: `127.0.0.1:${ports[3]}`, peer: `127.0.0.1:${ports[4]}` },
    ],
    links: [
      { between: ['primary', 'relay1'], profile: { bandwidthBps: 1e9 } },
      { between: ['relay1', 'secondary'], profile: { bandwidthBps: 1e9 } },
    ],
    volumes: [{ name: 'vol0', size: '4MiB', primary: 'primary', secondary: 'secondary', relays: ['relay1'], ackMode: 'relay-durable' }],
    ...extra,
  }));
  return file;
}

function volume(role: 'primary' | 'secondary', more: Partial<ReplicationStatus> = {}): ReplicationStatus {
  return { volume: 'vol0', role, ackMode: 'relay-durable', generation: 1, sequence: 42, lagWrites: 0, lagBytes: 0, pendingAck: 0, peers: [], ...more };
}

/** Fake node answers, by node. */
interface Fake {
  status?: NodeStatus;
  digests?: (lba: number, blocks: number, chunk: number) => string[];
  calls: string[];
}

async function fakeNodes(file: string, fakes: Record<string, Fake>): Promise<AdminServer[]> {
  const t = loadChecked(file);
  const servers: AdminServer[] = [];
  for (const [name, f] of Object.entries(fakes)) {
    const n = t.nodes.find((x) => x.name === name)!;
    const h: AdminHandlers = {
      status: () => f.status!,
      promote: async (v) => { f.calls.push(`promote ${v}`); },
      digest: async (v, lba, blocks, chunk) => {
        f.calls.push(`digest ${v} ${lba} ${blocks} ${chunk}`);
        return { blockSize: 512, blockCount: 8192, digests: f.digests!(lba, blocks, chunk) };
      },
      link: (peer, on) => { f.calls.push(`link ${peer} ${on}`); },
      copy: async (v, lba, blocks) => { f.calls.push(`copy ${v} ${lba} ${blocks}`); },
      pull: async (v) => { f.calls.push(`pull ${v}`); return []; },
      stop: () => { f.calls.push('stop'); },
    };
    servers.push(await startAdminServer({ dataDir: n.dataDir!, handlers: h }));
  }
  return servers;
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** The message a promise is rejected with ('' if it resolves). */
const errorOf = (p: Promise<unknown>) => p.then(() => '', (e: Error) => e.message);

describe('kura up / down / status / promote / link / verify', () => {
  describe('validation and arguments', () => {
    it('starts secondaries, then relays (which dial them), primaries last', () => {
      expect(startGroups(loadChecked(topologyFile())).map((g) => g.map((n) => n.name))).to.deep.equal([['secondary'], ['relay1'], ['primary']]);
    });

    it('a bad topology is a ConfigError naming the file and the field', async () => {
      const dup = topologyFile(undefined, { links: [{ between: ['primary', 'relay1'] }, { between: ['relay1', 'primary'] }] });
      expect(() => loadChecked(dup)).to.throw(ConfigError, 'links[1]: a second link between "primary" and "relay1" (links[0] is the first)');
      let err: Error | undefined;
      await up('/nonexistent/topology.yaml', { detach: true }, capture()).catch((e: Error) => { err = e; });
      expect(err).to.be.instanceOf(ConfigError);
      expect(err!.message).to.include('/nonexistent/topology.yaml: invalid configuration');
    });

    it('refuses to start when a port is taken, before spawning anything', async () => {
      const busy = createServer();
      await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
      const port = (busy.address() as { port: number }).port;
      const file = topologyFile([await freePort(), await freePort(), port, await freePort(), await freePort()]);
      let err: Error | undefined;
      await up(file, { detach: true }, capture()).catch((e: Error) => { err = e; });
      busy.close();
      expect(err?.message).to.equal(`127.0.0.1:${port} (nodes[1].peer of "relay1") is in use by another process: stop it or change the port in ${file}`);
    });

    it('promote and link name what is wrong', async () => {
      const file = topologyFile();
      const io = capture();
      expect(await errorOf(promote('nope', file, {}, io))).to.equal(`no volume "nope" in ${file} (volumes: vol0)`);
      expect(await errorOf(promote('vol0', file, { node: 'zz' }, io))).to.equal(`no node named "zz" in ${file} (nodes: primary, relay1, secondary)`);
      expect(await errorOf(promote('vol0', file, {}, io))).to.match(/^promote "vol0" on "secondary": admin socket .*: no such socket: the node is not running$/);
      expect(await errorOf(link('down', 'primary', 'secondary', file, io))).to.equal(`no link between "primary" and "secondary" in ${file}: their traffic is not emulated, so it cannot be partitioned (add a links entry)`);
    });

    it('the command line rejects bad arguments with usage errors', async function () {
      this.timeout(30_000);
      const [cmd, ...pre] = kuraCommand();
      const [choice, alone] = await Promise.all([
        run(cmd!, [...pre, 'link', 'sideways', 'a', 'b'], { timeoutMs: 25_000 }),
        run(cmd!, [...pre, 'node', '--name', 'x'], { timeoutMs: 25_000 }),
      ]);
      expect(choice.code).to.equal(1);
      expect(choice.stderr).to.include("argument 'action'. Allowed choices are down, up.");
      expect(alone.code).to.equal(1);
      expect(alone.stderr).to.include('--topology FILE and --name NODE go together');
    });

    it('renders pino lines for the terminal and passes other lines through', () => {
      const t = Date.UTC(2026, 0, 1, 12, 34, 56, 789);
      expect(renderLogLine(JSON.stringify({ level: 30, time: t, pid: 9, name: 'n', msg: 'peer link up', peer: 'relay1' }))).to.equal('12:34:56.789 INFO  peer link up {"peer":"relay1"}');
      expect(renderLogLine('kura: serving iscsi://x')).to.equal('kura: serving iscsi://x');
    });
  });

  describe('against fake nodes', () => {
    const servers: AdminServer[] = [];
    afterEach(async () => {
      for (const s of servers.splice(0)) await s.close();
    });

    it('status: per node and volume role, lag, relay backlog, links; a node that does not answer is down', async () => {
      const file = topologyFile();
      const primary: NodeStatus = {
        node: 'primary', role: 'controller', site: 'tokyo', pid: 101, uptimeMs: 125_000, iscsi: ['iscsi://127.0.0.1:3260/iqn.2026-11.dev.kura:vol0/0'],
        volumes: [volume('primary', { lagWrites: 3, lagBytes: 12288, pendingAck: 1 })],
        links: [{ peer: 'relay1', state: 'up', rttMs: 1.523, partitioned: true }],
        wan: [{ peer: 'relay1', link: 'primary->relay1', partitioned: true, oneWayDelayMs: 0.733, bandwidthBps: 1e9, queuedBytes: 0, stats: {} as never }],
      };
      const relay: NodeStatus = {
        node: 'relay1', role: 'relay', site: 'utsunomiya', pid: 102, uptimeMs: 5000, volumes: [],
        // The relay also carries another volume: its share is in the relay's total, not in vol0's lag.
        relay: { backlogRecords: 7, backlogBytes: 3 * 1024 * 1024, backlogByVolume: { vol0: { records: 5, bytes: 2 * 1024 * 1024 }, vol9: { records: 2, bytes: 1024 * 1024 } }, journal: {} as never, forwarded: 99 },
        links: [{ peer: 'secondary', state: 'connecting', partitioned: false }],
      };
      servers.push(...await fakeNodes(file, { primary: { status: primary, calls: [] }, relay1: { status: relay, calls: [] } }));
      const text = renderStatus(await collectStatus(loadChecked(file), file));
      const lines = text.split('\n');
      expect(lines[0]).to.equal(`topology "small" (${file}): 3 nodes, 2 up`);
      expect(lines).to.include('primary    controller  tokyo       up     101  2m05s   iscsi://127.0.0.1:3260/iqn.2026-11.dev.kura:vol0/0');
      expect(lines).to.include('relay1     relay       utsunomiya  up     102  5s      backlog 7 writes, 3.0 MiB; forwarded 99');
      const down = lines.find((l) => l.startsWith('secondary'))!;
      expect(down.startsWith('secondary  controller  okayama     down   -    -       admin socket ')).to.equal(true, down);
      expect(down).to.match(/the node is not running$/);
      // The secondary is down: how many writes it lacks is unknown; the bytes on their way are the primary's plus the relay's for vol0.
      expect(lines).to.include('vol0    primary  primary  relay-durable  1:42     ? writes, 2.0 MiB  1');
      expect(lines).to.include("primary <-> relay1    up          1.52 ms  0.73 ms / ?    1000 Mb/s  PARTITIONED on primary's side only");
      expect(lines).to.include('relay1 <-> secondary  connecting  -        unshaped       -          secondary is down');

      const io = capture();
      expect(await statusCommand(file, { json: true }, io)).to.equal(0);
      const json = JSON.parse(io.stdout) as { nodes: { node: string; up: boolean; status?: NodeStatus; error?: string }[] };
      expect(json.nodes.map((n) => [n.node, n.up])).to.deep.equal([['primary', true], ['relay1', true], ['secondary', false]]);
      expect(json.nodes[0]!.status!.volumes[0]!.lagWrites).to.equal(3);
      expect(json.nodes[2]!.error).to.include('not running');
    });

    it('verify: digests from both sides in slices; differing chunks as merged LBA ranges, exit 1; identical, exit 0', async () => {
      const file = topologyFile();
      const same = (lba: number, blocks: number, chunk: number) => Array.from({ length: Math.ceil(blocks / chunk) }, (_, i) => sha(String(lba + i * chunk)));
      const bad = new Set([2048, 4096, 8064]);
      const secondary: Fake = { status: undefined, calls: [], digests: (lba, blocks, chunk) => same(lba, blocks, chunk).map((d, i) => (bad.has(lba + i * chunk) ? 'x' : d)) };
      const primary: Fake = { status: { node: 'primary', role: 'controller', site: 'tokyo', pid: 1, uptimeMs: 1, volumes: [volume('primary')], links: [] }, calls: [], digests: same };
      servers.push(...await fakeNodes(file, { primary, secondary }));
      const io = capture();
      expect(await verify('vol0', file, { chunk: '64KiB' }, io)).to.equal(1);
      // 4 MiB of 512-byte blocks, chunks of 128 blocks: one slice of 8192 blocks.
      expect(primary.calls.filter((c) => c.startsWith('digest'))).to.deep.equal(['digest vol0 0 8192 128']);
      expect(io.stdout).to.equal([
        'differs: LBA 2048-2175 (128 blocks, 64.0 KiB)',
        'differs: LBA 4096-4223 (128 blocks, 64.0 KiB)',
        'differs: LBA 8064-8191 (128 blocks, 64.0 KiB)',
        'vol0: 3 differing ranges, 192.0 KiB of 4.0 MiB in chunks of 64.0 KiB',
        '',
      ].join('\n'));
      expect(io.stderr).to.include('vol0: 0% verified\n').and.include('vol0: 100% verified\n');
      bad.clear();
      const tty = capture(true);
      expect(await verify('vol0', file, {}, tty)).to.equal(0);
      expect(tty.stdout).to.equal('vol0: primary and secondary are identical (4.0 MiB in chunks of 1.0 MiB)\n');
      expect(tty.stderr).to.include('\rvol0: [##############################] 100%');
    });

    it('verify: exit 2 with the reason when a node does not answer or the chunk is not a multiple of the block size', async () => {
      const file = topologyFile();
      const io = capture();
      expect(await verify('vol0', file, { chunk: '1000' }, io)).to.equal(2);
      expect(io.stderr).to.include('--chunk 1000 is 1000 bytes: it must be a positive multiple of the volume\'s block size (512 bytes)');
      expect(await verify('vol0', file, {}, io)).to.equal(2);
      expect(io.stderr).to.match(/kura: verify: primary "primary": admin socket .*the node is not running/);
    });

    it('verify helpers: ranges merge, the last chunk is short, the bar fills', () => {
      expect(mergeRanges([{ lba: 10, blocks: 5 }, { lba: 0, blocks: 10 }, { lba: 20, blocks: 1 }])).to.deep.equal([{ lba: 0, blocks: 15 }, { lba: 20, blocks: 1 }]);
      expect(differingRanges(['a', 'b', 'c'], ['a', 'x', 'y'], 100, 8, 120)).to.deep.equal([{ lba: 108, blocks: 12 }]);
      expect(progressBar(1, 4, 8)).to.equal('[##......]  25%');
    });

    it('link tells both nodes; promote defaults to the volume\'s secondary', async () => {
      const file = topologyFile();
      const p: Fake = { calls: [] };
      const r: Fake = { calls: [] };
      const s: Fake = { calls: [] };
      servers.push(...await fakeNodes(file, { primary: p, relay1: r, secondary: s }));
      const io = capture();
      expect(await link('down', 'primary', 'relay1', file, io)).to.equal(0);
      expect(await link('up', 'relay1', 'primary', file, io)).to.equal(0);
      expect(p.calls).to.deep.equal(['link relay1 true', 'link relay1 false']);
      expect(r.calls).to.deep.equal(['link primary true', 'link primary false']);
      expect(io.stdout).to.include('link primary <-> relay1: partitioned');
      expect(await promote('vol0', file, {}, io)).to.equal(0);
      expect(s.calls).to.deep.equal(['promote vol0']);
      await servers.pop()!.close(); // the secondary goes away
      expect(await link('down', 'relay1', 'secondary', file, io)).to.equal(1);
      expect(io.stderr).to.match(/kura: link down relay1 secondary: secondary: admin socket .*not running \(relay1 did partition its side\)/);
    });

    it('promote refuses while a relay still holds writes of the volume, unless --force; a relay that does not answer is a warning', async () => {
      const file = topologyFile();
      const relayStatus: NodeStatus = {
        node: 'relay1', role: 'relay', site: 'utsunomiya', pid: 102, uptimeMs: 5000, volumes: [], links: [],
        relay: { backlogRecords: 3, backlogBytes: 12288, backlogByVolume: { vol0: { records: 3, bytes: 12288 } }, journal: {} as never, forwarded: 0 },
      };
      const r: Fake = { calls: [], status: relayStatus };
      const s: Fake = { calls: [] };
      servers.push(...await fakeNodes(file, { relay1: r, secondary: s }));
      const io = capture();
      expect(await errorOf(promote('vol0', file, {}, io))).to.equal('relays still hold writes of "vol0" that hosts were acknowledged for: relay1 holds 3 writes (12288 bytes). '
        + 'A promoted secondary takes nothing more from them: wait until they reach it (kura status: relay backlog 0; heal a partitioned link with kura link up), or promote with --force to give them up');
      expect(s.calls).to.deep.equal([]);
      expect(await promote('vol0', file, { force: true }, io)).to.equal(0);
      expect(io.stderr).to.include('kura: warning: promoting with --force: relay1 holds 3 writes (12288 bytes) are given up');
      expect(s.calls).to.deep.equal(['promote vol0']);
      // Drained: no question asked.
      r.status = { ...relayStatus, relay: { ...relayStatus.relay!, backlogRecords: 0, backlogBytes: 0, backlogByVolume: {} } };
      expect(await promote('vol0', file, {}, io)).to.equal(0);
      // The relay's site is gone: its backlog is unknown, which is said, and the promotion goes on.
      await servers.shift()!.close();
      expect(await promote('vol0', file, {}, io)).to.equal(0);
      expect(io.stderr).to.match(/kura: warning: relay "relay1" does not answer \(.*\): what it holds of "vol0" is unknown/);
      expect(s.calls).to.deep.equal(['promote vol0', 'promote vol0', 'promote vol0']);
    });

    it('promote refuses while the primary still serves the volume (two primaries), unless --force', async () => {
      const file = topologyFile();
      const primaryStatus: NodeStatus = { node: 'primary', role: 'controller', site: 'tokyo', pid: 101, uptimeMs: 5000, volumes: [volume('primary')], links: [] };
      const p: Fake = { calls: [], status: primaryStatus };
      const s: Fake = { calls: [] };
      servers.push(...await fakeNodes(file, { primary: p, secondary: s }));
      const io = capture();
      expect(await errorOf(promote('vol0', file, {}, io))).to.equal('the primary "primary" still runs and serves "vol0": its hosts\' writes would go on being acknowledged and never reach "secondary" (two primaries). '
        + `Stop it first (kura down ${file} --node primary, or lose its site), or promote with --force`);
      expect(s.calls).to.deep.equal([]);
      expect(await promote('vol0', file, { force: true }, io)).to.equal(0);
      expect(io.stderr).to.include('kura: warning: promoting with --force while the primary "primary" still serves "vol0"');
      expect(s.calls).to.deep.equal(['promote vol0']);
      // Its site lost: no question asked.
      await servers.shift()!.close();
      expect(await promote('vol0', file, {}, io)).to.equal(0);
      expect(s.calls).to.deep.equal(['promote vol0', 'promote vol0']);
    });
  });

  describe('real processes', function () {
    this.timeout(180_000);

    it('kura up --detach starts every node; kura status --json sees them and the replication; kura down stops them', async () => {
      const file = topologyFile([await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]);
      const [cmd, ...pre] = kuraCommand();
      const kura = (...args: string[]) => run(cmd!, [...pre, ...args], { timeoutMs: 150_000 });
      const started = await kura('up', '--detach', '--timeout', '120', file);
      try {
        expect(started.code, started.stderr + started.stdout).to.equal(0);
        expect(started.stdout).to.include('topology "small" is up (3 nodes');
        expect(started.stdout).to.match(/iscsi:\/\/127\.0\.0\.1:\d+\/iqn\.2026-11\.dev\.kura:vol0\/0/);
        const t = loadChecked(file);
        expect(existsSync(join(t.dataDir, 'run', 'primary.pid'))).to.equal(true);
        expect(JSON.parse(readFileSync(join(t.dataDir, 'run', 'up.json'), 'utf8')).epochWallMs).to.be.a('number');

        const st = await kura('status', '--json', file);
        expect(st.code, st.stderr).to.equal(0);
        const report = JSON.parse(st.stdout) as { nodes: { node: string; up: boolean; status: NodeStatus }[] };
        expect(report.nodes.map((n) => [n.node, n.up])).to.deep.equal([['primary', true], ['relay1', true], ['secondary', true]]);
        const p = report.nodes[0]!.status;
        expect(p.volumes.map((v) => [v.volume, v.role, v.ackMode])).to.deep.equal([['vol0', 'primary', 'relay-durable']]);
        expect(p.wan!.map((w) => [w.link, w.partitioned])).to.deep.equal([['primary->relay1', false]]);
        expect(p.wan![0]!.oneWayDelayMs).to.be.closeTo(97.7 * 1.5 * 0.005, 0.01);

        const again = await kura('up', '--detach', file);
        expect(again.code).to.equal(1);
        expect(again.stderr).to.include('topology "small" is already up (primary pid');
      } finally {
        const stopped = await kura('down', file);
        expect(stopped.code, stopped.stderr).to.equal(0);
        expect(stopped.stdout.split('\n').filter(Boolean).map((l) => l.split(':')[0])).to.deep.equal(['primary', 'relay1', 'secondary']);
        expect(stopped.stdout).to.match(/primary: stopped \(pid \d+\)/);
      }
      const after = await kura('status', '--json', file);
      expect((JSON.parse(after.stdout) as { nodes: { up: boolean }[] }).nodes.every((n) => !n.up)).to.equal(true);
      expect(existsSync(join(loadChecked(file).dataDir, 'run', 'primary.pid'))).to.equal(false);
    });

    it('kura down stops the nodes of a topology file that no longer validates, by the pids its run directory records', async () => {
      const file = topologyFile([await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]);
      const [cmd, ...pre] = kuraCommand();
      const kura = (...args: string[]) => run(cmd!, [...pre, ...args], { timeoutMs: 150_000 });
      const started = await kura('up', '--detach', '--timeout', '120', file);
      expect(started.code, started.stderr + started.stdout).to.equal(0);
      const run_ = join(loadChecked(file).dataDir, 'run');
      const pids = ['primary', 'relay1', 'secondary'].map((n) => Number(readFileSync(join(run_, `${n}.pid`), 'utf8')));
      // Edited while the nodes run: the file is now invalid.
      writeFileSync(file, readFileSync(file, 'utf8').replace('small-test-psk-0123456789', 'short'));
      const stopped = await kura('down', file);
      expect(stopped.code, stopped.stderr).to.equal(0);
      expect(stopped.stderr).to.include('psk: must be at least 16 characters');
      expect(stopped.stderr).to.include(`stopping the nodes recorded in ${run_} by their pids`);
      expect(stopped.stdout.split('\n').filter(Boolean).map((l) => l.split(':')[0])).to.deep.equal(['primary', 'relay1', 'secondary']);
      expect(stopped.stdout).to.match(/primary: stopped by SIGTERM \(pid \d+\)/);
      for (const pid of pids) expect(alive(pid), `pid ${pid} is gone`).to.equal(false);
      expect(existsSync(join(run_, 'primary.pid'))).to.equal(false);
      // Nothing recorded any more: the validation error alone, exit 2.
      const again = await kura('down', file);
      expect(again.code).to.equal(2);
      expect(again.stderr).to.include('psk: must be at least 16 characters');
    });
  });
});
