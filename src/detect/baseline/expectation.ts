import type { DetectorConfig } from '../../config/schema.ts';
import type { AttributionAttribute } from '../../contracts/types.ts';
import {
  type BaselineSketches,
  type Contributors,
  F,
  hourlyOf,
  type KeyState,
  SKETCH_ATTRIBUTES,
  type SlotPool,
  setHourly,
} from '../state.ts';
import { DAY_MS, HOUR_MS, hourOfDay, isWeekend, MINUTE_MS, remainder } from '../time.ts';
import { dispersionAlpha, squaredResidual } from './dispersion.ts';

/**
 * What a key is expected to do in a bucket: an EWMA of its values over the baseline window, an
 * hourly (hour-of-day, UTC) profile once two days of history exist, the dispersion around each
 * (baseline/dispersion.ts), and the baseline contributors, learned at the mean's rate. All of it
 * lives in the key's slot (state.ts); this is the arithmetic.
 */

/** Days an hour-of-day slot averages over once it has warmed up. */
const SEASON_DAYS = 7;
/**
 * Over-dispersion assumed at least, as variance / mean, while a key has less history than the
 * hourly profile needs (two days): before that the baseline has not seen a whole day's cycle or a
 * second burst, and its variance understates how much the key swings.
 */
export const COLD_DISPERSION = 4;
/** Baseline floor in events per minute: a key that never calls still needs a few calls to look unusual. */
const MEAN_FLOOR_PER_MINUTE = 0.05;
/** Index of who called in SKETCH_ATTRIBUTES: a principal's own key has no sketch of it. */
const WHO = SKETCH_ATTRIBUTES.indexOf('userIdentityArn');

export interface ExpectationSettings {
  bucketMs: number;
  /** Buckets the baseline averages over (detector.baselineWindowMs), at least 2. */
  windowBuckets: number;
  /** Whether keys get an hourly profile: seasonality hourOfDay and buckets that divide an hour. */
  seasonal: boolean;
  bucketsPerHour: number;
  /** History (buckets) before the hourly profile is used: two days, two cycles. */
  seasonalAfterBuckets: number;
  /** Floor of a count's expectation per bucket. */
  meanFloor: number;
}

export function expectationSettings(config: Pick<DetectorConfig, 'bucketMs' | 'baselineWindowMs' | 'seasonality'>): ExpectationSettings {
  const { bucketMs } = config;
  return {
    bucketMs,
    windowBuckets: Math.max(2, Math.floor(config.baselineWindowMs / bucketMs)),
    // An hourly profile needs buckets shorter than an hour and two days (two cycles) of history.
    seasonal: config.seasonality === 'hourOfDay' && bucketMs < HOUR_MS && HOUR_MS % bucketMs === 0,
    bucketsPerHour: Math.max(1, Math.floor(HOUR_MS / bucketMs)),
    seasonalAfterBuckets: Math.ceil((2 * DAY_MS) / bucketMs),
    meanFloor: MEAN_FLOOR_PER_MINUTE * (bucketMs / MINUTE_MS),
  };
}

export class Expectation {
  readonly settings: ExpectationSettings;
  /** Where a slot's hourly profile starts (the same in every pool). */
  private readonly pool: SlotPool;
  private readonly sketches: BaselineSketches;

  constructor(settings: ExpectationSettings, pool: SlotPool, sketches: BaselineSketches) {
    this.settings = settings;
    this.pool = pool;
    this.sketches = sketches;
  }

  /** Less history than the hourly profile needs: judged with a wider dispersion, no drops yet. */
  cold(k: KeyState): boolean {
    return k.observed < this.settings.seasonalAfterBuckets;
  }

  /** Whether the key is judged against its hourly profile (else against its mean). */
  private profiled(k: KeyState): boolean {
    return this.settings.seasonal && k.observed >= this.settings.seasonalAfterBuckets;
  }

