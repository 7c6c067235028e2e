import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { DetectorConfig } from '../../src/config/schema.ts';
import type { AuditEvent, Insight } from '../../src/contracts/types.ts';
import { DEMO_SPIKE_ACTOR, generateTraffic } from '../../src/demo/traffic.ts';
import { DetectionEngine } from '../../src/detect/engine.ts';

const T0 = Date.UTC(2026, 0, 5, 0, 0, 0);

function detector(over: Partial<DetectorConfig> = {}): DetectorConfig {
  return loadConfig({ env: {}, overrides: { detector: { allowedLatenessMs: 60_000, minHistoryMs: 30 * 60_000, ...over } } }).detector;
}

function ev(minute: number, i: number, over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    eventId: `m${minute}-${i}-${over.principal ?? 'alice'}-${over.errorCode ?? ''}`,
    eventTimeMs: T0 + minute * 60_000 + i * 10,
    source: 'aws.cloudtrail',
    accountId: '111122223333',
    region: 'us-east-1',
    principal: 'arn:aws:iam::111122223333:user/alice',
    principalType: 'IAMUser',
    service: 'ec2.amazonaws.com',
    action: 'RunInstances',
    readOnly: false,
    errorCode: null,
    sourceIp: null,
    userAgent: 'aws-cli/2',
    attributes: {},
    ...over,
  };
}

/** Steady 2 calls a minute, then `spike` calls a minute for `spikeMinutes` from minute 90. */
function steadyWithSpike(minutes: number, spike = 40, spikeMinutes = 4, over: Partial<AuditEvent> = {}): AuditEvent[][] {
  const batches: AuditEvent[][] = [];
  for (let m = 0; m < minutes; m++) {
    const n = m >= 90 && m < 90 + spikeMinutes ? spike : 2;
    batches.push(Array.from({ length: n }, (_, i) => ev(m, i, over)));
  }
  return batches;
}

function runAll(engine: DetectionEngine, batches: AuditEvent[][]): Insight[] {
  return batches.flatMap((b) => engine.process(b));
}

