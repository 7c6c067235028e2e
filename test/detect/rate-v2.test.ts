import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { DetectorConfig } from '../../src/config/schema.ts';
import type { AuditEvent, Insight } from '../../src/contracts/types.ts';
import { mulberry32, poisson } from '../../src/demo/traffic.ts';
import { decadesOf } from '../../src/detect/baseline/score.ts';
import { type BucketObservation, DetectionEngine, type EngineOptions } from '../../src/detect/engine.ts';
import { globToRegExp, Overrides } from '../../src/detect/overrides.ts';
import { auditEvent } from '../helpers/events.ts';

/**
 * The rate detector v2 on the engine: drops, sustained shifts, one score that the series and the
 * Insights agree on, and floors that degrade gracefully.
 */

const T0 = Date.UTC(2026, 0, 5, 0, 0, 0); // a Monday
const MINUTE = 60_000;
const DAY_MIN = 1_440;
const PRINCIPAL = 'arn:aws:sts::111122223333:assumed-role/svc-orders';

function detector(over: Record<string, unknown> = {}): DetectorConfig {
  return loadConfig({ env: {}, overrides: { detector: { scopes: { action: false, principalAction: true }, ...over } } }).detector;
}

/** `minutes` of one principal's one action at `rate(minute)` calls a minute (Poisson), fed minute by minute. */
function run(config: DetectorConfig, minutes: number, rate: (m: number) => number, seed = 1, options: EngineOptions = {}) {
  const r = mulberry32(seed);
  const series: BucketObservation[] = [];
  const engine = new DetectionEngine(config, { ...options, onBucket: (o) => series.push(o) });
  const insights: Insight[] = [];
  for (let m = 0; m < minutes; m++) {
    const n = poisson(r, rate(m));
    const events: AuditEvent[] = Array.from({ length: n }, (_, i) =>
      auditEvent({ eventId: `e${m}-${i}`, eventTimeMs: T0 + m * MINUTE + i, principal: PRINCIPAL, action: 'PutItem' }),
    );
    insights.push(...engine.process(events, T0 + m * MINUTE));
  }
  return { insights, series, engine };
}

const starts = (insights: Insight[]) => insights.filter((i) => i.insightDetails.state === 'Start');
const minuteOf = (ms: number) => (ms - T0) / MINUTE;
/** A service's daily shape: busy by day, quiet (not silent) at night. */
const daily = (base: number) => (m: number) => {
  const hour = Math.floor((m % DAY_MIN) / 60);
  return hour >= 8 && hour < 20 ? base : base / 8;
};

describe('drops', () => {
  const both = detector({ direction: 'both' });

  test('a service that goes silent is reported, starting where it stopped', () => {
    const stop = 3 * DAY_MIN + 11 * 60;
    const { insights } = run(both, 3 * DAY_MIN + 14 * 60, (m) => (m >= stop && m < stop + 120 ? 0 : daily(8)(m)));
    const s = starts(insights);
    assert.equal(s.length, 1, `Starts at ${s.map((i) => minuteOf(i.trailwatch.startTimeMs))}`);
    const at = minuteOf((s[0] as Insight).trailwatch.startTimeMs);
    // The run may begin a bucket early, on a quiet minute just before the silence.
    assert.ok(Math.abs(at - stop) <= 2, `starts at ${at}, the silence at ${stop}`);
    const stats = (s[0] as Insight).insightDetails.insightContext.statistics;
    assert.ok(stats.insight.average < stats.baseline.average / 2, `${stats.insight.average} vs ${stats.baseline.average}`);
  });

  test('quiet nights are not drops: the expectation is the hour’s', () => {
    const { insights } = run(both, 4 * DAY_MIN, daily(8));
    assert.deepEqual(starts(insights), []);
  });

  test('direction up (the default) does not report the same silence', () => {
    const stop = 3 * DAY_MIN + 11 * 60;
    const { insights } = run(detector(), 3 * DAY_MIN + 14 * 60, (m) => (m >= stop && m < stop + 120 ? 0 : daily(8)(m)));
    assert.deepEqual(starts(insights), []);
  });

  test('an override watches one principal both ways', () => {
    const stop = 3 * DAY_MIN + 11 * 60;
    const config = detector({ overrides: [{ match: { principal: '*:assumed-role/svc-*' }, direction: 'both' }] });
    const { insights } = run(config, 3 * DAY_MIN + 14 * 60, (m) => (m >= stop && m < stop + 120 ? 0 : daily(8)(m)));
    assert.equal(starts(insights).length, 1);
  });
});

describe('sustained shifts', () => {
  test('an hour at 3× is reported within 15 buckets, naming the bucket where it began', () => {
    const shift = 3 * DAY_MIN + 10 * 60;
    const { insights, series } = run(detector(), 3 * DAY_MIN + 13 * 60, (m) =>
      m >= shift && m < shift + 60 ? 3 * daily(6)(m) : daily(6)(m),
    );
    const s = starts(insights);
    assert.equal(s.length, 1, `Starts at ${s.map((i) => minuteOf(i.trailwatch.startTimeMs))}`);
    const start = minuteOf((s[0] as Insight).trailwatch.startTimeMs);
    assert.ok(start >= shift && start <= shift + 5, `named ${start}, the shift began at ${shift}`);
    const fired = series.find((o) => o.score >= 0.6);
    assert.ok(fired);
    const detectedAfter = minuteOf(fired.bucketStartMs) - shift + 1;
    assert.ok(detectedAfter <= 15, `detected after ${detectedAfter} buckets`);
  });
});

