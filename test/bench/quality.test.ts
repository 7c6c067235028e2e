/**
 * The quality harness's machinery, on a small run (60 principals, 10 days, two cheap busy roles):
 * deterministic traffic, anomalies really injected (each kind doing what it says), scoring by the
 * documented definitions. Not the targets: those are for `npm run bench:quality`.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  actionName,
  buildPopulation,
  busiestHabit,
  busyRates,
  DAY_MS,
  DEFAULT_START_MS,
  MINUTE_MS,
  type Population,
  type PrincipalProfile,
  serviceActivity,
  TrafficGenerator,
} from '../../bench/quality/generator.ts';
import {
  checkTargets,
  configDiff,
  HARNESS_OVERRIDES,
  harnessConfig,
  loadTargets,
  matches,
  renderReport,
  runQuality,
  SECTION_END,
  SECTION_START,
  SERVICE_ROLES_BOTH_WAYS,
  type StartRecord,
  scoreRun,
  startRecord,
  summarizeVolumes,
  writeBenchmarksSection,
} from '../../bench/quality/harness.ts';
import {
  ANOMALY_KINDS,
  type AnomalyKind,
  type AnomalyLabel,
  CANDIDATE_RATES,
  planScenarios,
  type Scenario,
} from '../../bench/quality/scenarios.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Insight } from '../../src/contracts/types.ts';

/** Two busy roles at 15 and 5 calls a minute: the busy-spike machinery without millions of events. */
const SMALL = { principals: 60, days: 10, instancesPerKind: 2, workers: 1, busyRates: [15, 5] };

