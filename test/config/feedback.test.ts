import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodeFeedbackRecord,
  encodeFeedbackRecord,
  evaluatePolicy,
  type FeedbackRecord,
  type FeedbackSubject,
  findingSubject,
  insightSubject,
  newFeedbackRecord,
  type Verdict,
  type VersionSuppressions,
  withPolicySuppression,
} from '../../src/config/feedback.ts';
import { loadConfig } from '../../src/config/load.ts';
import { documentOf, FEEDBACK_POLICY_AUTHOR } from '../../src/config/record.ts';
import type { DetectorSuppression, FeedbackConfig } from '../../src/config/schema.ts';
import type { Finding, Insight } from '../../src/contracts/types.ts';
import { buildFinding } from '../../src/emit/finding.ts';
import { buildInsight } from '../../src/emit/insight.ts';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 4, 20, 12, 0, 0);
const POLICY: FeedbackConfig = { falsePositivesToSuppress: 3, withinDays: 14, suppressForDays: 7 };
const PRINCIPAL = 'arn:aws:sts::111122223333:assumed-role/svc-orders';

function insight(scope: 'action' | 'principalAction', startMin = 0, errorCode: string | null = null): Insight {
  return buildInsight({
    scope,
    insightType: errorCode ? 'ApiErrorRateInsight' : 'ApiCallRateInsight',
    accountId: '111122223333',
    region: 'us-east-1',
    service: 'dynamodb.amazonaws.com',
    action: 'PutItem',
    principal: scope === 'principalAction' ? PRINCIPAL : null,
    errorCode,
    state: 'Start',
    keyId: `k-${scope}`,
    startTimeMs: NOW - DAY + startMin * 60_000,
    endTimeMs: null,
    bucketMs: 60_000,
    baselinePerMinute: 1,
    insightPerMinute: 30,
    baselineWindowMinutes: 10_080,
    historyMinutes: 600,
    score: 0.8,
    threshold: 0.6,
    contributors: [],
  });
}

const subject = insightSubject(insight('principalAction'));

function verdict(
  n: number,
  over: { verdict?: Verdict; author?: string; target?: string; ageDays?: number; reason?: string } = {},
): FeedbackRecord {
  return newFeedbackRecord(subject, {
    target: over.target ?? `insight-${n}`,
    verdict: over.verdict ?? 'false-positive',
    reason: over.reason ?? `nightly batch ${n}`,
    author: over.author ?? `sre${n}`,
    atMs: NOW - (over.ageDays ?? 1) * DAY + n * 60_000,
  });
}

const judge = (
  feedback: FeedbackRecord[],
  current: DetectorSuppression[] = [],
  versions: VersionSuppressions[] = [],
  policy: FeedbackConfig = POLICY,
  s: FeedbackSubject = subject,
) => evaluatePolicy(s, feedback, policy, { suppressions: current }, versions, NOW);

describe('feedback subjects', () => {
  test('an Insight’s key is what a suppression matches: region for an action key, principal for a principal × action key', () => {
    assert.deepEqual(insightSubject(insight('action')).match, {
      scope: 'action',
      insightType: 'ApiCallRateInsight',
      accountId: '111122223333',
      region: 'us-east-1',
      service: 'dynamodb.amazonaws.com',
      action: 'PutItem',
    });
    assert.deepEqual(subject.match, {
      scope: 'principalAction',
      insightType: 'ApiCallRateInsight',
      accountId: '111122223333',
      principal: PRINCIPAL,
      service: 'dynamodb.amazonaws.com',
      action: 'PutItem',
    });
    assert.equal(subject.key, `principalAction|call|111122223333|${PRINCIPAL}|dynamodb.amazonaws.com|PutItem`);
    // An error-rate key names its code; the suppression (which cannot match one) covers the action's every code.
    const errors = insightSubject(insight('action', 0, 'ThrottlingException'));
    assert.match(errors.key, /\|ThrottlingException$/);
    assert.equal(errors.match?.insightType, 'ApiErrorRateInsight');
    assert.equal(
      insightSubject({ ...insight('action'), trailwatch: { ...insight('action').trailwatch, configVersion: 4 } }).configVersion,
      4,
    );
  });

  test('a finding’s key is its rule and principal; it has no suppression match', () => {
    const finding: Finding = buildFinding({
      kind: 'rule',
      analyticId: 'cloudtrail-stop-logging',
      analyticName: 'CloudTrail stopped',
      title: 'CloudTrail logging stopped',
      severity: 'high',
      timeMs: NOW,
      windowStartMs: NOW - 60_000,
      accountId: '111122223333',
      region: 'us-east-1',
      principal: PRINCIPAL,
      evidences: [],
    });
    const s = findingSubject({ ...finding, unmapped: { ...finding.unmapped, configVersion: '7' } });
    assert.equal(s.kind, 'finding');
    assert.equal(s.match, null);
    assert.equal(s.key, `finding|cloudtrail-stop-logging|111122223333|${PRINCIPAL}`);
    assert.equal(s.configVersion, 7);
    assert.match(judge([], [], [], POLICY, s).why, /findings are not suppressed/);
  });

  test('records round-trip; a value that is not one is a clear error', () => {
    const r = verdict(1);
    assert.deepEqual(decodeFeedbackRecord(encodeFeedbackRecord(r)), r);
    assert.throws(() => decodeFeedbackRecord('{}'), /not a feedback record: /);
    assert.throws(() => decodeFeedbackRecord('nope'), /not JSON/);
  });
});

