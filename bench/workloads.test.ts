import { expect } from 'chai';
import {
  WORKLOADS, iscsiPerfArgs, median, parseIscsiPerf, parseQemuImgBench, qemuImgBenchArgs, steadyIops,
} from './workloads.js';

const byId = (id: string) => WORKLOADS.find((w) => w.id === id)!;

describe('bench workloads', () => {
  it('reads qemu-img bench timing', () => {
    const out = 'Sending 100000 write requests, 4096 bytes each, 32 in parallel (starting at offset 0, step size 428969984)\nRun completed in 2.791 seconds.\n';
    expect(parseQemuImgBench(out)).to.equal(2.791);
    expect(() => parseQemuImgBench('qemu-img: Could not open iscsi://x: Failed to connect')).to.throw(/Run completed/);
  });

  it('reads iscsi-perf CR-separated status lines', () => {
    // As captured from iscsi-perf 1.19 against tgt (the line is rewritten in place with \r).
    const out = 'iscsi-perf version 0.1 - (c) 2014-2015 by Peter Lieven\n\nconnected to iscsi://127.0.0.1:3271/iqn.2026-11.org.example:tgt/1\n'
      + 'capacity is 2097152 blocks or 1073741824 byte (1024 MB)\nperforming RANDOM READ with 32 parallel requests\n'
      + 'FIXED transfer size of 8 blocks (4096 byte)\ninfinite runtime - press CTRL-C to abort.\n\n'
      + '\r00:00:01 - lba 878114, iops current 31002 (121 MB/s), iops average 31002 (121 MB/s), in_flight 32, busy 0        '
      + '\r00:00:02 - lba 1283780, iops current 34514 (134 MB/s), iops average 32758 (127 MB/s), in_flight 32, busy 0        '
      + '\r00:00:03 - lba 1054811, iops current 31509 (123 MB/s), iops average 32342 (126 MB/s), in_flight 32, busy 0        '
      + '\r00:00:04 - lba 739484, iops current 39160 (152 MB/s), iops av\nABORTED!\n';
    const samples = parseIscsiPerf(out);
    expect(samples).to.deep.equal([31002, 34514, 31509]);
    expect(steadyIops(samples)).to.equal((34514 + 31509) / 2);
    expect(() => steadyIops([])).to.throw();
  });

  it('builds the tool command lines', () => {
    expect(qemuImgBenchArgs(byId('randwrite-4k-qd32'), 'iscsi://h:1/iqn/0', 1000)).to.deep.equal(
      ['bench', '-f', 'raw', '-w', '-t', 'none', '-c', '1000', '-d', '32', '-s', '4096', '-S', String(4096 * 104729), 'iscsi://h:1/iqn/0']);
    expect(qemuImgBenchArgs(byId('write-128k-qd16'), 'u', 5)).to.not.include('-S');
    expect(qemuImgBenchArgs(byId('write-4k-flush-qd1'), 'u', 5)).to.include('--flush-interval=1');
    expect(iscsiPerfArgs(byId('randread-4k-qd32'), 'u')).to.deep.equal(['-m', '32', '-b', '8', '-r', 'u']);
    expect(iscsiPerfArgs(byId('read-128k-qd16'), 'u')).to.deep.equal(['-m', '16', '-b', '256', 'u']);
  });

  it('scatters writes over every 4 KiB block of a 1 GiB LUN once per lap', () => {
    const blocks = (1 << 30) / 4096;
    const seen = new Set<number>();
    let offset = 0;
    for (let i = 0; i < blocks; i++) {
      seen.add(offset / 4096);
      offset = (offset + 4096 * 104729) % (1 << 30);
    }
    expect(seen.size).to.equal(blocks);
  });

  it('takes medians', () => {
    expect(median([3, 1, 2])).to.equal(2);
    expect(median([4, 1, 3, 2])).to.equal(2.5);
  });
});
