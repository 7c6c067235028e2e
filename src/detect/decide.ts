import type { DetectorConfig } from '../config/schema.ts';
import type { AttributionAttribute } from '../contracts/types.ts';
import type { AnomalyFacts, ContributorAverages } from '../emit/insight.ts';
import { CUSUM_REFERENCE, type CusumRun, riseAlternative, riseEvidence, sparseRises } from './baseline/cusum.ts';
import type { Expectation } from './baseline/expectation.ts';
import { type Judgement, type JudgeSettings, judge, runRatio, type Veto } from './baseline/judge.ts';
import type { BurstMemory } from './baseline/memory.ts';
import { signalOf } from './signals.ts';
import { hhMerge, hhTop } from './sketch.ts';
import {
  type BaselineSketches,
  type BucketAcc,
  type Contributors,
  type KeyState,
  newContributors,
  SKETCH_ATTRIBUTES,
  type Streak,
  subjectOf,
} from './state.ts';
import { MINUTE_MS } from './time.ts';

/**
 * Deciding, one closed bucket of one key at a time: the bucket is judged against the key's
 * expectation and memories (baseline/judge.ts), the score drives the Start/End machine (a streak
 * of startAfterBuckets anomalous buckets starts an Insight, endAfterBuckets ordinary ones or
 * maxDurationMs end it), and what the machine reports comes out as AnomalyFacts: the emit layer
 * builds the records. What the bucket teaches the baseline depends on the decision (an anomaly is
 * winsorized, the burst memory learns it only once it is over), so that is decided here too.
 */

/**
 * Buckets are winsorized into the baseline (cut to a borderline value) only when they fired and
 * were at least this rare (decades): a lower scoreThreshold makes more Insights, but must not teach
 * the baseline less of the key's real traffic (it once starved baselines into alert storms).
 */
const WINSOR_MIN_DECADES = 6;
/** History before a sustained run upwards is reported (it is remembered from the start). */
const RUN_LEARNING_MS = 7 * 24 * 60 * MINUTE_MS;
const ATTRIBUTES: AttributionAttribute[] = ['userIdentityArn', 'userAgent', 'errorCode'];

/** One judged bucket of one key, for series output (backtest) and debugging. */
export interface BucketObservation {
  keyId: string;
  bucketStartMs: number;
  count: number;
  /** Baseline mean per bucket before this bucket was folded in. */
  baselineMean: number;
  /** What the bucket was judged against: the hour's expectation once the key has its profile, else the mean (floored for counts). */
  expected: number;
  /** The dispersion the bucket was judged with (counts: variance / mean, at least a cold key's; gauge: the variance). */
  dispersion: number;
  /** The decision score: what the Start/End machine reads (0 when a floor vetoes the bucket). */
  score: number;
  /** The score before the floors. */
  rawScore: number;
  /** The floor that vetoed the bucket, if any. */
  veto: Veto | null;
  /** Which way the bucket is unusual. */
  direction: 'up' | 'down';
  /** Whether a sustained run, rather than the bucket alone, carries the evidence. */
  sustained: boolean;
}

export type DecideConfig = Pick<
  DetectorConfig,
  | 'bucketMs'
  | 'minHistoryMs'
  | 'scoreThreshold'
  | 'minEventsPerBucket'
  | 'minRatio'
  | 'burstMargin'
  | 'startAfterBuckets'
  | 'endAfterBuckets'
  | 'maxDurationMs'
  | 'topN'
>;

export class Decider {
  private readonly config: DecideConfig;
  private readonly expectation: Expectation;
  private readonly memory: BurstMemory;
  private readonly sketches: BaselineSketches;
  /** Keys with a streak, shared with the engine: it judges them every bucket, even at zero, so Ends are not held back. */
  private readonly streaking: Set<string>;
  private readonly onBucket: ((observation: BucketObservation) => void) | undefined;
  private readonly bucketMinutes: number;
  private readonly runLearningBuckets: number;
  private readonly runUp: CusumRun = { s: 0, startMs: 0, sum: 0, buckets: 0, peak: 0 };
  private readonly runDown: CusumRun = { s: 0, startMs: 0, sum: 0, buckets: 0, peak: 0 };

