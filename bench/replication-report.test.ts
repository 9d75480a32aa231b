import { expect } from 'chai';
import {
  ACK_MODES, DISTANCE_PROFILES, ackCheck, ackLatencySvg, ackLatencyTable, configuredRttMs, logTicks, steadyRate,
  throughputCheck, throughputTable, type AckCase, type AckMode, type ThroughputCase,
} from './lib/replication-report.js';
import { newLatencyHistogram, summarize } from './lib/load.js';

/** Synthetic figures shaped like the real thing: ack point RTT + a fixed overhead. */
function synthetic(overheadMs = 0.1): AckCase[] {
  const cases: AckCase[] = [];
  for (const p of DISTANCE_PROFILES) {
    const rttRelay = configuredRttMs(p.relayKm);
    const rttSecondary = configuredRttMs(p.secondaryKm);
    for (const mode of ACK_MODES) {
      const base = mode === 'local' ? 0.05 : mode.startsWith('relay') ? rttRelay : rttSecondary;
      const p50 = base + overheadMs + (mode.endsWith('durable') ? 0.05 : 0);
      cases.push({
        profile: p.name, secondaryKm: p.secondaryKm, relayKm: p.relayKm, mode,
        rtt: {
          primaryRelay: { configuredMs: rttRelay, measuredMs: rttRelay + 0.02 },
          primarySecondary: { configuredMs: rttSecondary, measuredMs: rttSecondary + 0.02 },
          relaySecondary: { configuredMs: configuredRttMs(p.secondaryKm - p.relayKm) },
        },
        runs: [1, 16].map((qd) => ({
          qd, ops: 1000, iops: (qd * 1000) / p50, mibps: (qd * 1000) / p50 / 256, elapsedMs: 1000,
          latencyMs: { p50, p90: p50 * 1.1, p99: p50 * 1.5, p999: p50 * 2, min: p50 * 0.9, mean: p50, max: p50 * 3 },
        })),
      });
    }
  }
  return cases;
}

