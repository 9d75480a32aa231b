import { expect } from 'chai';
import { PreciseScheduler, preciseClock } from './precise-timer.js';

function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

describe('precise-timer', function () {
  this.retries(2);
  it('fires in deadline order (ties in creation order), batches what is due, honours cancel', async () => {
    const s = new PreciseScheduler();
    const fired: string[] = [];
    const t0 = performance.now();
    // Tens of ms apart: e15 must come before c30 even when the first turn is late on a loaded
    // machine (at 1 ms apart, a first turn 2 ms late fired c and d in a's batch, 1 run in 8).
    s.at(t0 + 30, () => fired.push('c30'));
    s.at(t0 + 10, () => fired.push('a10'));
    s.at(t0 + 30, () => fired.push('d30'));
    const x = s.at(t0 + 20, () => fired.push('x'));
    s.at(t0 + 10, () => {
      fired.push('b10');
      s.at(t0 + 15, () => fired.push('e15'));
    });
    x.cancel();
    expect(s.pending).to.equal(4);
    await new Promise((r) => s.at(t0 + 60, () => r(undefined)));
    expect(fired).to.deep.equal(['a10', 'b10', 'e15', 'c30', 'd30']);
    expect(s.pending).to.equal(0);
  });

  it('stops spinning once nothing is pending', async () => {
    const s = new PreciseScheduler();
    const t = s.after(0.5, () => {});
    t.cancel();
    await new Promise((r) => setTimeout(r, 5));
    const spins = s.stats.spins;
    await new Promise((r) => setTimeout(r, 20));
    expect(s.stats.spins).to.equal(spins);
  });

  it('falls back to setTimeout when the waker thread dies, without stranding timers', async () => {
    const s = new PreciseScheduler();
    expect(s.mode).to.equal('worker');
    const fired = new Promise<number>((r) => s.after(30, () => r(performance.now())));
    const t0 = performance.now();
    await (s as unknown as { waker: { worker: { terminate(): Promise<number> } } }).waker.worker.terminate();
    expect(await fired).to.be.at.least(t0 + 29);
    expect(s.mode).to.equal('timeout');
    await new Promise<void>((r) => s.after(3, r));
  });

  it('learns how early to wake: spins for the wake-up\'s spread, not a fixed millisecond', async () => {
    const s = new PreciseScheduler();
    // The waker thread takes a while to start (until then the scheduler spins the timeout mode's 2 ms).
    await new Promise<void>((r) => s.after(200, r));
    const fired0 = s.stats.fired;
    const spin0 = s.stats.spinTimeMs;
    let early = 0;
    for (let i = 0; i < 80; i++) {
      const due = performance.now() + 1.5 + (i % 4) * 0.5;
      await new Promise<void>((r) => s.at(due, () => {
        if (performance.now() < due) early++;
        r();
      }));
    }
    expect(early).to.equal(0);
    expect(s.stats.wakes).to.be.above(40);
    expect(s.spinMs).to.be.within(0.02, 0.5);
    // Spinning per timer is bounded by the learnt lead (at most 0.5 ms), where it was 1 ms before.
    expect((s.stats.spinTimeMs - spin0) / (s.stats.fired - fired0), JSON.stringify(s.stats)).to.be.below(0.6);
  });

  it('naps between spin turns: a near deadline costs a fraction of a CPU, and still fires on time', async () => {
    const cpuPerWait = async (napMs: number): Promise<{ cpu: number; late: number[] }> => {
      const s = new PreciseScheduler({ napMs, spinMs: 1 });
      await new Promise<void>((r) => s.after(100, r)); // the waker thread up
      const late: number[] = [];
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < 100; i++) {
        const due = performance.now() + 0.8; // within the spin lead: all of it is spin turns
        late.push(await new Promise<number>((r) => s.at(due, () => r(performance.now() - due))));
      }
      const c = process.cpuUsage(cpu0);
      return { cpu: (c.user + c.system) / 1000 / (performance.now() - t0), late };
    };
    const spin = await cpuPerWait(0);
    const nap = await cpuPerWait(0.1);
    expect(Math.min(...nap.late)).to.be.at.least(0);
    // The lower quartile: on a busy host (CI) preemption delays more than half of any process's wake-ups.
    expect(percentile(nap.late, 0.25), `lateness ms: ${nap.late.map((x) => x.toFixed(3)).join(' ')}`).to.be.below(0.1);
    expect(spin.cpu, 'pure spinning uses the CPU it waits on').to.be.above(0.7);
    expect(nap.cpu, `CPU share while waiting: ${nap.cpu.toFixed(2)} napping, ${spin.cpu.toFixed(2)} spinning`).to.be.below(spin.cpu / 2);
  });

  it('fires within ~0.1 ms of the deadline, where setTimeout is a millisecond off', async () => {
    const late: number[] = [];
    const coarse: number[] = [];
    for (let i = 0; i < 60; i++) {
      const ms = 0.3 + (i % 12) * 0.7; // 0.3 .. 8 ms
      const due = performance.now() + ms;
      late.push(await new Promise<number>((r) => preciseClock.setTimer(ms, () => r(performance.now() - due))));
      if (i < 20) {
        const d2 = performance.now() + ms;
        coarse.push(await new Promise<number>((r) => setTimeout(() => r(performance.now() - d2), ms)));
      }
    }
    expect(Math.min(...late)).to.be.at.least(0);
    // The lower quartile: the tail on a shared 2-core machine is other tenants' (preemption), not the
    // timer's. Quiet, the median is ~0.015 ms; with the suite's other processes on the 2 cores it has been 0.13.
    expect(percentile(late, 0.25), `lateness ms: ${late.map((x) => x.toFixed(3)).join(' ')}`).to.be.below(0.25);
    // What it is there to fix (informative; setTimeout rounds to the millisecond).
    expect(percentile(coarse.map(Math.abs), 0.5)).to.be.above(percentile(late, 0.5));
  });
});
