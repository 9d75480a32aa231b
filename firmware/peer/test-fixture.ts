/**
 * Test support for the peer protocol: two PeerLinks over a simulated pipe, a raw scripted peer
 * that speaks frames by hand (to misbehave on purpose), and a logger that keeps its records.
 * HAL interfaces only (the tests bring the simulator's clock and Random).
 */
import type { Clock } from '../../hal/clock.js';
import type { StreamHandler } from '../../hal/transport.js';
import type { Logger } from '../../hal/types.js';
import { FRAME_VERSION, encodeFrame, type Frame, type FrameInit } from './frame.js';
import { FrameDecoder, type FrameError } from './frame-decoder.js';
import { PeerLink, type PeerLinkOptions } from './peer-link.js';
import { pipePair, type PipeEnd, type PipeOptions } from './sim-pipe.js';

export interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string | undefined;
  obj: Record<string, unknown>;
}

export function memoryLogger(records: LogRecord[] = [], bindings: Record<string, unknown> = {}): Logger & { records: LogRecord[] } {
  const at = (level: LogRecord['level']) => (obj: object, msg?: string): void => {
    records.push({ level, msg, obj: { ...bindings, ...obj } });
  };
  return {
    records,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (b: object) => memoryLogger(records, { ...bindings, ...b }),
  };
}

export const KEY = Buffer.from('a pre-shared key of the test topology');

export interface LinkPairOptions {
  clock: Clock;
  random: (n: number) => Uint8Array;
  pipe?: Omit<PipeOptions, 'clock'>;
  /** Options of the initiator (a) and the acceptor (b). */
  a?: Partial<PeerLinkOptions>;
  b?: Partial<PeerLinkOptions>;
}

export interface LinkPair {
  a: PeerLink;
  b: PeerLink;
  pa: PipeEnd;
  pb: PipeEnd;
  logs: LogRecord[];
}

/** Initiator a (unit 1) and acceptor b (unit 2), connected, the handshake under way. */
export function linkPair(o: LinkPairOptions): LinkPair {
  const logs: LogRecord[] = [];
  const { a: pa, b: pb } = pipePair({ clock: o.clock, ...o.pipe });
  const a = new PeerLink({ clock: o.clock, random: o.random, role: 'initiator', unitId: 1, key: KEY, logger: memoryLogger(logs), ...o.a });
  const b = new PeerLink({ clock: o.clock, random: o.random, role: 'acceptor', unitId: 2, key: KEY, logger: memoryLogger(logs), ...o.b });
  // The acceptor is listening before the initiator speaks.
  pb.attach(b.attach(pb));
  pa.attach(a.attach(pa));
  return { a, b, pa, pb, logs };
}

/** A peer that reads and writes frames by hand. */
export class RawPeer implements StreamHandler {
  readonly frames: Frame[] = [];
  readonly errors: FrameError[] = [];
  closedWith: Error | undefined | null = null;
  seq = 0;
  private readonly decoder: FrameDecoder;

  constructor(readonly end: PipeEnd, maxPayload = 1 << 20) {
    this.decoder = new FrameDecoder({ maxPayload });
    end.attach(this);
  }

  send(f: FrameInit, opts: { seq?: number; version?: number; mutate?: (wire: Buffer) => void } = {}): void {
    const wire = Buffer.concat(encodeFrame(f, opts.seq ?? this.seq++, opts.version ?? FRAME_VERSION));
    opts.mutate?.(wire);
    this.end.write([wire]);
  }

  sendRaw(bytes: Buffer): void {
    this.end.write([bytes]);
  }

  onData(chunk: Buffer): void {
    this.decoder.push(chunk);
    for (let ev = this.decoder.next(); ev; ev = this.decoder.next()) {
      if (ev.kind === 'frame') this.frames.push(ev.frame);
      else this.errors.push(ev.error);
    }
  }

  onDrain(): void {}

  onClose(error?: Error): void {
    this.closedWith = error;
  }

  ofType<T extends Frame['type']>(type: T): Array<Frame & { type: T }> {
    return this.frames.filter((f): f is Frame & { type: T } => f.type === type);
  }
}

/** Random bytes from a seeded u32 source. */
export function bytesFrom(u32: () => number): (n: number) => Uint8Array {
  return (n) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i += 4) {
      const v = u32();
      for (let k = 0; k < 4 && i + k < n; k++) b[i + k] = (v >>> (8 * k)) & 0xff;
    }
    return b;
  };
}
