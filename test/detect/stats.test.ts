import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { log10PoissonUpperTail, poissonUpperTail, regularizedGammaP, regularizedGammaQ, spikeScore } from '../../src/detect/stats.ts';

/** P(X ≥ k) for integer k by direct summation. */
function directTail(k: number, lambda: number): number {
  let cdf = 0;
  let term = Math.exp(-lambda);
  for (let i = 0; i < k; i++) {
    cdf += term;
    term *= lambda / (i + 1);
  }
  return 1 - cdf;
}

describe('Poisson tail', () => {
  test('matches direct summation', () => {
    for (const lambda of [0.05, 0.5, 1, 3, 10, 40]) {
      for (const k of [1, 2, 3, 5, 8, 13, 30]) {
        const exact = directTail(k, lambda);
        if (exact < 1e-12) continue;
        assert.ok(Math.abs(poissonUpperTail(k, lambda) - exact) < 1e-9 * Math.max(1, exact * 1e3), `k=${k} λ=${lambda}`);
      }
    }
  });

  test('P and Q sum to one on both sides of a + 1', () => {
    for (const [a, x] of [
      [2, 1],
      [2, 5],
      [10, 3],
      [10, 30],
    ] as const)
      assert.ok(Math.abs(regularizedGammaP(a, x) + regularizedGammaQ(a, x) - 1) < 1e-12);
  });

  test('log tail keeps going where the tail underflows', () => {
    const a = log10PoissonUpperTail(400, 1);
    const b = log10PoissonUpperTail(500, 1);
    assert.ok(Number.isFinite(a) && Number.isFinite(b));
    assert.ok(b < a && a < -300);
  });
});

describe('spikeScore', () => {
  test('is 0 at or below the baseline and grows with the count', () => {
    assert.equal(spikeScore(1, 2, 2, 0.05), 0);
    const s = [4, 8, 16, 32].map((c) => spikeScore(c, 2, 2, 0.05));
    for (let i = 1; i < s.length; i++) assert.ok((s[i] as number) > (s[i - 1] as number));
    assert.equal(spikeScore(1000, 2, 2, 0.05), 1);
  });

  test('overdispersed keys need a larger count for the same score', () => {
    assert.ok(spikeScore(20, 5, 50, 0.05) < spikeScore(20, 5, 5, 0.05));
  });

  test('a sparse key: one call is not an anomaly, a burst is', () => {
    assert.ok(spikeScore(1, 0, 0, 0.05) < 0.2);
    assert.ok(spikeScore(10, 0, 0, 0.05) > 0.6);
  });
});
