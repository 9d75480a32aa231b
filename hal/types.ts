export type { Clock, Timer } from './clock.js';
export type { BlockDevice, WriteOptions, DeviceOp } from './block-device.js';
export { DeviceError } from './block-device.js';
export type { StreamTransport, StreamHandler, StreamListener, Network } from './transport.js';

/** Leveled structured logging, as the HAL provides it (pino on the real HAL). */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: object): Logger;
}

export const nullLogger: Logger = {
  debug() {}, info() {}, warn() {}, error() {},
  child() { return nullLogger; },
};
