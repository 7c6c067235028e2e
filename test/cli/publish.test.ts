import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { cli } from '../helpers/cli.ts';
import { uniqueName } from '../helpers/kafka.ts';
import { FIXTURES_DIR, INVICTUS_DIR, REPO_ROOT, sharedCloudTrailMissing } from '../helpers/shared.ts';
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
    assert.match(r.stdout, /Usage: trailwatch publish cloudtrail/);
    assert.match(r.stdout, /Exit status/);
  });

  test('bad usage names the fix', async () => {
    const r = await cli(['publish', 'syslog', 'x']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown input format "syslog" \(supported: cloudtrail\)/);
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
});
