/**
 * In-memory streams between endpoints in one process, on the simulator's clock: a Network per
 * node address (`simNetwork.node('10.0.0.1')`), listeners found by address and port, bytes
 * delivered by clock timers (after `latencyMs`, default 0: the next timer turn). Everything is a
 * function of the clock, so a whole topology (several nodes, WAN links between them through
 * hal/wan/wan-network.ts) replays exactly under the Simulator.
 *
 * TCP-like where protocol code can tell: bytes in order, backpressure (write() says false while
 * the peer holds more than highWaterBytes unread, onDrain when it is down to half), pauseReading
 * holds data in the peer's queue, end() closes both sides after the data (no half-open streams, as
 * with Node's default allowHalfOpen: false), destroy() with unread input resets the peer
 * (ECONNRESET), connecting to nothing fails with ECONNREFUSED. A write's chunks are copied at once
 * and its `done` runs when the peer has read them.
 */
import type { Clock, Timer } from '../clock.js';
import type { Network, StreamHandler, StreamListener, StreamTransport } from '../transport.js';

export interface SimNetworkOptions {
  /** One-way latency of every byte, ms. Default 0. */
  latencyMs?: number;
  /** Unread bytes at the peer beyond which write() says false. Default 1 MiB. */
  highWaterBytes?: number;
}

interface Address {
  address: string;
  port: number;
}

type Segment =
  | { kind: 'data'; at: number; data: Buffer; done: ((err?: Error) => void) | undefined }
  | { kind: 'fin'; at: number };

/** Like Node's system errors, so code that checks `err.code` works on both HALs. */
export function errno(code: string, message: string): NodeJS.ErrnoException {
  const e = new Error(message) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

const EPSILON_MS = 1e-9;
const EPHEMERAL_FIRST = 49152;

class Core {
  readonly listeners = new Map<string, { address: string; port: number; accept: (t: StreamTransport) => StreamHandler }>();
  private readonly nextPort = new Map<string, number>();

  constructor(readonly clock: Clock, readonly latencyMs: number, readonly highWater: number) {}

  lookup(host: string, port: number) {
    return this.listeners.get(`${host}:${port}`) ?? this.listeners.get(`0.0.0.0:${port}`);
  }

  ephemeral(address: string): number {
    let p = this.nextPort.get(address) ?? EPHEMERAL_FIRST;
    while (this.listeners.has(`${address}:${p}`)) p++;
    this.nextPort.set(address, p + 1 > 65535 ? EPHEMERAL_FIRST : p + 1);
    return p;
  }
}

class SimEndpoint implements StreamTransport {
  peer!: SimEndpoint;
  handler: StreamHandler | undefined;
  /** Unread bytes the peer wrote to us. */
  inboxBytes = 0;
  owedDrain = false;
  private readonly inbox: Segment[] = [];
  private paused = false;
  private timer: Timer | undefined;
  /** end() or destroy() ran: no more writes. */
  private writeEnded = false;
  private gotFin = false;
  finDelivered = false;
  private closed = false;

  constructor(private readonly core: Core, private readonly local: Address, private readonly remote: Address) {}

  get remoteAddress(): string { return this.remote.address; }
  get remotePort(): number { return this.remote.port; }
  get localAddress(): string { return this.local.address; }
  get localPort(): number { return this.local.port; }

  write(chunks: readonly Uint8Array[], done?: (err?: Error) => void): boolean {
    if (this.closed || this.writeEnded) {
      if (done) queueMicrotask(() => done(new Error('stream closed')));
      return false;
    }
    this.peer.receive({ kind: 'data', at: this.core.clock.now() + this.core.latencyMs, data: Buffer.concat(chunks), done });
    if (this.peer.inboxBytes <= this.core.highWater) return true;
    this.owedDrain = true;
    return false;
  }

  pauseReading(): void {
    this.paused = true;
  }

  resumeReading(): void {
    if (!this.paused) return;
    this.paused = false;
    this.schedule();
  }

  end(): void {
    if (this.closed || this.writeEnded) return;
    this.writeEnded = true;
    this.peer.receive({ kind: 'fin', at: this.core.clock.now() + this.core.latencyMs });
  }

  destroy(): void {
    this.abort(undefined);
  }

  /** Close now; the peer sees a FIN, or a reset when we leave input unread. */
  private abort(err: Error | undefined): void {
    if (this.closed) return;
    const abortive = this.inboxBytes > 0;
    if (!this.writeEnded) {
      this.writeEnded = true;
      const peer = this.peer;
      const at = this.core.clock.now() + this.core.latencyMs;
      if (abortive) {
        // Unread input: the kernel answers with RST and the peer loses what it had not read yet.
        this.core.clock.setTimer(at - this.core.clock.now(), () => peer.close(errno('ECONNRESET', 'read ECONNRESET')));
      } else {
        peer.receive({ kind: 'fin', at });
      }
    }
    this.close(err);
  }

  receive(seg: Segment): void {
    if (this.closed) {
      if (seg.kind === 'data') {
        seg.done?.(new Error('stream closed'));
      } else {
        // Our side is gone: the FIN is answered (by the kernel) and the peer is done.
        this.peer.finDelivered = true;
        this.peer.maybeClose();
      }
      return;
    }
    this.inbox.push(seg);
    if (seg.kind === 'data') this.inboxBytes += seg.data.length;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.closed) return;
    const head = this.inbox[0];
    if (head === undefined || this.paused) return;
    this.timer = this.core.clock.setTimer(Math.max(0, head.at - this.core.clock.now()), this.deliver);
  }

  private readonly deliver = (): void => {
    this.timer = undefined;
    const now = this.core.clock.now();
    while (!this.closed && !this.paused) {
      const head = this.inbox[0];
      if (head === undefined || head.at > now + EPSILON_MS) break;
      this.inbox.shift();
      if (head.kind === 'data') {
        this.inboxBytes -= head.data.length;
        try {
          this.handler?.onData(head.data);
        } catch (e) {
          head.done?.();
          this.fail(e as Error);
          return;
        }
        head.done?.();
        this.peer.checkDrain();
      } else {
        this.gotFin = true;
        this.peer.finDelivered = true;
        // No half-open streams: answer the FIN with ours (after what we still have to send).
        this.end();
        this.maybeClose();
        this.peer.maybeClose();
      }
    }
    this.schedule();
  };

  checkDrain(): void {
    if (!this.owedDrain || this.closed || this.peer.inboxBytes > this.core.highWater / 2) return;
    this.owedDrain = false;
    try {
      this.handler?.onDrain();
    } catch (e) {
      this.fail(e as Error);
    }
  }

  maybeClose(): void {
    if (this.gotFin && this.finDelivered) this.close(undefined);
  }

  /** A handler threw: drop the connection, reporting that error (as hal/tcp.ts does). */
  private fail(err: Error): void {
    this.abort(err);
  }

  close(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.writeEnded = true;
    this.timer?.cancel();
    this.timer = undefined;
    for (const seg of this.inbox) if (seg.kind === 'data') seg.done?.(new Error('stream closed'));
    this.inbox.length = 0;
    this.inboxBytes = 0;
    // Asynchronous like a socket's 'close' event, so a handler that destroys from inside a callback
    // is not re-entered.
    this.core.clock.setTimer(0, () => {
      try {
        this.handler?.onClose(err);
      } catch {
        // The stream is gone; nothing is left to tell.
      }
    });
  }
}