  /** Expected value of a bucket: its hour's profile once two days of history exist, else the mean. */
  expected(k: KeyState, bucket: number): number {
    if (this.profiled(k)) return hourlyOf(this.pool, k, hourOfDay(bucket));
    return k.mean;
  }

  /** The expectation a bucket's surprise is measured from: floored for counts (a silent key still needs a few calls to look unusual). */
  floored(k: KeyState, expected: number): number {
    return k.model === 'counts' ? Math.max(expected, this.settings.meanFloor) : expected;
  }

  /** The dispersion learned around what the bucket is judged against: the hour's profile once it is ready, else the mean. */
  dispersionOf(k: KeyState): number {
    return this.profiled(k) ? k.hourlyDispersion : k.dispersion;
  }

  /** The dispersion a bucket is judged with: a cold key's counts swing at least COLD_DISPERSION. */
  judgedDispersion(k: KeyState): number {
    const d = this.dispersionOf(k);
    return k.model === 'counts' && this.cold(k) ? Math.max(d, COLD_DISPERSION) : d;
  }

  /** A borderline value at `expected` (floored) and `dispersion`: what a rare anomaly is cut to before it is learned. */
  winsorCap(k: KeyState, expected: number, dispersion: number): number {
    return k.model === 'counts' ? expected + 3 * Math.sqrt(expected * Math.max(1, dispersion)) + 1 : expected + 3 * Math.sqrt(dispersion);
  }

  /** The mean's learning rate: a cumulative average at first, then an EWMA over the window. */
  alpha(k: KeyState): number {
    const { windowBuckets, seasonal, seasonalAfterBuckets, bucketsPerHour } = this.settings;
    const a = Math.max(1 / (k.observed + 1), 2 / (windowBuckets + 1));
    // A metric series has no Poisson noise to be wide with before its hourly profile exists: its
    // expectation then is its level over about the last hour, so a daily swing is followed, not flagged.
    if (k.model === 'gauge' && seasonal && k.observed < seasonalAfterBuckets) return Math.max(a, 2 / (bucketsPerHour + 1));
    return a;
  }

  /**
   * Learns one bucket's value: into the mean, the hourly profile, both dispersions and the baseline
   * contributors; then counts the bucket as history.
   */
  learn(k: KeyState, bucket: number, value: number, contributors: Contributors | undefined): void {
    const { bucketMs, seasonal, bucketsPerHour, meanFloor, windowBuckets } = this.settings;
    const model = k.model;
    const a = this.alpha(k);
    const da = dispersionAlpha(k.observed, bucketMs);
    const history = k.observed;
    // A residual needs an expectation: the first bucket (and an hour's first visit) has none.
    const weekend = isWeekend(bucket);
    if (history > 0)
      k.dispersion = towards(k.dispersion, squaredResidual(value, k.mean, k.dispersion, model, meanFloor, history), da, weekend);
    k.mean += a * (value - k.mean);
    if (seasonal) {
      const slot = hourOfDay(bucket);
      const prev = hourlyOf(this.pool, k, slot);
      // Each hour's slot sees bucketsPerHour buckets a day: a cumulative average at first, then
      // an EWMA over about SEASON_DAYS days.
      const visits = Math.floor(k.observed / (24 * bucketsPerHour)) * bucketsPerHour + Math.floor(remainder(bucket, HOUR_MS) / bucketMs);
      if (visits > 0)
        k.hourlyDispersion = towards(
          k.hourlyDispersion,
          squaredResidual(value, prev, k.hourlyDispersion, model, meanFloor, history),
          da,
          weekend,
        );
      const as = Math.max(1 / (visits + 1), 1 / (SEASON_DAYS * bucketsPerHour));
      // A weekend may teach an hour more activity, never less (see `towards`).
      if (!weekend || value > prev) setHourly(this.pool, k, slot, prev + as * (value - prev));
    }
    for (let i = 0; i < SKETCH_ATTRIBUTES.length; i++) {
      const attr = SKETCH_ATTRIBUTES[i] as AttributionAttribute;
      // A principal's own key needs no sketch of who called: it is always the principal.
      if (attr === 'userIdentityArn' && k.scope === 'principalAction') continue;
      if (!this.sketches.has(k, i)) {
        if (!contributors) continue;
        this.sketches.create(k, i);
      }
      this.sketches.scale(k, i, 1 - a);
      if (contributors) this.sketches.merge(k, i, contributors[attr], a);
    }
    if (k.observed < windowBuckets) k.observed++;
    k.lastFoldedMs = bucket;
  }

