import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { assertAuditEvent, auditEventType } from '../../src/contracts/schemas.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { BadRecordError, ErrorCodes } from '../../src/errors.ts';
import { MAX_ERROR_MESSAGE_CHARS, normalizeCloudTrail, principalOf } from '../../src/ingest/cloudtrail.ts';
import { FIXTURES_DIR, INVICTUS_DIR, loadDeliveriesDirectly, sharedCloudTrailMissing } from '../helpers/shared.ts';

const DELIVERIES = join(FIXTURES_DIR, 'cloudtrail/deliveries');

type Rec = Record<string, unknown> & { userIdentity?: Record<string, unknown> };

function fixtureRecords(name: string): unknown[] {
  return (JSON.parse(readFileSync(join(DELIVERIES, name), 'utf8')) as { Records: unknown[] }).Records;
}

const ALLOWED_ATTRIBUTES = new Set([
  'eventType',
  'eventCategory',
  'managementEvent',
  'requestId',
  'sessionName',
  'invokedBy',
  'accessKeyId',
  'userIdentityArn',
  'errorMessage',
]);

function roundTrips(event: AuditEvent): void {
  assert.equal(assertAuditEvent(event), event);
  // avsc decodes into instances of a generated record class: compare the data, not the prototype.
  assert.deepEqual(JSON.parse(JSON.stringify(auditEventType.fromBuffer(auditEventType.toBuffer(event)))), event);
}

function normalizeError(record: unknown): BadRecordError {
  try {
    normalizeCloudTrail(record);
  } catch (err) {
    assert.ok(err instanceof BadRecordError, `expected a BadRecordError, got ${String(err)}`);
    assert.equal(err.code, ErrorCodes.NORMALIZE);
    return err;
  }
  assert.fail('expected normalizeCloudTrail to throw');
}

