/**
 * libiscsi's conformance suite (iscsi-test-cu) against a real kura node for the block command
 * families beyond READ/WRITE: thin provisioning, COMPARE AND WRITE and the other writes, PRE-FETCH,
 * START STOP UNIT, READ DEFECT DATA, SANITIZE, EXTENDED COPY, write residuals, a read-only LU,
 * and multipath access. Every test must pass; the only skips allowed are the ones whose reason is
 * a property kura does not have (stated next to each).
 */
import { expect } from 'chai';
import { join } from 'node:path';
import { runTestCu, type Score } from '../bench/lib/iscsi-test-cu.js';
import { freePort, startKura, tempDir, type KuraProcess } from './support/kura-process.js';

const FAMILIES = [
  'CompareAndWrite', 'OrWrite', 'WriteSame10', 'WriteSame16', 'Unmap', 'GetLBAStatus', 'WriteAtomic16',
  'Prefetch10', 'Prefetch16', 'ReadDefectData10', 'ReadDefectData12', 'WriteVerify10', 'WriteVerify12', 'WriteVerify16',
  'ExtendedCopy', 'ReceiveCopyResults', 'StartStopUnit', 'iSCSIResiduals', 'Inquiry.BlockLimits',
  // Sanitize.Reset needs an overwrite that lasts longer than its 3 s sleep: a multi-GiB volume.
  ...['BlockErase', 'BlockEraseReserved', 'CryptoErase', 'CryptoEraseReserved', 'ExitFailureMode', 'InvalidServiceAction',
    'Overwrite', 'OverwriteReserved', 'Readonly', 'Reservations'].map((t) => `Sanitize.${t}`),
  'MultipathIO',
];

/** Skips that describe kura: one logical block per physical block, not removable, no encryption. */
const ALLOWED_SKIPS = new Set([
  'CompareAndWrite.InvalidDataOutSize', 'WriteSame10.UnmapUnaligned', 'WriteSame10.InvalidDataOutSize',
  'WriteSame16.UnmapUnaligned', 'WriteSame16.InvalidDataOutSize', 'StartStopUnit.Simple',
  // These three do their checks, but also log that CRYPTO ERASE is not offered, which counts as a skip.
  'Sanitize.CryptoErase', 'Sanitize.Readonly', 'Sanitize.Reservations',
]);

function summary(s: Score): string {
  return s.tests.filter((t) => t.outcome !== 'passed').map((t) => `${t.outcome} ${t.suite}.${t.test}: ${t.detail}`).join('\n');
}

describe('iscsi-test-cu block command families against a kura node', function () {
  this.timeout(300000);
  let kura: KuraProcess;
  let thin: string;
  let readOnly: string;

  before(async () => {
    const dir = tempDir('kura-sbc-');
    const port = await freePort();
    kura = await startKura({
      dir,
      config: {
        node: { name: 'sbc-test', dataDir: join(dir, 'data') },
        portals: [{ host: '127.0.0.1', port }],
        volumes: [
          { name: 'thin', size: '256MiB', thin: true, backing: { type: 'file', path: 'thin.img' } },
          { name: 'ro', size: '64MiB', thin: true, readOnly: true, backing: { type: 'file', path: 'ro.img' } },
        ],
        targets: [
          { name: 'iqn.2026-11.dev.kura:thin', luns: [{ lun: 0, volume: 'thin' }] },
          { name: 'iqn.2026-11.dev.kura:ro', luns: [{ lun: 0, volume: 'ro' }] },
        ],
      },
    });
    thin = kura.urls.find((u) => u.includes(':thin/'))!;
    readOnly = kura.urls.find((u) => u.includes(':ro/'))!;
  });

  after(async () => {
    expect(await kura.stop()).to.equal(0);
  });

  it('passes every test of the families, skipping only for properties kura lacks', async () => {
    const { score } = await runTestCu([thin, thin], { tests: FAMILIES.map((f) => `ALL.${f}`).join(','), extraArgs: ['-S'] });
    expect(score.failed, summary(score)).to.equal(0);
    const skipped = score.tests.filter((t) => t.outcome === 'skipped').map((t) => `${t.suite}.${t.test}`);
    expect(skipped.filter((t) => !ALLOWED_SKIPS.has(t)), summary(score)).to.deep.equal([]);
    for (const family of FAMILIES) {
      const suite = family.split('.')[0];
      expect(score.tests.some((t) => t.suite === suite && t.outcome === 'passed'), `${family} ran nothing`).to.equal(true);
    }
    expect(score.passed).to.be.at.least(90);
  });

  it('a read-only thin LU refuses every kind of write with DATA PROTECT (ReadOnly.ReadOnlySBC)', async () => {
    const { score } = await runTestCu([readOnly], { tests: 'ALL.ReadOnly' });
    expect(score.tests.map((t) => [t.test, t.outcome]), summary(score)).to.deep.equal([['ReadOnlySBC', 'passed']]);
  });
});
