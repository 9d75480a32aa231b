/** The simulated HAL: virtual time, seeded randomness, in-memory media with latency, faults and power loss. */
export { VirtualClock } from './virtual-clock.js';
export { Random } from './random.js';
export { Simulator, settle, type RunOptions } from './simulator.js';
export { SimDevice, seekLatency, type SimDeviceOptions, type SimOpRecord, type SimDeviceStats, type Latency, type LatencyQuery } from './sim-device.js';
export { SimNetwork, type SimNetworkOptions } from './sim-network.js';
export { SimDatagramNetwork, type SimDatagramOptions } from './sim-datagram.js';
