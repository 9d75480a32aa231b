/** A topology volume's `forwarding` setting (000-NV) as the relay's ForwardingPolicy. */
import {
  DelayPolicy, ImmediatePolicy, LoadBelowPolicy, PullPolicy, SpillPolicy, TimeOfDayPolicy, type ForwardingPolicy,
} from '../firmware/relay/forwarding-policy.js';
import type { Topology } from './topology.js';

export type ForwardingConfig = Topology['volumes'][number]['forwarding'];

export function forwardingPolicy(f: ForwardingConfig): ForwardingPolicy {
  switch (f.policy) {
    case 'immediate':
      return new ImmediatePolicy();
    case 'load-below':
      return new LoadBelowPolicy(f.thresholdBps / 8);
    case 'delay':
      return new DelayPolicy(f.afterMs);
    case 'time-of-day': {
      const [h, m] = f.at.split(':').map(Number);
      return new TimeOfDayPolicy(h! * 60 + m!, 0);
    }
    case 'pull':
      return new PullPolicy();
    case 'spill':
      return new SpillPolicy(f.thresholdBps / 8);
  }
}
