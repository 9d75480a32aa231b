import { expect } from 'chai';
import { SimDevice, Simulator } from '../../hal/sim/index.js';
import type { CommandId } from '../processing-sequencer.js';
import { PeerError, WriteRefusal } from '../peer/errors.js';
import { ErrorCode } from '../peer/frame.js';
import type { Durability, InboundWrite, PeerHandler, PeerLinkOptions, WriteRequest } from '../peer/peer-link.js';
import type { PipeOptions } from '../peer/sim-pipe.js';
import { bytesFrom, linkPair, memoryLogger, type LinkPair, type LogRecord } from '../peer/test-fixture.js';
import { DelayPolicy, ImmediatePolicy, LoadBelowPolicy, PullPolicy, SpillPolicy, TimeOfDayPolicy, type ForwardingPolicy } from './forwarding-policy.js';
import { DeviceJournal } from './journal.js';
import type { RelayJournal } from './journal-types.js';
import { BatteryBackedMemory, MemoryJournal } from './memory-journal.js';
import { RelayUnit, type RelayUnitOptions } from './relay-unit.js';
import { ProcessDevice } from './test-fixture.js';

const PRIMARY = 11;
const RELAY = 20;
const SECONDARY = 30;
const HOUR = 3_600_000;

const key = (id: CommandId): string => `${id.sourceUnit}/${id.issue}`;

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 29 + seed * 11) & 0xff;
  return b;
}

/** Resolves once `pred` holds, looking every `stepMs` of virtual time (run it under sim.run). */
function until(sim: Simulator, pred: () => boolean, stepMs = 1): Promise<void> {
  return (async () => {
    while (!pred()) await sim.sleep(stepMs);
  })();
}

/**
 * The secondary as the relay sees it: assembles portions, applies each command identifier once
 * ([0112]), counts every complete copy, and answers 'durable' (held back while `hold()` is on).
 */
class FakeSecondary {
  readonly applied = new Map<string, Buffer>();
  readonly copies = new Map<string, number>();
  readonly portions: Array<{ id: string; volume: number; lba: number; blocks: number; offset: number; length: number; total: number; ack: Durability; at: number }> = [];
  private readonly assembling = new Map<string, { data: Buffer; have: Map<number, number> }>();
  private gate: Promise<void> | null = null;
  private open: () => void = () => {};
  /** Volumes promoted here (kura promote): their writes are refused for good, as the real one does. */
  readonly promoted = new Set<number>();
  readonly handler: PeerHandler = { onWrite: (w) => this.onWrite(w) };

  constructor(private readonly sim: Simulator) {}

  hold(): void {
    this.gate = new Promise((resolve) => { this.open = resolve; });
  }

  letGo(): void {
    this.gate = null;
    this.open();
  }

  private async onWrite(w: InboundWrite): Promise<Durability> {
    if (this.promoted.has(w.volume)) throw new WriteRefusal(ErrorCode.VOLUME_PROMOTED, `volume ${w.volume} was promoted`);
    const id = key(w.id);
    this.portions.push({ id, volume: w.volume, lba: w.lba, blocks: w.blocks, offset: w.portionOffset, length: w.length, total: w.totalLength, ack: w.ack, at: this.sim.now() });
    const a = this.assembling.get(id) ?? { data: Buffer.alloc(w.totalLength), have: new Map<number, number>() };
    this.assembling.set(id, a);
    w.data.copy(a.data, w.portionOffset, 0, w.length);
    a.have.set(w.portionOffset, w.length);
    if ([...a.have.values()].reduce((x, y) => x + y, 0) === w.totalLength) {
      this.assembling.delete(id);
      this.copies.set(id, (this.copies.get(id) ?? 0) + 1);
      if (!this.applied.has(id)) this.applied.set(id, a.data);
    }
    while (this.gate !== null) await this.gate;
    return 'durable';
  }
}

