import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MAX_RECORD_BYTES, RecordFile } from './record-file.js';

describe('record file (two-slot crash-safe record)', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kura-record-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is made durably with written blocks, saves in order, and reads back the last save', async () => {
    const file = path.join(dir, 'state', 'applied-v.rec');
    const r = await RecordFile.open(file);
    expect(r.load()).to.equal(undefined);
    expect(fs.statSync(file).size).to.equal(1024);
    expect(fs.statSync(file).blocks * 512).to.be.at.least(1024); // not a hole: no metadata change at a save
    await Promise.all([1, 2, 3].map((s) => r.save({ sequence: s })));
    expect(r.load()).to.deep.equal({ sequence: 3 });
    await r.close();
    const again = await RecordFile.open(file);
    expect(again.load()).to.deep.equal({ sequence: 3 });
    await again.save({ sequence: 4 });
    await again.close();
    expect((await RecordFile.open(file)).load()).to.deep.equal({ sequence: 4 });
  });

  it('after a torn save, loads the save before it (the other slot)', async () => {
    const file = path.join(dir, 'w.rec');
    const r = await RecordFile.open(file);
    await r.save({ sequence: 10 }); // counter 1: slot 1
    await r.save({ sequence: 11 }); // counter 2: slot 0
    await r.close();
    // The newest save (slot 0) torn half-way.
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(100, 0xa5), 0, 100, 25);
    fs.closeSync(fd);
    const back = await RecordFile.open(file);
    expect(back.load()).to.deep.equal({ sequence: 10 });
    // Saving goes on from there, into the torn slot first.
    await back.save({ sequence: 12 });
    await back.close();
    expect((await RecordFile.open(file)).load()).to.deep.equal({ sequence: 12 });
  });

  it('refuses a record that does not fit a slot', async () => {
    const r = await RecordFile.open(path.join(dir, 'x.rec'));
    const err = await r.save({ pad: 'x'.repeat(MAX_RECORD_BYTES) }).then(() => null, (e: Error) => e);
    expect(err).to.be.instanceOf(RangeError);
    await r.close();
  });
});
