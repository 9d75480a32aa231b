import { expect } from 'chai';
import type { StreamHandler, StreamTransport } from './transport.js';
import { createTcpNetwork, tcpNetwork } from './tcp.js';

class Recorder implements StreamHandler {
  data: Buffer[] = [];
  drains = 0;
  closes: (Error | undefined)[] = [];
  closed: Promise<void>;
  private resolveClosed!: () => void;
  onDataHook: ((chunk: Buffer) => void) | undefined;

  constructor(readonly transport?: StreamTransport) {
    this.closed = new Promise((r) => { this.resolveClosed = r; });
  }

  get bytes(): Buffer {
    return Buffer.concat(this.data);
  }

  onData(chunk: Buffer): void {
    this.data.push(chunk);
    this.onDataHook?.(chunk);
  }

  onDrain(): void {
    this.drains++;
  }

  onClose(error?: Error): void {
    this.closes.push(error);
    this.resolveClosed();
  }
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('hal/tcp', () => {
  it('carries batches both ways, reports addresses and closes once', async () => {
    const servers: Recorder[] = [];
    const listener = await tcpNetwork.listen('127.0.0.1', 0, (t) => {
      const r = new Recorder(t);
      servers.push(r);
      return r;
    });
    expect(listener.port).to.be.above(0);
    const client = new Recorder();
    const t = await tcpNetwork.connect('127.0.0.1', listener.port, () => client);
    expect(t.remotePort).to.equal(listener.port);
    expect(t.localAddress).to.equal('127.0.0.1');
    let done = 0;
    t.write([Buffer.from('ab'), new Uint8Array([0x63]), Buffer.from('de')], (err) => { expect(err).to.equal(undefined); done++; });
    await until(() => servers.length === 1 && servers[0].bytes.length === 5);
    expect(servers[0].bytes.toString()).to.equal('abcde');
    expect(done).to.equal(1);
    servers[0].transport!.write([Buffer.from('pong')]);
    await until(() => client.bytes.toString() === 'pong');
    t.end();
    await servers[0].closed;
    await client.closed;
    expect(servers[0].closes).to.deep.equal([undefined]);
    expect(client.closes).to.have.length(1);
    await listener.close();
  });

  it('binds the source address of outbound connections when asked (127.0.0.0/8 is all loopback on Linux)', async () => {
    const servers: Recorder[] = [];
    const listener = await tcpNetwork.listen('127.0.0.1', 0, (t) => {
      const r = new Recorder(t);
      servers.push(r);
      return r;
    });
    const asked: string[] = [];
    const net = createTcpNetwork({ localAddress: (host, port) => { asked.push(`${host}:${port}`); return '127.0.1.7'; } });
    const client = new Recorder();
    const t = await net.connect('127.0.0.1', listener.port, () => client);
    expect(asked).to.deep.equal([`127.0.0.1:${listener.port}`]);
    expect(t.localAddress).to.equal('127.0.1.7');
    await until(() => servers.length === 1);
    expect(servers[0]!.transport!.remoteAddress).to.equal('127.0.1.7');
    const fixed = await createTcpNetwork({ localAddress: '127.0.1.8' }).connect('127.0.0.1', listener.port, () => new Recorder());
    expect(fixed.localAddress).to.equal('127.0.1.8');
    t.destroy();
    fixed.destroy();
    await listener.close();
  });

  it('signals backpressure and drains; pauses and resumes reading', async () => {
    let server!: Recorder;
    const listener = await tcpNetwork.listen('127.0.0.1', 0, (t) => (server = new Recorder(t)));
    const client = new Recorder();
    const t = await tcpNetwork.connect('127.0.0.1', listener.port, () => client);
    await until(() => server !== undefined);
    server.transport!.pauseReading();
    const big = Buffer.alloc(1 << 20);
    let ok = true;
    for (let i = 0; i < 64 && ok; i++) ok = t.write([big]);
    expect(ok).to.equal(false);
    await new Promise((r) => setTimeout(r, 50));
    expect(server.bytes.length).to.equal(0); // paused
    server.transport!.resumeReading();
    await until(() => client.drains > 0 && server.bytes.length === big.length, 10000);
    t.destroy();
    await server.closed;
    await listener.close();
  });

  it('maps errors to onClose and never throws', async () => {
    let server!: Recorder;
    const listener = await tcpNetwork.listen('127.0.0.1', 0, (t) => {
      server = new Recorder(t);
      server.onDataHook = () => { throw new Error('handler bug'); };
      return server;
    });
    const client = new Recorder();
    const t = await tcpNetwork.connect('127.0.0.1', listener.port, () => client);
    t.write([Buffer.from('x')]);
    await client.closed; // the server side dropped the connection after its handler threw
    await server.closed;
    expect(server.closes[0]?.message).to.equal('handler bug');
    let cb: Error | undefined;
    expect(t.write([Buffer.from('late')], (e) => { cb = e; })).to.equal(false);
    await until(() => cb !== undefined);
    await listener.close();
    let refused: unknown;
    await tcpNetwork.connect('127.0.0.1', listener.port, () => new Recorder()).catch((e: unknown) => { refused = e; });
    expect((refused as NodeJS.ErrnoException).code).to.equal('ECONNREFUSED');
  });
});
