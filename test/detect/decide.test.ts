import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { DetectorConfig } from '../../src/config/schema.ts';
import type { InsightType } from '../../src/contracts/types.ts';
import { Expectation, expectationSettings } from '../../src/detect/baseline/expectation.ts';
import { BurstMemory } from '../../src/detect/baseline/memory.ts';
import { decadesOf } from '../../src/detect/baseline/score.ts';
import { type BucketObservation, Decider } from '../../src/detect/decide.ts';
import { Overrides } from '../../src/detect/overrides.ts';
import { hhAdd } from '../../src/detect/sketch.ts';
import { BaselineSketches, type BucketAcc, KeyState, newContributors, SlotPool } from '../../src/detect/state.ts';
import type { AnomalyFacts } from '../../src/emit/insight.ts';

const T0 = Date.UTC(2026, 0, 5);
const MINUTE = 60_000;

function detector(over: Record<string, unknown> = {}): DetectorConfig {
  return loadConfig({ env: {}, overrides: { detector: { minHistoryMs: 10 * MINUTE, ...over } } }).detector;
}

function setup(config: DetectorConfig, insightType: InsightType = 'ApiCallRateInsight') {
  const settings = expectationSettings(config);
  const pool = new SlotPool(config.topN, 3, settings.seasonal);
  const sketches = new BaselineSketches(pool, (v) => v);
  const streaking = new Set<string>();
  const observations: BucketObservation[] = [];
  const decider = new Decider(
    config,
    new Expectation(settings, pool, sketches),
    new BurstMemory(config.bucketMs, decadesOf(config.scoreThreshold), settings.seasonalAfterBuckets),
    sketches,
    streaking,
    (o) => observations.push(o),
  );
  const k = new KeyState(
    {
      id: 'action|call|A|r|ec2.amazonaws.com|RunInstances',
      scope: 'action',
      insightType,
      accountId: 'A',
      region: 'r',
      service: 'ec2.amazonaws.com',
      action: 'RunInstances',
      principal: null,
      errorCode: insightType === 'ApiErrorRateInsight' ? 'AccessDenied' : null,
    },
    false,
    pool.alloc(),
  );
  k.settings = new Overrides(config).resolve(k);
  k.lastFoldedMs = T0 - MINUTE;
  k.observed = 0;
  k.prevPeakMinute = -1;
  k.nearDay = -1;
  const out: AnomalyFacts[] = [];
  const acc = (count: number, who = 'arn:aws:iam::1:user/ci'): BucketAcc => {
    const c = newContributors(config.topN * 2);
    hhAdd(c.userIdentityArn, who, count);
    hhAdd(c.userAgent, 'aws-cli', count);
    hhAdd(c.errorCode, 'null', count);
    return { count, contributors: c };
  };
  /** Bucket `m` of the key with `count` events (none: no data). */
  const bucket = (m: number, count?: number, who?: string) =>
    decider.decide(k, T0 + m * MINUTE, count === undefined ? undefined : acc(count, who), out);
  return { decider, k, out, observations, streaking, bucket };
}

/** Two hours at a steady 10 a minute: a learned key with a cold-start dispersion. */
function steady(s: ReturnType<typeof setup>, minutes = 120) {
  for (let m = 0; m < minutes; m++) s.bucket(m, 10);
}