async function deviceJournal(sim: Simulator, o: { latency?: number } = {}) {
  const dev = new SimDevice({ clock: sim.clock, size: 1 << 20, latency: o.latency ?? 0.5, volatileCache: true });
  await sim.run(DeviceJournal.format(dev, { align: 512, journalId: 7 }));
  const proc = new ProcessDevice(dev);
  const { journal } = await sim.run(DeviceJournal.open({ device: proc, clock: sim.clock }));
  return { dev, proc, journal };
}

interface RigOptions {
  sim?: Simulator;
  journal?: RelayJournal;
  policy?: ForwardingPolicy;
  mode?: RelayUnitOptions['mode'];
  unit?: Partial<RelayUnitOptions>;
  secondary?: FakeSecondary;
  secondaryUp?: boolean;
  /** Primary -> relay pipe (default 1 ms) and the relay's side of that link. */
  primaryPipe?: Omit<PipeOptions, 'clock'>;
  relayLink?: Partial<PeerLinkOptions>;
  /** Relay -> secondary pipe (default 10 ms). */
  secondaryPipe?: Omit<PipeOptions, 'clock'>;
}

/** Primary (11) -> relay unit (20) -> fake secondary (30), on simulated pipes. */
async function rig(o: RigOptions = {}) {
  const sim = o.sim ?? new Simulator();
  const random = bytesFrom(() => sim.random.u32());
  const logs: LogRecord[] = [];
  const journal = o.journal ?? MemoryJournal.open(new BatteryBackedMemory(1 << 20), { clock: sim.clock }).journal;
  const sec = o.secondary ?? new FakeSecondary(sim);
  let down: LinkPair | undefined;
  const unit = new RelayUnit({
    clock: sim.clock, logger: memoryLogger(logs), unitId: RELAY, journal, policy: o.policy ?? new ImmediatePolicy(),
    mode: o.mode ?? 'store-and-forward', defaultDestination: SECONDARY,
    downstream: (u) => (u === SECONDARY ? down?.a : undefined),
    ...o.unit,
  });
  const up = linkPair({ clock: sim.clock, random, pipe: { latencyMs: 1, ...o.primaryPipe }, a: { unitId: PRIMARY }, b: { unitId: RELAY, handler: unit.handler, ...o.relayLink } });
  await sim.run(Promise.all([up.a.ready, up.b.ready]));
  /** The relay's link to the secondary comes up; the relay gets told (poke) unless `poke` is false. */
  const connect = async (poke = true): Promise<LinkPair> => {
    const pair = linkPair({
      clock: sim.clock, random, pipe: { latencyMs: 10, ...o.secondaryPipe },
      a: { unitId: RELAY, handler: unit.handler }, b: { unitId: SECONDARY, handler: sec.handler },
    });
    await sim.run(Promise.all([pair.a.ready, pair.b.ready]));
    down = pair;
    if (poke) unit.poke();
    return pair;
  };
  const disconnect = async (): Promise<void> => {
    const d = down;
    down = undefined;
    await d?.a.close();
  };
  if (o.secondaryUp ?? true) await connect(false);
  const write = (i: number, n: number, ack: Durability, extra: Partial<WriteRequest> = {}) =>
    up.a.write({ volume: 1, lba: i * 64, blocks: n / 512, data: pattern(n, i), ack, ...extra });
  return { sim, unit, journal, sec, primary: up.a, relayIn: up.b, connect, disconnect, link: () => down, write, logs };
}

const ids = (...issues: number[]): string[] => issues.map((i) => `${PRIMARY}/${i}`);

