import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mulberry32 } from '../../../src/demo/traffic.ts';
import { CUSUM_CAP_FACTOR, CUSUM_WEIGHT, type CusumRun, cusumDecades, cusumStep } from '../../../src/detect/baseline/cusum.ts';
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