describe('the Start/End machine', () => {
  test('a spike starts an Insight in its bucket; endAfterBuckets ordinary buckets end it', () => {
    const config = detector();
    const s = setup(config);
    steady(s);
    assert.equal(s.out.length, 0);
    s.bucket(120, 120, 'arn:aws:iam::1:user/mallory');
    assert.equal(s.out.length, 1);
    const start = s.out[0] as AnomalyFacts;
    assert.equal(start.state, 'Start');
    assert.equal(start.keyId, s.k.id);
    assert.equal(start.startTimeMs, T0 + 120 * MINUTE);
    assert.equal(start.endTimeMs, null);
    assert.ok(start.score >= config.scoreThreshold);
    assert.equal(start.threshold, config.scoreThreshold);
    assert.ok(Math.abs(start.baselinePerMinute - 10) < 1e-9, 'the baseline as it stood, not with the spike in it');
    assert.equal(start.insightPerMinute, 120);
    assert.equal(start.historyMinutes, 120);
    assert.deepEqual(
      start.contributors.map((c) => c.attribute),
      ['userIdentityArn', 'userAgent', 'errorCode'],
    );
    assert.equal(start.contributors[0]?.insight[0]?.value, 'arn:aws:iam::1:user/mallory');
    assert.equal(start.contributors[0]?.baseline[0]?.value, 'arn:aws:iam::1:user/ci');
    assert.ok(s.streaking.has(s.k.id));
    s.bucket(121, 10);
    s.bucket(122, 10);
    assert.equal(s.out.length, 1, 'two ordinary buckets are not enough');
    s.bucket(123, 10);
    assert.equal(s.out.length, 2);
    const end = s.out[1] as AnomalyFacts;
    assert.equal(end.state, 'End');
    assert.equal(end.startTimeMs, start.startTimeMs);
    assert.equal(end.endTimeMs, T0 + 121 * MINUTE, 'the end of the last anomalous bucket');
    assert.deepEqual(end.contributors[0]?.baseline, start.contributors[0]?.baseline, 'the End reports the Start’s baselines');
    assert.equal(s.streaking.has(s.k.id), false);
    assert.ok(s.k.burst >= 120 * 0.99, 'the reported peak is remembered as a burst');
  });

  test('every bucket is observed with the score the machine read', () => {
    const config = detector();
    const s = setup(config);
    steady(s, 60);
    s.bucket(60, 120);
    assert.equal(s.observations.length, 61);
    const last = s.observations[60] as BucketObservation;
    assert.equal(last.bucketStartMs, T0 + 60 * MINUTE);
    assert.equal(last.count, 120);
    assert.equal(last.direction, 'up');
    assert.equal(last.veto, null);
    assert.equal(last.score, (s.out[0] as AnomalyFacts).score);
    const learning = s.observations[5] as BucketObservation;
    assert.equal(learning.score, 0);
  });

  test('an anomaly while learning is vetoed: no Insight, and it is learned as it comes', () => {
    const config = detector({ minHistoryMs: 60 * MINUTE });
    const s = setup(config);
    steady(s, 20);
    s.bucket(20, 200);
    assert.equal(s.out.length, 0);
    assert.equal(s.observations[20]?.veto, 'learning');
    assert.ok(s.observations[20]?.rawScore > config.scoreThreshold);
    assert.equal(s.k.burst, 200);
  });

  test('a candidate that does not last startAfterBuckets is forgotten', () => {
    const config = detector({ startAfterBuckets: 2 });
    const s = setup(config);
    steady(s);
    s.bucket(120, 120);
    assert.ok(s.streaking.has(s.k.id), 'a candidate');
    assert.equal(s.k.streak?.started, false);
    s.bucket(121, 10);
    assert.equal(s.k.streak, null);
    assert.equal(s.streaking.has(s.k.id), false);
    assert.equal(s.out.length, 0);
  });

  test('an Insight open for maxDurationMs ends', () => {
    const config = detector({ maxDurationMs: 5 * MINUTE });
    const s = setup(config);
    steady(s);
    for (let m = 120; m < 130; m++) s.bucket(m, 150 + 30 * (m - 120));
    const states = s.out.map((f) => f.state);
    assert.deepEqual(states.slice(0, 2), ['Start', 'End']);
    assert.equal(s.out[1]?.endTimeMs, T0 + 125 * MINUTE);
  });

  test('buckets without data are judged at zero, and the empty ones before a bucket are learned', () => {
    const config = detector();
    const s = setup(config);
    steady(s);
    s.bucket(300, 10);
    assert.equal(s.k.lastFoldedMs, T0 + 300 * MINUTE);
    assert.equal(s.k.observed, 301, 'the 179 empty buckets are history');
    assert.ok(s.k.mean < 10);
    assert.equal(s.out.length, 0);
  });

  test('an error-rate Insight does not attribute the error code (it is the key)', () => {
    const s = setup(detector(), 'ApiErrorRateInsight');
    steady(s);
    s.bucket(120, 120);
    assert.deepEqual(
      s.out[0]?.contributors.map((c) => c.attribute),
      ['userIdentityArn', 'userAgent'],
    );
    assert.equal(s.out[0]?.errorCode, 'AccessDenied');
  });

  test('a metric series without a reading learns nothing; an open Insight counts the gap as ordinary', () => {
    const config = detector({ minEventsPerBucket: 0, minRatio: 0, burstMargin: 0 });
    const s = setup(config);
    s.k.model = 'gauge';
    for (let m = 0; m < 120; m++) s.bucket(m, 10 + (m % 3));
    s.bucket(120, 500);
    assert.equal(s.out[0]?.state, 'Start');
    const mean = s.k.mean;
    s.bucket(121);
    s.bucket(122);
    assert.equal(s.k.mean, mean, 'nothing learned');
    assert.equal(s.out.length, 1);
    s.bucket(123);
    assert.equal(s.out[1]?.state, 'End');
    assert.equal(s.out[1]?.endTimeMs, T0 + 121 * MINUTE);
  });
});
