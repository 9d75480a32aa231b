import { expect } from 'chai';
import { Simulator } from '../../hal/sim/index.js';
import { LinkDownError, PeerError } from './errors.js';
import { ErrorCode, Flag, FrameType } from './frame.js';
import { PeerLink } from './peer-link.js';
import { pipePair } from './sim-pipe.js';
import { KEY, RawPeer, bytesFrom, linkPair, memoryLogger, type LogRecord } from './test-fixture.js';

function setup(seed = 1) {
  const sim = new Simulator({ seed });
  const random = bytesFrom(() => sim.random.u32());
  return { sim, random };
}

async function outcome(p: Promise<unknown>): Promise<unknown> {
  return p.then((v) => v, (e: unknown) => e);
}

const HELLO_PARAMS = { versionMin: 1, versionMax: 1, maxPayload: 65536, windowBytes: 1 << 20, windowCommands: 16 };

describe('peer link: authentication', () => {
  it('authenticates both ways with the pre-shared key and negotiates the version and windows', async () => {
    const { sim, random } = setup();
    const { a, b, logs } = linkPair({
      clock: sim.clock, random, pipe: { latencyMs: 5 },
      a: { receiveWindow: { bytes: 1 << 20, commands: 8 }, mode: 'fidelity' },
      b: { receiveWindow: { bytes: 2 << 20, commands: 32 }, maxPayload: 4096 },
    });
    const [pa, pb] = await sim.run(Promise.all([a.ready, b.ready]));
    // HELLO -> CHALLENGE -> RESPONSE -> WELCOME: two round trips.
    expect(sim.now()).to.equal(20);
    expect(pa).to.deep.equal({ unitId: 2, version: 1, maxPayload: 4096, windowBytes: 2 << 20, windowCommands: 32, pipelined: true });
    expect(pb).to.deep.equal({ unitId: 1, version: 1, maxPayload: 256 * 1024, windowBytes: 1 << 20, windowCommands: 8, pipelined: false });
    expect(logs.filter((l) => l.msg === 'peer link up')).to.have.length(2);
    expect(a.stats().framesSent).to.deep.equal({ HELLO: 1, RESPONSE: 1 });
    expect(b.stats().framesSent).to.deep.equal({ CHALLENGE: 1, WELCOME: 1 });
    await a.close();
    await sim.runUntilIdle();
  });

  it('takes the key by the peer unit id', async () => {
    const { sim, random } = setup();
    const keys = new Map([[1, Buffer.from('key of unit 1')], [3, Buffer.from('key of unit 3')]]);
    const { a, b } = linkPair({ clock: sim.clock, random, a: { key: keys.get(1)! }, b: { key: (u) => keys.get(u) } });
    await sim.run(Promise.all([a.ready, b.ready]));
    expect(b.peerInfo?.unitId).to.equal(1);
    await a.close();
  });

  it('refuses a peer with the wrong key: ERROR AUTH_FAILED, closed, logged', async () => {
    const { sim, random } = setup();
    const { a, b, logs } = linkPair({ clock: sim.clock, random, b: { key: Buffer.from('another key') } });
    const [ea, eb] = await sim.run(Promise.all([outcome(a.ready), outcome(b.ready)]));
    // The initiator checks the acceptor's proof first and refuses it.
    expect(ea).to.be.instanceOf(LinkDownError);
    expect((ea as Error).message).to.match(/AUTH_FAILED: unit 2 failed to prove the key/);
    expect(eb).to.be.instanceOf(PeerError);
    expect((eb as PeerError).code).to.equal(ErrorCode.AUTH_FAILED);
    expect(a.isOpen || b.isOpen).to.equal(false);
    const refusal = logs.find((l: LogRecord) => l.level === 'warn' && l.msg === 'refusing peer');
    expect(refusal?.obj).to.include({ code: 'AUTH_FAILED', unit: 1 });
    expect(logs.some((l) => l.level === 'warn' && l.msg === 'peer refused the link' && l.obj.unit === 2)).to.equal(true);
  });

  it('refuses an initiator without the key (it cannot answer the challenge)', async () => {
    const { sim, random } = setup();
    const { a: ea, b: eb } = pipePair({ clock: sim.clock, latencyMs: 1 });
    const logs: LogRecord[] = [];
    const acceptor = new PeerLink({ clock: sim.clock, random, role: 'acceptor', unitId: 2, key: KEY, logger: memoryLogger(logs) });
    eb.attach(acceptor.attach(eb));
    const raw = new RawPeer(ea);
    raw.send({ type: FrameType.HELLO, sourceUnit: 1, ...HELLO_PARAMS, payload: Buffer.alloc(32, 9) });
    await sim.advance(5);
    expect(raw.ofType(FrameType.CHALLENGE)).to.have.length(1);
    raw.send({ type: FrameType.RESPONSE, sourceUnit: 1, payload: Buffer.alloc(32, 0xaa) });
    const e = await sim.run(acceptor.closed);
    expect(e.message).to.match(/AUTH_FAILED/);
    await sim.runUntilIdle();
    const err = raw.ofType(FrameType.ERROR)[0]!;
    expect(err.code).to.equal(ErrorCode.AUTH_FAILED);
    expect(err.flags & Flag.FATAL).to.not.equal(0);
    await sim.runUntilIdle();
    expect(raw.closedWith).to.not.equal(null);
    expect(logs.some((l) => l.msg === 'refusing peer' && l.obj.code === 'AUTH_FAILED')).to.equal(true);
  });

  it('refuses an unknown unit id', async () => {
    const { sim, random } = setup();
    const { a, b } = linkPair({ clock: sim.clock, random, b: { key: (u) => (u === 5 ? KEY : undefined) } });
    const [ea] = await sim.run(Promise.all([outcome(a.ready), outcome(b.ready)]));
    expect(ea).to.be.instanceOf(PeerError);
    expect((ea as PeerError).code).to.equal(ErrorCode.UNKNOWN_PEER);
    expect((ea as PeerError).text).to.match(/no key for unit 1/);
  });

  it('refuses a peer that is not the expected unit', async () => {
    const { sim, random } = setup();
    const { a, b } = linkPair({ clock: sim.clock, random, a: { expectedPeer: 3 } });
    const [ea, eb] = await sim.run(Promise.all([outcome(a.ready), outcome(b.ready)]));
    expect((ea as Error).message).to.match(/UNKNOWN_PEER: expected unit 3, peer claims 2/);
    expect((eb as PeerError).code).to.equal(ErrorCode.UNKNOWN_PEER);
  });

  it('a replayed challenge does not authenticate a fake acceptor', async () => {
    const { sim, random } = setup();
    // Session 1: record the real acceptor's CHALLENGE.
    const s1 = pipePair({ clock: sim.clock, latencyMs: 1 });
    const real = new PeerLink({ clock: sim.clock, random, role: 'acceptor', unitId: 2, key: KEY });
    s1.b.attach(real.attach(s1.b));
    const spy = new RawPeer(s1.a);
    spy.send({ type: FrameType.HELLO, sourceUnit: 1, ...HELLO_PARAMS, payload: Buffer.alloc(32, 1) });
    await sim.advance(5);
    const recorded = s1.b.sent[0]!;
    expect(spy.ofType(FrameType.CHALLENGE)).to.have.length(1);
    // Session 2: a fake acceptor without the key replays it to a fresh initiator.
    const s2 = pipePair({ clock: sim.clock, latencyMs: 1 });
    const fake = new RawPeer(s2.b);
    const initiator = new PeerLink({ clock: sim.clock, random, role: 'initiator', unitId: 1, key: KEY });
    s2.a.attach(initiator.attach(s2.a));
    await sim.advance(5);
    expect(fake.ofType(FrameType.HELLO)).to.have.length(1);
    fake.sendRaw(recorded);
    const e = await sim.run(outcome(initiator.ready));
    expect((e as Error).message).to.match(/AUTH_FAILED: unit 2 failed to prove the key/);
    await sim.runUntilIdle();
    expect(fake.ofType(FrameType.RESPONSE)).to.have.length(0);
    expect(fake.ofType(FrameType.ERROR)[0]?.code).to.equal(ErrorCode.AUTH_FAILED);
    await real.close();
  });

  it('a replayed response does not authenticate a fake initiator', async () => {
    const { sim, random } = setup();
    // Session 1: a genuine exchange, recorded on the initiator's side.
    const { a, b, pa } = linkPair({ clock: sim.clock, random, pipe: { latencyMs: 1 } });
    await sim.run(Promise.all([a.ready, b.ready]));
    const [hello, response] = pa.sent;
    await a.close();
    // Session 2: replay HELLO and RESPONSE to a fresh acceptor.
    const s2 = pipePair({ clock: sim.clock, latencyMs: 1 });
    const acceptor = new PeerLink({ clock: sim.clock, random, role: 'acceptor', unitId: 2, key: KEY });
    s2.b.attach(acceptor.attach(s2.b));
    const fake = new RawPeer(s2.a);
    fake.sendRaw(hello!);
    await sim.advance(5);
    fake.sendRaw(response!);
    const e = await sim.run(acceptor.closed);
    expect(e.message).to.match(/AUTH_FAILED: unit 1 failed to prove the key/);
    expect(fake.ofType(FrameType.WELCOME)).to.have.length(0);
  });

  it('refuses a peer that speaks no common version, naming the versions it speaks', async () => {
    const { sim, random } = setup();
    const { a: ea, b: eb } = pipePair({ clock: sim.clock, latencyMs: 1 });
    const acceptor = new PeerLink({ clock: sim.clock, random, role: 'acceptor', unitId: 2, key: KEY });
    eb.attach(acceptor.attach(eb));
    const raw = new RawPeer(ea);
    raw.send({ type: FrameType.HELLO, sourceUnit: 1, ...HELLO_PARAMS, versionMin: 2, versionMax: 3, payload: Buffer.alloc(32, 1) });
    await sim.run(acceptor.closed);
    await sim.runUntilIdle();
    const err = raw.ofType(FrameType.ERROR)[0]!;
    expect(err.code).to.equal(ErrorCode.UNSUPPORTED_VERSION);
    expect(err.payload.toString()).to.match(/peer speaks versions 2\.\.3; this peer speaks 1/);
  });

  it('refuses frames of a version it does not speak', async () => {
    const { sim, random } = setup();
    const { a: ea, b: eb } = pipePair({ clock: sim.clock, latencyMs: 1 });
    const acceptor = new PeerLink({ clock: sim.clock, random, role: 'acceptor', unitId: 2, key: KEY });
    eb.attach(acceptor.attach(eb));
    const raw = new RawPeer(ea);
    raw.send({ type: FrameType.HELLO, sourceUnit: 1, ...HELLO_PARAMS, payload: Buffer.alloc(32, 1) }, { version: 2 });
    await sim.run(acceptor.closed);
    await sim.runUntilIdle();
    const err = raw.ofType(FrameType.ERROR)[0]!;
    expect(err.code).to.equal(ErrorCode.UNSUPPORTED_VERSION);
    expect(err.payload.toString()).to.match(/unsupported protocol version 2; this peer speaks 1/);
  });

  it('refuses commands before authentication', async () => {
    const { sim, random } = setup();
    const { a: ea, b: eb } = pipePair({ clock: sim.clock, latencyMs: 1 });
    const logs: LogRecord[] = [];
    const acceptor = new PeerLink({ clock: sim.clock, random, role: 'acceptor', unitId: 2, key: KEY, logger: memoryLogger(logs), handler: { onWrite: () => 'received' } });
    eb.attach(acceptor.attach(eb));
    const raw = new RawPeer(ea);
    raw.send({ type: FrameType.WRITE_COMMAND, sourceUnit: 1, issue: 1, tag: 1, flags: Flag.PIPELINED, volume: 0, blocks: 1, lba: 0, totalLength: 512, portionOffset: 0, length: 512, forwardTo: 0 });
    await sim.run(acceptor.closed);
    await sim.runUntilIdle();
    expect(raw.ofType(FrameType.ERROR)[0]?.code).to.equal(ErrorCode.NOT_AUTHENTICATED);
    expect(acceptor.stats().writesReceived).to.equal(0);
    expect(logs.some((l) => l.msg === 'refusing peer' && l.obj.code === 'NOT_AUTHENTICATED')).to.equal(true);
  });

  it('gives up a handshake the peer never answers', async () => {
    const { sim, random } = setup();
    const { a: ea, b: eb } = pipePair({ clock: sim.clock, latencyMs: 1 });
    new RawPeer(eb);
    const initiator = new PeerLink({ clock: sim.clock, random, role: 'initiator', unitId: 1, key: KEY, handshakeTimeoutMs: 3000 });
    ea.attach(initiator.attach(ea));
    const e = await sim.run(outcome(initiator.ready));
    expect((e as Error).message).to.match(/TIMEOUT: handshake timed out/);
    expect(sim.now()).to.equal(3000);
  });
});