describe('relay unit: store-and-forward (000-E1, NV)', () => {
  it('answers "received" before the journal append completes, "durable" only after it', async () => {
    const sim = new Simulator();
    // Device latency 5 ms: an append is a 5 ms write and a 5 ms flush.
    const { journal } = await deviceJournal(sim, { latency: 5 });
    const appendedAt = new Map<string, number>();
    const append = journal.append.bind(journal);
    journal.append = (req) => {
      const p = append(req);
      p.then(() => appendedAt.set(key(req.id), sim.now()), () => {});
      return p;
    };
    const r = await rig({ sim, journal, secondaryUp: false });
    const t0 = sim.now();
    expect(await sim.run(r.write(1, 4096, 'received'))).to.deep.equal({ id: { sourceUnit: PRIMARY, issue: 1 }, durability: 'received' });
    const received = sim.now();
    expect(received - t0).to.equal(2); // one primary <-> relay round trip, no device time
    expect(appendedAt.has('11/1')).to.equal(false);
    await sim.advance(20);
    // ...but it was recorded all the same, since the relay must forward it.
    expect(appendedAt.get('11/1')).to.be.greaterThan(received);

    const t1 = sim.now();
    expect((await sim.run(r.write(2, 4096, 'durable'))).durability).to.equal('durable');
    expect(appendedAt.get('11/2')).to.be.at.least(t1 + 1 + 10);
    expect(sim.now()).to.equal(appendedAt.get('11/2')! + 1); // the answer left when the append resolved
    expect(journal.pending().map((e) => key(e.id))).to.deep.equal(ids(1, 2));

    await r.connect();
    await sim.advance(100);
    expect([...r.sec.applied.keys()]).to.deep.equal(ids(1, 2));
    expect(r.sec.applied.get('11/2')).to.deep.equal(pattern(4096, 2));
    expect(journal.pending()).to.deep.equal([]);
  });

  it('releases a record only on the secondary\'s completion of reception, forwarding it from the buffer', async () => {
    const r = await rig();
    let reads = 0;
    const read = r.journal.read.bind(r.journal);
    r.journal.read = (seq) => { reads++; return read(seq); };
    r.sec.hold();
    const res = await r.sim.run(r.write(1, 8192, 'durable', { fua: true }));
    expect(res).to.deep.equal({ id: { sourceUnit: PRIMARY, issue: 1 }, durability: 'durable' });
    await r.sim.advance(200);
    // The secondary has the data, with the source's identifier, but has not answered yet.
    expect(r.sec.applied.get('11/1')).to.deep.equal(pattern(8192, 1));
    expect(r.sec.portions).to.have.length(1);
    expect(r.sec.portions[0]).to.include({ id: '11/1', volume: 1, lba: 64, blocks: 16, offset: 0, total: 8192, ack: 'durable' });
    expect(r.journal.pending().map((e) => key(e.id))).to.deep.equal(ids(1));
    expect(r.unit.stats()).to.include({ backlogRecords: 1, backlogBytes: 8192, inFlight: 1, forwarded: 0 });
    // The inbound buffer is still held for the forward in flight.
    expect(r.unit.stats().held).to.deep.equal({ writes: 1, bytes: 8192, forwarding: 8192 });

    r.sec.letGo();
    await r.sim.advance(50);
    expect(r.journal.pending()).to.deep.equal([]);
    expect(r.unit.stats()).to.include({ backlogRecords: 0, inFlight: 0, forwarded: 1, forwardedBytes: 8192, recorded: 1 });
    expect(r.unit.stats().held).to.deep.equal({ writes: 0, bytes: 0, forwarding: 0 });
    expect(reads, 'sent from memory, not read back').to.equal(0);
    // Every byte of credit went back to the primary.
    expect(r.primary.credit).to.deep.equal({ bytes: 4 << 20, commands: 64 });
  });

  it('keeps at most holdBytes of inbound buffers for forwarding; the rest is read back from the journal', async () => {
    const r = await rig({ unit: { holdBytes: 4096 } });
    let reads = 0;
    const read = r.journal.read.bind(r.journal);
    r.journal.read = (seq) => { reads++; return read(seq); };
    r.sec.hold();
    await r.sim.run(Promise.all([1, 2, 3].map((i) => r.write(i, 4096, 'durable'))));
    await r.sim.advance(100);
    expect(r.sec.copies.size).to.equal(3);
    expect(reads).to.equal(2);
    expect(r.unit.stats().held).to.deep.equal({ writes: 1, bytes: 4096, forwarding: 4096 });
    // The source has its credit back for all but the one buffer held for the secondary.
    expect(r.primary.credit).to.deep.equal({ bytes: (4 << 20) - 4096, commands: 63 });
    r.sec.letGo();
    await r.sim.advance(50);
    expect(r.journal.pending()).to.deep.equal([]);
    expect(r.unit.stats().held).to.deep.equal({ writes: 0, bytes: 0, forwarding: 0 });
    expect(r.primary.credit).to.deep.equal({ bytes: 4 << 20, commands: 64 });
  });

  it('records a write sent again with the same identifier once', async () => {
    const r = await rig({ secondaryUp: false });
    const id = { sourceUnit: PRIMARY, issue: 77 };
    expect((await r.sim.run(r.write(1, 4096, 'durable', { id }))).durability).to.equal('durable');
    expect((await r.sim.run(r.write(1, 4096, 'durable', { id }))).durability).to.equal('durable');
    expect(r.journal.pending()).to.have.length(1);
    expect(r.unit.stats()).to.include({ received: 2, duplicates: 1, recorded: 1 });
    await r.connect();
    await r.sim.advance(100);
    expect(r.sec.copies.get('11/77')).to.equal(1);
    expect(r.journal.pending()).to.deep.equal([]);
  });

  it('two volumes of one source reuse issue numbers: both writes are recorded and forwarded, neither is a duplicate', async () => {
    // A primary numbers each volume's writes on its own, so volume 1's issue 5 and volume 2's issue
    // 5 are different writes; one held here while the other arrives must not stand for it.
    const r = await rig();
    r.sec.hold();
    const id = { sourceUnit: PRIMARY, issue: 5 };
    const a = await r.sim.run(r.write(1, 4096, 'durable', { id, volume: 1 }));
    const b = await r.sim.run(r.write(2, 4096, 'durable', { id, volume: 2 }));
    expect([a.durability, b.durability]).to.deep.equal(['durable', 'durable']);
    expect(r.journal.pending().map((e) => [e.volume, key(e.id)])).to.deep.equal([[1, '11/5'], [2, '11/5']]);
    expect(r.unit.stats()).to.include({ received: 2, duplicates: 0, recorded: 2 });
    r.sec.letGo();
    await r.sim.advance(100);
    expect(r.sec.portions.map((p) => [p.volume, p.id, p.lba])).to.deep.equal([[1, '11/5', 64], [2, '11/5', 128]]);
    expect(r.journal.pending()).to.deep.equal([]);
    expect(r.unit.stats()).to.include({ forwarded: 2 });
  });

  it('keeps accepting while the secondary is down; drains after a retry delay, or at once when poked', async () => {
    const r = await rig({ secondaryUp: false, unit: { retryMs: 500 } });
    const first = await r.sim.run(Promise.all(Array.from({ length: 10 }, (_, i) => r.write(i + 1, 4096, 'durable'))));
    expect(first.every((x) => x.durability === 'durable')).to.equal(true);
    await r.sim.advance(2000);
    expect(r.unit.stats()).to.include({ backlogRecords: 10, forwarded: 0 });
    expect(r.unit.stats().forwardFailures).to.be.greaterThan(0);
    expect(r.sec.portions).to.deep.equal([]);

    // Back, nobody tells the unit: the next retry finds it.
    await r.connect(false);
    const upAt = r.sim.now();
    await r.sim.run(until(r.sim, () => r.journal.pending().length === 0));
    expect(r.sim.now() - upAt).to.be.at.most(500 + 25);

    // Down again; five more; back with a poke: forwarded at once (one round trip).
    await r.disconnect();
    await r.sim.run(Promise.all(Array.from({ length: 5 }, (_, i) => r.write(11 + i, 4096, 'durable'))));
    expect(r.journal.pending()).to.have.length(5);
    await r.connect(true);
    const pokedAt = r.sim.now();
    await r.sim.run(until(r.sim, () => r.journal.pending().length === 0));
    expect(r.sim.now() - pokedAt).to.be.at.most(25);
    expect([...r.sec.applied.keys()].sort()).to.deep.equal(ids(...Array.from({ length: 15 }, (_, i) => i + 1)).sort());
    expect([...r.sec.copies.values()].every((n) => n === 1)).to.equal(true);
  });
});

