/**
 * Assembles a controller node from its configuration: opens the media on the real HAL, builds the
 * seed-000 controller firmware with one storage unit per volume, puts a SCSI device server per
 * target in front, and serves iSCSI on every portal. Owns the shutdown order (stop accepting,
 * finish sessions, flush the firmware, close media) so that nothing acknowledged is lost.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BlockDevice } from '../hal/block-device.js';
import type { Logger } from '../hal/types.js';
import { systemClock } from '../hal/system-clock.js';
import { openFileDevice } from '../hal/file-device.js';
import { MemoryDevice } from '../hal/memory-device.js';
import { connectNbd } from '../hal/nbd-device.js';
import { startStorageDaemon } from '../hal/qemu-storage-daemon.js';
import { JsonStateStore } from '../hal/state-store.js';
import { tcpNetwork } from '../hal/tcp.js';
import type { StreamListener } from '../hal/transport.js';
import { createController, type ControllerVolume } from '../firmware/controller.js';
import type { Volume } from '../firmware/volume.js';
import { ScsiDeviceServer, type LogicalUnitConfig } from '../target/scsi/device-server.js';
import { LuRegistry } from '../target/scsi/lu-registry.js';
import { IscsiServer } from '../target/iscsi/iscsi-server.js';
import type { ReservationStore } from '../target/scsi/reservations.js';
import type { BackingConfig, NodeConfig, VolumeConfig } from './config.js';

export interface RunningNode {
  readonly urls: string[];
  readonly listeners: StreamListener[];
  readonly volumes: Map<string, ControllerVolume>;
  readonly iscsi: IscsiServer;
  stop(): Promise<void>;
}

interface OpenedMedium {
  device: BlockDevice;
  /** Extra teardown beyond device.close() (e.g. stopping qemu-storage-daemon). */
  after?: () => Promise<void>;
}

async function openMedium(backing: BackingConfig, name: string, size: number, runDir: string, logger: Logger): Promise<OpenedMedium> {
  switch (backing.type) {
    case 'file':
      return { device: await openFileDevice(backing.path, { size, create: true, writeCache: backing.writeCache, io: backing.io, logger }) };
    case 'memory':
      return { device: new MemoryDevice(name, size) };
    case 'nbd':
      return { device: await connectNbd({ socketPath: backing.socketPath, host: backing.host, port: backing.port, exportName: backing.exportName }) };
    case 'image': {
      const daemon = await startStorageDaemon({ image: backing.path, format: backing.format, runDir, exportName: name, cache: backing.cache, size });
      try {
        const device = await connectNbd({ socketPath: daemon.socketPath, exportName: daemon.exportName });
        return { device, after: () => daemon.stop() };
      } catch (err) {
        await daemon.stop();
        throw err;
      }
    }
  }
}

/** Bytes each medium must hold for the volume's layout. */
function mediumSize(v: VolumeConfig, count: number): number {
  if (v.layout !== 'stripe') return v.size;
  const units = Math.ceil(v.size / v.stripeSize);
  return Math.ceil(units / count) * v.stripeSize;
}

/** A stable identity per volume: the same serial and NAA id across restarts (hosts key multipath on them). */
export function identity(nodeName: string, v: Pick<VolumeConfig, 'name' | 'serial'>): { serial: string; naa: bigint } {
  const digest = createHash('sha256').update(`${nodeName}/${v.name}`).digest();
  // NAA 6 (IEEE Registered Extended, 128 bits): the 4-bit NAA field, then OUI, vendor id and extension from the digest.
  const naa = (6n << 124n) | (BigInt(`0x${digest.subarray(0, 16).toString('hex')}`) & ((1n << 124n) - 1n));
  return { serial: v.serial ?? `KURA${digest.toString('hex').slice(0, 16).toUpperCase()}`, naa };
}

/** APTPL state of one target's LUNs: <dataDir>/state/pr-<target>-lun<n>.json. */
function reservationStore(states: JsonStateStore, targetName: string): ReservationStore {
  const name = (lun: number) => `pr-${encodeURIComponent(targetName)}-lun${lun}`;
  return { load: (lun) => states.load(name(lun)), save: (lun, data) => states.save(name(lun), data) };
}

export interface ControllerNodeHooks {
  /** The controller's unit id (the source of command identifiers); default 1. */
  unitId?: number;
  /** What hosts see of each volume (replication puts its faces here: cli/topology-node.ts). */
  wrapVolume?: (name: string, volume: ControllerVolume) => ControllerVolume;
  /**
   * LUs EXTENDED COPY may name as a destination without being exported here: a replicated
   * volume's remote copy (000-E1 backup), under the identity its own node gives it.
   */
  copyDestinations?: Array<{ volume: Volume; nodeName: string; volumeName: string }>;
}

