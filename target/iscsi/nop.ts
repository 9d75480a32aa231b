/**
 * Target-initiated NOP-In pings (RFC 7143 §11.19): every interval the target asks for a NOP-Out
 * back. A connection that neither answered the previous ping nor sent anything else for a whole
 * interval is dead (the initiator vanished without closing TCP) and gets dropped.
 */
import type { Clock, Timer } from '../../hal/clock.js';
import { NO_TAG } from './pdu.js';

export interface KeepaliveHost {
  /** Send a NOP-In with this Target Transfer Tag, asking for an answer. */
  ping(ttt: number): void;
  nextTransferTag(): number;
  dead(): void;
}

export class NopKeepalive {
  private timer: Timer | undefined;
  private outstanding = NO_TAG;
  private heard = false;

  constructor(private readonly clock: Clock, private readonly intervalMs: number, private readonly host: KeepaliveHost) {}

  start(): void {
    if (this.intervalMs > 0 && !this.timer) this.arm();
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** Any bytes from the initiator prove it is alive. */
  heardFrom(): void {
    this.heard = true;
  }

  /** A NOP-Out answering a ping (ITT 0xffffffff, our TTT). */
  answered(ttt: number): void {
    if (ttt === this.outstanding) this.outstanding = NO_TAG;
  }

  private arm(): void {
    this.timer = this.clock.setTimer(this.intervalMs, () => this.tick());
  }

  private tick(): void {
    this.timer = undefined;
    if (this.outstanding !== NO_TAG && !this.heard) {
      this.host.dead();
      return;
    }
    this.heard = false;
    if (this.outstanding === NO_TAG) {
      this.outstanding = this.host.nextTransferTag();
      this.host.ping(this.outstanding);
    }
    this.arm();
  }
}
