/**
 * The iSCSI target under fuzzing: a short run of the mutation fuzzer (iscsi-fuzz.ts; the long
 * one is bench/fuzz-iscsi.ts), and properties with exact RFC 7143 answers for the bad PDUs whose
 * answer does not depend on the CmdSN window: opcodes no initiator sends, PDUs during login,
 * oversize data segments up to 2^24-1, digest errors, arbitrary login texts, and the framing of
 * any PDU stream however TCP cuts it.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { PduReader } from '../../target/iscsi/pdu-reader.js';
import { OP, TestInitiator, inquiry, makeServer, parseText, textOf, tick, write10 } from '../iscsi-helpers.js';
import { type InputReport, runFuzz } from './iscsi-fuzz.js';
import { encode } from './wire.js';

const INITIATOR_OPCODES = new Set([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10]);

function report(r: InputReport, seed: number, device: string): string {
  const options = device === 'scsi' ? ' --device scsi --max-held-bytes 0' : '';
  return `input ${r.index} (${r.kind}, ${r.outcome}): ${r.failures.join('\n    ')}\n  reproduce: npm run fuzz -- --seed ${seed} --only ${r.index}${options}`;
}

/** A NOP-Out that must come back at once: the connection is alive and its framing intact. */
async function alive(ini: TestInitiator): Promise<void> {
  const itt = ini.nopOut({ data: Buffer.from('still there?') });
  await tick();
  const r = ini.take(OP.NOP_IN);
  expect(r.map((p) => p.itt), 'NOP-In for the probe').to.include(itt);
}

function header(op: number, rest: Uint8Array, immediate: boolean): Buffer {
  const b = Buffer.from(rest.subarray(0, 48));
  b[0] = (immediate ? 0x40 : 0) | op;
  return b;
}