describe('DetectionEngine', () => {
  test('a spike yields one Start and one End per scope, sharing a sharedEventID', () => {
    const out = runAll(new DetectionEngine(detector()), steadyWithSpike(130));
    const byScope = (scope: string) => out.filter((i) => i.trailwatch.scope === scope);
    for (const scope of ['action', 'principalAction']) {
      const ins = byScope(scope);
      assert.deepEqual(
        ins.map((i) => i.insightDetails.state),
        ['Start', 'End'],
        scope,
      );
      const [start, end] = ins as [Insight, Insight];
      assert.equal(start.sharedEventID, end.sharedEventID);
      assert.notEqual(start.eventID, end.eventID);
      assert.equal(start.eventTime, new Date(T0 + 90 * 60_000).toISOString().replace('.000Z', 'Z'));
      assert.equal(end.eventTime, new Date(T0 + 94 * 60_000).toISOString().replace('.000Z', 'Z'));
      assert.equal(end.insightDetails.insightContext.statistics.insightDuration, 4);
      assert.equal(start.insightDetails.insightContext.statistics.insightDuration, null);
      assert.equal(end.insightDetails.insightContext.statistics.insight.average, 40);
      assert.ok(Math.abs(start.insightDetails.insightContext.statistics.baseline.average - 2) < 0.01);
      assert.equal(start.insightDetails.insightType, 'ApiCallRateInsight');
      assert.equal(start.eventType, 'AwsCloudTrailInsight');
      assert.equal(start.eventCategory, 'Insight');
    }
    assert.equal(byScope('principalAction')[0]?.trailwatch.principal, 'arn:aws:iam::111122223333:user/alice');
    assert.equal(byScope('action')[0]?.trailwatch.principal, null);
  });

  test('the same input always yields the same ids', () => {
    const a = runAll(new DetectionEngine(detector()), steadyWithSpike(130));
    const b = runAll(new DetectionEngine(detector()), steadyWithSpike(130));
    assert.deepEqual(a, b);
    assert.ok(a.length > 0);
  });

  test('no Insight before the minimum history', () => {
    // The spike comes at minute 90; with 2 hours of history required, the key is still learning.
    const out = runAll(new DetectionEngine(detector({ minHistoryMs: 2 * 3_600_000 })), steadyWithSpike(130));
    assert.deepEqual(out, []);
  });

  test('floors: a doubling of a busy key is not an Insight', () => {
    const out = runAll(new DetectionEngine(detector()), steadyWithSpike(130, 4));
    assert.deepEqual(out, []);
  });

  test('reads are not call-rate signals unless configured', () => {
    const reads = steadyWithSpike(130, 40, 4, { readOnly: true });
    assert.deepEqual(runAll(new DetectionEngine(detector()), reads), []);
    assert.ok(runAll(new DetectionEngine(detector({ includeReadOnly: true })), reads).length > 0);
  });

  test('an error storm yields an ApiErrorRateInsight carrying the error code', () => {
    const batches = steadyWithSpike(130);
    for (let m = 90; m < 93; m++) batches[m]?.push(...Array.from({ length: 30 }, (_, i) => ev(m, 100 + i, { errorCode: 'AccessDenied' })));
    for (let m = 0; m < 90; m += 20) batches[m]?.push(ev(m, 99, { errorCode: 'AccessDenied' }));
    const out = runAll(new DetectionEngine(detector()), batches).filter((i) => i.insightDetails.insightType === 'ApiErrorRateInsight');
    assert.ok(out.length >= 2);
    const start = out.find((i) => i.insightDetails.state === 'Start' && i.trailwatch.scope === 'action');
    assert.equal(start?.insightDetails.errorCode, 'AccessDenied');
    assert.ok(!start?.insightDetails.insightContext.attributions.some((a) => a.attribute === 'errorCode'));
  });

  test('the spike does not teach the baseline that spikes are normal', () => {
    const engine = new DetectionEngine(detector());
    runAll(engine, steadyWithSpike(130, 40, 10));
    const view = engine.keyView('action|call|111122223333|us-east-1|ec2.amazonaws.com|RunInstances');
    assert.ok(view && view.baselinePerMinute < 4, `baseline ${view?.baselinePerMinute}`);
  });

  test('duplicates are counted once; late events are counted, not folded in', () => {
    const engine = new DetectionEngine(detector());
    const batches = steadyWithSpike(100);
    runAll(engine, batches);
    const before = engine.metrics.eventsProcessed;
    engine.process(batches[99] ?? []);
    assert.equal(engine.metrics.duplicates, batches[99]?.length);
    engine.process([ev(10, 500)]);
    assert.equal(engine.metrics.lateEvents, 1);
    assert.equal(engine.metrics.eventsProcessed, before);
  });

  test('an idle source still gets its End once the watermark is advanced', () => {
    const engine = new DetectionEngine(detector());
    const batches = steadyWithSpike(94);
    const out = runAll(engine, batches);
    assert.deepEqual(
      out.map((i) => i.insightDetails.state),
      ['Start', 'Start'],
    );
    const more = engine.advanceWatermark(T0 + 120 * 60_000);
    assert.deepEqual(
      more.map((i) => i.insightDetails.state),
      ['End', 'End'],
    );
  });

  test('maxDuration closes a runaway Insight', () => {
    const out = runAll(new DetectionEngine(detector({ maxDurationMs: 5 * 60_000 })), steadyWithSpike(130, 60, 20));
    const action = out.filter((i) => i.trailwatch.scope === 'action');
    assert.equal(action[0]?.insightDetails.state, 'Start');
    assert.equal(action[1]?.insightDetails.state, 'End');
    assert.equal(action[1]?.insightDetails.insightContext.statistics.insightDuration, 5);
  });

  test('startAfterBuckets: a one-bucket blip does not start an Insight when k = 2', () => {
    assert.deepEqual(runAll(new DetectionEngine(detector({ startAfterBuckets: 2 })), steadyWithSpike(130, 40, 1)), []);
    const out = runAll(new DetectionEngine(detector({ startAfterBuckets: 2 })), steadyWithSpike(130, 40, 3));
    assert.equal(out[0]?.eventTime, new Date(T0 + 90 * 60_000).toISOString().replace('.000Z', 'Z'));
  });

  test('the key cap evicts the least recently active key', () => {
    const engine = new DetectionEngine(detector({ maxKeys: 3, scopes: { action: false, principalAction: true } }));
    for (const p of ['a', 'b', 'c', 'd']) engine.process([ev(0, 0, { principal: p, eventId: p })]);
    assert.equal(engine.activeKeys, 3);
    assert.equal(engine.metrics.keysEvicted, 1);
    assert.ok(!engine.keyIds().some((k) => k.includes('|a|')));
  });

  test('attributions: top contributors with insight and baseline averages', () => {
    const batches = steadyWithSpike(130);
    for (let m = 90; m < 94; m++)
      batches[m]?.push(...Array.from({ length: 30 }, (_, i) => ev(m, 200 + i, { principal: 'mallory', userAgent: 'curl' })));
    const out = runAll(new DetectionEngine(detector({ topN: 1 })), batches);
    const start = out.find((i) => i.trailwatch.scope === 'action' && i.insightDetails.state === 'Start');
    const arn = start?.insightDetails.insightContext.attributions.find((a) => a.attribute === 'userIdentityArn');
    assert.deepEqual(arn?.insight, [{ value: 'arn:aws:iam::111122223333:user/alice', average: 40 }]);
    assert.equal(arn?.baseline[0]?.value, 'arn:aws:iam::111122223333:user/alice');
    const errs = start?.insightDetails.insightContext.attributions.find((a) => a.attribute === 'errorCode');
    assert.deepEqual(errs?.insight, [{ value: 'null', average: 70 }]);
  });
});

