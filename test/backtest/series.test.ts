import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { backtestEvents } from '../../src/backtest/backtest.ts';
import { type CountsRow, countsEvents, inputRows } from '../../src/backtest/inputs.ts';
import { backtestSeries, SeriesBacktest, type SeriesRow } from '../../src/backtest/series.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { DetectorConfig } from '../../src/config/schema.ts';
import type { Insight } from '../../src/contracts/types.ts';
import type { BucketObservation } from '../../src/detect/engine.ts';
import { COUNTS_CSV, ensureFixtures, FIXTURE_T0, METRIC_CSV, METRIC_LEVEL_CHANGE } from './fixtures.ts';

const MINUTE_MS = 60_000;
const KEY_PREFIX = 'action|call|000000000000|counts|counts|';

/** The configuration `trailwatch backtest` gives a CSV input. */
function detector(over: Record<string, unknown> = {}): DetectorConfig {
  return loadConfig({
    env: {},
    overrides: { detector: { scopes: { principalAction: false }, insightTypes: { apiErrorRate: false }, ...over } },
  }).detector;
}

async function rowsOf(file: string, options: Parameters<typeof inputRows>[1] = {}): Promise<CountsRow[]> {
  const rows: CountsRow[] = [];
  for await (const row of inputRows([file], { ...options, onRejected: (i) => assert.fail(i.error.message) })) rows.push(row);
  return rows;
}

const byId = (insights: Insight[]): Insight[] => [...insights].sort((a, b) => (a.eventID < b.eventID ? -1 : a.eventID > b.eventID ? 1 : 0));
const byBucketThenKey = (series: BucketObservation[]): BucketObservation[] =>
  [...series].sort((a, b) => a.bucketStartMs - b.bucketStartMs || (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : 0));

/** What the counts path replaced: every count an event, through the whole topology as `backtest` ran it (3 partitions). */
function expanded(rows: SeriesRow[], cfg: DetectorConfig): { insights: Insight[]; series: BucketObservation[] } {
  return backtestEvents(
    rows.flatMap((r) => [...countsEvents(r)]),
    cfg,
    { partitions: 3 },
  );
}

before(() => ensureFixtures());

describe('counts rows as bucket values', () => {
  test('a counts CSV with a spike yields a Start and an End on the per-action path', async () => {
    const { insights, stats } = backtestSeries(await rowsOf(COUNTS_CSV), detector());
    assert.deepEqual(
      insights.map((i) => [i.insightDetails.state, i.insightDetails.eventName, i.trailwatch.scope, i.eventTime]),
      [
        ['Start', 'checkout.requests', 'action', '2026-01-05T09:20:00Z'],
        ['End', 'checkout.requests', 'action', '2026-01-05T09:25:00Z'],
      ],
    );
    assert.equal(insights[0]?.sharedEventID, insights[1]?.sharedEventID);
    assert.equal(insights[0]?.insightDetails.eventSource, 'counts');
    assert.equal(stats.rowsIn, 200);
    assert.equal(stats.rowsUsed, 200);
    assert.equal(stats.keysCreated, 2);
  });

  test('the same Insights and series as the expansion into events it replaced (integer counts)', async () => {
    const cfg = detector();
    const fixture = await rowsOf(COUNTS_CSV);
    const rows = backtestSeries(fixture, cfg);
    const events = expanded(fixture, cfg);
    assert.deepEqual(byId(rows.insights), byId(events.insights));
    assert.deepEqual(byBucketThenKey(rows.series), byBucketThenKey(events.series));
    assert.equal(rows.stats.valueSum, 2_948);

    // Zero rows (no calls), and a minute's count split over rows at different seconds of one bucket.
    const t0 = FIXTURE_T0;
    const handmade: SeriesRow[] = [];
    for (let m = 0; m < 120; m++) {
      const value = m % 7 === 0 ? 0 : m >= 100 && m < 104 ? 90 : 6 + (m % 5);
      handmade.push({ timestampMs: t0 + m * MINUTE_MS, key: 'split', value: Math.floor(value / 2) });
      handmade.push({ timestampMs: t0 + m * MINUTE_MS + 30_000, key: 'split', value: Math.ceil(value / 2) });
      handmade.push({ timestampMs: t0 + m * MINUTE_MS, key: 'late.starter', value: m < 60 ? 0 : 3 });
    }
    const a = backtestSeries(handmade, cfg);
    const b = expanded(handmade, cfg);
    assert.ok(a.insights.length > 0, 'the spike at minute 100 makes an Insight to compare');
    assert.deepEqual(byId(a.insights), byId(b.insights));
    assert.deepEqual(byBucketThenKey(a.series), byBucketThenKey(b.series));
  });

  test('rows of one key in one bucket add up', () => {
    const t = FIXTURE_T0;
    const { series, stats } = backtestSeries(
      [
        { timestampMs: t, key: 'a', value: 3 },
        { timestampMs: t + 20_000, key: 'a', value: 4.5 },
        { timestampMs: t + 20_000, key: 'a', value: 1 },
        { timestampMs: t + 20_000, key: 'b', value: 2 },
      ],
      detector(),
      { valueModel: 'gauge' },
    );
    assert.deepEqual(
      series.map((o) => [o.keyId, o.bucketStartMs, o.count]),
      [
        [`${KEY_PREFIX}a`, t, 8.5],
        [`${KEY_PREFIX}b`, t, 2],
      ],
    );
    assert.equal(stats.rowsIn, 4);
    assert.equal(stats.valueSum, 10.5);
  });

  test('50,000,000 in one row is one row in one bucket, not fifty million events', () => {
    const rows: SeriesRow[] = [];
    for (let m = 0; m < 180; m++) rows.push({ timestampMs: FIXTURE_T0 + m * MINUTE_MS, key: 'orders', value: 1_000 + (m % 9) * 10 });
    const spikeMs = FIXTURE_T0 + 180 * MINUTE_MS;
    rows.push({ timestampMs: spikeMs, key: 'orders', value: 50_000_000 });
    const { insights, series, stats } = backtestSeries(rows, detector());
    assert.equal(stats.rowsIn, 181);
    assert.equal(stats.rowsUsed, 181);
    assert.equal(
      stats.valueSum,
      rows.reduce((n, r) => n + r.value, 0),
    );
    assert.equal(series.length, 181, 'one observation per row');
    assert.equal(series.at(-1)?.count, 50_000_000);
    const start = insights.find((i) => i.insightDetails.state === 'Start');
    assert.equal(start?.trailwatch.startTimeMs, spikeMs);
  });

  test('presorted rows out of order by more than the allowed lateness are late and left out', () => {
    const cfg = detector();
    const backtest = new SeriesBacktest(cfg, { batchSize: 1 });
    const lateness = cfg.allowedLatenessMs;
    backtest.push({ timestampMs: FIXTURE_T0, key: 'a', value: 1 });
    backtest.push({ timestampMs: FIXTURE_T0 + lateness + 5 * MINUTE_MS, key: 'a', value: 2 });
    backtest.push({ timestampMs: FIXTURE_T0 + MINUTE_MS, key: 'a', value: 7 }); // its bucket closed
    backtest.push({ timestampMs: FIXTURE_T0 + lateness + 4 * MINUTE_MS, key: 'a', value: 3 }); // within the lateness
    const stats = backtest.finish();
    assert.equal(stats.rowsIn, 4);
    assert.equal(stats.rowsLate, 1);
    assert.equal(stats.rowsUsed, 3);
    assert.equal(stats.valueSum, 6);
    assert.equal(stats.firstRowMs, FIXTURE_T0);
    assert.equal(stats.lastRowMs, FIXTURE_T0 + lateness + 5 * MINUTE_MS);
    assert.throws(() => backtest.push({ timestampMs: FIXTURE_T0, key: 'a', value: 1 }), /after finish/);
  });
});

