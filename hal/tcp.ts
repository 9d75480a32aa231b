/**
 * The real HAL's Network: TCP through node:net. Each batch of chunks is written between cork()
 * and uncork() so that Node hands them to the kernel as one writev. Socket errors never throw:
 * they end up in StreamHandler.onClose(err).
 */
import net from 'node:net';
import type { Network, StreamHandler, StreamListener, StreamTransport } from './transport.js';

/** Gathered bytes past which a batch goes to the socket at once instead of at the turn's end. */
const MAX_GATHER_BYTES = 256 * 1024;

class TcpTransport implements StreamTransport {
  /**
   * Chunks written and not yet handed to the socket. The first write of an event-loop turn goes to
   * the socket at once: a lone answer (a QD1 write's SCSI response) must not wait for the end of the
   * turn, which on a loaded machine measured 0.1-0.2 ms. Later writes of the same turn gather until
   * setImmediate (after the poll phase has run every ready callback) and go in one writev:
   * completions of different tasks arrive as separate libuv callbacks, so batching per microtask
   * would cost one syscall per response at high queue depths.
   */
  private pending: Uint8Array[] = [];
  private pendingDone: ((err?: Error) => void)[] = [];
  private pendingBytes = 0;
  /** Set once this turn wrote: later writes wait for the end of the turn. */
  private gathering: NodeJS.Immediate | undefined;

  constructor(private readonly socket: net.Socket) {}

  get remoteAddress(): string {
    return this.socket.remoteAddress ?? '';
  }

  get remotePort(): number {
    return this.socket.remotePort ?? 0;
  }

  get localAddress(): string {
    return this.socket.localAddress ?? '';
  }

  get localPort(): number {
    return this.socket.localPort ?? 0;
  }

  write(chunks: readonly Uint8Array[], done?: (err?: Error) => void): boolean {
    const s = this.socket;
    if (s.destroyed || !s.writable) {
      if (done) queueMicrotask(() => done(new Error('socket closed')));
      return false;
    }
    for (let i = 0; i < chunks.length; i++) {
      this.pending.push(chunks[i]!);
      this.pendingBytes += chunks[i]!.length;
    }
    if (done) this.pendingDone.push(done);
    if (this.gathering === undefined) {
      this.gathering = setImmediate(this.endTurn);
      this.flush();
    } else if (this.pendingBytes >= MAX_GATHER_BYTES) {
      // A big batch gains nothing from waiting, and the producer must learn about a full socket
      // now: hand it over, so that the socket's write() says false and owes us a 'drain'.
      this.flush();
    }
    // Only the socket's own state: a 'drain' event is owed exactly when its write() said false.
    return !s.writableNeedDrain;
  }

  flushNow(): void {
    if (this.pending.length > 0 || this.pendingDone.length > 0) this.flush();
  }

  private readonly endTurn = (): void => {
    this.gathering = undefined;
    this.flushNow();
  };

  private flush(): void {
    const chunks = this.pending;
    const dones = this.pendingDone;
    this.pending = [];
    this.pendingDone = [];
    this.pendingBytes = 0;
    const s = this.socket;
    let called = false;
    const finish = (err?: Error | null): void => {
      if (called) return;
      called = true;
      for (const d of dones) d(err ?? undefined);
    };
    // Never from inside the write() that queued them: the callbacks come later, as the socket's do.
    if (s.destroyed || !s.writable) {
      queueMicrotask(() => finish(new Error('socket closed')));
      return;
    }
    if (chunks.length === 0) {
      queueMicrotask(() => finish());
      return;
    }
    s.cork();
    try {
      for (let i = 0; i < chunks.length; i++) s.write(chunks[i]!, i === chunks.length - 1 && dones.length > 0 ? finish : undefined);
    } catch (e) {
      // write() after end, or a destroyed socket racing us: report through the callbacks.
      finish(e as Error);
    } finally {
      s.uncork();
    }
  }

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  end(): void {
    // Queued chunks go out before the FIN.
    this.flushNow();
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function attach(socket: net.Socket, makeHandler: (t: StreamTransport) => StreamHandler): StreamTransport {
  socket.setNoDelay(true);
  const transport = new TcpTransport(socket);
  let handler: StreamHandler;
  try {
    handler = makeHandler(transport);
  } catch {
    socket.destroy();
    return transport;
  }
  let lastError: Error | undefined;
  let closed = false;
  socket.on('data', (chunk: Buffer) => {
    try {
      handler.onData(chunk);
    } catch (e) {
      lastError = e as Error;
      socket.destroy();
    }
  });
  socket.on('drain', () => {
    try {
      handler.onDrain();
    } catch (e) {
      lastError = e as Error;
      socket.destroy();
    }
  });
  // 'error' is always followed by 'close', which reports it.
  socket.on('error', (err) => {
    lastError = err;
  });
  socket.on('close', () => {
    if (closed) return;
    closed = true;
    try {
      handler.onClose(lastError);
    } catch {
      // The stream is gone; nothing is left to tell.
    }
  });
  return transport;
}

export interface TcpNetworkOptions {
  /**
   * Source address of outbound connections (bind before connect), or a choice per destination;
   * undefined: the kernel picks. Lets several emulated nodes on one machine tell each other apart
   * by address (on Linux every 127.0.0.0/8 address is loopback).
   */
  localAddress?: string | ((host: string, port: number) => string | undefined);
}

/** A TCP Network; `tcpNetwork` is the plain one. */
export function createTcpNetwork(options: TcpNetworkOptions = {}): Network {
  const from = options.localAddress;
  return {
    listen(host, port, accept) {
      return new Promise<StreamListener>((resolve, reject) => {
        const server = net.createServer((socket) => attach(socket, accept));
        const failed = (err: Error): void => reject(err);
        server.once('error', failed);
        server.listen(port, host, () => {
          server.off('error', failed);
          // Accept errors (EMFILE...) must not crash the process; the next connection may work.
          server.on('error', () => {});
          const addr = server.address() as net.AddressInfo;
          resolve({
            host: addr.address,
            port: addr.port,
            // Stop listening only: open connections belong to their handlers, which close them.
            close: () => new Promise<void>((res) => {
              server.close();
              res();
            }),
          });
        });
      });
    },

    connect(host, port, makeHandler) {
      return new Promise<StreamTransport>((resolve, reject) => {
        const localAddress = typeof from === 'function' ? from(host, port) : from;
        const socket = localAddress === undefined ? net.connect({ host, port }) : net.connect({ host, port, localAddress });
        const failed = (err: Error): void => reject(err);
        socket.once('error', failed);
        socket.once('connect', () => {
          socket.off('error', failed);
          resolve(attach(socket, makeHandler));
        });
      });
    },
  };
}

export const tcpNetwork: Network = createTcpNetwork();
