import type { ValueModel } from './score.ts';

/**
 * A key's dispersion, learned robustly. Counts: the Pearson dispersion, the mean of
 * (value − expected)² / expected (1 for a Poisson key, more for a bursty one), so it is the same
 * number in a quiet hour and a busy one. Gauge: the variance of value − expected.
 *
 * Robust: each squared residual is cut at DISPERSION_CLIP² times the current dispersion before it
 * is learned, so one spike moves the estimate by at most a few per cent of a bucket's weight
 * instead of multiplying it (two spikes at 37× once left a key's variance at 45× its mean for
 * days). And it forgets: the weight of a bucket halves every DISPERSION_HALF_LIFE_MS (one day), so
 * a change of regime is learned within days.
 */

export const DISPERSION_CLIP = 5;
export const DISPERSION_HALF_LIFE_MS = 24 * 60 * 60_000;
/** Buckets of history before residuals are cut: the estimate must exist before it can judge. */
export const CLIP_AFTER_BUCKETS = 30;

/** The squared residual a bucket teaches, cut at DISPERSION_CLIP² times the current dispersion once it has history. */
export function squaredResidual(
  value: number,
  expected: number,
  dispersion: number,
  model: ValueModel,
  meanFloor: number,
  history: number,
): number {
  const r = value - expected;
  const r2 = model === 'gauge' ? r * r : (r * r) / Math.max(expected, meanFloor);
  if (history < CLIP_AFTER_BUCKETS) return r2;
  const cap = DISPERSION_CLIP * DISPERSION_CLIP * (model === 'gauge' ? dispersion : Math.max(1, dispersion));
  return cap > 0 && r2 > cap ? cap : r2;
}

/** The learning rate of the dispersion: a cumulative average at first, then an EWMA with the half-life. */
export function dispersionAlpha(history: number, bucketMs: number): number {
  return Math.max(1 / (history + 1), 1 - 0.5 ** (bucketMs / DISPERSION_HALF_LIFE_MS));
}
