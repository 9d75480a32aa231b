/**
 * Test support for the relay: the relay process's view of its journal device, which dies with the
 * process. HAL interfaces only (the tests bring the simulator's device).
 */
import { DeviceError, type BlockDevice, type WriteOptions } from '../../hal/block-device.js';

/**
 * The relay process's view of its device. kill() is the process dying with the power: the old
 * journal object can never touch the medium again (its late callbacks find a dead device).
 */
export class ProcessDevice implements BlockDevice {
  private dead = false;
  constructor(readonly dev: BlockDevice) {}
  get name(): string { return this.dev.name; }
  get size(): number { return this.dev.size; }
  get volatileCache(): boolean { return this.dev.volatileCache; }
  get canDiscard(): boolean { return this.dev.canDiscard; }
  kill(): void { this.dead = true; }
  private gone(op: 'read' | 'write' | 'flush' | 'discard', offset: number, length: number): Promise<void> {
    return Promise.reject(new DeviceError(op, offset, length, 'EBADF', 'process is dead'));
  }
  read(offset: number, into: Uint8Array): Promise<void> { return this.dead ? this.gone('read', offset, into.length) : this.dev.read(offset, into); }
  write(offset: number, from: Uint8Array, o?: WriteOptions): Promise<void> { return this.dead ? this.gone('write', offset, from.length) : this.dev.write(offset, from, o); }
  flush(): Promise<void> { return this.dead ? this.gone('flush', 0, 0) : this.dev.flush(); }
  discard(offset: number, length: number): Promise<void> { return this.dead ? this.gone('discard', offset, length) : this.dev.discard(offset, length); }
  close(): Promise<void> { return Promise.resolve(); }
}
