import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { DetectorConfig } from '../../src/config/schema.ts';
import type { AuditEvent, Insight } from '../../src/contracts/types.ts';
import { decadesOf } from '../../src/detect/baseline/score.ts';
import { DetectionEngine } from '../../src/detect/engine.ts';
import { Overrides } from '../../src/detect/overrides.ts';
import type { InsightSubject } from '../../src/emit/insight.ts';
import { auditEvent } from '../helpers/events.ts';

const T0 = Date.UTC(2026, 0, 5, 0, 0, 0);
const MINUTE = 60_000;
const PRINCIPAL = 'arn:aws:sts::111122223333:assumed-role/svc-orders';
const SPIKE_MIN = 180;

function detector(over: Record<string, unknown> = {}): DetectorConfig {
  return loadConfig({ env: {}, overrides: { detector: { scopes: { action: false, principalAction: true }, ...over } } }).detector;
}

const subject: InsightSubject = {
  scope: 'principalAction',
  insightType: 'ApiCallRateInsight',
  accountId: '111122223333',
  region: 'us-east-1',
  service: 'dynamodb.amazonaws.com',
  action: 'PutItem',
  principal: PRINCIPAL,
  errorCode: null,
};

describe('override resolution', () => {
  test('each setting comes from the most specific override, the rest from the detector', () => {
    const o = new Overrides(
      detector({
        overrides: [
          { match: { service: 'dynamodb.*' }, scoreThreshold: 0.7, minEventsPerBucket: 20 },
          { match: { service: 'dynamodb.*', action: 'Put*' }, minRatio: 5, burstMargin: 0, minHistoryMs: 0, direction: 'both' },
          { match: { principal: '*svc-batch' }, enabled: false },
        ],
      }),
    );
    const put = o.resolve(subject);
    assert.equal(put.override, 1);
    assert.equal(put.minRatio, 5);
    assert.equal(put.burstMargin, 0);
    assert.equal(put.minHistoryMs, 0);
    assert.equal(put.direction, 'both');
    // Not inherited from the less specific override: one override applies.
    assert.equal(put.scoreThreshold, 0.6);
    assert.equal(put.minEventsPerBucket, 5);
    assert.equal(put.judge.counts.direction, 'both');
    assert.equal(put.judge.counts.thresholdDecades, decadesOf(0.6));
    const get = o.resolve({ ...subject, action: 'GetItem' });
    assert.equal(get.override, 0);
    assert.equal(get.scoreThreshold, 0.7);
    assert.equal(get.thresholdDecades, decadesOf(0.7));
    assert.equal(get.judge.gauge.thresholdDecades, decadesOf(0.7));
    assert.equal(get.minEventsPerBucket, 20);
    assert.equal(get.minRatio, 3);
    assert.equal(get.enabled, true);
    assert.equal(o.resolve({ ...subject, service: 's3.amazonaws.com', principal: 'arn:aws:sts::1:assumed-role/svc-batch' }).enabled, false);
    const none = o.resolve({ ...subject, service: 's3.amazonaws.com' });
    assert.equal(none.override, -1);
    assert.equal(none.scoreThreshold, 0.6);
    // One settings object per override and set of suppressions, shared by every key that has them.
    assert.equal(o.resolve({ ...subject, accountId: '2' }), put);
  });

  test('every matching suppression applies until the latest expiry', () => {
    const o = new Overrides(
      detector({
        suppressions: [
          { match: { action: 'Put*' }, reason: 'r', author: 'a', expires: '2026-01-05T02:00:00Z' },
          { match: { principal: '*svc-orders' }, reason: 'r', author: 'a', expires: '2026-01-05T03:00:00+00:00' },
          { match: { action: 'Get*' }, reason: 'r', author: 'a', expires: '2027-01-01T00:00:00Z' },
        ],
      }),
    );
    const s = o.resolve(subject);
    assert.deepEqual(s.suppressions, [0, 1]);
    assert.equal(s.suppressedUntilMs, Date.UTC(2026, 0, 5, 3));
    assert.equal(o.resolve({ ...subject, principal: 'x', action: 'Delete' }).suppressedUntilMs, Number.NEGATIVE_INFINITY);
  });
});

/** Three hours of one principal's one action at 10 calls a minute, with a spike of 200 a minute for 3 minutes at SPIKE_MIN. */
function traffic(minute: number): AuditEvent[] {
  const n = minute >= SPIKE_MIN && minute < SPIKE_MIN + 3 ? 200 : 10;
  return Array.from({ length: n }, (_, i) =>
    auditEvent({ eventId: `e${minute}-${i}`, eventTimeMs: T0 + minute * MINUTE + i, principal: PRINCIPAL, action: 'PutItem' }),
  );
}

