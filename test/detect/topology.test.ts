import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { AuditEvent, Insight } from '../../src/contracts/types.ts';
import { DetectionEngine } from '../../src/detect/engine.ts';
import { ActionStage, PrincipalStage, partitionFor, Topology } from '../../src/detect/topology.ts';
import { ensureFixtures, spikeEvents } from '../backtest/fixtures.ts';

const cfg = loadConfig({ env: {} }).detector;

const fixtureEvents = spikeEvents;

function byId(insights: Insight[]): Insight[] {
  return [...insights].sort((a, b) => (a.eventID < b.eventID ? -1 : a.eventID > b.eventID ? 1 : 0));
}

function runTopology(events: AuditEvent[], partitions: number, actionPartitions: number, batch = 97): Insight[] {
  const t = new Topology(cfg, { partitions, actionPartitions });
  const out: Insight[] = [];
  for (let i = 0; i < events.length; i += batch) out.push(...t.process(events.slice(i, i + batch)));
  out.push(...t.advanceWatermark(Math.max(...events.map((e) => e.eventTimeMs)) + cfg.bucketMs));
  return out;
}

before(() => ensureFixtures());

describe('Topology', () => {
  test('one partition per stage gives exactly what one engine over everything gives', () => {
    const events = fixtureEvents();
    const engine = new DetectionEngine(cfg);
    const single = [...engine.process(events), ...engine.advanceWatermark(Math.max(...events.map((e) => e.eventTimeMs)) + cfg.bucketMs)];
    assert.ok(single.some((i) => i.trailwatch.scope === 'action'));
    assert.ok(single.some((i) => i.trailwatch.scope === 'principalAction'));
    assert.deepEqual(byId(runTopology(events, 1, 1)), byId(single));
  });

  test('per-action Insights do not depend on how the stages are partitioned', () => {
    const events = fixtureEvents();
    const action = (list: Insight[]) => byId(list.filter((i) => i.trailwatch.scope === 'action'));
    const one = action(runTopology(events, 1, 1));
    assert.ok(one.length > 0);
    for (const [p, q] of [
      [3, 3],
      [7, 2],
      [2, 5],
    ] as const) {
      assert.deepEqual(action(runTopology(events, p, q, 31)), one, `${p}×${q} partitions`);
    }
  });

  test('partitionFor matches the murmur2 partitioner of the Java client', () => {
    // Reference values printed by the Java client (kafka-clients 4.1.2):
    // Utils.toPositive(Utils.murmur2(key.getBytes(UTF_8))) % n
    const cases: Array<[string, number, number]> = [
      ['123456789012|arn:aws:iam::123456789012:user/alice', 0, 1],
      ['123456789012|arn:aws:sts::123456789012:assumed-role/deploy-pipeline', 0, 6],
      ['action|call|123456789012|us-east-1|ec2.amazonaws.com|RunInstances', 1, 2],
    ];
    for (const [key, of3, of7] of cases) {
      assert.equal(partitionFor(key, 3), of3, key);
      assert.equal(partitionFor(key, 7), of7, key);
    }
  });

  test('the action stage holds time back until every upstream partition has spoken, except idle ones', () => {
    const stage = ActionStage.create(cfg, 0, 2);
    assert.equal(stage.watermark(), null);
    stage.ingest([{ kind: 'marker', marker: { source: 0, watermarkMs: 600_000, idle: false, accountStarts: [] } }]);
    assert.equal(stage.watermark(), null, 'partition 1 has said nothing yet');
    stage.ingest([{ kind: 'marker', marker: { source: 1, watermarkMs: 300_000, idle: false, accountStarts: [] } }]);
    assert.equal(stage.watermark(), 300_000, 'the slowest');
    stage.ingest([{ kind: 'marker', marker: { source: 1, watermarkMs: 300_000, idle: true, accountStarts: [] } }]);
    assert.equal(stage.watermark(), 600_000, 'an idle partition does not hold time back');
    stage.ingest([{ kind: 'marker', marker: { source: 0, watermarkMs: 600_000, idle: true, accountStarts: [] } }]);
    assert.equal(stage.watermark(), 600_000, 'all idle: the most advanced');
  });

  test('a principal stage forwards per-action counts once its watermark closes their bucket', () => {
    const stage = PrincipalStage.create(cfg, 0);
    const t0 = Date.UTC(2026, 0, 5, 8, 0, 0);
    const ev = (i: number, ms: number): AuditEvent => ({
      ...(fixtureEvents()[0] as AuditEvent),
      action: 'CreateRole',
      readOnly: false,
      eventId: `e${i}`,
      eventTimeMs: ms,
    });
    const first = stage.process([ev(1, t0), ev(2, t0 + 1_000)]);
    assert.deepEqual(first.partials, [], 'the bucket is still open');
    assert.equal(first.marker.watermarkMs, t0 + 1_000 - cfg.allowedLatenessMs);
    assert.equal(first.marker.accountStarts.length, 1);
    const later = stage.process([ev(3, t0 + cfg.allowedLatenessMs + 2 * cfg.bucketMs)]);
    const counts = later.partials.filter((p) => p.bucketStartMs === t0).map((p) => p.count);
    assert.ok(counts.length > 0 && counts.every((c) => c === 2), `partials ${JSON.stringify(counts)}`);
    assert.deepEqual(later.marker.accountStarts, [], 'an account is announced once');
  });
});

describe('incremental checkpoints', () => {
  test('an engine rebuilt from drained changes continues exactly as the original', () => {
    const events = fixtureEvents();
    const half = Math.floor(events.length / 2);
    const last = Math.max(...events.map((e) => e.eventTimeMs)) + cfg.bucketMs;

    const reference = new DetectionEngine(cfg);
    const expected = [
      ...reference.process(events.slice(0, half)),
      ...reference.process(events.slice(half)),
      ...reference.advanceWatermark(last),
    ];

    const tracked = new DetectionEngine(cfg, { trackChanges: true });
    const log = new Map<string, string>();
    const seen: Array<[string, number]> = [];
    let meta = null;
    const before: Insight[] = [];
    // Drain after every small batch, as the runtime does with every transaction.
    for (let i = 0; i < half; i += 50) {
      before.push(...tracked.process(events.slice(i, Math.min(half, i + 50))));
      const changes = tracked.drainChanges();
      meta = changes.meta;
      for (const [id, encoded] of changes.keys) {
        if (encoded === null) log.delete(id);
        else log.set(id, encoded);
      }
      seen.push(...changes.seen);
    }
    const restored = DetectionEngine.fromCheckpoint(cfg, meta, log.values(), seen);
    const after = [...restored.process(events.slice(half)), ...restored.advanceWatermark(last)];
    assert.deepEqual([...before, ...after], expected);
  });

  test('fromCheckpoint keeps only dedupe entries inside the horizon', () => {
    const engine = DetectionEngine.fromCheckpoint(
      cfg,
      {
        version: 1,
        maxEventTimeMs: 10 * 60_000,
        watermarkMs: 5 * 60_000,
        closedThroughMs: 5 * 60_000,
        streamStartMs: [],
        metrics: new DetectionEngine(cfg).metrics,
      },
      [],
      [
        ['old', 60_000],
        ['recent', 5 * 60_000],
      ],
    );
    const e = fixtureEvents()[0] as AuditEvent;
    engine.process([{ ...e, eventId: 'recent', eventTimeMs: 5 * 60_000 }]);
    assert.equal(engine.metrics.duplicates, 1);
  });
});
