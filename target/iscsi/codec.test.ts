import { expect } from 'chai';
import { crc32c } from '@node-rs/crc32';
import { ChapAuthenticator, chapResponse, decodeBinary } from './chap.js';
import { formatTargetAddress } from './discovery.js';
import { DEFAULT_LIMITS, NegotiationError, ParamNegotiator } from './params.js';
import { BHS_LENGTH, Op, dataDigest, decodeLun, encodeLun, encodePdu, newBhs } from './pdu.js';
import { PduReader } from './pdu-reader.js';
import { snInWindow, snLt } from './serial.js';
import { TextAccumulator, TextFormatError, decodeText, encodeText, splitText } from './text.js';

function frame(dsl: number, opts: { hd?: boolean; dd?: boolean; ahsWords?: number } = {}): Buffer {
  const bhs = Buffer.alloc(48);
  bhs[0] = Op.SCSI_COMMAND;
  bhs[4] = opts.ahsWords ?? 0;
  bhs[5] = dsl >> 16;
  bhs[6] = (dsl >> 8) & 0xff;
  bhs[7] = dsl & 0xff;
  bhs.writeUInt32BE(0x1234, 16);
  const ahs = Buffer.alloc((opts.ahsWords ?? 0) * 4, 0xaa);
  const parts = [bhs, ahs];
  if (opts.hd) {
    const d = Buffer.alloc(4);
    d.writeUInt32LE(crc32c(Buffer.concat([bhs, ahs])));
    parts.push(d);
  }
  const data = Buffer.alloc(dsl + ((4 - (dsl % 4)) % 4));
  for (let i = 0; i < dsl; i++) data[i] = i & 0xff;
  if (dsl) parts.push(data);
  if (dsl && opts.dd) {
    const d = Buffer.alloc(4);
    d.writeUInt32LE(crc32c(data));
    parts.push(d);
  }
  return Buffer.concat(parts);
}

