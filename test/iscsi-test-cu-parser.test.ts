import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTestCu } from '../bench/lib/iscsi-test-cu.js';
import { repoRoot } from './support/kura-process.js';

describe('iscsi-test-cu output scoring', () => {
  it('scores tgt 1.0.85 as documented: 160 passed, 62 skipped, 8 failed (SKIPPED is not a pass)', () => {
    const s = parseTestCu(readFileSync(join(repoRoot, 'test/fixtures/iscsi-test-cu-tgt-1.0.85.txt'), 'utf8'));
    expect(s.tests).to.have.length(230);
    expect([s.passed, s.skipped, s.failed]).to.deep.equal([160, 62, 8]);
    expect(s.tests.filter((t) => t.outcome === 'failed').map((t) => `${t.suite}.${t.test}`)).to.deep.equal([
      'GetLBAStatus.BeyondEol', 'PrinServiceactionRange.Range', 'ProutReserve.OwnershipEA', 'ProutReserve.OwnershipWE',
      'ProutReserve.OwnershipEARO', 'ProutReserve.OwnershipWERO', 'Reserve6.2Initiators', 'iSCSIdatasn.iSCSIDataSnInvalid',
    ]);
  });

  it('does not take libiscsi\'s "[FAILED]" log lines for test failures', () => {
    const s = parseTestCu('Suite: WriteSame10\n  Test: UnmapVPD ...    [FAILED] WRITESAME10 command failed with status 2\npassed\n  Test: Check ...passed\n');
    expect(s.tests.map((t) => t.outcome)).to.deep.equal(['passed', 'passed']);
  });

  it('gives a suite teardown\'s "[SKIPPED]" after "passed" to no test', () => {
    const s = parseTestCu('Suite: Read6\n  Test: Simple ...passed\n  Test: BeyondEol ...passed    [SKIPPED] PERSISTENT RESERVE IN is not implemented.\n\n'
      + 'Suite: X\n  Test: A ...    [SKIPPED] not implemented.\n    [SKIPPED] not implemented.\npassed\n  Test: B ...    [SKIPPED] fully provisioned\npassed    [SKIPPED] PRIN\n');
    expect(s.tests.map((t) => `${t.test}:${t.outcome}`)).to.deep.equal(['Simple:passed', 'BeyondEol:passed', 'A:skipped', 'B:skipped']);
  });
});
