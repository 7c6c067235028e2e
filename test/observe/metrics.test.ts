import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createMetricsRegistry, exposedNames, type PartitionLag } from '../../src/observe/metrics.ts';
import type { DetectorView } from '../../src/runtime/detector.ts';
import { fakeTask, fakeView } from '../helpers/observe.ts';

const INFO = { version: '9.9.9', configHash: 'abc123', configVersion: '' };

function registryOver(state: { view: DetectorView | null; lags?: PartitionLag[] | null; ready?: boolean; nowMs?: number }) {
  return createMetricsRegistry(
    {
      view: () => state.view,
      lags: () => state.lags ?? null,
      ready: () => state.ready ?? false,
      now: () => state.nowMs ?? 0,
    },
    INFO,
  );
}

/** The value of one sample in Prometheus text, by its exact series (name and labels as printed). */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe('the metrics registry', () => {
  test('reads the runtime counters and task state when scraped', async () => {
    const view = fakeView({
      assignment: [
        { topic: 'ev', partition: 0, stage: 'principal' },
        { topic: 'ev', partition: 1, stage: 'principal' },
        { topic: 'ac', partition: 0, stage: 'action' },
      ],
      tasks: [
        fakeTask({ topic: 'ev', partition: 0, stage: 'principal', activeKeys: 40, openInsights: 2, watermarkMs: 100_000 }),
        fakeTask({ topic: 'ac', partition: 0, stage: 'action', activeKeys: 7, openInsights: 1, watermarkMs: 40_000 }),
      ],
    });
    view.metrics.eventsDecoded = 1234;
    view.metrics.deadLetters = { TW_DESERIALIZE: 3, TW_TIMESTAMP_OUT_OF_BOUNDS: 5 };
    view.metrics.insightsByType = { ApiCallRateInsight: { Start: 4, End: 3 } };
    view.metrics.findingsByKindActivity = { rule: { Create: 2 } };
    view.metrics.transactionsCommitted = 9;
    view.metrics.partitionsRestored = 2;
    view.metrics.changelogBytesWritten = 5000;
    view.work.principal.lateEvents = 11;
    view.work.principal.duplicates = 6;
    view.work.principal.keysEvicted = 1;
    view.work.action.keysExpired = 2;
    const { registry } = registryOver({
      view,
      lags: [{ topic: 'ev', partition: 1, stage: 'principal', lag: 250 }],
      ready: true,
      nowMs: 160_000,
    });
    const text = await registry.metrics();
    assert.equal(sample(text, 'trailwatch_events_in_total'), 1234);
    assert.equal(sample(text, 'trailwatch_events_late_total{stage="principal"}'), 11);
    assert.equal(sample(text, 'trailwatch_events_late_total{stage="action"}'), 0);
    assert.equal(sample(text, 'trailwatch_events_duplicate_total'), 6);
    assert.equal(sample(text, 'trailwatch_dead_letters_total{code="TW_TIMESTAMP_OUT_OF_BOUNDS"}'), 5);
    assert.equal(sample(text, 'trailwatch_insights_total{type="ApiCallRateInsight",state="End"}'), 3);
    assert.equal(sample(text, 'trailwatch_findings_total{type="rule",state="Create"}'), 2);
    assert.equal(sample(text, 'trailwatch_insights_open{stage="principal"}'), 2);
    assert.equal(sample(text, 'trailwatch_insights_open{stage="action"}'), 1);
    assert.equal(sample(text, 'trailwatch_keys_active{stage="principal"}'), 40);
    assert.equal(sample(text, 'trailwatch_keys_evicted_total{stage="principal",reason="capacity"}'), 1);
    assert.equal(sample(text, 'trailwatch_keys_evicted_total{stage="action",reason="idle"}'), 2);
    assert.equal(sample(text, 'trailwatch_partitions_assigned{stage="principal"}'), 2);
    assert.equal(sample(text, 'trailwatch_partitions_restored{stage="principal"}'), 1);
    assert.equal(sample(text, 'trailwatch_consumer_lag_records{topic="ev",partition="1"}'), 250);
    assert.equal(sample(text, 'trailwatch_watermark_delay_seconds{stage="principal",partition="0"}'), 60);
    assert.equal(sample(text, 'trailwatch_watermark_delay_seconds{stage="action",partition="0"}'), 120);
    assert.equal(sample(text, 'trailwatch_transactions_total{outcome="committed"}'), 9);
    assert.equal(sample(text, 'trailwatch_restores_total'), 2);
    assert.equal(sample(text, 'trailwatch_changelog_written_bytes_total'), 5000);
    assert.equal(sample(text, 'trailwatch_ready'), 1);
    assert.equal(sample(text, 'trailwatch_build_info{version="9.9.9",config_hash="abc123",config_version=""}'), 1);
  });

  test('a counter never goes down: work dropped with an uncommitted batch and done again is counted once', async () => {
    const view = fakeView();
    const { registry } = registryOver({ view });
    view.work.principal.lateEvents = 10;
    assert.equal(sample(await registry.metrics(), 'trailwatch_events_late_total{stage="principal"}'), 10);
    view.work.principal.lateEvents = 7; // the failed batch's 3 are dropped
    assert.equal(sample(await registry.metrics(), 'trailwatch_events_late_total{stage="principal"}'), 10);
    view.work.principal.lateEvents = 12; // done again, and 2 more
    assert.equal(sample(await registry.metrics(), 'trailwatch_events_late_total{stage="principal"}'), 12);
  });

  test('before the runtime is attached: unlabelled counters at 0, no labelled series, not ready', async () => {
    const { registry } = registryOver({ view: null });
    const text = await registry.metrics();
    assert.equal(sample(text, 'trailwatch_events_in_total'), 0);
    assert.equal(sample(text, 'trailwatch_ready'), 0);
    assert.doesNotMatch(text, /^trailwatch_keys_active\{/m);
  });

  test('the hooks feed the duration histograms', async () => {
    const { registry, hooks } = registryOver({ view: fakeView() });
    hooks.batch('principal', 0.02);
    hooks.batch('principal', 3);
    hooks.transaction('action', 0.04);
    hooks.restored('principal', 12);
    const text = await registry.metrics();
    assert.equal(sample(text, 'trailwatch_batch_duration_seconds_count{stage="principal"}'), 2);
    assert.equal(sample(text, 'trailwatch_batch_duration_seconds_bucket{le="0.025",stage="principal"}'), 1);
    assert.equal(sample(text, 'trailwatch_transaction_duration_seconds_sum{stage="action"}'), 0.04);
    assert.equal(sample(text, 'trailwatch_restore_duration_seconds_bucket{le="30",stage="principal"}'), 1);
  });

  test('names follow Prometheus conventions; process metrics are there too', async () => {
    const { registry } = registryOver({ view: fakeView() });
    const metrics = await registry.getMetricsAsJSON();
    const own = metrics.filter((m) => m.name.startsWith('trailwatch_'));
    assert.ok(own.length >= 20, `${own.length} trailwatch metrics`);
    for (const m of own) {
      if (String(m.type) === 'counter') assert.match(m.name, /_total$/, `counter ${m.name}`);
      else assert.doesNotMatch(m.name, /_total$/, `${m.type} ${m.name}`);
      if (String(m.type) === 'histogram') assert.match(m.name, /_seconds$/, `histogram ${m.name}`);
      assert.doesNotMatch(m.name, /_(ms|milliseconds|kb|mb)\b/, `${m.name} in base units`);
      assert.ok(m.help.length > 10, `${m.name} has help`);
    }
    const names = exposedNames(registry);
    assert.ok(names.has('process_cpu_seconds_total'));
    assert.ok(names.has('process_resident_memory_bytes'));
    assert.ok(names.has('trailwatch_batch_duration_seconds_bucket'));
  });
});