describe('iscsi codec', () => {
  describe('PDU reader', () => {
    it('frames PDUs split at every byte boundary, with AHS, padding and digests', () => {
      const stream = Buffer.concat([frame(5, { hd: true, dd: true, ahsWords: 2 }), frame(0, { hd: true, dd: true }), frame(4096, { hd: true, dd: true })]);
      for (const step of [1, 3, 47, 48, 100, 5000]) {
        const r = new PduReader();
        r.headerDigest = r.dataDigest = true;
        r.maxDataSegment = 8192;
        const got: number[] = [];
        for (let i = 0; i < stream.length; i += step) {
          r.push(stream.subarray(i, i + step));
          for (let ev = r.next(); ev; ev = r.next()) {
            expect(ev.kind).to.equal('pdu');
            if (ev.kind !== 'pdu') continue;
            expect(ev.pdu.dataDigestOk).to.equal(true);
            expect(ev.pdu.bhs.readUInt32BE(16)).to.equal(0x1234);
            got.push(ev.pdu.data.length);
            if (ev.pdu.data.length === 5) expect([...ev.pdu.data]).to.deep.equal([0, 1, 2, 3, 4]);
            if (ev.pdu.data.length === 5) expect(ev.pdu.ahs?.length).to.equal(8);
          }
        }
        expect(got).to.deep.equal([5, 0, 4096]);
        expect(r.buffered).to.equal(0);
      }
    });

    it('returns views, not copies, when a PDU lies in one chunk', () => {
      const chunk = frame(512);
      const r = new PduReader();
      r.push(chunk);
      const ev = r.next();
      expect(ev?.kind).to.equal('pdu');
      if (ev?.kind === 'pdu') expect(ev.pdu.data.buffer).to.equal(chunk.buffer);
    });

    it('reports header and data digest errors', () => {
      const bad = frame(8, { hd: true, dd: true });
      bad[52 + 8] ^= 1; // data digest
      const r = new PduReader();
      r.headerDigest = r.dataDigest = true;
      r.push(bad);
      const ev = r.next();
      expect(ev?.kind === 'pdu' && ev.pdu.dataDigestOk).to.equal(false);
      const badHeader = frame(0, { hd: true });
      badHeader[10] ^= 1;
      r.push(badHeader);
      expect(r.next()?.kind).to.equal('header-digest-error');
    });

    it('reports an oversize data segment from its header and discards it without buffering', () => {
      const r = new PduReader();
      r.maxDataSegment = 1024;
      const big = frame(100000);
      r.push(big.subarray(0, 60));
      const ev = r.next();
      expect(ev?.kind).to.equal('oversize');
      for (let i = 60; i < big.length; i += 4096) {
        r.push(big.subarray(i, i + 4096));
        expect(r.next()).to.equal(undefined);
        expect(r.buffered).to.be.below(4097);
      }
      r.push(frame(10));
      const after = r.next();
      expect(after?.kind === 'pdu' && after.pdu.data.length).to.equal(10);
    });

    it('encodes PDUs with padding and little-endian digests', () => {
      const bhs = newBhs(Op.NOP_IN);
      const out: Uint8Array[] = [];
      encodePdu(out, bhs, Buffer.from('abcde'), true, true);
      const wire = Buffer.concat(out);
      expect(wire.length).to.equal(48 + 4 + 8 + 4);
      expect(wire.readUInt32LE(48)).to.equal(crc32c(wire.subarray(0, 48)));
      expect(wire.readUInt32LE(60)).to.equal(dataDigest(Buffer.from('abcde')));
      expect(wire.readUInt32LE(60)).to.equal(crc32c(Buffer.from('abcde\0\0\0')));
      // RFC 7143 B.4: 32 bytes of zeroes have CRC32C aa 36 91 8a on the wire.
      const zeros: Uint8Array[] = [];
      encodePdu(zeros, newBhs(Op.NOP_IN), Buffer.alloc(32), false, true);
      expect([...zeros[zeros.length - 1]]).to.deep.equal([0xaa, 0x36, 0x91, 0x8a]);
      expect(BHS_LENGTH).to.equal(48);
    });

    it('encodes and decodes LUNs (peripheral and flat addressing)', () => {
      const b = Buffer.alloc(16);
      for (const lun of [0, 1, 255, 256, 16383]) {
        encodeLun(lun, b);
        expect(decodeLun(b)).to.equal(lun);
      }
    });
  });

  describe('serial numbers', () => {
    it('compares across the 2^32 wrap', () => {
      expect(snLt(0xfffffff0, 5)).to.equal(true);
      expect(snLt(5, 0xfffffff0)).to.equal(false);
      expect(snInWindow(2, 0xfffffffe, 10)).to.equal(true);
      expect(snInWindow(11, 0xfffffffe, 10)).to.equal(false);
    });
  });

  describe('text', () => {
    it('round-trips key=value pairs and rejects malformed text', () => {
      const t = encodeText([['A', '1'], ['B', 'x=y']]);
      expect(decodeText(t)).to.deep.equal([['A', '1'], ['B', 'x=y']]);
      expect(() => decodeText(Buffer.from('A=1'))).to.throw(TextFormatError);
      expect(() => decodeText(Buffer.from('novalue\0'))).to.throw(TextFormatError);
      expect(() => decodeText(Buffer.from('bad key=1\0'))).to.throw(TextFormatError);
      expect(decodeText(Buffer.from('A=1\0\0\0'))).to.deep.equal([['A', '1']]);
    });

    it('reassembles continued texts within a bound and splits long ones', () => {
      const acc = new TextAccumulator(10);
      expect(acc.push(Buffer.from('A=1'), true)).to.equal(undefined);
      expect(acc.push(Buffer.from('2\0'), false)?.toString()).to.equal('A=12\0');
      expect(() => acc.push(Buffer.alloc(11), true)).to.throw(TextFormatError);
      expect(splitText(Buffer.alloc(10), 4).map((b) => b.length)).to.deep.equal([4, 4, 2]);
    });
  });

  describe('parameter negotiation', () => {
    const answer = (key: string, value: string, type: 'Normal' | 'Discovery' = 'Normal') => {
      const n = new ParamNegotiator(DEFAULT_LIMITS, type);
      return { a: n.answer(key, value, 'login'), p: n.finish() };
    };

    it('picks the first digest of the offer that it supports', () => {
      expect(answer('HeaderDigest', 'CRC32C,None').a).to.equal('CRC32C');
      expect(answer('HeaderDigest', 'None,CRC32C').a).to.equal('None');
      expect(answer('DataDigest', 'Foo,CRC32C').p.dataDigest).to.equal(true);
      expect(answer('DataDigest', 'Foo').a).to.equal('Reject');
    });

    it('applies min, max, OR and AND', () => {
      expect(answer('MaxBurstLength', '16776192').a).to.equal(String(DEFAULT_LIMITS.maxBurstLength));
      expect(answer('MaxBurstLength', '4096').a).to.equal('4096');
      expect(answer('FirstBurstLength', '262144').a).to.equal(String(DEFAULT_LIMITS.firstBurstLength));
      expect(answer('MaxOutstandingR2T', '4').a).to.equal('4');
      expect(answer('MaxConnections', '8').a).to.equal('1');
      expect(answer('ErrorRecoveryLevel', '2').a).to.equal('0');
      expect(answer('DefaultTime2Wait', '0').a).to.equal('2');
      expect(answer('DefaultTime2Wait', '10').a).to.equal('10');
      expect(answer('DefaultTime2Retain', '20').a).to.equal('0');
      expect(answer('InitialR2T', 'No').a).to.equal('No');
      expect(answer('InitialR2T', 'Yes').a).to.equal('Yes');
      expect(answer('ImmediateData', 'Yes').a).to.equal('Yes');
      expect(answer('ImmediateData', 'No').p.immediateData).to.equal(false);
      expect(answer('DataPDUInOrder', 'No').a).to.equal('Yes');
      expect(answer('DataSequenceInOrder', 'No').a).to.equal('Yes');
    });

    it('records declarations without answering them', () => {
      const r = answer('MaxRecvDataSegmentLength', '8192');
      expect(r.a).to.equal(undefined);
      expect(r.p.initiatorMaxRecvDataSegmentLength).to.equal(8192);
      expect(r.p.targetMaxRecvDataSegmentLength).to.equal(DEFAULT_LIMITS.maxRecvDataSegmentLength);
    });

    it('answers NotUnderstood, Irrelevant and Reject where due', () => {
      expect(answer('X-com.example.Foo', '1').a).to.equal('NotUnderstood');
      expect(answer('Bogus', '1').a).to.equal('NotUnderstood');
      expect(answer('InitialR2T', 'No', 'Discovery').a).to.equal('Irrelevant');
      expect(answer('MaxBurstLength', '100').a).to.equal('Reject');
      expect(answer('MaxBurstLength', 'lots').a).to.equal('Reject');
      expect(answer('ImmediateData', 'Maybe').a).to.equal('Reject');
      expect(answer('OFMarker', 'Yes').a).to.equal('No');
      expect(answer('OFMarkInt', '2048~8192').a).to.equal('Reject');
      expect(answer('TargetAlias', 'x').a).to.equal('Reject');
      const n = new ParamNegotiator(DEFAULT_LIMITS);
      expect(n.answer('MaxBurstLength', '8192', 'ffp')).to.equal('Reject');
      expect(n.answer('MaxRecvDataSegmentLength', '4096', 'ffp')).to.equal(undefined);
    });

    it('refuses a key negotiated twice during login', () => {
      const n = new ParamNegotiator(DEFAULT_LIMITS);
      n.answer('InitialR2T', 'No', 'login');
      expect(() => n.answer('InitialR2T', 'No', 'login')).to.throw(NegotiationError);
    });

    it('keeps FirstBurstLength within MaxBurstLength', () => {
      const n = new ParamNegotiator(DEFAULT_LIMITS);
      n.answer('MaxBurstLength', '4096', 'login');
      expect(n.finish().firstBurstLength).to.equal(4096);
    });
  });

  describe('CHAP', () => {
    const creds = { user: 'alice', secret: 'alicesecret1' };
    const rnd = (n: number) => Buffer.alloc(n, 7);

    it('authenticates a correct response and answers a mutual challenge', () => {
      const a = new ChapAuthenticator(creds, { user: 'tgt', secret: 'targetsecret' }, rnd);
      const s1 = a.step(new Map([['CHAP_A', '7,5']]));
      expect(s1.kind).to.equal('continue');
      const keys = new Map(s1.kind === 'continue' ? s1.answers : []);
      expect(keys.get('CHAP_A')).to.equal('5');
      const id = Number(keys.get('CHAP_I'));
      const challenge = decodeBinary(keys.get('CHAP_C')!)!;
      const mine = Buffer.alloc(16, 9);
      const s2 = a.step(new Map([
        ['CHAP_N', 'alice'], ['CHAP_R', `0x${chapResponse(id, 'alicesecret1', challenge).toString('hex')}`],
        ['CHAP_I', '3'], ['CHAP_C', `0b${mine.toString('base64')}`],
      ]));
      expect(s2.kind).to.equal('done');
      const back = new Map(s2.kind === 'done' ? s2.answers : []);
      expect(back.get('CHAP_N')).to.equal('tgt');
      expect(back.get('CHAP_R')).to.equal(`0x${chapResponse(3, 'targetsecret', mine).toString('hex')}`);
    });

    it('fails on a wrong secret, a wrong user, no CHAP_A=5 and a reflected challenge', () => {
      const start = () => {
        const a = new ChapAuthenticator(creds, { user: 'tgt', secret: 'targetsecret' }, rnd);
        const s = a.step(new Map([['CHAP_A', '5']]));
        const k = new Map(s.kind === 'continue' ? s.answers : []);
        return { a, id: Number(k.get('CHAP_I')), c: decodeBinary(k.get('CHAP_C')!)!, cHex: k.get('CHAP_C')! };
      };
      let t = start();
      expect(t.a.step(new Map([['CHAP_N', 'alice'], ['CHAP_R', `0x${chapResponse(t.id, 'wrong', t.c).toString('hex')}`]])).kind).to.equal('failed');
      t = start();
      expect(t.a.step(new Map([['CHAP_N', 'bob'], ['CHAP_R', `0x${chapResponse(t.id, 'alicesecret1', t.c).toString('hex')}`]])).kind).to.equal('failed');
      t = start();
      expect(t.a.step(new Map([
        ['CHAP_N', 'alice'], ['CHAP_R', `0x${chapResponse(t.id, 'alicesecret1', t.c).toString('hex')}`], ['CHAP_I', '1'], ['CHAP_C', t.cHex],
      ])).kind).to.equal('failed');
      expect(new ChapAuthenticator(creds, undefined).step(new Map([['CHAP_A', '6,7']])).kind).to.equal('failed');
      const noMutual = new ChapAuthenticator(creds, undefined, rnd);
      const s = noMutual.step(new Map([['CHAP_A', '5']]));
      const k = new Map(s.kind === 'continue' ? s.answers : []);
      expect(noMutual.step(new Map([
        ['CHAP_N', 'alice'], ['CHAP_R', `0x${chapResponse(Number(k.get('CHAP_I')), 'alicesecret1', decodeBinary(k.get('CHAP_C')!)!).toString('hex')}`],
        ['CHAP_I', '1'], ['CHAP_C', '0x0102'],
      ])).kind).to.equal('failed');
    });
  });

  it('formats TargetAddress for IPv4, IPv6 and wildcard portals', () => {
    expect(formatTargetAddress({ host: '10.0.0.1', port: 3260 }, 1, '1.2.3.4')).to.equal('10.0.0.1:3260,1');
    expect(formatTargetAddress({ host: 'fe80::1', port: 3260 }, 2, '1.2.3.4')).to.equal('[fe80::1]:3260,2');
    expect(formatTargetAddress({ host: '0.0.0.0', port: 3261 }, 1, '1.2.3.4')).to.equal('1.2.3.4:3261,1');
  });
});
