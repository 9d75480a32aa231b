/**
 * The `kura` command line. `kura node` runs one controller node (the default configuration when
 * no --config is given) or one node of a topology; `kura up` / `down` / `status` / `promote` /
 * `link` / `verify` run and operate a whole topology (cli/up.ts); `kura config check` validates a
 * configuration file.
 */
import { resolve } from 'node:path';
import { Argument, Command, InvalidArgumentError } from 'commander';
import { ConfigError, defaultConfig, loadConfig, type NodeConfig } from './config.js';
import { createLogger } from '../hal/logger.js';
import { registerVmCommands } from './vm.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number 0-65535');
  return n;
}

function epoch(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be wall-clock milliseconds since 1970 (Date.now())');
  return n;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number of seconds');
  return n;
}

/** Runs a topology command: its exit code, or fail() (2 for a bad topology file, else 1). */
async function exitWith(run: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await run();
  } catch (err) {
    fail(err);
  }
}

function fail(err: unknown): never {
  process.stderr.write(`kura: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
}

const program = new Command()
  .name('kura')
  .description('storage-controller firmware emulator: seed-000 controller behind a real iSCSI target');

program.command('node')
  .description('run a controller node (without --config: a 1 GiB file volume on 127.0.0.1:3260), or with --topology one node of a topology')
  .option('-c, --config <file>', 'node configuration (YAML or JSON)')
  .option('--data-dir <dir>', 'data directory for the default configuration', process.env.KURA_DATA_DIR ?? 'data')
  .option('-p, --port <port>', 'iSCSI port for the default configuration', port, 3260)
  .option('--log-level <level>', 'override the configured log level')
  .option('-t, --topology <file>', 'run node --name of this topology (what kura up starts)')
  .option('--name <node>', 'with --topology: which node')
  .option('--epoch <ms>', 'with --topology: wall-clock ms the links\' outage schedules count from (kura up passes one to every node)', epoch)
  .option('--resync', 'with --topology: a primary opens a new replication generation and copies its volumes whole (kura up --resync passes it)')
  .action(async (opts: { config?: string; dataDir: string; port: number; logLevel?: string; topology?: string; name?: string; epoch?: number; resync?: boolean }) => {
    if (opts.topology !== undefined || opts.name !== undefined || opts.epoch !== undefined || opts.resync === true) {
      if (opts.topology === undefined || opts.name === undefined) fail(new Error('--topology FILE and --name NODE go together'));
      if (opts.config !== undefined) fail(new Error('give --config (a single node) or --topology (a node of a topology), not both'));
      const { runTopologyNode } = await import('./run-node.js');
      await runTopologyNode({ topology: opts.topology, name: opts.name, epoch: opts.epoch, logLevel: opts.logLevel, resync: opts.resync }).catch(fail);
      return;
    }
    let config: NodeConfig;
    try {
      config = opts.config ? loadConfig(opts.config) : defaultConfig(resolve(opts.dataDir), opts.port);
    } catch (err) {
      fail(err);
    }
    const logger = createLogger({ level: opts.logLevel ?? config.log.level, name: config.node.name });
    let node;
    try {
      const { startControllerNode } = await import('./controller-node.js');
      node = await startControllerNode(config, logger);
    } catch (err) {
      logger.error({ err }, 'node failed to start');
      fail(err);
    }
    for (const url of node.urls) {
      logger.info({ url }, `serving ${url}`);
      process.stderr.write(`kura: serving ${url}\n`);
    }
    let signals = 0;
    const shutdown = (signal: string) => {
      if (++signals > 1) {
        process.stderr.write('kura: second signal, exiting without a clean shutdown\n');
        process.exit(130);
      }
      logger.info({ signal }, 'shutting down: closing sessions, flushing volumes');
      node.stop().then(() => {
        logger.info({}, 'stopped');
        process.exit(0);
      }, (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      });
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
  });

program.command('config')
  .description('configuration files')
  .command('check <file>')
  .description('validate a node configuration and print it with defaults filled in')
  .action((file: string) => {
    try {
      process.stdout.write(`${JSON.stringify(loadConfig(file), null, 2)}\n`);
    } catch (err) {
      fail(err);
    }
  });

program.command('topology')
  .description('deployment topologies (sites, nodes, WAN links, replicated volumes)')
  .command('check <file>')
  .description('validate a topology and report relay placements that break 000-E1 (exit 3 when any)')
  .option('--json', 'print the topology and findings as JSON')
  .action(async (file: string, opts: { json?: boolean }) => {
    const { checkRelayPlacement, loadTopology } = await import('./topology.js');
    try {
      const t = loadTopology(file);
      const findings = checkRelayPlacement(t);
      if (opts.json) process.stdout.write(`${JSON.stringify({ topology: t, findings }, null, 2)}\n`);
      else {
        process.stdout.write(`${file}: ${t.sites.length} sites, ${t.nodes.length} nodes, ${t.links.length} links, ${t.volumes.length} volumes\n`);
        for (const f of findings) process.stdout.write(`placement: ${f.message}\n`);
        if (findings.length === 0) process.stdout.write('relay placement: ok\n');
      }
      if (findings.length > 0) process.exitCode = 3;
    } catch (err) {
      fail(err);
    }
  });

const topologyFile = '[file]';
const fileHelp = 'topology file (default: topologies/default.yaml of this repository)';
const topo = async () => import('./up.js');

/** A command of ./topology-ops.js on FILE (default: the repository's default topology). */
function onTopology(file: string | undefined, run: (ops: typeof import('./topology-ops.js'), file: string) => Promise<number>): Promise<void> {
  return exitWith(async () => {
    const [ops, { defaultTopologyFile }] = await Promise.all([import('./topology-ops.js'), topo()]);
    return run(ops, file ?? defaultTopologyFile);
  });
}

program.command('up').argument(topologyFile, fileHelp)
  .description('start every node of a topology as its own process on loopback; follows their logs until Ctrl-C, which stops them (primaries first)')
  .option('-d, --detach', 'return once every node answers, leaving them running (stop them with kura down)')
  .option('--timeout <seconds>', 'how long each node may take to answer on its admin socket', seconds, 60)
  .option('--log-level <level>', 'the nodes\' log level (default info)')
  .option('--node <name...>', 'start only these nodes, the others running (e.g. one restarted after a crash)')
  .option('--resync', 'the primaries started open a new replication generation and copy their volumes whole to the secondaries (after a secondary lost writes it had only received)')
  .action((file: string | undefined, opts: { detach?: boolean; timeout: number; logLevel?: string; node?: string[]; resync?: boolean }) => exitWith(async () => {
    const { up, defaultTopologyFile } = await topo();
    return up(file ?? defaultTopologyFile, { detach: opts.detach, timeoutMs: opts.timeout * 1000, logLevel: opts.logLevel, nodes: opts.node, resync: opts.resync });
  }));

program.command('down').argument(topologyFile, fileHelp)
  .description('stop every node of a topology (admin stop, then SIGTERM, then SIGKILL), primaries first')
  .option('--node <name...>', 'stop only these nodes, the others running (e.g. the primary before a planned promotion)')
  .action((file: string | undefined, opts: { node?: string[] }) => exitWith(async () => {
    const { down, defaultTopologyFile } = await topo();
    return down(file ?? defaultTopologyFile, undefined, opts.node);
  }));

program.command('status').argument(topologyFile, fileHelp)
  .description('per node and volume: role, replication lag (writes, bytes), relay backlog, link state and RTT')
  .option('--json', 'print the nodes\' status as JSON')
  .action((file: string | undefined, opts: { json?: boolean }) => exitWith(async () => {
    const [{ statusCommand }, { defaultTopologyFile }] = await Promise.all([import('./status.js'), topo()]);
    return statusCommand(file ?? defaultTopologyFile, opts);
  }));

program.command('promote').argument('<volume>').argument(topologyFile, fileHelp)
  .description('make a volume writable on its secondary (after losing the primary)')
  .option('--node <name>', 'promote on this node instead of the volume\'s secondary')
  .option('--force', 'promote even though a relay still holds writes of the volume (they are given up), or its primary still serves it')
  .action((volume: string, file: string | undefined, opts: { node?: string; force?: boolean }) => onTopology(file, (ops, f) => ops.promote(volume, f, opts)));

program.command('link')
  .addArgument(new Argument('<action>', 'down: partition the link (nothing gets through); up: heal it').choices(['down', 'up']))
  .argument('<node-a>').argument('<node-b>').argument(topologyFile, fileHelp)
  .description('partition or heal the emulated WAN link between two nodes (both sides are told)')
  .action((action: 'down' | 'up', a: string, b: string, file: string | undefined) => onTopology(file, (ops, f) => ops.link(action, a, b, f)));

program.command('copy').argument('<volume>').argument(topologyFile, fileHelp)
  .description('backup (000-E1): copy a primary volume (or --lba/--blocks of it) to its secondary through the relays, with progress')
  .option('--lba <n>', 'first block', (v: string) => Number(v))
  .option('--blocks <n>', 'number of blocks (default: to the end)', (v: string) => Number(v))
  .action((volume: string, file: string | undefined, opts: { lba?: number; blocks?: number }) => onTopology(file, (ops, f) => ops.copy(volume, f, opts)));

program.command('pull').argument('<volume>').argument(topologyFile, fileHelp)
  .description("the volume's secondary asks its relays to forward what they hold (000-NV pull: how a relay with forwarding policy pull forwards)")
  .option('--writes <n>', 'at most this many writes from each relay (default: all it holds now)')
  .option('--bytes <size>', 'at most this many bytes from each relay, e.g. 64MiB (default: all it holds now)')
  .action((volume: string, file: string | undefined, opts: { writes?: string; bytes?: string }) => onTopology(file, (ops, f) => ops.pull(volume, f, opts)));

program.command('verify').argument('<volume>').argument(topologyFile, fileHelp)
  .description('compare a volume on its primary and secondary by chunk digests; prints the differing LBA ranges (exit 0 same, 1 different, 2 error)')
  .option('--chunk <size>', 'bytes per digest, a multiple of the block size', '1MiB')
  .action(async (volume: string, file: string | undefined, opts: { chunk: string }) => {
    const [{ verify }, { defaultTopologyFile }] = await Promise.all([import('./verify.js'), topo()]);
    process.exitCode = await verify(volume, file ?? defaultTopologyFile, opts);
  });

registerVmCommands(program);

program.parseAsync(process.argv).catch(fail);
