/**
 * A byte stream (a TCP connection on the real HAL, an in-memory pipe in the simulator), as the
 * sans-IO protocol state machines see it. The state machine is told about arrivals through
 * StreamHandler and writes through StreamTransport; it never owns a socket.
 */
export interface StreamTransport {
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /**
   * Queue chunks for sending, in order, as one batch (one syscall where possible). The chunks must
   * not be modified until `done` runs. Returns false when the send buffer is above its high-water
   * mark: the caller should stop producing until StreamHandler.onDrain.
   */
  write(chunks: readonly Uint8Array[], done?: (err?: Error) => void): boolean;
  /**
   * Optional: hand what write() queued to the OS now rather than when the transport would (the real
   * TCP transport gathers a loop turn's writes into one syscall). For a caller whose write is a
   * batch already and whose timing matters (the WAN emulation's timed deliveries).
   */
  flushNow?(): void;
  /** Stop delivering onData until resumeReading() (receive-side backpressure). */
  pauseReading(): void;
  resumeReading(): void;
  /** Graceful close after queued writes. */
  end(): void;
  /** Immediate close. */
  destroy(): void;
}

export interface StreamHandler {
  /** Bytes arrived. The chunk is owned by the handler from now on. */
  onData(chunk: Buffer): void;
  /** The send buffer drained below its low-water mark. */
  onDrain(): void;
  /** The stream is closed (by either side, or by an error). Called once. */
  onClose(error?: Error): void;
}

export interface StreamListener {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface Network {
  listen(host: string, port: number, accept: (transport: StreamTransport) => StreamHandler): Promise<StreamListener>;
  connect(host: string, port: number, handler: (transport: StreamTransport) => StreamHandler): Promise<StreamTransport>;
}
