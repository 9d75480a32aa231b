/**
 * One iSCSI session (RFC 7143 §4.2.2): the CmdSN window and command ordering, the ITT table, the
 * I_T nexus the device server sees, and the session's one connection (MaxConnections=1, ERL 0:
 * losing the connection ends the session and every task in it).
 */
import type { Timer } from '../../hal/clock.js';
import type { Logger } from '../../hal/types.js';
import { nexusId, type DeviceServer, type Nexus } from '../scsi/task.js';
import type { IscsiTargetDefinition, ServerConfig } from './context.js';
import type { LoginResult } from './login.js';
import type { OperationalParams, SessionType } from './params.js';
import type { ScsiCommand } from './scsi-command.js';
import { snAdd, snInWindow } from './serial.js';

/** How a PDU's StatSN field is filled: consume the next StatSN, show it without consuming, or leave it reserved. */
export type StatSnMode = 'advance' | 'current' | 'none';

/** What the session needs from the connection carrying it. */
export interface SessionConnection {
  readonly cid: number;
  send(bhs: Buffer, data: Uint8Array | undefined, sn: StatSnMode, done?: () => void): void;
  /** A Target Transfer Tag unique on this connection. */
  nextTransferTag(): number;
  /** Drop the connection without any further PDU. */
  destroy(reason: string): void;
  /** Unsolicited data held for the device server changed; may pause or resume reading. */
  heldBytesChanged(): void;
}

export interface SessionRegistry {
  removeSession(session: Session): void;
}

const RECENT_TAGS = 256;

export class Session {
  readonly tsih: number;
  readonly isid: Buffer;
  readonly initiatorName: string;
  readonly type: SessionType;
  readonly target: IscsiTargetDefinition | undefined;
  /** The target portal group the session was opened through (RFC 7143 §4.4.1). */
  readonly portalGroupTag: number;
  readonly nexus: Nexus;
  readonly log: Logger;
  params: OperationalParams;
  connection: SessionConnection | undefined;
  expCmdSN: number;
  /** ITT table: every task from its SCSI Command until its response or abort. */
  readonly tasks = new Map<number, ScsiCommand>();
  /** Bytes of immediate/unsolicited data buffered ahead of the device server's requests. */
  heldBytes = 0;
  closed = false;

