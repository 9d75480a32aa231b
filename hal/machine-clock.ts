/**
 * The clock every process of this machine shares (CLOCK_MONOTONIC), for timestamps one process
 * writes and another reads: the WAN links' arrival stamps (hal/wan/arrival-stamps.ts).
 * performance.now() counts from each process's own start, process.hrtime from the machine's.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DEFAULT_HORIZON_MS, type ArrivalStampOptions } from './wan/arrival-stamps.js';

/**
 * 16 bytes naming this machine's monotonic clock: the kernel's boot id (a new one at every boot).
 * Where there is none (not Linux), a random id: no other process will claim to share the clock,
 * and stamps fall back to relative delays.
 */
export function machineClockDomain(): Uint8Array {
  try {
    const hex = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().replaceAll('-', '');
    if (/^[0-9a-f]{32}$/i.test(hex)) return Buffer.from(hex, 'hex');
  } catch {
    // not Linux: fall through
  }
  return randomBytes(16);
}

/**
 * What to add to performance.now() to read CLOCK_MONOTONIC, ms. The smallest of a few paired reads,
 * so that a preemption between the two reads does not skew it.
 */
export function machineClockOffsetMs(): number {
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const local = performance.now();
    const shared = Number(process.hrtime.bigint()) / 1e6;
    best = Math.min(best, shared - local);
  }
  return best;
}

/** Arrival stamps on this machine's clock (give the clock reading performance.now(): preciseClock, systemClock). */
export function machineStampOptions(horizonMs = DEFAULT_HORIZON_MS): ArrivalStampOptions {
  return { domain: machineClockDomain(), sharedOffsetMs: machineClockOffsetMs(), horizonMs };
}
