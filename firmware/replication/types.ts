/**
 * Replication through relaying devices (seed 000-E1..E4, 000-NV): the types the primary's
 * mirroring, the relay unit, the secondary's applier and the node processes share.
 *
 * Identity and order. Every replicated write of a volume carries a command identifier
 * `{ sourceUnit, issue }` where `issue = generation * 2^32 + sequence`:
 *   - sequence: +1 per replicated write of that volume, dense (1, 2, 3, ...) within a generation;
 *   - generation: bumped when the primary restarts after a crash (it cannot know which writes of the
 *     old generation reached a relay; the secondary drops the old generation's stragglers and the
 *     primary resynchronises the volume).
 * The secondary applies each (sourceUnit, volume) stream in sequence order, each identifier once:
 * its volume is always a prefix of the primary's write history, whatever path and order the writes
 * arrive by (000-E4). The primary acknowledges a host write only when every earlier write of the
 * volume has reached the ack mode's durability point too, so every acknowledged write lies inside
 * the prefix the secondary will reach after a primary crash.
 */
import type { CommandId } from '../processing-sequencer.js';

export const ackModes = ['local', 'relay-received', 'relay-durable', 'remote-received', 'remote-durable'] as const;
export type AckMode = (typeof ackModes)[number];

export const relaySelections = ['round-robin', 'least-loaded', 'random', 'stripe', 'all'] as const;
export type RelaySelection = (typeof relaySelections)[number];

export type RelayMode = 'store-and-forward' | 'cut-through';

const GENERATION_SHIFT = 2 ** 32;

export function issueOf(generation: number, sequence: number): number {
  return generation * GENERATION_SHIFT + sequence;
}

export function generationOf(id: CommandId): number {
  return Math.floor(id.issue / GENERATION_SHIFT);
}

export function sequenceOf(id: CommandId): number {
  return id.issue % GENERATION_SHIFT;
}

/** State of one link as `kura status` shows it. */
export type LinkState = 'connecting' | 'up' | 'down';

export interface PeerStatus {
  name: string;
  unitId: number;
  state: LinkState;
  /** Last heartbeat round trip, ms. */
  rttMs: number | undefined;
  /** Writes sent and not yet answered. */
  outstanding: number;
  /** A relay that has answered nothing for relayStallMs with writes outstanding: passed over while another path is up. */
  stalled?: boolean;
}

/** The primary's view of one volume's replication. */
export interface ReplicationStatus {
  volume: string;
  role: 'primary' | 'secondary';
  ackMode: AckMode;
  generation: number;
  /** Last sequence handed out (primary) or applied (secondary). */
  sequence: number;
  /** Primary: writes (and their bytes) not yet confirmed by the secondary, as far as it knows. */
  lagWrites: number;
  lagBytes: number;
  /** Primary: writes not yet at the ack point (host waits on them). */
  pendingAck: number;
  peers: PeerStatus[];
  /** Bytes of every write replicated (primary) or applied (secondary) in this generation. */
  replicatedBytes?: number;
  /** Primary: bytes of the writes a relay or the secondary answered (delivered to the first hop). */
  ackedBytes?: number;
  appliedBytes?: number;
  /** Primary: sends, and sends repeated after a failure. */
  sends?: number;
  resends?: number;
  /** Secondary: writes received out of order, waiting for an earlier sequence. */
  waiting?: number;
  /** Secondary: the sequence those writes wait for, and for how long it has been missing. */
  missing?: { sequence: number; forMs: number };
  /** Primary: its secondary was promoted while it served the volume; it takes no more writes. */
  fenced?: string;
  /** Secondary: false until `kura promote`. */
  writable?: boolean;
  /** Secondary: applying stopped on this error (a medium write failed); tried again as writes come. */
  failure?: string;
  /** A resynchronisation of the whole volume is running or needed (after a crash of the primary). */
  resync?: { state: 'needed' | 'running' | 'done'; doneBlocks: number; totalBlocks: number };
}
