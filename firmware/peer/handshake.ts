/**
 * Link authentication and negotiation, sans-IO: frames in, frames and an outcome out.
 *
 *   initiator                                   acceptor
 *   HELLO     versions, params, nonce_i  ->
 *                                        <-   CHALLENGE chosen version, params, nonce_a, proof_a
 *   RESPONSE  proof_i                    ->
 *                                        <-   WELCOME
 *
 * proof_x = HMAC-SHA256(pre-shared key, label_x || transcript), transcript = both unit ids, the
 * versions offered and chosen, both nonces and both sides' parameters. Each side proves the key
 * on the other's fresh nonce, so a recorded CHALLENGE or RESPONSE replayed into a new session does
 * not verify; role labels stop a proof from being reflected back as the other role's; binding the
 * offered versions and parameters stops a downgrade or a tampered window. The acceptor picks the
 * key by the initiator's unit id (one key per peer, or one for all).
 *
 * Authentication only: frames after WELCOME are protected by CRC32C against accidents, not by a
 * MAC against an active attacker on the path (run links over a VPN / TLS tunnel where that matters).
 * Nonces come from the injected `random`, so a simulation replays exactly.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import {
  ErrorCode, Flag, FrameType, NONCE_LENGTH, PROOF_LENGTH, SUPPORTED_VERSIONS, type Frame, type FrameInit,
} from './frame.js';

export type KeyLookup = (peerUnit: number) => Uint8Array | undefined;

/** What one side offers about its receive side and its sending mode. */
export interface LinkParams {
  /** Largest DATA payload this side accepts. */
  maxPayload: number;
  /** Receive window: buffer bytes and commands this side holds for the peer. */
  windowBytes: number;
  windowCommands: number;
  /** This side's writes are pipelined (credit) rather than one handshake per write (fidelity). */
  pipelined: boolean;
}

export interface PeerInfo extends LinkParams {
  unitId: number;
  version: number;
}

export interface HandshakeConfig {
  role: 'initiator' | 'acceptor';
  unitId: number;
  key: Uint8Array | KeyLookup;
  /** Initiator: the unit id the peer must prove to be (optional). */
  expectedPeer?: number;
  random: (n: number) => Uint8Array;
  versions?: readonly number[];
  local: LinkParams;
}

export interface HandshakeFailure {
  code: ErrorCode;
  text: string;
  /** The peer reported the failure (an ERROR frame): do not answer it with another. */
  remote: boolean;
}

export interface HandshakeStep {
  send: FrameInit[];
  done?: PeerInfo;
  fail?: HandshakeFailure;
}

const LABEL_INITIATOR = Buffer.from('kura-peer/1 initiator\0');
const LABEL_ACCEPTOR = Buffer.from('kura-peer/1 acceptor\0');

interface Transcript {
  initiatorUnit: number;
  acceptorUnit: number;
  versionMin: number;
  versionMax: number;
  version: number;
  nonceI: Uint8Array;
  nonceA: Uint8Array;
  paramsI: LinkParams;
  paramsA: LinkParams;
}

function paramsBytes(p: LinkParams): Buffer {
  const b = Buffer.alloc(13);
  b.writeUInt32BE(p.maxPayload, 0);
  b.writeUInt32BE(p.windowBytes, 4);
  b.writeUInt32BE(p.windowCommands, 8);
  b[12] = p.pipelined ? 1 : 0;
  return b;
}

export function authProof(key: Uint8Array, role: 'initiator' | 'acceptor', t: Transcript): Buffer {
  const ids = Buffer.alloc(14);
  ids.writeUInt32BE(t.initiatorUnit, 0);
  ids.writeUInt32BE(t.acceptorUnit, 4);
  ids.writeUInt16BE(t.versionMin, 8);
  ids.writeUInt16BE(t.versionMax, 10);
  ids.writeUInt16BE(t.version, 12);
  return createHmac('sha256', key)
    .update(role === 'initiator' ? LABEL_INITIATOR : LABEL_ACCEPTOR)
    .update(ids)
    .update(t.nonceI)
    .update(t.nonceA)
    .update(paramsBytes(t.paramsI))
    .update(paramsBytes(t.paramsA))
    .digest();
}

