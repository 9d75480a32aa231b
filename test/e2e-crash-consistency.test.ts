/**
 * Crash consistency at the remote site (issue 5, seed 000-E1/E3 in relay-durable mode): a Linux VM
 * on the primary writes and fsyncs files; the primary site (VM and controller) is killed with
 * SIGKILL at a random moment; after promotion the secondary's LUN boots, ext4 replays its journal,
 * every file the guest announced as fsynced is there with its checksum, and e2fsck -fn is clean.
 * A few random crash points here; bench/crash-consistency.ts runs 100.
 */
import { expect } from 'chai';
import { join } from 'node:path';
import { runCrashPoint } from '../bench/lib/crash-point.js';
import { repoRoot, tempDir } from './support/kura-process.js';
import { guestAccel, guestImage } from './support/vm-guest.js';

describe('crash consistency at the remote site (relay-durable; kill -9 of the primary site mid-workload)', function () {
  this.timeout(900000);
  // Seeds of the crash points: each picks after how many fsynced files, plus up to 400 ms, the site dies.
  const seeds = (process.env.KURA_CRASH_SEEDS ?? `${Date.now() % 100000},${(Date.now() + 7919) % 100000}`).split(',').map(Number);

  for (const seed of seeds) {
    it(`crash point seed ${seed}: every file fsynced before the crash verifies on the promoted secondary, e2fsck -fn clean`, async () => {
      const img = await guestImage();
      const accel = await guestAccel(img);
      const dir = tempDir('kura-crash-');
      const r = await runCrashPoint({ cli: { root: repoRoot }, img, accel, dir, seed, files: 40, log: (l) => console.log(`      ${l}`) });
      console.log(`      ${accel}: ${r.fsyncedBeforeCrash} files fsynced before the crash; drain ${r.ms.drain} ms, verify boot ${r.ms.verify} ms, fsck ${r.ms.fsck} ms (logs in ${dir})`);
      expect(r.fsyncedBeforeCrash).to.be.greaterThan(0);
      expect(r.verify, `verify.log in ${join(dir, 'verify.log')}`).to.deep.include({ pass: true, ok: r.fsyncedBeforeCrash, bad: 0 });
      expect(r.fsck.clean, r.fsck.output).to.equal(true);
    });
  }
});
