/**
 * The communication unit (seed [0051], [0066]-[0067], [0132]-[0133]): the controller's outside.
 * Towards the host it offers each storage unit as a `Volume`; it checks the command, appends the
 * command identifier (issuing number, +1 per command, and this unit's id) and hands it to the
 * processing sequencer, which names the buffer area the data goes to.
 *
 * Extension point — relays and peer storage units (000-E1..E4), not built yet: the same unit will
 * send commands to a relay or peer through a PeerLink, with the same command identifiers, in the
 * seed's pattern "write command -> completion of preparation for reception -> data -> completion
 * of reception". attachPeer() is where such a link will be plugged in; the processing sequencer
 * will drive it (E3: complete a host write once both the local medium and the relay are done).
 */
import { allocationStatus } from './allocation.js';
import type { CommandId, ProcessingSequencer } from './processing-sequencer.js';
import { ControllerClosedError } from './processing-sequencer.js';
import type { StorageUnit, StorageUnitStats } from './storage-unit.js';
import type { AllocationExtent, ReadResult, Volume, WriteReservation } from './volume.js';

/** A volume as this controller serves it: the Volume interface, plus discard and identifiers. */
export interface ControllerVolume extends Volume {
  readonly canDiscard: boolean;
  /** The controller (storage unit controller) id that issues this volume's command identifiers. */
  readonly unitId: number;
  prepareWrite(lba: number, blocks: number): Promise<WriteReservation & CommandId>;
  read(lba: number, blocks: number): Promise<ReadResult & CommandId>;
  discard(lba: number, blocks: number): Promise<void>;
  allocationStatus(lba: number, blocks: number): Promise<AllocationExtent[]>;
  stats(): StorageUnitStats;
}

/** Writing to a read-only volume (SCSI: DATA PROTECT / WRITE PROTECTED). */
export class WriteProtectedError extends Error {
  constructor(volume: string) {
    super(`volume ${volume} is read-only`);
    this.name = 'WriteProtectedError';
  }
}

/** The shape of a link to a relay or a peer storage unit (000-E1..E4). Not implemented yet. */
export interface PeerLink {
  /** The peer's unit id. */
  readonly peerId: number;
  /** Send a write command; resolves on the peer's "completion of preparation for reception". */
  prepare(cmd: CommandId, lba: number, blocks: number): Promise<void>;
  /** Send the buffer area's data; resolves on the peer's "completion of reception". */
  send(cmd: CommandId, data: Uint8Array): Promise<void>;
}

export class CommunicationUnit {
  /** Set by the controller's close(): every new command is refused. */
  closed = false;
  private lastIssue = 0;
  private readonly peers = new Map<number, PeerLink>();

  constructor(
    readonly unitId: number,
    private readonly sequencer: ProcessingSequencer,
  ) {}

  /** The next issuing number [0132]. */
  nextIssue(): number {
    return ++this.lastIssue;
  }

  /** The last issuing number handed out (0 before the first command). */
  get issued(): number {
    return this.lastIssue;
  }

  hostVolume(unit: StorageUnit): ControllerVolume {
    return new HostVolume(this, this.sequencer, unit);
  }

  /** Extension point: register a relay / peer link (000-E1..E4). Nothing uses it yet. */
  attachPeer(link: PeerLink): void {
    this.peers.set(link.peerId, link);
  }

  peer(peerId: number): PeerLink | undefined {
    return this.peers.get(peerId);
  }
}

class HostVolume implements ControllerVolume {
  readonly name: string;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly writeCache: boolean;
  readonly readOnly: boolean;
  readonly maxTransferBlocks: number;
  readonly canDiscard: boolean;
  readonly unitId: number;

  constructor(
    private readonly comm: CommunicationUnit,
    private readonly sequencer: ProcessingSequencer,
    private readonly unit: StorageUnit,
  ) {
    this.name = unit.name;
    this.blockSize = unit.blockSize;
    this.blockCount = unit.blockCount;
    this.writeCache = unit.writeCache;
    this.readOnly = unit.readOnly;
    this.maxTransferBlocks = unit.maxTransferBlocks;
    this.canDiscard = unit.canDiscard;
    this.unitId = comm.unitId;
  }

  prepareWrite(lba: number, blocks: number): Promise<WriteReservation & CommandId> {
    const err = this.check(lba, blocks, true, true);
    if (err) return Promise.reject(err);
    return this.sequencer.write(this.unit, this.comm.unitId, this.comm.nextIssue(), lba, blocks);
  }

  read(lba: number, blocks: number): Promise<ReadResult & CommandId> {
    const err = this.check(lba, blocks, false, true);
    if (err) return Promise.reject(err);
    return this.sequencer.read(this.unit, this.comm.unitId, this.comm.nextIssue(), lba, blocks);
  }

  flush(): Promise<void> {
    if (this.comm.closed) return Promise.reject(new ControllerClosedError());
    return this.sequencer.flush(this.unit, this.comm.unitId, this.comm.nextIssue());
  }

  discard(lba: number, blocks: number): Promise<void> {
    const err = this.check(lba, blocks, true, false);
    if (err) return Promise.reject(err);
    return this.sequencer.discard(this.unit, this.comm.unitId, this.comm.nextIssue(), lba, blocks);
  }

  allocationStatus(lba: number, blocks: number): Promise<AllocationExtent[]> {
    const err = this.check(lba, blocks, false, false);
    if (err) return Promise.reject(err);
    return allocationStatus(this.unit, lba, blocks);
  }

  stats(): StorageUnitStats {
    return this.unit.stats();
  }

  private check(lba: number, blocks: number, write: boolean, buffered: boolean): Error | null {
    if (this.comm.closed) return new ControllerClosedError();
    if (write && this.readOnly) return new WriteProtectedError(this.name);
    if (!Number.isSafeInteger(lba) || !Number.isSafeInteger(blocks) || lba < 0 || blocks < 1 || lba + blocks > this.blockCount) {
      return new RangeError(`volume ${this.name}: ${blocks} blocks at LBA ${lba} is outside 0..${this.blockCount}`);
    }
    if (buffered && blocks > this.maxTransferBlocks) {
      return new RangeError(`volume ${this.name}: ${blocks} blocks exceed the maximum transfer of ${this.maxTransferBlocks}`);
    }
    return null;
  }
}
