import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { configSchema } from '../../../src/config/schema.ts';
import { findingSetupOf } from '../../../src/detect/findings.ts';
import { RuleSet } from '../../../src/detect/rules/evaluate.ts';
import { DEFAULT_PACK_DIR, loadRules } from '../../../src/detect/rules/load.ts';
import { PrincipalStage } from '../../../src/detect/topology.ts';
import { normalizeCloudTrail } from '../../../src/ingest/cloudtrail.ts';

const PACK = join(DEFAULT_PACK_DIR, 'trailwatch');
const loaded = await loadRules([PACK]);

type Json = Record<string, unknown>;

const caller = {
  type: 'AssumedRole',
  principalId: 'AROAEXAMPLE:mallory',
  arn: 'arn:aws:sts::111122223333:assumed-role/ops/mallory',
  accountId: '111122223333',
};
const iamUser = {
  type: 'IAMUser',
  principalId: 'AIDAEXAMPLE',
  arn: 'arn:aws:iam::111122223333:user/alice',
  accountId: '111122223333',
  userName: 'alice',
};

let n = 0;
function call(eventSource: string, eventName: string, requestParameters: Json | null, extra: Json = {}): Json {
  return {
    eventVersion: '1.09',
    userIdentity: caller,
    eventTime: '2026-12-01T10:00:00Z',
    eventSource,
    eventName,
    awsRegion: 'eu-west-1',
    sourceIPAddress: '198.51.100.23',
    userAgent: 'aws-cli/2.15.0',
    requestParameters,
    responseElements: null,
    eventID: `tw-pack-${n++}`,
    readOnly: false,
    eventType: 'AwsApiCall',
    recipientAccountId: '111122223333',
    ...extra,
  };
}

const denied = { errorCode: 'AccessDenied', errorMessage: 'not authorized' };

/** Per rule: records it must flag, and near misses it must let through. */
const CASES: Record<string, { matches: Record<string, Json>; misses: Record<string, Json> }> = {
  'tw-cloudtrail-event-selectors-changed': {
    matches: {
      'event selectors narrowed': call('cloudtrail.amazonaws.com', 'PutEventSelectors', { trailName: 'org', eventSelectors: [] }),
      'event data store deleted': call('cloudtrail.amazonaws.com', 'DeleteEventDataStore', { eventDataStore: 'eds' }),
    },
    misses: { 'selectors read': call('cloudtrail.amazonaws.com', 'GetEventSelectors', { trailName: 'org' }, { readOnly: true }) },
  },
  'tw-vpc-flow-logs-deleted': {
    matches: {
      'flow logs deleted': call('ec2.amazonaws.com', 'DeleteFlowLogs', { DeleteFlowLogsRequest: { FlowLogId: { content: 'fl-1' } } }),
    },
    misses: {
      'a refused delete': call('ec2.amazonaws.com', 'DeleteFlowLogs', {}, denied),
      'flow logs created': call('ec2.amazonaws.com', 'CreateFlowLogs', {}),
    },
  },
  'tw-guardduty-disabled': {
    matches: {
      'detector deleted': call('guardduty.amazonaws.com', 'DeleteDetector', { detectorId: 'd1' }),
      'detector disabled': call('guardduty.amazonaws.com', 'UpdateDetector', { detectorId: 'd1', enable: false }),
    },
    misses: {
      'detector settings changed, still enabled': call('guardduty.amazonaws.com', 'UpdateDetector', { detectorId: 'd1', enable: true }),
      'a refused delete': call('guardduty.amazonaws.com', 'DeleteDetector', { detectorId: 'd1' }, denied),
    },
  },
  'tw-snapshot-shared': {
    matches: {
      'EBS snapshot public': call('ec2.amazonaws.com', 'ModifySnapshotAttribute', {
        snapshotId: 'snap-1',
        createVolumePermission: { add: { items: [{ group: 'all' }] } },
        attributeType: 'CREATE_VOLUME_PERMISSION',
      }),
      'EBS snapshot to another account': call('ec2.amazonaws.com', 'ModifySnapshotAttribute', {
        snapshotId: 'snap-1',
        createVolumePermission: { add: { items: [{ userId: '444455556666' }] } },
      }),
      'RDS snapshot restorable by all': call('rds.amazonaws.com', 'ModifyDBSnapshotAttribute', {
        dBSnapshotIdentifier: 'db-snap',
        attributeName: 'restore',
        valuesToAdd: ['all'],
      }),
    },
    misses: {
      'sharing removed': call('ec2.amazonaws.com', 'ModifySnapshotAttribute', {
        snapshotId: 'snap-1',
        createVolumePermission: { remove: { items: [{ userId: '444455556666' }] } },
      }),
      'RDS sharing removed': call('rds.amazonaws.com', 'ModifyDBSnapshotAttribute', {
        dBSnapshotIdentifier: 'db-snap',
        attributeName: 'restore',
        valuesToRemove: ['all'],
      }),
    },
  },
  'tw-ami-shared': {
    matches: {
      'AMI public': call('ec2.amazonaws.com', 'ModifyImageAttribute', {
        imageId: 'ami-1',
        launchPermission: { add: { items: [{ group: 'all' }] } },
      }),
    },
    misses: {
      'AMI description changed': call('ec2.amazonaws.com', 'ModifyImageAttribute', { imageId: 'ami-1', description: { value: 'x' } }),
    },
  },
  'tw-credentials-for-another-user': {
    matches: {
      'a role makes a key for bob': call('iam.amazonaws.com', 'CreateAccessKey', { userName: 'bob' }),
      'alice sets a password for bob': call(
        'iam.amazonaws.com',
        'CreateLoginProfile',
        { userName: 'bob', passwordResetRequired: false },
        { userIdentity: iamUser },
      ),
    },
    misses: {
      'alice makes her own key': call('iam.amazonaws.com', 'CreateAccessKey', { userName: 'alice' }, { userIdentity: iamUser }),
      'a key for oneself, no user named': call('iam.amazonaws.com', 'CreateAccessKey', null, { userIdentity: iamUser }),
      'a refused attempt': call('iam.amazonaws.com', 'CreateAccessKey', { userName: 'bob' }, denied),
    },
  },
  'tw-lambda-public-permission': {
    matches: {
      'invoke for everyone': call('lambda.amazonaws.com', 'AddPermission20150331v2', {
        functionName: 'billing',
        statementId: 's1',
        action: 'lambda:InvokeFunction',
        principal: '*',
      }),
    },
    misses: {
      'invoke for a service': call('lambda.amazonaws.com', 'AddPermission20150331v2', {
        functionName: 'billing',
        statementId: 's1',
        action: 'lambda:InvokeFunction',
        principal: 's3.amazonaws.com',
      }),
    },
  },
};

