/** WAN link emulation: profiles, the sans-IO link model, and the stream / datagram adapters. */
export * from './profiles.js';
export { LinkModel, STREAM_RESET, PARTITION_HELD, type StreamFlow, type DatagramDelivery, type DatagramFate, type DatagramSend, type OutageWindow, type LinkStats, type LinkEvent, type LinkModelOptions } from './link-model.js';
export { lossProcess, jitterSampler, GilbertElliott, type LossProcess } from './impairments.js';
export { WanLinks, linkTable, seedFor, type ConnInfo, type LinkChoice, type LinkSelector, type LinkRule, type WanLinksOptions } from './links.js';
export { WanStream, errno, type WanStreamOptions } from './wan-stream.js';
export { WanNetwork } from './wan-network.js';
export { measureRtt, measureThroughput, calibrateTransportLatency, startEchoServer, startSourceServer, withServices, percentile, type RttResult, type ThroughputResult } from './wan-accuracy.js';
export { WanDatagramNetwork, type WanDatagramOptions } from './wan-datagram.js';
