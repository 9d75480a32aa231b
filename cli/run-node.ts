/**
 * `kura node --topology FILE --name NODE [--epoch MS]`: one node of a topology in this process, as
 * `kura up` spawns it: its WAN links (cli/topology-network.ts, on preciseClock, calibrated), the
 * node itself (cli/topology-node.ts) and its admin socket (cli/admin.ts). Logs are pino lines on
 * stdout; SIGINT / SIGTERM or POST /stop shut it down cleanly.
 */
import { createLogger } from '../hal/logger.js';
import { preciseClock, preciseScheduler } from '../hal/precise-timer.js';
import { AdminRequestError, startAdminServer, type NodeStatus } from './admin.js';
import { ConfigError } from './config.js';
import { topologyNetwork } from './topology-network.js';
import type { RunningTopologyNode } from './topology-node.js';
import { DUPLICATE_SIGNAL_MS, loadChecked, processIo, type Io } from './up.js';

export interface NodeRunOptions {
  topology: string;
  name: string;
  /** Wall-clock ms the topology's outage schedules count from (default: now). */
  epoch?: number;
  logLevel?: string;
  /** Primaries start a new replication generation and copy their volumes whole (topology-node.ts). */
  resync?: boolean;
}

/** `kura node --topology FILE --name NODE`: runs until SIGINT / SIGTERM or POST /stop. */
export async function runTopologyNode(o: NodeRunOptions, io: Io = processIo): Promise<void> {
  const t = loadChecked(o.topology);
  const me = t.nodes.find((n) => n.name === o.name);
  if (me === undefined) throw new ConfigError(o.topology, [`--name: no node named "${o.name}" (nodes: ${t.nodes.map((n) => n.name).join(', ')})`]);
  const logger = createLogger({ level: o.logLevel ?? 'info', name: me.name });
  const wan = topologyNetwork(t, me.name, { clock: preciseClock, epochWallMs: o.epoch ?? Date.now() });
  const latency = await wan.calibrate();
  logger.info({
    sourceAddress: wan.sourceAddress,
    ...(wan.stampHorizonMs === undefined ? { transportLatencyMs: latency } : { stampHorizonMs: wan.stampHorizonMs }),
    links: wan.linkStates().map((l) => ({ link: l.link, oneWayDelayMs: l.oneWayDelayMs, bandwidthBps: l.bandwidthBps })),
  }, 'WAN links');
  // The admin socket comes first: it refuses a second node on this data directory before anything
  // opens a medium, and answers 503 (not ready, for `kura up`) until the node has started.
  let node: RunningTopologyNode | undefined;
  const ready = (): RunningTopologyNode => {
    if (node === undefined) throw new AdminRequestError(503, `node "${me.name}" is starting`);
    return node;
  };
  const status = (): NodeStatus => {
    const s = ready().status();
    const byPeer = new Map(wan.linkStates().map((l) => [l.peer, l]));
    const timer = preciseScheduler();
    return {
      ...s, links: s.links.map((l) => ({ ...l, partitioned: byPeer.get(l.peer)?.partitioned ?? l.partitioned })), wan: [...byPeer.values()],
      timer: { ...timer.stats, mode: timer.mode, spinMs: timer.spinMs },
    };
  };
  const volumeOf = (volume: string) => {
    const v = ready().status().volumes.find((x) => x.volume === volume);
    if (v === undefined) throw new AdminRequestError(404, `node "${me.name}" has no volume "${volume}"`);
    return v;
  };
  let stopped: Promise<void> | undefined;
  const shutdown = (why: string) => (stopped ??= (async () => {
    logger.info({ why }, 'shutting down: closing links and sessions, flushing volumes');
    await admin.close();
    await node?.stop();
    logger.info({}, 'stopped');
  })().then(() => process.exit(0), (err: unknown) => {
    logger.error({ err }, 'shutdown failed');
    process.exit(1);
  }));
  const admin = await startAdminServer({
    dataDir: me.dataDir!,
    logger,
    handlers: {
      status,
      promote: async (volume) => {
        const v = volumeOf(volume);
        if (v.role !== 'secondary') throw new AdminRequestError(409, `node "${me.name}" is the primary of "${volume}": only a secondary can be promoted`);
        await ready().promote(volume);
      },
      copy: async (volume, lba, blocks) => {
        const v = volumeOf(volume);
        if (v.role !== 'primary') throw new AdminRequestError(409, `node "${me.name}" is the secondary of "${volume}": copy from its primary`);
        const node = ready();
        const st = node.status().volumes.find((x) => x.volume === volume);
        if (st?.resync?.state === 'running') throw new AdminRequestError(409, `a copy of "${volume}" is already running`);
        // The copy runs on; its progress and end show in /status.
        node.copy(volume, lba, blocks).catch((err: Error) => logger.error({ err: err.message, volume }, 'copy failed'));
      },
      pull: async (volume, limits) => {
        const v = volumeOf(volume);
        if (v.role !== 'secondary') throw new AdminRequestError(409, `node "${me.name}" is the primary of "${volume}": the volume's secondary pulls`);
        try {
          return ready().pull(volume, limits);
        } catch (err) {
          throw new AdminRequestError(409, (err as Error).message);
        }
      },
      digest: async (volume, lba, blocks, chunk) => {
        volumeOf(volume);
        return ready().digest(volume, lba, blocks, chunk);
      },
      link: (peer, on) => {
        try {
          wan.setPartitioned(peer, on);
        } catch (err) {
          throw new AdminRequestError(400, (err as Error).message);
        }
        logger.info({ peer, partitioned: on }, on ? `link to ${peer} partitioned` : `link to ${peer} healed`);
      },
      stop: () => void shutdown('POST /stop'),
    },
  });
  try {
    const { startTopologyNode } = await import('./topology-node.js');
    node = await startTopologyNode({ topology: t, node: me.name, logger, network: wan.network, resync: o.resync });
  } catch (err) {
    await admin.close();
    throw err;
  }
  for (const url of node.status().iscsi ?? []) io.err(`kura: serving ${url}\n`);
  io.err(`kura: node "${me.name}" ready (admin socket ${admin.socketPath})\n`);
  let firstSignal: number | undefined;
  const onSignal = (signal: string) => {
    if (firstSignal !== undefined && Date.now() - firstSignal < DUPLICATE_SIGNAL_MS) return;
    if (firstSignal !== undefined) {
      io.err('kura: second signal, exiting without a clean shutdown\n');
      process.exit(130);
    }
    firstSignal = Date.now();
    void shutdown(signal);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
}