  /**
   * `gap` empty buckets from `from` on, learned: exactly `learn(k, t, 0, undefined)` for each, the
   * same operations in the same order, with the key's numbers held in locals between buckets. A
   * sparse key learns hundreds of zeros each time it is judged; this is where the time went.
   */
  learnZeros(k: KeyState, from: number, gap: number): void {
    const { bucketMs, seasonal, meanFloor, windowBuckets } = this.settings;
    const bph = this.settings.bucketsPerHour;
    const f = k.f;
    const o = k.o;
    const hourlyAt = o + this.pool.hourlyAt;
    const minAlpha = 2 / (windowBuckets + 1);
    const minSeasonAlpha = 1 / (SEASON_DAYS * bph);
    const model = k.model;
    const principal = k.scope === 'principalAction';
    let mean = f[o + F.mean] as number;
    let dispersion = f[o + F.dispersion] as number;
    let hourlyDispersion = f[o + F.hourlyDispersion] as number;
    let observed = f[o + F.observed] as number;
    let lastFolded = f[o + F.lastFoldedMs] as number;
    for (let t = from; gap > 0; gap--, t += bucketMs) {
      const a = Math.max(1 / (observed + 1), minAlpha);
      const da = dispersionAlpha(observed, bucketMs);
      const weekend = isWeekend(t);
      if (observed > 0) dispersion = towards(dispersion, squaredResidual(0, mean, dispersion, model, meanFloor, observed), da, weekend);
      mean += a * (0 - mean);
      if (seasonal) {
        const at = hourlyAt + hourOfDay(t);
        const prev = f[at] as number;
        const visits = Math.floor(observed / (24 * bph)) * bph + Math.floor(remainder(t, HOUR_MS) / bucketMs);
        if (visits > 0)
          hourlyDispersion = towards(hourlyDispersion, squaredResidual(0, prev, hourlyDispersion, model, meanFloor, observed), da, weekend);
        const as = Math.max(1 / (visits + 1), minSeasonAlpha);
        if (!weekend) f[at] = prev + as * (0 - prev);
      }
      for (let i = 0; i < SKETCH_ATTRIBUTES.length; i++) {
        if (k.sketches[i] !== null && !(i === WHO && principal)) this.sketches.scale(k, i, 1 - a);
      }
      if (observed < windowBuckets) observed++;
      lastFolded = t;
    }
    f[o + F.mean] = mean;
    f[o + F.dispersion] = dispersion;
    f[o + F.hourlyDispersion] = hourlyDispersion;
    f[o + F.observed] = observed;
    f[o + F.lastFoldedMs] = lastFolded;
  }
}

/**
 * A dispersion moved towards one bucket's squared residual. On a weekend (UTC) it may rise but not
 * fall, as the hourly profile: a key whose people rest on Saturday and Sunday would otherwise meet
 * Monday's ordinary work with the narrow dispersion (its half-life is one day) and the lowered hours
 * of two quiet days, and flag it. Measured on the quality run (bench/quality): the false Starts of
 * the second Monday went from 13 to 4. A key as busy on weekends as on weekdays is barely moved.
 */
function towards(dispersion: number, r2: number, alpha: number, weekend: boolean): number {
  return weekend && r2 < dispersion ? dispersion : dispersion + alpha * (r2 - dispersion);
}