describe('--series and the Insights agree', () => {
  test('a Start comes exactly at a bucket whose score reached the threshold, and every such bucket of a quiet key starts one', () => {
    const config = detector({ direction: 'both' });
    const rate = (m: number) => {
      const base = daily(8)(m);
      if (m >= 3 * DAY_MIN + 600 && m < 3 * DAY_MIN + 660) return base * 3; // a shift
      if (m >= 3 * DAY_MIN + 800 && m < 3 * DAY_MIN + 890) return 0; // silence
      if (m >= 3 * DAY_MIN + 1000 && m < 3 * DAY_MIN + 1004) return base * 12; // a spike
      return base;
    };
    const { insights, series } = run(config, 4 * DAY_MIN, rate, 4);
    const startBuckets = new Set<number>();
    let open = false;
    let endsSeen = 0;
    const byTime = new Map(series.map((o) => [o.bucketStartMs, o]));
    for (const i of insights) {
      if (i.insightDetails.state === 'End') endsSeen++;
    }
    // Replay the series through the Start rule: a bucket at the threshold with no Insight open starts one.
    const expectedStarts: number[] = [];
    let below = 0;
    for (const o of series) {
      if (o.score >= config.scoreThreshold) {
        below = 0;
        if (!open) {
          open = true;
          expectedStarts.push(o.bucketStartMs);
        }
      } else if (open && ++below >= config.endAfterBuckets) {
        open = false;
        below = 0;
      }
    }
    for (const s of starts(insights)) {
      // The Start may name an earlier bucket (where a sustained run began); it was released by the bucket that crossed.
      const released = [...byTime.values()].find((o) => o.bucketStartMs >= s.trailwatch.startTimeMs && o.score >= config.scoreThreshold);
      assert.ok(released, `Start at ${minuteOf(s.trailwatch.startTimeMs)} has no bucket at the threshold`);
      startBuckets.add(released.bucketStartMs);
    }
    assert.deepEqual([...startBuckets].sort(), expectedStarts.sort());
    assert.equal(starts(insights).length, 3, `Starts at ${starts(insights).map((i) => minuteOf(i.trailwatch.startTimeMs))}`);
    assert.ok(endsSeen >= 3);
    // Vetoed buckets show 0 and say why.
    for (const o of series) if (o.veto !== null) assert.equal(o.score, 0);
  });
});

describe('graceful floors', () => {
  /** A key with recurring legitimate bursts: 4 a minute, and 30 a minute for 20 minutes twice a day. */
  const bursty = (m: number) => {
    const minute = m % DAY_MIN;
    return (minute >= 180 && minute < 200) || (minute >= 900 && minute < 920) ? 30 : 4;
  };
  const loose = [
    { scoreThreshold: 0.4, minRatio: 1.5, burstMargin: 0 },
    { scoreThreshold: 0.3, minRatio: 1, burstMargin: 0, minEventsPerBucket: 0 },
    { scoreThreshold: 0.4, minRatio: 0, burstMargin: 0, minEventsPerBucket: 0 },
  ];
  for (const over of loose) {
    test(`no alert storm and no starved baseline with ${JSON.stringify(over)}`, () => {
      const days = 6;
      const { insights, engine } = run(detector(over), days * DAY_MIN, bursty, 2);
      const n = starts(insights).length;
      // Insights come no more often than the threshold's rarity says (each bucket that rare can
      // start one), plus the twice-daily bursts: a starved baseline would add a storm on top.
      const rarity = 10 ** -decadesOf(over.scoreThreshold);
      assert.ok(n <= days * (DAY_MIN * rarity + 2), `${n} Starts in ${days} days`);
      const view = engine.keyView(engine.keyIds()[0] as string);
      // The baseline still holds the bursts (their share of the day lifts the mean above the quiet rate).
      assert.ok((view?.baselinePerMinute ?? 0) > 4.3, `baseline ${view?.baselinePerMinute}`);
    });
  }
});

describe('overrides', () => {
  test('globs match whole values; the most specific override wins, the first among equals', () => {
    assert.ok(globToRegExp('*:assumed-role/svc-*').test(PRINCIPAL));
    assert.ok(!globToRegExp('svc-*').test(PRINCIPAL));
    assert.ok(globToRegExp('s3.amazonaws.com').test('s3.amazonaws.com'));
    assert.ok(!globToRegExp('s3.amazonaws.com').test('s3xamazonawsxcom'));
    const o = new Overrides({
      ...detector(),
      direction: 'up',
      overrides: [
        { match: { principal: '*svc-*' }, direction: 'both' },
        { match: { principal: '*svc-*', action: 'PutItem' }, direction: 'down' },
        { match: { principal: '*svc-orders' }, direction: 'up' },
      ],
    });
    const subject = {
      scope: 'principalAction' as const,
      insightType: 'ApiCallRateInsight' as const,
      accountId: '1',
      region: 'r',
      service: 'dynamodb.amazonaws.com',
      action: 'PutItem',
      principal: PRINCIPAL,
      errorCode: null,
    };
    assert.equal(o.directionOf(subject), 'down');
    assert.equal(o.directionOf({ ...subject, action: 'GetItem' }), 'both');
    assert.equal(o.directionOf({ ...subject, principal: 'arn:aws:iam::1:user/bob' }), 'up');
  });

  test('a config override that matches nothing is refused with its path', () => {
    assert.throws(
      () => loadConfig({ env: {}, overrides: { detector: { overrides: [{ match: {}, direction: 'both' }] } } }),
      /detector\.overrides\[0\]\.match/,
    );
  });
});
