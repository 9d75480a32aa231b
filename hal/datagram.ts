/**
 * Datagrams (UDP on the real HAL, an in-memory switch in the simulator), as sans-IO code sees them.
 * Unreliable by nature: a send may be lost, duplicated, reordered or (past the network's own
 * checksum) corrupted, and nothing tells the sender. Errors never throw out of send(): they go to
 * DatagramHandler.onError, if any.
 */

export interface DatagramPeer {
  readonly address: string;
  readonly port: number;
}

export interface DatagramHandler {
  /** A datagram arrived. The buffer is owned by the handler from now on. */
  onMessage(data: Buffer, from: DatagramPeer): void;
  /** A send failed or the socket broke (optional: unreliable anyway). */
  onError?(error: Error): void;
}

export interface DatagramSocket {
  readonly address: string;
  readonly port: number;
  /** Send one datagram. `data` may be reused as soon as send() returns. */
  send(data: Uint8Array, host: string, port: number): void;
  close(): Promise<void>;
}

export interface DatagramNetwork {
  /** Port 0 picks a free one (see DatagramSocket.port). */
  bind(host: string, port: number, handler: DatagramHandler): Promise<DatagramSocket>;
}
