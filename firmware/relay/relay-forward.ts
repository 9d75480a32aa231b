/**
 * Sending one write on from the relay to its destination (seed 000-E1 S127-S129, E2): in portions
 * of at most `portionBytes`, each a WRITE_COMMAND with the source's own command identifier and
 * `totalLength`/`portionOffset`, which the destination reassembles. A write that fits one portion
 * goes as a plain whole write. Every portion asks for `ack: 'durable'`: the relay discards its copy
 * only on the destination's completion of reception ([0074], behaviour 2).
 *
 * Store-and-forward hands in the whole record. Cut-through hands in the inbound buffer while data
 * still arrives, with `before(end)` waiting for the write position to pass `end`, so no byte the
 * source has not delivered yet is ever read ([0081]).
 */
import type { CommandId } from '../processing-sequencer.js';
import type { PeerLink } from '../peer/peer-link.js';

export interface ForwardMeta {
  readonly id: CommandId;
  readonly volume: number;
  readonly lba: number;
  readonly blocks: number;
  readonly fua: boolean;
}

/** The destination has no open link now: the write stays with the relay. */
export class DestinationDownError extends Error {
  constructor(readonly unitId: number) {
    super(`destination unit ${unitId} is down`);
    this.name = 'DestinationDownError';
  }
}

export interface SendOptions {
  /** Resolves once bytes [0, end) of `data` are valid (cut-through); rejects to stop. */
  before?: (end: number) => Promise<void>;
  /** A portion of `bytes` went out (the relay's load meter). */
  sent?: (bytes: number) => void;
}

/** Send `data` in portions; resolves when the destination confirmed every one. */
export async function sendInPortions(link: PeerLink, meta: ForwardMeta, data: Buffer, portionBytes: number, o: SendOptions = {}): Promise<void> {
  const total = data.length;
  // A portion larger than the destination's receive window could never be admitted.
  const step = Math.max(1, Math.min(portionBytes, link.peerInfo?.windowBytes ?? portionBytes));
  const confirmed: Promise<unknown>[] = [];
  let failure: { error: unknown } | null = null;
  for (let off = 0; off < total; off += step) {
    const end = Math.min(total, off + step);
    try {
      if (o.before) await o.before(end);
      const whole = off === 0 && end === total;
      const ticket = await link.send({
        id: meta.id, volume: meta.volume, lba: meta.lba, blocks: meta.blocks, fua: meta.fua, ack: 'durable',
        data: data.subarray(off, end),
        ...(whole ? {} : { totalLength: total, portionOffset: off }),
      });
      o.sent?.(end - off);
      confirmed.push(ticket.done);
    } catch (error) {
      failure = { error };
      break;
    }
  }
  // The buffer must stay untouched until every portion already sent is answered, even on failure.
  const results = await Promise.allSettled(confirmed);
  if (failure !== null) throw failure.error;
  const bad = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
}