describe('relay unit: a destination promoted for a volume (failover)', () => {
  it('gives up the records held for that volume once, saying so once, instead of retrying them for ever; other volumes go on', async () => {
    const r = await rig({ secondaryUp: false, unit: { retryMs: 500 } });
    const w = (i: number, volume: number) => r.write(i, 4096, 'durable', { volume });
    await r.sim.run(Promise.all([1, 2, 3, 4, 5, 6].map((i) => w(i, i <= 4 ? 1 : 2))));
    expect(r.unit.stats()).to.include({ backlogRecords: 6 });
    // Failover: volume 1 is promoted at the secondary (kura promote --force, the relay still held it).
    r.sec.promoted.add(1);
    const failed = r.unit.stats().forwardFailures; // while the secondary was down
    await r.connect(true);
    await r.sim.run(until(r.sim, () => r.journal.pending().length === 0));
    await r.sim.advance(5000);
    const s = r.unit.stats();
    expect(s).to.include({ backlogRecords: 0, givenUp: 4, givenUpBytes: 4 * 4096, forwarded: 2, forwardFailures: failed });
    expect([...r.sec.applied.keys()].sort()).to.deep.equal(ids(5, 6));
    const told = r.logs.filter((l) => /promoted for this volume/.test(String(l.msg)));
    expect(told, 'said once per volume').to.have.length(1);
    expect(r.logs.filter((l) => l.msg === 'forwarding failed; will retry')).to.have.length(failed);
    // Later writes of that volume are given up too; the relay still answers the source.
    const later = await r.sim.run(w(7, 1));
    expect(later.durability).to.equal('durable');
    await r.sim.run(until(r.sim, () => r.journal.pending().length === 0));
    expect(r.unit.stats().givenUp).to.equal(5);
  });
});

