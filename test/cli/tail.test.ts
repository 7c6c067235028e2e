import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backtestEvents } from '../../src/backtest/backtest.ts';
import {
  actionTests,
  findingLine,
  findingMatches,
  insightLine,
  insightMatches,
  principalTests,
  type TailFilter,
  textMatcher,
  typeOption,
} from '../../src/cli/commands/tail.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Insight } from '../../src/contracts/types.ts';
import { buildFinding } from '../../src/emit/finding.ts';
import { spikeEvents } from '../backtest/fixtures.ts';

/** The Insights of the committed demo spike (a deploy role's RunInstances burst, then denied TerminateInstances). */
const INSIGHTS: Insight[] = backtestEvents(spikeEvents(), loadConfig({ env: {} }).detector).insights;

const ROLE = 'arn:aws:sts::123456789012:assumed-role/deploy-pipeline';

function find(state: string, scope: string, action: string, type = 'ApiCallRateInsight'): Insight {
  const found = INSIGHTS.find(
    (i) =>
      i.insightDetails.state === state &&
      i.trailwatch.scope === scope &&
      i.insightDetails.eventName === action &&
      i.insightDetails.insightType === type,
  );
  assert.ok(found, `${state} ${scope} ${action} ${type} in the spike's Insights`);
  return found;
}

const PLAIN = { color: false };
const T0 = Date.UTC(2026, 2, 1, 9, 0, 0);

const FINDING = buildFinding({
  kind: 'rule',
  analyticId: 'sigma-0001',
  analyticName: 'AWS IAM access key created for another user',
  title: 'Access key created',
  severity: 'high',
  timeMs: T0 + 2_000,
  windowStartMs: T0,
  accountId: '111122223333',
  region: 'eu-west-1',
  principal: 'arn:aws:sts::111122223333:assumed-role/deploy-role',
  principalType: 'AssumedRole',
  sessionName: 'ci-run-42',
  api: { operation: 'CreateAccessKey', service: 'iam.amazonaws.com' },
  sourceIp: '198.51.100.7',
  evidences: [],
  techniques: [],
  extras: {},
});

