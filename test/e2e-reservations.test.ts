/**
 * Persistent reservations through a real node: libiscsi's PR families pass against it, and a
 * registration plus reservation made with APTPL=1 is still there, still fencing other I_T
 * nexuses, after the node process stops and starts again. Needs iscsi-test-cu (libiscsi-bin).
 */
import { expect } from 'chai';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { runTestCu } from '../bench/lib/iscsi-test-cu.js';
import { freePort, startKura, tempDir, type KuraProcess } from './support/kura-process.js';
import { TcpInitiator } from './support/tcp-initiator.js';

const TARGET = 'iqn.2026-11.dev.kura:pr';
const KEY = 0x0123456789abcdefn;
const RESERVATION_CONFLICT = 0x18;

function be64(v: bigint): number[] {
  return Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(56 - 8 * i)) & 0xffn));
}

function prOut(sa: number, type: number): number[] {
  return [0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0];
}

function prOutList(key: bigint, sark: bigint, aptpl: boolean): Uint8Array {
  return Uint8Array.from([...be64(key), ...be64(sark), 0, 0, 0, 0, aptpl ? 1 : 0, 0, 0, 0]);
}

const PR_IN_READ_KEYS = [0x5e, 0x00, 0, 0, 0, 0, 0, 0x10, 0x00, 0];
const PR_IN_READ_RESERVATION = [0x5e, 0x01, 0, 0, 0, 0, 0, 0x10, 0x00, 0];
const TUR = [0x00, 0, 0, 0, 0, 0];
const WRITE10 = [0x2a, 0, 0, 0, 0, 8, 0, 0, 1, 0];

/** Log in as initiator port (name, isid) and get past the POWER ON unit attention. */
async function session(port: number, name: string, isid: number[]): Promise<TcpInitiator> {
  const c = await TcpInitiator.connect('127.0.0.1', port, Buffer.from(isid));
  await c.login(name, TARGET);
  await c.command(TUR);
  return c;
}

describe('persistent reservations through a real node (APTPL across a restart)', function () {
  this.timeout(180000);
  let dir: string;
  let ports: number[];
  let kura: KuraProcess | undefined;
  const config = () => ({
    node: { name: 'pr-e2e', dataDir: join(dir, 'data') },
    portals: ports.map((port) => ({ host: '127.0.0.1', port })),
    volumes: [{ name: 'v', size: '64MiB', backing: { type: 'file', path: 'v.img' } }],
    targets: [{ name: TARGET, luns: [{ lun: 0, volume: 'v' }] }],
    nopInInterval: 0,
    log: { level: 'warn' },
  });

  before(async () => {
    dir = tempDir('kura-pr-');
    ports = [await freePort(), await freePort()];
    kura = await startKura({ dir, config: config() });
  });
  after(async () => {
    await kura?.stop();
  });

  it('passes libiscsi\'s persistent reservation and RESERVE(6) families over two portals', async () => {
    const { score, output } = await runTestCu(kura!.urls, {
      tests: 'SCSI.Prin*,SCSI.Prout*,SCSI.Reserve6*',
      extraArgs: ['-i', 'iqn.2026-11.dev.kura:e2e-a', '-I', 'iqn.2026-11.dev.kura:e2e-b'],
      timeoutMs: 150000,
    });
    expect(score.failed, output.slice(-4000)).to.equal(0);
    expect(score.skipped, score.tests.filter((t) => t.outcome === 'skipped').map((t) => `${t.suite}.${t.test}`).join(', ')).to.equal(0);
    expect(score.passed).to.equal(27);
  });

  it('keeps an APTPL registration and reservation across a restart, for the same I_T nexus only', async () => {
    const a = await session(ports[0]!, 'iqn.2026-11.dev.kura:host-a', [0x80, 0, 0, 0, 0, 0xa1]);
    expect((await a.command(prOut(0x00, 0), { dataOut: prOutList(0n, KEY, true) })).status, 'REGISTER APTPL=1').to.equal(0);
    expect((await a.command(prOut(0x01, 0x01), { dataOut: prOutList(KEY, 0n, false) })).status, 'RESERVE WE').to.equal(0);
    // PRgeneration goes on from whatever the libiscsi families left.
    const generation = (await a.command(PR_IN_READ_KEYS, { dataIn: 4096 })).data.subarray(0, 4);
    a.close();
    expect(readdirSync(join(dir, 'data', 'state')).filter((f) => f.startsWith('pr-'))).to.have.length(1);

    expect(await kura!.stop()).to.equal(0);
    kura = await startKura({ dir, config: config() });

    const b = await session(ports[1]!, 'iqn.2026-11.dev.kura:host-b', [0x80, 0, 0, 0, 0, 0xb2]);
    const keys = await b.command(PR_IN_READ_KEYS, { dataIn: 4096 });
    expect([...keys.data], 'READ KEYS: same generation, one key').to.deep.equal([...generation, 0, 0, 0, 8, ...be64(KEY)]);
    const res = await b.command(PR_IN_READ_RESERVATION, { dataIn: 4096 });
    expect([...res.data], 'READ RESERVATION').to.deep.equal([...generation, 0, 0, 0, 16, ...be64(KEY), 0, 0, 0, 0, 0, 0x01, 0, 0]);
    expect((await b.command(WRITE10, { dataOut: new Uint8Array(512) })).status, 'others are still fenced').to.equal(RESERVATION_CONFLICT);

    // The same initiator port through the same portal is the same I_T nexus: still the holder.
    const again = await session(ports[0]!, 'iqn.2026-11.dev.kura:host-a', [0x80, 0, 0, 0, 0, 0xa1]);
    expect((await again.command(WRITE10, { dataOut: new Uint8Array(512) })).status).to.equal(0);
    expect((await again.command(prOut(0x03, 0), { dataOut: prOutList(KEY, 0n, false) })).status, 'CLEAR').to.equal(0);
    again.close();
    b.close();
    expect(existsSync(join(dir, 'data', 'state'))).to.equal(true);
  });
});
