/**
 * Runs libiscsi's conformance suite (iscsi-test-cu) and scores it the way a user would: CUnit
 * counts a SKIPPED test as passed, so we read each test's own lines instead.
 */
import { spawn } from 'node:child_process';

export interface TestOutcome {
  suite: string;
  test: string;
  outcome: 'passed' | 'skipped' | 'failed';
  detail: string;
}

export interface Score {
  passed: number;
  skipped: number;
  failed: number;
  tests: TestOutcome[];
}

/** Parse iscsi-test-cu's CUnit console output into one outcome per test. */
export function parseTestCu(output: string): Score {
  const tests: TestOutcome[] = [];
  let suite = '';
  let current: (TestOutcome & { done?: boolean }) | undefined;
  const finish = () => {
    if (current) {
      const { done: _done, ...outcome } = current;
      tests.push(outcome);
    }
    current = undefined;
  };
  for (const line of output.split('\n')) {
    const s = /^Suite: (.+)$/.exec(line);
    if (s) {
      finish();
      suite = s[1]!.trim();
      continue;
    }
    const t = /^\s+Test: (\S+) \.\.\.(.*)$/.exec(line);
    if (t) {
      finish();
      current = { suite, test: t[1]!, outcome: 'passed', detail: '' };
      classify(current, t[2]!);
      continue;
    }
    if (/^Run Summary:/.test(line)) {
      finish();
      continue;
    }
    if (current) classify(current, line);
  }
  finish();
  return {
    passed: tests.filter((t) => t.outcome === 'passed').length,
    skipped: tests.filter((t) => t.outcome === 'skipped').length,
    failed: tests.filter((t) => t.outcome === 'failed').length,
    tests,
  };
}

// CUnit marks a failed test with "FAILED" right after the test name, followed by numbered
// assertion lines ("1. test_x.c:98 - CU_ASSERT..."), and a passed (or skipped) one with "passed".
// A test is skipped when it printed "[SKIPPED]" before its "passed". Output after "passed" belongs
// to the suite's teardown (e.g. "[SKIPPED] PERSISTENT RESERVE IN is not implemented." from its
// cleanup), not to the test. libiscsi also logs "[FAILED] ..." for commands that failed as the test
// expected: those are not test failures either.
function classify(t: TestOutcome & { done?: boolean }, text: string): void {
  if (t.done) return;
  const trimmed = text.trim();
  if (/^FAILED\b/.test(trimmed) || /^\d+\. \S+\.c:\d+/.test(trimmed)) {
    t.outcome = 'failed';
    t.detail = t.detail ? `${t.detail}; ${trimmed}` : trimmed;
    return;
  }
  const passedAt = trimmed.search(/(^|\.\.\.)passed\b/);
  const before = passedAt < 0 ? trimmed : trimmed.slice(0, passedAt);
  if (/\[SKIPPED\]/.test(before) && t.outcome === 'passed') {
    t.outcome = 'skipped';
    t.detail = before.replace(/.*\[SKIPPED\]\s*/, '');
  }
  if (passedAt >= 0) t.done = true;
}

export function scoreLine(name: string, s: Score): string {
  return `${name}: ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped`;
}

/** Run the suite against `urls` (a second URL enables MultipathIO). */
export function runTestCu(urls: string[], options: { tests?: string; extraArgs?: string[]; timeoutMs?: number } = {}): Promise<{ output: string; score: Score }> {
  const args = ['-d', `--test=${options.tests ?? 'ALL'}`, ...(options.extraArgs ?? []), ...urls];
  return new Promise((resolve, reject) => {
    const child = spawn('iscsi-test-cu', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`iscsi-test-cu did not finish within ${options.timeoutMs ?? 600000} ms; last output:\n${output.slice(-3000)}`));
    }, options.timeoutMs ?? 600000);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', () => {
      clearTimeout(timer);
      resolve({ output, score: parseTestCu(output) });
    });
  });
}
