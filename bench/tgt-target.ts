/**
 * The reference target, tgt, run in the foreground on its own port with its own management socket
 * (TGT_IPC_SOCKET), so it neither needs nor disturbs a system tgtd: the recipe of
 * shared/spec/interop.md. Its LUN 0 is a controller; the disk is LUN 1.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { acceptsTcp, run, runOk, startServer, waitFor } from './processes.js';
import type { Server } from './processes.js';

export interface TgtOptions {
  /** Working directory for the IPC socket and the log. */
  dir: string;
  backingStore: string;
  host?: string;
  port: number;
  iqn?: string;
  /** CHAP the initiator must answer (a tgt incoming account bound to the target). */
  chap?: { user: string; secret: string };
  /** The target's own credentials for mutual CHAP (an outgoing account). */
  mutualChap?: { user: string; secret: string };
}

export interface RunningTgt {
  readonly url: string;
  readonly child: ChildProcess;
  readonly logPath: string;
  stop(): Promise<void>;
}

export async function startTgt(opts: TgtOptions): Promise<RunningTgt> {
  const host = opts.host ?? '127.0.0.1';
  const iqn = opts.iqn ?? 'iqn.2026-11.org.example:tgt-bench';
  // tgtd and tgtadm both derive "<TGT_IPC_SOCKET>.<control port>" from it.
  const ipc = path.join(opts.dir, 'tgt-ipc');
  const env = { ...process.env, TGT_IPC_SOCKET: ipc };
  const tgtadm = (...args: string[]): Promise<string> => runOk('tgtadm', ['--lld', 'iscsi', ...args], { env, timeoutMs: 30_000 });

  if (await acceptsTcp(host, opts.port)) throw new Error(`port ${host}:${opts.port} is already in use: pick another with --tgt-port`);
  const server: Server = startServer('tgtd', ['-f', '--iscsi', `portal=${host}:${opts.port}`], path.join(opts.dir, 'tgtd.log'), { env });
  const stop = async (): Promise<void> => {
    if (server.running()) {
      // SIGTERM alone does not stop tgtd while targets exist: delete them, then the system.
      await run('tgtadm', ['--lld', 'iscsi', '--op', 'delete', '--force', '--mode', 'target', '--tid', '1'], { env, timeoutMs: 10_000 }).catch(() => {});
      await run('tgtadm', ['--lld', 'iscsi', '--op', 'delete', '--mode', 'system'], { env, timeoutMs: 10_000 }).catch(() => {});
      await Promise.race([server.exited, new Promise((r) => setTimeout(r, 5_000))]);
      await server.stop('SIGKILL', 1_000);
    }
    for (const f of [`${ipc}.0`, `${ipc}.0.lock`]) fs.rmSync(f, { force: true });
  };
  try {
    await waitFor('tgtd management socket', async () =>
      fs.existsSync(`${ipc}.0`) && (await run('tgtadm', ['--lld', 'iscsi', '--mode', 'system', '--op', 'show'], { env, timeoutMs: 5_000 })).code === 0,
    15_000, server);
    await tgtadm('--mode', 'target', '--op', 'new', '--tid', '1', '--targetname', iqn);
    await tgtadm('--mode', 'logicalunit', '--op', 'new', '--tid', '1', '--lun', '1', '--backing-store', opts.backingStore);
    await tgtadm('--mode', 'target', '--op', 'bind', '--tid', '1', '--initiator-address', 'ALL');
    for (const [account, outgoing] of [[opts.chap, false], [opts.mutualChap, true]] as const) {
      if (!account) continue;
      await tgtadm('--mode', 'account', '--op', 'new', '--user', account.user, '--password', account.secret);
      await tgtadm('--mode', 'account', '--op', 'bind', '--tid', '1', '--user', account.user, ...(outgoing ? ['--outgoing'] : []));
    }
    // tgtd keeps running when its portal cannot be bound (e.g. the port is taken): check it.
    await waitFor(`tgt portal ${host}:${opts.port}`, () => acceptsTcp(host, opts.port), 5_000, server);
  } catch (err) {
    await stop();
    throw err;
  }
  return { child: server.child, url: `iscsi://${host}:${opts.port}/${iqn}/1`, logPath: server.logPath, stop };
}
