/**
 * Whether a SANITIZE is running on the LU or has failed (SBC-4 4.11). While one runs, every
 * command but INQUIRY, REPORT LUNS and REQUEST SENSE is NOT READY, SANITIZE IN PROGRESS with a
 * progress indication; after one failed they get MEDIUM ERROR, SANITIZE COMMAND FAILED until a
 * SANITIZE succeeds or EXIT FAILURE MODE (if the failed one allowed it: AUSE) clears the state.
 * Resets and lost nexuses do not stop or clear it.
 */
import type { CommandDescriptor } from './command.js';
import { Asc, CheckCondition, SenseKey, type SenseSpec } from './sense.js';

const SANITIZE = 0x48;

export class SanitizeState {
  private running: { done: number; total: number } | undefined;
  private failure: { ause: boolean } | undefined;

  get inProgress(): boolean {
    return this.running !== undefined;
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Whether a failed sanitize allows EXIT FAILURE MODE. */
  get exitAllowed(): boolean {
    return this.failure?.ause ?? false;
  }

  begin(total: number): void {
    this.running = { done: 0, total: Math.max(1, total) };
  }

  progress(done: number): void {
    if (this.running) this.running.done = done;
  }

  finish(ok: boolean, ause: boolean): void {
    this.running = undefined;
    this.failure = ok ? undefined : { ause };
  }

  exitFailureMode(): void {
    this.failure = undefined;
  }

  /** The sense data the state stands for (REQUEST SENSE reports it with GOOD), or undefined. */
  sense(): SenseSpec | undefined {
    if (this.running) {
      return { key: SenseKey.NOT_READY, asc: Asc.NOT_READY_SANITIZE_IN_PROGRESS, progress: (this.running.done / this.running.total) * 0x10000 };
    }
    if (this.failure) return { key: SenseKey.MEDIUM_ERROR, asc: Asc.SANITIZE_COMMAND_FAILED };
    return undefined;
  }

  /** The CHECK CONDITION that refuses `cmd` now, or undefined when it may run. */
  refusal(cmd: CommandDescriptor): CheckCondition | undefined {
    if (!this.running && !this.failure) return undefined;
    // The three commands SPC-4 lets through unit attentions are the ones SBC-4 lets through here.
    if (cmd.bypassesUnitAttention) return undefined;
    if (!this.running && cmd.opcode === SANITIZE) return undefined;
    return new CheckCondition(this.sense()!);
  }
}