describe('trailwatch pack: single critical calls', () => {
  test('loads without problems, every rule has crafted cases', () => {
    assert.deepEqual(loaded.problems, []);
    assert.deepEqual(Object.keys(CASES).sort(), loaded.rules.map((r) => r.id).sort());
    assert.deepEqual(
      loaded.correlations.map((c) => c.rule.id),
      ['tw-secret-harvesting'],
    );
  });

  for (const [id, cases] of Object.entries(CASES)) {
    test(id, () => {
      const rules = new RuleSet(loaded.rules);
      for (const [what, record] of Object.entries(cases.matches)) {
        // As the stream sees it: the normalized event carrying its record.
        const hits = rules.match(normalizeCloudTrail(record, { raw: true })).map((r) => r.id);
        assert.deepEqual(hits, [id], `${what} matches`);
      }
      for (const [what, record] of Object.entries(cases.misses)) {
        assert.deepEqual(rules.match(normalizeCloudTrail(record, { raw: true })), [], `${what} does not match`);
      }
    });
  }

  test('tw-secret-harvesting: five distinct secrets in ten minutes by one principal, not four, not one secret five times', () => {
    const config = configSchema.parse({ findings: { firstSeen: { enabled: false }, breadth: { enabled: false } } });
    const setup = findingSetupOf(new RuleSet(loaded.rules), config.findings, 'trailwatch.findings', loaded.correlations);
    const read = (secret: string, minute: number, arn = caller.arn) =>
      normalizeCloudTrail(
        call(
          'secretsmanager.amazonaws.com',
          'GetSecretValue',
          { secretId: secret },
          {
            eventTime: `2026-12-01T10:0${minute}:00Z`,
            readOnly: true,
            userIdentity: { ...caller, arn },
          },
        ),
        { raw: true },
      );
    const stage = PrincipalStage.create(config.detector, 0, { findings: setup });
    const same = stage.process([0, 1, 2, 3, 4].map((m) => read('db-password', m)));
    assert.deepEqual(same.findings, [], 'one secret read five times');
    const other = 'arn:aws:sts::111122223333:assumed-role/app/worker';
    const four = stage.process(['a', 'b', 'c', 'd'].map((s, i) => read(s, i, other)));
    assert.deepEqual(four.findings, [], 'four distinct secrets');
    const five = stage.process([read('e', 5, other)]);
    assert.equal(five.findings.length, 1);
    const f = five.findings[0];
    assert.equal(f?.finding_info.analytic.uid, 'tw-secret-harvesting');
    assert.equal(f?.actor?.user?.uid, 'arn:aws:sts::111122223333:assumed-role/app', 'the normalized principal, as every finding names it');
    assert.equal(f?.unmapped?.correlation_count, '5');
  });
});