  constructor(
    config: DecideConfig,
    expectation: Expectation,
    memory: BurstMemory,
    sketches: BaselineSketches,
    streaking: Set<string>,
    onBucket?: (observation: BucketObservation) => void,
  ) {
    this.config = config;
    this.expectation = expectation;
    this.memory = memory;
    this.sketches = sketches;
    this.streaking = streaking;
    this.onBucket = onBucket;
    this.bucketMinutes = config.bucketMs / MINUTE_MS;
    this.runLearningBuckets = Math.min(expectation.settings.windowBuckets, Math.ceil(RUN_LEARNING_MS / config.bucketMs));
  }

  /** The key's own judge settings (detector-wide, or its override's): resolved once per key by the engine. */
  private settingsFor(k: KeyState): JudgeSettings {
    return k.settings.judge[k.model];
  }

  /**
   * Judges the key's bucket `b` (its counts in `acc`, none when it had no data) after learning the
   * empty buckets before it, moves its streak, learns the bucket, and appends what the machine
   * reports to `out`. The key must have a history (`observed` ≥ 0).
   */
  decide(k: KeyState, b: number, acc: BucketAcc | undefined, out: AnomalyFacts[]): void {
    const c = this.config;
    const ex = this.expectation;
    this.catchUp(k, b);
    const count = acc?.count ?? 0;
    const expected = ex.expected(k, b);
    const counts = k.model === 'counts';
    if (!counts && acc === undefined) {
      this.noReading(k, b, out);
      return;
    }
    const lambda = ex.floored(k, expected);
    const cold = ex.cold(k);
    const ks = k.settings;
    const learning = k.observed * c.bucketMs < ks.minHistoryMs;
    const dispersion = ex.judgedDispersion(k);
    const up = this.memory.readRun(k, 'up', this.runUp);
    const down = this.memory.readRun(k, 'down', this.runDown);
    const upBuckets = up.buckets;
    const upSum = up.sum;
    const upPeak = up.peak;
    const j = judge(
      this.settingsFor(k),
      {
        bucketStartMs: b,
        value: count,
        expected: lambda,
        dropFrom: expected,
        dispersion,
        learning,
        // A drop is judged only once the expectation knows the key's quiet hours (or there are none to know).
        dropsReady: !cold || !ex.settings.seasonal,
        burst: k.burst,
        runPeak: k.runPeak,
        // Runs upwards are learned, not reported, for a week: deployments and jobs come back on
        // working days, and two days of them are not yet the key's habits.
        runsCold: k.observed < this.runLearningBuckets,
      },
      up,
      down,
    );
    if (upBuckets > 0 && up.buckets === 0) this.memory.rememberRun(k, upSum, upBuckets, upPeak);
    this.memory.writeRun(k, 'up', up);
    this.memory.writeRun(k, 'down', down);
    const anomalous = j.score >= ks.scoreThreshold;
    const end = b + c.bucketMs;
    this.onBucket?.({
      keyId: k.id,
      bucketStartMs: b,
      count,
      baselineMean: k.mean,
      expected: lambda,
      dispersion,
      score: j.score,
      rawScore: j.rawScore,
      veto: j.veto,
      direction: j.direction,
      sustained: j.sustained,
    });

    let s = k.streak;
    if (s?.started && (s.direction ?? 'up') !== j.direction && anomalous) {
      // The key swung the other way while an Insight was open: that Insight is over.
      this.end(k, s, out);
      s = null;
    }
    if (anomalous) {
      if (!s) s = this.openStreak(k, b, j, count, j.direction === 'up' ? up : down);
      s.buckets++;
      s.count += count;
      s.lastEndMs = end;
      s.belowStreak = 0;
      s.peakScore = Math.max(s.peakScore, j.score);
      s.peakCount = j.direction === 'up' ? Math.max(s.peakCount, count) : s.peakCount;
      if (acc) for (const attr of ATTRIBUTES) hhMerge(s.contributors[attr], acc.contributors[attr]);
      if (!s.started && s.buckets >= c.startAfterBuckets) {
        s.started = true;
        s.startScore = j.score;
        s.baselineTop = this.baselineSnapshot(k, s.baselineMean);
        out.push(this.facts(k, s, 'Start'));
      }
      // Winsorized: a rare anomaly teaches the baseline only as much as a borderline bucket would.
      // The burst memory learns an anomaly only once it is over (below): a slow ramp must not
      // raise the bar it is measured against while it climbs.
      const winsorize = j.direction === 'up' && j.decades >= Math.max(ks.thresholdDecades, WINSOR_MIN_DECADES);
      this.learn(k, b, winsorize ? Math.min(count, ex.winsorCap(k, lambda, dispersion)) : count, 0, undefined);
    } else {
      if (s) {
        if (!s.started) {
          // A candidate that did not last k buckets: forget it.
          k.streak = null;
          this.streaking.delete(k.id);
          s = null;
        } else {
          s.belowStreak++;
        }
      }
      // Only unremarkable buckets raise the burst memory at once; a merely suspicious one (a ramp
      // on its way up) may keep it from fading but must not lift the bar it is judged against today.
      // A suspicious bucket that did not fire is remembered as today's peak. A peak that recurs
      // the next day is a habit and joins the burst memory at midnight UTC: at about the same
      // time of day (a nightly job), or at any time when it came close to firing (deployments).
      // Poisson noise rarely does either. Ordinary buckets only keep the memory from fading.
      // In the cold start (learning, then the first two days) the key has no habits yet to
      // recognise a burst by: a burst that did not fire then is remembered as it comes.
      const raw = learning || cold ? count : Math.min(count, k.burst);
      this.memory.notePeak(k, b, count, j.direction === 'up' ? j.bucketDecades : 0);
      this.learn(k, b, count, raw, acc?.contributors);
    }
    if (s?.started && (s.belowStreak >= c.endAfterBuckets || end - s.startMs >= c.maxDurationMs)) {
      if (s.belowStreak === 0) s.lastEndMs = end;
      this.end(k, s, out);
    }
  }