describe('tail: human lines', () => {
  test('a Start: state, event time, type, scope, key, rate vs baseline, score, id', () => {
    const start = find('Start', 'principalAction', 'RunInstances');
    assert.equal(
      insightLine(start, PLAIN),
      `Start   2026-01-05 09:02:00Z  ApiCallRate   principalAction  ${ROLE} ec2:RunInstances  47/min vs 1.06/min  score 0.79  ${start.sharedEventID.slice(0, 8)}`,
    );
  });

  test('an End says how long it lasted and shares the id of its Start', () => {
    const start = find('Start', 'action', 'RunInstances');
    const end = find('End', 'action', 'RunInstances');
    assert.equal(
      insightLine(end, PLAIN),
      `End     2026-01-05 09:06:00Z  ApiCallRate   action           123456789012 us-east-1 ec2:RunInstances  38.8/min vs 1.06/min for 4 min  score 0.79  ${start.sharedEventID.slice(0, 8)}`,
    );
  });

  test('an error-rate Insight names its error code', () => {
    const line = insightLine(find('Start', 'principalAction', 'TerminateInstances', 'ApiErrorRateInsight'), PLAIN);
    assert.match(
      line,
      /^Start {3}2026-01-05 09:06:00Z {2}ApiErrorRate {2}principalAction {2}\S+ ec2:TerminateInstances \(UnauthorizedOperation\) {2}20\/min vs 0\/min/,
    );
  });

  test('colour only when asked: Start red, End green, the key bold, the id dim', () => {
    // ESC shown as "ESC", so the expectations read (and lint) as text.
    const shown = (i: Insight) => insightLine(i, { color: true }).replaceAll('\u001b', 'ESC');
    const start = shown(find('Start', 'action', 'RunInstances'));
    const end = shown(find('End', 'action', 'RunInstances'));
    assert.match(start, /^ESC\[31mStart ESC\[0m {2}2026/);
    assert.match(end, /^ESC\[32mEnd {3}ESC\[0m {2}2026/);
    assert.match(start, /ESC\[1m123456789012 us-east-1 ec2:RunInstancesESC\[0m/);
    assert.match(start, /ESC\[2m[0-9a-f]{8}ESC\[0m$/);
    for (const i of INSIGHTS) assert.ok(!insightLine(i, PLAIN).includes('\u001b'));
  });

  test('a finding: activity, time, kind, severity, principal and action, title, count, id', () => {
    assert.equal(
      findingLine(FINDING, PLAIN),
      `Create  2026-03-01 09:00:02Z  rule          high             arn:aws:sts::111122223333:assumed-role/deploy-role iam:CreateAccessKey  "Access key created"  ×1  ${FINDING.finding_info.uid.slice(0, 8)}`,
    );
    assert.ok(findingLine(FINDING, { color: true }).includes(`\u001b[31m${'high'.padEnd(15)}\u001b[0m`));
  });
});

describe('tail: filters', () => {
  const matching = (filter: TailFilter, recordMs = 0) =>
    INSIGHTS.filter((i) => insightMatches(i, filter, recordMs)).map(
      (i) => `${i.insightDetails.state} ${i.trailwatch.scope} ${i.insightDetails.eventName} ${i.insightDetails.insightType}`,
    );

  test('--type: full names, short names, finding kinds; anything else is refused with the list', () => {
    assert.deepEqual(typeOption(['call', 'ApiErrorRate'], ''), new Set(['ApiCallRateInsight', 'ApiErrorRateInsight']));
    assert.deepEqual(typeOption(['apierrorrateinsight,first-seen'], ''), new Set(['ApiErrorRateInsight', 'first-seen']));
    assert.equal(typeOption(undefined, ''), undefined);
    assert.throws(() => typeOption(['spike'], ''), /--type: unknown type "spike" \(one of ApiCallRateInsight, ApiErrorRateInsight, rule,/);
    const errors = matching({ types: typeOption(['error'], '') as Set<string> });
    assert.equal(errors.length, 4);
    assert.ok(errors.every((e) => e.endsWith('ApiErrorRateInsight')));
  });

  test('patterns: a glob on the whole value, or a part of it; case-insensitive', () => {
    const t = textMatcher('*Deploy-*');
    assert.equal(t(ROLE), true);
    assert.equal(textMatcher('deploy-*')(ROLE), false, 'a glob is on the whole value');
    assert.equal(textMatcher('DEPLOY-PIPE')(ROLE), true);
    assert.equal(textMatcher('Run?nstances')('RunInstances'), true);
    assert.equal(textMatcher('Run?nstances')('RunInstancesX'), false);
  });

  test('--principal: a principal × action Insight by its principal, a per-action one by whom it attributes', () => {
    assert.equal(matching({ principal: principalTests(['deploy-pipeline']) }).length, INSIGHTS.length);
    assert.deepEqual(matching({ principal: principalTests(['*:user/bob']) }), []);
    const perAction = find('Start', 'action', 'RunInstances');
    assert.equal(perAction.trailwatch.principal, null);
    assert.equal(insightMatches(perAction, { principal: principalTests(['*deploy-pipeline']) }, 0), true);
  });

  test('--action: the eventName, or service:action with a colon', () => {
    const run = matching({ action: actionTests(['Run*']) });
    assert.equal(run.length, 4);
    assert.ok(run.every((r) => r.includes(' RunInstances ')));
    assert.deepEqual(matching({ action: actionTests(['ec2:Run*']) }), run);
    assert.deepEqual(matching({ action: actionTests(['ec2.amazonaws.com:RunInstances']) }), run);
    assert.deepEqual(matching({ action: actionTests(['iam:*']) }), []);
    assert.equal(matching({ action: actionTests(['instances']) }).length, INSIGHTS.length);
    assert.deepEqual(matching({ action: actionTests(['Run*', 'Terminate*']) }).length, INSIGHTS.length);
  });

  test('filters add up; --since is on the record time', () => {
    const filter: TailFilter = {
      types: new Set(['ApiErrorRateInsight']),
      principal: principalTests(['deploy-pipeline']),
      action: actionTests(['Terminate*']),
    };
    // The per-action ones too: the denied calls are all the deploy role's, so it is their attributed principal.
    assert.deepEqual(matching(filter), [
      'Start principalAction TerminateInstances ApiErrorRateInsight',
      'Start action TerminateInstances ApiErrorRateInsight',
      'End principalAction TerminateInstances ApiErrorRateInsight',
      'End action TerminateInstances ApiErrorRateInsight',
    ]);
    assert.deepEqual(matching({ ...filter, principal: principalTests(['someone-else']) }), []);
    assert.equal(matching({ sinceMs: 1_000 }, 999).length, 0);
    assert.equal(matching({ sinceMs: 1_000 }, 1_000).length, INSIGHTS.length);
  });

  test('findings: by kind, actor and API', () => {
    assert.equal(findingMatches(FINDING, { types: new Set(['rule']) }, 0), true);
    assert.equal(findingMatches(FINDING, { types: new Set(['breadth', 'ApiCallRateInsight']) }, 0), false);
    assert.equal(findingMatches(FINDING, { principal: principalTests(['deploy-role']) }, 0), true);
    assert.equal(findingMatches(FINDING, { principal: principalTests(['ci-role']) }, 0), false);
    assert.equal(findingMatches(FINDING, { action: actionTests(['iam:Create*']) }, 0), true);
    assert.equal(findingMatches(FINDING, { action: actionTests(['Delete*']) }, 0), false);
    assert.equal(findingMatches(FINDING, { sinceMs: 5 }, 4), false);
  });
});
