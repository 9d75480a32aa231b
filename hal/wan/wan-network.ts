/**
 * A Network whose streams go over emulated WAN links: it wraps another Network (tcpNetwork, or a
 * SimNetwork node) and puts a WanStream on every connection its LinkSelector maps to a link, in
 * both directions of use (connections it makes and connections it accepts). Unmapped connections
 * pass through untouched.
 *
 * connect() resolves one emulated round trip (twice this side's one-way delay: each side only knows
 * its own direction) after the real connection is up, as a TCP handshake over the link would; during
 * a hold-mode outage it waits for the end of it, during a reset-mode outage it fails with ETIMEDOUT.
 */
import type { Network, StreamHandler, StreamListener, StreamTransport } from '../transport.js';
import type { WanLinks } from './links.js';
import { WanStream, errno, type WanStreamOptions } from './wan-stream.js';

export class WanNetwork implements Network {
  constructor(
    private readonly inner: Network,
    readonly links: WanLinks,
    private readonly opts: Omit<WanStreamOptions, 'linkName'> = {},
  ) {}

  listen(host: string, port: number, accept: (transport: StreamTransport) => StreamHandler): Promise<StreamListener> {
    return this.inner.listen(host, port, (t) => {
      const link = this.links.choose({
        direction: 'inbound', kind: 'stream',
        localAddress: t.localAddress, localPort: t.localPort, remoteAddress: t.remoteAddress, remotePort: t.remotePort,
      });
      if (link === undefined) return accept(t);
      const w = new WanStream(t, link.model, this.links.clock, { ...this.opts, linkName: link.name });
      try {
        w.attach(accept(w));
      } catch (e) {
        w.destroy(); // its timers must not outlive the connection the real transport drops now
        throw e;
      }
      return w.innerHandler;
    });
  }

  async connect(host: string, port: number, makeHandler: (transport: StreamTransport) => StreamHandler): Promise<StreamTransport> {
    const box: { wan?: WanStream } = {};
    const t = await this.inner.connect(host, port, (t) => {
      const link = this.links.choose({
        direction: 'outbound', kind: 'stream',
        localAddress: t.localAddress, localPort: t.localPort, remoteAddress: t.remoteAddress, remotePort: t.remotePort,
      });
      if (link === undefined) return makeHandler(t);
      box.wan = new WanStream(t, link.model, this.links.clock, { ...this.opts, linkName: link.name });
      return box.wan.innerHandler;
    });
    const wan = box.wan;
    if (wan === undefined) return t;
    const clock = this.links.clock;
    const down = wan.model.outageAt();
    if (down?.mode === 'reset') {
      wan.destroy();
      throw errno('ETIMEDOUT', `connect ETIMEDOUT ${host}:${port} (WAN link down)`);
    }
    const wait = wan.model.rttEstimateMs() + (down === undefined ? 0 : down.end - clock.now());
    if (wait > 0) await new Promise<void>((resolve) => clock.setTimer(wait, resolve));
    let handler: StreamHandler;
    try {
      handler = makeHandler(wan);
    } catch {
      // As hal/tcp.ts: a handler that cannot be made drops the connection.
      wan.destroy();
      return wan;
    }
    try {
      wan.attach(handler);
    } catch {
      wan.destroy();
    }
    return wan;
  }
}
