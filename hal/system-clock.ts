/**
 * The real HAL's Clock: the process's monotonic clock and Node timers.
 */
import type { Clock, Timer } from './clock.js';

export const systemClock: Clock = {
  // performance.now() is monotonic with sub-microsecond resolution; Date.now() jumps with NTP.
  now: () => performance.now(),
  wallTime: () => Date.now(),
  setTimer(ms: number, fn: () => void): Timer {
    // Not unref'd: protocol timers (NOP-In, login and task timeouts) must keep the process alive
    // for as long as they are armed; whoever owns one cancels it on shutdown.
    const handle = setTimeout(fn, Math.max(0, ms));
    return { cancel: () => clearTimeout(handle) };
  },
};
