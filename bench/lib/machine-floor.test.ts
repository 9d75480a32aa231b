import { expect } from 'chai';
import fs from 'node:fs';
import { tempDir } from '../../test/support/temp-dir.js';
import { machineFloorLine, measureMachineFloor } from './machine-floor.js';

describe('bench machine floor', () => {
  it('measures a process round trip and a write + fdatasync after idleness, and leaves no file behind', async function () {
    this.timeout(20_000);
    const dir = tempDir('kura-floor-');
    const f = await measureMachineFloor(dir, 30);
    for (const s of [f.processRttMs, f.syncAfterIdleMs]) {
      expect(s.p50).to.be.above(0);
      expect(s.p50).to.be.at.most(s.p90);
      expect(s.p90).to.be.at.most(s.p99);
      // A loopback round trip or a 4 KiB flush taking a second would be a broken measurement.
      expect(s.p50).to.be.below(1000);
    }
    expect(fs.readdirSync(dir)).to.deep.equal([]);
    expect(machineFloorLine(f)).to.match(/process round trip p50 \d+\.\d{3} .* fdatasync p50 \d+\.\d{3}/);
  });
});
