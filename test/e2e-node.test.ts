/**
 * The first thing a user does: start the default node and point libiscsi's tools at it.
 */
import { expect } from 'chai';
import { join } from 'node:path';
import { statSync } from 'node:fs';
import { freePort, run, startKura, tempDir, type KuraProcess } from './support/kura-process.js';

describe('controller node with the default configuration (real libiscsi tools)', function () {
  this.timeout(60000);
  let kura: KuraProcess;
  let dir: string;
  let port: number;

  before(async () => {
    dir = tempDir();
    port = await freePort();
    kura = await startKura({ dir, args: ['--data-dir', join(dir, 'data'), '--port', String(port)] });
  });
  after(async () => {
    await kura?.stop();
  });

  it('prints the iSCSI URL of its 1 GiB file volume', () => {
    expect(kura.urls).to.deep.equal([`iscsi://127.0.0.1:${port}/iqn.2026-11.dev.kura:vol0/0`]);
    expect(statSync(join(dir, 'data', 'vol0.img')).size).to.equal(2 ** 30);
  });

  it('is discovered with its LUN by iscsi-ls -s', async () => {
    const r = await run('iscsi-ls', ['-s', `iscsi://127.0.0.1:${port}`]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include(`Target:iqn.2026-11.dev.kura:vol0 Portal:127.0.0.1:${port},1`);
    expect(r.stdout).to.match(/Lun:0\s+Type:DIRECT_ACCESS \(Size:(1023M|1G)\)/);
  });

  it('answers iscsi-inq with its identity and iscsi-readcapacity16 with its size', async () => {
    const inq = await run('iscsi-inq', [kura.urls[0]!]);
    expect(inq.code, inq.stderr).to.equal(0);
    expect(inq.stdout).to.match(/Vendor:KURA/);
    expect(inq.stdout).to.match(/Peripheral Device Type:\s*0\b|DIRECT_ACCESS/i);
    const serial = await run('iscsi-inq', ['-e', '1', '-c', '128', kura.urls[0]!]);
    expect(serial.code, serial.stderr).to.equal(0);
    expect(serial.stdout).to.match(/Unit Serial Number:\[KURA[0-9A-F]{16}\]/);
    const cap = await run('iscsi-readcapacity16', [kura.urls[0]!]);
    expect(cap.code, cap.stderr).to.equal(0);
    expect(cap.stdout).to.match(/LOGICAL BLOCK LENGTH IN BYTES:512/);
    expect(cap.stdout).to.match(/Total size:1073741824/);
  });

  it('refuses an unknown target with a precise login status, and keeps serving', async () => {
    const bad = await run('iscsi-inq', [`iscsi://127.0.0.1:${port}/iqn.2026-11.dev.kura:nope/0`]);
    expect(bad.code).to.not.equal(0);
    expect(bad.stderr + bad.stdout).to.match(/not found|TARGET_NOT_FOUND|0x0203/i);
    const good = await run('iscsi-readcapacity16', ['-s', kura.urls[0]!]);
    expect(good.stdout.trim()).to.equal('1073741824');
  });

  it('exits cleanly on SIGTERM', async () => {
    expect(await kura.stop('SIGTERM')).to.equal(0);
  });
});

describe('controller node configured with CHAP, mutual CHAP and an ACL (real libiscsi tools)', function () {
  this.timeout(60000);
  let kura: KuraProcess;
  let port: number;
  const iqn = 'iqn.2026-11.dev.kura:secure';
  const host = 'iqn.2026-11.dev.example:host1';

  before(async () => {
    const dir = tempDir();
    port = await freePort();
    kura = await startKura({
      dir,
      config: {
        node: { name: 'chap-test', dataDir: join(dir, 'data') },
        portals: [{ host: '127.0.0.1', port }],
        volumes: [{ name: 'v', size: '16MiB', backing: { type: 'memory' } }],
        targets: [{
          name: iqn, luns: [{ lun: 0, volume: 'v' }], acl: [host],
          chap: { user: 'host1', secret: 'host1-secret-123' },
          mutualChap: { user: 'kura', secret: 'kura-secret-4567' },
        }],
      },
    });
  });
  after(async () => {
    await kura?.stop();
  });

  const url = (user: string, secret: string) => `iscsi://${user}%${secret}@127.0.0.1:${port}/${iqn}/0`;

  it('admits the right secret, with the target proving itself (mutual CHAP)', async () => {
    const r = await run('iscsi-readcapacity16', ['-s', '-i', host, `${url('host1', 'host1-secret-123')}?target_user=kura&target_password=kura-secret-4567`]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.trim()).to.equal(String(16 * 2 ** 20));
  });

  it('refuses a wrong secret, a missing one, and an initiator the ACL does not list', async () => {
    const wrong = await run('iscsi-inq', ['-i', host, url('host1', 'not-the-secret1')]);
    expect(wrong.code).to.not.equal(0);
    expect(wrong.stderr + wrong.stdout).to.match(/Authentication failure/i);
    const none = await run('iscsi-inq', ['-i', host, `iscsi://127.0.0.1:${port}/${iqn}/0`]);
    expect(none.code).to.not.equal(0);
    const stranger = await run('iscsi-inq', ['-i', 'iqn.2026-11.dev.example:stranger', url('host1', 'host1-secret-123')]);
    expect(stranger.code).to.not.equal(0);
    expect(stranger.stderr + stranger.stdout).to.match(/Authorization failure|not allowed/i);
  });

  it('refuses an impostor target: the initiator rejects a wrong mutual CHAP answer', async () => {
    const r = await run('iscsi-inq', ['-i', host, `${url('host1', 'host1-secret-123')}?target_user=kura&target_password=some-other-secret`]);
    expect(r.code).to.not.equal(0);
    expect(r.stderr + r.stdout).to.match(/Invalid CHAP_R response from the target/);
  });
});