describe('relay unit: cut-through (000-E2)', () => {
  it('forwards before the last byte arrived, never past the write position; answers the source at the end', async () => {
    const r = await rig({
      mode: 'cut-through', unit: { portionBytes: 8192 },
      // 100 bytes/ms: the 64 KiB write takes ~655 ms to arrive, in DATA frames of 4 KiB.
      primaryPipe: { latencyMs: 1, bytesPerMs: 100, maxChunk: 2048 }, relayLink: { maxPayload: 4096 }, secondaryPipe: { latencyMs: 5 },
    });
    let inbound: InboundWrite | undefined;
    let lastByteAt = -1;
    const onCommand = r.unit.handler.onCommand!;
    r.unit.handler.onCommand = (w) => {
      inbound = w;
      void w.whenReceived(w.length).then(() => { lastByteAt = r.sim.now(); });
      onCommand(w);
    };
    const out = r.link()!.a;
    const send = out.send.bind(out);
    const sends: Array<{ at: number; end: number; received: number }> = [];
    out.send = (req) => {
      sends.push({ at: r.sim.now(), end: (req.portionOffset ?? 0) + req.data.length, received: inbound!.received });
      return send(req);
    };
    const data = pattern(65536, 3);
    const t0 = r.sim.now();
    const res = await r.sim.run(r.write(3, 65536, 'durable')); // the link's first write: id 11/1
    expect(res.durability).to.equal('durable');
    expect(lastByteAt).to.be.greaterThan(t0 + 600);
    // The source's answer only once all data was in (and recorded).
    expect(r.sim.now()).to.be.at.least(lastByteAt + 1);
    expect(sends.map((s) => s.end)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8].map((k) => k * 8192));
    for (const s of sends) expect(s.end, `portion ending at ${s.end} sent at ${s.at}`).to.be.at.most(s.received);
    expect(sends[0]!.at).to.be.lessThan(lastByteAt - 500);
    expect(r.sec.portions[0]!.at).to.be.lessThan(lastByteAt);
    await r.sim.advance(50);
    expect(r.sec.portions.map((p) => [p.offset, p.length, p.total])).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7].map((k) => [k * 8192, 8192, 65536]));
    expect(r.sec.applied.get('11/1')).to.deep.equal(data);
    // Recorded (a crash would have lost nothing), and released by the unit after the last confirmation.
    expect(r.journal.stats()).to.include({ appends: 1, records: 0 });
    expect(r.unit.stats()).to.include({ cutThrough: 1, cutThroughFallbacks: 0, forwarded: 1, inFlight: 0 });
    expect(r.unit.stats().held).to.deep.equal({ writes: 0, bytes: 0, forwarding: 0 });
  });

  it('falls back to store-and-forward when the destination is down', async () => {
    const r = await rig({ mode: 'cut-through', secondaryUp: false });
    expect((await r.sim.run(r.write(1, 16384, 'durable'))).durability).to.equal('durable');
    expect(r.unit.stats()).to.include({ cutThrough: 0, cutThroughFallbacks: 1, backlogRecords: 1 });
    await r.connect();
    await r.sim.advance(100);
    expect(r.sec.applied.get('11/1')).to.deep.equal(pattern(16384, 1));
    expect(r.journal.pending()).to.deep.equal([]);
  });
});

