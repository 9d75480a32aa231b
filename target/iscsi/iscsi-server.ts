/**
 * The iSCSI target: configured targets and portals, the session table (TSIH allocation, session
 * reinstatement), and one IscsiConnection per accepted transport. Sans-IO: the caller owns the
 * listening socket and hands each accepted stream to accept().
 */
import type { Clock } from '../../hal/clock.js';
import type { StreamHandler, StreamTransport } from '../../hal/transport.js';
import type { Logger } from '../../hal/types.js';
import type { ChapCredentials } from './chap.js';
import { ConnectionRegistry, IscsiConnection } from './connection.js';
import type { IscsiTargetDefinition, Portal, ServerConfig } from './context.js';
import type { LoginResult } from './login.js';
import { DEFAULT_DIGESTS, DEFAULT_LIMITS, DigestPolicies, TargetLimits } from './params.js';
import { LoginStatus } from './pdu.js';
import { Session } from './session.js';

export type { IscsiTargetDefinition } from './context.js';

export interface IscsiServerOptions {
  clock: Clock;
  logger: Logger;
  targets: IscsiTargetDefinition[];
  /** Advertised in SendTargets TargetAddress, each with its portal group tag. */
  portals: Portal[];
  /** Tag of portals that name none, and of accept() without one; default 1. */
  portalGroupTag?: number;
  discoveryChap?: ChapCredentials;
  /** Target-initiated NOP-In interval; default 5000, 0 disables. */
  nopInIntervalMs?: number;
  /** How long an unanswered NOP-In may stay unanswered before the connection is dropped; default 120000. */
  nopInTimeoutMs?: number;
  /** CmdSN window (commands outstanding per session); default 128. */
  queueDepth?: number;
  /** Our side of the negotiation (MaxRecvDataSegmentLength, bursts, R2Ts...). */
  limits?: Partial<TargetLimits>;
  /** HeaderDigest/DataDigest policy of discovery sessions and of targets that set none; default optional/optional. */
  digests?: Partial<DigestPolicies>;
  /** Default 15000. */
  loginTimeoutMs?: number;
  /** Bound on waiting for running tasks at logout and shutdown; default 5000. */
  drainTimeoutMs?: number;
  /** Immediate/unsolicited data a session may hold before the connection stops reading; default 16 MiB. */
  maxHeldBytes?: number;
}

export interface SessionInfo {
  tsih: number;
  initiator: string;
  /** The target name, or '' for a discovery session. */
  target: string;
  connections: number;
}

export class IscsiServer {
  private readonly config: ServerConfig;
  /** The config each connection sees: the server's, with its portal group's tag. */
  private readonly portalConfigs = new Map<number, ServerConfig>();
  private readonly table = new Map<number, Session>();
  private readonly connections = new Set<IscsiConnection>();
  private readonly registry: ConnectionRegistry;
  private nextTsih = 1;
  private stopping = false;

  constructor(options: IscsiServerOptions) {
    const byName = new Map<string, IscsiTargetDefinition>();
    for (const t of options.targets) {
      // iSCSI names compare case-insensitively (RFC 3722 normalizes them to lower case).
      const key = t.name.toLowerCase();
      if (byName.has(key)) throw new Error(`duplicate iSCSI target ${t.name}`);
      byName.set(key, t);
    }
    const defaultTag = options.portalGroupTag ?? 1;
    const portals = options.portals.map((p) => ({ ...p, portalGroupTag: p.portalGroupTag ?? defaultTag }));
    for (const p of portals) {
      if (!Number.isInteger(p.portalGroupTag) || p.portalGroupTag < 1 || p.portalGroupTag > 0xffff) {
        throw new Error(`portal ${p.host}:${p.port}: portal group tag ${p.portalGroupTag} is not 1..65535`);
      }
    }
    const digests: DigestPolicies = {
      header: options.digests?.header ?? DEFAULT_DIGESTS.header,
      data: options.digests?.data ?? DEFAULT_DIGESTS.data,
    };
    for (const [where, d] of [['server', digests], ...options.targets.map((t) => [`target ${t.name}`, t.digests ?? {}] as const)] as const) {
      for (const [key, policy] of Object.entries(d)) {
        if (policy !== undefined && policy !== 'none' && policy !== 'optional' && policy !== 'required') {
          throw new Error(`${where}: digests.${key} must be none, optional or required, not ${String(policy)}`);
        }
      }
    }
    const queueDepth = options.queueDepth ?? 128;
    if (!(queueDepth >= 1 && queueDepth <= 65536)) throw new Error(`bad queueDepth ${queueDepth}`);
    this.config = {
      clock: options.clock,
      logger: options.logger.child({ module: 'iscsi' }),
      portals,
      portalGroupTag: defaultTag,
      discoveryChap: options.discoveryChap,
      nopInIntervalMs: options.nopInIntervalMs ?? 5000,
      nopInTimeoutMs: Math.max(options.nopInTimeoutMs ?? 120_000, options.nopInIntervalMs ?? 5000),
      queueDepth,
      limits: { ...DEFAULT_LIMITS, ...options.limits },
      digests,
      loginTimeoutMs: options.loginTimeoutMs ?? 15000,
      drainTimeoutMs: options.drainTimeoutMs ?? 5000,
      maxHeldBytes: options.maxHeldBytes ?? 16 * 1024 * 1024,
      targets: options.targets,
      findTarget: (name) => byName.get(name.toLowerCase()),
    };
    const isStopping = (): boolean => this.stopping;
    this.registry = {
      get shuttingDown() {
        return isStopping();
      },
      bind: (result, conn) => this.bind(result, conn),
      sessionsOf: (target) => [...this.table.values()].filter((s) => s.target === target),
      removeSession: (s) => {
        if (this.table.get(s.tsih) === s) this.table.delete(s.tsih);
      },
      connectionClosed: (c) => {
        this.connections.delete(c);
      },
    };
    // PREEMPT AND ABORT: the device server decides whose tasks go, the sessions own them.
    for (const t of options.targets) {
      t.deviceServer.attach?.({
        abortTasks: (lun, nexusIds) => {
          for (const s of this.table.values()) {
            if (s.target === t && nexusIds.has(s.nexus.id)) s.abortTasks((task) => task.lun === lun, true);
          }
        },
      });
    }
  }

