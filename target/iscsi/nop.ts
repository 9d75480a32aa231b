/**
 * Target-initiated NOP-In pings (RFC 7143 §11.19): every interval the target asks for a NOP-Out
 * back. A connection that has neither answered a ping nor sent anything else for `timeoutMs` after
 * it is dead (the initiator vanished without closing TCP) and gets dropped. The timeout is long
 * (120 s by default, where LIO uses 30 s) because single-threaded initiators such as libiscsi's
 * tools only read an idle session's socket when they next use it: iscsi-test-cu parks a second
 * session for seconds and sleeps 60 s between polls of a running SANITIZE. Dropping such a
 * session makes the initiator log in again and meet a fresh POWER ON unit attention, forever.
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
  private pingedAt = 0;

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly host: KeepaliveHost,
    private readonly timeoutMs = Math.max(120_000, intervalMs),
  ) {}

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
    if (this.heard) {
      this.heard = false;
      this.outstanding = NO_TAG; // anything from the initiator answers for it
    } else if (this.outstanding !== NO_TAG && this.clock.now() - this.pingedAt >= this.timeoutMs) {
      this.host.dead();
      return;
    }
    if (this.outstanding === NO_TAG) {
      this.outstanding = this.host.nextTransferTag();
      this.pingedAt = this.clock.now();
      this.host.ping(this.outstanding);
    }
    this.arm();
  }
}
