/**
 * A Network whose streams go over emulated WAN links: it wraps another Network (tcpNetwork, or a
 * SimNetwork node) and puts a WanStream on every connection its LinkSelector maps to a link, in
 * both directions of use (connections it makes and connections it accepts). Unmapped connections
 * pass through untouched.
 *
 * connect() resolves one emulated round trip (twice this side's one-way delay: each side only knows
 * its own direction) after the real connection is up, as a TCP handshake over the link would; during
 * a hold-mode outage it waits for the end of it, during a reset-mode outage it fails with ETIMEDOUT.
 * During a runtime partition it waits for the heal, and fails with ETIMEDOUT when that takes longer
 * than Linux would keep retrying its SYN.
 */
import type { Network, StreamHandler, StreamListener, StreamTransport } from '../transport.js';
import type { WanLinks } from './links.js';
import type { LinkModel } from './link-model.js';
import { WanStream, errno, type WanStreamOptions } from './wan-stream.js';
import type { Clock } from '../clock.js';

/** Linux's default tcp_syn_retries (6): 1 + 2 + 4 + 8 + 16 + 32 + 64 s until connect() gives up. */
export const SYN_TIMEOUT_MS = 127_000;

/** Resolves true at the heal, false when `ms` passed first. */
function healed(model: LinkModel, clock: Clock, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = clock.setTimer(ms, () => {
      off();
      resolve(false);
    });
    const off = model.onPartitionChange((on) => {
      if (on) return;
      off();
      timer.cancel();
      resolve(true);
    });
  });
}

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
    if (wan.model.partitioned && !(await healed(wan.model, clock, SYN_TIMEOUT_MS))) {
      wan.destroy();
      throw errno('ETIMEDOUT', `connect ETIMEDOUT ${host}:${port} (WAN link partitioned)`);
    }
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
