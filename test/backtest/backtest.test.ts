import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { Backtest, backtestEvents, runBacktest, SERIES_HEADER, seriesLine } from '../../src/backtest/backtest.ts';
import { inputEvents } from '../../src/backtest/inputs.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { DetectorConfig } from '../../src/config/schema.ts';
import type { AuditEvent, Insight } from '../../src/contracts/types.ts';
import { Topology } from '../../src/detect/topology.ts';
import { ensureFixtures, SPIKE_JSONL, spikeEvents } from './fixtures.ts';

function detector(over: Partial<DetectorConfig> = {}): DetectorConfig {
  return loadConfig({ env: {}, overrides: { detector: over } }).detector;
}

const fixtureEvents = spikeEvents;

/** What a live consumer does: batches straight into the topology; here also the backtest's end-of-input rule. */
function directRun(events: AuditEvent[], cfg: DetectorConfig, batchSize = 500): Insight[] {
  const topology = new Topology(cfg, { partitions: 1, actionPartitions: 1 });
  const out: Insight[] = [];
  for (let i = 0; i < events.length; i += batchSize) out.push(...topology.process(events.slice(i, i + batchSize)));
  const last = Math.max(...events.map((e) => e.eventTimeMs));
  out.push(...topology.advanceWatermark(last + cfg.bucketMs));
  return out;
}