describe('habits over days', () => {
  const DAY_MIN = 1_440;
  const WAVE = [2, 3, 4, 3, 2, 4, 3, 3];
  /** `days` of a steady key (2–4 calls a minute), with `extra(day, minuteOfDay)` calls added. */
  function days(n: number, extra: (day: number, minute: number) => number): AuditEvent[][] {
    const batches: AuditEvent[][] = [];
    for (let m = 0; m < n * DAY_MIN; m++) {
      const count = (WAVE[m % WAVE.length] as number) + extra(Math.floor(m / DAY_MIN), m % DAY_MIN);
      batches.push(Array.from({ length: count }, (_, i) => ev(m, i)));
    }
    return batches;
  }
  const cfg = detector({ scopes: { action: false, principalAction: true } });
  const startDays = (out: Insight[]) =>
    out.filter((i) => i.insightDetails.state === 'Start').map((i) => Math.floor((i.trailwatch.startTimeMs - T0) / 86_400_000));

  test('a nightly job is reported the first night and recognised as a habit after', () => {
    // From day 2, past the cold start (whose bursts are remembered, not reported).
    const out = runAll(
      new DetectionEngine(cfg),
      days(6, (day, minute) => (day >= 2 && minute >= 120 && minute < 150 ? 30 : 0)),
    );
    assert.deepEqual(startDays(out), [2]);
  });

  test('cold start: a burst in the first two days is remembered, not reported, and is a habit after', () => {
    const out = runAll(
      new DetectionEngine(cfg),
      days(4, (_, minute) => (minute >= 120 && minute < 150 ? 12 : 0)),
    );
    assert.deepEqual(startDays(out), []);
  });

  // T0 is a Monday: day 4 is a Friday, days 5 and 6 the weekend, day 7 the next Monday.
  /** A deployment-like burst of `calls` a minute for ten minutes from `hour` on `day`. */
  const burst = (day: number, hour: number, calls: number) => (d: number, minute: number) =>
    d === day && minute >= hour * 60 && minute < hour * 60 + 10 ? calls : 0;
  const all =
    (...parts: Array<(d: number, minute: number) => number>) =>
    (d: number, minute: number) =>
      parts.reduce((sum, part) => sum + part(d, minute), 0);

  test('the burst memory does not fade over the weekend', () => {
    // Remembered in the cold start (Monday); a somewhat bigger burst the next Monday is still
    // within the key's habit, while the Wednesday after, a week of working days on, it stands out.
    const monday = runAll(new DetectionEngine(cfg), days(8, all(burst(0, 10, 20), burst(7, 10, 24))));
    assert.deepEqual(startDays(monday), []);
    const wednesday = runAll(new DetectionEngine(cfg), days(10, all(burst(0, 10, 20), burst(9, 10, 24))));
    assert.deepEqual(startDays(wednesday), [9]);
  });

  test('a near miss that recurs within a week is a habit, on days far apart and at any time', () => {
    const deployments = [burst(0, 10, 20), burst(2, 9, 26), burst(4, 15, 26)];
    const out = runAll(new DetectionEngine(cfg), days(8, all(...deployments, burst(7, 11, 45))));
    assert.deepEqual(startDays(out), []);
    // Without the recurrence the Monday burst stands out.
    const once = runAll(new DetectionEngine(cfg), days(8, all(burst(0, 10, 20), burst(2, 9, 26), burst(7, 11, 45))));
    assert.deepEqual(startDays(once), [7]);
  });

  test('a slow ramp cannot teach the burst memory while it climbs', () => {
    const ramp = (day: number, minute: number) =>
      day === 3 && minute >= 600 && minute < 720 ? Math.floor((21 * (minute - 600 + 1)) / 120) : 0;
    const out = runAll(new DetectionEngine(cfg), days(4, ramp));
    assert.deepEqual(startDays(out), [3]);
  });

  test('the hourly profile: office hours are expected, and a night burst like a working hour stands out', () => {
    const office = (day: number, minute: number) =>
      (minute >= 9 * 60 && minute < 17 * 60 ? 12 : 0) + (day === 3 && minute >= 120 && minute < 130 ? 16 : 0);
    // Burst memory off: it is one level for the whole day and would hide the night burst.
    const seasonal = runAll(new DetectionEngine({ ...cfg, burstMargin: 0 }), days(4, office));
    const nightStart = T0 + (3 * DAY_MIN + 120) * 60_000;
    assert.ok(seasonal.some((i) => i.trailwatch.startTimeMs === nightStart));
    assert.ok(
      startDays(seasonal).every((d) => d < 2 || d === 3),
      `Starts on days ${startDays(seasonal)}`,
    );
    // Against the plain daily mean, the office hours' variance hides the same burst.
    const flat = runAll(new DetectionEngine({ ...cfg, burstMargin: 0, seasonality: 'none' }), days(4, office));
    assert.ok(!flat.some((i) => i.trailwatch.startTimeMs === nightStart));
  });

  test('the burst memory and the hourly profile survive a checkpoint', () => {
    const nightly = (_: number, minute: number) => (minute >= 120 && minute < 150 ? 30 : 0);
    const batches = days(4, nightly);
    const engine = new DetectionEngine(cfg);
    const cut = 2 * DAY_MIN + 600;
    const out = runAll(engine, batches.slice(0, cut));
    const restored = DetectionEngine.restore(cfg, JSON.parse(JSON.stringify(engine.snapshot())));
    out.push(...runAll(restored, batches.slice(cut)));
    assert.deepEqual(out, runAll(new DetectionEngine(cfg), batches));
  });
});

