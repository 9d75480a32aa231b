/**
 * Battery-backed memory for the real HAL (seed 000-NV: "a memory with battery backup"): a file the
 * relay writes and never flushes. A write() that returned is in the machine's memory (the file's
 * page cache), which outlives the process that wrote it: a relay killed with SIGKILL, crashed or
 * restarted finds every record again, as a battery-backed board outlives a controller reset. What it
 * does not outlive is the machine: a power loss or kernel crash before the kernel wrote the pages
 * back loses them, as a flat battery would. So an append is durable against the failures kura
 * emulates for a relay (its process dying) without a flush on the acknowledgement's path.
 */
import type { BlockDevice } from './block-device.js';

/** `device` with its writes counted as stored (volatileCache false) and flush() a no-op. */
export function batteryBacked(device: BlockDevice): BlockDevice {
  return {
    name: `${device.name} (battery-backed memory)`,
    size: device.size,
    volatileCache: false,
    canDiscard: device.canDiscard,
    read: (offset, into) => device.read(offset, into),
    write: (offset, from) => device.write(offset, from),
    flush: () => Promise.resolve(),
    discard: (offset, length) => device.discard(offset, length),
    close: () => device.close(),
  };
}
