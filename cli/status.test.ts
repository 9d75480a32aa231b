import { expect } from 'chai';
import type { ReplicationStatus } from '../firmware/replication/types.js';
import { replicationLag, volumeNotes, waitingNote, type NodeReport, type StatusReport } from './status.js';
import { validateTopology } from './topology.js';

const secondary = (o: Partial<ReplicationStatus>): ReplicationStatus => ({
  volume: 'vol0', role: 'secondary', ackMode: 'local', generation: 0, sequence: 41, lagWrites: 0, lagBytes: 0, pendingAck: 0, peers: [], ...o,
});

describe('kura status: a secondary\'s writes waiting behind a gap', () => {
  it('counts them while the gap is young (reordering between paths)', () => {
    expect(waitingNote(secondary({ waiting: 3 }))).to.equal('3 out of order, waiting');
    expect(waitingNote(secondary({ waiting: 3, missing: { sequence: 42, forMs: 2500 } }))).to.equal('3 out of order, waiting for sequence 42 (2 s)');
  });

  it('a secondary whose applying stopped on a medium error says so, with the error', () => {
    expect(volumeNotes(secondary({ failure: 'write failed on medium file:/d/vol0.img at LBA 8: ENOSPC' }))).to.deep.equal([
      'read-only', 'applying stopped: write failed on medium file:/d/vol0.img at LBA 8: ENOSPC (tried again each second as the writes come again)',
    ]);
    expect(volumeNotes(secondary({}))).to.deep.equal(['read-only']);
  });

  it('a primary names a stalled relay', () => {
    const peers = [
      { name: 'relay1', unitId: 2, state: 'up' as const, rttMs: 1.5, outstanding: 1, stalled: true },
      { name: 'secondary', unitId: 3, state: 'up' as const, rttMs: 7.5, outstanding: 0 },
    ];
    expect(volumeNotes(secondary({ role: 'primary', peers }))).to.deep.equal(['relay relay1 answers nothing (1 outstanding): writes go by the other paths']);
  });

  it('names the way out once the gap has lasted 10 s', () => {
    const note = waitingNote(secondary({ waiting: 9, missing: { sequence: 42, forMs: 15_000 } }));
    expect(note).to.match(/^9 out of order, waiting for sequence 42 \(15 s\): /);
    expect(note).to.contain('kura up --resync');
  });
});

describe('kura status: replication lag per volume', () => {
  const topology = (selection: string) => validateTopology({
    name: 't', psk: 'a-pre-shared-key-of-16+', dataDir: '/tmp/kura-lag-test',
    sites: [{ name: 'a', lat: 35, lon: 139, disasterRadiusKm: 10 }, { name: 'b', lat: 35.9, lon: 139, disasterRadiusKm: 10 }, { name: 'c', lat: 36.5, lon: 139, disasterRadiusKm: 10 }],
    nodes: [
      { role: 'controller', name: 'p', site: 'a', iscsi: '127.0.0.1:3260', peer: '127.0.0.1:7400' },
      { role: 'relay', name: 'r1', site: 'b', peer: '127.0.0.1:7401' },
      { role: 'relay', name: 'r2', site: 'b', peer: '127.0.0.1:7402' },
      { role: 'controller', name: 's', site: 'c', iscsi: '127.0.0.1:3261', peer: '127.0.0.1:7403' },
    ],
    links: [{ between: ['p', 'r1'] }, { between: ['p', 'r2'] }, { between: ['r1', 's'] }, { between: ['r2', 's'] }],
    volumes: [
      { name: 'v', size: '1MiB', primary: 'p', secondary: 's', relays: ['r1', 'r2'], ackMode: 'relay-durable', relaySelection: selection },
      { name: 'w', size: '1MiB', primary: 'p', secondary: 's', relays: ['r1'], ackMode: 'relay-durable' },
    ],
  }, 'test', '/tmp');
  const relay = (node: string, byVolume: Record<string, number>): NodeReport => ({
    node, role: 'relay', site: 'b', up: true,
    status: {
      node, role: 'relay', site: 'b', pid: 1, uptimeMs: 1, volumes: [], links: [],
      relay: {
        backlogRecords: 0, backlogBytes: Object.values(byVolume).reduce((a, b) => a + b, 0), journal: {} as never, forwarded: 0,
        backlogByVolume: Object.fromEntries(Object.entries(byVolume).map(([k, bytes]) => [k, { records: bytes / 4096, bytes }])),
      },
    },
  });
  const report = (): StatusReport => ({ topology: 't', file: 'f', nodes: [relay('r1', { v: 8192, w: 40960 }), relay('r2', { v: 4096 })] });

  it('counts a volume\'s own share of each relay\'s backlog, not the other volumes\'', () => {
    expect(replicationLag(topology('round-robin'), report()).map((l) => [l.volume, l.lagBytes])).to.deep.equal([['v', 12288], ['w', 40960]]);
  });

  it('same data to all relays: the copies count once (the largest backlog)', () => {
    expect(replicationLag(topology('all'), report()).map((l) => [l.volume, l.lagBytes])).to.deep.equal([['v', 8192], ['w', 40960]]);
  });
});
