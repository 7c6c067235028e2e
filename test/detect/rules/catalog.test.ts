import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CATEGORIES,
  DEFAULT_CATALOG,
  DEFAULT_CATALOG_ENTRIES,
  mergeCatalog,
  SEVERITIES,
  SensitivityCatalog,
  sensitivityOf,
  shiftSeverity,
} from '../../../src/detect/rules/catalog.ts';
import { ConfigError } from '../../../src/errors.ts';
import { normalizeCloudTrail } from '../../../src/ingest/cloudtrail.ts';

describe('sensitivity catalog', () => {
  test('looks calls up by the service as normalized CloudTrail events name it', () => {
    const event = normalizeCloudTrail({
      eventID: 'e1',
      eventTime: '2024-01-01T00:00:00Z',
      eventSource: 'cloudtrail.amazonaws.com',
      eventName: 'StopLogging',
      awsRegion: 'us-east-1',
      recipientAccountId: '111122223333',
      userIdentity: { type: 'IAMUser', arn: 'arn:aws:iam::111122223333:user/alice' },
    });
    assert.deepEqual(sensitivityOf(event.service, event.action), { category: 'logging-and-monitoring', severity: 'critical' });
    assert.deepEqual(sensitivityOf('cloudtrail', 'StopLogging'), { category: 'logging-and-monitoring', severity: 'critical' });
  });

  test('unlisted calls, and listed names in another service or case, are not sensitive', () => {
    assert.equal(sensitivityOf('s3.amazonaws.com', 'GetObject'), null);
    assert.equal(sensitivityOf('ec2.amazonaws.com', 'StopLogging'), null);
    assert.equal(sensitivityOf('cloudtrail.amazonaws.com', 'stoplogging'), null);
  });

  test('covers every category, with known severities, one entry per call', () => {
    const seen = new Set(DEFAULT_CATALOG_ENTRIES.map((e) => e.category));
    assert.deepEqual([...seen].sort(), [...CATEGORIES].sort());
    for (const e of DEFAULT_CATALOG_ENTRIES) {
      assert.ok(SEVERITIES.includes(e.severity), `${e.service}:${e.action}`);
      assert.match(e.service, /^[a-z0-9-]+\.amazonaws\.com$/);
    }
    assert.equal(DEFAULT_CATALOG.size, DEFAULT_CATALOG_ENTRIES.length);
  });

  test('marks sensitive reads as read-only', () => {
    const secret = DEFAULT_CATALOG.entries().find((e) => e.action === 'GetSecretValue');
    assert.equal(secret?.readOnly, true);
    assert.equal(secret?.category, 'secret-read');
    assert.deepEqual(sensitivityOf('ssm.amazonaws.com', 'GetParametersByPath')?.category, 'secret-read');
  });

  test('lists CloudTrail versioned Lambda event names', () => {
    assert.equal(sensitivityOf('lambda.amazonaws.com', 'UpdateFunctionCode20150331v2')?.category, 'execution');
  });

  test('shiftSeverity clamps to the scale', () => {
    assert.equal(shiftSeverity('critical', 1), 'critical');
    assert.equal(shiftSeverity('informational', -1), 'informational');
    assert.equal(shiftSeverity('medium', 1), 'high');
  });
});

describe('mergeCatalog', () => {
  test('adds, changes severities and removes entries without touching the base', () => {
    const merged = mergeCatalog(DEFAULT_CATALOG, {
      add: [{ service: 'dynamodb', action: 'DeleteTable', category: 'execution', severity: 'high' }],
      severity: { 'kms:Decrypt': 'informational', 'cloudtrail.amazonaws.com:UpdateTrail': 'critical' },
      remove: ['ssm:GetParameter'],
    });
    assert.deepEqual(merged.sensitivityOf('dynamodb.amazonaws.com', 'DeleteTable'), { category: 'execution', severity: 'high' });
    assert.equal(merged.sensitivityOf('kms.amazonaws.com', 'Decrypt')?.severity, 'informational');
    assert.equal(merged.sensitivityOf('cloudtrail.amazonaws.com', 'UpdateTrail')?.severity, 'critical');
    assert.equal(merged.sensitivityOf('ssm.amazonaws.com', 'GetParameter'), null);
    assert.equal(merged.size, DEFAULT_CATALOG.size);

    assert.equal(DEFAULT_CATALOG.sensitivityOf('kms.amazonaws.com', 'Decrypt')?.severity, 'low');
    assert.notEqual(DEFAULT_CATALOG.sensitivityOf('ssm.amazonaws.com', 'GetParameter'), null);
    assert.equal(DEFAULT_CATALOG.sensitivityOf('dynamodb.amazonaws.com', 'DeleteTable'), null);
  });

  test('an added entry for a listed call replaces it', () => {
    const merged = mergeCatalog(DEFAULT_CATALOG, {
      add: [{ service: 's3.amazonaws.com', action: 'PutBucketAcl', category: 'data-sharing', severity: 'critical' }],
    });
    assert.equal(merged.sensitivityOf('s3.amazonaws.com', 'PutBucketAcl')?.severity, 'critical');
    assert.equal(merged.size, DEFAULT_CATALOG.size);
  });

  test('an empty override is the base', () => {
    assert.deepEqual(mergeCatalog(DEFAULT_CATALOG, {}).entries(), DEFAULT_CATALOG.entries());
  });

  test('reports every problem at once as TW_CONFIG_INVALID', () => {
    const base = new SensitivityCatalog([{ service: 'kms', action: 'Decrypt', category: 'kms', severity: 'low' }]);
    assert.throws(
      () =>
        mergeCatalog(base, {
          add: [{ service: 'x', action: '', category: 'nope', severity: 'severe' } as never],
          severity: { 'kms:Encrypt': 'high', 'kms:Decrypt': 'urgent' as never, NoColon: 'low' },
          remove: ['s3:GetObject'],
          extra: true,
        } as never),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, 'TW_CONFIG_INVALID');
        assert.equal(err.problems.length, 8, err.problems.join('\n'));
        assert.ok(err.problems.some((p) => p.includes('catalog.remove[0]') && p.includes('not in the catalog')));
        assert.ok(err.problems.some((p) => p.includes('"kms:Encrypt"') && p.includes('use add')));
        assert.ok(err.problems.some((p) => p.includes('unknown key "extra"')));
        return true;
      },
    );
  });
});