  /**
   * The empty buckets between the key's last learned bucket and `bucket`, learned as zeros (up to
   * a window of them: past that the baseline is as good as empty). A metric series with a gap has
   * no reading there, not a reading of zero: it learns nothing.
   */
  private catchUp(k: KeyState, bucket: number): void {
    const { bucketMs, windowBuckets } = this.expectation.settings;
    const gap = Math.min(Math.round((bucket - k.lastFoldedMs) / bucketMs) - 1, windowBuckets);
    if (gap > 0 && k.model === 'counts') {
      const from = bucket - gap * bucketMs;
      this.memory.foldZeros(k, from, gap, bucketMs);
      this.expectation.learnZeros(k, from, gap);
      this.memory.drainRise(k, gap, this.emptyRiseCost(k, bucket));
    }
    k.lastFoldedMs = bucket - bucketMs;
  }

  /** What an empty bucket takes from the key's run upwards, in the run's own units (see judge.ts and cusum.ts). */
  private emptyRiseCost(k: KeyState, bucket: number): number {
    const js = this.settingsFor(k);
    const expected = this.expectation.floored(k, this.expectation.expected(k, bucket));
    const ratio = runRatio(js);
    if (!sparseRises(expected, ratio, js.minEventsPerBucket)) return 2 * CUSUM_REFERENCE;
    const alternative = riseAlternative(expected, ratio, js.minEventsPerBucket);
    return -riseEvidence(0, expected, this.expectation.judgedDispersion(k), alternative);
  }

  /** One bucket learned: `value` (winsorized when it fired) by the expectation, `raw` by the burst memory. */
  private learn(k: KeyState, b: number, value: number, raw: number, contributors: Contributors | undefined): void {
    // The memory first: it reads the previous bucket the expectation is about to move on from.
    this.memory.fold(k, b, raw);
    this.expectation.learn(k, b, value, contributors);
  }

  /**
   * A metric series' bucket without a reading (a gap, or a key watched for drops judged between its
   * readings): nothing is learned and nothing is judged; an open Insight counts it as ordinary.
   */
  private noReading(k: KeyState, b: number, out: AnomalyFacts[]): void {
    const s = k.streak;
    if (!s) return;
    if (!s.started) {
      k.streak = null;
      this.streaking.delete(k.id);
      return;
    }
    s.belowStreak++;
    if (s.belowStreak >= this.config.endAfterBuckets || b + this.config.bucketMs - s.startMs >= this.config.maxDurationMs)
      this.end(k, s, out);
  }

