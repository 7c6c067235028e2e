import { CUSUM_FIELDS, F, type KeyState } from '../state.ts';
import { DAY_MS, dayOf, isWeekend, minuteOfDay } from '../time.ts';
import type { CusumRun } from './cusum.ts';

/**
 * What a key usually does in bursts, so its habits are not news: the burst memory (its highest
 * ordinary bucket, fading), today's suspicious-but-quiet peak (a habit once it recurs), the run
 * memory (the highest average of its past sustained runs upwards) and the sustained-shift runs
 * themselves as the key's slot holds them. The floors in judge.ts read these; they live in the
 * key's slot (state.ts).
 */

/**
 * Half-life of a key's burst memory, in working time: the highest recent count fades by half in
 * seven working days. Saturdays and Sundays (UTC) do not count: a deploy role's Monday is judged
 * against Friday's deployments, not against a memory the weekend faded.
 */
export const BURST_HALF_LIFE_MS = 7 * DAY_MS;
/** A bucket scoring at least this share of the threshold is a near miss, remembered for the day. */
const NEAR_MISS = 0.8;
/** A near miss recurring within this many days of the previous one is a habit. */
const NEAR_MISS_RECUR_DAYS = 7;
/** Two daily peaks this close in time of day make a habit. */
const HABIT_WINDOW_MINUTES = 90;

export class BurstMemory {
  /** Fading of the burst and run memories per working-day bucket. */
  readonly decay: number;
  private readonly thresholdDecades: number;
  /** History (buckets) before which a key is cold: see rememberRun. */
  private readonly coldBuckets: number;

  constructor(bucketMs: number, thresholdDecades: number, coldBuckets: number) {
    this.decay = 0.5 ** (bucketMs / BURST_HALF_LIFE_MS);
    this.thresholdDecades = thresholdDecades;
    this.coldBuckets = coldBuckets;
  }

  /**
   * One bucket passing: at the first bucket of a new UTC day the day is closed (see closeDay); the
   * memories fade on working days; `raw` (what the bucket may teach) raises the burst memory.
   * Reads the key's lastFoldedMs as the previous bucket: call it before the expectation learns.
   */
  fold(k: KeyState, bucket: number, raw: number): void {
    const last = k.lastFoldedMs;
    if (dayOf(bucket) !== dayOf(last)) this.closeDay(k, bucket, last);
    const weekend = isWeekend(bucket);
    k.burst = Math.max(weekend ? k.burst : k.burst * this.decay, raw);
    if (!weekend) k.f[k.o + F.runPeak] = (k.f[k.o + F.runPeak] as number) * this.decay;
  }

  /** `gap` empty buckets from `from` on: exactly `fold(k, t, 0)` for each, with the burst memory in a local. */
  foldZeros(k: KeyState, from: number, gap: number, bucketMs: number): void {
    const f = k.f;
    const o = k.o;
    const decay = this.decay;
    let burst = f[o + F.burst] as number;
    let runPeak = f[o + F.runPeak] as number;
    let last = f[o + F.lastFoldedMs] as number;
    for (let t = from; gap > 0; gap--, t += bucketMs) {
      if (dayOf(t) !== dayOf(last)) {
        // closeDay reads and writes the slot: hand it the memory as it stands.
        f[o + F.burst] = burst;
        this.closeDay(k, t, last);
        burst = f[o + F.burst] as number;
      }
      if (isWeekend(t)) burst = Math.max(burst, 0);
      else {
        burst = Math.max(burst * decay, 0);
        runPeak *= decay;
      }
      last = t;
    }
    f[o + F.burst] = burst;
    f[o + F.runPeak] = runPeak;
  }

