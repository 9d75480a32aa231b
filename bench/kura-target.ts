/**
 * kura as a child process, configured like the lead's CLI contract (cli/config.ts):
 * `node dist/cli/kura.js node --config FILE`, ready when it prints a line containing `iscsi://`.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { acceptsTcp, startServer, waitFor } from './processes.js';

export interface KuraOptions {
  /** Repository root (holds dist/cli/kura.js). */
  root: string;
  dir: string;
  backingFile: string;
  /** Volume size as the config spells it, e.g. "1GiB". */
  size: string;
  host?: string;
  port: number;
  /** Further portals on `host`, each its own target portal group (multipath). */
  extraPorts?: number[];
  iqn?: string;
  /** Change the generated node configuration before it is written (thin volume, CHAP, digests...). */
  configure?: (config: KuraConfig) => void;
}

/** The node configuration startKura writes (cli/config.ts spells out every field). */
export interface KuraConfig {
  node: { name: string; dataDir: string };
  portals: { host: string; port: number }[];
  volumes: Record<string, unknown>[];
  targets: Record<string, unknown>[];
  [key: string]: unknown;
}

export interface RunningKura {
  /** LUN 0 through the first portal. */
  readonly url: string;
  /** LUN 0 through each portal, in order. */
  readonly urls: string[];
  readonly child: ChildProcess;
  readonly logPath: string;
  stop(): Promise<void>;
}

export async function startKura(opts: KuraOptions): Promise<RunningKura> {
  const host = opts.host ?? '127.0.0.1';
  const iqn = opts.iqn ?? 'iqn.2026-11.dev.kura:bench';
  const entry = path.join(opts.root, 'dist/cli/kura.js');
  if (!fs.existsSync(entry)) throw new Error(`${entry} not found: build first (npm run build)`);
  const ports = [opts.port, ...(opts.extraPorts ?? [])];
  for (const port of ports) {
    if (await acceptsTcp(host, port)) throw new Error(`port ${host}:${port} is already in use: pick another with --kura-port`);
  }
  const dataDir = path.join(opts.dir, 'kura-data');
  fs.mkdirSync(dataDir, { recursive: true });
  const config: KuraConfig = {
    node: { name: 'bench', dataDir },
    portals: ports.map((port) => ({ host, port })),
    volumes: [{ name: 'vol0', size: opts.size, blockSize: 512, backing: { type: 'file', path: opts.backingFile } }],
    targets: [{ name: iqn, luns: [{ lun: 0, volume: 'vol0' }] }],
  };
  opts.configure?.(config);
  const configPath = path.join(opts.dir, 'kura.json');
  fs.writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);

  let seen = '';
  let ready = false;
  const server = startServer(process.execPath, [entry, 'node', '--config', configPath], path.join(opts.dir, 'kura.log'), {
    cwd: opts.root,
    onOutput: (text) => {
      if (ready) return;
      seen = (seen + text).slice(-4096);
      if (seen.includes('iscsi://')) ready = true;
    },
  });
  const stop = (): Promise<void> => server.stop('SIGTERM', 15_000);
  try {
    await waitFor('kura to print its iscsi:// URL', () => ready, 60_000, server);
    for (const port of ports) await waitFor(`kura portal ${host}:${port}`, () => acceptsTcp(host, port), 5_000, server);
  } catch (err) {
    await stop();
    throw err;
  }
  const urls = ports.map((port) => `iscsi://${host}:${port}/${iqn}/0`);
  return { child: server.child, url: urls[0]!, urls, logPath: server.logPath, stop };
}
