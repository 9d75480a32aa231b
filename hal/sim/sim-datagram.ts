/**
 * In-memory datagrams on the simulator's clock: a DatagramNetwork per node address
 * (`simDatagrams.node('10.0.0.1')`), sockets found by address and port (or 0.0.0.0 and port), each
 * datagram copied at send and delivered by a clock timer after `latencyMs` (default 0). Nothing is
 * lost here: loss, reordering and the rest are hal/wan/wan-datagram.ts's job, on top.
 */
import type { Clock } from '../clock.js';
import type { DatagramHandler, DatagramNetwork, DatagramSocket } from '../datagram.js';
import { errno } from './sim-network.js';

export interface SimDatagramOptions {
  latencyMs?: number;
}

const EPHEMERAL_FIRST = 49152;

class Core {
  readonly sockets = new Map<string, SimDatagramSocket>();
  private next = new Map<string, number>();

  constructor(readonly clock: Clock, readonly latencyMs: number) {}

  ephemeral(address: string): number {
    let p = this.next.get(address) ?? EPHEMERAL_FIRST;
    while (this.sockets.has(`${address}:${p}`)) p++;
    this.next.set(address, p + 1);
    return p;
  }

  lookup(host: string, port: number): SimDatagramSocket | undefined {
    return this.sockets.get(`${host}:${port}`) ?? this.sockets.get(`0.0.0.0:${port}`);
  }
}

class SimDatagramSocket implements DatagramSocket {
  closed = false;

  constructor(
    private readonly core: Core,
    private readonly key: string,
    /** The address peers see as the source. */
    private readonly nodeAddress: string,
    readonly address: string,
    readonly port: number,
    readonly handler: DatagramHandler,
  ) {}

  send(data: Uint8Array, host: string, port: number): void {
    if (this.closed) {
      this.handler.onError?.(new Error('datagram socket closed'));
      return;
    }
    const copy = Buffer.from(data);
    const from = { address: this.address === '0.0.0.0' ? this.nodeAddress : this.address, port: this.port };
    this.core.clock.setTimer(this.core.latencyMs, () => {
      const to = this.core.lookup(host, port);
      if (to === undefined || to.closed) return;
      try {
        to.handler.onMessage(copy, from);
      } catch (e) {
        to.handler.onError?.(e as Error);
      }
    });
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      if (this.core.sockets.get(this.key) === this) this.core.sockets.delete(this.key);
    }
    return Promise.resolve();
  }
}

class SimDatagramNode implements DatagramNetwork {
  constructor(private readonly core: Core, readonly address: string) {}

  bind(host: string, port: number, handler: DatagramHandler): Promise<DatagramSocket> {
    const p = port === 0 ? this.core.ephemeral(host) : port;
    const key = `${host}:${p}`;
    if (this.core.sockets.has(key)) return Promise.reject(errno('EADDRINUSE', `bind EADDRINUSE ${key}`));
    const s = new SimDatagramSocket(this.core, key, this.address, host, p, handler);
    this.core.sockets.set(key, s);
    return Promise.resolve(s);
  }
}

export class SimDatagramNetwork {
  private readonly core: Core;

  constructor(readonly clock: Clock, opts: SimDatagramOptions = {}) {
    this.core = new Core(clock, opts.latencyMs ?? 0);
  }

  node(address: string): DatagramNetwork {
    return new SimDatagramNode(this.core, address);
  }
}