describe('relay unit: restart (behaviour 6)', () => {
  async function scenario(crashWhileForwarding: boolean) {
    const sim = new Simulator();
    const { dev, proc, journal } = await deviceJournal(sim);
    const r = await rig({ sim, journal, secondaryUp: crashWhileForwarding });
    if (crashWhileForwarding) r.sec.hold();
    const res = await sim.run(Promise.all([1, 2, 3, 4, 5, 6].map((i) => r.write(i, 2048, 'durable'))));
    expect(res.map((x) => x.durability)).to.deep.equal(Array(6).fill('durable'));
    await sim.advance(100);
    expect(r.sec.copies.size).to.equal(crashWhileForwarding ? 6 : 0);
    expect(journal.pending()).to.have.length(6);

    // The relay process dies with the power: its device, its links and its timers go.
    proc.kill();
    dev.crash();
    void r.unit.close();
    await r.primary.close();
    await r.disconnect();
    r.sec.letGo();
    await sim.advance(100);

    // The restarted process recovers its journal and forwards everything in it.
    const { journal: again, recovery } = await sim.run(DeviceJournal.open({ device: new ProcessDevice(dev), clock: sim.clock }));
    expect(recovery.records).to.equal(6);
    const r2 = await rig({ sim, journal: again, secondary: r.sec });
    await sim.run(until(sim, () => again.pending().length === 0 && r2.unit.stats().inFlight === 0));
    expect([...r.sec.applied.keys()].sort()).to.deep.equal(ids(1, 2, 3, 4, 5, 6).sort());
    for (const i of [1, 2, 3, 4, 5, 6]) expect(r.sec.applied.get(`11/${i}`), `data of 11/${i}`).to.deep.equal(pattern(2048, i));
    expect(r2.unit.stats()).to.include({ forwarded: 6, received: 0 });
    return [...r.sec.copies.values()];
  }

  it('killed after answering "durable", before forwarding: the new unit forwards each write exactly once', async () => {
    expect(await scenario(false)).to.deep.equal(Array(6).fill(1));
  });

  it('killed while the secondary had not answered: sent again, and the secondary applies each identifier once', async () => {
    expect(await scenario(true)).to.deep.equal(Array(6).fill(2));
  });
});

