import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CLIP_AFTER_BUCKETS,
  DISPERSION_CLIP,
  DISPERSION_HALF_LIFE_MS,
  dispersionAlpha,
  squaredResidual,
} from '../../../src/detect/baseline/dispersion.ts';

const MINUTE = 60_000;

describe('robust dispersion', () => {
  test('a spike teaches at most DISPERSION_CLIP² times the current dispersion', () => {
    const r2 = squaredResidual(370, 10, 1.2, 'counts', 0.05, 10_000);
    assert.equal(r2, DISPERSION_CLIP * DISPERSION_CLIP * 1.2);
    // Before the estimate has history, residuals are taken whole.
    assert.equal(squaredResidual(370, 10, 1.2, 'counts', 0.05, CLIP_AFTER_BUCKETS - 1), (360 * 360) / 10);
  });

  test('two spikes at 37× leave the dispersion within a few per cent, where an unclipped variance grew 45-fold', () => {
    let phi = 1;
    const alpha = dispersionAlpha(10_000, MINUTE);
    for (let i = 0; i < 2; i++) phi += alpha * (squaredResidual(370, 10, phi, 'counts', 0.05, 10_000) - phi);
    assert.ok(phi < 1.05, `dispersion ${phi}`);
  });

  test('the half-life: a bucket weighs half as much a day later', () => {
    const a = dispersionAlpha(1e9, MINUTE);
    const buckets = DISPERSION_HALF_LIFE_MS / MINUTE;
    assert.ok(Math.abs((1 - a) ** buckets - 0.5) < 1e-9);
    assert.equal(dispersionAlpha(3, MINUTE), 1 / 4, 'a cumulative average at first');
  });

  test('a real change of regime is still learned', () => {
    // A key that becomes bursty (residuals steadily at 3× the clip) grows its dispersion day after day.
    let phi = 1;
    const a = dispersionAlpha(1e9, MINUTE);
    for (let i = 0; i < 3 * 1_440; i++) phi += a * (squaredResidual(10 + 6 * Math.sqrt(10 * phi), 10, phi, 'counts', 0.05, 1e9) - phi);
    assert.ok(phi > 5, `dispersion ${phi}`);
  });

  test('gauge: the residual variance in the series’ own units', () => {
    assert.equal(squaredResidual(-1.5, 0.5, 0, 'gauge', 0.05, 0), 4);
  });
});