function sameProof(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function paramsOf(f: { maxPayload: number; windowBytes: number; windowCommands: number; flags: number }): LinkParams {
  return { maxPayload: f.maxPayload, windowBytes: f.windowBytes, windowCommands: f.windowCommands, pipelined: (f.flags & Flag.PIPELINED) !== 0 };
}

type State = 'start' | 'await-hello' | 'await-challenge' | 'await-response' | 'await-welcome' | 'done' | 'failed';

export class Handshake {
  private state: State;
  private readonly versions: readonly number[];
  private nonceI: Uint8Array = Buffer.alloc(0);
  private t: Transcript | null = null;
  private key: Uint8Array | null = null;
  private peer: PeerInfo | null = null;

  constructor(private readonly cfg: HandshakeConfig) {
    this.versions = cfg.versions ?? SUPPORTED_VERSIONS;
    this.state = cfg.role === 'initiator' ? 'start' : 'await-hello';
  }

  get finished(): boolean {
    return this.state === 'done' || this.state === 'failed';
  }

  /** Initiator: the HELLO to send first. Acceptor: nothing. */
  start(): FrameInit[] {
    if (this.state !== 'start') return [];
    this.nonceI = this.nonce();
    this.state = 'await-challenge';
    const l = this.cfg.local;
    return [{
      type: FrameType.HELLO,
      sourceUnit: this.cfg.unitId,
      flags: l.pipelined ? Flag.PIPELINED : 0,
      versionMin: Math.min(...this.versions),
      versionMax: Math.max(...this.versions),
      maxPayload: l.maxPayload,
      windowBytes: l.windowBytes,
      windowCommands: l.windowCommands,
      payload: Buffer.from(this.nonceI),
    }];
  }

  receive(f: Frame): HandshakeStep {
    if (this.finished) return this.failed(ErrorCode.PROTOCOL, `${f.type} after the handshake ended`);
    if (f.type === FrameType.ERROR) {
      this.state = 'failed';
      return { send: [], fail: { code: f.code as ErrorCode, text: f.payload.toString('utf8'), remote: true } };
    }
    switch (this.state) {
      case 'await-hello':
        if (f.type === FrameType.HELLO) return this.onHello(f);
        break;
      case 'await-challenge':
        if (f.type === FrameType.CHALLENGE) return this.onChallenge(f);
        break;
      case 'await-response':
        if (f.type === FrameType.RESPONSE) return this.onResponse(f);
        break;
      case 'await-welcome':
        if (f.type === FrameType.WELCOME) {
          this.state = 'done';
          return { send: [], done: this.peer! };
        }
        break;
      default:
        break;
    }
    return this.failed(ErrorCode.NOT_AUTHENTICATED, `frame type ${f.type} before authentication (state ${this.state})`);
  }

  private onHello(f: Frame & { type: typeof FrameType.HELLO }): HandshakeStep {
    const common = this.versions.filter((v) => v >= f.versionMin && v <= f.versionMax);
    if (common.length === 0) {
      return this.failed(ErrorCode.UNSUPPORTED_VERSION, `peer speaks versions ${f.versionMin}..${f.versionMax}; this peer speaks ${this.versions.join(', ')}`);
    }
    const key = this.keyFor(f.sourceUnit);
    if (key === undefined) return this.failed(ErrorCode.UNKNOWN_PEER, `no key for unit ${f.sourceUnit}`);
    const nonceA = this.nonce();
    // A peer echoing our own nonce back is probing for a reflection.
    if (sameProof(nonceA, f.payload)) return this.failed(ErrorCode.AUTH_FAILED, 'initiator nonce equals ours');
    const l = this.cfg.local;
    this.key = key;
    this.t = {
      initiatorUnit: f.sourceUnit,
      acceptorUnit: this.cfg.unitId,
      versionMin: f.versionMin,
      versionMax: f.versionMax,
      version: Math.max(...common),
      nonceI: Buffer.from(f.payload),
      nonceA,
      paramsI: paramsOf(f),
      paramsA: l,
    };
    this.peer = { unitId: f.sourceUnit, version: this.t.version, ...paramsOf(f) };
    this.state = 'await-response';
    return {
      send: [{
        type: FrameType.CHALLENGE,
        sourceUnit: this.cfg.unitId,
        flags: l.pipelined ? Flag.PIPELINED : 0,
        version: this.t.version,
        maxPayload: l.maxPayload,
        windowBytes: l.windowBytes,
        windowCommands: l.windowCommands,
        payload: Buffer.concat([nonceA, authProof(key, 'acceptor', this.t)]),
      }],
    };
  }

  private onChallenge(f: Frame & { type: typeof FrameType.CHALLENGE }): HandshakeStep {
    if (!this.versions.includes(f.version)) return this.failed(ErrorCode.UNSUPPORTED_VERSION, `peer chose version ${f.version}, not offered`);
    if (this.cfg.expectedPeer !== undefined && f.sourceUnit !== this.cfg.expectedPeer) {
      return this.failed(ErrorCode.UNKNOWN_PEER, `expected unit ${this.cfg.expectedPeer}, peer claims ${f.sourceUnit}`);
    }
    const key = this.keyFor(f.sourceUnit);
    if (key === undefined) return this.failed(ErrorCode.UNKNOWN_PEER, `no key for unit ${f.sourceUnit}`);
    const nonceA = f.payload.subarray(0, NONCE_LENGTH);
    const proofA = f.payload.subarray(NONCE_LENGTH, NONCE_LENGTH + PROOF_LENGTH);
    const t: Transcript = {
      initiatorUnit: this.cfg.unitId,
      acceptorUnit: f.sourceUnit,
      versionMin: Math.min(...this.versions),
      versionMax: Math.max(...this.versions),
      version: f.version,
      nonceI: this.nonceI,
      nonceA: Buffer.from(nonceA),
      paramsI: this.cfg.local,
      paramsA: paramsOf(f),
    };
    if (!sameProof(authProof(key, 'acceptor', t), proofA)) return this.failed(ErrorCode.AUTH_FAILED, `unit ${f.sourceUnit} failed to prove the key`);
    this.peer = { unitId: f.sourceUnit, version: f.version, ...paramsOf(f) };
    this.state = 'await-welcome';
    return { send: [{ type: FrameType.RESPONSE, sourceUnit: this.cfg.unitId, payload: authProof(key, 'initiator', t) }] };
  }

  private onResponse(f: Frame & { type: typeof FrameType.RESPONSE }): HandshakeStep {
    const t = this.t!;
    if (!sameProof(authProof(this.key!, 'initiator', t), f.payload)) {
      return this.failed(ErrorCode.AUTH_FAILED, `unit ${t.initiatorUnit} failed to prove the key`);
    }
    this.state = 'done';
    return { send: [{ type: FrameType.WELCOME, sourceUnit: this.cfg.unitId }], done: this.peer! };
  }

  private keyFor(unit: number): Uint8Array | undefined {
    const k = this.cfg.key;
    const key = typeof k === 'function' ? k(unit) : k;
    return key !== undefined && key.length > 0 ? key : undefined;
  }

  private nonce(): Uint8Array {
    const n = this.cfg.random(NONCE_LENGTH);
    if (n.length !== NONCE_LENGTH) throw new RangeError(`random(${NONCE_LENGTH}) returned ${n.length} bytes`);
    return Buffer.from(n);
  }

  private failed(code: ErrorCode, text: string): HandshakeStep {
    this.state = 'failed';
    return { send: [], fail: { code, text, remote: false } };
  }
}