describe('relay unit: deferred forwarding policies (behaviour 7)', () => {
  it('load below a threshold: held while its own forwarding keeps the link busy', async () => {
    const threshold = 150_000;
    const r = await rig({ policy: new LoadBelowPolicy(threshold, 50) });
    await r.sim.run(Promise.all([1, 2, 3].map((i) => r.write(i, 65536, 'durable'))));
    const t0 = r.sim.now();
    await r.sim.advance(100);
    expect(r.sec.applied.size).to.equal(3);
    expect(r.unit.stats().load).to.be.greaterThan(threshold);
    await r.sim.run(r.write(4, 4096, 'durable'));
    await r.sim.advance(500);
    expect(r.sec.applied.has('11/4')).to.equal(false);
    expect(r.unit.stats().backlogRecords).to.equal(1);
    await r.sim.run(until(r.sim, () => r.sec.applied.has('11/4')));
    // It left once the 192 KiB had slid out of the meter's one-second window.
    expect(r.sec.portions.find((p) => p.id === '11/4')!.at - 10).to.be.at.least(t0 + 900);
    expect(r.unit.stats().load).to.be.lessThan(threshold);
  });

  it('a preset delay since recording', async () => {
    const r = await rig({ policy: new DelayPolicy(2000) });
    const t0 = r.sim.now();
    await r.sim.run(r.write(1, 4096, 'durable'));
    expect(r.sim.now() - t0).to.equal(2);
    await r.sim.advance(1900);
    expect(r.sec.portions).to.deep.equal([]);
    await r.sim.run(until(r.sim, () => r.sec.applied.has('11/1')));
    // Recorded at t0 + 1, sent 2000 ms later, 10 ms on the way.
    expect(r.sec.portions[0]!.at - t0).to.equal(1 + 2000 + 10);
  });

  it('a time of day: recorded at 01:00, sent at 02:00', async () => {
    const sim = new Simulator({ wallStart: Date.UTC(2030, 0, 1, 1, 0) });
    const r = await rig({ sim, policy: new TimeOfDayPolicy(120) });
    await sim.run(r.write(1, 4096, 'durable'));
    await sim.advance(HOUR - 1000 - sim.now());
    expect(r.sec.portions).to.deep.equal([]);
    await sim.advance(1100);
    expect(r.sec.portions.map((p) => [p.id, p.at])).to.deep.equal([['11/1', HOUR + 10]]);
  });

  it('pulled by the secondary: nothing until it asks, then what it asked for', async () => {
    const r = await rig({ policy: new PullPolicy() });
    await r.sim.run(Promise.all([1, 2, 3].map((i) => r.write(i, 4096, 'durable'))));
    await r.sim.advance(10_000);
    expect(r.sec.portions).to.deep.equal([]);
    r.link()!.b.pull({ maxCommands: 2 });
    await r.sim.advance(100);
    expect([...r.sec.applied.keys()]).to.deep.equal(ids(1, 2));
    expect(r.journal.pending().map((e) => key(e.id))).to.deep.equal(ids(3));
    r.link()!.b.pull();
    await r.sim.advance(100);
    expect([...r.sec.applied.keys()]).to.deep.equal(ids(1, 2, 3));
    expect(r.journal.pending()).to.deep.equal([]);
  });

  it('spill: "received" writes go in step without a record while calm; "durable" ones are always recorded', async () => {
    const r = await rig({ policy: new SpillPolicy(1e9) });
    await r.sim.run(r.write(1, 4096, 'received'));
    await r.sim.advance(50);
    expect(r.sec.applied.has('11/1')).to.equal(true);
    expect(r.journal.stats().appends).to.equal(0);
    expect(r.unit.stats()).to.include({ inStep: 1, forwarded: 1, recorded: 0 });
    await r.sim.run(r.write(2, 4096, 'durable'));
    await r.sim.advance(50);
    expect(r.sec.applied.has('11/2')).to.equal(true);
    expect(r.journal.stats()).to.include({ appends: 1, records: 0 });
    expect(r.unit.stats()).to.include({ inStep: 1, forwarded: 2, recorded: 1 });
  });
});

