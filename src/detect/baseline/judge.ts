import {
  type CusumRun,
  cusumDecades,
  cusumStep,
  dropEvidence,
  dropStep,
  riseAlternative,
  riseEvidence,
  riseStep,
  sparseRises,
} from './cusum.ts';
import { type Direction, scoreOf, surpriseAbove, surpriseBelow, type ValueModel, watchesDown, watchesUp } from './score.ts';

/**
 * One bucket of one key, judged: the surprise of its value in the key's directions (one bucket's
 * and the sustained run's), the floors that can veto it, and the one score both the series and the
 * Start/End machine read. A vetoed bucket scores 0 and names the floor, so `backtest --series`
 * and the Insights never disagree about a bucket.
 */

/** Why a bucket that was rare enough is not news. */
export type Veto = 'learning' | 'minEvents' | 'minRatio' | 'burst';

export interface JudgeSettings {
  model: ValueModel;
  direction: Direction;
  /** Surprise (decades) of the score threshold. */
  thresholdDecades: number;
  minEventsPerBucket: number;
  minRatio: number;
  burstMargin: number;
}

export interface JudgeInput {
  bucketStartMs: number;
  value: number;
  /** The seasonal expectation, floored (counts) where a floor applies. */
  expected: number;
  /** The expectation without the floor: what a drop falls from (a floor says nothing about a silence). */
  dropFrom: number;
  dispersion: number;
  /** Too little history to judge at all. */
  learning: boolean;
  /** Whether a drop can be judged yet: the expectation must know the key's quiet hours. */
  dropsReady: boolean;
  /** The key's burst memory (its usual highest bucket). */
  burst: number;
  /** The key's run memory (the highest average of its past sustained runs upwards). */
  runPeak: number;
  /** Too young to know its runs' habits (a week): a sustained run upwards is remembered, not reported. */
  runsCold: boolean;
}

export interface Judgement {
  /** Which way the value is unusual (the larger evidence). */
  direction: 'up' | 'down';
  /** Surprise of the bucket alone, in that direction (decades). */
  bucketDecades: number;
  /** Surprise of the run the bucket belongs to (decades; 0 when none). */
  runDecades: number;
  /** The evidence the score is made of: the larger of the two. */
  decades: number;
  /** Whether the run (a sustained shift) rather than the bucket alone carries the evidence. */
  sustained: boolean;
  /** scoreOf(decades), before the floors. */
  rawScore: number;
  /** rawScore, or 0 when a floor vetoes the bucket. */
  score: number;
  veto: Veto | null;
}

/**
 * Sustained runs must average this share of the single-bucket ratio floor's excess: at the default
 * minRatio of 3, a run averaging 2.5× its expectation counts (a 3× shift, with its noise, does; a
 * busy weekday against an hourly profile that has weekends in it does not).
 */
const RUN_RATIO_SHARE = 0.75;
/** The ratio floor of a sustained run. */
export function runRatio(s: Pick<JudgeSettings, 'minRatio'>): number {
  return 1 + (s.minRatio - 1) * RUN_RATIO_SHARE;
}

/** A run's drop needs each bucket to expect at least minEventsPerBucket / this many calls. */
const DROP_RUN_MIN_SHARE = 10;

/** Judges one bucket and advances the key's sustained-shift runs (`up`, `down`) by it. */
export function judge(s: JudgeSettings, input: JudgeInput, up: CusumRun, down: CusumRun): Judgement {
  const { value, expected, dispersion, bucketStartMs } = input;
  const dUp = watchesUp(s.direction) ? surpriseAbove(value, expected, dispersion, s.model) : 0;
  const dropFrom = input.dropFrom;
  const dDown = watchesDown(s.direction) && input.dropsReady ? surpriseBelow(value, dropFrom, dispersion, s.model) : 0;
  // Drops of counts, and rises of a sparse key's: likelihood-ratio runs (see cusum.ts); the rest: the surprise run.
  const llrDrops = s.model === 'counts';
  const llrRises = llrDrops && sparseRises(expected, runRatio(s), s.minEventsPerBucket);
  if (watchesUp(s.direction)) {
    if (llrRises) {
      const alternative = riseAlternative(expected, runRatio(s), s.minEventsPerBucket);
      riseStep(up, riseEvidence(value, expected, dispersion, alternative), bucketStartMs, value, s.thresholdDecades);
    } else cusumStep(up, dUp, bucketStartMs, value, s.thresholdDecades);
  }
  if (watchesDown(s.direction) && input.dropsReady) {
    if (llrDrops) dropStep(down, dropEvidence(value, dropFrom, dispersion), value >= dropFrom, bucketStartMs, value, s.thresholdDecades);
    else cusumStep(down, dDown, bucketStartMs, value, s.thresholdDecades);
  }
  const downRun = llrDrops ? down.s : cusumDecades(down);
  const upRun = llrRises ? up.s : cusumDecades(up);
  const upDecades = Math.max(dUp, upRun);
  const downDecades = Math.max(dDown, downRun);
  const isUp = upDecades >= downDecades;
  const bucketDecades = isUp ? dUp : dDown;
  const runDecades = isUp ? upRun : downRun;
  const decades = Math.max(bucketDecades, runDecades);
  const sustained = runDecades > bucketDecades;
  const rawScore = scoreOf(decades);
  let veto: Veto | null = null;
  if (rawScore > 0) {
    if (input.learning) veto = 'learning';
    else if (s.model === 'counts') {
      const run = isUp ? up : down;
      // A run is judged by its average, a bucket by its value.
      const level = sustained && run.buckets > 0 ? run.sum / run.buckets : value;
      const ratio = sustained ? runRatio(s) : s.minRatio;
      if (isUp) {
        // A run needs minEventsPerBucket calls in all, a bucket on its own.
        if ((sustained ? run.sum : level) < s.minEventsPerBucket) veto = 'minEvents';
        else if (level < ratio * expected) veto = 'minRatio';
        // Above the key's own usual bursts too: a CI role that deploys a few times a day at 10× is
        // doing what it does, and a nightly job's run is what it ran last night.
        else if (s.burstMargin > 0 && level <= s.burstMargin * (sustained ? input.runPeak : input.burst)) veto = 'burst';
        else if (sustained && input.runsCold) veto = 'burst';
      } else {
        // A drop needs something to drop from: minEventsPerBucket calls expected in the bucket; for
        // a run, that many over the run and a fifth of it in each bucket (a key that calls now and
        // then has long empty stretches by nature). And it must fall below a share of it.
        const enough = sustained
          ? dropFrom * Math.max(1, run.buckets) >= s.minEventsPerBucket && dropFrom * DROP_RUN_MIN_SHARE >= s.minEventsPerBucket
          : dropFrom >= s.minEventsPerBucket;
        if (!enough) veto = 'minEvents';
        else if (level * ratio > dropFrom) veto = 'minRatio';
      }
    }
  }
  return {
    direction: isUp ? 'up' : 'down',
    bucketDecades,
    runDecades,
    decades,
    sustained,
    rawScore,
    score: veto === null ? rawScore : 0,
    veto,
  };
}
