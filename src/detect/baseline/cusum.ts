/**
 * Sustained shifts: evidence that accumulates over consecutive moderately unusual buckets. A
 * CUSUM over the buckets' surprise (decades, one direction): S ← max(0, S + d − k), with the
 * reference k = 1 decade (a bucket rarer than one in ten adds, a common one takes away). An hour at
 * 3× a busy key's rate never makes one bucket rare enough to fire, but adds a few decades a bucket.
 *
 * Calibration: under the key's expectation, d is at most as heavy as −log10 of a uniform, and the
 * CUSUM of it exceeds S with probability about 10^(−0.86·S) in any one bucket. So 0.86·S is the
 * surprise of the run, in the same decades as one bucket's, and the score of a bucket is the
 * larger of the two: one threshold serves spikes and shifts.
 *
 * Reset: a bucket on the other side of the expectation (no evidence at all) takes 2k away, and S
 * never exceeds CUSUM_CAP_FACTOR × the threshold's evidence, so a key that returns to normal is
 * below the threshold again after one ordinary bucket, not after hours of draining a large sum.
 * The run's evidence therefore says "sustained", never "how much": a bucket's own surprise does.
 */

export const CUSUM_REFERENCE = 1;
export const CUSUM_WEIGHT = 0.86;
export const CUSUM_CAP_FACTOR = 1.1;

export interface CusumRun {
  /** Accumulated evidence (decades over the reference). */
  s: number;
  /** First bucket of the run (where the shift began); meaningful while s > 0. */
  startMs: number;
  /** Sum of the run's values and its buckets, for the Insight's averages. */
  sum: number;
  buckets: number;
  /** Highest evidence the run reached, in decades (the run's surprise, as `cusumDecades` or the likelihood ratio's). */
  peak: number;
}

/** The run after one bucket of surprise `d` (decades in this direction, 0 when the value is on the other side). */
export function cusumStep(run: CusumRun, d: number, bucketStartMs: number, value: number, thresholdDecades: number): void {
  const cap = (CUSUM_CAP_FACTOR * thresholdDecades) / CUSUM_WEIGHT;
  const next = d > 0 ? run.s + d - CUSUM_REFERENCE : run.s - 2 * CUSUM_REFERENCE;
  advance(run, next, cap, bucketStartMs, value, CUSUM_WEIGHT);
}

/**
 * Moves a run to evidence `next` (capped at `cap`): over when it is not positive, begun at this
 * bucket when it was over. `weight` turns the evidence into decades for the run's peak.
 */
function advance(run: CusumRun, next: number, cap: number, bucketStartMs: number, value: number, weight: number): void {
  if (next <= 0 || run.s === 0) {
    run.sum = 0;
    run.buckets = 0;
    run.peak = 0;
  }
  if (next <= 0) {
    run.s = 0;
    return;
  }
  if (run.s === 0) run.startMs = bucketStartMs;
  run.s = Math.min(next, cap);
  run.peak = Math.max(run.peak, weight * run.s);
  run.sum += value;
  run.buckets++;
}

/** The run's surprise, in the decades of one bucket's. */
export function cusumDecades(run: CusumRun): number {
  return CUSUM_WEIGHT * run.s;
}

/**
 * Drops use a likelihood-ratio CUSUM instead: a silence at 2 calls a bucket is only 0.87 decades
 * rare per bucket, under the surprise CUSUM's reference, so it would never add up. The
 * log-likelihood ratio of the bucket under "the rate fell to DROP_RATIO of its expectation"
 * against "it did not" adds 0.39 λ decades for an empty bucket and takes away for an ordinary one;
 * the run's sum S, in decades, is a one-in-10^S event under the expectation (Wald), so it is
 * scored as is. A bucket at or above the expectation ends the run.
 */
export const DROP_RATIO = 0.1;

/** Decades of evidence for a drop in one bucket (negative when the bucket speaks against one). Counts: quasi-Poisson. */
export function dropEvidence(value: number, expected: number, dispersion: number): number {
  const phi = Math.max(1, dispersion);
  const x = Math.max(0, value) / phi;
  const lambda = expected / phi;
  return (x * Math.log(DROP_RATIO) - lambda * (DROP_RATIO - 1)) / Math.LN10;
}

/** The run after one bucket of drop evidence `llr` (decades); `ordinary`: the bucket is at or above its expectation. */
export function dropStep(
  run: CusumRun,
  llr: number,
  ordinary: boolean,
  bucketStartMs: number,
  value: number,
  thresholdDecades: number,
): void {
  advance(run, ordinary ? 0 : run.s + llr, CUSUM_CAP_FACTOR * thresholdDecades, bucketStartMs, value, 1);
}

/**
 * Rises of a sparse key's counts: a likelihood-ratio CUSUM as well. The surprise CUSUM's reference
 * of one decade takes back almost all a one-call bucket adds on a key that calls a few times a day
 * (one call where 0.05 are expected is 1.3 decades rare), so 1–2 calls a minute for ten minutes
 * never added up. A key is sparse when its run floor (minEventsPerBucket calls over
 * RISE_RUN_BUCKETS buckets) asks more than its ratio floor does: then the run is tested for that
 * rate, S ← max(0, S + LLR) in decades, each empty bucket taking away what the alternative expected
 * and did not get. As with drops (Wald), S decades of it are a one-in-10^S event under the
 * expectation, scored as is. Busier keys keep the surprise CUSUM above.
 */
export const RISE_RUN_BUCKETS = 5;

/** Whether a key's rises are judged by likelihood ratio: its run floor of calls, not its ratio floor, sets the rate tested for. */
export function sparseRises(expected: number, ratio: number, minEvents: number): boolean {
  return ratio * expected < minEvents / RISE_RUN_BUCKETS;
}

/** The rate per bucket a sparse key's run upwards is tested for. */
export function riseAlternative(expected: number, ratio: number, minEvents: number): number {
  return Math.max(ratio * expected, minEvents / RISE_RUN_BUCKETS);
}

/** Decades of evidence for a rise to `alternative` in one bucket (negative when the bucket speaks against one). Counts: quasi-Poisson. */
export function riseEvidence(value: number, expected: number, dispersion: number, alternative: number): number {
  const phi = Math.max(1, dispersion);
  return (Math.max(0, value) * Math.log(alternative / expected) - (alternative - expected)) / phi / Math.LN10;
}

/** The run after one bucket of rise evidence `llr` (decades). */
export function riseStep(run: CusumRun, llr: number, bucketStartMs: number, value: number, thresholdDecades: number): void {
  advance(run, run.s + llr, CUSUM_CAP_FACTOR * thresholdDecades, bucketStartMs, value, 1);
}
