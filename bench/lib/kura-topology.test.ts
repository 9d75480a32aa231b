import { expect } from 'chai';
import { parse } from 'yaml';
import { checkRelayPlacement, distanceKm, validateTopology } from '../../cli/topology.js';
import { wanProfileOf } from '../../cli/topology-network.js';
import { resolveProfile } from '../../hal/wan/profiles.js';
import { ACK_MODES, DISTANCE_PROFILES, configuredRttMs } from './replication-report.js';
import { latitudeForKm, relayTopology, rttBetween, topologyYaml } from './kura-topology.js';

describe('bench topologies', () => {
  it('places sites on a meridian at the exact great-circle distance', () => {
    for (const km of [20, 100, 500, 3000]) {
      expect(distanceKm({ lat: 0, lon: 0 }, { lat: latitudeForKm(km), lon: 0 })).to.be.closeTo(km, 1e-6);
    }
  });

  for (const p of DISTANCE_PROFILES) {
    it(`writes a valid ${p.name} topology: placement ok, links exactly 5 us/km x 1.5, one volume per ack mode`, async () => {
      const { yaml, iscsi } = await topologyYaml(relayTopology(p, ACK_MODES, { bandwidthBps: 1e9, volumeSize: '1GiB' }), '/tmp/kura-bench-x/data');
      const t = validateTopology(parse(yaml), 'bench.yaml', '/tmp/kura-bench-x');
      expect(checkRelayPlacement(t)).to.deep.equal([]);
      expect(t.dataDir).to.equal('/tmp/kura-bench-x/data');
      expect(t.volumes.map((v) => [v.name, v.ackMode, v.relays, v.secondary])).to.deep.equal(ACK_MODES.map((m) => [m, m, ['relay'], 'secondary']));
      const delays = Object.fromEntries(t.links.map((l) => {
        const sitesKm = 0; // the explicit distanceKm must win over the sites' distance
        return [l.between.join('-'), resolveProfile(wanProfileOf(l.profile, sitesKm, 'x').profile).delayMs];
      }));
      expect(delays['primary-relay']! * 2).to.be.closeTo(configuredRttMs(p.relayKm), 1e-9);
      expect(delays['primary-secondary']! * 2).to.be.closeTo(configuredRttMs(p.secondaryKm), 1e-9);
      expect(delays['relay-secondary']! * 2).to.be.closeTo(configuredRttMs(p.secondaryKm - p.relayKm), 1e-9);
      // Distinct ports, and the primary's portal is the one the bench connects to.
      const ports = t.nodes.flatMap((n) => [n.peer.port, ...(n.role === 'controller' && n.iscsi ? [n.iscsi.port] : [])]);
      expect(new Set(ports).size).to.equal(ports.length);
      const primary = t.nodes.find((n) => n.name === 'primary')!;
      expect(primary.role === 'controller' && primary.iscsi?.port).to.equal(iscsi.get('primary')!.port);
    });
  }

  it('finds a link RTT whichever side reported it', () => {
    expect(rttBetween({ 'relay->primary': 1.6 }, 'primary', 'relay')).to.equal(1.6);
    expect(rttBetween({ 'primary->relay': 1.5, 'relay->primary': 1.6 }, 'primary', 'relay')).to.equal(1.5);
    expect(rttBetween({}, 'primary', 'relay')).to.equal(undefined);
  });
});
