/**
 * Temporary directories for tests, removed when the test process exits (each e2e test used to leave
 * its volumes and logs in /tmp: a few hundred directories and many GiB after a day of runs). Set
 * KURA_KEEP_TMP=1 to keep them for a post-mortem.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
let hooked = false;

function removeAll(): void {
  for (const dir of made.splice(0)) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // A directory a leftover process still writes into: nothing to do at exit.
    }
  }
}

export function tempDir(prefix = 'kura-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (process.env.KURA_KEEP_TMP !== undefined && process.env.KURA_KEEP_TMP !== '0') return dir;
  made.push(dir);
  if (!hooked) {
    hooked = true;
    process.once('exit', removeAll);
  }
  return dir;
}
