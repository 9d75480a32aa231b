/**
 * The `kura` command line. `kura node` runs one controller node (the default configuration when
 * no --config is given); `kura config check` validates a configuration file.
 */
import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, defaultConfig, loadConfig, type NodeConfig } from './config.js';
import { createLogger } from '../hal/logger.js';
import { registerVmCommands } from './vm.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number 0-65535');
  return n;
}

function fail(err: unknown): never {
  process.stderr.write(`kura: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
}

const program = new Command()
  .name('kura')
  .description('storage-controller firmware emulator: seed-000 controller behind a real iSCSI target');

program.command('node')
  .description('run a controller node (without --config: a 1 GiB file volume on 127.0.0.1:3260)')
  .option('-c, --config <file>', 'node configuration (YAML or JSON)')
  .option('--data-dir <dir>', 'data directory for the default configuration', process.env.KURA_DATA_DIR ?? 'data')
  .option('-p, --port <port>', 'iSCSI port for the default configuration', port, 3260)
  .option('--log-level <level>', 'override the configured log level')
  .action(async (opts: { config?: string; dataDir: string; port: number; logLevel?: string }) => {
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

registerVmCommands(program);

program.parseAsync(process.argv).catch(fail);