  /**
   * At the first bucket of a new UTC day (`lastFoldedMs` the key's previous bucket): a peak that
   * recurred at about the same time is a habit, and so is a near miss that recurs within a week
   * (deployments skip weekends and some days).
   */
  closeDay(k: KeyState, bucket: number, lastFoldedMs: number): void {
    const closed = dayOf(lastFoldedMs);
    const yesterday = dayOf(bucket) - closed === 1;
    if (k.dayPeak > 0 && k.prevPeakMinute >= 0 && yesterday) {
      const apart = Math.abs(k.dayPeakMinute - k.prevPeakMinute);
      if (k.dayPeakNear || Math.min(apart, 1_440 - apart) <= HABIT_WINDOW_MINUTES) k.burst = Math.max(k.burst, k.dayPeak);
    }
    if (k.dayPeak > 0 && k.dayPeakNear) {
      if (k.nearDay >= 0 && closed - k.nearDay <= NEAR_MISS_RECUR_DAYS) k.burst = Math.max(k.burst, k.dayPeak);
      k.nearDay = closed;
    }
    k.prevPeakMinute = k.dayPeak > 0 && yesterday ? k.dayPeakMinute : -1;
    k.dayPeak = 0;
  }

  /**
   * A bucket that did not fire but rose `rise` decades: at half the threshold it is suspicious and,
   * when it is today's highest, remembered as today's peak (near when it came close to firing).
   */
  notePeak(k: KeyState, bucket: number, value: number, rise: number): void {
    if (rise >= this.thresholdDecades / 2 && value > k.dayPeak) {
      k.dayPeakNear = rise >= NEAR_MISS * this.thresholdDecades;
      k.dayPeak = value;
      k.dayPeakMinute = minuteOfDay(bucket);
    }
  }

  /**
   * A run upwards that mattered (half the threshold's evidence), once it is over, joins the run
   * memory; in the cold start a quarter does (its wide dispersion keeps runs small, and a nightly
   * job's first runs are what the key will do every night).
   */
  rememberRun(k: KeyState, sum: number, buckets: number, peak: number): void {
    const share = k.observed < this.coldBuckets ? 4 : 2;
    if (buckets > 0 && peak >= this.thresholdDecades / share)
      k.f[k.o + F.runPeak] = Math.max(k.f[k.o + F.runPeak] as number, sum / buckets);
  }

  /**
   * `gap` empty buckets are evidence against a rise: a run upwards loses `perBucket` for each (the
   * surprise CUSUM two references, a sparse key's likelihood-ratio run what the bucket's evidence
   * says; see cusum.ts), and is remembered once over.
   */
  drainRise(k: KeyState, gap: number, perBucket: number): void {
    const at = k.o + F.cusumUp;
    const s = k.f[at] as number;
    if (!(s > 0)) return;
    const left = s - perBucket * gap;
    if (left > 0) k.f[at] = left;
    else this.forgetRun(k, 'up');
  }

  /** An anomaly upwards was reported: its peak is this key's habit if it comes again within a week or so. */
  reported(k: KeyState, direction: 'up' | 'down', peakCount: number): void {
    if (direction === 'up') k.burst = Math.max(k.burst, peakCount);
    // A later Start names a run of its own, never this one's start again.
    this.forgetRun(k, direction);
  }

  /** Ends the key's run in `direction`; a run upwards joins the run memory first. */
  private forgetRun(k: KeyState, direction: 'up' | 'down'): void {
    const at = k.o + (direction === 'up' ? F.cusumUp : F.cusumDown);
    if (direction === 'up') this.rememberRun(k, k.f[at + 2] as number, k.f[at + 3] as number, k.f[at + 4] as number);
    k.f.fill(0, at, at + CUSUM_FIELDS);
  }

  /** Reads a key's run in `direction` from its slot into `run`. */
  readRun(k: KeyState, direction: 'up' | 'down', run: CusumRun): CusumRun {
    const f = k.f;
    const o = k.o + (direction === 'up' ? F.cusumUp : F.cusumDown);
    run.s = f[o] as number;
    run.startMs = f[o + 1] as number;
    run.sum = f[o + 2] as number;
    run.buckets = f[o + 3] as number;
    run.peak = f[o + 4] as number;
    return run;
  }

  writeRun(k: KeyState, direction: 'up' | 'down', run: CusumRun): void {
    const f = k.f;
    const o = k.o + (direction === 'up' ? F.cusumUp : F.cusumDown);
    f[o] = run.s;
    f[o + 1] = run.startMs;
    f[o + 2] = run.sum;
    f[o + 3] = run.buckets;
    f[o + 4] = run.peak;
  }
}
