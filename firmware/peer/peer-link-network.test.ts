/**
 * The link over the HAL's networks as a node will use them (listen / connect): the shared simulated
 * network, and real TCP on loopback with the system clock.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../../hal/clock.js';
import { SimNetwork, Simulator } from '../../hal/sim/index.js';
import { systemClock } from '../../hal/system-clock.js';
import { tcpNetwork } from '../../hal/tcp.js';
import type { Network } from '../../hal/transport.js';
import { PeerLink, type Durability, type InboundWrite, type LinkMode } from './peer-link.js';
import { KEY, bytesFrom } from './test-fixture.js';

async function exchange(clock: Clock, random: (n: number) => Uint8Array, server: Network, client: Network, host: string, mode: LinkMode, run: <T>(p: Promise<T>) => Promise<T>) {
  const got: Buffer[] = [];
  const handler = {
    onWrite(w: InboundWrite): Durability {
      got.push(Buffer.from(w.data));
      return 'durable';
    },
  };
  const acceptors: PeerLink[] = [];
  const listener = await run(server.listen(host, 0, (t) => {
    const link = new PeerLink({ clock, random, role: 'acceptor', unitId: 2, key: KEY, handler, heartbeatMs: 200 });
    acceptors.push(link);
    return link.attach(t);
  }));
  const initiator = new PeerLink({ clock, random, role: 'initiator', unitId: 1, key: KEY, expectedPeer: 2, mode, heartbeatMs: 200 });
  await run(client.connect(host, listener.port, (t) => initiator.attach(t)));
  await run(initiator.ready);
  const datas = Array.from({ length: 20 }, (_, i) => Buffer.alloc(64 * 1024 + i, i));
  const rs = await run(Promise.all(datas.map((data, i) => initiator.write({ volume: 1, lba: i * 129, blocks: 129, data }))));
  expect(rs.map((r) => r.durability)).to.deep.equal(datas.map(() => 'durable'));
  expect(got.map((g) => g.length)).to.deep.equal(datas.map((d) => d.length));
  got.forEach((g, i) => expect(g.equals(datas[i]!)).to.equal(true));
  await run(initiator.close('done'));
  const e = await run(acceptors[0]!.closed);
  expect(e.message).to.match(/SHUTTING_DOWN: done/);
  await run(listener.close());
}

describe('peer link over the HAL networks', () => {
  for (const mode of ['pipelined', 'fidelity'] as const) {
    it(`simulated network (${mode})`, async () => {
      const sim = new Simulator({ seed: 5 });
      const net = new SimNetwork(sim.clock, { latencyMs: 3, highWaterBytes: 128 * 1024 });
      await exchange(sim.clock, bytesFrom(() => sim.random.u32()), net.node('10.0.0.2'), net.node('10.0.0.1'), '10.0.0.2', mode, (p) => sim.run(p));
    });

    it(`TCP on loopback with the system clock (${mode})`, async () => {
      await exchange(systemClock, (n) => randomBytes(n), tcpNetwork, tcpNetwork, '127.0.0.1', mode, (p) => p);
    });
  }
});
