import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mulberry32, poisson } from '../../../src/demo/traffic.ts';
import { decadesOf, gaussianTailDecades, scoreOf, surpriseAbove, surpriseBelow } from '../../../src/detect/baseline/score.ts';

/** A Poisson draw: the demo's (Knuth) for small means, a normal approximation where e^−λ underflows. */
function poissonDraw(lambda: number, r: () => number): number {
  if (lambda <= 60) return poisson(r, lambda);
  const u = Math.max(1e-12, r());
  const v = r();
  return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)));
}

describe('score mapping', () => {
  test('score and decades are inverses, 0.6 is one in a million, and the score never reaches 1', () => {
    for (const d of [0.5, 1, 4, 6, 12, 36, 300]) assert.ok(Math.abs(decadesOf(scoreOf(d)) - d) < 1e-9 * d);
    assert.equal(scoreOf(6), 0.6);
    assert.equal(scoreOf(4), 0.5);
    assert.ok(scoreOf(1e6) < 1);
    assert.ok(scoreOf(400) > scoreOf(300), 'a bigger surprise always scores higher');
    assert.equal(scoreOf(0), 0);
  });
});

describe('surprise', () => {
  test('calibrated: on Poisson noise, buckets at least d decades rare are at most 10^-d of them, at any volume', () => {
    const r = mulberry32(7);
    for (const lambda of [0.1, 2, 50, 10_000]) {
      const n = 200_000;
      let over1 = 0;
      let over2 = 0;
      let over3 = 0;
      for (let i = 0; i < n; i++) {
        const d = surpriseAbove(poissonDraw(lambda, r), lambda, 1, 'counts');
        if (d >= 1) over1++;
        if (d >= 2) over2++;
        if (d >= 3) over3++;
      }
      // Discrete counts make the tail conservative (never more often than claimed); allow noise.
      assert.ok(over1 / n <= 0.1 * 1.1, `λ=${lambda}: ${over1 / n} of buckets ≥ 1 decade`);
      assert.ok(over2 / n <= 0.01 * 1.3, `λ=${lambda}: ${over2 / n} of buckets ≥ 2 decades`);
      assert.ok(over3 / n <= 0.001 * 1.6, `λ=${lambda}: ${over3 / n} of buckets ≥ 3 decades`);
      // And not absurdly conservative on a busy key, where counts are nearly continuous.
      if (lambda >= 50) assert.ok(over1 / n >= 0.05, `λ=${lambda}: ${over1 / n}`);
    }
  });

  test('neither sparse nor busy keys are left out: a 20× burst on 0.5 a bucket fires, and busy spikes do not saturate', () => {
    // The sparse case once scored 0.38–0.42, under any usable threshold.
    assert.ok(scoreOf(surpriseAbove(10, 0.5, 1, 'counts')) >= 0.6);
    const busy = [2, 3, 4, 5].map((x) => scoreOf(surpriseAbove(x * 10_000, 10_000, 50, 'counts')));
    for (let i = 1; i < busy.length; i++) assert.ok((busy[i] as number) > (busy[i - 1] as number), `${busy}`);
    assert.ok((busy[3] as number) < 1);
  });

  test('a bursty key (dispersion > 1) needs a bigger excess', () => {
    assert.ok(surpriseAbove(20, 5, 10, 'counts') < surpriseAbove(20, 5, 1, 'counts'));
  });

  test('drops: a silent bucket is rare only where calls were expected', () => {
    assert.ok(Math.abs(surpriseBelow(0, 20, 1, 'counts') - 20 / Math.LN10) < 1e-9);
    assert.ok(surpriseBelow(0, 0.2, 1, 'counts') < 0.1, 'a quiet hour is not a drop');
    assert.equal(surpriseBelow(25, 20, 1, 'counts'), 0);
    assert.ok(surpriseBelow(5, 40, 1, 'counts') > surpriseBelow(20, 40, 1, 'counts'));
    assert.ok(Number.isFinite(surpriseBelow(1, 5_000, 1, 'counts')) && surpriseBelow(1, 5_000, 1, 'counts') > 1_000);
  });

  test('gauge: a Gaussian tail in either direction, fractions and negatives alike', () => {
    assert.ok(Math.abs(gaussianTailDecades(1.2815515655) - 1) < 1e-3, 'z = 1.28 is one in ten');
    assert.ok(Math.abs(gaussianTailDecades(4.753424) - 6) < 1e-3, 'z = 4.75 is one in a million');
    assert.ok(Number.isFinite(gaussianTailDecades(1e4)));
    assert.ok(Math.abs(surpriseAbove(-0.5, -2.5, 0.25, 'gauge') - gaussianTailDecades(4)) < 1e-12);
    assert.ok(Math.abs(surpriseBelow(-4.5, -2.5, 0.25, 'gauge') - gaussianTailDecades(4)) < 1e-12);
  });
});
