/**
 * Small JSON documents that must survive a crash or power loss (persistent reservations a host
 * set APTPL on). A save writes a temporary file, fsyncs it, renames it over the old document and
 * fsyncs the directory: after a crash a reader finds the old document or the new one, never a
 * torn one, and once save() resolved the new one is on stable storage.
 */
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export class JsonStateStore {
  /** Saves of one document in call order: a late rename must not bring back older data. */
  private readonly queues = new Map<string, Promise<void>>();
  private seq = 0;

  constructor(readonly dir: string) {}

  /** The document `name`, or undefined if none was ever saved. Throws on unreadable or bad JSON. */
  async load(name: string): Promise<unknown> {
    const file = this.file(name);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new Error(`${file}: not valid JSON (${(err as Error).message})`, { cause: err });
    }
  }

  save(name: string, data: unknown): Promise<void> {
    const file = this.file(name);
    const text = `${JSON.stringify(data, null, 2)}\n`;
    const prev = this.queues.get(name) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(() => this.write(file, text));
    const tail = run.catch(() => undefined);
    this.queues.set(name, tail);
    void tail.then(() => {
      if (this.queues.get(name) === tail) this.queues.delete(name);
    });
    return run;
  }

  private file(name: string): string {
    // One flat directory; names come from code, but never let one climb out of it.
    if (!/^[A-Za-z0-9_.%-]+$/.test(name) || name.startsWith('.')) throw new Error(`bad state document name "${name}"`);
    return join(this.dir, `${name}.json`);
  }

  private async write(file: string, text: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const tmp = `${file}.tmp-${process.pid}-${++this.seq}`;
    try {
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    // The rename is durable only once the directory entry is.
    const dirHandle = await open(this.dir, 'r');
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  }
}