describe('replication bench reports', () => {
  it('computes the configured RTT at 5 us/km each way times 1.5', () => {
    expect(configuredRttMs(100)).to.be.closeTo(1.5, 1e-9);
    expect(configuredRttMs(500)).to.be.closeTo(7.5, 1e-9);
    expect(configuredRttMs(3000)).to.be.closeTo(45, 1e-9);
  });

  it('renders the ack-latency markdown table, one row per case and queue depth', () => {
    const table = ackLatencyTable(synthetic());
    const lines = table.split('\n');
    expect(lines).to.have.length(2 + 3 * 5 * 2);
    expect(lines[0]).to.match(/^\| profile .*\| ack mode .*\| p50 ms .*\| p99\.9 ms .*\|\s+IOPS \|$/);
    expect(lines[1]).to.match(/^\|-+\|-+:\|/);
    const row = lines.find((l) => l.includes('regional') && l.includes('relay-durable') && /\|\s+1 \|/.test(l))!;
    expect(row).to.include('1.500 / 1.520');
    expect(row).to.include('1.650'); // p50 = 1.5 + 0.1 + 0.05
    // Every line as wide as the header: aligned columns.
    expect(new Set(lines.map((l) => l.length)).size).to.equal(1);
  });

  it('shows a failed case as an error row', () => {
    const c = synthetic().slice(0, 1).map((x) => ({ ...x, runs: [], error: 'primary never came up' }));
    expect(ackLatencyTable(c)).to.match(/\|\s+error \|.*primary never came up/);
  });

  it('passes the acceptance check when relay-durable is within RTT + 0.3 ms and 3x below remote-durable', () => {
    const ok = ackCheck(synthetic(0.05))!;
    expect(ok.pass).to.equal(true);
    expect(ok.goalPass).to.equal(true);
    expect(ok.rttPrimaryRelayMs).to.be.closeTo(1.5, 1e-9);
    expect(ok.relayDurableP50Ms).to.be.closeTo(1.6, 1e-9);
    expect(ok.ratio).to.be.closeTo(7.6 / 1.6, 1e-9);
    expect(ok.line).to.match(/^PASS ack latency \(regional: relay 100 km, secondary 500 km, QD1\): relay-durable p50 1\.600 ms vs RTT\(primary, relay\) 1\.500 ms \(measured 1\.520 ms\) \+ 0\.3 = 1\.800 ms \[ok; goal \+0\.15 = 1\.650 ms met\]; remote-durable p50 7\.600 ms = 4\.75x relay-durable \[ok 3x\]$/);
    const slow = ackCheck(synthetic(0.4))!;
    expect(slow.pass).to.equal(false);
    expect(slow.latencyPass).to.equal(false);
    expect(slow.ratioPass).to.equal(true);
    expect(slow.line).to.match(/^FAIL .*\[over;.*missed\]/);
  });

  it('fails the ratio when remote-durable is not 3x slower, and reports nothing without the cases', () => {
    const cases = synthetic(0.1).map((c) => (c.mode === 'remote-durable' && c.profile === 'regional'
      ? { ...c, runs: c.runs.map((r) => ({ ...r, latencyMs: { ...r.latencyMs, p50: 4 } })) } : c));
    const r = ackCheck(cases)!;
    expect(r.ratioPass).to.equal(false);
    expect(r.pass).to.equal(false);
    expect(ackCheck(synthetic().filter((c) => c.profile === 'metro'))).to.equal(undefined);
  });

  it('draws an SVG with one line per ack mode, one panel per queue depth, on log axes', () => {
    const svg = ackLatencySvg(synthetic());
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).to.equal(true);
    expect(svg.trimEnd().endsWith('</svg>')).to.equal(true);
    // 5 modes + 2 RTT reference lines, in 2 panels.
    expect(svg.match(/<polyline /g)).to.have.length(2 * 7);
    for (const m of ACK_MODES) expect(svg).to.include(`<title>${m}</title>`);
    expect(svg).to.include('QD1, 4 KiB writes');
    expect(svg).to.include('QD16, 4 KiB writes');
    expect(svg).to.include('>3k<');
    // Polylines run left to right (by distance), with 3 points each.
    const first = /<polyline [^>]*points="([^"]+)"/.exec(svg)![1]!.split(' ').map((p) => Number(p.split(',')[0]));
    expect(first).to.have.length(3);
    expect(first).to.deep.equal([...first].sort((a, b) => a - b));
    // Well-formed enough: every opened element closed.
    expect(svg.match(/<g /g)!.length).to.equal(svg.match(/<\/g>/g)!.length);
  });

  it('escapes text and skips non-positive points on the log scale', () => {
    const cases = synthetic().map((c) => (c.mode === ('local' as AckMode) && c.profile === 'metro'
      ? { ...c, runs: c.runs.map((r) => ({ ...r, latencyMs: { ...r.latencyMs, p50: 0 } })) } : c));
    const svg = ackLatencySvg(cases);
    expect(svg).to.not.include('NaN');
    expect(svg).to.not.include('Infinity');
    expect(svg).to.include('RTT primary-secondary (configured)');
  });

  it('makes 1-2-5 log ticks', () => {
    expect(logTicks(0.3, 60)).to.deep.equal([0.5, 1, 2, 5, 10, 20, 50]);
    expect(logTicks(15, 4000)).to.deep.equal([20, 50, 100, 200, 500, 1000, 2000]);
  });

  it('summarizes HDR histograms in milliseconds', () => {
    const h = newLatencyHistogram();
    for (let i = 1; i <= 1000; i++) h.recordValue(i * 1000); // 1 us .. 1 ms
    const s = summarize(h);
    expect(s.p50).to.be.closeTo(0.5, 0.001);
    expect(s.p99).to.be.closeTo(0.99, 0.001);
    expect(s.p999).to.be.closeTo(0.999, 0.001);
    expect(s.max).to.be.closeTo(1, 0.001);
  });

  it('measures the steady rate between the first sample of the window and the last, and checks 90% of the link', () => {
    const samples = [0, 500, 1000, 1500, 2000, 2500, 3000].map((tMs) => ({ tMs, hostBytes: 0, appliedBytes: tMs < 1000 ? tMs * 50_000 : 50e6 + (tMs - 1000) * 120_000 }));
    const r = steadyRate(samples, (s) => s.appliedBytes, 1000)!;
    expect(r.bytesPerSec).to.be.closeTo(120e6, 1);
    expect(r.fromMs).to.equal(1000);
    expect(r.toMs).to.equal(3000);
    expect(steadyRate(samples.slice(0, 1), (s) => s.appliedBytes, 0)).to.equal(undefined);
    const c: ThroughputCase = {
      mode: 'remote-received', requestBytes: 2 ** 20, qd: 32, linkBps: 1e9, rttMs: { configuredMs: 10, measuredMs: 10.2 },
      host: { ops: 300, mibps: 112, iops: 112, elapsedMs: 3000, latencyMs: { p50: 280, p90: 290, p99: 300, p999: 310, min: 200, mean: 280, max: 320 } },
      applied: { bytesPerSec: 120e6, fromMs: 1000, toMs: 3000, percentOfLink: 96 }, samples,
    };
    expect(throughputCheck([c]).pass).to.equal(true);
    expect(throughputCheck([c]).line).to.match(/^PASS replication throughput \(remote-received, 1024 KiB writes at QD32, 1 Gb\/s, RTT 10\.00 ms\): 960 Mb\/s applied at the secondary = 96\.0% of the link/);
    expect(throughputCheck([{ ...c, applied: { ...c.applied!, percentOfLink: 80 } }]).pass).to.equal(false);
    expect(throughputCheck([]).line).to.match(/^FAIL/);
    expect(throughputTable([c])).to.match(/\| remote-received \|\s+1 MiB \|\s+32 \|\s+1 Gb\/s \|\s+10\.00 \/ 10\.20 \|/);
  });
});
