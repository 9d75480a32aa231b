/**
 * Time as the firmware sees it. The real HAL backs it with the process's monotonic clock and
 * timers; the simulated HAL with a virtual clock that only moves when the simulator says so,
 * which is what makes whole-topology tests deterministic.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Monotonic time in milliseconds (fractional: microsecond resolution or better). */
  now(): number;
  /** Wall-clock time, milliseconds since the Unix epoch (time-of-day policies, logs). */
  wallTime(): number;
  /** Run `fn` once after `ms` milliseconds. */
  setTimer(ms: number, fn: () => void): Timer;
}