/** Insights of different keys come out of the two stages in an order that depends on batching: compare as sets. */
function byId(insights: Insight[]): Insight[] {
  return [...insights].sort((a, b) => (a.eventID < b.eventID ? -1 : a.eventID > b.eventID ? 1 : 0));
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

before(() => ensureFixtures());

describe('backtest reproduces live', () => {
  test('the JSONL fixture yields exactly the Insights a direct engine run yields', async () => {
    const cfg = detector();
    const events = fixtureEvents();
    const expected = directRun(events, cfg);
    const starts = expected.filter((i) => i.insightDetails.state === 'Start');
    assert.ok(starts.length >= 2, 'the fixture must contain Insights');
    assert.ok(
      starts.some((i) => i.insightDetails.insightType === 'ApiErrorRateInsight'),
      'and an error-rate Insight',
    );

    const insights: Insight[] = [];
    const stats = await runBacktest(inputEvents([SPIKE_JSONL], { format: 'jsonl' }), cfg, { onInsight: (i) => insights.push(i) });
    assert.deepEqual(insights, expected);
    assert.deepEqual(
      insights.map((i) => i.sharedEventID),
      expected.map((i) => i.sharedEventID),
    );
    assert.equal(stats.eventsIn, events.length);
    assert.equal(stats.starts, starts.length);
    assert.equal(stats.ends, expected.length - starts.length);
    assert.equal(stats.openAtEnd, 0);
  });

  test('batch size does not change the result on sorted input', () => {
    const cfg = detector();
    const events = fixtureEvents();
    const a = backtestEvents(events, cfg, { batchSize: 7 }).insights;
    const b = backtestEvents(events, cfg, { batchSize: 10_000, batchSpanMs: 10_000 }).insights;
    assert.deepEqual(byId(a), byId(directRun(events, cfg)));
    assert.deepEqual(byId(b), byId(a));
  });

  test('files overlapping in time are read whole and sorted; --presorted would lose events as late', async () => {
    const cfg = detector();
    const events = fixtureEvents();
    // Two deliveries, each in order, overlapping in time: as CloudTrail writes one per region.
    const dir = await mkdtemp(join(tmpdir(), 'tw-backtest-order-'));
    try {
      const files = [join(dir, 'a.jsonl'), join(dir, 'b.jsonl')];
      const isA = (e: AuditEvent): boolean => e.action === 'RunInstances' || e.action === 'TerminateInstances';
      await writeFile(
        files[0] as string,
        events
          .filter(isA)
          .map((e) => `${JSON.stringify(e)}\n`)
          .join(''),
      );
      await writeFile(
        files[1] as string,
        events
          .filter((e) => !isA(e))
          .map((e) => `${JSON.stringify(e)}\n`)
          .join(''),
      );
      const sorted = backtestEvents(await collect(inputEvents(files, { format: 'jsonl' })), cfg, { batchSize: 50 });
      assert.deepEqual(byId(sorted.insights), byId(directRun(events, cfg)));
      assert.equal(sorted.stats.lateEvents, 0);
      const streamed = backtestEvents(await collect(inputEvents(files, { format: 'jsonl', presorted: true })), cfg, { batchSize: 50 });
      assert.ok(streamed.stats.lateEvents > 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('open Insights are not forced closed; the last buckets are judged', () => {
    const cfg = detector();
    // Cut the fixture in the middle of the RunInstances spike (minute 62 for 4 minutes).
    const cut = Date.UTC(2026, 0, 5, 9, 4, 0);
    const events = fixtureEvents().filter((e) => e.eventTimeMs < cut);
    const { insights, stats } = backtestEvents(events, cfg);
    // With lateness 5 min, the spike's first bucket is only judged by the end-of-input advance.
    assert.ok(insights.some((i) => i.insightDetails.state === 'Start'));
    assert.ok(!insights.some((i) => i.insightDetails.state === 'End'));
    assert.equal(stats.openAtEnd, stats.starts);
    assert.ok(stats.starts > 0);
  });
});

describe('series', () => {
  test('one observation per judged bucket per key, with the baseline before the bucket', () => {
    const cfg = detector();
    const { series, insights } = backtestEvents(fixtureEvents(), cfg);
    if (series.length === 0) {
      assert.fail('no series: the engine does not expose the onBucket hook');
    }
    const start = insights.find((i) => i.insightDetails.state === 'Start' && i.trailwatch.scope === 'principalAction');
    assert.ok(start);
    const key = series.filter((o) => o.bucketStartMs === start.trailwatch.startTimeMs && o.score >= cfg.scoreThreshold);
    assert.ok(key.length > 0, 'the bucket that started an Insight is in the series with its score');
    for (const id of new Set(series.map((o) => o.keyId))) {
      const buckets = series.filter((o) => o.keyId === id).map((o) => o.bucketStartMs);
      assert.deepEqual(
        buckets,
        [...buckets].sort((a, b) => a - b),
        `${id}: in bucket order`,
      );
    }
    const o = series[0];
    assert.ok(o);
    assert.equal(SERIES_HEADER, 'timestamp,key,count,baseline,score,expected,rawScore,veto,direction,sustained');
    assert.match(
      seriesLine(o),
      /^2026-01-05T08:00:00\.000Z,[^,]+,\d+,[\d.]+,[\d.]+,[\d.]+,[\d.]+,(learning|minEvents|minRatio|burst)?,(up|down),(true|false)$/,
    );
    assert.equal(seriesLine({ ...o, keyId: 'a,"b"' }).split(',')[1], '"a');
  });
});

describe('Backtest', () => {
  test('push after finish is a bug', () => {
    const b = new Backtest(detector());
    b.finish();
    assert.throws(() => b.push(fixtureEvents()[0] as AuditEvent), /after finish/);
  });

  test('the watermark at emission comes with each Insight', () => {
    const cfg = detector();
    const seen: Array<{ insight: Insight; watermarkMs: number }> = [];
    backtestEvents(fixtureEvents(), cfg, { batchSpanMs: 10_000, onInsight: (insight, watermarkMs) => seen.push({ insight, watermarkMs }) });
    for (const { insight, watermarkMs } of seen) {
      const bucketEnd = insight.insightDetails.state === 'Start' ? insight.trailwatch.startTimeMs + cfg.bucketMs : 0;
      assert.ok(watermarkMs >= bucketEnd, 'a bucket is judged only once the watermark passes its end');
    }
    const first = seen[0];
    assert.ok(first);
    // 10 s batches: the Start comes out within 10 s of event time after its bucket closes.
    assert.ok(first.watermarkMs - (first.insight.trailwatch.startTimeMs + cfg.bucketMs) <= 10_000);
  });
});
