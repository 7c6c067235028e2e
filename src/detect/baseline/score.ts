import { log10PoissonUpperTail, logGamma, regularizedGammaQ } from '../stats.ts';

/**
 * One calibrated score for every key. A bucket's **surprise** is how rare its value is under the
 * key's expectation, in decades of tail probability: 6 means a one-in-a-million bucket, on a key
 * with 0.1 calls per bucket as on one with 10,000, because the tail comes from the key's own
 * model (a quasi-Poisson count, or a Gaussian for metric series) with its own dispersion.
 *
 * The **score** maps surprise to [0, 1) without saturating: score = d / (d + 4). It never reaches
 * 1, so a larger spike always scores higher. Reading it:
 *
 *   score  0.5  → 10⁻⁴ (one bucket in 10,000: about once a week per key in one-minute buckets)
 *   score  0.6  → 10⁻⁶ (one in a million; the default threshold)
 *   score  0.75 → 10⁻¹²
 *   score  0.9  → 10⁻³⁶
 */

export type Direction = 'up' | 'down' | 'both';
export type ValueModel = 'counts' | 'gauge';

/** Surprise (decades) that maps to a score of 0.5. */
export const HALF_SCORE_DECADES = 4;

export function scoreOf(decades: number): number {
  return decades > 0 ? decades / (decades + HALF_SCORE_DECADES) : 0;
}

/** The surprise a score stands for: the inverse of scoreOf. */
export function decadesOf(score: number): number {
  if (score <= 0) return 0;
  if (score >= 1) return Number.POSITIVE_INFINITY;
  return (HALF_SCORE_DECADES * score) / (1 - score);
}

export const watchesUp = (d: Direction): boolean => d !== 'down';
export const watchesDown = (d: Direction): boolean => d !== 'up';

/**
 * Decades of rarity of `value` at or above `expected`: −log10 P(X ≥ value). Counts: a
 * quasi-Poisson (values and expectation divided by the dispersion, variance / mean ≥ 1), so a
 * bursty key needs a bigger excess. Gauge: a Gaussian with variance `dispersion`.
 */
export function surpriseAbove(value: number, expected: number, dispersion: number, model: ValueModel): number {
  if (!(value > expected)) return 0;
  if (model === 'gauge') return gaussianTailDecades((value - expected) / gaugeSigma(expected, dispersion));
  const phi = Math.max(1, dispersion);
  return Math.max(0, -log10PoissonUpperTail(value / phi, expected / phi));
}

/** Decades of rarity of `value` at or below `expected`: −log10 P(X ≤ value), the mirror of surpriseAbove. */
export function surpriseBelow(value: number, expected: number, dispersion: number, model: ValueModel): number {
  if (!(value < expected)) return 0;
  if (model === 'gauge') return gaussianTailDecades((expected - value) / gaugeSigma(expected, dispersion));
  const phi = Math.max(1, dispersion);
  const x = Math.max(0, value) / phi;
  const lambda = expected / phi;
  // P(X ≤ x) = Q(x + 1, λ); at zero it is e^−λ exactly.
  if (x === 0) return lambda / Math.LN10;
  const q = regularizedGammaQ(x + 1, lambda);
  if (q > 0) return Math.max(0, -Math.log10(q));
  // Underflow: the leading term λ^x e^−λ / Γ(x + 1).
  return -(x * Math.log(lambda) - lambda - logGamma(x + 1)) / Math.LN10;
}

/** A gauge's standard deviation, never zero: a flat series still has a scale to be surprised against. */
function gaugeSigma(expected: number, variance: number): number {
  return Math.sqrt(Math.max(variance, (1e-6 * Math.abs(expected)) ** 2, 1e-12));
}

/**
 * −log10 of the Gaussian upper tail at z ≥ 0, in log space (no underflow however large z is):
 * erfc by Numerical Recipes' Chebyshev fit (relative error < 1.2·10⁻⁷ everywhere).
 */
export function gaussianTailDecades(z: number): number {
  if (!(z > 0)) return 0;
  const u = z / Math.SQRT2;
  const t = 1 / (1 + 0.5 * u);
  const lnErfc =
    Math.log(t) -
    u * u -
    1.26551223 +
    t *
      (1.00002368 +
        t *
          (0.37409196 +
            t *
              (0.09678418 +
                t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return Math.max(0, -(lnErfc - Math.LN2) / Math.LN10);
}
