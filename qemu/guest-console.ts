/**
 * What the guest tools print on the serial console, parsed. Every line a tool means for the host
 * starts with KURA-; everything else (kernel messages, shell noise) is ignored.
 */

export interface FsyncedFile { path: string; sha256: string }

export interface ConsoleReport {
  /** KURA-FSYNCED lines: files whose data and directory entry were fsynced before the line was printed. */
  fsynced: FsyncedFile[];
  workloadDone: boolean;
  /** KURA-VERIFY-RESULT: undefined when the verifier did not finish. */
  verify?: { pass: boolean; ok: number; bad: number; problems: string[] };
  /** KURA-ISCSI-TEST PASS|FAIL <detail>. */
  iscsiTest?: { pass: boolean; detail: string };
  /** KURA-POWEROFF <why>: the guest stopped the machine itself. */
  poweroff?: string;
  /** KURA-INIT-FAIL or any "KURA-POWEROFF FAIL ..." reason. */
  failure?: string;
}

export function parseConsole(serial: string): ConsoleReport {
  const report: ConsoleReport = { fsynced: [], workloadDone: false };
  const problems: string[] = [];
  for (const raw of serial.split('\n')) {
    const line = raw.replace(/\r/g, '').trim();
    let m: RegExpExecArray | null;
    if ((m = /^KURA-FSYNCED (\S+) ([0-9a-f]{64})$/.exec(line))) report.fsynced.push({ path: m[1]!, sha256: m[2]! });
    else if (/^KURA-WORKLOAD-DONE\b/.test(line)) report.workloadDone = true;
    else if (/^KURA-VERIFY-(MISSING|BAD) /.test(line)) problems.push(line);
    else if ((m = /^KURA-VERIFY-RESULT (PASS|FAIL)\b.*?(?:ok=(\d+) bad=(\d+))?$/.exec(line))) {
      report.verify = { pass: m[1] === 'PASS', ok: Number(m[2] ?? 0), bad: Number(m[3] ?? 0), problems };
    } else if ((m = /^KURA-ISCSI-TEST (PASS|FAIL) ?(.*)$/.exec(line))) report.iscsiTest = { pass: m[1] === 'PASS', detail: m[2]! };
    else if ((m = /^KURA-POWEROFF (.*)$/.exec(line))) {
      report.poweroff = m[1]!;
      if (m[1]!.startsWith('FAIL')) report.failure ??= m[1]!;
    } else if ((m = /^KURA-INIT-FAIL (.*)$/.exec(line))) report.failure ??= m[1]!;
  }
  return report;
}

/** The verifier's input: one `KURA-FSYNCED <path> <sha256>` line per file. */
export function verifyList(files: FsyncedFile[]): string {
  return files.map((f) => `KURA-FSYNCED ${f.path} ${f.sha256}\n`).join('');
}