describe('normalizeCloudTrail on handcrafted fixtures', () => {
  const records = fixtureRecords('identities.json');
  const events = records.map((r) => normalizeCloudTrail(r));
  // First record of each type (the last fixture record is a second IAMUser, the failed call).
  const byType = new Map<unknown, AuditEvent>();
  events.forEach((e, i) => {
    const type = (records[i] as Rec).userIdentity?.type ?? '(none)';
    if (!byType.has(type)) byType.set(type, e);
  });
  const eventAt = (i: number): AuditEvent => {
    const e = events[i];
    assert.ok(e);
    return e;
  };

  test('one record per userIdentity type, each with its documented principal', () => {
    const expected: [type: string, principal: string, principalType: string, sessionName?: string][] = [
      ['Root', 'arn:aws:iam::111122223333:root', 'Root'],
      ['IAMUser', 'arn:aws:iam::111122223333:user/ops/alice', 'IAMUser'],
      ['AssumedRole', 'arn:aws:sts::111122223333:assumed-role/deploy-role', 'AssumedRole', 'ci-run-42'],
      ['FederatedUser', 'arn:aws:sts::111122223333:federated-user/carol', 'FederatedUser'],
      ['AWSAccount', '444455556666', 'AWSAccount', 'partner-sync'],
      ['AWSService', 'config.amazonaws.com', 'AWSService'],
      [
        'IdentityCenterUser',
        'arn:aws:identitystore::111122223333:identitystore/d-0000fixture/user/0a1b2c3d-1111-2222-3333-444455556666',
        'IdentityCenterUser',
      ],
      ['SAMLUser', 'FixtureIdpHash0000=:dana@example.com', 'SAMLUser'],
      ['WebIdentityUser', 'accounts.example.com:fixture-app:user-1234', 'WebIdentityUser'],
      ['Unknown', 'fixture-unknown-principal', 'Unknown'],
      ['(none)', 'unknown', 'Unknown'],
    ];
    for (const [type, principal, principalType, sessionName] of expected) {
      const e = byType.get(type);
      assert.ok(e, `fixture has a ${type} record`);
      assert.equal(e.principal, principal, type);
      assert.equal(e.principalType, principalType, type);
      assert.equal(e.attributes.sessionName, sessionName, `${type} sessionName`);
    }
  });

  test('maps the top-level fields', () => {
    const e = eventAt(2); // AssumedRole, a write
    assert.deepEqual(e, {
      eventId: '00000000-0000-4000-8000-000000000003',
      eventTimeMs: Date.UTC(2024, 2, 1, 9, 3, 0),
      source: 'aws.cloudtrail',
      accountId: '111122223333',
      region: 'eu-west-1',
      principal: 'arn:aws:sts::111122223333:assumed-role/deploy-role',
      principalType: 'AssumedRole',
      service: 'widgets.amazonaws.com',
      action: 'DescribeWidgets',
      readOnly: false,
      errorCode: null,
      sourceIp: '198.51.100.13',
      userAgent: 'fixture-agent/1.0',
      attributes: {
        eventType: 'AwsApiCall',
        eventCategory: 'Management',
        managementEvent: 'true',
        requestId: 'req-0003',
        sessionName: 'ci-run-42',
        accessKeyId: 'ASIAFIXTUREDEPLOY001',
        userIdentityArn: 'arn:aws:sts::111122223333:assumed-role/deploy-role/ci-run-42',
      },
      raw: null,
    });
  });

  test('raw: the whole record travels as JSON when asked, and only then', () => {
    for (const record of records) {
      const kept = normalizeCloudTrail(record, { raw: true });
      assert.deepEqual(JSON.parse(kept.raw ?? 'null'), record);
      assert.equal(normalizeCloudTrail(record).raw, null);
      assert.deepEqual({ ...kept, raw: null }, normalizeCloudTrail(record), 'nothing else changes');
    }
  });

  test('an AWSService call keeps the service in invokedBy; an AWSAccount call is attributed to the calling account', () => {
    assert.equal(byType.get('AWSService')?.attributes.invokedBy, 'config.amazonaws.com');
    const cross = byType.get('AWSAccount');
    assert.equal(cross?.accountId, '111122223333', 'accountId is the recipient, not the caller');
    assert.equal(cross?.principal, '444455556666');
  });

  test('readOnly: missing → null, the string "false" → false, boolean kept', () => {
    assert.equal(byType.get('Root')?.readOnly, null);
    assert.equal(eventAt(11).readOnly, false);
    assert.equal(byType.get('IAMUser')?.readOnly, true);
  });

  test('a failed call carries errorCode and an errorMessage cut to 256 characters', () => {
    const e = eventAt(11);
    const raw = (records[11] as Rec).errorMessage as string;
    assert.ok(raw.length > MAX_ERROR_MESSAGE_CHARS);
    assert.equal(e.errorCode, 'AccessDenied');
    assert.equal(e.attributes.errorMessage, raw.slice(0, MAX_ERROR_MESSAGE_CHARS));
    assert.equal(MAX_ERROR_MESSAGE_CHARS, 256);
  });

  test('never copies requestParameters or responseElements', () => {
    for (const e of events) {
      assert.doesNotMatch(JSON.stringify(e), /DO-NOT-COPY/);
      for (const key of Object.keys(e.attributes)) assert.ok(ALLOWED_ATTRIBUTES.has(key), `unexpected attribute ${key}`);
      for (const value of Object.values(e.attributes)) assert.notEqual(value, '', 'only keys with values');
    }
  });

  test('every fixture event is a valid AuditEvent and round-trips through Avro', () => {
    for (const e of events) roundTrips(e);
  });
});

describe('normalizeCloudTrail rejects records it cannot use, naming the field', () => {
  const base = (fixtureRecords('gaps.json')[0] ?? {}) as Rec;
  const without = (field: string): Rec => {
    const copy = { ...base };
    delete copy[field];
    return copy;
  };

  test('not an object', () => {
    assert.equal(normalizeError('not a record').message, 'record is not an object (got a string)');
    assert.equal(normalizeError(null).message, 'record is not an object (got null)');
    assert.equal(normalizeError([base]).message, 'record is not an object (got an array)');
  });

  test('missing required fields', () => {
    for (const field of ['eventID', 'eventTime', 'eventSource', 'eventName', 'awsRegion']) {
      assert.equal(normalizeError(without(field)).message, `missing ${field}`);
    }
    assert.equal(normalizeError({ ...base, eventName: 42 }).message, 'eventName is not a string (got a number)');
    assert.equal(normalizeError({ ...base, eventSource: '' }).message, 'eventSource is empty');
  });

  test('unparseable or zone-less eventTime', () => {
    assert.equal(normalizeError({ ...base, eventTime: 'last tuesday' }).message, 'eventTime "last tuesday" is not an ISO-8601 UTC time');
    // Without a zone Date.parse would read local time: a silent shift by the host's offset.
    assert.match(normalizeError({ ...base, eventTime: '2024-03-01T09:00:00' }).message, /^eventTime .* is not an ISO-8601 UTC time$/);
    assert.equal(normalizeError({ ...base, eventTime: 1709283600000 }).message, 'eventTime is not a string (got a number)');
    assert.equal(
      normalizeCloudTrail({ ...base, eventTime: '2024-03-01T10:00:00.250+01:00' }).eventTimeMs,
      Date.UTC(2024, 2, 1, 9, 0, 0, 250),
    );
  });

  test('no account at all, or a userIdentity that is not an object', () => {
    const noAccount = without('recipientAccountId');
    noAccount.userIdentity = { type: 'AWSService', invokedBy: 'config.amazonaws.com' };
    assert.equal(normalizeError(noAccount).message, 'missing recipientAccountId (and no userIdentity.accountId to fall back on)');
    assert.equal(normalizeError({ ...base, userIdentity: 'frank' }).message, 'userIdentity is not an object (got a string)');
  });

  test('accountId falls back to userIdentity.accountId', () => {
    assert.equal(normalizeCloudTrail(without('recipientAccountId')).accountId, '111122223333');
  });
});

