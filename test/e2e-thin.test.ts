/**
 * Thin provisioning end to end: QEMU's iSCSI driver (libiscsi inside qemu-io / qemu-img) discards
 * and writes zeroes with UNMAP on a thin file-backed kura volume, and the backing file really
 * loses the blocks (its allocated block count shrinks); qemu-img map sees the holes through
 * GET LBA STATUS. A fully provisioned volume is offered as such.
 */
import { expect } from 'chai';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, run, startKura, tempDir, type KuraProcess } from './support/kura-process.js';
import { qemuIo } from './support/qemu-io.js';

const MiB = 1 << 20;


interface MapExtent {
  start: number;
  length: number;
  data: boolean;
  zero: boolean;
}

async function qemuImgMap(url: string): Promise<MapExtent[]> {
  const r = await run('qemu-img', ['map', '-f', 'raw', '--output=json', url], { timeoutMs: 60000 });
  expect(r.code, r.stderr).to.equal(0);
  return (JSON.parse(r.stdout) as MapExtent[]).map(({ start, length, data, zero }) => ({ start, length, data, zero }));
}

describe('thin provisioning through QEMU\'s iSCSI driver', function () {
  this.timeout(120000);
  let dir: string;
  let kura: KuraProcess;
  let url: string;
  let fullUrl: string;
  let file: string;
  /** Bytes the backing file holds on disk. */
  const allocated = (): number => statSync(file).blocks * 512;

  before(async () => {
    dir = tempDir('kura-thin-');
    file = join(dir, 'data', 'thin.img');
    const port = await freePort();
    kura = await startKura({
      dir,
      config: {
        node: { name: 'thin-test', dataDir: join(dir, 'data') },
        portals: [{ host: '127.0.0.1', port }],
        volumes: [
          { name: 'thin', size: '64MiB', thin: true, backing: { type: 'file', path: 'thin.img' } },
          { name: 'full', size: '16MiB', backing: { type: 'file', path: 'full.img' } },
        ],
        targets: [
          { name: 'iqn.2026-11.dev.kura:thin', luns: [{ lun: 0, volume: 'thin' }] },
          { name: 'iqn.2026-11.dev.kura:full', luns: [{ lun: 0, volume: 'full' }] },
        ],
      },
    });
    url = kura.urls.find((u) => u.includes(':thin/'))!;
    fullUrl = kura.urls.find((u) => u.includes(':full/'))!;
  });

  after(async () => {
    expect(await kura.stop()).to.equal(0);
  });

  it('discard punches holes in the backing file, and the blocks read as zeroes', async () => {
    await qemuIo(url, ['write -P 1 0 8M']);
    const written = allocated();
    expect(written).to.be.at.least(8 * MiB);
    await qemuIo(url, ['discard 0 8M', 'read -P 0 0 8M']);
    expect(written - allocated()).to.equal(8 * MiB);
  });

  it('write zeroes with unmap (WRITE SAME with UNMAP) frees the blocks; without unmap it writes them', async () => {
    await qemuIo(url, ['write -P 2 16M 8M']);
    const written = allocated();
    await qemuIo(url, ['write -z -u 16M 8M', 'read -P 0 16M 8M']);
    expect(written - allocated()).to.equal(8 * MiB);
    await qemuIo(url, ['write -z 16M 8M', 'read -P 0 16M 8M']);
    expect(allocated()).to.equal(written);
    await qemuIo(url, ['discard 16M 8M']);
  });

  it('qemu-img map sees data and holes (GET LBA STATUS)', async () => {
    await qemuIo(url, ['discard 0 64M', 'write -P 3 1M 2M']);
    expect(await qemuImgMap(url)).to.deep.equal([
      { start: 0, length: MiB, data: false, zero: true },
      { start: MiB, length: 2 * MiB, data: true, zero: false },
      { start: 3 * MiB, length: 61 * MiB, data: false, zero: true },
    ]);
  });

  it('a fully provisioned volume is reported as all data, and QEMU does not discard on it', async () => {
    expect(await qemuImgMap(fullUrl)).to.deep.equal([{ start: 0, length: 16 * MiB, data: true, zero: false }]);
    const r = await run('qemu-io', ['-f', 'raw', '-t', 'none', '-c', 'discard 0 1M', fullUrl], { timeoutMs: 60000 });
    // QEMU's driver does not even try (no LBPME/LBPU): discard is a no-op for it, not an error.
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(await qemuImgMap(fullUrl)).to.have.length(1);
  });
});
