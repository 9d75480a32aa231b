/**
 * A DatagramNetwork whose sends go over emulated WAN links: it wraps another DatagramNetwork
 * (udpNetwork, or a SimDatagramNetwork node) and, per destination, asks its LinkSelector for the
 * link. The link model drops (loss, full queue, outage), delays (serializer, propagation, jitter:
 * datagrams may overtake each other), reorders, duplicates and corrupts; what survives is sent on
 * the real socket when it is due. Receiving is not touched: the sender shaped it.
 *
 * Corrupted copies arrive with bits flipped, so the receiver's own checksum gets to drop them (the
 * UDP checksum underneath sees a valid datagram: we flip before sending).
 */
import type { Timer } from '../clock.js';
import type { DatagramHandler, DatagramNetwork, DatagramSocket } from '../datagram.js';
import type { LinkModel } from './link-model.js';
import type { WanLinks } from './links.js';

export interface WanDatagramOptions {
  /** The real socket's own one-way latency: datagrams are sent this much early (see WanStreamOptions). */
  transportLatencyMs?: number;
}

export class WanDatagramNetwork implements DatagramNetwork {
  constructor(private readonly inner: DatagramNetwork, readonly links: WanLinks, private readonly opts: WanDatagramOptions = {}) {}

  async bind(host: string, port: number, handler: DatagramHandler): Promise<DatagramSocket> {
    const socket = await this.inner.bind(host, port, handler);
    return new WanDatagramSocket(socket, this.links, handler, Math.max(0, this.opts.transportLatencyMs ?? 0));
  }
}

class WanDatagramSocket implements DatagramSocket {
  private readonly routes = new Map<string, LinkModel | null>();
  private readonly timers = new Set<Timer>();
  private closed = false;

  constructor(
    private readonly inner: DatagramSocket,
    private readonly links: WanLinks,
    private readonly handler: DatagramHandler,
    private readonly lead: number,
  ) {}

  get address(): string {
    return this.inner.address;
  }

  get port(): number {
    return this.inner.port;
  }

  send(data: Uint8Array, host: string, port: number): void {
    if (this.closed) {
      this.handler.onError?.(new Error('datagram socket closed'));
      return;
    }
    const model = this.route(host, port);
    if (model === null) {
      this.inner.send(data, host, port);
      return;
    }
    const { deliveries } = model.sendDatagram(data.length);
    if (deliveries.length === 0) return;
    // The caller may reuse `data` once we return.
    const copy = Buffer.from(data);
    const clock = this.links.clock;
    for (const d of deliveries) {
      let bytes = copy;
      if (d.flipBits.length > 0) {
        bytes = Buffer.from(copy);
        for (const b of d.flipBits) bytes[b >> 3]! ^= 0x80 >> (b & 7);
      }
      const timer: Timer = clock.setTimer(d.at - this.lead - clock.now(), () => {
        this.timers.delete(timer);
        if (!this.closed) this.inner.send(bytes, host, port);
      });
      this.timers.add(timer);
    }
  }

  close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) t.cancel();
    this.timers.clear();
    return this.inner.close();
  }

  private route(host: string, port: number): LinkModel | null {
    const key = `${host}|${port}`;
    let m = this.routes.get(key);
    if (m === undefined) {
      const link = this.links.choose({
        direction: 'outbound', kind: 'datagram',
        localAddress: this.inner.address, localPort: this.inner.port, remoteAddress: host, remotePort: port,
      });
      m = link === undefined ? null : link.model;
      this.routes.set(key, m);
    }
    return m;
  }
}
