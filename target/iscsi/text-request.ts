/**
 * Text requests in the full feature phase (RFC 7143 §11.10-11.11): SendTargets, and the few keys
 * allowed after login. Long texts continue over several PDUs in both directions, tied together
 * by a Target Transfer Tag of ours.
 */
import type { ServerConfig } from './context.js';
import { sendTargets } from './discovery.js';
import { ParamNegotiator } from './params.js';
import { FLAG_CONTINUE, FLAG_FINAL, NO_TAG, Op, RejectReason, newBhs } from './pdu.js';
import type { Session, StatSnMode } from './session.js';
import { TextAccumulator, TextFormatError, TextPairs, decodeText, encodeText, splitText } from './text.js';

export interface TextHost {
  readonly config: ServerConfig;
  readonly localAddress: string;
  nextTransferTag(): number;
  send(bhs: Buffer, data: Uint8Array | undefined, sn: StatSnMode): void;
  reject(bhs: Buffer, reason: number): void;
}

export class TextRequests {
  private readonly incoming = new TextAccumulator();
  /** The exchange in progress: our answer still to send, and the TTT the next request must carry. */
  private exchange: { itt: number; ttt: number; pieces: Buffer[] } | undefined;

  constructor(private readonly host: TextHost, private readonly session: Session) {}

  handle(bhs: Buffer, data: Buffer): void {
    const itt = bhs.readUInt32BE(16);
    const ttt = bhs.readUInt32BE(20);
    const requestFinal = (bhs[1] & FLAG_FINAL) !== 0;
    const ex = this.exchange;
    if (ttt !== NO_TAG) {
      if (!ex || ex.itt !== itt || ex.ttt !== ttt) return this.host.reject(bhs, RejectReason.INVALID_PDU_FIELD);
      if (ex.pieces.length > 0) return this.sendPiece(requestFinal);
    } else {
      this.incoming.reset(); // a new exchange replaces an unfinished one
    }
    let pairs: TextPairs;
    try {
      const whole = this.incoming.push(data, (bhs[1] & FLAG_CONTINUE) !== 0);
      if (!whole) {
        // More of the initiator's text to come: an empty answer with a TTT asks for it.
        this.exchange = { itt, ttt: this.host.nextTransferTag(), pieces: [] };
        this.respond(itt, 0, this.exchange.ttt, undefined);
        return;
      }
      pairs = decodeText(whole);
    } catch (e) {
      if (!(e instanceof TextFormatError)) throw e;
      this.exchange = undefined;
      return this.host.reject(bhs, RejectReason.PROTOCOL_ERROR);
    }
    const s = this.session;
    const answers: TextPairs = [];
    const negotiator = new ParamNegotiator(this.host.config.limits, s.type, s.params);
    for (const [k, v] of pairs) {
      if (k === 'SendTargets') {
        answers.push(...sendTargets(v, {
          config: this.host.config, sessionType: s.type, initiatorName: s.initiatorName, target: s.target, localAddress: this.host.localAddress,
        }));
      } else {
        const a = negotiator.answer(k, v, 'ffp');
        if (a !== undefined) answers.push([k, a]);
      }
    }
    this.exchange = { itt, ttt: NO_TAG, pieces: splitText(encodeText(answers), s.params.initiatorMaxRecvDataSegmentLength) };
    this.sendPiece(requestFinal);
  }

  private sendPiece(requestFinal: boolean): void {
    const ex = this.exchange!;
    const piece = ex.pieces.shift();
    const more = ex.pieces.length > 0;
    // F=1 only ends an exchange the initiator also ended (§11.11.1); otherwise invite a follow-on.
    if (more || !requestFinal) {
      ex.ttt = this.host.nextTransferTag();
      this.respond(ex.itt, more ? FLAG_CONTINUE : 0, ex.ttt, piece);
    } else {
      this.exchange = undefined;
      this.respond(ex.itt, FLAG_FINAL, NO_TAG, piece);
    }
  }

  private respond(itt: number, flags: number, ttt: number, data: Buffer | undefined): void {
    const r = newBhs(Op.TEXT_RESPONSE, flags);
    r.writeUInt32BE(itt, 16);
    r.writeUInt32BE(ttt, 20);
    this.host.send(r, data && data.length > 0 ? data : undefined, 'advance');
  }
}
