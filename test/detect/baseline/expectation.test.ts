import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { COLD_DISPERSION, Expectation, expectationSettings } from '../../../src/detect/baseline/expectation.ts';
import { hhAdd } from '../../../src/detect/sketch.ts';
import { BaselineSketches, type Contributors, KeyState, newContributors, SlotPool } from '../../../src/detect/state.ts';
import { DAY_MS, HOUR_MS, MINUTE_MS } from '../../../src/detect/time.ts';

const T0 = Date.UTC(2026, 0, 5);

function setup(over: { bucketMs?: number; seasonality?: 'hourOfDay' | 'none'; baselineWindowMs?: number } = {}) {
  const settings = expectationSettings({ bucketMs: MINUTE_MS, baselineWindowMs: 7 * DAY_MS, seasonality: 'hourOfDay', ...over });
  const pool = new SlotPool(5, 3, settings.seasonal);
  const sketches = new BaselineSketches(pool, (v) => v);
  const expectation = new Expectation(settings, pool, sketches);
  const key = (scope: 'action' | 'principalAction' = 'action') => {
    const k = new KeyState(
      {
        id: 'k',
        scope,
        insightType: 'ApiCallRateInsight',
        accountId: 'A',
        region: 'r',
        service: 's',
        action: 'a',
        principal: scope === 'action' ? null : 'P',
        errorCode: null,
      },
      false,
      pool.alloc(),
    );
    k.lastFoldedMs = T0 - settings.bucketMs;
    return k;
  };
  return { settings, expectation, key };
}

function contributors(agent: string, n: number): Contributors {
  const c = newContributors(10);
  hhAdd(c.userAgent, agent, n);
  hhAdd(c.userIdentityArn, 'arn:x', n);
  hhAdd(c.errorCode, 'null', n);
  return c;
}

/** The slot's numbers, for exact comparison. */
const slot = (k: KeyState, stride: number) => Array.from(k.f.subarray(k.o, k.o + stride));

describe('expectation settings', () => {
  test('one-minute buckets: a week window, an hourly profile after two days, a floor of 0.05 a minute', () => {
    const s = expectationSettings({ bucketMs: MINUTE_MS, baselineWindowMs: 7 * DAY_MS, seasonality: 'hourOfDay' });
    assert.equal(s.windowBuckets, 7 * 1_440);
    assert.equal(s.seasonal, true);
    assert.equal(s.bucketsPerHour, 60);
    assert.equal(s.seasonalAfterBuckets, 2 * 1_440);
    assert.ok(Math.abs(s.meanFloor - 0.05) < 1e-12);
  });

  test('no profile when buckets do not divide an hour, are an hour long, or seasonality is off', () => {
    assert.equal(expectationSettings({ bucketMs: 7 * MINUTE_MS, baselineWindowMs: DAY_MS, seasonality: 'hourOfDay' }).seasonal, false);
    assert.equal(expectationSettings({ bucketMs: HOUR_MS, baselineWindowMs: DAY_MS, seasonality: 'hourOfDay' }).seasonal, false);
    assert.equal(expectationSettings({ bucketMs: MINUTE_MS, baselineWindowMs: DAY_MS, seasonality: 'none' }).seasonal, false);
    assert.equal(
      expectationSettings({ bucketMs: HOUR_MS, baselineWindowMs: HOUR_MS, seasonality: 'none' }).windowBuckets,
      2,
      'at least two',
    );
  });
});

describe('learning', () => {
  test('a cumulative average at first, then an EWMA over the window; history is capped at the window', () => {
    const { expectation, key } = setup({ baselineWindowMs: 10 * MINUTE_MS });
    const k = key();
    k.observed = 0;
    for (const [i, v] of [4, 8, 6].entries()) expectation.learn(k, T0 + i * MINUTE_MS, v, undefined);
    assert.ok(Math.abs(k.mean - 6) < 1e-12, 'the average of 4, 8, 6');
    assert.equal(k.observed, 3);
    assert.equal(k.lastFoldedMs, T0 + 2 * MINUTE_MS);
    for (let i = 3; i < 40; i++) expectation.learn(k, T0 + i * MINUTE_MS, 6, undefined);
    assert.equal(k.observed, 10);
    const before = k.mean;
    expectation.learn(k, T0 + 40 * MINUTE_MS, 17, undefined);
    assert.ok(Math.abs(k.mean - (before + (2 / 11) * (17 - before))) < 1e-12, 'alpha 2 / (window + 1)');
  });

  test('the hourly profile: a key busy at 09:00 and quiet otherwise is expected busy at 09:00 once it has two days', () => {
    const { expectation, key, settings } = setup({ bucketMs: 10 * MINUTE_MS });
    const k = key();
    k.observed = 0;
    const perDay = DAY_MS / settings.bucketMs;
    for (let i = 0; i < 3 * perDay; i++) {
      const t = T0 + i * settings.bucketMs;
      expectation.learn(k, t, new Date(t).getUTCHours() === 9 ? 60 : 2, undefined);
      if (i === settings.seasonalAfterBuckets - 2) {
        assert.equal(expectation.expected(k, T0 + 3 * DAY_MS + 9 * HOUR_MS), k.mean, 'the mean before two days');
      }
    }
    assert.equal(expectation.cold(k), false);
    assert.ok(Math.abs(expectation.expected(k, T0 + 3 * DAY_MS + 9 * HOUR_MS) - 60) < 1e-6);
    assert.ok(Math.abs(expectation.expected(k, T0 + 3 * DAY_MS + 3 * HOUR_MS) - 2) < 1e-6);
    assert.ok(k.mean > 2 && k.mean < 60);
  });

  test('baseline contributors learn at the mean’s rate; a principal’s key keeps no sketch of who called', () => {
    const { expectation, key } = setup();
    const a = key('action');
    const p = key('principalAction');
    for (const k of [a, p]) {
      k.observed = 0;
      expectation.learn(k, T0, 10, contributors('cli', 10));
      expectation.learn(k, T0 + MINUTE_MS, 10, contributors('sdk', 10));
    }
    assert.deepEqual(
      a.sketches.map((s) => s?.length ?? null),
      [2, 1, 1],
    );
    assert.equal(p.sketches[2], null);
  });

  test('learnZeros is exactly learn(0) bucket by bucket, across days, hours and the window cap', () => {
    for (const bucketMs of [MINUTE_MS, 15 * MINUTE_MS]) {
      const { expectation, key, settings } = setup({ bucketMs, baselineWindowMs: DAY_MS });
      const pool = new SlotPool(5, 3, settings.seasonal);
      const a = key();
      const b = key();
      for (const k of [a, b]) {
        k.observed = 0;
        for (let i = 0; i < 50; i++) expectation.learn(k, T0 + i * bucketMs, (i * 7) % 13, contributors(`ua${i % 3}`, 1 + (i % 5)));
      }
      // From Friday evening: the zeros cross a weekend, which the profile and dispersions learn apart.
      const from = T0 + 4 * DAY_MS + 20 * HOUR_MS;
      const gap = 3 * settings.windowBuckets + 17;
      expectation.learnZeros(a, from, gap);
      for (let i = 0; i < gap; i++) expectation.learn(b, from + i * bucketMs, 0, undefined);
      assert.deepEqual(slot(a, pool.stride), slot(b, pool.stride), `bucketMs ${bucketMs}`);
    }
  });
});

