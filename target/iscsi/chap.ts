/**
 * CHAP (RFC 1994 as profiled by RFC 7143 §12.1.3) with MD5 (CHAP_A=5): one-way, where the target
 * authenticates the initiator, and mutual, where the initiator also challenges the target.
 * node:crypto is computation, not I/O, so it is fine in a sans-IO module.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { TextPairs } from './text.js';

export interface ChapCredentials {
  user: string;
  secret: string;
}

export const CHAP_MD5 = '5';
const CHALLENGE_LENGTH = 16;
/** RFC 7143 §12.1.3: binary values are at most 1024 bytes long in CHAP. */
const MAX_BINARY = 1024;

export function chapResponse(id: number, secret: string | Buffer, challenge: Uint8Array): Buffer {
  return createHash('md5').update(Buffer.of(id & 0xff)).update(secret).update(challenge).digest();
}

/** A binary value: 0x<hex> or 0b<base64> (RFC 7143 §6.1). */
export function decodeBinary(v: string): Buffer | undefined {
  if (/^0[xX][0-9a-fA-F]+$/.test(v)) {
    const hex = v.slice(2);
    return Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  }
  if (/^0[bB][A-Za-z0-9+/]+=*$/.test(v)) return Buffer.from(v.slice(2), 'base64');
  return undefined;
}

export function encodeHex(b: Uint8Array): string {
  return `0x${Buffer.from(b).toString('hex')}`;
}

function parseIdentifier(v: string): number | undefined {
  const n = /^[0-9]{1,3}$/.test(v) ? Number(v) : /^0[xX][0-9a-fA-F]{1,2}$/.test(v) ? parseInt(v.slice(2), 16) : NaN;
  return n >= 0 && n <= 255 ? n : undefined;
}

export type ChapStep =
  | { readonly kind: 'continue'; readonly answers: TextPairs }
  | { readonly kind: 'done'; readonly answers: TextPairs }
  | { readonly kind: 'failed'; readonly reason: string };

/**
 * The target side of one CHAP exchange: CHAP_A -> (CHAP_A, CHAP_I, CHAP_C) -> CHAP_N/CHAP_R
 * [+ CHAP_I/CHAP_C for mutual] -> done [+ CHAP_N/CHAP_R].
 */
export class ChapAuthenticator {
  private state: 'wait-algorithm' | 'wait-response' | 'done' = 'wait-algorithm';
  private id = 0;
  private challenge: Buffer = Buffer.alloc(0);

  constructor(
    private readonly required: ChapCredentials,
    private readonly mutual: ChapCredentials | undefined,
    private readonly random: (n: number) => Buffer = randomBytes,
  ) {}

  get complete(): boolean {
    return this.state === 'done';
  }

  /** Feed the CHAP_* keys of one Login Request. */
  step(keys: Map<string, string>): ChapStep {
    if (this.state === 'wait-algorithm') {
      const a = keys.get('CHAP_A');
      if (a === undefined) return { kind: 'failed', reason: 'expected CHAP_A' };
      if (!a.split(',').includes(CHAP_MD5)) return { kind: 'failed', reason: `no supported CHAP_A in ${a}` };
      const r = this.random(CHALLENGE_LENGTH + 1);
      this.id = r[0];
      this.challenge = r.subarray(1);
      this.state = 'wait-response';
      return {
        kind: 'continue',
        answers: [['CHAP_A', CHAP_MD5], ['CHAP_I', String(this.id)], ['CHAP_C', encodeHex(this.challenge)]],
      };
    }
    if (this.state === 'done') return { kind: 'failed', reason: 'CHAP keys after authentication' };

    const name = keys.get('CHAP_N');
    const rv = keys.get('CHAP_R');
    if (name === undefined || rv === undefined) return { kind: 'failed', reason: 'expected CHAP_N and CHAP_R' };
    const response = decodeBinary(rv);
    if (!response || response.length !== 16) return { kind: 'failed', reason: 'malformed CHAP_R' };
    if (name !== this.required.user) return { kind: 'failed', reason: `unknown CHAP user ${name}` };
    const expected = chapResponse(this.id, this.required.secret, this.challenge);
    if (!timingSafeEqual(expected, response)) return { kind: 'failed', reason: `wrong CHAP response for ${name}` };

    const answers: TextPairs = [];
    const mi = keys.get('CHAP_I');
    const mc = keys.get('CHAP_C');
    if (mi !== undefined || mc !== undefined) {
      if (!this.mutual) return { kind: 'failed', reason: 'mutual CHAP requested but the target has no credentials' };
      const id = mi === undefined ? undefined : parseIdentifier(mi);
      const challenge = mc === undefined ? undefined : decodeBinary(mc);
      if (id === undefined || !challenge || challenge.length === 0 || challenge.length > MAX_BINARY) {
        return { kind: 'failed', reason: 'malformed mutual CHAP_I/CHAP_C' };
      }
      // A reflected challenge would let the initiator make us answer our own question.
      if (challenge.equals(this.challenge)) return { kind: 'failed', reason: 'initiator reflected our CHAP challenge' };
      answers.push(['CHAP_N', this.mutual.user], ['CHAP_R', encodeHex(chapResponse(id, this.mutual.secret, challenge))]);
    }
    this.state = 'done';
    return { kind: 'done', answers };
  }
}