function run(config: DetectorConfig, minutes = SPIKE_MIN + 30, at?: { minute: number; apply: (e: DetectionEngine) => void }) {
  const engine = new DetectionEngine(config);
  const insights: Insight[] = [];
  const means: number[] = [];
  for (let m = 0; m < minutes; m++) {
    if (at?.minute === m) at.apply(engine);
    insights.push(...engine.process(traffic(m), T0 + m * MINUTE));
    means.push(engine.keyView(engine.keyIds()[0] as string)?.baselinePerMinute ?? 0);
  }
  return { engine, insights, means };
}

const states = (insights: Insight[]) => insights.map((i) => i.insightDetails.state);

describe('per-key settings in the engine', () => {
  const base = run(detector());
  const start = base.insights.find((i) => i.insightDetails.state === 'Start');

  test('with the defaults the spike is one Insight, judged against the detector-wide threshold', () => {
    assert.deepEqual(states(base.insights), ['Start', 'End']);
    assert.equal(start?.trailwatch.threshold, 0.6);
  });

  test("a key's own threshold above the spike's score means no Start; another key's does not matter", () => {
    const score = start?.trailwatch.score ?? 1;
    assert.ok(score < 0.99, `spike score ${score}`);
    const raised = (match: Record<string, string>) =>
      run(detector({ overrides: [{ match, scoreThreshold: Math.min(0.99, score + 0.005) }] })).insights;
    assert.deepEqual(states(raised({ principal: '*svc-orders' })), []);
    assert.deepEqual(states(raised({ principal: '*svc-billing' })), ['Start', 'End']);
    // Lowered for the key: still one Insight, reporting the key's own threshold.
    const lowered = run(detector({ overrides: [{ match: { action: 'PutItem' }, scoreThreshold: 0.55 }] })).insights;
    assert.equal(lowered.find((i) => i.insightDetails.state === 'Start')?.trailwatch.threshold, 0.55);
  });

  test('enabled: false: the key is never reported', () => {
    assert.deepEqual(states(run(detector({ overrides: [{ match: { action: 'PutItem' }, enabled: false }] })).insights), []);
  });

  test('a suppression keeps back Start and End while the key still learns; it expires by event time', () => {
    const suppression = (expires: string) => ({ match: { action: 'PutItem' }, reason: 'load test', author: 'sre', expires });
    const during = run(detector({ suppressions: [suppression(new Date(T0 + (SPIKE_MIN + 1) * MINUTE).toISOString())] }));
    assert.deepEqual(states(during.insights), []);
    assert.equal(during.engine.insightsSuppressed, 2);
    assert.equal(during.engine.metrics.insightsStarted, 0);
    assert.deepEqual(during.means, base.means, 'the baseline learns exactly as without the suppression');
    // Expired (in event time) one bucket before the spike: the Insight is reported.
    const expired = run(detector({ suppressions: [suppression(new Date(T0 + (SPIKE_MIN - 1) * MINUTE).toISOString())] }));
    assert.deepEqual(states(expired.insights), ['Start', 'End']);
    assert.equal(expired.engine.insightsSuppressed, 0);
  });

  test('retune: a tuning applied while running changes the keys it matches from then on', () => {
    const tuned = detector({ overrides: [{ match: { action: 'PutItem' }, scoreThreshold: 0.99 }] });
    const live = run(detector(), undefined, { minute: SPIKE_MIN - 10, apply: (e) => e.retune(tuned) });
    assert.deepEqual(states(live.insights), []);
    const back = run(tuned, undefined, { minute: SPIKE_MIN - 10, apply: (e) => e.retune(detector()) });
    assert.deepEqual(states(back.insights), ['Start', 'End']);
    const off = run(detector(), undefined, { minute: SPIKE_MIN - 10, apply: (e) => e.retune(detector({ direction: 'both' })) });
    assert.ok(off.insights.length >= 2);
  });

  test("retune: a key switched off while its Insight is open gets its End at once, with the Start's id", () => {
    const disabled = detector({ overrides: [{ match: { action: 'PutItem' }, enabled: false }] });
    // The spike lasts 3 buckets: switched off in its second, the Insight is open.
    const cut = run(detector(), undefined, { minute: SPIKE_MIN + 2, apply: (e) => e.retune(disabled) });
    assert.deepEqual(states(cut.insights), ['Start', 'End']);
    const [s, e] = cut.insights as [Insight, Insight];
    assert.equal(e.sharedEventID, s.sharedEventID);
    assert.equal(e.insightDetails.insightContext.statistics.insightDuration, 1);
    // A suppressed Insight ends unseen, as its Start was.
    const suppressed = detector({
      suppressions: [{ match: { action: 'PutItem' }, reason: 'load test', author: 'sre', expires: '2027-01-01T00:00:00Z' }],
    });
    const both = detector({
      overrides: [{ match: { action: 'PutItem' }, enabled: false }],
      suppressions: [{ match: { action: 'PutItem' }, reason: 'load test', author: 'sre', expires: '2027-01-01T00:00:00Z' }],
    });
    const quiet = run(suppressed, undefined, { minute: SPIKE_MIN + 2, apply: (e) => e.retune(both) });
    assert.deepEqual(states(quiet.insights), []);
  });
});
