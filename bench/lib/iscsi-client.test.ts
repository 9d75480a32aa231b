/**
 * The bench iSCSI client against a real kura node (`kura node --config FILE`, the compiled CLI):
 * login and negotiation, pipelined writes read back at QD16, writes past FirstBurstLength (R2T),
 * InitialR2T=Yes without immediate data, the CmdSN window, CHECK CONDITION with its sense.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startKura, type RunningKura } from '../kura-target.js';
import { IscsiClient, ScsiError } from './iscsi-client.js';
import { runLoad } from './load.js';
import { freePorts } from './ports.js';
import { repoRoot } from './repo-root.js';

const IQN = 'iqn.2026-11.dev.kura:bench';
const SIZE = 512 * 2 ** 20;
const BS = 512;

/** A block stamped with its LBA and a generation, so misplaced or stale blocks show. */
function pattern(lba: number, blocks: number, gen: number): Buffer {
  const b = Buffer.alloc(blocks * BS);
  for (let i = 0; i < blocks; i++) {
    const off = i * BS;
    b.writeUInt32BE(lba + i, off);
    b.writeUInt32BE(gen, off + 4);
    for (let j = 8; j < BS; j++) b[off + j] = (lba + i + gen + j) & 0xff;
  }
  return b;
}

describe('bench iSCSI client against a kura node', function () {
  this.timeout(60_000);
  let dir: string;
  let kura: RunningKura;
  let port: number;
  const clients: IscsiClient[] = [];
  const connect = async (extra: Partial<Parameters<typeof IscsiClient.connect>[0]> = {}): Promise<IscsiClient> => {
    const c = await IscsiClient.connect({ host: '127.0.0.1', port, targetName: IQN, ...extra });
    clients.push(c);
    return c;
  };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kura-client-test-'));
    [port] = await freePorts(1);
    kura = await startKura({
      root: repoRoot(), dir, backingFile: path.join(dir, 'unused.img'), size: `${SIZE}`, port: port!,
      configure: (c) => {
        c.volumes = [{ name: 'vol0', size: SIZE, blockSize: BS, backing: { type: 'memory' } }];
        c.nopInInterval = 1000;
      },
    });
  });
  after(async () => {
    for (const c of clients) c.close();
    await kura?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('logs in with ImmediateData=Yes, InitialR2T=No and reads the capacity', async () => {
    const c = await connect();
    expect(c.params.immediateData).to.equal(true);
    expect(c.params.initialR2T).to.equal(false);
    expect(c.params.firstBurstLength).to.be.at.least(4096);
    expect(c.params.targetMaxRecvDataSegmentLength).to.be.at.least(8192);
    expect(c.params.tsih).to.not.equal(0);
    const cap = await c.readCapacity16();
    expect(cap.blockSize).to.equal(BS);
    expect(cap.blockCount).to.equal(SIZE / BS);
    expect(cap.result.latencyNs).to.be.greaterThan(0);
    await c.logout();
  });

  it('writes 4 KiB patterns at QD16 and reads every one back', async () => {
    const c = await connect();
    const n = 512;
    const lbas = Array.from({ length: n }, (_, i) => ((i * 7919) % 4096) * 8);
    let next = 0;
    let maxInFlight = 0;
    const pump = async (fn: (lba: number) => Promise<void>): Promise<void> => {
      next = 0;
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < n) {
          const lba = lbas[next++]!;
          const p = fn(lba);
          maxInFlight = Math.max(maxInFlight, c.outstanding);
          await p;
        }
      }));
    };
    await pump(async (lba) => {
      const r = await c.write(lba, BS, pattern(lba, 8, 1));
      expect(r.status).to.equal(0);
      expect(r.latencyNs).to.be.greaterThan(0);
    });
    expect(maxInFlight).to.equal(16);
    await pump(async (lba) => {
      const r = await c.read(lba, BS, 8);
      expect(r.data.equals(pattern(lba, 8, 1)), `LBA ${lba}`).to.equal(true);
    });
    await c.synchronizeCache();
  });

  it('sends writes beyond FirstBurstLength as immediate data, unsolicited Data-Out and R2T bursts (WRITE(16))', async () => {
    const c = await connect();
    const blocks = (3 * 2 ** 20 + 4096) / BS; // > FirstBurstLength, several R2Ts at MaxBurstLength 1 MiB
    const lba = 100_000;
    const data = pattern(lba, blocks, 2);
    const [w] = await Promise.all([c.write(lba, BS, data, { cdb16: true }), c.write(8, BS, pattern(8, 8, 2))]);
    expect(w.status).to.equal(0);
    const r = await c.read(lba, BS, blocks);
    expect(r.data.length).to.equal(data.length);
    expect(r.data.equals(data)).to.equal(true);
  });

  it('works with InitialR2T=Yes and ImmediateData=No (every byte after an R2T)', async () => {
    const c = await connect({ immediateData: false, initialR2T: true });
    expect(c.params.immediateData).to.equal(false);
    expect(c.params.initialR2T).to.equal(true);
    await Promise.all([0, 1, 2, 3].map((i) => c.write(200_000 + i * 256, BS, pattern(200_000 + i * 256, 256, 3))));
    for (const i of [0, 1, 2, 3]) expect((await c.read(200_000 + i * 256, BS, 256)).data.equals(pattern(200_000 + i * 256, 256, 3))).to.equal(true);
  });

  it('queues commands beyond the target\'s CmdSN window and sends them as it opens', async () => {
    const c = await connect();
    const n = 400; // more than kura's default window of 128
    const writes = Array.from({ length: n }, (_, i) => c.write(300_000 + i * 8, BS, pattern(300_000 + i * 8, 8, 4)));
    expect(c.queued).to.be.greaterThan(0);
    const results = await Promise.all(writes);
    expect(c.queued).to.equal(0);
    expect(results.every((r) => r.status === 0)).to.equal(true);
    const back = await Promise.all(Array.from({ length: n }, (_, i) => c.read(300_000 + i * 8, BS, 8)));
    back.forEach((r, i) => expect(r.data.equals(pattern(300_000 + i * 8, 8, 4)), `write ${i}`).to.equal(true));
  });

  it('surfaces CHECK CONDITION with its sense (LBA out of range), and the session carries on', async () => {
    const c = await connect();
    const err = await c.write(SIZE / BS, BS, Buffer.alloc(BS)).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(ScsiError);
    const e = err as ScsiError;
    expect(e.result.status).to.equal(0x02);
    expect(e.sense?.key).to.equal(0x05); // ILLEGAL REQUEST
    expect(e.sense?.asc).to.equal(0x21); // LOGICAL BLOCK ADDRESS OUT OF RANGE
    expect(e.message).to.match(/CHECK CONDITION.*sense key 0x5 ASC\/ASCQ 0x21\/0x00/);
    const raw = await c.command(Buffer.from([0x28, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0]), { dataIn: BS });
    expect(raw.status).to.equal(0x02);
    expect((await c.read(0, BS, 1)).status).to.equal(0);
  });

  it('answers the target\'s NOP-In pings on an idle session', async () => {
    const c = await connect();
    await new Promise((r) => setTimeout(r, 2500));
    expect((await c.read(0, BS, 8)).status).to.equal(0);
  });

  it('drives a closed-loop load with latency percentiles', async () => {
    const c = await connect();
    const r = await runLoad({ client: c, blockSize: BS, requestBytes: 4096, queueDepth: 16, durationMs: 300, pattern: 'random', regionBlocks: SIZE / BS });
    expect(r.ops).to.be.greaterThan(16);
    expect(r.latencyMs.p50).to.be.greaterThan(0);
    expect(r.latencyMs.p99).to.be.at.least(r.latencyMs.p50);
    expect(r.latencyMs.p999).to.be.at.least(r.latencyMs.p99);
    expect(r.histogram).to.be.a('string').with.length.greaterThan(10);
    expect(c.outstanding).to.equal(0);
  });

  it('fails pending commands when the connection drops', async () => {
    const c = await connect();
    const p = c.write(0, BS, Buffer.alloc(4096));
    c.close();
    await p.then(() => {}, (e: Error) => expect(e.message).to.match(/closed/));
    await c.read(0, BS, 1).then(() => expect.fail('read after close'), (e: Error) => expect(e.message).to.match(/closed/));
  });
});
