/**
 * The mode pages a kura LU has (SPC-4 7.5, SBC-4 6.5), as byte images for each page control
 * value. No page is savable (PS=0 everywhere): the controller keeps no mode parameters across
 * power cycles, so saved values are not implemented and a reset restores the defaults.
 */
import type { LogicalUnit } from './logical-unit.js';
import { putU16 } from './cdb.js';

/** Mode parameters a host can change; everything else is derived from the volume. */
export class ModeParameters {
  /** Control page SWP: software write protect, set by MODE SELECT. */
  swp = false;

  reset(): void {
    this.swp = false;
  }
}

export interface ModePage {
  readonly code: number;
  /** Bytes including the 2-byte page header. */
  readonly length: number;
  current(lu: LogicalUnit): Uint8Array;
  defaults(lu: LogicalUnit): Uint8Array;
  /** The page header, then a bit mask of the fields MODE SELECT may change (PC=01b). */
  changeable(): Uint8Array;
  /** Takes a page MODE SELECT already validated against `changeable`. */
  apply?(lu: LogicalUnit, page: Uint8Array): void;
}

function header(code: number, length: number): Uint8Array {
  const p = new Uint8Array(length);
  p[0] = code;
  p[1] = length - 2;
  return p;
}

/** Caching (08h): WCE tells the truth about the volume's volatile cache; nothing changeable. */
const caching: ModePage = {
  code: 0x08,
  length: 20,
  current(lu) {
    const p = header(0x08, 20);
    if (lu.volume.writeCache) p[2] |= 0x04;
    return p;
  },
  defaults(lu) {
    return this.current(lu);
  },
  changeable() {
    return header(0x08, 20);
  },
};

/**
 * Control (0Ah): TST=000b (one task set), QAM=1 (the device server may reorder simple tasks, which
 * it does: commands run concurrently), QERR=00b, D_SENSE=0 (fixed sense only), GLTSD=1 (no log
 * parameters to save), TAS=0, BUSY TIMEOUT PERIOD unlimited. Only SWP is changeable.
 */
const control: ModePage = {
  code: 0x0a,
  length: 12,
  current(lu) {
    const p = this.defaults(lu);
    if (lu.mode.swp) p[4] |= 0x08;
    return p;
  },
  defaults() {
    const p = header(0x0a, 12);
    p[2] = 0x02; // GLTSD
    p[3] = 0x10; // QUEUE ALGORITHM MODIFIER = 1
    putU16(p, 8, 0xffff); // BUSY TIMEOUT PERIOD: unlimited
    return p;
  },
  changeable() {
    const p = header(0x0a, 12);
    p[4] = 0x08; // SWP
    return p;
  },
  apply(lu, page) {
    lu.mode.swp = (page[4] & 0x08) !== 0;
  },
};

/** Informational Exceptions Control (1Ch): no failure prediction, DEXCPT=1. */
function iecPage(): Uint8Array {
  const p = header(0x1c, 12);
  p[2] = 0x08; // DEXCPT
  return p;
}

const informationalExceptions: ModePage = {
  code: 0x1c,
  length: 12,
  current: iecPage,
  defaults: iecPage,
  changeable() {
    return header(0x1c, 12);
  },
};

/** In the order MODE SENSE returns them for page code 3Fh (ascending). */
export const MODE_PAGES: readonly ModePage[] = [caching, control, informationalExceptions];

export function findModePage(code: number): ModePage | undefined {
  return MODE_PAGES.find((p) => p.code === code);
}
