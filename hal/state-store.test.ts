import { expect } from 'chai';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsonStateStore } from './state-store.js';

describe('hal/state-store: crash-safe JSON documents', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kura-state-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('loads undefined for a document never saved, then what was saved', async () => {
    const s = new JsonStateStore(join(dir, 'state'));
    expect(await s.load('pr-x-lun0')).to.equal(undefined);
    await s.save('pr-x-lun0', { a: 1, b: ['c'] });
    expect(await s.load('pr-x-lun0')).to.deep.equal({ a: 1, b: ['c'] });
    expect(await new JsonStateStore(join(dir, 'state')).load('pr-x-lun0'), 'a new store on the same directory').to.deep.equal({ a: 1, b: ['c'] });
  });

  it('replaces the document by rename, leaving no temporary files behind', async () => {
    const s = new JsonStateStore(dir);
    await s.save('doc', { v: 1 });
    await s.save('doc', { v: 2 });
    expect(readdirSync(dir)).to.deep.equal(['doc.json']);
    expect(JSON.parse(readFileSync(join(dir, 'doc.json'), 'utf8'))).to.deep.equal({ v: 2 });
  });

  it('applies concurrent saves of one document in call order', async () => {
    const s = new JsonStateStore(dir);
    await Promise.all(Array.from({ length: 20 }, (_, i) => s.save('doc', { v: i })));
    expect(await s.load('doc')).to.deep.equal({ v: 19 });
  });

  it('reports a corrupt document with its path instead of returning garbage', async () => {
    writeFileSync(join(dir, 'doc.json'), '{"v": ');
    let err: Error | undefined;
    await new JsonStateStore(dir).load('doc').catch((e: Error) => { err = e; });
    expect(err?.message).to.match(/doc\.json: not valid JSON/);
  });

  it('refuses names that could leave its directory', async () => {
    const s = new JsonStateStore(dir);
    for (const name of ['../x', 'a/b', '.hidden', '']) {
      expect(() => s.save(name, {}), name).to.throw(/bad state document name/);
    }
  });

  it('rejects the save when the directory cannot be created', async () => {
    writeFileSync(join(dir, 'file'), 'not a directory');
    const s = new JsonStateStore(join(dir, 'file', 'state'));
    let err: Error | undefined;
    await s.save('doc', {}).catch((e: Error) => { err = e; });
    expect(err).to.be.instanceOf(Error);
  });
});
