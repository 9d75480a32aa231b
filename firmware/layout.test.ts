import { expect } from 'chai';
import { createLayout, type PartSink } from './layout.js';

type Part = [medium: number, offset: number, areaOffset: number, length: number, lba: number];

function collect(): PartSink & { parts: Part[] } {
  const parts: Part[] = [];
  return { parts, part: (...p: Part) => void parts.push(p) };
}

describe('layout', () => {
  it('single: LBA n at byte n * blockSize', () => {
    const l = createLayout({ kind: 'single', blockSize: 4096, mediaBytes: [10 * 4096 + 100] });
    expect(l.capacityBlocks).to.equal(10);
    const s = collect();
    l.mapWrite(3, 2, s);
    expect(s.parts).to.deep.equal([[0, 3 * 4096, 0, 2 * 4096, 3]]);
  });

  it('stripe: splits at stripe unit boundaries and deals units round-robin', () => {
    const l = createLayout({ kind: 'stripe', blockSize: 512, mediaBytes: [8 * 512 * 3, 8 * 512 * 3 + 511], stripeBlocks: 8 });
    expect(l.capacityBlocks).to.equal(48);
    const s = collect();
    l.mapWrite(6, 20, s); // 6..25: units 0 (6..7), 1 (8..15), 2 (16..23), 3 (24..25)
    expect(s.parts).to.deep.equal([
      [0, 6 * 512, 0, 2 * 512, 6],
      [1, 0, 2 * 512, 8 * 512, 8],
      [0, 8 * 512, 10 * 512, 8 * 512, 16],
      [1, 8 * 512, 18 * 512, 2 * 512, 24],
    ]);
    expect(l.alternate(0)).to.equal(-1);
  });

  it('mirror: writes every copy, reads the least loaded, alternates on ties', () => {
    const l = createLayout({ kind: 'mirror', blockSize: 512, mediaBytes: [4096, 8192, 4096] });
    expect(l.capacityBlocks).to.equal(8);
    const w = collect();
    l.mapWrite(1, 2, w);
    expect(w.parts.map((p) => p[0])).to.deep.equal([0, 1, 2]);
    const loads = [0, 0, 0];
    const r = collect();
    for (let i = 0; i < 4; i++) l.mapRead(0, 1, r, { load: (m) => loads[m]! });
    expect(r.parts.map((p) => p[0])).to.deep.equal([0, 1, 2, 0]);
    loads[1] = 5;
    loads[2] = 1;
    const r2 = collect();
    l.mapRead(0, 1, r2, { load: (m) => loads[m]! });
    expect(r2.parts[0]![0]).to.equal(0);
    expect(l.alternate(0b001)).to.equal(1);
    expect(l.alternate(0b111)).to.equal(-1);
  });
});
