/**
 * The random processes of a link: per-packet loss (Bernoulli, Gilbert-Elliott) and delay jitter.
 * Each draws from its own Random so that turning one impairment on does not shift the sequence of
 * another (the same seed loses the same packets with or without jitter).
 */
import type { Random } from '../sim/random.js';
import type { Jitter, LossModel } from './profiles.js';

export interface LossProcess {
  /** Steps the process by one packet on the wire: true when that packet is lost. */
  lose(): boolean;
  /** Long-run loss probability. */
  readonly expected: number;
}

export function lossProcess(model: LossModel, random: Random): LossProcess {
  switch (model.model) {
    case 'none':
      return { lose: () => false, expected: 0 };
    case 'bernoulli': {
      const p = model.p;
      return { lose: () => p > 0 && random.float() < p, expected: p };
    }
    case 'gilbert-elliott':
      return new GilbertElliott(model.p, model.r, model.lossGood ?? 0, model.lossBad ?? 1, random);
  }
}

export class GilbertElliott implements LossProcess {
  /** Starts in the good state, as netem does. */
  bad = false;
  readonly expected: number;

  constructor(
    private readonly p: number,
    private readonly r: number,
    private readonly lossGood: number,
    private readonly lossBad: number,
    private readonly random: Random,
  ) {
    this.expected = p + r === 0 ? lossGood : (r * lossGood + p * lossBad) / (p + r);
  }

  lose(): boolean {
    // The packet sees the current state; then the chain takes its step.
    const lost = this.random.float() < (this.bad ? this.lossBad : this.lossGood);
    if (this.bad) {
      if (this.random.float() < this.r) this.bad = false;
    } else if (this.random.float() < this.p) {
      this.bad = true;
    }
    return lost;
  }
}

/** Lomax shape for the pareto jitter: heavy-tailed but with finite variance. */
const PARETO_SHAPE = 3;

/** A sampler of mean-zero delay variation, ms (see Jitter in profiles.ts). */
export function jitterSampler(j: Jitter, random: Random): () => number {
  const ms = j.ms;
  if (j.dist === 'none' || ms === 0) return () => 0;
  switch (j.dist) {
    case 'uniform':
      return () => (2 * random.float() - 1) * ms;
    case 'normal':
      return () => ms * gaussian(random);
    case 'pareto': {
      // Lomax(lambda, a) has mean lambda / (a - 1); scale it to mean `ms` and subtract that.
      const lambda = ms * (PARETO_SHAPE - 1);
      return () => lambda * ((1 - random.float()) ** (-1 / PARETO_SHAPE) - 1) - ms;
    }
  }
}

/** Standard normal (Box-Muller; one of the pair is thrown away to keep the draw count fixed per call). */
export function gaussian(random: Random): number {
  const u = 1 - random.float(); // (0, 1]
  const v = random.float();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Standard deviation of a jitter distribution (for the RTO estimate). */
export function jitterStdMs(j: Jitter): number {
  switch (j.dist) {
    case 'none':
      return 0;
    case 'uniform':
      return j.ms / Math.sqrt(3);
    case 'normal':
      return j.ms;
    case 'pareto': {
      const a = PARETO_SHAPE;
      const lambda = j.ms * (a - 1);
      return Math.sqrt((lambda * lambda * a) / ((a - 1) ** 2 * (a - 2)));
    }
  }
}
