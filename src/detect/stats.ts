/**
 * Count statistics for sparse event rates. Most principal × action keys see a handful of calls
 * a day, where a Gaussian z-score is meaningless; a Poisson tail is right for them, and a
 * quasi-Poisson (counts scaled by the dispersion) keeps bursty keys from crying wolf.
 */

const EPS = 1e-15;
const MAX_ITER = 500;

/** ln Γ(x), Lanczos approximation (g = 7, n = 9). */
export function logGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
    -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const xx = x - 1;
  let a = c[0] as number;
  const t = xx + 7.5;
  for (let i = 1; i < 9; i++) a += (c[i] as number) / (xx + i);
  return 0.5 * Math.log(2 * Math.PI) + (xx + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Regularized lower incomplete gamma P(a, x), a > 0, x ≥ 0. */
export function regularizedGammaP(a: number, x: number): number {
  if (x <= 0) return 0;
  if (x < a + 1) {
    // Series representation.
    let sum = 1 / a;
    let term = sum;
    for (let n = 1; n < MAX_ITER; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * EPS) break;
    }
    return Math.min(1, sum * Math.exp(-x + a * Math.log(x) - logGamma(a)));
  }
  return 1 - regularizedGammaQ(a, x);
}

/** Regularized upper incomplete gamma Q(a, x) = 1 − P(a, x), by Lentz's continued fraction when x ≥ a + 1. */
export function regularizedGammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  if (x < a + 1) return 1 - regularizedGammaP(a, x);
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < MAX_ITER; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < EPS) break;
  }
  return Math.max(0, Math.exp(-x + a * Math.log(x) - logGamma(a)) * h);
}

/**
 * P(X ≥ x) for X ~ Poisson(λ), continuous in x (so quasi-Poisson scaled counts work):
 * P(X ≥ x) = P(x, λ), the regularized lower incomplete gamma.
 */
export function poissonUpperTail(x: number, lambda: number): number {
  if (x <= 0) return 1;
  if (lambda <= 0) return 0;
  return regularizedGammaP(x, lambda);
}

/** log10 of the upper tail, computed in log space so tiny tails do not underflow to −∞ too early. */
export function log10PoissonUpperTail(x: number, lambda: number): number {
  const p = poissonUpperTail(x, lambda);
  if (p > 0) return Math.log10(p);
  // Underflow: use the leading term of the tail, λ^x e^−λ / Γ(x+1).
  return (x * Math.log(lambda) - lambda - logGamma(x + 1)) / Math.LN10;
}

/** Decades of tail probability that map to a score of 1. */
export const SCORE_DECADES = 10;

/**
 * Anomaly score in [0, 1] of `count` events in a bucket whose baseline has mean `mean` and
 * variance `variance` per bucket: −log10 of the quasi-Poisson upper tail, over 10 decades.
 * 0.6 means the count had a one-in-a-million chance under the baseline.
 */
export function spikeScore(count: number, mean: number, variance: number, meanFloor: number): number {
  const lambda = Math.max(mean, meanFloor);
  if (count <= lambda) return 0;
  const dispersion = Math.max(1, variance / lambda);
  const log10p = log10PoissonUpperTail(count / dispersion, lambda / dispersion);
  return Math.min(1, Math.max(0, -log10p / SCORE_DECADES));
}
