/** The PeerLink's public types, and what its sending and receiving halves share with it. */
import type { Clock } from '../../hal/clock.js';
import type { Logger } from '../../hal/types.js';
import type { CommandId } from '../processing-sequencer.js';
import type { ErrorCode } from './frame.js';
import type { FrameWriter } from './frame-writer.js';
import type { KeyLookup, PeerInfo } from './handshake.js';
import type { Durability, InboundWrite } from './inbound-write.js';

export type LinkMode = 'pipelined' | 'fidelity';

export interface WriteRequest {
  volume: number;
  lba: number;
  blocks: number;
  /** Not copied: keep it unchanged until the write is done. */
  data: Uint8Array;
  /** The command identifier; default: this link's next issuing number with our unit id. */
  id?: CommandId;
  fua?: boolean;
  /** When the peer should answer: once the data is in its buffer, or once durable (default 'received'). */
  ack?: Durability;
  /** Unit the peer should forward to (a relay's destination named by the source, [0074]). */
  forwardTo?: number;
  /** Striping: this write is [portionOffset, portionOffset + data.length) of totalLength bytes. */
  totalLength?: number;
  portionOffset?: number;
}

export interface WriteResult {
  id: CommandId;
  durability: Durability;
}

export interface WriteTicket {
  id: CommandId;
  tag: number;
  /** The peer's completion of reception; rejects with PeerError or LinkDownError. */
  done: Promise<WriteResult>;
}

export interface PullRequest {
  maxBytes: number;
  maxCommands: number;
  /** ANY_VOLUME: any. */
  volume: number;
}

export interface PeerHandler {
  /** A write command was admitted (buffer allocated); data may still be arriving (cut-through). */
  onCommand?(w: InboundWrite): void;
  /** All data of a write arrived. Its buffer is valid until this settles, unless retained. */
  onWrite(w: InboundWrite): Promise<Durability> | Durability;
  /** The peer asks for deferred data (000-NV: the secondary pulls from a relay). */
  onPull?(req: PullRequest, peer: PeerInfo): void;
}

export interface PeerLinkOptions {
  clock: Clock;
  logger?: Logger;
  role: 'initiator' | 'acceptor';
  unitId: number;
  /** Pre-shared key, or a lookup by the peer's unit id. */
  key: Uint8Array | KeyLookup;
  /** Initiator: refuse a peer that is not this unit. */
  expectedPeer?: number;
  /** Source of nonces (the simulator's seeded Random; crypto.randomBytes on a real node). */
  random: (n: number) => Uint8Array;
  /** How this side sends writes (default 'pipelined'). */
  mode?: LinkMode;
  /** What this side holds for the peer's writes (default 4 MiB, 64 commands). */
  receiveWindow?: { bytes: number; commands: number };
  /** Largest DATA payload this side accepts (default 256 KiB). */
  maxPayload?: number;
  /** Bound of the send queue: writes admitted and waiting for credit (default 4 MiB, 64). */
  sendQueue?: { bytes: number; commands: number };
  /** Send a HEARTBEAT after this long without sending anything (default 1000 ms). */
  heartbeatMs?: number;
  /** Link down after this long without a frame from the peer (default 5000 ms). */
  timeoutMs?: number;
  handshakeTimeoutMs?: number;
  handler?: PeerHandler;
  /** Protocol versions spoken (default: all this build speaks). */
  versions?: readonly number[];
  /** Called once when the link goes down or is closed. */
  onClose?: (error: Error) => void;
}

export interface PeerLinkStats {
  framesSent: Record<string, number>;
  framesReceived: Record<string, number>;
  bytesSent: number;
  bytesReceived: number;
  /** transport.write() calls. */
  transportWrites: number;
  /** Times transport.write() reported a full send buffer. */
  transportFull: number;
  writesCompleted: number;
  writesFailed: number;
  writesReceived: number;
  /** Last heartbeat round trip (ms), or undefined. */
  rtt: number | undefined;
}

/** What the link's halves use of the link. */
export interface LinkContext {
  readonly clock: Clock;
  readonly unitId: number;
  out(): FrameWriter;
  readonly counters: PeerLinkStats;
  log(): Logger;
  /** The authenticated peer (only once open). */
  peer(): PeerInfo;
  isOpen(): boolean;
  /** A protocol violation: ERROR(FATAL) to the peer, close, fail everything. */
  fatal(code: ErrorCode, text: string): void;
}