describe('the feedback policy', () => {
  test('below the count: no suppression, and it says how many of how many', () => {
    const out = judge([verdict(1), verdict(2)]);
    assert.equal(out.suppression, null);
    assert.equal(out.why, '2 of 3 false positives on this key within 14 days: no suppression yet');
  });

  test('at the count: a suppression of the key for suppressForDays, by feedback-policy, listing the reasons', () => {
    const out = judge([verdict(1), verdict(2), verdict(3)]);
    assert.deepEqual(out.suppression, {
      match: subject.match,
      reason: '3 false positives within 14 days: "nightly batch 1" (sre1); "nightly batch 2" (sre2); "nightly batch 3" (sre3)',
      author: FEEDBACK_POLICY_AUTHOR,
      expires: new Date(NOW + 7 * DAY).toISOString().replace('.000Z', 'Z'),
    });
  });

  test('one author repeating a verdict on one Insight counts once', () => {
    const same = { author: 'alice', target: 'insight-1' };
    assert.equal(judge([verdict(1, same), verdict(2, same), verdict(3, same)]).counted.length, 1);
    // Three people on one Insight, or one person on three Insights, count three.
    assert.notEqual(judge([verdict(1, { target: 't' }), verdict(2, { target: 't' }), verdict(3, { target: 't' })]).suppression, null);
    assert.notEqual(judge([verdict(1, { author: 'a' }), verdict(2, { author: 'a' }), verdict(3, { author: 'a' })]).suppression, null);
  });

  test('only verdicts within withinDays count', () => {
    assert.equal(judge([verdict(1, { ageDays: 20 }), verdict(2), verdict(3)]).suppression, null);
    assert.equal(judge([verdict(1, { ageDays: 20 }), verdict(2), verdict(3)], [], [], { ...POLICY, withinDays: 30 }).counted.length, 3);
  });

  test('other keys’ verdicts do not count', () => {
    const other = newFeedbackRecord(insightSubject(insight('action')), {
      target: 'x',
      verdict: 'false-positive',
      reason: 'r',
      author: 'z',
      atMs: NOW - DAY,
    });
    assert.equal(judge([verdict(1), verdict(2), other]).suppression, null);
  });

  test('a true positive on the key holds the policy off', () => {
    const out = judge([verdict(1), verdict(2), verdict(3), verdict(4, { verdict: 'true-positive', author: 'oncall' })]);
    assert.equal(out.suppression, null);
    assert.match(out.why, /a true positive was given on this key at .* by oncall/);
  });

  test('nothing new while a suppression with this match is in force', () => {
    const active: DetectorSuppression = {
      match: subject.match ?? {},
      reason: 'r',
      author: 'bob',
      expires: new Date(NOW + DAY).toISOString(),
    };
    assert.match(judge([verdict(1), verdict(2), verdict(3)], [active]).why, /already suppressed until .* \(bob\)/);
  });

  test('verdicts that led to the last policy suppression do not lead to the next', () => {
    const first = judge([verdict(1), verdict(2), verdict(3)]).suppression as DetectorSuppression;
    // Seven days later it has expired; the three old verdicts are still within 14 days.
    const later = NOW + 8 * DAY;
    const versions: VersionSuppressions[] = [{ appliedAt: new Date(NOW).toISOString(), suppressions: [first] }];
    const again = evaluatePolicy(subject, [verdict(1), verdict(2), verdict(3)], POLICY, { suppressions: [first] }, versions, later);
    assert.equal(again.suppression, null);
    assert.match(again.why, /^0 of 3/);
    const fresh = [1, 2, 3].map((n) =>
      newFeedbackRecord(subject, {
        target: `new-${n}`,
        verdict: 'false-positive',
        reason: 'still noisy',
        author: `s${n}`,
        atMs: later - n,
      }),
    );
    assert.notEqual(
      evaluatePolicy(subject, [verdict(1), verdict(2), verdict(3), ...fresh], POLICY, { suppressions: [first] }, versions, later)
        .suppression,
      null,
    );
  });

  test('falsePositivesToSuppress 0 turns the policy off', () => {
    assert.match(judge([verdict(1), verdict(2), verdict(3)], [], [], { ...POLICY, falsePositivesToSuppress: 0 }).why, /policy is off/);
  });

  test('the new suppression replaces the policy’s earlier one of the same key, and keeps everything else', () => {
    const tuning = documentOf(
      loadConfig({
        env: {},
        overrides: {
          detector: {
            suppressions: [
              { match: subject.match ?? {}, reason: 'old', author: FEEDBACK_POLICY_AUTHOR, expires: '2026-01-01T00:00:00Z' },
              { match: subject.match ?? {}, reason: 'human', author: 'alice', expires: '2026-01-01T00:00:00Z' },
              { match: { action: 'Other' }, reason: 'other', author: FEEDBACK_POLICY_AUTHOR, expires: '2999-01-01T00:00:00Z' },
            ],
          },
        },
      }),
    ).detector;
    const added = judge([verdict(1), verdict(2), verdict(3)]).suppression as DetectorSuppression;
    const next = withPolicySuppression(tuning, added);
    assert.deepEqual(
      next.suppressions.map((s) => s.reason),
      ['human', 'other', added.reason],
    );
    assert.equal(next.scoreThreshold, tuning.scoreThreshold);
  });
});
