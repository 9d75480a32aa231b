import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, defaultConfig, loadConfig, parseSize, validateConfig } from './config.js';
import { tempDir } from '../test/support/kura-process.js';

const good = {
  portals: [{ host: '127.0.0.1', port: 3260 }],
  volumes: [{ name: 'vol0', size: '64MiB', backing: { type: 'file', path: 'vol0.img' } }],
  targets: [{ name: 'iqn.2026-11.dev.kura:t', luns: [{ lun: 0, volume: 'vol0' }] }],
};

function problems(raw: unknown): string[] {
  try {
    validateConfig(raw, 'test.yaml', '/base');
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected the configuration to be rejected');
}

describe('node configuration', () => {
  it('parses sizes with units', () => {
    expect(parseSize('1GiB')).to.equal(2 ** 30);
    expect(parseSize('512 MiB')).to.equal(512 * 2 ** 20);
    expect(parseSize('10GB')).to.equal(10e9);
    expect(parseSize(4096)).to.equal(4096);
    expect(parseSize('12 parsecs')).to.equal(undefined);
    expect(parseSize(-1)).to.equal(undefined);
  });

  it('fills defaults and resolves paths against the data directory', () => {
    const c = validateConfig(good, 'x', '/base');
    expect(c.node.dataDir).to.equal('/base/data');
    expect(c.volumes[0]!.size).to.equal(64 * 2 ** 20);
    expect(c.volumes[0]!.blockSize).to.equal(512);
    expect(c.volumes[0]!.backing).to.deep.include({ type: 'file', path: '/base/data/vol0.img', writeCache: true });
  });

  it('names the field and the problem', () => {
    expect(problems({ ...good, volumes: [{ ...good.volumes[0], size: 'lots' }] }))
      .to.deep.equal(['volumes[0].size: "lots" is not a size: use bytes or a number with a unit (e.g. 512MiB, 1GiB, 10GB)']);
    expect(problems({ ...good, targets: [{ name: 'iqn.2026-11.dev.kura:t', luns: [{ lun: 0, volume: 'nope' }] }] }))
      .to.deep.equal(['targets[0].luns[0].volume: no volume named "nope" (known: vol0)']);
    expect(problems({ ...good, targets: [{ name: 'not-an-iqn', luns: [{ lun: 0, volume: 'vol0' }] }] })[0])
      .to.match(/^targets\[0\]\.name: must be an iSCSI name/);
    expect(problems({ ...good, volumes: [{ ...good.volumes[0], size: 1000 }] }))
      .to.deep.equal(['volumes[0].size: must be a multiple of blockSize (512)']);
    expect(problems({ ...good, volumes: [{ ...good.volumes[0], layout: 'mirror' }] }))
      .to.deep.equal(['volumes[0].layout: "mirror" needs at least two media in "media"']);
    expect(problems({ ...good, portals: [{ host: '127.0.0.1', port: 70000 }] })[0]).to.match(/^portals\[0\]\.port: /);
    expect(problems({ ...good, portals: [{ host: '127.0.0.1', port: 3260, portalGroupTag: 0 }] })[0]).to.match(/^portals\[0\]\.portalGroupTag: /);
    expect(validateConfig({ ...good, portals: [{ host: '127.0.0.1', port: 3260, portalGroupTag: 7 }] }, 'test.yaml', '/base').portals[0]!.portalGroupTag).to.equal(7);
    expect(problems({ ...good, bogus: 1 })[0]).to.match(/bogus/);
    expect(problems({ ...good, targets: [{ ...good.targets[0], chap: { user: 'u', secret: 'short' } }] })[0])
      .to.match(/^targets\[0\]\.chap\.secret: must be 12 to 16 characters/);
  });

  it('reads YAML and JSON files and reports syntax errors with the file name', () => {
    const dir = tempDir();
    const yaml = join(dir, 'node.yaml');
    writeFileSync(yaml, 'portals:\n  - host: 127.0.0.1\nvolumes:\n  - name: v\n    size: 1MiB\n    backing: { type: memory }\ntargets:\n  - name: iqn.2026-11.dev.kura:v\n    luns: [{ lun: 0, volume: v }]\n');
    expect(loadConfig(yaml).portals[0]!.port).to.equal(3260);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ "portals": [ }');
    expect(() => loadConfig(bad)).to.throw(ConfigError, /bad\.json: invalid configuration:\n {2}- not valid JSON/);
    expect(() => loadConfig(join(dir, 'missing.yaml'))).to.throw(ConfigError, /cannot read/);
  });

  it('takes a node-wide digest policy and per-target overrides, naming a bad value\'s field', () => {
    const c = validateConfig(good, 'x', '/base');
    expect(c.digests).to.deep.equal({ header: 'optional', data: 'optional' });
    expect(c.targets[0]!.digests).to.equal(undefined);
    const forced = validateConfig({
      ...good, digests: { header: 'required' }, targets: [{ ...good.targets[0], digests: { data: 'required' } }],
    }, 'x', '/base');
    expect(forced.digests).to.deep.equal({ header: 'required', data: 'optional' });
    expect(forced.targets[0]!.digests).to.deep.equal({ data: 'required' });
    expect(problems({ ...good, digests: { header: 'crc32c' } })).to.deep.equal(['digests.header: must be "none", "optional" or "required" (got "crc32c")']);
    expect(problems({ ...good, targets: [{ ...good.targets[0], digests: { data: 'always', extra: 1 } }] })).to.have.members([
      'targets[0].digests.data: must be "none", "optional" or "required" (got "always")',
      'targets[0].digests: Unrecognized key: "extra"',
    ]);
  });

  it('has a default of one 1 GiB file volume on 127.0.0.1:3260', () => {
    const c = defaultConfig('/var/kura');
    expect(c.portals).to.deep.equal([{ host: '127.0.0.1', port: 3260 }]);
    expect(c.volumes[0]!.size).to.equal(2 ** 30);
    expect(c.volumes[0]!.backing).to.deep.include({ type: 'file', path: '/var/kura/vol0.img' });
  });
});