export async function startControllerNode(config: NodeConfig, logger: Logger, hooks: ControllerNodeHooks = {}): Promise<RunningNode> {
  mkdirSync(config.node.dataDir, { recursive: true });
  const runDir = join(config.node.dataDir, 'run');
  mkdirSync(runDir, { recursive: true });

  const opened: OpenedMedium[] = [];
  const closeMedia = async () => {
    for (const m of opened.splice(0).reverse()) {
      await m.device.close().catch((err: Error) => logger.error({ err }, 'closing medium failed'));
      await m.after?.().catch((err: Error) => logger.error({ err }, 'stopping medium helper failed'));
    }
  };

  const controller = createController({ clock: systemClock, logger: logger.child({ module: 'firmware' }), bufferBytes: config.bufferMemory, unitId: hooks.unitId });
  const volumes = new Map<string, ControllerVolume>();
  try {
    for (const v of config.volumes) {
      const backings = v.media ?? [v.backing!];
      const size = mediumSize(v, backings.length);
      const media: BlockDevice[] = [];
      for (const [i, b] of backings.entries()) {
        const m = await openMedium(b, backings.length > 1 ? `${v.name}.${i}` : v.name, size, runDir, logger.child({ volume: v.name }));
        opened.push(m);
        if (m.device.size < size) {
          throw new Error(`volume "${v.name}": medium ${i} (${m.device.name}) holds ${m.device.size} bytes, the volume needs ${size}`);
        }
        media.push(m.device);
      }
      const added = controller.addVolume({
        name: v.name,
        blockSize: v.blockSize,
        blockCount: v.size / v.blockSize,
        media,
        layout: v.layout,
        stripeBlocks: v.stripeSize / v.blockSize,
        scheduler: v.scheduler,
        mediumQueueDepth: v.mediumQueueDepth,
        readOnly: v.readOnly,
      });
      volumes.set(v.name, hooks.wrapVolume?.(v.name, added) ?? added);
    }
  } catch (err) {
    await closeMedia();
    throw err;
  }

  const volumeConfigs = new Map(config.volumes.map((v) => [v.name, v]));
  // Each portal is its own target portal group, i.e. its own SCSI target port, unless told otherwise.
  const portals = config.portals.map((p, i) => ({ host: p.host, port: p.port, portalGroupTag: p.portalGroupTag ?? i + 1 }));
  const targetPorts = [...new Set(portals.map((p) => p.portalGroupTag))];
  const states = new JsonStateStore(join(config.node.dataDir, 'state'));
  const deviceServers: ScsiDeviceServer[] = [];
  // EXTENDED COPY reaches every LU of the node, whichever target the command came through.
  const copyTargets = new LuRegistry();
  try {
    for (const t of config.targets) {
      const luns = new Map<number, LogicalUnitConfig>();
      for (const l of t.luns) {
        const id = identity(config.node.name, volumeConfigs.get(l.volume)!);
        const v = volumeConfigs.get(l.volume)!;
        const volume = volumes.get(l.volume)!;
        if (v.thin && !volume.canDiscard) {
          throw new Error(`volume "${v.name}": thin provisioning needs media that deallocate on discard, and ${v.media ? 'one of its media' : 'its medium'} cannot (see the log above)`);
        }
        luns.set(l.lun, { volume, serial: id.serial, naa: id.naa, thin: v.thin, sanitizeRate: v.sanitizeRate });
      }
      const ds = new ScsiDeviceServer({
        luns, targetName: t.name, clock: systemClock, logger: logger.child({ module: 'scsi', target: t.name }),
        targetPorts, reservationStore: reservationStore(states, t.name), copyTargets,
      });
      await ds.restore().catch((err: Error) => {
        throw new Error(`${err.message} (APTPL state is kept in ${states.dir})`, { cause: err });
      });
      deviceServers.push(ds);
    }
    for (const [i, d] of (hooks.copyDestinations ?? []).entries()) {
      const id = identity(d.nodeName, { name: d.volumeName });
      // Registering in copyTargets is all this device server is for: no target exports it.
      new ScsiDeviceServer({
        luns: new Map([[0, { volume: d.volume, serial: id.serial, naa: id.naa }]]), targetName: `copy-destination-${i}`, clock: systemClock,
        logger: logger.child({ module: 'scsi', copyDestination: `${d.nodeName}/${d.volumeName}` }), targetPorts, copyTargets,
      });
    }
  } catch (err) {
    await controller.close();
    await closeMedia();
    throw err;
  }
  const iscsi = new IscsiServer({
    clock: systemClock,
    logger: logger.child({ module: 'iscsi' }),
    portals,
    discoveryChap: config.discoveryChap,
    digests: config.digests,
    nopInIntervalMs: config.nopInInterval,
    nopInTimeoutMs: config.nopInTimeout,
    targets: config.targets.map((t, i) => ({
      name: t.name,
      alias: t.alias,
      allowedInitiators: t.acl,
      chap: t.chap,
      mutualChap: t.mutualChap,
      digests: t.digests,
      deviceServer: deviceServers[i]!,
    })),
  });

  const listeners: StreamListener[] = [];
  try {
    for (const p of portals) listeners.push(await tcpNetwork.listen(p.host, p.port, (t) => iscsi.accept(t, p.portalGroupTag)));
  } catch (err) {
    for (const l of listeners) await l.close();
    await controller.close();
    await closeMedia();
    throw err;
  }

  const urls: string[] = [];
  for (const l of listeners) {
    for (const t of config.targets) {
      for (const lun of t.luns) urls.push(`iscsi://${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}/${t.name}/${lun.lun}`);
    }
  }

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      for (const l of listeners) await l.close().catch(() => {});
      await iscsi.shutdown();
      await controller.close();
      await closeMedia();
    })();
    return stopping;
  };
  return { urls, listeners, volumes, iscsi, stop };
}
