import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { loadConfig } from '../../src/config/load.ts';
import { documentOf, sha256 } from '../../src/config/record.ts';
import type { Finding } from '../../src/contracts/types.ts';
import { normalizeCloudTrail } from '../../src/ingest/cloudtrail.ts';
import { writeConfigVersion } from '../../src/runtime/config-topic.ts';
import { createTransport } from '../../src/transport/index.ts';
import { cli } from '../helpers/cli.ts';
import { detectorTestConfig, publishEvents, startDetector, testLogger, waitCommittedToEnd } from '../helpers/detector.ts';
import { consumeMessages } from '../helpers/kafka.ts';

/** A CloudTrail record as a trail delivers it, `minutesAgo` before now. */
function cloudTrailRecord(eventName: string, eventSource: string, minutesAgo: number, extra: Record<string, unknown> = {}) {
  const at = new Date(Date.now() - minutesAgo * 60_000);
  return {
    eventVersion: '1.09',
    userIdentity: {
      type: 'AssumedRole',
      principalId: 'AROAEXAMPLEID:mallory',
      arn: 'arn:aws:sts::111122223333:assumed-role/ops/mallory',
      accountId: '111122223333',
      accessKeyId: 'ASIAEXAMPLE',
      sessionContext: { sessionIssuer: { type: 'Role', arn: 'arn:aws:iam::111122223333:role/ops', userName: 'ops' } },
    },
    eventTime: at.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    eventSource,
    eventName,
    awsRegion: 'eu-west-1',
    sourceIPAddress: '198.51.100.23',
    userAgent: 'aws-cli/2.15.0',
    requestParameters: { name: 'org-trail' },
    responseElements: null,
    requestID: `req-${eventName}-${minutesAgo}`,
    eventID: `evt-${eventName}-${minutesAgo}`,
    readOnly: false,
    eventType: 'AwsApiCall',
    managementEvent: true,
    recipientAccountId: '111122223333',
    eventCategory: 'Management',
    ...extra,
  };
}