  /** A new streak at bucket `b`; a sustained run's streak begins where the run began, with its counts so far. */
  private openStreak(k: KeyState, b: number, j: Judgement, count: number, run: CusumRun): Streak {
    // A shift began where its run began, whichever evidence (the run's or the bucket's) crossed first.
    const fromRun = run.buckets > 1;
    const s: Streak = {
      startMs: fromRun ? run.startMs : b,
      lastEndMs: b,
      buckets: fromRun ? run.buckets - 1 : 0,
      count: fromRun ? run.sum - count : 0,
      peakScore: 0,
      peakCount: 0,
      startScore: j.score,
      contributors: newContributors(this.config.topN * 2),
      baselineMean: k.mean,
      baselineMinutes: k.observed * this.bucketMinutes,
      belowStreak: 0,
      started: false,
      direction: j.direction,
    };
    k.streak = s;
    this.streaking.add(k.id);
    return s;
  }

  /**
   * The key was switched off (a config applied while running): an Insight it had open ends at its
   * last anomalous bucket (a suppressed one ends unseen, as its Start was), a candidate is forgotten.
   */
  switchedOff(k: KeyState, out: AnomalyFacts[]): void {
    const s = k.streak;
    if (s?.started && s.suppressed !== true) out.push(this.facts(k, s, 'End'));
    k.streak = null;
    this.streaking.delete(k.id);
  }

  private end(k: KeyState, s: Streak, out: AnomalyFacts[]): void {
    out.push(this.facts(k, s, 'End'));
    // Reported once; the same burst again within a week or so is this key's habit.
    this.memory.reported(k, s.direction ?? 'up', s.peakCount);
    k.streak = null;
    this.streaking.delete(k.id);
  }

  /** What the machine reports of a streak: everything the emit layer needs for the record. */
  facts(k: KeyState, s: Streak, state: 'Start' | 'End'): AnomalyFacts {
    const anomalyMinutes = s.buckets * this.bucketMinutes;
    const contributors: ContributorAverages[] = signalOf(k.insightType).attributes.map((attribute) => ({
      attribute,
      insight: hhTop(s.contributors[attribute], this.config.topN).map((v) => ({ value: v.value, average: v.count / anomalyMinutes })),
      baseline: (s.baselineTop?.[attribute] ?? this.baselineTop(k, attribute, s.baselineMean))
        .filter((v) => v.count > 1e-9)
        .map((v) => ({ value: v.value, average: v.count / this.bucketMinutes })),
    }));
    return {
      state,
      keyId: k.id,
      ...subjectOf(k),
      startTimeMs: s.startMs,
      endTimeMs: state === 'End' ? s.lastEndMs : null,
      bucketMs: this.config.bucketMs,
      baselinePerMinute: s.baselineMean / this.bucketMinutes,
      insightPerMinute: s.count / anomalyMinutes,
      baselineWindowMinutes: this.expectation.settings.windowBuckets * this.bucketMinutes,
      historyMinutes: s.baselineMinutes,
      score: state === 'Start' ? s.startScore : s.peakScore,
      threshold: k.settings.scoreThreshold,
      contributors,
    };
  }

  /** The attribution baselines at Start, kept on the streak so the End reports what the Start did. */
  private baselineSnapshot(k: KeyState, baselineMean: number): NonNullable<Streak['baselineTop']> {
    const out: NonNullable<Streak['baselineTop']> = {};
    for (const attribute of ATTRIBUTES) out[attribute] = this.baselineTop(k, attribute, baselineMean);
    return out;
  }

  private baselineTop(k: KeyState, attribute: AttributionAttribute, baselineMean: number): Array<{ value: string; count: number }> {
    if (attribute === 'userIdentityArn' && k.scope === 'principalAction' && k.principal !== null) {
      return [{ value: k.principal, count: baselineMean }];
    }
    return this.sketches.top(k, SKETCH_ATTRIBUTES.indexOf(attribute), this.config.topN);
  }
}