describe('iscsi fuzzing', function () {
  this.timeout(120000);

  // The RAM disk run holds little unsolicited data before pausing (as the long run does), so that
  // the read pause is exercised; the SCSI device server run keeps the server's defaults.
  for (const [device, count, maxHeldBytes] of [['ramdisk', 2000, 256 * 1024], ['scsi', 400, undefined]] as const) {
    it(`survives ${count} mutated PDU sequences on a ${device} device (no escape, no wedge, no leak, RFC answers, other session intact)`, async () => {
      const seed = Number(process.env.FUZZ_SEED ?? 20261122);
      const failed: string[] = [];
      const f = await runFuzz({ seed, count, device, maxHeldBytes, onFailure: (r) => failed.push(report(r, seed, device)) });
      expect(failed.slice(0, 5).join('\n'), `${failed.length} of ${count} inputs failed`).to.equal('');
      expect(f.stats.inputs).to.equal(count);
      // The corpus reaches every phase: logins refused and completed, sessions ended every way.
      const outcomes = [...f.stats.outcomes.keys()].join(',');
      for (const o of ['logged out', 'no answer to NOP-In', 'header digest error', 'login refused 0x0200', 'login refused 0x020b']) expect(outcomes).to.contain(o);
      expect(f.stats.answers.get('reject:0x5') ?? 0).to.be.greaterThan(0);
    });
  }

  describe('properties', () => {
    it('answers a PDU with an opcode no initiator sends with Reject 0x05 echoing its header, and goes on', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      await ini.login();
      await fc.assert(fc.asyncProperty(
        fc.integer({ min: 0, max: 63 }).filter((op) => !INITIATOR_OPCODES.has(op)), fc.boolean(),
        fc.uint8Array({ minLength: 48, maxLength: 48 }), fc.uint8Array({ maxLength: 600 }),
        async (op, immediate, rest, data) => {
          const bhs = header(op, rest, immediate);
          ini.send(bhs, Buffer.from(data));
          await tick();
          const r = ini.next(OP.REJECT);
          expect(r.bhs[2]).to.equal(0x05);
          expect(r.itt).to.equal(0xffffffff);
          expect(r.data.equals(bhs)).to.equal(true);
          await alive(ini);
        },
      ), { numRuns: 200 });
    });

    it('refuses any first PDU that is not a Login Request with status 0x020b and closes', async () => {
      const { server } = makeServer();
      await fc.assert(fc.asyncProperty(
        fc.integer({ min: 0, max: 63 }).filter((op) => op !== 0x03), fc.uint8Array({ minLength: 48, maxLength: 48 }), fc.uint8Array({ maxLength: 300 }),
        async (op, rest, data) => {
          const ini = new TestInitiator(server);
          ini.send(header(op, rest, true), Buffer.from(data));
          await tick();
          const r = ini.next(OP.LOGIN_RSP);
          expect(r.bhs.readUInt16BE(36)).to.equal(0x020b);
          expect(r.data.length).to.equal(0);
          expect(ini.closed).to.equal(true);
          expect(ini.received).to.have.length(0);
        },
      ), { numRuns: 150 });
      expect(server.sessions()).to.have.length(0);
    });

    it('rejects a data segment above MaxRecvDataSegmentLength (0x04), skips it without holding it, and goes on', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      await ini.login();
      const reader = (ini.handler as unknown as { reader: PduReader }).reader;
      const limit = reader.maxDataSegment;
      await fc.assert(fc.asyncProperty(
        fc.integer({ min: limit + 1, max: limit + 70000 }), fc.constantFrom(0x00, 0x01, 0x04, 0x05), fc.integer({ min: 700, max: 70000 }),
        async (dsl, op, chunk) => {
          const bhs = Buffer.alloc(48);
          bhs[0] = 0x40 | op;
          bhs.writeUInt32BE(0x7000 + op, 16);
          const padded = dsl + ((4 - (dsl % 4)) % 4);
          const stream = Buffer.concat([bhs, Buffer.alloc(padded, 0x5a)]);
          stream[5] = dsl >>> 16;
          stream[6] = (dsl >>> 8) & 0xff;
          stream[7] = dsl & 0xff;
          for (let at = 0; at < stream.length; at += chunk) {
            ini.sendRaw(stream.subarray(at, at + chunk));
            expect(reader.buffered).to.be.at.most(48 + chunk);
          }
          await tick();
          const r = ini.next(OP.REJECT);
          expect(r.bhs[2]).to.equal(0x04);
          expect(r.data.equals(stream.subarray(0, 48))).to.equal(true);
          await alive(ini);
        },
      ), { numRuns: 25 });
    });

    it('skips a 2^24-1 byte data segment streamed in 1 MiB pieces, holding no more than one piece', async () => {
      const { server } = makeServer();
      const ini = new TestInitiator(server);
      await ini.login();
      const reader = (ini.handler as unknown as { reader: PduReader }).reader;
      const bhs = Buffer.alloc(48);
      bhs[0] = 0x41; // immediate SCSI command
      bhs.writeUInt32BE(0xabcd, 16);
      bhs[5] = bhs[6] = bhs[7] = 0xff;
      ini.sendRaw(bhs);
      await tick();
      expect(ini.next(OP.REJECT).bhs[2]).to.equal(0x04);
      const piece = Buffer.alloc(1 << 20, 0x33);
      let left = 0xffffff + 1; // with its padding
      while (left > 0) {
        ini.sendRaw(piece.subarray(0, Math.min(piece.length, left)));
        left -= Math.min(piece.length, left);
        expect(reader.buffered).to.equal(0);
      }
      await alive(ini);
    });

    it('closes the connection on any header digest error, answering nothing', async () => {
      const { server } = makeServer();
      // Any bit but those of AHSLength and DataSegmentLength: with those the reader rightly waits for more bytes.
      const bits = fc.integer({ min: 0, max: 52 * 8 - 1 }).filter((b) => b < 4 * 8 || b >= 8 * 8);
      await fc.assert(fc.asyncProperty(bits, async (bit) => {
        const ini = new TestInitiator(server);
        await ini.login({ keys: { HeaderDigest: 'CRC32C', DataDigest: 'None' } });
        const bhs = Buffer.alloc(48);
        bhs[0] = 0x40;
        bhs[1] = 0x80;
        bhs.writeUInt32BE(0x42, 16);
        bhs.writeUInt32BE(0xffffffff, 20);
        const img = encode({ what: 'nop', bhs }, true, false);
        img.bytes[bit >> 3] ^= 1 << (bit & 7);
        ini.sendRaw(img.bytes);
        await tick();
        expect(ini.transport.destroyed).to.equal(true);
        expect(ini.received).to.have.length(0);
      }), { numRuns: 60 });
      await tick();
      expect(server.sessions()).to.have.length(0);
    });

    it('rejects a command with a data digest error (0x02) without using up its CmdSN; the retry succeeds', async () => {
      const { server, disk } = makeServer();
      const ini = new TestInitiator(server);
      await ini.login({ keys: { HeaderDigest: 'None', DataDigest: 'CRC32C', ImmediateData: 'Yes' } });
      await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 512 * 8 + 31 }), fc.integer({ min: 0, max: 255 }), async (bit, fill) => {
        const data = Buffer.alloc(512, fill);
        const cmdSN = ini.cmdSN;
        const bhs = Buffer.alloc(48);
        bhs[0] = 0x01;
        bhs[1] = 0xa1;
        bhs.writeUInt32BE(ini.nextItt(), 16);
        bhs.writeUInt32BE(512, 20);
        bhs.writeUInt32BE(cmdSN, 24);
        write10(3, 1).copy(bhs, 32);
        const img = encode({ what: 'write', bhs, data }, false, true);
        img.bytes[48 + (bit >> 3)] ^= 1 << (bit & 7);
        ini.sendRaw(img.bytes);
        await tick();
        const r = ini.next(OP.REJECT);
        expect(r.bhs[2]).to.equal(0x02);
        expect(r.expCmdSN).to.equal(cmdSN);
        ini.sendRaw(encode({ what: 'write', bhs, data }, false, true).bytes);
        ini.cmdSN++;
        await tick();
        const rsp = ini.next(OP.SCSI_RSP);
        expect(rsp.bhs[3]).to.equal(0);
        expect(disk.disk[3 * 512 + 7]).to.equal(fill);
      }), { numRuns: 80 });
    });

    it('answers any operational login text with a Login Response, never inventing keys', async () => {
      const { server } = makeServer();
      const known = ['HeaderDigest', 'DataDigest', 'MaxRecvDataSegmentLength', 'MaxBurstLength', 'FirstBurstLength', 'InitialR2T', 'ImmediateData',
        'MaxOutstandingR2T', 'DataPDUInOrder', 'DataSequenceInOrder', 'ErrorRecoveryLevel', 'MaxConnections', 'DefaultTime2Wait', 'DefaultTime2Retain',
        'IFMarker', 'OFMarker', 'OFMarkInt', 'TargetAlias', 'TaskReporting', 'iSCSIProtocolLevel', 'SessionType', 'AuthMethod', 'CHAP_A', 'X-org.example.k'];
      const value = fc.oneof(fc.constantFrom('', 'None', 'CRC32C', 'CRC32C,None', 'Yes', 'No', '0', '1', '512', '65536', '16777215', '16777216', '0x10',
        'Reject', 'NotUnderstood', 'Irrelevant', 'x'.repeat(300)), fc.string({ maxLength: 20 }).filter((s) => !s.includes('\0')));
      const key = fc.oneof(fc.constantFrom(...known), fc.stringMatching(/^[A-Za-z0-9.+@_-]{1,12}$/));
      await fc.assert(fc.asyncProperty(fc.array(fc.tuple(key, value), { maxLength: 12 }), async (pairs) => {
        const ini = new TestInitiator(server);
        ini.loginPdu({ csg: 0, nsg: 1, transit: true, text: textOf({ InitiatorName: 'iqn.2024-01.test:p', TargetName: 'iqn.2024-01.test:disk', AuthMethod: 'None' }) });
        await tick();
        expect(ini.next(OP.LOGIN_RSP).bhs.readUInt16BE(36)).to.equal(0);
        expect(() => ini.loginPdu({ csg: 1, nsg: 3, transit: true, text: textOf(pairs) })).to.not.throw();
        await tick();
        const r = ini.next(OP.LOGIN_RSP);
        const status = r.bhs.readUInt16BE(36);
        expect([0x0000, 0x0200, 0x0207]).to.include(status);
        if (status !== 0) {
          expect(ini.closed).to.equal(true);
          return;
        }
        const sent = new Set(pairs.map(([k]) => k));
        const answers = parseText(r.data);
        for (const k of answers.keys()) expect(sent.has(k) || k === 'MaxRecvDataSegmentLength', `answered ${k}`).to.equal(true);
        ini.headerDigest = answers.get('HeaderDigest') === 'CRC32C';
        ini.dataDigest = answers.get('DataDigest') === 'CRC32C';
        ini.scsi({ cdb: inquiry(), read: true, edtl: 36 });
        await tick();
        expect(ini.take(OP.DATA_IN).length + ini.take(OP.SCSI_RSP).length).to.be.greaterThan(0);
        ini.transport.close();
        await tick();
      }), { numRuns: 250 });
    });

    it('frames any PDU stream the same however TCP cuts it', () => {
      const pdu = fc.record({
        op: fc.integer({ min: 0, max: 63 }), ahsWords: fc.integer({ min: 0, max: 4 }), dsl: fc.integer({ min: 0, max: 3000 }), tag: fc.integer({ min: 0, max: 0xffffffff }),
      });
      fc.assert(fc.property(fc.array(pdu, { minLength: 1, maxLength: 8 }), fc.boolean(), fc.boolean(), fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 20 }),
        (pdus, hd, dd, cuts) => {
          const images = pdus.map((p) => {
            const bhs = Buffer.alloc(48);
            bhs[0] = p.op;
            bhs.writeUInt32BE(p.tag, 16);
            const data = Buffer.alloc(p.dsl, p.tag & 0xff);
            return encode({ what: 'p', bhs, ahs: Buffer.alloc(p.ahsWords * 4, 0xee), data }, hd, dd).bytes;
          });
          const stream = Buffer.concat(images);
          const r = new PduReader();
          r.headerDigest = hd;
          r.dataDigest = dd;
          const got: { tag: number; len: number; ahs: number; ok: boolean }[] = [];
          let at = 0;
          for (let i = 0; at < stream.length; i++) {
            const n = cuts[i % cuts.length]!;
            r.push(stream.subarray(at, at + n));
            at += n;
            for (let ev = r.next(); ev; ev = r.next()) {
              expect(ev.kind).to.equal('pdu');
              if (ev.kind === 'pdu') got.push({ tag: ev.pdu.bhs.readUInt32BE(16), len: ev.pdu.data.length, ahs: ev.pdu.ahs?.length ?? 0, ok: ev.pdu.dataDigestOk });
            }
          }
          expect(got).to.deep.equal(pdus.map((p) => ({ tag: p.tag, len: p.dsl, ahs: p.ahsWords * 4, ok: true })));
          expect(r.buffered).to.equal(0);
        }), { numRuns: 300 });
    });
  });
});
