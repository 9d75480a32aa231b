/** What the WAN stream tests share: a recording handler, and a connected pair on the simulator. */
import type { Simulator } from '../sim/simulator.js';
import type { Network, StreamHandler, StreamTransport } from '../transport.js';

/** Records what a stream delivers, and when (simulated time). */
export class Rec implements StreamHandler {
  data: Buffer[] = [];
  at: number[] = [];
  drains = 0;
  closes: (Error | undefined)[] = [];
  closedAt = -1;
  onChunk: ((c: Buffer) => void) | undefined;
  constructor(private readonly sim: Simulator, public t?: StreamTransport) {}
  get bytes(): Buffer {
    return Buffer.concat(this.data);
  }
  onData(chunk: Buffer): void {
    this.data.push(chunk);
    this.at.push(this.sim.now());
    this.onChunk?.(chunk);
  }
  onDrain(): void {
    this.drains++;
  }
  onClose(error?: Error): void {
    this.closes.push(error);
    this.closedAt = this.sim.now();
  }
}

/** `a` (node A) connects to `b` (node B) listening on `port`; both ends record. */
export async function connectPair(sim: Simulator, a: Network, b: Network, port = 3260): Promise<{ server: Rec; client: Rec; t: StreamTransport }> {
  let server!: Rec;
  await b.listen('B', port, (t) => (server = new Rec(sim, t)));
  const client = new Rec(sim);
  const t = await sim.run(a.connect('B', port, (tt) => { client.t = tt; return client; }));
  return { server, client, t };
}