/** The source's write failed with the relay's per-command error. */
async function failure(p: Promise<unknown>): Promise<PeerError> {
  const e = await p.then(() => null, (x: unknown) => x);
  expect(e).to.be.instanceOf(PeerError);
  return e as PeerError;
}

describe('relay unit: journal failures are answered, not crashed on', () => {

  it('a device error fails the journal: "durable" and "received" writes get an error; links stay up', async () => {
    const sim = new Simulator();
    const { dev, journal } = await deviceJournal(sim);
    const r = await rig({ sim, journal, secondaryUp: false });
    dev.failNext('flush', 'EIO');
    const e1 = await sim.run(failure(r.write(1, 4096, 'durable')));
    expect(e1.code).to.equal(ErrorCode.WRITE_FAILED);
    expect(e1.text).to.match(/journal failed.*EIO/);
    // The failed journal refuses at once: even "received" is not claimed.
    const e2 = await sim.run(failure(r.write(2, 4096, 'received')));
    expect(e2.text).to.match(/journal failed/);
    expect(r.primary.isOpen).to.equal(true);
    expect(r.unit.stats()).to.include({ refused: 2, recordFailures: 2, recorded: 0 });
    expect(r.unit.stats().held).to.deep.equal({ writes: 0, bytes: 0, forwarding: 0 });
    expect(r.logs.some((l) => l.level === 'error' && l.msg === 'relay: write could not be recorded')).to.equal(true);
  });

  it('a full journal (whenFull "fail"), a record too large, a portion of a striped write: errors', async () => {
    const sim = new Simulator();
    const journal = MemoryJournal.open(new BatteryBackedMemory(3 * (4096 + 64)), { clock: sim.clock, whenFull: 'fail' }).journal;
    const r = await rig({ sim, journal, secondaryUp: false });
    await sim.run(Promise.all([1, 2, 3].map((i) => r.write(i, 4096, 'received'))));
    const full = await sim.run(failure(r.write(4, 4096, 'received')));
    expect(full.text).to.match(/^journal full/);
    const big = await sim.run(failure(r.write(5, 16384, 'durable')));
    expect(big.text).to.match(/exceeds the maximum/);
    const portion = await sim.run(failure(r.write(6, 2048, 'durable', { totalLength: 4096, portionOffset: 2048 })));
    expect(portion.text).to.match(/portion .* cannot be recorded/);
    expect(r.unit.stats()).to.include({ refused: 3, recorded: 3 });
    // What was recorded still goes on.
    await r.connect();
    await sim.advance(100);
    expect([...r.sec.applied.keys()]).to.deep.equal(ids(1, 2, 3));
    expect(journal.pending()).to.deep.equal([]);
  });
});

describe('relay unit: close', () => {
  it('waits for in-flight appends, refuses further writes, leaves the journal to its owner', async () => {
    const sim = new Simulator();
    const { journal } = await deviceJournal(sim, { latency: 5 });
    const r = await rig({ sim, journal, secondaryUp: false });
    await sim.run(r.write(1, 4096, 'received')); // answered; its append (10 ms of device time) still runs
    expect(journal.stats().commits).to.equal(0);
    let closed = false;
    const closing = r.unit.close().then(() => { closed = true; });
    await sim.advance(1);
    expect(closed).to.equal(false);
    await sim.run(closing);
    expect(journal.stats().commits).to.equal(1);
    expect(journal.pending().map((e) => key(e.id))).to.deep.equal(ids(1));
    const e = await sim.run(failure(r.write(2, 4096, 'received')));
    expect(e.code).to.equal(ErrorCode.WRITE_FAILED);
    expect(e.text).to.equal('relay unit is closing');
    expect(r.unit.stats().held).to.deep.equal({ writes: 0, bytes: 0, forwarding: 0 });
    // The journal is the caller's: still open.
    const more = await sim.run(journal.append({ id: { sourceUnit: 99, issue: 1 }, volume: 1, lba: 0, blocks: 1, data: Buffer.alloc(512) }));
    expect(more.seq).to.equal(2);
  });
});
