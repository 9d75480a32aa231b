/** Free loopback TCP ports for the benches' nodes. */
import net from 'node:net';

/**
 * `count` distinct ports the kernel handed out as free on `host` (each bound to port 0 and held
 * until all are known, so the list has no duplicates; they are released before returning).
 */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      servers.push(await new Promise<net.Server>((resolve, reject) => {
        const s = net.createServer();
        s.once('error', reject);
        s.listen(0, host, () => resolve(s));
      }));
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
