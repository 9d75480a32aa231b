/**
 * `kura promote`, `kura link`, `kura copy` and `kura pull`: one-shot operations on a running
 * topology through the nodes' admin sockets.
 */
import { adminClient } from './admin.js';
import { parseSize } from './config.js';
import { topologyLinks } from './topology-network.js';
import { adminSocketOf, loadChecked, processIo, type Io } from './up.js';
import type { Topology } from './topology.js';

function nodeNamed(t: Topology, file: string, name: string) {
  const n = t.nodes.find((x) => x.name === name);
  if (!n) throw new Error(`no node named "${name}" in ${file} (nodes: ${t.nodes.map((x) => x.name).join(', ')})`);
  return n;
}

/**
 * Makes the volume writable on its secondary (or on `node`). Not while a relay still holds writes of
 * the volume (unless `force`): hosts were acknowledged for them, and a promoted secondary applies
 * nothing more from the stream, so they would be left out of the volume for good. Nor while the
 * primary still serves the volume (unless `force`): its hosts' writes would go on being
 * acknowledged and never reach the promoted copy (two primaries: split brain).
 */
export async function promote(volume: string, file: string, o: { node?: string; force?: boolean }, io: Io = processIo): Promise<number> {
  const t = loadChecked(file);
  const v = t.volumes.find((x) => x.name === volume);
  if (!v) throw new Error(`no volume "${volume}" in ${file} (volumes: ${t.volumes.map((x) => x.name).join(', ') || 'none'})`);
  const target = o.node ?? v.secondary;
  if (target === undefined) throw new Error(`volume "${volume}" has no secondary in ${file}: name the node to promote with --node`);
  const n = nodeNamed(t, file, target);
  if (v.primary !== target) {
    const serving = await adminClient.status(adminSocketOf(nodeNamed(t, file, v.primary)), 2000).then(
      (s) => s?.volumes?.some((x) => x.volume === volume && x.role === 'primary') === true,
      () => false,
    );
    if (serving && o.force !== true) {
      throw new Error(`the primary "${v.primary}" still runs and serves "${volume}": its hosts' writes would go on being acknowledged and never reach "${target}" (two primaries). `
        + `Stop it first (kura down ${file} --node ${v.primary}, or lose its site), or promote with --force`);
    }
    if (serving) {
      io.err(`kura: warning: promoting with --force while the primary "${v.primary}" still serves "${volume}": writes acknowledged there from now on are not on "${target}". `
        + `It becomes write protected at its first write that "${target}" refuses; in a relay ack mode its relays acknowledge writes and then give them up, and it is not told\n`);
    }
  }
  const holding: string[] = [];
  for (const r of v.relays) {
    const held = await adminClient.status(adminSocketOf(nodeNamed(t, file, r)), 5000).then(
      (s) => s?.relay?.backlogByVolume?.[volume],
      (err: Error) => {
        io.err(`kura: warning: relay "${r}" does not answer (${err.message}): what it holds of "${volume}" is unknown\n`);
        return undefined;
      },
    );
    if (held !== undefined && held.records > 0) holding.push(`${r} holds ${held.records} writes (${held.bytes} bytes)`);
  }
  if (holding.length > 0) {
    if (o.force !== true) {
      throw new Error(`relays still hold writes of "${volume}" that hosts were acknowledged for: ${holding.join('; ')}. `
        + 'A promoted secondary takes nothing more from them: wait until they reach it (kura status: relay backlog 0; heal a partitioned link with kura link up), '
        + 'or promote with --force to give them up');
    }
    io.err(`kura: warning: promoting with --force: ${holding.join('; ')} are given up\n`);
  }
  await adminClient.promote(adminSocketOf(n), volume).catch((err: Error) => {
    throw new Error(`promote "${volume}" on "${target}": ${err.message}`);
  });
  io.out(`${volume}: writable on ${target} now\n`);
  return 0;
}

/** Partitions (`down`) or heals (`up`) the link between two nodes: both sides are told. */
export async function link(action: 'down' | 'up', a: string, b: string, file: string, io: Io = processIo): Promise<number> {
  const t = loadChecked(file);
  const na = nodeNamed(t, file, a);
  const nb = nodeNamed(t, file, b);
  if (a === b) throw new Error('a link joins two different nodes');
  if (!topologyLinks(t, a).has(b)) throw new Error(`no link between "${a}" and "${b}" in ${file}: their traffic is not emulated, so it cannot be partitioned (add a links entry)`);
  const on = action === 'down';
  const results = await Promise.allSettled([
    adminClient.link(adminSocketOf(na), b, on),
    adminClient.link(adminSocketOf(nb), a, on),
  ]);
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`${[a, b][i]}: ${(r.reason as Error).message}`] : []));
  if (failed.length > 0) {
    const told = results.flatMap((r, i) => (r.status === 'fulfilled' ? [[a, b][i]] : []));
    io.err(`kura: link ${action} ${a} ${b}: ${failed.join('; ')}${told.length ? ` (${told.join(' and ')} did ${on ? 'partition' : 'heal'} its side)` : ''}\n`);
    return 1;
  }
  io.out(`link ${a} <-> ${b}: ${on ? 'partitioned (nothing gets through; connections stay up until their own timeouts)' : 'healed'}\n`);
  return 0;
}

