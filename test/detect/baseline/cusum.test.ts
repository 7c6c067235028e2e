import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mulberry32 } from '../../../src/demo/traffic.ts';
import {
  CUSUM_CAP_FACTOR,
  CUSUM_WEIGHT,
  type CusumRun,
  cusumDecades,
  cusumStep,
  riseAlternative,
  riseEvidence,
  riseStep,
  sparseRises,
} from '../../../src/detect/baseline/cusum.ts';
import { type JudgeSettings, judge } from '../../../src/detect/baseline/judge.ts';
import { surpriseAbove } from '../../../src/detect/baseline/score.ts';

const fresh = (): CusumRun => ({ s: 0, startMs: 0, sum: 0, buckets: 0, peak: 0 });

describe('sustained-shift evidence', () => {
  test('moderately unusual buckets add up, and the run names the bucket where it began', () => {
    const run = fresh();
    const ds = [0, 0, 2.5, 3, 2.2, 3.1, 2.8, 2.6];
    for (const [i, d] of ds.entries()) cusumStep(run, d, i * 60_000, 10 + d, 6);
    assert.equal(run.startMs, 2 * 60_000);
    assert.equal(run.buckets, 6);
    assert.ok(cusumDecades(run) >= 6, 'six buckets near 1e-3 are as rare as one at 1e-6');
    assert.ok(Math.max(...ds) < 6, 'no single bucket was');
  });

  test('it resets when the key returns to normal: one ordinary bucket brings it under the threshold', () => {
    const run = fresh();
    for (let i = 0; i < 60; i++) cusumStep(run, 8, i, 30, 6);
    assert.ok(Math.abs(run.s - (CUSUM_CAP_FACTOR * 6) / CUSUM_WEIGHT) < 1e-9, 'capped');
    cusumStep(run, 0, 60, 10, 6);
    assert.ok(cusumDecades(run) < 6);
    cusumStep(run, 0, 61, 10, 6);
    cusumStep(run, 0, 62, 10, 6);
    cusumStep(run, 0, 63, 10, 6);
    assert.equal(run.s, 0);
    assert.equal(run.buckets, 0);
  });

  test('on noise it stays rare: a busy Poisson key for a simulated month rarely reaches the threshold', () => {
    const r = mulberry32(3);
    const lambda = 40;
    const run = fresh();
    let over = 0;
    const n = 30 * 1_440;
    for (let i = 0; i < n; i++) {
      // A normal approximation of Poisson(40) noise.
      const x = Math.max(
        0,
        Math.round(lambda + Math.sqrt(lambda) * Math.sqrt(-2 * Math.log(Math.max(1e-12, r()))) * Math.cos(2 * Math.PI * r())),
      );
      cusumStep(run, surpriseAbove(x, lambda, 1, 'counts'), i, x, 6);
      if (cusumDecades(run) >= 6) over++;
    }
    assert.ok(over <= 2, `${over} of ${n} buckets over the threshold`);
  });
});

describe("a sparse key's rises: the likelihood-ratio run", () => {
  const settings: JudgeSettings = {
    model: 'counts',
    direction: 'up',
    thresholdDecades: 6,
    minEventsPerBucket: 5,
    minRatio: 3,
    burstMargin: 2,
  };
  const input = (value: number, i: number) => ({
    bucketStartMs: i * 60_000,
    value,
    expected: 0.05,
    dropFrom: 0.03,
    dispersion: 1,
    learning: false,
    dropsReady: true,
    burst: 1,
    runPeak: 0,
    runsCold: false,
  });

  test('sparse: the run floor (5 calls in 5 buckets) asks more than the ratio floor; a busy key is not', () => {
    assert.equal(sparseRises(0.05, 2.5, 5), true);
    assert.equal(riseAlternative(0.05, 2.5, 5), 1);
    assert.equal(sparseRises(0.5, 2.5, 5), false);
    assert.equal(sparseRises(40, 2.5, 5), false);
  });

  test('1–2 calls a minute on a key at 0.05 add about a decade a bucket; an empty bucket takes back what was not there', () => {
    assert.ok(Math.abs(riseEvidence(1, 0.05, 1, 1) - (Math.log(20) - 0.95) / Math.LN10) < 1e-12);
    assert.ok(riseEvidence(1, 0.05, 1, 1) > 0.85);
    assert.ok(riseEvidence(0, 0.05, 1, 1) < 0 && riseEvidence(0, 0.05, 1, 1) > -0.5);
    // A bursty key (dispersion 4) needs four times the evidence.
    assert.ok(Math.abs(riseEvidence(2, 0.05, 4, 1) - riseEvidence(2, 0.05, 1, 1) / 4) < 1e-12);
  });

  test('ten minutes of 1–2 calls on a key at 0.05 a minute fire (with a zero in the middle), no single bucket does, and the Start names where it began', () => {
    const up = fresh();
    const down = fresh();
    const counts = [0, 0, 1, 2, 1, 0, 2, 1, 2, 1, 2, 1];
    const judged = counts.map((c, i) => judge(settings, input(c, i), up, down));
    const fired = judged.findIndex((j) => j.score >= 0.6);
    assert.ok(fired > 0 && fired <= 9, `fired at ${fired}`);
    assert.equal(judged[fired]?.sustained, true);
    assert.equal(judged[fired]?.veto, null);
    assert.equal(up.startMs, 2 * 60_000);
    assert.ok(judged.every((j) => j.bucketDecades < 6));
  });

  test('the same calls spread out (one now and then) never add up; and a run of fewer than 5 calls is vetoed', () => {
    const up = fresh();
    const down = fresh();
    for (let i = 0; i < 600; i++) {
      const j = judge(settings, input(i % 20 === 0 ? 1 : 0, i), up, down);
      assert.ok(j.score < 0.6, `bucket ${i}`);
    }
    const few = fresh();
    const judged = [2, 2].map((c, i) => judge(settings, input(c, i), few, fresh()));
    assert.ok(judged.every((j) => j.score === 0 || j.veto === 'minEvents'));
  });

  test('the run is capped, so one ordinary stretch ends it', () => {
    const run = fresh();
    for (let i = 0; i < 30; i++) riseStep(run, 3, i, 3, 6);
    assert.ok(Math.abs(run.s - CUSUM_CAP_FACTOR * 6) < 1e-9);
    assert.ok(Math.abs(run.peak - CUSUM_CAP_FACTOR * 6) < 1e-9, 'its peak in decades');
  });
});
