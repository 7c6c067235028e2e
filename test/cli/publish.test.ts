import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Kafka, logLevel } from 'kafkajs';
import { cli } from '../helpers/cli.ts';
import { uniqueName } from '../helpers/kafka.ts';
import { FIXTURES_DIR, INVICTUS_DIR, sharedCloudTrailMissing } from '../helpers/shared.ts';
import { testStack } from '../helpers/stack.ts';

/**
 * Records in `topic`, asked until it reaches `expected` or 15 s pass: a broker that has just
 * created the topic may answer ListOffsets from metadata a moment old.
 */
async function topicRecordCount(brokers: string[], topic: string, expected: number): Promise<number> {
  const admin = new Kafka({ brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const offsets = await admin.fetchTopicOffsets(topic);
      const count = offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
      if (count >= expected || Date.now() > deadline) return count;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await admin.disconnect();
  }
}

describe('trailwatch publish cloudtrail', { timeout: 180_000 }, () => {
  test('--help explains the command', async () => {
    const r = await cli(['publish', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: trailwatch publish <format>/);
    assert.match(r.stdout, /Exit status/);
  });

  test('bad usage names the fix', async () => {
    const r = await cli(['publish', 'syslog', 'x']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown input format "syslog" \(supported: cloudtrail, eventbridge, cwlogs, k8s-audit, jsonl\)/);
  });

  test('publishes every record of the shared CloudTrail sample, and the topic holds them all', async (t) => {
    const missing = sharedCloudTrailMissing();
    if (missing) return t.skip(missing);
    const stack = await testStack();
    const topic = uniqueName('tw-publish');
    const env = { KAFKA_BROKERS: stack.brokers.join(','), SCHEMA_REGISTRY_URL: stack.registryUrl };
    const r = await cli(['publish', 'cloudtrail', '--topic', topic, INVICTUS_DIR], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^2900 records published to ${topic} from 55 files, 0 rejected`));
    assert.equal(await topicRecordCount(stack.brokers, topic, 2900), 2900);
  });

  test('bad records are reported with file and index, the good ones are published, exit 2', async () => {
    const stack = await testStack();
    const topic = uniqueName('tw-publish-bad');
    const env = { KAFKA_BROKERS: stack.brokers.join(','), SCHEMA_REGISTRY_URL: stack.registryUrl };
    const dir = join(FIXTURES_DIR, 'cloudtrail/deliveries');
    const r = await cli(['publish', 'cloudtrail', '--topic', topic, dir], env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /gaps\.json:\d+: .*eventTime/);
    assert.match(r.stderr, /malformed\.json: malformed JSON at line 3/);
    const published = Number(/^(\d+) records published/.exec(r.stdout)?.[1]);
    assert.ok(published > 0);
    assert.equal(await topicRecordCount(stack.brokers, topic, published), published);
  });

  test('a record too large for the topic is reported as file:index TW_RECORD_TOO_LARGE, the others are published, exit 2', async () => {
    const stack = await testStack();
    const topic = uniqueName('tw-publish-large');
    const env = { KAFKA_BROKERS: stack.brokers.join(','), SCHEMA_REGISTRY_URL: stack.registryUrl };
    const dir = await mkdtemp(join(tmpdir(), 'tw-publish-large-'));
    try {
      const record = (i: number, user: string) => ({
        eventVersion: '1.08',
        eventID: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
        eventTime: new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, 'Z'),
        eventSource: 's3.amazonaws.com',
        eventName: 'GetObject',
        awsRegion: 'eu-west-1',
        recipientAccountId: '123456789012',
        userIdentity: { type: 'IAMUser', accountId: '123456789012', arn: `arn:aws:iam::123456789012:user/${user}` },
      });
      // A 600 KB principal is in the key and three times in the value (principal, userIdentityArn, the record in raw).
      const records = [record(0, 'alice'), record(1, 'p'.repeat(600_000)), record(2, 'bob'), record(3, 'carol')];
      await writeFile(join(dir, 'big.json.gz'), gzipSync(JSON.stringify({ Records: records })));
      const r = await cli(['publish', 'cloudtrail', '--topic', topic, dir], env);
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        /big\.json\.gz:1: event \S+ is \d+ bytes as a record \(key 600\d{3}, value 1800\d{3}\), over the topic's max\.message\.bytes of \d+ \[TW_RECORD_TOO_LARGE\]/,
      );
      assert.match(r.stdout, new RegExp(`^3 records published to ${topic} from 1 files, 1 rejected`));
      assert.equal(await topicRecordCount(stack.brokers, topic, 3), 3);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
