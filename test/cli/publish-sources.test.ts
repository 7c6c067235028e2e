/**
 * `trailwatch publish` for every source, against the real broker and registry: what reaches the
 * events topic (decoded from the wire format), what reaches the dead-letter topic and with which
 * headers, and --since/--until on an S3-layout tree.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { auditEventType } from '../../src/contracts/schemas.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { DLQ_HEADERS, headerString } from '../../src/runtime/dead-letter.ts';
import { cli } from '../helpers/cli.ts';
import { consumeMessages, uniqueName } from '../helpers/kafka.ts';
import { FIXTURES_DIR } from '../helpers/shared.ts';
import { testStack } from '../helpers/stack.ts';

const K8S = join(FIXTURES_DIR, 'k8s-audit/audit.jsonl');
const K8S_BAD = join(FIXTURES_DIR, 'k8s-audit/audit-bad.jsonl');
const EVENTBRIDGE = join(FIXTURES_DIR, 'eventbridge/cloudtrail-events.jsonl');
const CWLOGS = join(FIXTURES_DIR, 'cwlogs/data-message.json');

async function setup(prefix: string) {
  const stack = await testStack();
  const topic = uniqueName(`${prefix}-events`);
  const dlq = uniqueName(`${prefix}-dlq`);
  const env = {
    KAFKA_BROKERS: stack.brokers.join(','),
    SCHEMA_REGISTRY_URL: stack.registryUrl,
    TRAILWATCH_TOPICS__DEAD_LETTER: dlq,
    TRAILWATCH_TOPICS__PARTITIONS: '1',
  };
  return { stack, topic, dlq, env };
}

function decode(value: Buffer | null): AuditEvent {
  assert.ok(value);
  return auditEventType.fromBuffer(value.subarray(5)) as AuditEvent;
}

describe('trailwatch publish <format>', { timeout: 180_000 }, () => {
  test('k8s-audit: ResponseComplete events published, stages skipped, bad lines dead-lettered with file, line and the line itself', async () => {
    const { stack, topic, dlq, env } = await setup('tw-pub-k8s');
    const r = await cli(['publish', 'k8s-audit', '--topic', topic, K8S, K8S_BAD], {
      ...env,
      TRAILWATCH_INGEST__K8S_AUDIT__CLUSTER: 'prod-eu',
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stdout, new RegExp(`^9 records published to ${topic} from 2 files, 3 rejected, 3 skipped`));
    assert.match(r.stderr, /skipped 2: stage RequestReceived/);
    assert.match(r.stderr, /skipped 1: stage ResponseStarted/);
    assert.match(r.stderr, new RegExp(`rejected ${K8S_BAD}:2: missing auditID \\[TW_NORMALIZE\\]`));
    assert.match(r.stderr, new RegExp(`rejected ${K8S_BAD}:3: malformed JSON at column \\d+: .* \\[TW_DESERIALIZE\\]`));

    const events = (await consumeMessages(stack.brokers, topic, 9)).map((m) => decode(m.value));
    assert.equal(events.length, 9);
    const exec = events.find((e) => e.action === 'create:pods/exec');
    assert.equal(exec?.accountId, 'prod-eu');
    assert.equal(exec?.principal, 'bob@example.com');
    assert.equal(exec?.service, 'k8s.io/core');
    assert.equal(exec?.source, 'k8s.audit');
    assert.ok(exec?.raw?.includes('"subresource":"exec"'), 'raw carries the audit event for rules');
    assert.deepEqual(
      events.filter((e) => e.errorCode === '403').map((e) => e.action),
      ['delete:configmaps', 'create:clusterrolebindings'],
    );

    const letters = await consumeMessages(stack.brokers, dlq, 3);
    const byPosition = new Map(letters.map((m) => [headerString(m.headers, DLQ_HEADERS.position), m]));
    assert.deepEqual([...byPosition.keys()].sort(), [`${K8S_BAD}:2`, `${K8S_BAD}:3`, `${K8S_BAD}:4`]);
    const malformed = byPosition.get(`${K8S_BAD}:3`);
    assert.equal(headerString(malformed?.headers, DLQ_HEADERS.code), 'TW_DESERIALIZE');
    assert.equal(headerString(malformed?.headers, DLQ_HEADERS.file), K8S_BAD);
    assert.equal(headerString(malformed?.headers, DLQ_HEADERS.format), 'k8s-audit');
    const badLine = (await readFile(K8S_BAD, 'utf8')).split('\n')[2];
    assert.equal(malformed?.value?.toString(), badLine, 'the dead letter holds the line as it was');
    const noId = byPosition.get(`${K8S_BAD}:2`);
    assert.match(headerString(noId?.headers, DLQ_HEADERS.reason) ?? '', /missing auditID/);
    assert.equal((JSON.parse(noId?.value?.toString() ?? '{}') as { verb?: string }).verb, 'list');
  });

  test('--format eventbridge and cwlogs: the CloudTrail records inside published, the rest dead-lettered', async () => {
    const { stack, topic, dlq, env } = await setup('tw-pub-rt');
    const dir = await mkdtemp(join(tmpdir(), 'tw-pub-rt-'));
    try {
      const payload = join(dir, 'payload.gz');
      await writeFile(payload, gzipSync(await readFile(CWLOGS)));
      const eb = await cli(['publish', '--format', 'eventbridge', '--topic', topic, EVENTBRIDGE], env);
      assert.equal(eb.code, 2, eb.stderr);
      assert.match(eb.stdout, /^4 records published .* from 1 files, 1 rejected, 1 skipped/);
      assert.match(eb.stderr, /detail-type "EC2 Instance State-change Notification"/);
      const cw = await cli(['publish', 'cwlogs', '--topic', topic, payload], env);
      assert.equal(cw.code, 2, cw.stderr);
      assert.match(cw.stdout, /^2 records published .* from 1 files, 1 rejected/);
      const events = (await consumeMessages(stack.brokers, topic, 6)).map((m) => decode(m.value));
      assert.deepEqual(
        events.map((e) => e.action),
        ['RunInstances', 'CreateAccessKey', 'PutBucketPolicy', 'ConsoleLogin', 'DescribeInstances', 'AssumeRole'],
      );
      const letters = await consumeMessages(stack.brokers, dlq, 2);
      assert.deepEqual(
        letters.map((m) => headerString(m.headers, DLQ_HEADERS.position)).sort(),
        [`${EVENTBRIDGE}:5`, `${payload}:1[2]`].sort(),
      );
      const ec2 = letters.find((m) => headerString(m.headers, DLQ_HEADERS.format) === 'eventbridge');
      assert.equal(
        (JSON.parse(ec2?.value?.toString() ?? '{}') as Record<string, unknown>)['detail-type'],
        'EC2 Instance State-change Notification',
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('cloudtrail S3 tree with --since/--until: only deliveries named in the range, out-of-range files never opened', async () => {
    const { stack, topic, env } = await setup('tw-pub-s3');
    const root = await mkdtemp(join(tmpdir(), 'tw-pub-s3-'));
    try {
      let expected = 0;
      for (const account of ['111111111111', '222222222222']) {
        for (const hour of ['08', '09', '10', '11']) {
          const dir = join(root, 'AWSLogs/o-exampleorg1', account, 'CloudTrail/eu-west-1/2024/05/14');
          await mkdir(dir, { recursive: true });
          const file = join(dir, `${account}_CloudTrail_eu-west-1_20240514T${hour}05Z_Q1w2E3r4T5y6U7i8.json.gz`);
          const inRange = hour === '09' || hour === '10';
          if (!inRange) {
            await writeFile(file, 'not gzip: an error if it were opened');
            continue;
          }
          const records = Array.from({ length: 5 }, (_, i) => ({
            eventVersion: '1.09',
            userIdentity: { type: 'IAMUser', arn: `arn:aws:iam::${account}:user/alice`, accountId: account },
            eventTime: `2024-05-14T${hour}:0${i}:00Z`,
            eventSource: 'ec2.amazonaws.com',
            eventName: 'DescribeInstances',
            awsRegion: 'eu-west-1',
            eventID: `${account}-${hour}-${i}`,
            recipientAccountId: account,
          }));
          expected += records.length;
          await writeFile(file, gzipSync(JSON.stringify({ Records: records })));
        }
      }
      const r = await cli(
        ['publish', 'cloudtrail', '--since', '2024-05-14T09:00:00Z', '--until', '2024-05-14T11:00:00Z', '--topic', topic, root],
        env,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(`^${expected} records published .* from 4 files, 0 rejected, 4 files outside --since/--until \\(not opened\\)`),
      );
      const events = (await consumeMessages(stack.brokers, topic, expected)).map((m) => decode(m.value));
      // One partition: the order published is the order read, time first across the two accounts.
      assert.deepEqual(
        events.map((e) => e.eventId.slice(0, 15)),
        [
          ...Array(5).fill('111111111111-09'),
          ...Array(5).fill('222222222222-09'),
          ...Array(5).fill('111111111111-10'),
          ...Array(5).fill('222222222222-10'),
        ],
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test('nothing usable: exit 1', async () => {
    const { env, topic } = await setup('tw-pub-none');
    const dir = await mkdtemp(join(tmpdir(), 'tw-pub-none-'));
    try {
      const file = join(dir, 'audit.log');
      await writeFile(file, '{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete"}\n');
      const r = await cli(['publish', 'k8s-audit', '--topic', topic, file], env);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stdout, /^0 records published .* 1 rejected/);
      assert.match(r.stderr, /audit\.log:1: missing auditID/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
