/**
 * QEMU's own iSCSI driver (libiscsi inside qemu-io) writes patterns to kura volumes of every
 * backing kind and reads them back verified; the persistent ones survive a restart of the node.
 */
import { expect } from 'chai';
import { join } from 'node:path';
import { freePort, startKura, tempDir } from './support/kura-process.js';
import { qemuIo } from './support/qemu-io.js';

const patterns: [pattern: number, offset: number, length: number][] = [
  [0xa1, 0, 64 * 1024],
  [0xb2, 1024 * 1024, 1024 * 1024],
  [0xc3, 64 * 1024 * 1024 - 4096, 4096], // last block of the volume
  [0xd4, 5 * 1024 * 1024 + 512, 3 * 512], // odd sizes and offsets (sector granular)
];


const writeAll = patterns.map(([p, o, l]) => `write -P 0x${p.toString(16)} ${o} ${l}`);
const readAll = patterns.map(([p, o, l]) => `read -P 0x${p.toString(16)} ${o} ${l}`);

function config(dir: string, port: number, backing: object) {
  return {
    node: { name: 'qemu-io-test', dataDir: join(dir, 'data') },
    portals: [{ host: '127.0.0.1', port }],
    volumes: [{ name: 'v', size: '64MiB', backing }],
    targets: [{ name: 'iqn.2026-11.dev.kura:qemu-io', luns: [{ lun: 0, volume: 'v' }] }],
  };
}

for (const [kind, backing, persistent] of [
  ['file', { type: 'file', path: 'v.img' }, true],
  ['memory', { type: 'memory' }, false],
  ['qcow2 behind qemu-storage-daemon', { type: 'image', path: 'v.qcow2', format: 'qcow2' }, true],
] as const) {
  describe(`qemu-io through QEMU's iSCSI driver on a ${kind} volume`, function () {
    this.timeout(120000);

    it(`writes patterns, reads them back verified${persistent ? ', and they survive a restart' : ''}`, async () => {
      const dir = tempDir();
      const port = await freePort();
      let kura = await startKura({ dir, config: config(dir, port, backing) });
      try {
        const out = await qemuIo(kura.urls[0]!, [...writeAll, ...readAll]);
        expect(out.match(/^wrote /gm)).to.have.length(patterns.length);
        expect(out.match(/^read /gm)).to.have.length(patterns.length);
        // A block nobody wrote reads as zeroes.
        await qemuIo(kura.urls[0]!, ['read -P 0 32M 64k']);
      } finally {
        expect(await kura.stop()).to.equal(0);
      }
      kura = await startKura({ dir, config: config(dir, port, backing) });
      try {
        if (persistent) await qemuIo(kura.urls[0]!, readAll);
        else await qemuIo(kura.urls[0]!, ['read -P 0 0 64k']);
      } finally {
        expect(await kura.stop()).to.equal(0);
      }
    });
  });
}
