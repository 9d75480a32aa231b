/**
 * The guest image and accelerator for VM tests: one build per set of Debian package versions,
 * cached in the repository's data directory (or $KURA_DATA_DIR) across runs, like `kura vm` does.
 */
import { join, resolve } from 'node:path';
import { describeImage, ensureGuestImage, type GuestImage } from '../../qemu/image-builder.js';
import { chooseAccel, probeKvm, type Accel } from '../../qemu/vm.js';
import { repoRoot } from './kura-process.js';

export const vmDataDir = process.env.KURA_DATA_DIR ? resolve(process.env.KURA_DATA_DIR) : join(repoRoot, 'data');
export const kvmProbeCache = join(vmDataDir, 'images', 'kvm-probe.json');

let image: Promise<GuestImage> | undefined;

/** The guest image, built on first use (downloads with apt-get: allow a few minutes). */
export function guestImage(): Promise<GuestImage> {
  image ??= (async () => {
    const started = Date.now();
    const img = await ensureGuestImage({ dataDir: vmDataDir, log: (m) => console.log(`      ${m}`) });
    if (!img.built) console.log(`      guest image ${img.key} cached (${Date.now() - started} ms): ${describeImage(img)}`);
    return img;
  })();
  return image;
}

/** KVM if a Linux guest boots with it on this host (probed, cached per host boot), else TCG. */
export async function guestAccel(img: GuestImage): Promise<Accel> {
  const accel = await chooseAccel('auto', img, kvmProbeCache);
  // Memoized: this asks the probe chooseAccel already ran, for its reason.
  const why = accel === 'tcg' && !process.env.KURA_VM_ACCEL ? ` (KVM: ${(await probeKvm(img, kvmProbeCache)).why})` : '';
  console.log(`      accelerator: ${accel}${why}`);
  return accel;
}
