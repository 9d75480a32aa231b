import { expect } from 'chai';
import { join } from 'node:path';
import { ConfigError } from './config.js';
import { checkRelayPlacement, distanceKm, loadTopology, transferBetween, validateTopology } from './topology.js';
import { repoRoot } from '../test/support/kura-process.js';

const base = {
  psk: 'a-test-pre-shared-key',
  sites: [
    { name: 'a', lat: 35.6812, lon: 139.7671, disasterRadiusKm: 60 },
    { name: 'near', lat: 36.5551, lon: 139.8828 },
    { name: 'far', lat: 34.6654, lon: 133.9185 },
  ],
  nodes: [
    { role: 'controller', name: 'p', site: 'a', iscsi: '127.0.0.1:3260', peer: '127.0.0.1:7400' },
    { role: 'relay', name: 'r', site: 'near', peer: '127.0.0.1:7401' },
    { role: 'controller', name: 's', site: 'far', peer: '127.0.0.1:7402' },
  ],
  volumes: [{ name: 'v', size: '1GiB', primary: 'p', secondary: 's', relays: ['r'] }],
};

function problems(raw: unknown): string[] {
  try {
    validateTopology(raw, 't.yaml', '/base');
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected the topology to be rejected');
}

describe('topology file', () => {
  it('measures great-circle distances (Tokyo-Osaka is about 400 km)', () => {
    expect(distanceKm({ lat: 35.6812, lon: 139.7671 }, { lat: 34.7025, lon: 135.4959 })).to.be.closeTo(403, 2);
    expect(distanceKm({ lat: 0, lon: 0 }, { lat: 0, lon: 0 })).to.equal(0);
  });

  it('fills defaults: relay-durable, store-and-forward, pipelined, node data dirs under the topology\'s', () => {
    const t = validateTopology(base, 'x', '/base');
    expect(t.volumes[0]).to.deep.include({ ackMode: 'relay-durable', relayMode: 'store-and-forward', transfer: 'pipelined', blockSize: 512 });
    expect(t.nodes[1]).to.deep.include({ storage: 'journal', dataDir: '/base/data/r' });
    expect(t.nodes[0]!.role === 'controller' && t.nodes[0]!.iscsi).to.deep.equal({ host: '127.0.0.1', port: 3260 });
  });

  it('names the field and the problem', () => {
    expect(problems({ ...base, nodes: [...base.nodes, { role: 'relay', name: 'x', site: 'mars', peer: '127.0.0.1:7403' }] }))
      .to.deep.equal(['nodes[3].site: no site named "mars" (known: a, near, far)']);
    expect(problems({ ...base, volumes: [{ ...base.volumes[0], primary: 'r' }] }))
      .to.deep.equal(['volumes[0].primary: primary "r" is a relay, not a controller']);
    expect(problems({ ...base, volumes: [{ ...base.volumes[0], relays: [], ackMode: 'relay-durable' }] }))
      .to.deep.equal(['volumes[0].ackMode: "relay-durable" needs at least one relay']);
    expect(problems({ ...base, nodes: [base.nodes[0], { ...base.nodes[1], peer: '127.0.0.1:7400' }, base.nodes[2]] }))
      .to.deep.equal(['nodes[1].peer: 127.0.0.1:7400 is already used by nodes[0].peer']);
    expect(problems({ ...base, nodes: [{ ...base.nodes[0], peer: 'localhost' }, base.nodes[1], base.nodes[2]] })[0])
      .to.equal('nodes[0].peer: "localhost" is not host:port');
    expect(problems({ ...base, links: [{ between: ['p', 'q'], profile: 'metro' }] }))
      .to.deep.equal(['links[0].between[1]: no node named "q"']);
    expect(problems({ ...base, volumes: [{ ...base.volumes[0], ackMode: 'eventually' }] })[0]).to.match(/^volumes\[0\]\.ackMode: /);
    // A WAN profile is a preset name or an object: the problems of the one meant, not "Invalid input".
    expect(problems({ ...base, links: [{ between: ['p', 'r'], profile: { bandwidthBps: -5, jitter: 3 } }] })).to.deep.equal([
      'links[0].profile.jitter: Invalid input: expected object, received number',
      'links[0].profile.bandwidthBps: Too small: expected number to be >0',
    ]);
    expect(problems({ ...base, links: [{ between: ['p', 'r'], profile: { loss: { model: 'bernoulli', p: 2 } } }] }))
      .to.deep.equal(['links[0].profile.loss.p: Too big: expected number to be <=1']);
    expect(problems({ ...base, links: [{ between: ['p', 'r'], profile: 'metr0' }] })).to.deep.equal([
      'links[0].profile: Invalid option: expected one of "lan"|"metro"|"regional"|"continental"; or Invalid input: expected object, received string',
    ]);
    // A relay journal that cannot record a host's largest write (4 MiB) would refuse it forever.
    expect(problems({ ...base, nodes: [base.nodes[0], { ...base.nodes[1], journalSize: '4MiB' }, base.nodes[2]] })).to.deep.equal([
      'nodes[1].journalSize: 4 MiB cannot hold two records of the largest write a host may send (4 MiB, the targets\' maximum transfer length): give it at least 9MiB',
    ]);
    expect(validateTopology({ ...base, nodes: [base.nodes[0], { ...base.nodes[1], journalSize: '9MiB' }, base.nodes[2]] }, 'x', '/base').nodes[1]).to.include({ journalSize: 9 * 2 ** 20 });
  });

  it('volumes sharing a relay must agree on its forwarding policy and relay mode (one journal, one policy), and volumes sharing a link on its transfer mode', () => {
    const v = base.volumes[0]!;
    expect(problems({ ...base, volumes: [v, { ...v, name: 'w', forwarding: { policy: 'pull' }, relayMode: 'cut-through' }] })).to.deep.equal([
      'volumes[1].relayMode: "cut-through", but volume "v" runs relay "r" "store-and-forward": volumes sharing a relay share its mode',
      'volumes[1].forwarding: {"policy":"pull"}, but volume "v" runs relay "r" with {"policy":"immediate"}: volumes sharing a relay share its forwarding policy',
    ]);
    expect(problems({ ...base, volumes: [v, { ...v, name: 'w', transfer: 'fidelity' }] })).to.deep.equal([
      'volumes[1].transfer: "fidelity", but volume "v" sends p -> r "pipelined": volumes sharing a link share its transfer mode',
    ]);
    expect(transferBetween(validateTopology({ ...base, volumes: [{ ...v, transfer: 'fidelity' }] }, 'x', '/base'), 'r', 's')).to.equal('fidelity');
    expect(transferBetween(validateTopology(base, 'x', '/base'), 'p', 'r')).to.equal('pipelined');
    const same = validateTopology({ ...base, volumes: [{ ...v, forwarding: { policy: 'delay', afterMs: 5 } }, { ...v, name: 'w', forwarding: { policy: 'delay', afterMs: 5 } }] }, 'x', '/base');
    expect(same.volumes.map((x) => x.forwarding)).to.deep.equal([{ policy: 'delay', afterMs: 5 }, { policy: 'delay', afterMs: 5 }]);
  });

  it('accepts a good placement and reports the two bad ones of 000-E1', () => {
    expect(checkRelayPlacement(validateTopology(base, 'x', '/'))).to.deep.equal([]);
    const inside = validateTopology({ ...base, sites: [base.sites[0], { ...base.sites[1], lat: 35.9, lon: 139.8 }, base.sites[2]] }, 'x', '/');
    expect(checkRelayPlacement(inside).map((f) => f.problem)).to.deep.equal(['inside-disaster-radius']);
    const beyond = validateTopology({ ...base, sites: [base.sites[0], { name: 'near', lat: 31.58, lon: 130.54 }, base.sites[2]] }, 'x', '/');
    const f = checkRelayPlacement(beyond);
    expect(f.map((x) => x.problem)).to.deep.equal(['not-closer-than-secondary']);
    expect(f[0]!.message).to.match(/relay "r" is 967\.\d km from the primary, not closer than the secondary "s" \(543\.\d km\)/);
  });

  it('ships a default topology that validates and places its relay well', () => {
    const t = loadTopology(join(repoRoot, 'topologies/default.yaml'));
    expect(t.volumes[0]!.ackMode).to.equal('relay-durable');
    expect(checkRelayPlacement(t)).to.deep.equal([]);
  });
});