/**
 * `kura copy`: backup (000-E1) of a primary volume, or a range of it, to its secondary through the
 * replication path; shows progress until the node reports the copy done.
 */
export async function copy(volume: string, file: string, o: { lba?: number; blocks?: number }, io: Io = processIo): Promise<number> {
  const t = loadChecked(file);
  const v = t.volumes.find((x) => x.name === volume);
  if (!v) throw new Error(`no volume "${volume}" in ${file} (volumes: ${t.volumes.map((x) => x.name).join(', ') || 'none'})`);
  if (v.secondary === undefined) throw new Error(`volume "${volume}" has no secondary in ${file}: there is nowhere to copy it`);
  const socket = adminSocketOf(nodeNamed(t, file, v.primary));
  const started = Date.now();
  await adminClient.copy(socket, volume, { lba: o.lba, blocks: o.blocks }).catch((err: Error) => {
    throw new Error(`copy "${volume}" on "${v.primary}": ${err.message}`);
  });
  let shown = '';
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    const st = (await adminClient.status(socket)).volumes.find((x) => x.volume === volume);
    const r = st?.resync;
    if (r === undefined) throw new Error(`"${v.primary}" reports no copy of "${volume}"`);
    const pct = r.totalBlocks === 0 ? 100 : (100 * r.doneBlocks) / r.totalBlocks;
    const line = `${volume}: ${pct.toFixed(1)}% (${r.doneBlocks}/${r.totalBlocks} blocks)`;
    if (io.isTTY) io.err(`\r${line}`);
    else if (line !== shown && (r.state !== 'running' || Math.floor(pct / 10) !== Math.floor(parseFloat(shown.split(' ')[1] ?? '0') / 10))) io.err(`${line}\n`);
    shown = line;
    if (r.state === 'done') {
      if (io.isTTY) io.err('\n');
      io.out(`${volume}: copied ${r.totalBlocks} blocks to ${v.secondary} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      return 0;
    }
    if (r.state === 'needed') {
      if (io.isTTY) io.err('\n');
      io.err(`kura: the copy of "${volume}" failed (see ${v.primary}'s log); run kura copy again\n`);
      return 1;
    }
  }
}

/**
 * The secondary asks the volume's relays for what they hold (000-NV "when the secondary asks for
 * it"): the way a relay with `forwarding: {policy: pull}` ever forwards. A relay forwards in
 * recording order, whatever volume a record belongs to (one journal, one policy).
 */
export async function pull(volume: string, file: string, o: { writes?: string; bytes?: string }, io: Io = processIo): Promise<number> {
  const t = loadChecked(file);
  const v = t.volumes.find((x) => x.name === volume);
  if (!v) throw new Error(`no volume "${volume}" in ${file} (volumes: ${t.volumes.map((x) => x.name).join(', ') || 'none'})`);
  if (v.secondary === undefined) throw new Error(`volume "${volume}" has no secondary in ${file}: nothing pulls it`);
  const maxWrites = o.writes === undefined ? undefined : Number(o.writes);
  if (maxWrites !== undefined && !(Number.isSafeInteger(maxWrites) && maxWrites >= 1 && maxWrites < 0xffffffff)) throw new Error(`--writes ${o.writes}: a whole number of writes, at least 1`);
  const maxBytes = o.bytes === undefined ? undefined : parseSize(o.bytes);
  if (o.bytes !== undefined && !(maxBytes !== undefined && maxBytes >= 1 && maxBytes < 0xffffffff)) throw new Error(`--bytes ${o.bytes}: a size from 1 byte to 4 GiB (e.g. 64MiB)`);
  const r = await adminClient.pull(adminSocketOf(nodeNamed(t, file, v.secondary)), volume, { maxWrites, maxBytes }).catch((err: Error) => {
    throw new Error(`pull "${volume}" on "${v.secondary}": ${err.message}`);
  });
  const limit = [maxWrites === undefined ? '' : `${maxWrites} writes`, o.bytes === undefined ? '' : o.bytes].filter(Boolean).join(', ');
  io.out(`${volume}: ${v.secondary} asked ${r.relays.join(', ')} to forward ${limit === '' ? 'everything they hold' : `up to ${limit} each`} (kura status shows the backlog)\n`);
  return 0;
}