describe('golden replay', () => {
  const goldenFile = join(import.meta.dirname, '../fixtures/golden/engine-demo-insights.json');
  const input = generateTraffic({
    seed: 42,
    startMs: T0,
    minutes: 240,
    spikes: [
      { actor: DEMO_SPIKE_ACTOR, startMinute: 150, minutes: 6 },
      {
        actor: { ...DEMO_SPIKE_ACTOR, action: 'TerminateInstances', errorCode: 'UnauthorizedOperation', ratePerMinute: 25 },
        startMinute: 200,
        minutes: 3,
      },
    ],
  });
  const batches: AuditEvent[][] = [];
  for (let i = 0; i < input.length; i += 37) batches.push(input.slice(i, i + 37));
  const cfg = detector();

  test('fixed input, committed Insights', () => {
    const out = [...runAll(new DetectionEngine(cfg), batches), ...new DetectionEngine(cfg).advanceWatermark(0)];
    if (process.env.UPDATE_GOLDEN === '1' || !existsSync(goldenFile)) writeFileSync(goldenFile, `${JSON.stringify(out, null, 1)}\n`);
    const golden = JSON.parse(readFileSync(goldenFile, 'utf8')) as Insight[];
    assert.ok(golden.length >= 4, 'the golden run must contain Insights');
    assert.deepEqual(out, golden);
  });

  test('a checkpoint/restore in the middle gives the same Insights', () => {
    const golden = JSON.parse(readFileSync(goldenFile, 'utf8')) as Insight[];
    const half = Math.floor(batches.length / 2);
    const first = new DetectionEngine(cfg);
    const out = runAll(first, batches.slice(0, half));
    // Through JSON, as a changelog topic would carry it.
    const restored = DetectionEngine.restore(cfg, JSON.parse(JSON.stringify(first.snapshot())));
    out.push(...runAll(restored, batches.slice(half)));
    assert.deepEqual(out, golden);
  });
});