function plan(seed: number) {
  const population = buildPopulation({
    seed,
    principals: SMALL.principals,
    days: SMALL.days,
    workers: SMALL.workers,
    busyRates: SMALL.busyRates,
  });
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

/** Calls of one principal's action per minute of the run (minute index from the run start). */
function perMinute(population: Population, events: Iterable<{ eventTimeMs: number; principal: string; service: string; action: string }>) {
  const counts = new Map<string, Map<number, number>>();
  for (const e of events) {
    const key = `${e.principal} ${actionName(e)}`;
    let m = counts.get(key);
    if (!m) {
      m = new Map();
      counts.set(key, m);
    }
    const minute = Math.floor((e.eventTimeMs - population.startMs) / MINUTE_MS);
    m.set(minute, (m.get(minute) ?? 0) + 1);
  }
  /** Calls of `principal`'s `action` (`service:action`, or every action with null) over [fromMs, untilMs). */
  return (principal: string, action: string | null, fromMs: number, untilMs: number): number => {
    let n = 0;
    for (const [key, m] of counts) {
      if (!key.startsWith(`${principal} `) || (action !== null && key !== `${principal} ${action}`)) continue;
      for (const [minute, c] of m) {
        const t = population.startMs + minute * MINUTE_MS;
        if (t >= fromMs && t < untilMs) n += c;
      }
    }
    return n;
  };
}

/** Expected calls of a service role's habit at `rate` (full activity) over [fromMs, untilMs), daily swing included. */
function expectedCalls(population: Population, rate: number, fromMs: number, untilMs: number): number {
  let n = 0;
  for (let t = fromMs; t < untilMs; t += MINUTE_MS) n += rate * serviceActivity((t - population.startMs) / MINUTE_MS);
  return n;
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

  test('worker and busy service roles come on top of the population, which is the same without them', () => {
    const plain = buildPopulation({ seed: 2, principals: 300, days: 9 });
    const extra = buildPopulation({ seed: 2, principals: 300, days: 9, workers: 3, busyRates: busyRates(3) });
    assert.equal(plain.profiles.length, 300);
    assert.ok(plain.profiles.every((p) => p.tier === undefined));
    assert.deepEqual(extra.profiles.slice(0, 300), plain.profiles, 'the Zipf population is untouched');
    assert.deepEqual(extra.benign, plain.benign);
    const added = extra.profiles.slice(300);
    assert.deepEqual(
      added.map((p) => p.tier),
      ['worker', 'worker', 'worker', 'busy', 'busy', 'busy'],
    );
    for (const p of added) {
      assert.equal(p.kind, 'service');
      assert.match(p.principal, /^arn:aws:sts::\d{12}:assumed-role\/svc-(worker|busy)-\d{4}$/);
    }
    for (const w of added.filter((p) => p.tier === 'worker'))
      assert.ok(busiestHabit(w).ratePerMinute >= 2, 'a worker has a habit of ≥ 2 calls/min');
    assert.deepEqual(busyRates(3), [400, 80, 20]);
    assert.deepEqual(
      added.filter((p) => p.tier === 'busy').map((p) => [p.ratePerMinute, p.habits.length]),
      [
        [400, 1],
        [80, 1],
        [20, 1],
      ],
    );
  });

  test('the busy principals really call at their rate (Poisson, ±10% over the day)', () => {
    const population = buildPopulation({ seed: 1, principals: 60, days: 1, workers: 1, busyRates: busyRates(3) });
    const busy = population.profiles.filter((p) => p.tier === 'busy');
    const counts = new Map<string, number>(busy.map((p) => [p.principal, 0]));
    const actions = new Map<string, Set<string>>(busy.map((p) => [p.principal, new Set()]));
    // Six hours from midnight, where the daily swing is lowest (0.9) to about the mean (1.0).
    const minutes = 360;
    let m = 0;
    for (const batch of new TrafficGenerator({ population }).byMinute()) {
      if (m++ >= minutes) break;
      for (const e of batch) {
        if (!counts.has(e.principal)) continue;
        counts.set(e.principal, (counts.get(e.principal) ?? 0) + 1);
        actions.get(e.principal)?.add(actionName(e));
      }
    }
    for (const p of busy) {
      const expected = expectedCalls(population, p.ratePerMinute, population.startMs, population.startMs + minutes * MINUTE_MS);
      const got = counts.get(p.principal) ?? 0;
      assert.ok(Math.abs(got - expected) <= 4 * Math.sqrt(expected), `${p.principal}: ${got} calls, ${expected.toFixed(0)} expected`);
      assert.equal(actions.get(p.principal)?.size, 1, 'one action');
    }
    assert.ok((counts.get(busy[0]?.principal ?? '') ?? 0) / minutes > 360, 'the busiest is at ~400 calls/min');
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
    const minInjected: Record<AnomalyKind, number> = {
      'compromised-credential': 50,
      'access-denied-storm': 50,
      'slow-ramp': 50,
      'dormant-wakeup': 50,
      'new-principal-enumeration': 50,
      'sustained-shift': 50,
      drop: 0,
      'service-silent': 0,
      'busy-spike': 50,
      'sparse-spike': 5,
    };
    for (const { label, injection } of scenarios) {
      assert.ok(label.startMs >= firstDay, `${label.id} starts after day 8`);
      const injected = traffic.injectedEvents.get(label.id) ?? 0;
      if (label.kind === 'drop' || label.kind === 'service-silent') {
        assert.equal(injected, 0, `${label.id} adds nothing`);
        assert.ok((traffic.suppressedEvents.get(label.id) ?? 0) > 0, `${label.id} takes calls out`);
      } else {
        assert.ok(injected > minInjected[label.kind], `${label.id}: ${injected} injected events`);
        assert.ok((inWindow.get(label.id) ?? 0) >= injected, `${label.id}: injected events are in the stream`);
      }
      if (label.kind === 'new-principal-enumeration') assert.equal(before.get(label.id) ?? 0, 0, `${label.id} is never seen before`);
      if (label.kind === 'dormant-wakeup') assert.ok(injection.silence && injection.silence.fromMs <= label.startMs - 7 * DAY_MS);
    }
    // Distinct principals, and no anomaly's scoring window ([start − 1 bucket, end + 30 min]) overlapping another's.
    assert.equal(new Set(scenarios.map((s) => s.label.principal)).size, scenarios.length);
    const windows = scenarios
      .map((s) => [s.label.startMs - MINUTE_MS, s.label.endMs + 30 * MINUTE_MS] as const)
      .sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < windows.length; i++) assert.ok((windows[i]?.[0] as number) > (windows[i - 1]?.[1] as number), 'windows apart');
  });

  test('each new kind does what it says to its key', () => {
    const { population, scenarios, traffic } = plan(1);
    const events = [...traffic.events()];
    const calls = perMinute(population, events);
    const profiles = new Map(population.profiles.map((p) => [p.principal, p]));
    const profile = (principal: string): PrincipalProfile => {
      const p = profiles.get(principal);
      assert.ok(p, principal);
      return p;
    };
    const of = (kind: AnomalyKind): Scenario[] => scenarios.filter((s) => s.label.kind === kind);
    const hour = 60 * MINUTE_MS;

    for (const { label } of of('sustained-shift')) {
      const action = label.actions[0] as string;
      const rate = label.habitPerMinute as number;
      assert.equal(action, actionName(busiestHabit(profile(label.principal)).action), 'the busiest habit');
      const during =
        calls(label.principal, action, label.startMs, label.endMs) / expectedCalls(population, rate, label.startMs, label.endMs);
      const prior =
        calls(label.principal, action, label.startMs - 2 * hour, label.startMs) /
        expectedCalls(population, rate, label.startMs - 2 * hour, label.startMs);
      assert.equal(label.endMs - label.startMs, 2 * hour);
      assert.ok(during > 2.4 && during < 3.6, `${label.id}: ${during.toFixed(2)}× its rate for 2 h (a step to 3×)`);
      assert.ok(prior > 0.6 && prior < 1.4, `${label.id}: ${prior.toFixed(2)}× before`);
    }

    for (const { label, injection } of of('drop')) {
      const action = label.actions[0] as string;
      const rate = label.habitPerMinute as number;
      const thin = injection.thin;
      assert.ok(thin && thin.action === action && thin.keep <= 0.1 && thin.fromMs === label.startMs && thin.untilMs === label.endMs);
      assert.equal(label.endMs - label.startMs, 90 * MINUTE_MS);
      const kept = calls(label.principal, action, label.startMs, label.endMs);
      const removed = traffic.suppressedEvents.get(label.id) ?? 0;
      // At least 90% of what the habit would have called is gone, and that was its usual rate.
      assert.ok(kept <= 0.1 * (kept + removed), `${label.id}: ${kept} kept, ${removed} removed`);
      const expected = expectedCalls(population, rate, label.startMs, label.endMs);
      assert.ok(
        Math.abs(kept + removed - expected) <= 4 * Math.sqrt(expected),
        `${label.id}: ${kept + removed} would-be calls, ${expected.toFixed(0)} expected`,
      );
      assert.ok(kept / expected <= 0.15, `${label.id}: ${kept} calls left of ${expected.toFixed(0)}`);
      // Its other habits, if any, go on.
      const after =
        calls(label.principal, action, label.endMs, label.endMs + hour) / expectedCalls(population, rate, label.endMs, label.endMs + hour);
      assert.ok(after > 0.6, `${label.id} recovers (${after.toFixed(2)}×)`);
    }

    for (const { label } of of('service-silent')) {
      const p = profile(label.principal);
      assert.ok(p.kind === 'service' && p.tier !== 'busy');
      assert.deepEqual(label.actions, p.habits.map(actionName), 'every action it calls');
      assert.equal(label.endMs - label.startMs, 2 * hour);
      assert.equal(calls(label.principal, null, label.startMs, label.endMs), 0, `${label.id}: nothing at all for 2 h`);
      assert.ok(calls(label.principal, null, label.startMs - hour, label.startMs) > 0, 'calls before');
      assert.ok(calls(label.principal, null, label.endMs, label.endMs + hour) > 0, 'and after');
    }

    for (const { label } of of('busy-spike')) {
      const p = profile(label.principal);
      assert.equal(p.tier, 'busy');
      const action = label.actions[0] as string;
      const during =
        calls(label.principal, action, label.startMs, label.endMs) / expectedCalls(population, p.ratePerMinute, label.startMs, label.endMs);
      assert.equal(label.endMs - label.startMs, 10 * MINUTE_MS);
      assert.ok(during > 3.4 && during < 4.6, `${label.id}: ${during.toFixed(2)}× for 10 min`);
    }

    for (const { label } of of('sparse-spike')) {
      const action = label.actions[0] as string;
      const rate = label.habitPerMinute as number;
      assert.ok(rate <= CANDIDATE_RATES.sparseSpike[1], `${label.id}: a sparse habit (${rate})`);
      const during = calls(label.principal, action, label.startMs, label.endMs);
      assert.ok(during >= 7 && during <= 35, `${label.id}: ${during} calls in 10 min`);
      assert.ok(during / 10 / rate >= 15, `${label.id}: ${(during / 10 / rate).toFixed(0)}× its rate`);
    }
  });

  test('on the full population, each kind gets the principals it asks for, and the keys span 10⁴', () => {
    const population = buildPopulation({ seed: 1, principals: 1_000, days: 14, workers: 10, busyRates: busyRates(3) });
    const scenarios = planScenarios({ population, seed: 1, instancesPerKind: 6 });
    const profiles = new Map(population.profiles.map((p) => [p.principal, p]));
    const count = (k: AnomalyKind): number => scenarios.filter((s) => s.label.kind === k).length;
    assert.equal(count('busy-spike'), 3, 'one per busy role');
    for (const k of ANOMALY_KINDS) if (k !== 'busy-spike') assert.equal(count(k), 6, k);
    const rates = (k: AnomalyKind): number[] => scenarios.filter((s) => s.label.kind === k).map((s) => s.label.habitPerMinute as number);
    assert.ok(rates('sustained-shift').every((r) => r >= 2));
    assert.ok(rates('drop').every((r) => r >= 3));
    assert.ok(rates('slow-ramp').every((r) => r >= 1 && r <= 10));
    assert.ok(rates('sparse-spike').every((r) => r >= 0.025 && r <= 0.04));
    for (const s of scenarios.filter((x) => x.label.kind === 'service-silent')) {
      const p = profiles.get(s.label.principal);
      assert.ok(p && busiestHabit(p).ratePerMinute >= 1);
    }
    assert.ok(Math.max(...rates('busy-spike')) / Math.min(...rates('sparse-spike')) >= 10_000);
    assert.equal(new Set(scenarios.map((s) => s.label.principal)).size, scenarios.length);
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
    direction: 'up',
    ...over,
  });
  const input = { principals: 500, startMs: t0, days: 14, injectAfterDays: 8, warmupDays: 1, bucketMs };

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
      ...input,
      anomalies: [anomaly, { ...anomaly, id: 'missed', kind: 'slow-ramp', principal: 'nobody', actions: [] }],
      starts: [hit, late, falseOne, warmup],
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

    // Per kind: compromised-credential 1/1 within 2 buckets; slow-ramp 0/1 (recall only, no time
    // target); kinds with nothing injected have no recall, a miss; 0.29 false a day per 1k ≤ 1.
    const checks = checkTargets(s, loadTargets());
    const ok = Object.fromEntries(checks.map((c) => [c.metric, c.ok]));
    assert.equal(ok['recall, compromised-credential'], true);
    assert.equal(ok['median time to detect (buckets), compromised-credential'], true);
    assert.equal(ok['recall, slow-ramp'], false);
    assert.ok(!('median time to detect (buckets), slow-ramp' in ok), 'slow ramps are not held to a time');
    assert.equal(ok['recall, drop'], false);
    assert.equal(ok['false Insights / day / 1k principals'], true);
    assert.equal(checks.length, ANOMALY_KINDS.length * 2 - 1 + 1);
  });

  test('a drop or a silence is matched by a Start on its principal, or on its action in its account and region', () => {
    const principal = 'arn:aws:sts::222222222222:assumed-role/svc-worker-1004';
    const drop: AnomalyLabel = {
      id: 'drop-1',
      kind: 'drop',
      principal,
      accountId: '222222222222',
      region: 'eu-west-1',
      actions: ['lambda.amazonaws.com:Invoke'],
      startMs: t0 + 9 * DAY_MS,
      endMs: t0 + 9 * DAY_MS + 90 * MINUTE_MS,
      habitPerMinute: 5.3,
    };
    const silent: AnomalyLabel = {
      ...drop,
      id: 'service-silent-1',
      kind: 'service-silent',
      principal: 'arn:aws:sts::222222222222:assumed-role/svc-0419',
      actions: ['s3.amazonaws.com:DeleteObject', 's3.amazonaws.com:PutObject'],
      startMs: t0 + 10 * DAY_MS,
      endMs: t0 + 10 * DAY_MS + 120 * MINUTE_MS,
    };
    const on = (a: AnomalyLabel, over: Partial<StartRecord>): StartRecord =>
      start({
        accountId: a.accountId,
        region: a.region,
        principal: a.principal,
        action: a.actions[0],
        startTimeMs: a.startMs + 8 * bucketMs,
        ...over,
      });
    const dropStart = on(drop, { direction: 'down', watermarkMs: drop.startMs + 9 * bucketMs });
    assert.ok(matches(dropStart, drop, bucketMs));
    assert.ok(
      matches(on(drop, { scope: 'action', principal: null }), drop, bucketMs),
      'its action, all principals, in its account and region',
    );
    assert.ok(!matches(on(drop, { scope: 'action', principal: null, region: 'us-east-1' }), drop, bucketMs));
    assert.ok(!matches(on(drop, { principal: 'arn:aws:sts::222222222222:assumed-role/svc-0001' }), drop, bucketMs));
    assert.ok(matches(on(drop, { startTimeMs: drop.endMs + 30 * MINUTE_MS }), drop, bucketMs));
    assert.ok(!matches(on(drop, { startTimeMs: drop.endMs + 30 * MINUTE_MS + 1 }), drop, bucketMs));
    assert.ok(
      matches(on(silent, { action: 's3.amazonaws.com:PutObject', scope: 'action', principal: null }), silent, bucketMs),
      'any of its actions',
    );

    const s = scoreRun({
      ...input,
      anomalies: [drop, silent],
      starts: [dropStart, on(silent, { direction: 'up', watermarkMs: silent.startMs + 20 * bucketMs })],
    });
    const k = (kind: AnomalyKind) => s.perKind.find((x) => x.kind === kind);
    assert.deepEqual([k('drop')?.detected, k('drop')?.detectedByDown, k('drop')?.medianTimeToDetectBuckets], [1, 1, 9]);
    assert.deepEqual(
      [k('service-silent')?.detected, k('service-silent')?.detectedByDown, k('service-silent')?.medianTimeToDetectBuckets],
      [1, 0, 20],
    );
    const ok = Object.fromEntries(checkTargets(s, loadTargets()).map((c) => [c.metric, c.ok]));
    assert.equal(ok['median time to detect (buckets), drop'], true, '9 ≤ 15');
    assert.equal(ok['median time to detect (buckets), service-silent'], false, '20 > 15');
  });

  test('a Start below its baseline is a drop', () => {
    const insight = (baseline: number, now: number) =>
      ({
        sharedEventID: 'x',
        recipientAccountId: '111111111111',
        awsRegion: 'us-east-1',
        insightDetails: {
          state: 'Start',
          eventSource: 's3.amazonaws.com',
          eventName: 'GetObject',
          insightType: 'ApiCallRateInsight',
          insightContext: { statistics: { baseline: { average: baseline }, insight: { average: now } } },
        },
        trailwatch: { scope: 'principalAction', principal: 'p', startTimeMs: 1 },
      }) as unknown as Insight;
    assert.equal(startRecord(insight(5, 0.2), 2).direction, 'down');
    assert.equal(startRecord(insight(5, 30), 2).direction, 'up');
  });

  test('targets: one per kind, or the file is refused', async () => {
    const t = loadTargets();
    assert.deepEqual(Object.keys(t.kinds).sort(), [...ANOMALY_KINDS].sort());
    for (const k of ['busy-spike', 'sparse-spike', 'compromised-credential'] as const)
      assert.equal(t.kinds[k].medianTimeToDetectBuckets?.max, 2);
    for (const k of ['sustained-shift', 'drop', 'service-silent'] as const) assert.equal(t.kinds[k].medianTimeToDetectBuckets?.max, 15);
    assert.equal(t.kinds['slow-ramp'].medianTimeToDetectBuckets, undefined);
    const dir = await mkdtemp(join(tmpdir(), 'tw-targets-'));
    try {
      const { drop: _drop, ...rest } = t.kinds;
      const file = join(dir, 'targets.json');
      await writeFile(file, JSON.stringify({ ...t, kinds: rest }));
      assert.throws(() => loadTargets(file), /no recall target for drop/);
      await writeFile(file, JSON.stringify({ ...t, kinds: { ...t.kinds, 'made-up': { recall: { min: 1 } } } }));
      assert.throws(() => loadTargets(file), /unknown kinds made-up/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('keys by volume: counted per decade of mean rate', () => {
    const v = summarizeVolumes([1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 1_440_000], 1_000);
    assert.equal(v.keys, 8);
    assert.equal(v.min, 0.001);
    assert.equal(v.max, 1_440);
    assert.deepEqual(
      v.byDecade.map((d) => d.keys),
      [0, 1, 1, 1, 1, 1, 1, 2],
    );
  });
});

describe('harness', () => {
  test('the config: includeReadOnly, and service roles watched both ways ahead of any override of the config', () => {
    const detector = harnessConfig({ env: {} }).detector;
    assert.equal(detector.includeReadOnly, true);
    assert.deepEqual(detector.overrides, [SERVICE_ROLES_BOTH_WAYS]);
    const theirs = { match: { scope: 'action' }, direction: 'down' };
    const withTheirs = harnessConfig({ env: { TRAILWATCH_DETECTOR__OVERRIDES: JSON.stringify([theirs]) } }).detector;
    assert.deepEqual(withTheirs.overrides, [SERVICE_ROLES_BOTH_WAYS, theirs]);
    assert.deepEqual(loadConfig({ env: {}, overrides: HARNESS_OVERRIDES }).detector.overrides, [SERVICE_ROLES_BOTH_WAYS]);
    assert.deepEqual(
      configDiff(detector).sort(),
      ['detector.includeReadOnly = true', `detector.overrides = ${JSON.stringify([SERVICE_ROLES_BOTH_WAYS])}`].sort(),
    );
  });

  test('a small run end to end, and the BENCHMARKS.md section', async () => {
    const detector = harnessConfig({ env: {} }).detector;
    const r = runQuality({ ...SMALL, seed: 1, detector });
    assert.equal(r.scores.anomalies.length, ANOMALY_KINDS.length * 2);
    assert.equal(r.population.principals, 63);
    assert.ok(r.events > 100_000);
    assert.ok(r.starts > 0);
    for (const x of [r.scores.recall, r.scores.precision, r.scores.falseInsightsPerDayPer1kPrincipals]) assert.ok(Number.isFinite(x));
    assert.ok(r.scores.perKind.every((k) => k.injected === 2));
    assert.equal(r.lateEvents, 0, 'the generator is in event-time order');
    assert.ok(r.volumes.principalAction.max >= 14 && r.volumes.principalAction.min < 0.01, 'the busy roles and the sparse keys');
    assert.ok(r.volumes.anomalyKeys.some((k) => k.kind === 'sparse-spike' && k.perMinute <= 0.1));
    const report = renderReport(r, checkTargets(r.scores, loadTargets()), 'npm run bench:quality');
    assert.match(report, /\| drop \| \d\/2 \|/);
    assert.match(report, /Keys by volume/);
    assert.match(report, /svc-\*/);

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