describe('metric series (gauge)', () => {
  test('a planted level change yields an Insight at the change, and a series row per key per bucket', async () => {
    const cfg = detector();
    const rows = await rowsOf(METRIC_CSV, { valueColumn: 'value', metric: true });
    const { insights, series, stats } = backtestSeries(rows, cfg, { valueModel: 'gauge' });
    assert.equal(stats.rowsIn, 720);
    assert.equal(series.length, 720, 'every bucket of both keys judged (a reading of every bucket)');
    const changeMs = FIXTURE_T0 + METRIC_LEVEL_CHANGE.startMinute * MINUTE_MS;
    const endMs = changeMs + METRIC_LEVEL_CHANGE.minutes * MINUTE_MS;
    const starts = insights.filter((i) => i.insightDetails.state === 'Start' && i.insightDetails.eventName === METRIC_LEVEL_CHANGE.key);
    assert.deepEqual(
      starts.map((i) => i.trailwatch.startTimeMs),
      [changeMs],
      'one Start, at the first bucket of the change',
    );
    const end = insights.find((i) => i.insightDetails.state === 'End' && i.sharedEventID === starts[0]?.sharedEventID);
    assert.ok(end, 'the Insight ends once the level is back');
    assert.ok((end.trailwatch.endTimeMs ?? 0) >= endMs - MINUTE_MS);

    const key = `${KEY_PREFIX}${METRIC_LEVEL_CHANGE.key}`;
    const at = series.find((o) => o.keyId === key && o.bucketStartMs === changeMs);
    const row = rows.find((r) => r.key === METRIC_LEVEL_CHANGE.key && r.timestampMs === changeMs);
    assert.ok(at && row);
    assert.equal(at.count, row.value, 'the bucket holds the row value, fractions and all');
    assert.ok(!Number.isInteger(at.count));
    assert.ok(at.score >= cfg.scoreThreshold);
    assert.ok(Math.abs(at.baselineMean - 120) < 5, `baseline before the change is the old level (${at.baselineMean})`);
  });

  test('a series below zero is judged without error (direction both)', { skip: directionMissing() }, () => {
    const cfg = detector({ direction: 'both' });
    const rows: SeriesRow[] = [];
    for (let m = 0; m < 180; m++) rows.push({ timestampMs: FIXTURE_T0 + m * MINUTE_MS, key: 'balance', value: -50 + (m % 5) * 0.25 });
    const { series, stats } = backtestSeries(rows, cfg, { valueModel: 'gauge' });
    assert.equal(stats.rowsUsed, 180);
    assert.ok(series.every((o) => Number.isFinite(o.score) && Number.isFinite(o.baselineMean)));
    // A key watched for drops is judged in buckets without rows too: only the rows' buckets are checked here.
    const withRows = series.filter((o) => o.bucketStartMs >= FIXTURE_T0);
    assert.deepEqual(
      withRows.map((o) => o.count),
      rows.map((r) => r.value),
    );
  });
});

/** detector.direction is being added to the schema: a skip reason until it is there. */
function directionMissing(): string | false {
  try {
    detector({ direction: 'both' });
    return false;
  } catch {
    return 'detector.direction is not in the config schema yet';
  }
}
