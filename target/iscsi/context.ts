/**
 * Types shared by the iSCSI modules: the configured targets and what a connection needs from the
 * server it belongs to. Kept apart from iscsi-server.ts so connection/session do not import it.
 */
import type { Clock } from '../../hal/clock.js';
import type { Logger } from '../../hal/types.js';
import type { DeviceServer } from '../scsi/task.js';
import type { ChapCredentials } from './chap.js';
import type { DigestPolicies, TargetLimits } from './params.js';

export interface IscsiTargetDefinition {
  /** IQN (or eui./naa. name). */
  name: string;
  alias?: string;
  deviceServer: DeviceServer;
  /** ACL: initiator names allowed to log in; empty or undefined lets everyone in. */
  allowedInitiators?: string[];
  /** Required of initiators when set. */
  chap?: ChapCredentials;
  /** The target's own credentials, for initiators that ask for mutual CHAP. */
  mutualChap?: ChapCredentials;
  /** HeaderDigest/DataDigest policy of this target; what it leaves out comes from the server's. */
  digests?: Partial<DigestPolicies>;
}

export interface Portal {
  host: string;
  port: number;
  /** Its target portal group (one SCSI target port per group); default: the server's. */
  portalGroupTag?: number;
}

/** The server-wide settings every connection reads. */
export interface ServerConfig {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly portals: readonly Portal[];
  /** The portal group this connection came through (the server's default outside connections). */
  readonly portalGroupTag: number;
  readonly discoveryChap: ChapCredentials | undefined;
  readonly nopInIntervalMs: number;
  readonly nopInTimeoutMs: number;
  readonly queueDepth: number;
  readonly limits: TargetLimits;
  /** Digest policy of discovery sessions, and of targets that set none. */
  readonly digests: DigestPolicies;
  /** Login phase deadline; a connection that has not logged in by then is dropped. */
  readonly loginTimeoutMs: number;
  /** How long Logout and shutdown wait for in-flight tasks before aborting them. */
  readonly drainTimeoutMs: number;
  /** Unsolicited/immediate data a session may hold for the device server before reading pauses. */
  readonly maxHeldBytes: number;
  findTarget(name: string): IscsiTargetDefinition | undefined;
  readonly targets: readonly IscsiTargetDefinition[];
}

export function targetAllows(target: IscsiTargetDefinition, initiatorName: string): boolean {
  const acl = target.allowedInitiators;
  return !acl || acl.length === 0 || acl.includes(initiatorName);
}
