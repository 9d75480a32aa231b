/**
 * The boundary between a SCSI transport (iSCSI here) and the SCSI device server. The transport
 * builds a ScsiTask per command, calls LogicalUnit.execute, and turns the ScsiResult into
 * Data-In / SCSI Response PDUs. Data-Out flows through TaskIo.receiveData, which the device server
 * calls only once it has a buffer area for the data: that call is what lets iSCSI send R2T (the
 * seed's "completion of preparation for reception").
 */

/** The I_T nexus the task arrived on: reservations, unit attentions and ACLs key on it. */
export interface Nexus {
  /** Stable id of this I_T nexus: nexusId(initiatorPort, relativeTargetPort). */
  readonly id: string;
  readonly initiatorName: string;
  /** SCSI initiator port name; for iSCSI "<initiator name>,i,0x<ISID>" (RFC 7143 §4.4.1). */
  readonly initiatorPort: string;
  /** Relative target port identifier (1-based) for VPD 83 / ALUA. */
  readonly relativeTargetPort: number;
}

/**
 * The one way a nexus id is formed. Persistent reservations rely on it: REGISTER AND MOVE names
 * a nexus by TransportID and port, and APTPL state keys registrations by id across restarts.
 */
export function nexusId(initiatorPort: string, relativeTargetPort: number): string {
  return `${initiatorPort}|${relativeTargetPort}`;
}

export type TaskAttribute = 'simple' | 'ordered' | 'head-of-queue' | 'aca';

export interface ScsiTask {
  readonly nexus: Nexus;
  readonly lun: number;
  readonly cdb: Uint8Array;
  readonly attribute: TaskAttribute;
  /** Initiator-supplied tag (ITT), for abort and logs. */
  readonly tag: number;
  /** Expected Data Transfer Length from the transport (bytes), and its direction flags. */
  readonly expectedLength: number;
  readonly dataIn: boolean;
  readonly dataOut: boolean;
}

export class TaskAbortedError extends Error {
  constructor() {
    super('task aborted');
    this.name = 'TaskAbortedError';
  }
}

export interface TaskIo {
  /**
   * Fill `into` with the next `into.length` bytes of the task's Data-Out (immediate, unsolicited,
   * then solicited through R2T). Rejects with TaskAbortedError if the task is aborted or the
   * connection drops. May be called more than once (sequential pieces of the Data-Out buffer).
   */
  receiveData(into: Uint8Array): Promise<void>;
  /** True once the task has been aborted; long-running work should check it and stop. */
  readonly aborted: boolean;
}

export const Status = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  CONDITION_MET: 0x04,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
  ACA_ACTIVE: 0x30,
  TASK_ABORTED: 0x40,
} as const;

export interface ScsiResult {
  status: number;
  /** Fixed-format sense data, with CHECK CONDITION. */
  sense?: Uint8Array;
  /** Data-In payload, at most the allocation length; the transport computes residuals. */
  data?: Uint8Array;
  /** Called by the transport once `data` has been sent (returns a buffer area to the pool). */
  release?: () => void;
  /**
   * SCSI-presented data transfer length in bytes, set when a Data-Out command was refused before
   * any of its data was requested because the Expected Data Transfer Length is shorter than what
   * the CDB asks for: the transport reports the overflow residual against it (RFC 7143 11.4.5.2).
   */
  spdtl?: number;
}

/** A device server for one LUN as the transport sees it. */
export interface LogicalUnit {
  execute(task: ScsiTask, io: TaskIo): Promise<ScsiResult>;
}

/** Task management functions the transport forwards to the device server. */
export interface TaskManagement {
  /** LUN RESET: abort every task of the LU, clear reservations per SPC, set a unit attention. */
  lunReset(lun: number, from: Nexus): void;
  /** TARGET WARM RESET: the same for every LU. */
  targetReset(from: Nexus): void;
  /** The I_T nexus is gone (session closed / reinstated / connection dropped at ERL 0). */
  nexusLost(nexus: Nexus): void;
}

/**
 * The SCSI target device behind one iSCSI target: routes tasks by LUN (REPORT LUNS and unknown
 * LUNs included) and takes task management. Built by target/scsi/device-server.ts.
 */
export interface DeviceServer extends TaskManagement {
  execute(task: ScsiTask, io: TaskIo): Promise<ScsiResult>;
  /** ABORT TASK / ABORT TASK SET / CLEAR TASK SET are handled by the transport (it owns the tasks);
   * it tells the device server so it can drop per-task state. */
  taskAborted?(task: ScsiTask): void;
  /** Whether a logical unit exists at `lun` (TMFs to other LUNs answer LUN DOES NOT EXIST). */
  hasLun?(lun: number): boolean;
  /** The transport hands over what the device server may ask of it (called once, at setup). */
  attach?(owner: TaskOwner): void;
}

/** What a device server may ask of the transport that owns the tasks. */
export interface TaskOwner {
  /** Abort the tasks of these I_T nexuses at `lun`, without a response (PREEMPT AND ABORT). */
  abortTasks(lun: number, nexusIds: ReadonlySet<string>): void;
}
