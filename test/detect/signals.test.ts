import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { DetectionEngine } from '../../src/detect/engine.ts';
import { DEFAULT_CATALOG } from '../../src/detect/rules/catalog.ts';
import { enabledSignals, keyId, qualifierOf, type ReadFilter, SIGNALS, signalOf } from '../../src/detect/signals.ts';

const T0 = Date.UTC(2026, 0, 5);

function event(over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    eventId: 'e1',
    eventTimeMs: T0,
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
    userAgent: 'aws-cli',
    attributes: {},
    ...over,
  };
}

const writesOnly: ReadFilter = { includeReadOnly: false, sensitiveReads: null };
const call = signalOf('ApiCallRateInsight');
const error = signalOf('ApiErrorRateInsight');

describe('the signal table', () => {
  test('one entry per insight type, each with its own tag', () => {
    assert.deepEqual(
      SIGNALS.map((s) => s.insightType),
      ['ApiCallRateInsight', 'ApiErrorRateInsight'],
    );
    assert.equal(new Set(SIGNALS.map((s) => s.tag)).size, SIGNALS.length);
    for (const s of SIGNALS) assert.equal(signalOf(s.insightType), s);
    assert.throws(() => signalOf('NoSuchInsight' as never), /no signal type/);
  });

  test('key ids keep the format checkpoints were written with', () => {
    assert.equal(
      keyId('action', 'ApiCallRateInsight', 'A', 'us-east-1', 'P', 'ec2.amazonaws.com', 'RunInstances', null),
      'action|call|A|us-east-1|ec2.amazonaws.com|RunInstances',
    );
    assert.equal(
      keyId('principalAction', 'ApiCallRateInsight', 'A', 'us-east-1', 'P', 'ec2.amazonaws.com', 'RunInstances', null),
      'principalAction|call|A|P|ec2.amazonaws.com|RunInstances',
    );
    assert.equal(
      keyId('action', 'ApiErrorRateInsight', 'A', 'eu-west-1', null, 's3.amazonaws.com', 'GetObject', 'AccessDenied'),
      'action|error|A|eu-west-1|s3.amazonaws.com|GetObject|AccessDenied',
    );
    assert.equal(
      keyId('principalAction', 'ApiErrorRateInsight', 'A', 'eu-west-1', 'P', 's3.amazonaws.com', 'GetObject', 'AccessDenied'),
      'principalAction|error|A|P|s3.amazonaws.com|GetObject|AccessDenied',
    );
  });

  test('the call rate counts writes; reads with includeReadOnly, and the catalog’s sensitive reads always', () => {
    assert.equal(qualifierOf(call, event(), writesOnly), null);
    assert.equal(qualifierOf(call, event({ readOnly: true }), writesOnly), undefined);
    assert.equal(qualifierOf(call, event({ readOnly: true }), { includeReadOnly: true, sensitiveReads: null }), null);
    const secret = event({ readOnly: true, service: 'secretsmanager.amazonaws.com', action: 'GetSecretValue' });
    assert.equal(qualifierOf(call, secret, writesOnly), undefined);
    assert.equal(qualifierOf(call, secret, { includeReadOnly: false, sensitiveReads: DEFAULT_CATALOG }), null);
    assert.equal(qualifierOf(call, event({ readOnly: true }), { includeReadOnly: false, sensitiveReads: DEFAULT_CATALOG }), undefined);
  });

  test('the error rate counts an event under its error code, reads and writes alike', () => {
    assert.equal(qualifierOf(error, event(), writesOnly), undefined);
    assert.equal(qualifierOf(error, event({ errorCode: '' }), writesOnly), undefined);
    assert.equal(qualifierOf(error, event({ errorCode: 'AccessDenied', readOnly: true }), writesOnly), 'AccessDenied');
    assert.ok(error.qualifier === 'errorCode' && call.qualifier === null);
  });

  test('attributions: the error rate leaves out the error code (it is the key)', () => {
    assert.deepEqual(call.attributes, ['userIdentityArn', 'userAgent', 'errorCode']);
    assert.deepEqual(error.attributes, ['userIdentityArn', 'userAgent']);
    for (const s of SIGNALS) assert.equal(s.valueModel, 'counts');
  });

  test('detector.insightTypes picks entries, in table order', () => {
    assert.deepEqual(
      enabledSignals({ apiCallRate: true, apiErrorRate: true }).map((s) => s.tag),
      ['call', 'error'],
    );
    assert.deepEqual(
      enabledSignals({ apiCallRate: false, apiErrorRate: true }).map((s) => s.tag),
      ['error'],
    );
    assert.deepEqual(enabledSignals({ apiCallRate: false, apiErrorRate: false }), []);
  });

  test('the engine counts an event towards every enabled entry, per action then per principal, in table order', () => {
    const config = loadConfig({ env: {} }).detector;
    const engine = new DetectionEngine(config);
    engine.process([event({ errorCode: 'Throttling' }), event({ eventId: 'e2', readOnly: true })], T0);
    assert.deepEqual(engine.keyIds(), [
      'action|call|111122223333|us-east-1|ec2.amazonaws.com|RunInstances',
      'action|error|111122223333|us-east-1|ec2.amazonaws.com|RunInstances|Throttling',
      'principalAction|call|111122223333|arn:aws:iam::111122223333:user/alice|ec2.amazonaws.com|RunInstances',
      'principalAction|error|111122223333|arn:aws:iam::111122223333:user/alice|ec2.amazonaws.com|RunInstances|Throttling',
    ]);
    const errorsOnly = new DetectionEngine({ ...config, insightTypes: { apiCallRate: false, apiErrorRate: true } });
    errorsOnly.process([event({ errorCode: 'Throttling' })], T0);
    assert.deepEqual(
      errorsOnly.keyIds().map((id) => id.split('|')[1]),
      ['error', 'error'],
    );
  });
});
