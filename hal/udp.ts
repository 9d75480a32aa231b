/**
 * The real HAL's DatagramNetwork: UDP through node:dgram. node:dgram keeps the buffer until the
 * kernel has it (after a possible DNS lookup), while DatagramSocket lets the caller reuse it as
 * soon as send() returns: send copies (a datagram is small). Errors go to the handler's onError.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { DatagramHandler, DatagramNetwork, DatagramSocket } from './datagram.js';

class UdpSocket implements DatagramSocket {
  private closed = false;

  constructor(private readonly socket: dgram.Socket, private readonly handler: DatagramHandler) {}

  get address(): string {
    return this.socket.address().address;
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(data: Uint8Array, host: string, port: number): void {
    if (this.closed) {
      this.report(new Error('datagram socket closed'));
      return;
    }
    try {
      this.socket.send(Buffer.from(data), port, host, (err) => {
        if (err) this.report(err);
      });
    } catch (e) {
      this.report(e as Error);
    }
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  report(err: Error): void {
    try {
      this.handler.onError?.(err);
    } catch {
      // Nothing left to tell.
    }
  }
}

export const udpNetwork: DatagramNetwork = {
  bind(host, port, handler) {
    return new Promise<DatagramSocket>((resolve, reject) => {
      const socket = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4' });
      const wrapper = new UdpSocket(socket, handler);
      const failed = (err: Error): void => reject(err);
      socket.once('error', failed);
      socket.bind(port, host, () => {
        socket.off('error', failed);
        socket.on('error', (err) => wrapper.report(err));
        socket.on('message', (msg, rinfo) => {
          try {
            handler.onMessage(msg, { address: rinfo.address, port: rinfo.port });
          } catch (e) {
            wrapper.report(e as Error);
          }
        });
        resolve(wrapper);
      });
    });
  },
};