describe('principalOf', () => {
  test('an AssumedRole without an ARN is rebuilt from its session issuer', () => {
    assert.deepEqual(
      principalOf({
        type: 'AssumedRole',
        principalId: 'AROAEXAMPLE:night-batch',
        accountId: '111122223333',
        sessionContext: {
          sessionIssuer: { type: 'Role', arn: 'arn:aws-cn:iam::111122223333:role/batch/batch-role', userName: 'batch-role' },
        },
      }),
      { principal: 'arn:aws-cn:sts::111122223333:assumed-role/batch-role', principalType: 'AssumedRole', sessionName: 'night-batch' },
    );
  });

  test('an IAMUser without an ARN (console sign-in) gets its user ARN back', () => {
    assert.deepEqual(
      principalOf({ type: 'IAMUser', principalId: 'AIDAEXAMPLE', accountId: '111122223333', accessKeyId: '', userName: 'gina' }),
      {
        principal: 'arn:aws:iam::111122223333:user/gina',
        principalType: 'IAMUser',
        sessionName: null,
      },
    );
  });

  test('a service event without a type lands on the service', () => {
    assert.deepEqual(principalOf({ accountId: '111122223333', invokedBy: 'secretsmanager.amazonaws.com' }), {
      principal: 'secretsmanager.amazonaws.com',
      principalType: 'Unknown',
      sessionName: null,
    });
  });

  test('anything else falls back without throwing', () => {
    assert.deepEqual(principalOf(undefined), { principal: 'unknown', principalType: 'Unknown', sessionName: null });
    assert.deepEqual(principalOf('x'), { principal: 'unknown', principalType: 'Unknown', sessionName: null });
    assert.equal(principalOf({ type: 'Directory', arn: 'arn:aws:ds::111122223333:user/h' }).principal, 'arn:aws:ds::111122223333:user/h');
    assert.equal(principalOf({ type: 'Root', accountId: '111122223333' }).principal, 'arn:aws:iam::111122223333:root');
  });

  test('errorMessage truncation never splits a surrogate pair', () => {
    const base = fixtureRecords('gaps.json')[0] as Rec;
    const message = `${'x'.repeat(MAX_ERROR_MESSAGE_CHARS - 1)}😀 and more`;
    const e = normalizeCloudTrail({ ...base, errorCode: 'Oops', errorMessage: message });
    assert.equal(e.attributes.errorMessage, 'x'.repeat(MAX_ERROR_MESSAGE_CHARS - 1));
    roundTrips(e);
  });
});

