import { expect } from 'chai';
import { SimDevice } from '../hal/sim/sim-device.js';
import { Simulator } from '../hal/sim/simulator.js';
import { ControllerClosedError } from './processing-sequencer.js';
import { WriteProtectedError } from './communication-unit.js';
import { createController, type AddVolumeOptions } from './controller.js';
import { outcome, pattern, readBlocks, world, writeBlocks } from './sim-world.test.js';
import { MediumError } from './volume.js';

const BS = 512;

describe('controller', () => {
  describe('basics', () => {
    it('writes and reads back; reports geometry and a truthful writeCache', async () => {
      const w = world({ blockCount: 1000 });
      expect(w.vol.blockSize).to.equal(512);
      expect(w.vol.blockCount).to.equal(1000);
      expect(w.vol.writeCache).to.equal(false);
      expect(w.vol.readOnly).to.equal(false);
      expect(w.vol.canDiscard).to.equal(true);
      const data = pattern(1, 8 * BS);
      await w.run(writeBlocks(w.vol, 10, data));
      expect(w.devices[0]!.peek(10 * BS, 8 * BS).equals(data)).to.equal(true);
      expect((await w.run(readBlocks(w.vol, 10, 8))).equals(data)).to.equal(true);
      expect(world({ volatileCache: true }).vol.writeCache).to.equal(true);
      const s = w.controller.stats();
      expect(s.volumes[0]!.writes).to.equal(1);
      expect(s.volumes[0]!.reads).to.equal(1);
      expect(s.buffer.inUseBytes).to.equal(0);
    });

    it('the device reads and writes straight from / into the buffer area (no copy)', async () => {
      const w = world();
      let seen: Uint8Array | null = null;
      const dev = w.devices[0]!;
      const orig = dev.write.bind(dev);
      dev.write = (offset, from, o) => {
        seen = from;
        return orig(offset, from, o);
      };
      const r = await w.run(w.vol.prepareWrite(0, 8));
      r.area.set(pattern(2, 8 * BS));
      await w.run(r.commit({ fua: false }));
      expect(seen).to.equal(r.area);
    });

    it('rejects out-of-range, oversize and read-only commands without issuing them', async () => {
      const w = world({ blockCount: 100, maxTransferBlocks: 16 });
      expect((await outcome(w.vol.read(99, 2))).ok).to.equal(false);
      expect((await outcome(w.vol.read(-1, 1))).ok).to.equal(false);
      expect((await outcome(w.vol.prepareWrite(0, 17))).ok).to.equal(false);
      expect((await outcome(w.vol.prepareWrite(0, 0))).ok).to.equal(false);
      expect(w.controller.stats().lastIssue).to.equal(0);
      const sim = new Simulator();
      const c = createController({ clock: sim.clock, bufferBytes: 1 << 20 });
      const ro = c.addVolume({ name: 'ro', blockSize: BS, blockCount: 8, media: [new SimDevice({ clock: sim.clock, size: 8 * BS })], layout: 'single', scheduler: 'fifo', readOnly: true });
      const o = await outcome(ro.prepareWrite(0, 1));
      expect(o.ok ? null : o.error).to.be.instanceOf(WriteProtectedError);
      expect(ro.readOnly).to.equal(true);
    });
  });

  describe('addVolume validation', () => {
    const sim = new Simulator();
    const dev = (size = 1 << 20) => new SimDevice({ clock: sim.clock, size });
    const base = (): AddVolumeOptions => ({ name: 'v', blockSize: BS, blockCount: 2048, media: [dev()], layout: 'single', scheduler: 'fifo' });
    const bad: [string, Partial<AddVolumeOptions>, RegExp][] = [
      ['block size', { blockSize: 1024 }, /block size must be 512 or 4096/],
      ['too small a medium', { blockCount: 4096 }, /the media hold 2048 blocks/],
      ['mirror of one', { layout: 'mirror' }, /mirror needs at least 2 media/],
      ['single of two', { media: [dev(), dev()] }, /single needs exactly 1 medium/],
      ['stripe too small', { layout: 'stripe', media: [dev(), dev(1 << 19)], blockCount: 2048 + 1 }, /the media hold 2048 blocks/],
      ['bad depth', { mediumQueueDepth: 0 }, /queue depth/],
      ['bad scheduler', { scheduler: 'elevator' as 'fifo' }, /fifo or sstf/],
      ['transfer larger than the buffer memory', { maxTransferBlocks: 8193 }, /buffer area/],
    ];
    for (const [what, o, msg] of bad) {
      it(`rejects ${what}`, () => {
        const c = createController({ clock: sim.clock, bufferBytes: 4 << 20 });
        expect(() => c.addVolume({ ...base(), ...o })).to.throw(msg);
      });
    }
    it('rejects a duplicate name and a medium used twice', () => {
      const c = createController({ clock: sim.clock, bufferBytes: 4 << 20 });
      const v = base();
      c.addVolume(v);
      expect(() => c.addVolume({ ...base(), media: [dev()] })).to.throw(/exists already/);
      expect(() => c.addVolume({ ...base(), name: 'w', media: v.media })).to.throw(/used twice/);
      expect(c.volume('v')?.name).to.equal('v');
    });
  });

  describe('scheduling on the medium', () => {
    const blocks = [1000, 100, 500, 50, 700];
    for (const [policy, expected] of [['fifo', [0, 1000, 100, 500, 50, 700]], ['sstf', [0, 50, 100, 500, 700, 1000]]] as const) {
      it(`${policy}: medium order from a known head position (depth 1)`, async () => {
        const w = world({ scheduler: policy, depth: 1, latency: 1 });
        // The first read puts the head at block 1 and keeps the medium busy while the rest queue.
        const all = [0, ...blocks].map((b) => w.vol.read(b, 1).then((r) => r.release()));
        await w.run(Promise.all(all));
        expect(w.devices[0]!.log.map((r) => r.offset / BS)).to.deep.equal(expected);
      });
    }

    it('depth is honoured per medium', async () => {
      const w = world({ depth: 4, serial: false, latency: 1 });
      await w.run(Promise.all(Array.from({ length: 16 }, (_, i) => w.vol.read(i * 8, 8).then((r) => r.release()))));
      expect(w.devices[0]!.stats().maxInFlight).to.equal(4);
    });
  });

  describe('buffer memory backpressure', () => {
    it('prepareWrite waits for buffer memory; completion wakes it; the bound holds', async () => {
      const w = world({ bufferBytes: 64 * 1024, maxTransferBlocks: 64 });
      const a = await w.run(w.vol.prepareWrite(0, 64)); // 32 KiB
      const b = await w.run(w.vol.prepareWrite(64, 64));
      let cReady = false;
      const c = w.vol.prepareWrite(128, 64).then((r) => { cReady = true; return r; });
      const readDone = w.vol.read(0, 1).then((r) => { r.release(); return 'read'; });
      await w.sim.advance(10);
      expect(cReady).to.equal(false);
      expect(w.controller.stats().buffer.waiters).to.equal(2);
      a.area.fill(1);
      await w.run(a.commit({ fua: false }));
      const rc = await w.run(c);
      expect(cReady).to.equal(true);
      expect(w.controller.stats().buffer.inUseBytes).to.equal(64 * 1024);
      b.abandon();
      expect(await w.run(readDone)).to.equal('read');
      rc.area.fill(3);
      await w.run(rc.commit({ fua: false }));
      const s = w.controller.stats().buffer;
      expect(s.highWaterBytes).to.equal(64 * 1024);
      expect(s.inUseBytes).to.equal(0);
      expect(s.waits).to.equal(2);
    });
  });

  describe('medium errors', () => {
    it('a read error surfaces as MediumError with the failing LBA', async () => {
      const w = world();
      w.devices[0]!.failReads({ offset: 37 * BS, length: BS });
      const o = await w.run(outcome(w.vol.read(32, 16)));
      expect(o.ok).to.equal(false);
      const e = (o as { error: unknown }).error as MediumError;
      expect(e).to.be.instanceOf(MediumError);
      expect(e.lba).to.equal(37);
      expect(e.op).to.equal('read');
      expect(w.controller.stats().buffer.inUseBytes).to.equal(0);
      expect(w.vol.stats().errors).to.equal(1);
    });

    it('a write error surfaces as MediumError; flush errors too', async () => {
      const w = world();
      w.devices[0]!.failWrites({ offset: 0, length: 1 << 20 }, 'ENOSPC', 1);
      const o = await w.run(outcome(writeBlocks(w.vol, 5, pattern(1, 4 * BS))));
      const e = (o as { error: unknown }).error as MediumError;
      expect(e).to.be.instanceOf(MediumError);
      expect([e.op, e.lba, e.code]).to.deep.equal(['write', 5, 'ENOSPC']);
      w.devices[0]!.failNext('flush');
      const f = await w.run(outcome(w.vol.flush()));
      expect(((f as { error: unknown }).error as MediumError).op).to.equal('flush');
    });

    it('a device that throws, or fails without a DeviceError, still yields a MediumError', async () => {
      const w = world();
      const dev = w.devices[0]!;
      dev.read = () => {
        throw new TypeError('driver bug');
      };
      const o = await w.run(outcome(w.vol.read(4, 1)));
      const e = (o as { error: unknown }).error as MediumError;
      expect(e).to.be.instanceOf(MediumError);
      expect([e.lba, e.code]).to.deep.equal([4, 'EIO']);
      expect(e.cause).to.be.instanceOf(TypeError);
      dev.flush = () => Promise.reject(new Error('odd'));
      const f = await w.run(outcome(w.vol.flush()));
      expect(((f as { error: unknown }).error as MediumError).op).to.equal('flush');
      expect(w.controller.stats().activeCommands).to.equal(0);
    });

    it('stripe: an error on the second medium names the volume LBA', async () => {
      const w = world({ layout: 'stripe', media: 2, stripeBlocks: 8 });
      // Volume LBA 8..15 is stripe unit 1 -> medium 1, row 0, medium blocks 0..7. Fail medium block 3.
      w.devices[1]!.failReads({ offset: 3 * BS, length: BS });
      const o = await w.run(outcome(w.vol.read(0, 32)));
      expect(((o as { error: unknown }).error as MediumError).lba).to.equal(11);
    });
  });

  describe('mirror', () => {
    it('writes reach every medium; the write completes when all did', async () => {
      const w = world({ layout: 'mirror', media: 3, latencyOf: (i) => 1 + i * 5 });
      const data = pattern(9, 4 * BS);
      const t0 = w.sim.now();
      await w.run(writeBlocks(w.vol, 20, data));
      expect(w.sim.now() - t0).to.equal(11);
      for (const d of w.devices) {
        expect(d.log.filter((r) => r.op === 'write').map((r) => r.offset)).to.deep.equal([20 * BS]);
        expect(d.peek(20 * BS, 4 * BS).equals(data)).to.equal(true);
      }
    });

    it('reads go to one medium, spread over the mirrors', async () => {
      const w = world({ layout: 'mirror', media: 2 });
      for (let i = 0; i < 4; i++) await w.run(readBlocks(w.vol, i, 1));
      expect(w.devices.map((d) => d.log.filter((r) => r.op === 'read').length)).to.deep.equal([2, 2]);
      // Least queued: while medium 0 is busy with a long read, the next reads go to medium 1.
      const w2 = world({ layout: 'mirror', media: 2, latencyOf: (i) => (i === 0 ? 100 : 1) });
      const first = w2.vol.read(0, 1);
      for (const b of [1, 2, 3]) await w2.run(readBlocks(w2.vol, b, 1));
      await w2.run(first);
      expect(w2.devices.map((d) => d.log.filter((r) => r.op === 'read').length)).to.deep.equal([1, 3]);
    });

    it('a read error on one mirror is retried on the other', async () => {
      const w = world({ layout: 'mirror', media: 2 });
      const data = pattern(4, 8 * BS);
      await w.run(writeBlocks(w.vol, 0, data));
      w.devices[0]!.failReads({ offset: 0, length: 1 << 20 });
      for (let i = 0; i < 2; i++) {
        const got = await w.run(readBlocks(w.vol, 0, 8));
        expect(got.equals(data)).to.equal(true);
      }
      expect(w.devices[0]!.log.filter((r) => r.op === 'read' && r.error).length).to.be.greaterThan(0);
      expect(w.vol.stats().readRetries).to.be.greaterThan(0);
      // Both bad: the error comes out.
      w.devices[1]!.failReads({ offset: 2 * BS, length: BS });
      const o = await w.run(outcome(w.vol.read(0, 8)));
      expect(((o as { error: unknown }).error as MediumError).lba).to.be.oneOf([0, 2]);
    });
  });

  describe('stripe', () => {
    it('data lands on the right media at the right offsets and reads back', async () => {
      const su = 4;
      const w = world({ layout: 'stripe', media: 3, stripeBlocks: su });
      const data = pattern(5, 30 * BS);
      await w.run(writeBlocks(w.vol, 2, data));
      for (let i = 0; i < 30; i++) {
        const lba = 2 + i;
        const unit = Math.floor(lba / su);
        const medium = unit % 3;
        const off = (Math.floor(unit / 3) * su + (lba % su)) * BS;
        const got = w.devices[medium]!.peek(off, BS);
        if (!got.equals(data.subarray(i * BS, (i + 1) * BS))) expect.fail(`LBA ${lba} not at medium ${medium} offset ${off}`);
      }
      // 30 blocks from LBA 2 with 4-block units: 2 + 7 * 4 -> 8 parts.
      expect(w.devices.reduce((n, d) => n + d.log.filter((r) => r.op === 'write').length, 0)).to.equal(8);
      expect((await w.run(readBlocks(w.vol, 2, 30))).equals(data)).to.equal(true);
      expect((await w.run(readBlocks(w.vol, 7, 3))).equals(data.subarray(5 * BS, 8 * BS))).to.equal(true);
    });
  });

  describe('durability', () => {
    it('FUA write survives a crash; a plain write without flush does not; flush makes it durable', async () => {
      const w = world({ volatileCache: true, layout: 'mirror', media: 2 });
      expect(w.vol.writeCache).to.equal(true);
      await w.run(writeBlocks(w.vol, 0, pattern(1, BS), true));
      await w.run(writeBlocks(w.vol, 1, pattern(2, BS), false));
      for (const d of w.devices) expect(d.log.filter((r) => r.op === 'write').map((r) => r.fua)).to.deep.equal([true, false]);
      for (const d of w.devices) d.crash();
      expect((await w.run(readBlocks(w.vol, 0, 1))).equals(pattern(1, BS))).to.equal(true);
      expect((await w.run(readBlocks(w.vol, 1, 1))).equals(Buffer.alloc(BS))).to.equal(true);

      await w.run(writeBlocks(w.vol, 1, pattern(3, BS), false));
      await w.run(w.vol.flush());
      for (const d of w.devices) expect(d.log.filter((r) => r.op === 'flush')).to.have.length(1);
      for (const d of w.devices) d.crash();
      expect((await w.run(readBlocks(w.vol, 1, 1))).equals(pattern(3, BS))).to.equal(true);
    });

    it('flush covers writes that completed before it, even when later writes are in flight', async () => {
      const w = world({ volatileCache: true, serial: false, depth: 32, latency: (q) => (q.op === 'flush' ? 5 : q.offset === 0 ? 1 : 20) });
      await w.run(writeBlocks(w.vol, 0, pattern(1, BS)));
      const late = writeBlocks(w.vol, 100, pattern(2, BS));
      await w.run(w.vol.flush());
      w.devices[0]!.crash();
      await w.run(outcome(late));
      expect((await w.run(readBlocks(w.vol, 0, 1))).equals(pattern(1, BS))).to.equal(true);
    });
  });

  describe('command identifiers', () => {
    it('issuing numbers increase by one per command and carry the unit id', async () => {
      const w = world();
      const r1 = await w.run(w.vol.prepareWrite(0, 1));
      const r2 = await w.run(w.vol.read(0, 1));
      await w.run(w.vol.flush());
      await w.run(w.vol.discard(0, 1));
      const r5 = await w.run(w.vol.prepareWrite(1, 1));
      const r6 = await w.run(w.vol.read(1, 1));
      expect([r1.issue, r2.issue, r5.issue, r6.issue]).to.deep.equal([1, 2, 5, 6]);
      expect([r1.sourceUnit, r6.sourceUnit, w.vol.unitId]).to.deep.equal([7, 7, 7]);
      expect(w.controller.stats().lastIssue).to.equal(6);
      r2.release();
      r6.release();
      r1.abandon();
      await w.run(r5.commit({ fua: false }));
    });
  });

  describe('discard', () => {
    it('zeroes the range on every copy, ordered after earlier writes', async () => {
      const w = world({ layout: 'mirror', media: 2, serial: false, latency: (q) => (q.op === 'write' ? 10 : 1) });
      const wr = writeBlocks(w.vol, 0, pattern(1, 8 * BS));
      const pending = await w.run(w.vol.prepareWrite(8, 1));
      pending.area.fill(1);
      await w.sim.settle();
      const d = w.vol.discard(2, 4);
      await w.run(Promise.all([wr, d, pending.commit({ fua: false })]));
      const got = await w.run(readBlocks(w.vol, 0, 8));
      const want = pattern(1, 8 * BS);
      want.fill(0, 2 * BS, 6 * BS);
      expect(got.equals(want)).to.equal(true);
      for (const dev of w.devices) expect(dev.peek(0, 8 * BS).equals(want)).to.equal(true);
    });
  });

  describe('close', () => {
    it('waits for IO in flight, flushes every medium, then refuses new commands', async () => {
      const w = world({ volatileCache: true, latency: 5 });
      const r = await w.run(w.vol.prepareWrite(0, 1));
      r.area.set(pattern(8, BS));
      const committed = r.commit({ fua: false });
      const prepared = await w.run(w.vol.prepareWrite(1, 1));
      const closed = w.controller.close();
      expect(await w.run(outcome(prepared.commit({ fua: false })))).to.have.property('ok', false);
      await w.run(Promise.all([committed, closed]));
      const log = w.devices[0]!.log;
      expect(log.map((x) => x.op)).to.deep.equal(['write', 'flush']);
      expect(log[1]!.issueEvent).to.be.greaterThan(log[0]!.completionEvent!);
      w.devices[0]!.crash();
      expect(w.devices[0]!.peek(0, BS).equals(pattern(8, BS))).to.equal(true);
      const o = await outcome(w.vol.read(0, 1));
      expect(o.ok ? null : o.error).to.be.instanceOf(ControllerClosedError);
      expect(w.controller.stats().closed).to.equal(true);
      expect(w.controller.stats().buffer.inUseBytes).to.equal(0);
    });
  });
});
