import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { RecordFile } from '../hal/record-file.js';
import { forgetPromotion } from './topology-node.js';

describe('cli/topology-node: a promoted copy made the primary (failback)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(os.tmpdir(), 'kura-forget-'));
    mkdirSync(join(dir, 'state'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const saved = async (): Promise<unknown> => {
    const r = await RecordFile.open(join(dir, 'state', 'applied-vol0.rec'));
    try {
      return r.load();
    } finally {
      await r.close();
    }
  };

  it('forgets the promotion and keeps the watermark, so that the node can be the secondary again', async () => {
    const r = await RecordFile.open(join(dir, 'state', 'applied-vol0.rec'));
    await r.save({ sourceUnit: 3, generation: 2, sequence: 41, promoted: true });
    await r.close();
    await forgetPromotion(dir, 'vol0');
    expect(await saved()).to.deep.equal({ sourceUnit: 3, generation: 2, sequence: 41 });
  });

  it('leaves a node that never was a secondary of the volume as it is', async () => {
    await forgetPromotion(dir, 'vol0');
    expect(existsSync(join(dir, 'state', 'applied-vol0.rec')), 'no record made').to.equal(false);
  });
});
