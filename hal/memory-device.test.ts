import { expect } from 'chai';
import { DeviceError } from './block-device.js';
import { MEMORY_CHUNK_BYTES, MemoryDevice } from './memory-device.js';

describe('MemoryDevice', () => {
  it('is sparse: a 1 GiB device holds no memory until written', async () => {
    const d = new MemoryDevice('m', 1 << 30);
    expect(d.allocatedBytes).to.equal(0);
    const out = Buffer.alloc(4096, 0xff);
    await d.read((1 << 30) - 4096, out);
    expect(out.every((b) => b === 0)).to.equal(true);
    expect(d.allocatedBytes).to.equal(0);
    await d.write(12345, Buffer.from('hello'));
    expect(d.allocatedBytes).to.equal(MEMORY_CHUNK_BYTES);
    expect(d.volatileCache).to.equal(false);
    expect(d.canDiscard).to.equal(true);
  });

  it('reads back writes that cross chunk boundaries', async () => {
    const d = new MemoryDevice('m', 4 * MEMORY_CHUNK_BYTES);
    const data = Buffer.alloc(2 * MEMORY_CHUNK_BYTES + 100);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    await d.write(MEMORY_CHUNK_BYTES - 50, data);
    const out = Buffer.alloc(data.length);
    await d.read(MEMORY_CHUNK_BYTES - 50, out);
    expect(out.equals(data)).to.equal(true);
    expect(d.allocatedBytes).to.equal(4 * MEMORY_CHUNK_BYTES);
  });

  it('discard frees whole chunks and zeroes partial ones', async () => {
    const d = new MemoryDevice('m', 4 * MEMORY_CHUNK_BYTES);
    await d.write(0, Buffer.alloc(4 * MEMORY_CHUNK_BYTES, 0xaa));
    await d.discard(100, 2 * MEMORY_CHUNK_BYTES);
    expect(d.allocatedBytes).to.equal(3 * MEMORY_CHUNK_BYTES);
    const out = Buffer.alloc(4 * MEMORY_CHUNK_BYTES);
    await d.read(0, out);
    for (let i = 0; i < out.length; i++) {
      const want = i >= 100 && i < 100 + 2 * MEMORY_CHUNK_BYTES ? 0 : 0xaa;
      if (out[i] !== want) expect.fail(`byte ${i}: ${out[i]} != ${want}`);
    }
  });

  it('reports allocated chunks, clipped to the range asked and merged when adjacent', async () => {
    const C = MEMORY_CHUNK_BYTES;
    const d = new MemoryDevice('m', 8 * C);
    expect(await d.allocated(0, 8 * C)).to.deep.equal([]);
    await d.write(C + 10, Buffer.alloc(2 * C, 1));
    await d.write(6 * C, Buffer.alloc(1, 1));
    expect(await d.allocated(0, 8 * C)).to.deep.equal([[C, 4 * C], [6 * C, 7 * C]]);
    expect(await d.allocated(2 * C + 5, 5 * C)).to.deep.equal([[2 * C + 5, 4 * C], [6 * C, 7 * C]]);
    await d.discard(2 * C, C);
    expect(await d.allocated(0, 8 * C)).to.deep.equal([[C, 2 * C], [3 * C, 4 * C], [6 * C, 7 * C]]);
  });

  it('rejects out-of-range and post-close operations with DeviceError', async () => {
    const d = new MemoryDevice('m', 8192);
    const err = await d.read(8000, Buffer.alloc(512)).then(() => null, (e: unknown) => e);
    expect(err).to.be.instanceOf(DeviceError);
    expect((err as DeviceError).code).to.equal('ERANGE');
    await d.close();
    const closed = await d.write(0, Buffer.alloc(512)).then(() => null, (e: unknown) => e);
    expect((closed as DeviceError).code).to.equal('EBADF');
  });

  it('clone() is independent', async () => {
    const d = new MemoryDevice('m', 8192);
    await d.write(0, Buffer.from([1, 2, 3]));
    const c = d.clone();
    await d.write(0, Buffer.from([9]));
    const out = Buffer.alloc(3);
    await c.read(0, out);
    expect([...out]).to.deep.equal([1, 2, 3]);
  });
});
