import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodeFeedbackRecord,
  documentWithPolicySuppression,
  encodeFeedbackRecord,
  evaluatePolicy,
  type FeedbackRecord,
  type FeedbackSubject,
  findingSubject,
  insightSubject,
  newFeedbackRecord,
  suppressionsFor,
  type Verdict,
  type VersionSuppressions,
  withPolicySuppression,
} from '../../src/config/feedback.ts';
import { loadConfig } from '../../src/config/load.ts';
import { documentOf, FEEDBACK_POLICY_AUTHOR } from '../../src/config/record.ts';
import type { DetectorSuppression, FeedbackConfig, FindingSuppression } from '../../src/config/schema.ts';
import type { Finding, Insight } from '../../src/contracts/types.ts';
import { FindingOverrides } from '../../src/detect/finding-overrides.ts';
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

function finding(over: { analyticId?: string; principal?: string | null } = {}): Finding {
  return buildFinding({
    kind: 'rule',
    analyticId: over.analyticId ?? 'cloudtrail-stop-logging',
    analyticName: 'CloudTrail stopped',
    title: 'CloudTrail logging stopped',
    severity: 'high',
    timeMs: NOW - DAY,
    windowStartMs: NOW - DAY - 60_000,
    accountId: '111122223333',
    region: 'us-east-1',
    principal: over.principal === undefined ? PRINCIPAL : over.principal,
    evidences: [],
  });
}

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
    assert.equal((errors.match as DetectorSuppression['match'] | null)?.insightType, 'ApiErrorRateInsight');
    assert.equal(
      insightSubject({ ...insight('action'), trailwatch: { ...insight('action').trailwatch, configVersion: 4 } }).configVersion,
      4,
    );
  });

  test('a finding’s key is its rule, account and principal, and so is its findings.suppressions match', () => {
    const s = findingSubject({ ...finding(), unmapped: { ...finding().unmapped, configVersion: '7' } });
    assert.equal(s.kind, 'finding');
    assert.deepEqual(s.match, { rule: 'cloudtrail-stop-logging', accountId: '111122223333', principal: PRINCIPAL });
    assert.equal(s.key, `finding|cloudtrail-stop-logging|111122223333|${PRINCIPAL}`);
    assert.equal(s.configVersion, 7);
    // Without a principal no match names the key alone: recorded only.
    const nobody = findingSubject(finding({ principal: null }));
    assert.equal(nobody.match, null);
    assert.match(judge([], [], [], POLICY, nobody).why, /no single principal: .* recorded only/);
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

describe('the feedback policy on a finding’s key', () => {
  const f = finding();
  const fs = findingSubject(f);
  const fVerdict = (n: number, v: Verdict = 'false-positive', s: FeedbackSubject = fs) =>
    newFeedbackRecord(s, { target: f.finding_info.uid, verdict: v, reason: `maintenance ${n}`, author: `sre${n}`, atMs: NOW - DAY + n });
  const judgeFinding = (feedback: FeedbackRecord[], current: FindingSuppression[] = [], s: FeedbackSubject = fs) =>
    evaluatePolicy(s, feedback, POLICY, { suppressions: current }, [], NOW);

  test('three false positives become a findings suppression of its rule, account and principal', () => {
    const out = judgeFinding([fVerdict(1), fVerdict(2), fVerdict(3)]);
    assert.deepEqual(out.suppression, {
      match: { rule: 'cloudtrail-stop-logging', accountId: '111122223333', principal: PRINCIPAL },
      reason: '3 false positives within 14 days: "maintenance 1" (sre1); "maintenance 2" (sre2); "maintenance 3" (sre3)',
      author: FEEDBACK_POLICY_AUTHOR,
      expires: new Date(NOW + 7 * DAY).toISOString().replace('.000Z', 'Z'),
    });
    // The suppression holds back this rule's findings by this principal, and no other's.
    const overrides = new FindingOverrides({ overrides: [], suppressions: [out.suppression as FindingSuppression] });
    assert.equal(overrides.judge(f).held, 'suppressed');
    assert.equal(overrides.judge(finding({ principal: 'arn:aws:iam::111122223333:user/other' })).held, null);
    assert.equal(overrides.judge(finding({ analyticId: 'cloudtrail-delete-trail' })).held, null);
    // Verdicts on an Insight key do not count toward a finding's.
    assert.equal(judgeFinding([fVerdict(1), fVerdict(2), verdict(3)]).suppression, null);
  });

  test('a true positive on the finding’s key vetoes', () => {
    const out = judgeFinding([fVerdict(1), fVerdict(2), fVerdict(3), fVerdict(4, 'true-positive')]);
    assert.equal(out.suppression, null);
    assert.match(out.why, /a true positive was given on this key at .* by sre4/);
  });

  test('an active findings suppression with the same match blocks; an expired one makes way', () => {
    const active: FindingSuppression = {
      match: { rule: 'cloudtrail-stop-logging', accountId: '111122223333', principal: PRINCIPAL },
      reason: 'change window',
      author: 'bob',
      expires: new Date(NOW + DAY).toISOString(),
    };
    assert.match(judgeFinding([fVerdict(1), fVerdict(2), fVerdict(3)], [active]).why, /already suppressed until .* \(bob\)/);
    const expired = { ...active, expires: new Date(NOW - DAY).toISOString() };
    assert.notEqual(judgeFinding([fVerdict(1), fVerdict(2), fVerdict(3)], [expired]).suppression, null);
  });

  test('* or ? in a rule id or principal is not written into a glob', () => {
    for (const s of [
      findingSubject(finding({ analyticId: 'custom-*' })),
      findingSubject(finding({ principal: 'arn:aws:iam::1:user/a?c' })),
    ]) {
      const out = judgeFinding(
        [fVerdict(1, 'false-positive', s), fVerdict(2, 'false-positive', s), fVerdict(3, 'false-positive', s)],
        [],
        s,
      );
      assert.equal(out.suppression, null);
      assert.match(out.why, /holds \* or \?, which a suppression reads as a glob/);
    }
  });

  test('the new version’s findings.suppressions gains it; the detector’s tuning and findings overrides go on unchanged', () => {
    const doc = documentOf(
      loadConfig({
        env: {},
        overrides: {
          detector: {
            scoreThreshold: 0.9,
            suppressions: [{ match: { action: 'X' }, reason: 'r', author: 'a', expires: '2999-01-01T00:00:00Z' }],
          },
          findings: {
            overrides: [{ match: { rule: 'noisy-*' }, severity: 'low' }],
            suppressions: [{ match: { rule: 'other' }, reason: 'human', author: 'alice', expires: '2999-01-01T00:00:00Z' }],
          },
        },
      }),
    );
    const added = judgeFinding([fVerdict(1), fVerdict(2), fVerdict(3)], [...suppressionsFor(doc, 'finding')] as FindingSuppression[])
      .suppression as FindingSuppression;
    const next = documentWithPolicySuppression(doc, 'finding', added);
    assert.deepEqual(next.detector, doc.detector);
    assert.deepEqual(next.findings.overrides, doc.findings.overrides);
    assert.deepEqual(
      next.findings.suppressions.map((s) => s.reason),
      ['human', added.reason],
    );
    assert.deepEqual(suppressionsFor(doc, 'insight'), doc.detector.suppressions);
  });
});
