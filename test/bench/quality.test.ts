/**
 * The quality harness's machinery, on a small run (60 principals, 10 days): deterministic
 * traffic, anomalies really injected, scoring by the documented definitions. Not the targets:
 * those are for `npm run bench:quality`.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { actionName, buildPopulation, DAY_MS, DEFAULT_START_MS, MINUTE_MS, TrafficGenerator } from '../../bench/quality/generator.ts';
import {
  checkTargets,
  HARNESS_OVERRIDES,
  loadTargets,
  matches,
  runQuality,
  SECTION_END,
  SECTION_START,
  type StartRecord,
  scoreRun,
  writeBenchmarksSection,
} from '../../bench/quality/harness.ts';
import { ANOMALY_KINDS, type AnomalyLabel, planScenarios } from '../../bench/quality/scenarios.ts';
import { loadConfig } from '../../src/config/load.ts';

const SMALL = { principals: 60, days: 10, instancesPerKind: 2 };

function plan(seed: number) {
  const population = buildPopulation({ seed, principals: SMALL.principals, days: SMALL.days });
  const scenarios = planScenarios({ population, seed, instancesPerKind: SMALL.instancesPerKind });
  return { population, scenarios, traffic: new TrafficGenerator({ population, injections: scenarios.map((s) => s.injection) }) };
}

function digest(seed: number): { hash: string; events: number } {
  const hash = createHash('sha256');
  let events = 0;
  for (const e of plan(seed).traffic.events()) {
    hash.update(`${e.eventId}|${e.eventTimeMs}|${e.principal}|${e.action}|${e.errorCode}\n`);
    events++;
  }
  return { hash: hash.digest('hex'), events };
}

describe('generator', () => {
  test('deterministic for a seed, different for another', () => {
    const a = digest(3);
    assert.deepEqual(digest(3), a);
    assert.notEqual(digest(4).hash, a.hash);
    assert.ok(a.events > 100_000, `${a.events} events`);
  });

  test('in event-time order, with humans quiet at weekends and batch jobs at their hour', () => {
    const { population, traffic } = plan(5);
    const human = new Map(population.profiles.filter((p) => p.kind === 'human').map((p) => [p.principal, p]));
    const batch = new Map(population.profiles.filter((p) => p.kind === 'batch').map((p) => [p.principal, p]));
    let last = Number.NEGATIVE_INFINITY;
    const humanByDay = Array.from({ length: SMALL.days }, () => 0);
    let batchOutside = 0;
    for (const e of traffic.events()) {
      assert.ok(e.eventTimeMs >= last, 'sorted');
      last = e.eventTimeMs;
      const day = Math.floor((e.eventTimeMs - DEFAULT_START_MS) / DAY_MS);
      if (human.has(e.principal)) humanByDay[day] = (humanByDay[day] ?? 0) + 1;
      const b = batch.get(e.principal);
      if (b) {
        const minuteOfDay = Math.floor(((e.eventTimeMs - DEFAULT_START_MS) % DAY_MS) / MINUTE_MS);
        if (minuteOfDay < b.batchStartMinute || minuteOfDay >= b.batchStartMinute + b.batchMinutes) batchOutside++;
      }
    }
    // Day 0 is a Monday: days 5 and 6 are the weekend.
    const weekday = ((humanByDay[1] ?? 0) + (humanByDay[2] ?? 0)) / 2;
    const weekend = ((humanByDay[5] ?? 0) + (humanByDay[6] ?? 0)) / 2;
    assert.ok(weekend < weekday / 3, `weekend ${weekend} vs weekday ${weekday}`);
    assert.equal(batchOutside, 0);
    assert.ok(population.benign.some((b) => b.kind === 'deployment'));
  });

  test('the injected anomalies are in the stream', () => {
    const { scenarios, traffic } = plan(1);
    assert.equal(scenarios.length, ANOMALY_KINDS.length * SMALL.instancesPerKind);
    const inWindow = new Map<string, number>();
    const before = new Map<string, number>();
    const firstDay = DEFAULT_START_MS + 8 * DAY_MS;
    for (const e of traffic.events()) {
      for (const { label } of scenarios) {
        if (e.principal !== label.principal) continue;
        if (e.eventTimeMs >= label.startMs && e.eventTimeMs < label.endMs && label.actions.includes(actionName(e))) {
          inWindow.set(label.id, (inWindow.get(label.id) ?? 0) + 1);
        } else if (e.eventTimeMs < label.startMs) {
          before.set(label.id, (before.get(label.id) ?? 0) + 1);
        }
      }
    }
    for (const { label, injection } of scenarios) {
      assert.ok(label.startMs >= firstDay, `${label.id} starts after day 8`);
      const injected = traffic.injectedEvents.get(label.id) ?? 0;
      assert.ok(injected > 50, `${label.id}: ${injected} injected events`);
      assert.ok((inWindow.get(label.id) ?? 0) >= injected, `${label.id}: injected events are in the stream`);
      if (label.kind === 'new-principal-enumeration') assert.equal(before.get(label.id) ?? 0, 0, `${label.id} is never seen before`);
      if (label.kind === 'dormant-wakeup') assert.ok(injection.silence && injection.silence.fromMs <= label.startMs - 7 * DAY_MS);
    }
    // Distinct principals, no two anomalies within a slot of each other.
    assert.equal(new Set(scenarios.map((s) => s.label.principal)).size, scenarios.length);
    const starts = scenarios.map((s) => s.label.startMs).sort((a, b) => a - b);
    for (let i = 1; i < starts.length; i++) assert.ok((starts[i] as number) - (starts[i - 1] as number) >= 2.5 * 60 * MINUTE_MS);
  });
});

describe('scoring', () => {
  const bucketMs = MINUTE_MS;
  const t0 = DEFAULT_START_MS;
  const anomaly: AnomalyLabel = {
    id: 'compromised-credential-1',
    kind: 'compromised-credential',
    principal: 'arn:aws:iam::111111111111:user/human-0001',
    accountId: '111111111111',
    region: 'us-east-1',
    actions: ['iam.amazonaws.com:CreateUser', 'ec2.amazonaws.com:RunInstances'],
    startMs: t0 + 9 * DAY_MS,
    endMs: t0 + 9 * DAY_MS + 20 * MINUTE_MS,
  };
  const start = (over: Partial<StartRecord>): StartRecord => ({
    sharedEventID: `s-${Math.random()}`,
    scope: 'principalAction',
    insightType: 'ApiCallRateInsight',
    accountId: '111111111111',
    region: 'us-east-1',
    principal: anomaly.principal,
    action: 'iam.amazonaws.com:CreateUser',
    startTimeMs: anomaly.startMs,
    watermarkMs: anomaly.startMs + bucketMs + 10_000,
    ...over,
  });

  test('which Starts match an anomaly', () => {
    assert.ok(matches(start({}), anomaly, bucketMs));
    assert.ok(matches(start({ action: 's3.amazonaws.com:GetObject' }), anomaly, bucketMs), 'any key of the principal');
    assert.ok(matches(start({ startTimeMs: anomaly.startMs - bucketMs }), anomaly, bucketMs));
    assert.ok(!matches(start({ startTimeMs: anomaly.startMs - bucketMs - 1 }), anomaly, bucketMs));
    assert.ok(matches(start({ startTimeMs: anomaly.endMs + 30 * MINUTE_MS }), anomaly, bucketMs));
    assert.ok(!matches(start({ startTimeMs: anomaly.endMs + 30 * MINUTE_MS + 1 }), anomaly, bucketMs));
    const perAction = { scope: 'action' as const, principal: null, action: 'ec2.amazonaws.com:RunInstances' };
    assert.ok(matches(start(perAction), anomaly, bucketMs));
    assert.ok(!matches(start({ ...perAction, region: 'eu-west-1' }), anomaly, bucketMs));
    assert.ok(!matches(start({ ...perAction, action: 's3.amazonaws.com:GetObject' }), anomaly, bucketMs));
    assert.ok(
      !matches(start({ principal: 'arn:aws:iam::111111111111:user/other' }), anomaly, bucketMs),
      'another principal sharing an action',
    );
  });

  test('a hand-made Start is matched to its anomaly; an unmatched one is a false Insight', () => {
    const hit = start({ watermarkMs: anomaly.startMs + 2 * bucketMs });
    const late = start({
      action: 'ec2.amazonaws.com:RunInstances',
      startTimeMs: anomaly.startMs + 5 * bucketMs,
      watermarkMs: anomaly.startMs + 6 * bucketMs,
    });
    const falseOne = start({
      principal: 'arn:aws:iam::111111111111:user/human-0002',
      startTimeMs: t0 + 3 * DAY_MS,
      watermarkMs: t0 + 3 * DAY_MS,
    });
    const warmup = start({
      principal: 'arn:aws:iam::111111111111:user/human-0003',
      startTimeMs: t0 + 3_600_000,
      watermarkMs: t0 + 3_600_000,
    });
    const s = scoreRun({
      anomalies: [anomaly, { ...anomaly, id: 'missed', kind: 'slow-ramp', principal: 'nobody', actions: [] }],
      starts: [hit, late, falseOne, warmup],
      principals: 500,
      startMs: t0,
      days: 14,
      injectAfterDays: 8,
      warmupDays: 1,
      bucketMs,
      kindOf: () => 'human',
    });
    assert.equal(s.recall, 0.5);
    const outcome = s.anomalies[0];
    assert.equal(outcome?.detected, true);
    assert.equal(outcome?.matchedStarts, 2);
    assert.equal(outcome?.timeToDetectBuckets, 2, 'the earliest watermark among its Starts');
    assert.equal(s.anomalies[1]?.detected, false);
    assert.deepEqual(
      s.perKind.filter((k) => k.injected > 0).map((k) => [k.kind, k.detected, k.injected]),
      [
        ['compromised-credential', 1, 1],
        ['slow-ramp', 0, 1],
      ],
    );
    assert.equal(s.medianTimeToDetectBuckets, 2);
    // One false Start over 7 benign days (day 1 to 8) for 500 principals.
    assert.equal(s.falseStartsBenign, 1);
    assert.equal(s.falseStartsWarmup, 1);
    assert.equal(s.falseInsightsPerDayPer1kPrincipals, 1 / 7 / 0.5);
    assert.equal(s.precision, 2 / 3, 'matched / Starts after the warm-up');
    assert.deepEqual(s.falseByCause, { 'human principal': 1 });
    assert.equal(s.falseByDay[0], 1);
    assert.equal(s.falseByDay[3], 1);
    // recall 0.5 < 0.95; median 2 ≤ 2; 0.29 false a day per 1k ≤ 1.
    const checks = checkTargets(s, loadTargets());
    assert.deepEqual(
      checks.map((c) => c.ok),
      [false, true, true],
    );
  });
});

describe('harness', () => {
  test('a small run end to end, and the BENCHMARKS.md section', async () => {
    const detector = loadConfig({ env: {}, overrides: HARNESS_OVERRIDES }).detector;
    assert.equal(detector.includeReadOnly, true);
    const r = runQuality({ ...SMALL, seed: 1, detector });
    assert.equal(r.scores.anomalies.length, 10);
    assert.ok(r.events > 100_000);
    assert.ok(r.starts > 0);
    for (const x of [r.scores.recall, r.scores.precision, r.scores.falseInsightsPerDayPer1kPrincipals]) assert.ok(Number.isFinite(x));
    assert.ok(r.scores.perKind.every((k) => k.injected === 2));
    assert.equal(r.lateEvents, 0, 'the generator is in event-time order');

    const dir = await mkdtemp(join(tmpdir(), 'tw-quality-'));
    try {
      const file = join(dir, 'BENCHMARKS.md');
      await writeFile(file, '# Benchmarks\n\n<!-- throughput:start -->\nfast\n<!-- throughput:end -->\n');
      writeBenchmarksSection('first', file);
      writeBenchmarksSection('second', file);
      const text = await readFile(file, 'utf8');
      assert.ok(text.includes('<!-- throughput:start -->\nfast\n<!-- throughput:end -->'));
      assert.ok(text.includes(`${SECTION_START}\nsecond\n${SECTION_END}`));
      assert.ok(!text.includes('first'));
      const fresh = join(dir, 'new.md');
      writeBenchmarksSection('only', fresh);
      assert.match(await readFile(fresh, 'utf8'), /^# Benchmarks\n[\s\S]*<!-- quality:start -->\nonly\n<!-- quality:end -->\n$/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
