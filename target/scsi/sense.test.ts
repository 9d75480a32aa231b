import { expect } from 'chai';
import { Asc, CheckCondition, SenseKey, fixedSense, mediumErrorSense, msb } from './sense.js';
import { Status } from './task.js';

describe('scsi/sense: fixed-format sense data (SPC-4 4.5.3)', () => {
  it('lays out key, ASC/ASCQ and the additional sense length of an 18-byte sense', () => {
    const s = fixedSense({ key: SenseKey.ILLEGAL_REQUEST, asc: Asc.LBA_OUT_OF_RANGE });
    expect([...s]).to.deep.equal([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0x00, 0, 0, 0, 0]);
  });

  it('sets VALID and the INFORMATION field when information fits 4 bytes', () => {
    const s = fixedSense({ key: SenseKey.MEDIUM_ERROR, asc: Asc.UNRECOVERED_READ_ERROR, information: 0x01020304 });
    expect(s[0]).to.equal(0xf0);
    expect([...s.subarray(3, 7)]).to.deep.equal([1, 2, 3, 4]);
    expect([s[12], s[13]]).to.deep.equal([0x11, 0x00]);
  });

  it('leaves VALID clear when the information does not fit the fixed format', () => {
    const s = fixedSense({ key: SenseKey.MEDIUM_ERROR, asc: Asc.UNRECOVERED_READ_ERROR, information: 0x100000000n });
    expect(s[0]).to.equal(0x70);
    expect([...s.subarray(3, 7)]).to.deep.equal([0, 0, 0, 0]);
    expect(fixedSense({ key: 3, asc: 0x1100, information: 2 ** 60 })[0]).to.equal(0x70);
    expect(fixedSense({ key: 3, asc: 0x1100, information: -1 })[0]).to.equal(0x70);
  });

  it('encodes a CDB field pointer with a bit pointer (SKSV, C/D, BPV)', () => {
    const s = fixedSense({ key: SenseKey.ILLEGAL_REQUEST, asc: Asc.INVALID_FIELD_IN_CDB, fieldPointer: { cdb: true, byte: 0x0102, bit: 5 } });
    expect([...s.subarray(15, 18)]).to.deep.equal([0x80 | 0x40 | 0x08 | 5, 0x01, 0x02]);
  });

  it('encodes a parameter-list field pointer without a bit pointer', () => {
    const s = fixedSense({ key: SenseKey.ILLEGAL_REQUEST, asc: Asc.INVALID_FIELD_IN_PARAMETER_LIST, fieldPointer: { cdb: false, byte: 7 } });
    expect([...s.subarray(15, 18)]).to.deep.equal([0x80, 0x00, 0x07]);
  });

  it('CheckCondition turns into a CHECK CONDITION result', () => {
    const r = new CheckCondition({ key: SenseKey.DATA_PROTECT, asc: Asc.WRITE_PROTECTED }).toResult();
    expect(r.status).to.equal(Status.CHECK_CONDITION);
    expect([r.sense![2], r.sense![12], r.sense![13]]).to.deep.equal([0x07, 0x27, 0x00]);
  });

  it('maps medium errors: reads to 11h/00h, writes and flushes to 0Ch/00h, LBA only when known', () => {
    expect(mediumErrorSense('read', 9)).to.deep.equal({ key: SenseKey.MEDIUM_ERROR, asc: 0x1100, information: 9 });
    expect(mediumErrorSense('write', 3)).to.deep.equal({ key: SenseKey.MEDIUM_ERROR, asc: 0x0c00, information: 3 });
    expect(mediumErrorSense('flush', -1).information).to.equal(undefined);
  });

  it('msb finds the most significant set bit', () => {
    expect([msb(0x01), msb(0x18), msb(0x80), msb(0xe5)]).to.deep.equal([0, 4, 7, 7]);
  });
});
