import { expect } from 'chai';
import type { ReplicationStatus } from '../firmware/replication/types.js';
import { waitingNote } from './status.js';

const secondary = (o: Partial<ReplicationStatus>): ReplicationStatus => ({
  volume: 'vol0', role: 'secondary', ackMode: 'local', generation: 0, sequence: 41, lagWrites: 0, lagBytes: 0, pendingAck: 0, peers: [], ...o,
});

describe('kura status: a secondary\'s writes waiting behind a gap', () => {
  it('counts them while the gap is young (reordering between paths)', () => {
    expect(waitingNote(secondary({ waiting: 3 }))).to.equal('3 out of order, waiting');
    expect(waitingNote(secondary({ waiting: 3, missing: { sequence: 42, forMs: 2500 } }))).to.equal('3 out of order, waiting for sequence 42 (2 s)');
  });

  it('names the way out once the gap has lasted 10 s', () => {
    const note = waitingNote(secondary({ waiting: 9, missing: { sequence: 42, forMs: 15_000 } }));
    expect(note).to.match(/^9 out of order, waiting for sequence 42 \(15 s\): /);
    expect(note).to.contain('kura up --resync');
  });
});
