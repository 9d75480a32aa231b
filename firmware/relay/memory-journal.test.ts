import { expect } from 'chai';
import { SimDevice, Simulator } from '../../hal/sim/index.js';
import { DeviceJournal } from './journal.js';
import { JournalFullError, RecordTooLargeError, type AppendRequest, type RelayJournal } from './journal-types.js';
import { BatteryBackedMemory, MEMORY_RECORD_OVERHEAD, MemoryJournal } from './memory-journal.js';

function req(issue: number, n: number): AppendRequest {
  return { id: { sourceUnit: 11, issue }, volume: 1, lba: issue, blocks: 1, data: Buffer.alloc(n, issue & 0xff) };
}

/** The behaviour both kinds of journal share. */
const kinds: Array<[string, () => Promise<{ sim: Simulator; journal: RelayJournal }>]> = [
  ['device journal', async () => {
    const sim = new Simulator();
    const dev = new SimDevice({ clock: sim.clock, size: 1 << 20, latency: 1, volatileCache: true });
    await sim.run(DeviceJournal.format(dev, { journalId: 3 }));
    const { journal } = await sim.run(DeviceJournal.open({ device: dev, clock: sim.clock }));
    return { sim, journal };
  }],
  ['battery-backed memory journal', async () => {
    const sim = new Simulator();
    return { sim, journal: MemoryJournal.open(new BatteryBackedMemory(1 << 20), { clock: sim.clock }).journal };
  }],
];

for (const [name, make] of kinds) {
  describe(`relay journal contract: ${name}`, () => {
    it('records in order, reads back, releases out of order but truncates from the head', async () => {
      const { sim, journal } = await make();
      const rs = await sim.run(Promise.all([1, 2, 3, 4].map((i) => journal.append(req(i, 100 * i)))));
      expect(rs.map((r) => r.durability)).to.deep.equal(['durable', 'durable', 'durable', 'durable']);
      const seqs = rs.map((r) => r.seq);
      expect(seqs).to.deep.equal([...seqs].sort((a, b) => a - b));
      expect(journal.pending().map((e) => e.id.issue)).to.deep.equal([1, 2, 3, 4]);
      expect((await sim.run(journal.read(seqs[2]!))).equals(Buffer.alloc(300, 3))).to.equal(true);
      let thirdDone = false;
      const third = journal.release(seqs[2]!).then(() => { thirdDone = true; });
      await sim.advance(10);
      // Released, so no longer pending; but its space comes back only with the records before it.
      expect(journal.pending().map((e) => e.id.issue)).to.deep.equal([1, 2, 4]);
      expect(thirdDone).to.equal(false);
      expect(journal.stats().headSeq).to.equal(seqs[0]);
      await sim.run(Promise.all([journal.release(seqs[0]!), journal.release(seqs[1]!), third]));
      expect(journal.stats()).to.include({ headSeq: seqs[3], records: 1 });
      expect(journal.entry(seqs[3]!)?.id).to.deep.equal({ sourceUnit: 11, issue: 4 });
      await sim.run(journal.close());
      const late = await journal.append(req(9, 1)).then(() => null, (e: unknown) => e);
      expect((late as Error).name).to.equal('JournalClosedError');
    });
  });
}

describe('relay journal: battery-backed memory', () => {
  it('is durable without any device write; survives a relay process restart', async () => {
    const sim = new Simulator();
    const mem = new BatteryBackedMemory(64 * 1024);
    const first = MemoryJournal.open(mem, { clock: sim.clock });
    const rs = await Promise.all([first.journal.append(req(1, 1000)), first.journal.append(req(2, 2000))]);
    expect(rs.map((r) => r.seq)).to.deep.equal([1, 2]);
    await first.journal.release(1);
    // The process dies (no close); a new one attaches to the same memory.
    const second = MemoryJournal.open(mem, { clock: sim.clock });
    expect(second.recovery).to.deep.equal({ records: 1, bytes: 2000, headSeq: 2, nextSeq: 3 });
    expect((await second.journal.read(2)).equals(Buffer.alloc(2000, 2))).to.equal(true);
    expect((await second.journal.append(req(3, 10))).seq).to.equal(3);
    // The dead process's instance is fenced off.
    const stale = await first.journal.append(req(4, 10)).then(() => null, (e: unknown) => e);
    expect((stale as Error).message).to.match(/another relay process has attached/);
    expect(second.journal.pending().map((e) => e.id.issue)).to.deep.equal([2, 3]);
  });

  it('does not survive a flat battery', () => {
    const sim = new Simulator();
    const mem = new BatteryBackedMemory(64 * 1024);
    void MemoryJournal.open(mem, { clock: sim.clock }).journal.append(req(1, 1000));
    mem.discharge();
    expect(MemoryJournal.open(mem, { clock: sim.clock }).recovery.records).to.equal(0);
  });

  it('full: a precise error, or a wait in arrival order until records are released', async () => {
    const sim = new Simulator();
    const cap = 4 * (MEMORY_RECORD_OVERHEAD + 1000);
    const failing = MemoryJournal.open(new BatteryBackedMemory(cap), { clock: sim.clock, whenFull: 'fail' }).journal;
    for (let i = 1; i <= 4; i++) await failing.append(req(i, 1000));
    const e = await failing.append(req(5, 1000)).then(() => null, (x: unknown) => x);
    expect(e).to.be.instanceOf(JournalFullError);
    expect(e).to.include({ needed: 1064, free: 0, capacity: cap });
    expect(await failing.append(req(6, cap)).then(() => null, (x: unknown) => x)).to.be.instanceOf(RecordTooLargeError);

    const waiting = MemoryJournal.open(new BatteryBackedMemory(cap), { clock: sim.clock }).journal;
    for (let i = 1; i <= 4; i++) await waiting.append(req(i, 1000));
    const order: number[] = [];
    const p5 = waiting.append(req(5, 1000)).then(() => order.push(5));
    const p6 = waiting.append(req(6, 10)).then(() => order.push(6));
    await sim.settle();
    expect(order).to.deep.equal([]);
    expect(waiting.stats().waitingForSpace).to.equal(2);
    let secondFreed = false;
    void waiting.release(2).then(() => { secondFreed = true; }); // out of order: frees nothing yet
    await sim.settle();
    expect(order).to.deep.equal([]);
    expect(secondFreed).to.equal(false);
    await waiting.release(1); // frees 1 and 2: room for 5 and 6
    await Promise.all([p5, p6]);
    expect(order).to.deep.equal([5, 6]);
    expect(secondFreed).to.equal(true);
  });
});
