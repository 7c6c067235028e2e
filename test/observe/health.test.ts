import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { health, partitionStates, type ReadinessOptions, readiness } from '../../src/observe/health.ts';
import type { PartitionLag } from '../../src/observe/metrics.ts';
import { fakeTask, fakeView } from '../helpers/observe.ts';

const OPTS: ReadinessOptions = { maxLagRecords: 100, measuredAtMs: 1_000, nowMs: 2_000, maxMeasurementAgeMs: 15_000 };
const ASSIGNED = [
  { topic: 'ev', partition: 0, stage: 'principal' as const },
  { topic: 'ev', partition: 1, stage: 'principal' as const },
  { topic: 'ac', partition: 0, stage: 'action' as const },
];
const lags = (l0: number, l1: number, a0: number): PartitionLag[] => [
  { topic: 'ev', partition: 0, stage: 'principal', lag: l0 },
  { topic: 'ev', partition: 1, stage: 'principal', lag: l1 },
  { topic: 'ac', partition: 0, stage: 'action', lag: a0 },
];

describe('readiness', () => {
  test('ready: assigned, restored or with nothing to read, caught up within the bound', () => {
    const view = fakeView({ assignment: ASSIGNED, tasks: [fakeTask({ topic: 'ev', partition: 0, stage: 'principal', activeKeys: 3 })] });
    // ev:1 and ac:0 have no task yet but nothing to read: a partition is restored at its first record.
    const states = partitionStates(view, lags(100, 0, 0));
    assert.deepEqual(readiness(view, states, OPTS), { ok: true, reasons: [] });
    assert.equal(states[0]?.keys, 3);
    assert.deepEqual(
      states.map((s) => `${s.stage}:${s.partition}`),
      ['principal:0', 'principal:1', 'action:0'],
    );
  });

  test('not ready, with each reason', () => {
    const view = fakeView({
      assignment: ASSIGNED,
      tasks: [fakeTask({ topic: 'ev', partition: 0, stage: 'principal' })],
      failing: [{ id: 'ac:0', attempts: 2, code: 'TW_KAFKA', sinceMs: 0 }],
    });
    const r = readiness(view, partitionStates(view, lags(101, 5, 0)), OPTS);
    assert.equal(r.ok, false);
    assert.deepEqual(r.reasons, [
      'ac:0: batches failing (attempt 2, TW_KAFKA)',
      'ev:0: 101 records behind (observe.readyMaxLagRecords = 100)',
      'ev:1: state not restored yet (5 records to read)',
    ]);
  });

  test('not ready while starting, stopping, unassigned, unmeasured, or measured long ago', () => {
    const reason = (v: ReturnType<typeof fakeView>, o = OPTS, l: PartitionLag[] | null = lags(0, 0, 0)) =>
      readiness(v, partitionStates(v, l), o).reasons.join('; ');
    assert.match(reason(fakeView({ started: false, assignment: ASSIGNED })), /^starting/);
    assert.match(readiness(null, [], OPTS).reasons[0] ?? '', /^starting/);
    assert.equal(reason(fakeView({ stopping: true, assignment: ASSIGNED })), 'stopping');
    assert.match(reason(fakeView()), /no partitions assigned/);
    assert.match(reason(fakeView({ assignment: ASSIGNED }), { ...OPTS, measuredAtMs: null }, null), /not measured yet/);
    assert.match(reason(fakeView({ assignment: ASSIGNED }), { ...OPTS, nowMs: 60_000 }), /last measured 59000 ms ago/);
  });
});

describe('health', () => {
  test('healthy unless the runtime gave up or one piece of work outlived detector.stallTimeoutMs', () => {
    assert.equal(health(null, 1_000).ok, true);
    assert.equal(health(fakeView({ started: false }), 1_000).ok, true);
    assert.equal(health(fakeView({ busyMs: 999 }), 1_000).ok, true);
    assert.match(health(fakeView({ busyMs: 1_001 }), 1_000).reasons[0] ?? '', /stallTimeoutMs/);
    assert.match(health(fakeView({ fatal: true }), 1_000).reasons[0] ?? '', /gave up/);
  });
});
