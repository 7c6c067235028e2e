import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AuditEvent } from '../../../src/contracts/types.ts';
import { normalizedRecord, RuleSet, ruleFinding } from '../../../src/detect/rules/evaluate.ts';
import type { Rule } from '../../../src/detect/rules/load.ts';
import { normalizeCloudTrail } from '../../../src/ingest/cloudtrail.ts';

const record = {
  eventVersion: '1.09',
  userIdentity: { type: 'IAMUser', arn: 'arn:aws:iam::111122223333:user/alice', accountId: '111122223333', accessKeyId: 'AKIAEXAMPLE' },
  eventTime: '2026-12-01T10:00:00Z',
  eventSource: 'ec2.amazonaws.com',
  eventName: 'ModifySnapshotAttribute',
  awsRegion: 'us-east-1',
  sourceIPAddress: '198.51.100.7',
  userAgent: 'aws-cli/2',
  requestParameters: { snapshotId: 'snap-1', createVolumePermission: { add: { items: [{ group: 'all' }] } } },
  eventID: 'e-1',
  eventType: 'AwsApiCall',
  recipientAccountId: '111122223333',
};

/** A rule that records which record it was given. */
function probe(id: string, fields: string[], test: (r: Record<string, unknown>) => boolean, seen: Array<Record<string, unknown>>): Rule {
  return {
    id,
    title: id,
    severity: 'high',
    kind: 'sigma',
    source: `${id}.yml`,
    tags: ['attack.t1537'],
    techniques: ['T1537'],
    fields,
    matches: (r) => {
      seen.push(r);
      return test(r);
    },
    explain: () => ({ matched: false, reasons: [] }),
  };
}

describe('RuleSet', () => {
  test('the normalized record answers the fields the event carries', () => {
    const r = normalizedRecord(normalizeCloudTrail(record));
    assert.equal(r.eventName, 'ModifySnapshotAttribute');
    assert.equal(r.eventSource, 'ec2.amazonaws.com');
    assert.equal(r.eventType, 'AwsApiCall');
    assert.deepEqual(r.userIdentity, {
      type: 'IAMUser',
      arn: 'arn:aws:iam::111122223333:user/alice',
      accountId: '111122223333',
      accessKeyId: 'AKIAEXAMPLE',
    });
    assert.equal(r.requestParameters, undefined);
  });

  test('raw is parsed only for a rule that reads a field the normalized event lacks, once per event', () => {
    const seen: Array<Record<string, unknown>> = [];
    const byName = probe('by-name', ['eventName'], (r) => r.eventName === 'ModifySnapshotAttribute', seen);
    const shared = probe(
      'shared-publicly',
      ['eventName', 'requestParameters.createVolumePermission.add.items.group'],
      (r) => JSON.stringify(r.requestParameters ?? null).includes('"group":"all"'),
      seen,
    );
    const rules = new RuleSet([byName, shared, shared]);
    const withRaw = normalizeCloudTrail(record, { raw: true });
    assert.deepEqual(
      rules.match(withRaw).map((r) => r.id),
      ['by-name', 'shared-publicly', 'shared-publicly'],
    );
    assert.equal(seen[0]?.requestParameters, undefined, 'the name rule saw the normalized record');
    assert.ok(seen[1]?.requestParameters, 'the parameter rule saw the raw record');
    assert.equal(seen[1], seen[2], 'raw parsed once for the event');

    // Without raw (publish --no-raw), a rule on request parameters cannot match; nothing throws.
    assert.deepEqual(
      rules.match(normalizeCloudTrail(record)).map((r) => r.id),
      ['by-name'],
    );
  });

  test('a raw that is not a JSON object is counted and the normalized record used', () => {
    const seen: Array<Record<string, unknown>> = [];
    const rules = new RuleSet([probe('p', ['requestParameters.x'], () => true, seen)]);
    const event: AuditEvent = { ...normalizeCloudTrail(record), raw: '[not json' };
    assert.equal(rules.matchAll([event]).length, 1);
    assert.equal(rules.rawUnparsed, 1);
    assert.equal(seen[0]?.eventName, 'ModifySnapshotAttribute');
  });

  test('a match becomes a Finding naming the rule, the call and its technique', () => {
    const event = normalizeCloudTrail(record);
    const rule = probe('snapshot-shared', ['eventName'], () => true, []);
    const f = ruleFinding({ rule, event }, 'trailwatch.findings');
    assert.equal(f.class_uid, 2004);
    assert.equal(f.finding_info.analytic.uid, 'snapshot-shared');
    assert.equal(f.api?.operation, 'ModifySnapshotAttribute');
    assert.equal(f.severity_id, 4);
    assert.deepEqual(
      f.attacks.map((a) => a.technique.uid),
      ['T1537'],
    );
    assert.equal(ruleFinding({ rule, event }, 'trailwatch.findings').finding_info.uid, f.finding_info.uid, 'deterministic');
  });
});
