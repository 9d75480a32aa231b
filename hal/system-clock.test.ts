import { expect } from 'chai';
import { systemClock } from './system-clock.js';

describe('systemClock', () => {
  it('is monotonic with sub-millisecond resolution and tracks wall time', () => {
    const a = systemClock.now();
    let b = systemClock.now();
    while (b === a) b = systemClock.now();
    expect(b).to.be.greaterThan(a);
    expect(b - a).to.be.lessThan(1);
    expect(Math.abs(systemClock.wallTime() - Date.now())).to.be.lessThan(50);
  });

  it('fires a timer after its delay and not after cancel', async () => {
    const start = systemClock.now();
    let cancelledFired = false;
    const t = systemClock.setTimer(5, () => { cancelledFired = true; });
    t.cancel();
    const fired = await new Promise<number>((resolve) => systemClock.setTimer(20, () => resolve(systemClock.now())));
    expect(fired - start).to.be.at.least(19);
    expect(cancelledFired).to.equal(false);
  });
});