describe('normalizeCloudTrail on the shared invictus CloudTrail data', () => {
  const missing = sharedCloudTrailMissing();
  const deliveries = missing === null ? loadDeliveriesDirectly(join(INVICTUS_DIR, 'CloudTrail')) : [];
  const pairs = deliveries.flatMap(({ records }) =>
    records.map((record) => ({ record: record as Rec, event: normalizeCloudTrail(record) })),
  );

  test('all 2,900 records normalize, validate against AuditEvent and round-trip through Avro', (t) => {
    if (missing !== null) return t.skip(missing);
    assert.equal(deliveries.length, 55);
    assert.equal(pairs.length, 2900);
    for (const { event } of pairs) {
      roundTrips(event);
      for (const key of Object.keys(event.attributes)) assert.ok(ALLOWED_ATTRIBUTES.has(key), `unexpected attribute ${key}`);
    }
    assert.equal(new Set(pairs.map((p) => p.event.eventId)).size, 2900);
  });

  test('the userIdentity types present, and how many of each', (t) => {
    if (missing !== null) return t.skip(missing);
    const counts: Record<string, number> = {};
    for (const { event } of pairs) counts[event.principalType] = (counts[event.principalType] ?? 0) + 1;
    assert.deepEqual(counts, { IAMUser: 2748, AssumedRole: 76, AWSService: 34, Unknown: 42 });
  });

  test('an AssumedRole principal has no session name; the session is in attributes', (t) => {
    if (missing !== null) return t.skip(missing);
    const assumed = pairs.filter((p) => p.record.userIdentity?.type === 'AssumedRole');
    assert.equal(assumed.length, 76);
    for (const { record, event } of assumed) {
      const arn = record.userIdentity?.arn as string;
      const session = arn.split('/').at(-1);
      assert.match(event.principal, /^arn:aws:sts::\d{12}:assumed-role\/[^/]+$/);
      assert.equal(`${event.principal}/${session}`, arn);
      assert.equal(event.attributes.sessionName, session);
      assert.equal(event.attributes.userIdentityArn, arn);
    }
    const example = assumed.find((p) => p.event.principal.endsWith('/stratus-red-team-ec2-get-password-data-role'));
    assert.equal(example?.event.attributes.sessionName, 'aws-go-sdk-1688990082523310002');
  });

  test('an AWSService principal is the service', (t) => {
    if (missing !== null) return t.skip(missing);
    const services = pairs.filter((p) => p.record.userIdentity?.type === 'AWSService');
    assert.equal(services.length, 34);
    for (const { record, event } of services) {
      assert.equal(event.principal, record.userIdentity?.invokedBy);
      assert.match(event.principal, /\.amazonaws\.com$/);
    }
    assert.deepEqual(
      new Set(services.map((p) => p.event.principal)),
      new Set([
        'inspector2.amazonaws.com',
        'ec2.amazonaws.com',
        'cloudtrail.amazonaws.com',
        'rds.amazonaws.com',
        'rolesanywhere.amazonaws.com',
        'lambda.amazonaws.com',
      ]),
    );
  });

  test('service events without a userIdentity type are attributed to the invoking service', (t) => {
    if (missing !== null) return t.skip(missing);
    const untyped = pairs.filter((p) => p.record.userIdentity?.type === undefined);
    assert.equal(untyped.length, 42);
    for (const { record, event } of untyped) {
      assert.equal(record.eventType, 'AwsServiceEvent');
      assert.equal(event.principalType, 'Unknown');
      assert.equal(event.principal, record.userIdentity?.invokedBy);
    }
  });

  test('an IAMUser sign-in without an ARN gets the same principal as the user’s other calls', (t) => {
    if (missing !== null) return t.skip(missing);
    const noArn = pairs.filter((p) => p.record.userIdentity?.type === 'IAMUser' && p.record.userIdentity.arn === undefined);
    assert.equal(noArn.length, 1);
    const [only] = noArn;
    assert.equal(only?.event.action, 'CheckMfa');
    assert.equal(only?.event.attributes.accessKeyId, undefined, 'an empty accessKeyId is left out');
    const others = new Set(
      pairs.filter((p) => p.record.userIdentity?.userName === 'bert-jan' && p.record.userIdentity.arn).map((p) => p.event.principal),
    );
    assert.deepEqual(others, new Set([only?.event.principal]));
  });

  test('error records carry errorCode; readOnly is kept as given', (t) => {
    if (missing !== null) return t.skip(missing);
    const failed = pairs.filter((p) => p.record.errorCode !== undefined);
    assert.equal(failed.length, 300);
    for (const { record, event } of failed) {
      assert.equal(event.errorCode, record.errorCode);
      assert.ok((event.attributes.errorMessage?.length ?? 0) <= MAX_ERROR_MESSAGE_CHARS);
    }
    const denied = failed.find((p) => p.event.principal.endsWith('/stratus-red-team-ec2-get-password-data-role'));
    assert.equal(denied?.event.errorCode, 'Client.UnauthorizedOperation');
    assert.equal(pairs.filter((p) => p.event.errorCode === null).length, 2600);
    for (const { record, event } of pairs) assert.equal(event.readOnly, record.readOnly);
    assert.equal(pairs.filter((p) => p.event.readOnly === false).length, 574);
  });
});