  /** Take over one accepted stream (one TCP connection) that arrived on portal group `portalGroupTag`. */
  accept(transport: StreamTransport, portalGroupTag = this.config.portalGroupTag): StreamHandler {
    let config = this.portalConfigs.get(portalGroupTag);
    if (!config) {
      config = portalGroupTag === this.config.portalGroupTag ? this.config : { ...this.config, portalGroupTag };
      this.portalConfigs.set(portalGroupTag, config);
    }
    const conn = new IscsiConnection(config, this.registry, transport);
    this.connections.add(conn);
    return conn;
  }

  sessions(): SessionInfo[] {
    return [...this.table.values()].map((s) => ({
      tsih: s.tsih,
      initiator: s.initiatorName,
      target: s.target?.name ?? '',
      connections: s.connection ? 1 : 0,
    }));
  }

  /**
   * Refuse new logins, let in-flight tasks complete (bounded by drainTimeoutMs), tell every
   * initiator the connection is going away and close it.
   */
  async shutdown(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.connections].map((c) => c.shutdown()));
    for (const s of [...this.table.values()]) s.close('server shutdown');
  }

  private bind(r: LoginResult, conn: IscsiConnection): Session | { status: number; reason: string } {
    if (this.stopping) return { status: LoginStatus.SERVICE_UNAVAILABLE, reason: 'server shutting down' };
    if (r.tsih !== 0) {
      // Joining an existing session: with MaxConnections=1 only connection reinstatement (same CID).
      const s = this.table.get(r.tsih);
      if (!s || s.initiatorName !== r.initiatorName || !s.isid.equals(r.isid) || s.target !== r.target || s.type !== r.sessionType
        || s.portalGroupTag !== r.portalGroupTag) {
        return { status: LoginStatus.SESSION_DOES_NOT_EXIST, reason: `no session with TSIH ${r.tsih}` };
      }
      if (s.connection && s.connection.cid !== r.cid) {
        return { status: LoginStatus.TOO_MANY_CONNECTIONS, reason: 'MaxConnections is 1' };
      }
      s.replaceConnection(conn, r.cmdSN, r.params);
      return s;
    }
    // Session reinstatement (§6.3.5): same initiator port (name + ISID) to the same target port
    // (portal group); through another portal group it is another I_T nexus, left alone.
    for (const s of [...this.table.values()]) {
      if (s.initiatorName === r.initiatorName && s.isid.equals(r.isid) && s.target === r.target && s.type === r.sessionType
        && s.portalGroupTag === r.portalGroupTag) {
        s.close('reinstated by a new login');
      }
    }
    const tsih = this.allocateTsih();
    if (tsih === undefined) return { status: LoginStatus.OUT_OF_RESOURCES, reason: 'no free TSIH' };
    const s = new Session(this.config, this.registry, r, tsih, conn);
    this.table.set(tsih, s);
    return s;
  }

  private allocateTsih(): number | undefined {
    for (let i = 0; i < 0xffff; i++) {
      const t = this.nextTsih;
      this.nextTsih = t === 0xffff ? 1 : t + 1;
      if (!this.table.has(t)) return t;
    }
    return undefined;
  }
}
