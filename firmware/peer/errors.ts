/** Errors a PeerLink hands to its users. */
import { ErrorCode, errorCodeName } from './frame.js';

/** The link is down (peer closed, transport error, heartbeat timeout, protocol error). */
export class LinkDownError extends Error {
  constructor(message: string, override readonly cause?: unknown) {
    super(message);
    this.name = 'LinkDownError';
  }
}

/** The local side closed the link. */
export class LinkClosedError extends LinkDownError {
  constructor(message = 'the link was closed') {
    super(message);
    this.name = 'LinkClosedError';
  }
}

/** The peer answered with an ERROR frame (for one command, or for the whole link when fatal). */
export class PeerError extends Error {
  constructor(
    readonly code: number,
    readonly text: string,
    readonly fatal: boolean,
  ) {
    super(`peer error ${errorCodeName(code)}${text ? `: ${text}` : ''}`);
    this.name = 'PeerError';
  }
}

/**
 * A write handler's refusal with its own ERROR code (any other error a handler throws is answered
 * WRITE_FAILED): the sender learns why, e.g. that retrying is pointless (VOLUME_PROMOTED).
 */
export class WriteRefusal extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
    this.name = 'WriteRefusal';
  }
}

/** The peer refused a write because the volume was promoted there: sending it again is pointless. */
export function refusedAsPromoted(err: unknown): boolean {
  return err instanceof PeerError && err.code === ErrorCode.VOLUME_PROMOTED;
}

/** A write larger than the peer's receive window can never be admitted: split it (seed [0062], [0099]). */
export class WriteTooLargeError extends RangeError {
  constructor(readonly length: number, readonly window: number) {
    super(`write of ${length} bytes exceeds the peer's receive window of ${window} bytes`);
    this.name = 'WriteTooLargeError';
  }
}
