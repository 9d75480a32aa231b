/**
 * Task management functions (RFC 7143 §11.5, SAM-5 §7). The transport owns the tasks, so it does
 * the aborting; resets are forwarded to the device server. Aborted tasks get no response.
 */
import type { DeviceServer } from '../scsi/task.js';
import { TmfFunction, TmfResponse, decodeLun } from './pdu.js';
import type { ScsiCommand } from './scsi-command.js';
import { snLe, snLt } from './serial.js';
import type { Session } from './session.js';

/**
 * Device servers may say which LUNs exist; without that every LUN is taken to exist.
 * (Optional so that any DeviceServer works; see the report to the lead.)
 */
type LunAware = DeviceServer & { hasLun?(lun: number): boolean };

export interface TmfOutcome {
  response: number;
  /** Work to do once the response is on the wire (TARGET COLD RESET drops every connection). */
  after?: () => void;
}

/** Execute the TMF in `bhs` for `session`; `peers` lists every session of the same target. */
export function performTmf(session: Session, bhs: Buffer, peers: () => Iterable<Session>): TmfOutcome {
  const fn = bhs[1] & 0x7f;
  const lun = decodeLun(bhs);
  const refTag = bhs.readUInt32BE(20);
  const cmdSN = bhs.readUInt32BE(24);
  const refCmdSN = bhs.readUInt32BE(32);
  const ds = session.deviceServer as LunAware;
  const nexus = session.nexus;
  // Tasks that reached us before this TMF; later ones are not its business.
  const before = (t: ScsiCommand): boolean => t.immediate || snLt(t.cmdSN, cmdSN);
  const lunExists = (): boolean => ds.hasLun?.(lun) ?? true;
  const everywhere = (match: (t: ScsiCommand, own: boolean) => boolean): void => {
    for (const s of peers()) s.abortTasks((t) => match(t, s === session), true);
  };

  switch (fn) {
    case TmfFunction.ABORT_TASK: {
      const task = session.tasks.get(refTag);
      if (task) {
        task.abort();
        ds.taskAborted?.(task);
        return { response: TmfResponse.FUNCTION_COMPLETE };
      }
      // §11.5.1 b): a command not received yet but inside the window is considered received
      // (and so will never run); outside the window the task simply does not exist.
      if (snLe(session.expCmdSN, refCmdSN) && snLt(refCmdSN, cmdSN) && session.inWindow(refCmdSN) && !session.isHeld(refCmdSN)) {
        session.sequence(refCmdSN, () => {});
        return { response: TmfResponse.FUNCTION_COMPLETE };
      }
      return { response: TmfResponse.TASK_DOES_NOT_EXIST };
    }
    case TmfFunction.ABORT_TASK_SET:
      if (!lunExists()) return { response: TmfResponse.LUN_DOES_NOT_EXIST };
      session.abortTasks((t) => t.lun === lun && before(t), true);
      return { response: TmfResponse.FUNCTION_COMPLETE };
    case TmfFunction.CLEAR_TASK_SET:
      if (!lunExists()) return { response: TmfResponse.LUN_DOES_NOT_EXIST };
      everywhere((t, own) => t.lun === lun && (!own || before(t)));
      return { response: TmfResponse.FUNCTION_COMPLETE };
    case TmfFunction.LOGICAL_UNIT_RESET:
      if (!lunExists()) return { response: TmfResponse.LUN_DOES_NOT_EXIST };
      everywhere((t) => t.lun === lun);
      guard(session, () => ds.lunReset(lun, nexus));
      return { response: TmfResponse.FUNCTION_COMPLETE };
    case TmfFunction.TARGET_WARM_RESET:
    case TmfFunction.TARGET_COLD_RESET: {
      everywhere(() => true);
      guard(session, () => ds.targetReset(nexus));
      if (fn === TmfFunction.TARGET_WARM_RESET) return { response: TmfResponse.FUNCTION_COMPLETE };
      // A cold reset also ends every connection to the target, ours included, after answering.
      return {
        response: TmfResponse.FUNCTION_COMPLETE,
        after: () => {
          for (const s of [...peers()]) s.close('target cold reset');
        },
      };
    }
    case TmfFunction.TASK_REASSIGN:
      // Task reassignment needs ErrorRecoveryLevel 2.
      return { response: TmfResponse.REASSIGNMENT_NOT_SUPPORTED };
    default:
      // CLEAR ACA included: the device servers do not support NACA=1.
      return { response: TmfResponse.NOT_SUPPORTED };
  }
}

function guard(session: Session, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    session.log.error({ err: e }, 'device server task management call threw');
  }
}