describe('findings on the stream', { timeout: 180_000 }, () => {
  test('a StopLogging call and a rule of the user become OCSF findings on the findings topic, read by a registry-only client', async () => {
    // A rule of the user's own, in Sigma, matching a request parameter only the raw record carries.
    const rulesDir = await mkdtemp(join(tmpdir(), 'tw-findings-rules-'));
    await writeFile(
      join(rulesDir, 'trail-named-org.yml'),
      [
        'title: The organization trail is touched',
        'id: 5f0c9a1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b',
        'level: critical',
        'tags: [attack.t1562.008]',
        'logsource: { product: aws, service: cloudtrail }',
        'detection:',
        '  selection:',
        '    eventSource: cloudtrail.amazonaws.com',
        '    requestParameters.name: org-trail',
        '  condition: selection',
        '',
      ].join('\n'),
    );
    // Tuned as an SRE would: the CIS rule's severity lowered, and the flow-log deletions of a planned change suppressed.
    const config = await detectorTestConfig('tw-findings', {
      rules: { paths: [rulesDir], defaultPack: true },
      findings: {
        overrides: [{ match: { rule: 'cis-aws-4.5-*' }, severity: 'low' }],
        suppressions: [
          { match: { rule: 'tw-vpc-flow-logs-deleted' }, reason: 'VPC teardown CHG-9', author: 'sre', expires: '2999-01-01T00:00:00Z' },
        ],
      },
    });
    const stopLogging = cloudTrailRecord('StopLogging', 'cloudtrail.amazonaws.com', 3);
    const flowLogs = cloudTrailRecord('DeleteFlowLogs', 'ec2.amazonaws.com', 3);
    const benign = [1, 2, 4, 5].map((m) => cloudTrailRecord('DescribeInstances', 'ec2.amazonaws.com', m, { readOnly: true }));
    const events = [stopLogging, flowLogs, ...benign].map((r) => normalizeCloudTrail(r, { raw: true }));
    assert.ok(events[0]?.raw?.includes('org-trail'), 'the event carries its record');
    await publishEvents(config, events);

    const { runtime } = await startDetector(config);
    await waitCommittedToEnd(config, config.topics.events, 90_000);
    assert.equal(runtime.metrics.findingsEmitted, 2, 'the CIS CloudTrail-change rule and the user rule, for StopLogging only');
    assert.deepEqual(runtime.metrics.findingsSuppressedByKind, { rule: 1 }, 'DeleteFlowLogs, suppressed');

    const messages = await consumeMessages(config.kafka.brokers, config.topics.findings, 2, { timeoutMs: 30_000, settleMs: 1_000 });
    assert.equal(messages.length, 2);
    const reader = new SchemaRegistry({ host: config.registry.url as string });
    const findings = (await Promise.all(messages.map((m) => reader.decode(m.value as Buffer)))) as Finding[];
    const byAnalytic = new Map(findings.map((f) => [f.finding_info.analytic.uid, f]));
    const cis = byAnalytic.get('cis-aws-4.5-cloudtrail-configuration-changes');
    const own = byAnalytic.get('5f0c9a1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b');
    assert.ok(cis && own, `the two rules' findings: ${[...byAnalytic.keys()].join(', ')}`);
    for (const f of [cis, own]) {
      assert.equal(f.class_uid, 2004);
      assert.equal(f.api?.operation, 'StopLogging');
      assert.equal(f.cloud.account?.uid, '111122223333');
      assert.equal(f.actor?.user?.uid, 'arn:aws:sts::111122223333:assumed-role/ops');
      assert.equal(f.evidences.length, 1);
    }
    assert.equal(own.severity_id, 5, 'critical');
    assert.equal(cis.severity_id, 2, 'low, by findings.overrides');
    assert.equal(cis.severity, 'Low');
    assert.deepEqual(
      own.attacks.map((a) => a.technique.uid),
      ['T1562.008'],
    );
    assert.equal(String(messages[0]?.key), messages[0] && findings[0]?.finding_info.uid);

    // What a SIEM reads: `trailwatch tail --findings` prints them as OCSF JSON, nulls left out.
    const tail = await cli(['tail', '--findings', '--from-beginning', '--max', '2', '--timeout-ms', '30000'], {
      KAFKA_BROKERS: config.kafka.brokers.join(','),
      SCHEMA_REGISTRY_URL: config.registry.url,
      TRAILWATCH_TOPICS__FINDINGS: config.topics.findings,
    });
    assert.equal(tail.code, 0, tail.stderr);
    const printed = tail.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(printed.length, 2);
    for (const p of printed) {
      assert.equal(p.class_uid, 2004);
      const nulls = [...Object.entries(p), ...Object.entries(p.finding_info as Record<string, unknown>)].filter(([, v]) => v === null);
      assert.deepEqual(nulls, [], 'null fields are left out');
    }
  });

  test('a new-action chain under a role with a week of history becomes one first-seen finding on the findings topic', async () => {
    const config = await detectorTestConfig('tw-firstseen', { rules: { defaultPack: false } });
    const deployer = {
      type: 'AssumedRole',
      principalId: 'AROAEXAMPLEID:ci-run',
      arn: 'arn:aws:sts::111122223333:assumed-role/deployer/ci-run',
      accountId: '111122223333',
      sessionContext: { sessionIssuer: { type: 'Role', arn: 'arn:aws:iam::111122223333:role/deployer', userName: 'deployer' } },
    };
    // Eight days of the role's usual work, every two hours: past the 7-day learning window.
    const history = Array.from({ length: 8 * 12 }, (_, i) =>
      cloudTrailRecord(i % 2 ? 'DescribeInstances' : 'RunInstances', 'ec2.amazonaws.com', 8 * 24 * 60 - i * 120, {
        userIdentity: deployer,
        readOnly: i % 2 === 1,
        eventID: `hist-${i}`,
      }),
    );
    // Then persistence, once each, an hour ago (the usual work goes on after it, so event time
    // passes the finding's window): nothing a rate baseline can see.
    const chain = [
      ['CreateUser', 'iam.amazonaws.com'],
      ['CreateRole', 'iam.amazonaws.com'],
      ['AttachRolePolicy', 'iam.amazonaws.com'],
      ['PutBucketPolicy', 's3.amazonaws.com'],
    ].map(([name, source], i) =>
      cloudTrailRecord(name as string, source as string, 60 - i, { userIdentity: deployer, eventID: `chain-${i}` }),
    );
    const after = [20, 10, 2].map((m) =>
      cloudTrailRecord('DescribeInstances', 'ec2.amazonaws.com', m, { userIdentity: deployer, readOnly: true, eventID: `after-${m}` }),
    );
    await publishEvents(
      config,
      [...history, ...chain, ...after].map((r) => normalizeCloudTrail(r, { raw: true })),
    );

    const { runtime } = await startDetector(config);
    await waitCommittedToEnd(config, config.topics.events, 90_000);
    const messages = await consumeMessages(config.kafka.brokers, config.topics.findings, 1, { timeoutMs: 60_000, settleMs: 2_000 });
    const reader = new SchemaRegistry({ host: config.registry.url as string });
    const findings = (await Promise.all(messages.map((m) => reader.decode(m.value as Buffer)))) as Finding[];
    const firstSeen = findings.filter((f) => f.finding_info.types[0] === 'first-seen');
    assert.equal(firstSeen.length, 1, `one finding for the chain: ${findings.map((f) => f.finding_info.title).join(' | ')}`);
    const f = firstSeen[0] as Finding;
    assert.equal(f.actor?.user?.uid, 'arn:aws:sts::111122223333:assumed-role/deployer');
    assert.deepEqual(
      (JSON.parse(f.unmapped?.first_seen_items ?? '[]') as Array<{ value: string }>).map((i) => i.value),
      [
        'iam.amazonaws.com:CreateUser',
        'iam.amazonaws.com:CreateRole',
        'iam.amazonaws.com:AttachRolePolicy',
        's3.amazonaws.com:PutBucketPolicy',
      ],
    );
    assert.ok(f.severity_id >= 4, `IAM writes by a workload role are high: ${f.severity}`);
    assert.equal(f.finding_info.analytic.type, 'Behavioral');
    assert.ok((runtime.metrics.findingsByKind['first-seen'] ?? 0) >= 1);
  });

  test('a findings suppression applied as a config version while it runs holds back the next findings, without a restart', async () => {
    const config = await detectorTestConfig('tw-findings-live', { rules: { defaultPack: true }, detector: { configPollMs: 500 } });
    const other = {
      userIdentity: {
        type: 'IAMUser',
        principalId: 'AIDAEXAMPLE',
        arn: 'arn:aws:iam::111122223333:user/trail-admin',
        accountId: '111122223333',
        userName: 'trail-admin',
      },
    };
    const { runtime } = await startDetector(config);
    await publishEvents(config, [normalizeCloudTrail(cloudTrailRecord('StopLogging', 'cloudtrail.amazonaws.com', 4), { raw: true })]);
    await waitCommittedToEnd(config, config.topics.events, 90_000);
    assert.equal(runtime.metrics.findingsEmitted, 1, 'CIS 4.5 on StopLogging');

    // `config apply` of a file that suppresses the CIS CloudTrail rule.
    const tuned = loadConfig({
      env: {},
      overrides: {
        findings: {
          suppressions: [
            { match: { rule: 'cis-aws-4.5-*' }, reason: 'trail rebuild CHG-12', author: 'sre', expires: '2999-01-01T00:00:00Z' },
          ],
        },
      },
    });
    const document = documentOf(tuned);
    const written = await writeConfigVersion(createTransport(config.kafka, testLogger), config, () => ({
      author: 'sre',
      message: 'trail rebuild',
      source: 'findings.yaml',
      sha256: sha256(JSON.stringify(document)),
      document,
    }));
    assert.equal(written.written?.version, 1);
    for (let i = 0; runtime.metrics.configVersion !== 1; i++) {
      assert.ok(i < 240, 'the member takes the version');
      await new Promise((r) => setTimeout(r, 250));
    }
    // Another principal's StopLogging: a finding of its own, were it not suppressed.
    await publishEvents(config, [
      normalizeCloudTrail(cloudTrailRecord('StopLogging', 'cloudtrail.amazonaws.com', 2, other), { raw: true }),
    ]);
    await waitCommittedToEnd(config, config.topics.events, 90_000);
    assert.equal(runtime.metrics.findingsEmitted, 1);
    assert.deepEqual(runtime.metrics.findingsSuppressedByKind, { rule: 1 });
  });
});
