import { pino } from 'pino';
import type { Logger } from './types.js';

/** pino JSON lines on stdout (or another fd), adapted to the HAL's Logger. */
export function createLogger(options: { level?: string; name?: string; fd?: number } = {}): Logger {
  const destination = pino.destination({ fd: options.fd ?? 1, sync: false });
  return pino({ level: options.level ?? 'info', name: options.name, base: { pid: process.pid } }, destination) as unknown as Logger;
}
