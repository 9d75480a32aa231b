import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MARKER_NAME, SAVED_NAME, memoryPathOf, openBatteryBackedMemory, type BatteryBackedMemory } from './battery-backed-device.js';

const SIZE = 8 << 20;

function pattern(byte: number, n = 8192): Buffer {
  return Buffer.alloc(n, byte);
}

async function readAt(m: BatteryBackedMemory, offset: number, n = 8192): Promise<Buffer> {
  const b = Buffer.alloc(n);
  await m.device.read(offset, b);
  return b;
}

describe('battery-backed memory (NVDIMM-like: RAM that outlives the process, saved at power-off)', () => {
  let dataDir: string;
  let memoryDir: string;
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kura-nvram-data-'));
    memoryDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kura-nvram-shm-'));
  });
  afterEach(() => {
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(memoryDir, { recursive: true, force: true });
  });
  const open = () => openBatteryBackedMemory({ dataDir, size: SIZE, memoryDir });

  it('starts new in the memory directory, all of its size taken, with writes stored and no flush to wait for', async () => {
    const m = await open();
    expect(m.origin).to.equal('new');
    expect(m.path).to.equal(memoryPathOf(dataDir, memoryDir));
    expect(m.device.volatileCache).to.equal(false);
    expect(m.device.size).to.equal(SIZE);
    await m.device.write(4096, pattern(0xa5));
    await m.device.flush();
    expect(await readAt(m, 4096)).to.deep.equal(pattern(0xa5));
    expect(fs.statSync(m.path).blocks * 512, 'every page allocated: a write never finds the memory full').to.be.at.least(SIZE);
    expect(fs.existsSync(path.join(dataDir, MARKER_NAME))).to.equal(true);
    expect(fs.existsSync(path.join(dataDir, SAVED_NAME))).to.equal(false);
    await m.device.close();
  });

  it('is kept when the process dies without closing it (SIGKILL, crash, restart)', async () => {
    const first = await open();
    await first.device.write(0, pattern(1));
    // No close(): the process is gone; the memory file is not.
    const again = await open();
    expect(again.origin).to.equal('kept');
    expect(await readAt(again, 0)).to.deep.equal(pattern(1));
    await again.device.close();
  });

  it('is saved to the data directory at a clean shutdown, freed, and restored at the next start', async () => {
    const m = await open();
    await m.device.write(SIZE - 8192, pattern(7));
    await m.device.close();
    expect(fs.existsSync(m.path), 'RAM freed').to.equal(false);
    expect(fs.existsSync(path.join(dataDir, MARKER_NAME))).to.equal(false);
    const saved = path.join(dataDir, SAVED_NAME);
    expect(fs.statSync(saved).size).to.equal(SIZE);
    expect(fs.statSync(saved).blocks * 512, 'the save holds what was written, not the whole size').to.be.below(SIZE / 4);
    const again = await open();
    expect(again.origin).to.equal('restored');
    expect(await readAt(again, SIZE - 8192)).to.deep.equal(pattern(7));
    expect(await readAt(again, 0)).to.deep.equal(pattern(0));
    expect(fs.existsSync(saved), 'one live copy: the save is gone once restored').to.equal(false);
    await again.device.close();
  });

  it('reports the memory lost when the machine went down while a relay held it, and starts empty', async () => {
    const m = await open();
    await m.device.write(0, pattern(9));
    // Machine down: the shared memory is gone, no clean shutdown saved it.
    fs.rmSync(m.path);
    const again = await open();
    expect(again.origin).to.equal('lost');
    expect(await readAt(again, 0)).to.deep.equal(pattern(0));
    await again.device.close();
    // A clean shutdown after that is an ordinary save again.
    expect((await open()).origin).to.equal('restored');
  });

  it('prefers the memory over a save left by a crash in the middle of a save', async () => {
    const m = await open();
    await m.device.write(0, pattern(3));
    fs.writeFileSync(path.join(dataDir, SAVED_NAME), Buffer.alloc(SIZE, 0xee));
    fs.writeFileSync(path.join(dataDir, `${SAVED_NAME}.saving-4242`), 'half a save');
    fs.writeFileSync(`${m.path}.4242`, 'half a restore');
    const again = await open();
    expect(fs.readdirSync(dataDir).sort(), 'half-made copies removed').to.deep.equal([MARKER_NAME]);
    expect(fs.readdirSync(memoryDir)).to.deep.equal([path.basename(m.path)]);
    expect(again.origin).to.equal('kept');
    expect(await readAt(again, 0)).to.deep.equal(pattern(3));
    expect(fs.existsSync(path.join(dataDir, SAVED_NAME))).to.equal(false);
    await again.device.close();
  });

  it('falls back to the data directory, saying why, when shared memory lacks room for it', async () => {
    const st = fs.statfsSync(memoryDir);
    const size = st.bavail * st.bsize + (1 << 30);
    const m = await openBatteryBackedMemory({ dataDir, size, memoryDir });
    expect(m.path).to.equal(path.join(dataDir, SAVED_NAME));
    // Sizes above 2 GiB are the usual case here: the figures must not wrap (they did with `>> 20`).
    expect(m.note).to.match(/ has \d+ MiB free, the memory needs (\d+) MiB/);
    expect(Number(/needs (\d+) MiB/.exec(m.note!)![1])).to.equal(Math.floor(size / 2 ** 20));
    expect(fs.readdirSync(memoryDir)).to.deep.equal([]);
    await m.device.write(0, pattern(4));
    await m.device.close();
    const again = await openBatteryBackedMemory({ dataDir, size, memoryDir });
    expect(again.origin).to.equal('kept');
    expect(await readAt(again, 0)).to.deep.equal(pattern(4));
    await again.device.close();
  });

  it('without shared memory, lives in the data directory (page cache) and is kept across opens', async () => {
    const first = await openBatteryBackedMemory({ dataDir, size: SIZE, memoryDir: null });
    expect(first.origin).to.equal('new');
    expect(first.path).to.equal(path.join(dataDir, SAVED_NAME));
    await first.device.write(0, pattern(5));
    await first.device.close();
    const again = await openBatteryBackedMemory({ dataDir, size: SIZE, memoryDir: null });
    expect(again.origin).to.equal('kept');
    expect(await readAt(again, 0)).to.deep.equal(pattern(5));
    await again.device.close();
  });
});