  /** Non-immediate tasks delivered and not finished: they shrink the CmdSN window. */
  private running = 0;
  private immediate = 0;
  /** Commands that arrived ahead of ExpCmdSN, waiting for the gap to fill. */
  private readonly held = new Map<number, () => void>();
  /** Tags of tasks just aborted: their late Data-Out PDUs are dropped silently, not rejected. */
  private readonly recent = new Set<number>();
  private readonly recentRing: (number | undefined)[] = new Array(RECENT_TAGS);
  private recentPos = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly config: ServerConfig,
    private readonly registry: SessionRegistry,
    result: LoginResult,
    tsih: number,
    connection: SessionConnection,
  ) {
    this.tsih = tsih;
    this.isid = result.isid;
    this.initiatorName = result.initiatorName;
    this.type = result.sessionType;
    this.target = result.target;
    this.params = result.params;
    this.connection = connection;
    this.expCmdSN = result.cmdSN;
    const isidHex = this.isid.toString('hex');
    this.portalGroupTag = result.portalGroupTag;
    // Each target portal group is one SCSI target port; its tag is the relative port identifier.
    const initiatorPort = `${this.initiatorName},i,0x${isidHex}`;
    this.nexus = {
      id: nexusId(initiatorPort, this.portalGroupTag),
      initiatorName: this.initiatorName,
      initiatorPort,
      relativeTargetPort: this.portalGroupTag,
    };
    this.log = config.logger.child({ tsih, initiator: this.initiatorName, isid: isidHex });
  }

  get deviceServer(): DeviceServer {
    // Only Normal sessions create tasks, and those always have a target.
    return this.target!.deviceServer;
  }

  get queueDepth(): number {
    return this.config.queueDepth;
  }

  /** The window stays queueDepth commands wide minus the tasks still running. */
  get maxCmdSN(): number {
    return snAdd(this.expCmdSN, Math.max(0, this.config.queueDepth - this.running) - 1);
  }

  inWindow(cmdSN: number): boolean {
    return snInWindow(cmdSN, this.expCmdSN, this.maxCmdSN);
  }

  /**
   * Deliver a non-immediate command in CmdSN order. Returns false for a CmdSN outside the window
   * or a duplicate: the RFC has those dropped silently.
   */
  sequence(cmdSN: number, run: () => void): boolean {
    if (!this.inWindow(cmdSN) || this.held.has(cmdSN)) return false;
    if (cmdSN !== this.expCmdSN) {
      this.held.set(cmdSN, run);
      return true;
    }
    this.expCmdSN = snAdd(this.expCmdSN, 1);
    run();
    for (let next = this.held.get(this.expCmdSN); next; next = this.held.get(this.expCmdSN)) {
      this.held.delete(this.expCmdSN);
      this.expCmdSN = snAdd(this.expCmdSN, 1);
      next();
    }
    return true;
  }

  isHeld(cmdSN: number): boolean {
    return this.held.has(cmdSN);
  }

  /** Commands wait for a CmdSN gap to fill, which only reading on can do. */
  get waitingForGap(): boolean {
    return this.held.size > 0;
  }

  /** Count a task against the window (non-immediate) or the immediate budget. */
  taskStarted(immediate: boolean): void {
    if (immediate) this.immediate++;
    else this.running++;
  }

  get immediateTasks(): number {
    return this.immediate;
  }

  /** The task answered or was aborted: free its ITT and window slot. */
  taskEnded(task: ScsiCommand, counted: boolean): void {
    if (this.tasks.get(task.tag) === task) this.tasks.delete(task.tag);
    if (counted) {
      if (task.immediate) this.immediate--;
      else this.running--;
    }
    if (this.tasks.size === 0 && this.idleWaiters.length > 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      // Later, so that the ending task's own response is queued before whatever waited for it.
      queueMicrotask(() => {
        for (const fn of w) fn();
      });
    }
  }

  wasRecent(itt: number): boolean {
    return this.recent.has(itt);
  }

  /**
   * Remember the tag of an aborted task for a while: the initiator may still have Data-Out for it
   * in flight. (A task that ends normally has received everything it solicited.)
   */
  rememberAborted(itt: number): void {
    if (this.recent.has(itt)) return;
    const old = this.recentRing[this.recentPos];
    if (old !== undefined) this.recent.delete(old);
    this.recentRing[this.recentPos] = itt;
    this.recentPos = (this.recentPos + 1) % RECENT_TAGS;
    this.recent.add(itt);
  }

  /**
   * Call fn once no task is in flight, or after timeoutMs, whichever comes first; tasks still
   * running then are aborted so that the caller can go on.
   */
  whenIdle(timeoutMs: number, fn: () => void): void {
    if (this.tasks.size === 0) {
      fn();
      return;
    }
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      timer.cancel();
      fn();
    };
    this.idleWaiters.push(finish);
    const timer: Timer = this.config.clock.setTimer(timeoutMs, () => {
      if (done) return;
      this.log.warn({ tasks: this.tasks.size }, 'tasks still running after the drain timeout: aborting them');
      this.abortTasks(() => true, true);
      finish();
    });
  }

  /** Abort the tasks `match` selects; returns how many. */
  abortTasks(match: (t: ScsiCommand) => boolean, notifyDevice: boolean): number {
    let n = 0;
    for (const t of [...this.tasks.values()]) {
      if (match(t) && t.abort()) {
        n++;
        if (notifyDevice) this.deviceServer.taskAborted?.(t);
      }
    }
    return n;
  }

  adjustHeld(delta: number): void {
    this.heldBytes += delta;
    this.connection?.heldBytesChanged();
  }

  /** A connection of this session took over (connection reinstatement at ERL 0). */
  replaceConnection(conn: SessionConnection, cmdSN: number, params: OperationalParams): void {
    const old = this.connection;
    this.connection = conn;
    this.abortTasks(() => true, true);
    old?.destroy('connection reinstated');
    // Commands the old connection lost will never come; restart the window at the login's CmdSN.
    this.held.clear();
    this.expCmdSN = cmdSN;
    this.params = params;
  }

  /** End the session: abort every task, tell the device server the nexus is gone. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.log.info({ reason }, 'session closed');
    const conn = this.connection;
    this.connection = undefined;
    this.held.clear();
    if (this.target) {
      this.abortTasks(() => true, true);
      try {
        this.target.deviceServer.nexusLost(this.nexus);
      } catch (e) {
        this.log.error({ err: e }, 'nexusLost threw');
      }
    }
    this.registry.removeSession(this);
    conn?.destroy(reason);
  }

  send(bhs: Buffer, data: Uint8Array | undefined, sn: StatSnMode, done?: () => void): void {
    if (this.connection) this.connection.send(bhs, data, sn, done);
    else done?.();
  }
}