class SimNode implements Network {
  constructor(private readonly core: Core, readonly address: string) {}

  listen(host: string, port: number, accept: (transport: StreamTransport) => StreamHandler): Promise<StreamListener> {
    const p = port === 0 ? this.core.ephemeral(host) : port;
    const key = `${host}:${p}`;
    if (this.core.listeners.has(key)) return Promise.reject(errno('EADDRINUSE', `listen EADDRINUSE: address already in use ${key}`));
    const entry = { address: host, port: p, accept };
    this.core.listeners.set(key, entry);
    return Promise.resolve({
      host,
      port: p,
      close: () => {
        if (this.core.listeners.get(key) === entry) this.core.listeners.delete(key);
        return Promise.resolve();
      },
    });
  }

  connect(host: string, port: number, makeHandler: (transport: StreamTransport) => StreamHandler): Promise<StreamTransport> {
    const core = this.core;
    return new Promise<StreamTransport>((resolve, reject) => {
      core.clock.setTimer(core.latencyMs, () => {
        const l = core.lookup(host, port);
        if (l === undefined) {
          reject(errno('ECONNREFUSED', `connect ECONNREFUSED ${host}:${port}`));
          return;
        }
        const serverAddr = { address: l.address === '0.0.0.0' ? host : l.address, port: l.port };
        const clientAddr = { address: this.address, port: core.ephemeral(this.address) };
        const client = new SimEndpoint(core, clientAddr, serverAddr);
        const server = new SimEndpoint(core, serverAddr, clientAddr);
        client.peer = server;
        server.peer = client;
        try {
          server.handler = l.accept(server);
        } catch {
          server.destroy();
        }
        try {
          client.handler = makeHandler(client);
        } catch {
          client.destroy();
        }
        resolve(client);
      });
    });
  }
}

export class SimNetwork {
  private readonly core: Core;

  constructor(readonly clock: Clock, opts: SimNetworkOptions = {}) {
    this.core = new Core(clock, opts.latencyMs ?? 0, opts.highWaterBytes ?? 1 << 20);
  }

  /** The Network as seen from the node at `address` (its connections come from there). */
  node(address: string): Network {
    return new SimNode(this.core, address);
  }
}