describe('weekends', () => {
  test('two quiet weekend days lower neither the hours nor the dispersions; a weekend burst raises them; Monday teaches as usual', () => {
    const { expectation, key, settings } = setup({ bucketMs: 10 * MINUTE_MS });
    const k = key();
    k.observed = 0;
    const bucketMs = settings.bucketMs;
    const busy = (t: number) => (new Date(t).getUTCHours() === 9 ? 60 + ((t / bucketMs) % 7) * 3 : 2);
    // Monday to Friday of work.
    for (let t = T0; t < T0 + 5 * DAY_MS; t += bucketMs) expectation.learn(k, t, busy(t), undefined);
    const nine = T0 + 7 * DAY_MS + 9 * HOUR_MS;
    const friday = { nine: expectation.expected(k, nine), dispersion: k.dispersion, hourly: k.hourlyDispersion };
    // A silent weekend, learned as a gap (learnZeros is learn(0) bucket by bucket: tested above).
    expectation.learnZeros(k, T0 + 5 * DAY_MS, (2 * DAY_MS) / bucketMs);
    assert.equal(expectation.expected(k, nine), friday.nine);
    // Silent hours that expected calls are residuals: they may widen the dispersions, never narrow them.
    assert.ok(k.hourlyDispersion >= friday.hourly);
    assert.ok(k.dispersion >= friday.dispersion);
    const weekend = { hourly: k.hourlyDispersion };
    // A Saturday 09:00 busier than the weekdays' is learned.
    const saturday = T0 + 5 * DAY_MS + 9 * HOUR_MS;
    expectation.learn(k, saturday, 500, undefined);
    assert.ok(expectation.expected(k, nine) > friday.nine);
    assert.ok(k.hourlyDispersion > weekend.hourly);
    // Monday's quiet hour is learned as any weekday's.
    const before = expectation.expected(k, nine);
    expectation.learn(k, nine, 0, undefined);
    assert.ok(expectation.expected(k, nine) < before);
  });
});

describe('judging', () => {
  test('a cold count key is judged with at least COLD_DISPERSION; a warm one with what it learned', () => {
    const { expectation, key, settings } = setup({ seasonality: 'none' });
    const k = key();
    k.observed = 10;
    k.dispersion = 1.5;
    assert.equal(expectation.judgedDispersion(k), COLD_DISPERSION);
    k.model = 'gauge';
    assert.equal(expectation.judgedDispersion(k), 1.5, 'a metric series has no Poisson floor');
    k.model = 'counts';
    k.observed = settings.seasonalAfterBuckets;
    assert.equal(expectation.judgedDispersion(k), 1.5);
  });

  test('counts are floored at the mean floor, metric series are not; the winsor cap sits three deviations up', () => {
    const { expectation, key, settings } = setup();
    const k = key();
    assert.equal(expectation.floored(k, 0), settings.meanFloor);
    assert.equal(expectation.floored(k, 3), 3);
    assert.equal(expectation.winsorCap(k, 4, 1), 4 + 3 * 2 + 1);
    k.model = 'gauge';
    assert.equal(expectation.floored(k, -2), -2);
    assert.equal(expectation.winsorCap(k, 4, 9), 13);
  });

  test('a cold metric series follows its level over about an hour', () => {
    const { expectation, key, settings } = setup();
    const k = key();
    k.observed = 1_000;
    assert.equal(expectation.alpha(k), 1 / 1_001, 'a cumulative average while young');
    k.model = 'gauge';
    assert.equal(expectation.alpha(k), 2 / (60 + 1));
    k.observed = settings.windowBuckets;
    assert.equal(expectation.alpha(k), 2 / (settings.windowBuckets + 1), 'once warm, the window');
  });
});
