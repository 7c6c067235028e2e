import assert from 'node:assert/strict';
import { test } from 'node:test';
import { insightType } from '../../src/contracts/schemas.ts';
import { type AnomalyFacts, buildInsight, sharedEventIdFor } from '../../src/emit/insight.ts';

const facts: AnomalyFacts = {
  state: 'Start',
  keyId: 'action|call|111122223333|us-east-1|ec2.amazonaws.com|RunInstances',
  scope: 'action',
  insightType: 'ApiCallRateInsight',
  accountId: '111122223333',
  region: 'us-east-1',
  service: 'ec2.amazonaws.com',
  action: 'RunInstances',
  principal: null,
  errorCode: null,
  startTimeMs: Date.UTC(2026, 2, 1, 1, 42),
  endTimeMs: null,
  bucketMs: 60_000,
  baselinePerMinute: 0.0686,
  insightPerMinute: 6,
  baselineMinutes: 10_080,
  score: 0.93,
  threshold: 0.6,
  contributors: [
    { attribute: 'userIdentityArn', insight: [{ value: 'arn:aws:sts::111122223333:assumed-role/ci', average: 6 }], baseline: [] },
  ],
};

test('a Start looks like a CloudTrail Insights record and fits the Avro contract', () => {
  const start = buildInsight(facts);
  assert.equal(start.eventTime, '2026-03-01T01:42:00Z');
  assert.equal(start.eventType, 'AwsCloudTrailInsight');
  assert.equal(start.eventCategory, 'Insight');
  assert.equal(start.insightDetails.insightContext.statistics.insightDuration, null);
  assert.equal(start.insightDetails.errorCode, null);
  assert.ok(insightType.isValid(start), 'Start must validate against schemas/Insight.avsc');
  assert.match(start.sharedEventID, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('End shares the sharedEventID, has its own eventID, its end time and its duration', () => {
  const start = buildInsight(facts);
  const end = buildInsight({ ...facts, state: 'End', endTimeMs: facts.startTimeMs + 11 * 60_000 });
  assert.equal(end.sharedEventID, start.sharedEventID);
  assert.notEqual(end.eventID, start.eventID);
  assert.equal(end.eventTime, '2026-03-01T01:53:00Z');
  assert.equal(end.insightDetails.insightContext.statistics.insightDuration, 11);
  assert.ok(insightType.isValid(end));
});

test('ids depend on the key and the start, nothing else', () => {
  assert.equal(sharedEventIdFor('k', 1), sharedEventIdFor('k', 1));
  assert.notEqual(sharedEventIdFor('k', 1), sharedEventIdFor('k', 2));
  assert.notEqual(sharedEventIdFor('k', 1), sharedEventIdFor('j', 1));
});

test('errorCode is only set on error-rate Insights', () => {
  const e = buildInsight({ ...facts, insightType: 'ApiErrorRateInsight', errorCode: 'AccessDenied' });
  assert.equal(e.insightDetails.errorCode, 'AccessDenied');
  assert.equal(buildInsight({ ...facts, errorCode: 'AccessDenied' }).insightDetails.errorCode, null);
});
