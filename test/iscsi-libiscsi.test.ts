/**
 * The iSCSI target over real TCP (hal/tcp.ts) against libiscsi's command line tools: discovery,
 * login, INQUIRY, READ CAPACITY, CHAP one-way and mutual, digests, libiscsi's own iSCSI
 * conformance tests and a short iscsi-perf run. The tools must be installed: missing ones fail.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { systemClock } from '../hal/system-clock.js';
import { tcpNetwork } from '../hal/tcp.js';
import type { StreamListener } from '../hal/transport.js';
import { nullLogger } from '../hal/types.js';
import { IscsiServer } from '../target/iscsi/iscsi-server.js';
import { RamDiskDeviceServer } from './ramdisk-device-server.js';

interface Run {
  code: number;
  out: string;
}

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(`/usr/bin/${cmd}`, args, { timeout: 30000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new Error(`${cmd} is not installed (libiscsi-bin)`));
        return;
      }
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

const OPEN = 'iqn.2024-01.kura.test:open';
const CHAP = 'iqn.2024-01.kura.test:chap';
const MUTUAL = 'iqn.2024-01.kura.test:mutual';
const CHAP_CLIENT = 'iqn.2024-01.kura.test:chap-client';

describe('iSCSI target with libiscsi over TCP', function () {
  this.timeout(60000);
  let server: IscsiServer;
  let listener: StreamListener;
  let portal: string;
  const disk = new RamDiskDeviceServer(20480);

  before(async () => {
    const chap = { user: 'alice', secret: 'alice-secret-1' };
    // Listen first: SendTargets must advertise the ephemeral port. No connection can arrive
    // before `server` is assigned, as nothing knows the port yet.
    listener = await tcpNetwork.listen('127.0.0.1', 0, (t) => server.accept(t));
    portal = `127.0.0.1:${listener.port}`;
    server = new IscsiServer({
      clock: systemClock,
      logger: nullLogger,
      portals: [{ host: '127.0.0.1', port: listener.port }],
      targets: [
        { name: OPEN, alias: 'open disk', deviceServer: disk },
        // Only CHAP_CLIENT may see these, so that plain `iscsi-ls -s` can log in to everything it lists.
        { name: CHAP, deviceServer: disk, chap, allowedInitiators: [CHAP_CLIENT] },
        { name: MUTUAL, deviceServer: disk, chap, mutualChap: { user: 'the-target', secret: 'target-secret-1' }, allowedInitiators: [CHAP_CLIENT] },
      ],
    });
  });

  after(async () => {
    await listener.close();
    await server.shutdown();
  });

  it('discovers targets and lists LUNs (iscsi-ls -s)', async () => {
    const r = await run('iscsi-ls', ['-s', `iscsi://${portal}`]);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.contain(`Target:${OPEN} Portal:${portal},1`);
    expect(r.out).to.match(/Lun:0\s+Type:DIRECT_ACCESS/);
    expect(r.out).to.not.contain(CHAP);
    const all = await run('iscsi-ls', ['-i', CHAP_CLIENT, '--url', `iscsi://${portal}`]);
    expect(all.code, all.out).to.equal(0);
    expect(all.out.split('\n').filter(Boolean).sort()).to.deep.equal([CHAP, MUTUAL, OPEN].map((t) => `iscsi://${portal}/${t}/0`).sort());
  });

  it('answers INQUIRY and READ CAPACITY (16)', async () => {
    const inq = await run('iscsi-inq', [`iscsi://${portal}/${OPEN}/0`]);
    expect(inq.code, inq.out).to.equal(0);
    expect(inq.out).to.contain('Vendor:KURA');
    expect(inq.out).to.contain('Peripheral Device Type:DIRECT_ACCESS');
    const cap = await run('iscsi-readcapacity16', [`iscsi://${portal}/${OPEN}/0`]);
    expect(cap.code, cap.out).to.equal(0);
    expect(cap.out).to.contain('RETURNED LOGICAL BLOCK ADDRESS:20479');
    expect(cap.out).to.contain('LOGICAL BLOCK LENGTH IN BYTES:512');
  });

  it('works with header digests', async () => {
    const r = await run('iscsi-inq', [`iscsi://${portal}/${OPEN}/0?header_digest=crc32c`]);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.contain('Vendor:KURA');
  });

  it('authenticates with CHAP and refuses a wrong password', async () => {
    // libiscsi URLs: iscsi://<user>%<password>@host:port/iqn/lun
    const ok = await run('iscsi-inq', ['-i', CHAP_CLIENT, `iscsi://alice%alice-secret-1@${portal}/${CHAP}/0`]);
    expect(ok.code, ok.out).to.equal(0);
    expect(ok.out).to.contain('Vendor:KURA');
    const bad = await run('iscsi-inq', ['-i', CHAP_CLIENT, `iscsi://alice%wrong-password@${portal}/${CHAP}/0`]);
    expect(bad.code).to.not.equal(0);
    expect(bad.out).to.contain('Authentication failure');
    const none = await run('iscsi-inq', ['-i', CHAP_CLIENT, `iscsi://${portal}/${CHAP}/0`]);
    expect(none.code).to.not.equal(0);
  });

  it('refuses an initiator the ACL does not list', async () => {
    const r = await run('iscsi-inq', [`iscsi://alice%alice-secret-1@${portal}/${CHAP}/0`]);
    expect(r.code).to.not.equal(0);
    expect(r.out).to.match(/Authorization failure|not allowed|0x0202|514/i);
  });

  it('proves itself with mutual CHAP (URL arguments and environment)', async () => {
    const url = `iscsi://alice%alice-secret-1@${portal}/${MUTUAL}/0`;
    const viaUrl = await run('iscsi-inq', ['-i', CHAP_CLIENT, `${url}?target_user=the-target&target_password=target-secret-1`]);
    expect(viaUrl.code, viaUrl.out).to.equal(0);
    const viaEnv = await run('iscsi-inq', ['-i', CHAP_CLIENT, url], {
      LIBISCSI_CHAP_TARGET_USERNAME: 'the-target', LIBISCSI_CHAP_TARGET_PASSWORD: 'target-secret-1',
    });
    expect(viaEnv.code, viaEnv.out).to.equal(0);
    expect(viaEnv.out).to.contain('Vendor:KURA');
    // The initiator checks our answer: with the wrong expected secret it must refuse us.
    const wrong = await run('iscsi-inq', ['-i', CHAP_CLIENT, `${url}?target_user=the-target&target_password=not-the-secret`]);
    expect(wrong.code).to.not.equal(0);
    expect(wrong.out).to.contain('Invalid CHAP_R response from the target');
  });

  // iSCSICmdSnTooHigh/TooLow take ~6 s: we drop out-of-window commands silently, as the RFC
  // says, and libiscsi waits that long before it gives up on them.
  it('passes libiscsi\'s iSCSI conformance tests (CmdSN, DataSN, residuals, TMF)', async () => {
    const r = await run('iscsi-test-cu', ['--dataloss', '--test=iSCSI', `iscsi://${portal}/${OPEN}/0`]);
    expect(r.code, r.out).to.equal(0);
    const summary = /tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(r.out);
    expect(summary, r.out).to.not.equal(null);
    const [, total, ran, passed, failed] = summary!.map(Number);
    expect({ total, ran, passed, failed }, r.out).to.deep.equal({ total: 15, ran: 15, passed: 15, failed: 0 });
  });

  it('sustains a short iscsi-perf run at queue depth 32', async () => {
    const r = await run('iscsi-perf', ['-t', '1', '-m', '32', `iscsi://${portal}/${OPEN}/0`]);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.contain('finished');
    expect(r.out).to.match(/iops average [1-9]\d*/);
  });

  it('has no session left once the tools are gone', async () => {
    for (let i = 0; i < 50 && server.sessions().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(server.sessions()).to.deep.equal([]);
  });
});
