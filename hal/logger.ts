import { pino } from 'pino';
import type { Logger } from './types.js';

/** Lines held while the log cannot be written (a full disk); later ones are dropped. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/**
 * pino JSON lines on stdout (or another fd), adapted to the HAL's Logger.
 *
 * A log that cannot be written must not stop the node. With a full disk under the log file, pino's
 * stream emitted an 'error' nobody listened to; the process began to exit and pino's exit hook
 * retried the final flush every 100 ms for good: the node hung, neither serving nor gone. Here a
 * failed write leaves its lines buffered (up to MAX_BUFFERED_BYTES, then new lines are dropped), the
 * next line tries again, and at exit the final flush is skipped while writes fail.
 */
export function createLogger(options: { level?: string; name?: string; fd?: number } = {}): Logger {
  const destination = pino.destination({ fd: options.fd ?? 1, sync: false, maxLength: MAX_BUFFERED_BYTES });
  let failing = false;
  destination.on('error', () => {
    failing = true;
  });
  destination.on('write', () => {
    failing = false;
  });
  const flushSync = destination.flushSync.bind(destination);
  destination.flushSync = () => {
    if (!failing) flushSync();
  };
  return pino({ level: options.level ?? 'info', name: options.name, base: { pid: process.pid } }, destination) as unknown as Logger;
}
