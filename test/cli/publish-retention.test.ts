import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import kafkajs from 'kafkajs';
import { cli } from '../helpers/cli.ts';
import { consumeMessages, testKafka, uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

const { ConfigResourceTypes } = kafkajs;
const DAY_MS = 86_400_000;

/** A CloudTrail delivery of `count` records whose event times lie `ageDays` in the past. */
function delivery(count: number, ageDays: number): { records: Array<Record<string, unknown>>; gz: Buffer } {
  const records = Array.from({ length: count }, (_, i) => ({
    eventVersion: '1.08',
    userIdentity: {
      type: 'IAMUser',
      principalId: 'AIDAEXAMPLE',
      arn: `arn:aws:iam::111122223333:user/user-${i % 7}`,
      accountId: '111122223333',
      userName: `user-${i % 7}`,
    },
    eventTime: `${new Date(Date.now() - ageDays * DAY_MS + i * 1000).toISOString().slice(0, 19)}Z`,
    eventSource: 'ec2.amazonaws.com',
    eventName: 'DescribeInstances',
    awsRegion: 'us-east-1',
    sourceIPAddress: '198.51.100.7',
    userAgent: 'aws-cli/2.15.0',
    requestID: randomUUID(),
    eventID: randomUUID(),
    readOnly: true,
    eventType: 'AwsApiCall',
    managementEvent: true,
    recipientAccountId: '111122223333',
    eventCategory: 'Management',
  }));
  return { records, gz: gzipSync(JSON.stringify({ Records: records })) };
}

describe('publish keeps what it publishes through the broker retention', { timeout: 300_000 }, async () => {
  const stack = await testStack();
  const env = { KAFKA_BROKERS: stack.brokers.join(','), SCHEMA_REGISTRY_URL: stack.registryUrl };
  const dir = await mkdtemp(join(tmpdir(), 'tw-retention-'));
  const admin = testKafka(stack.brokers, 'trailwatch-test-retention').admin();
  await admin.connect();
  const topics: string[] = [];
  after(async () => {
    await admin.deleteTopics({ topics, timeout: 10_000 }).catch(() => undefined);
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  const topicConfig = async (topic: string, names: string[]): Promise<Record<string, string>> => {
    const { resources } = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: names }],
      includeSynonyms: false,
    });
    return Object.fromEntries((resources[0]?.configEntries ?? []).map((e) => [e.configName, e.configValue]));
  };
  const offsets = async (topic: string) =>
    (await admin.fetchTopicOffsets(topic)).map((o) => ({ low: Number(o.low), high: Number(o.high) }));

  test('records of 30 days ago, on a topic trailwatch creates, are all still there after the retention check', async (t) => {
    // How often this broker runs retention: the local stack's is 10 s; a broker started before
    // that setting (Kafka's default: 5 min) would make the wait too long for a test.
    const { resources } = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.BROKER, name: '1', configNames: ['log.retention.check.interval.ms'] }],
      includeSynonyms: false,
    });
    const checkMs = Number(resources[0]?.configEntries.find((e) => e.configName === 'log.retention.check.interval.ms')?.configValue);
    if (!(checkMs <= 30_000)) {
      return t.skip(`the broker checks retention every ${checkMs} ms; restart the local stack (it now writes 10 s) to run this`);
    }
    const { records, gz } = delivery(500, 30);
    await writeFile(join(dir, 'old.json.gz'), gz);
    const topic = uniqueName('tw-retention');
    topics.push(topic);
    const startedMs = Date.now();
    const r = await cli(['publish', 'cloudtrail', '--topic', topic, join(dir, 'old.json.gz')], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^500 records published to ${topic}`));
    assert.equal((await topicConfig(topic, ['retention.ms']))['retention.ms'], String(7 * DAY_MS));
    assert.doesNotMatch(r.stderr, /warning: topic/, 'a topic trailwatch created is safe');

    // Two retention checks and a margin: with event-time stamps the broker deletes them all here.
    await new Promise((resolve) => setTimeout(resolve, 2 * checkMs + 5_000));
    const after = await offsets(topic);
    assert.deepEqual(
      after.map((o) => o.low),
      after.map(() => 0),
      'nothing deleted',
    );
    assert.equal(
      after.reduce((n, o) => n + o.high, 0),
      500,
    );

    // The record timestamp is the publish's wall clock; event time travels in the value.
    const messages = await consumeMessages(stack.brokers, topic, 500);
    for (const m of messages) {
      const ts = Number(m.timestamp);
      assert.ok(ts >= startedMs - 1_000 && ts <= Date.now(), `timestamp ${ts} is the publish time`);
    }
    const times = new Set(records.map((rec) => Date.parse(String(rec.eventTime))));
    assert.ok(Math.min(...times) < startedMs - 29 * DAY_MS);
  });

  test('an existing topic with a short retention gets one warning naming it and the fix; old records are counted', async () => {
    const topic = uniqueName('tw-retention-short');
    topics.push(topic);
    await admin.createTopics({
      waitForLeaders: false,
      topics: [{ topic, numPartitions: 2, replicationFactor: 1, configEntries: [{ name: 'retention.ms', value: String(2 * DAY_MS + 1) }] }],
    });
    // Lowered after creation, as an operator would: what publish reads is the topic's current config.
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '3600000' }] }],
    });
    await writeFile(join(dir, 'ancient.json.gz'), delivery(40, 40).gz);
    await writeFile(join(dir, 'recent.json.gz'), delivery(10, 1).gz);
    const r = await cli(['publish', 'cloudtrail', '--topic', topic, join(dir, 'ancient.json.gz'), join(dir, 'recent.json.gz')], env);
    assert.equal(r.code, 0, r.stderr);
    const warnings = r.stderr.split('\n').filter((line) => line.startsWith(`warning: topic ${topic}`));
    assert.equal(warnings.length, 1, r.stderr);
    assert.match(warnings[0] as string, /retention\.ms=3600000 \(1 h\)/);
    assert.match(
      warnings[0] as string,
      new RegExp(`kafka-configs --bootstrap-server \\S+ --alter --entity-type topics --entity-name ${topic}`),
    );
    assert.match(
      r.stderr,
      /warning: 40 of the published records are older than detector\.maxEventAgeMs \(35 days\).*TW_TIMESTAMP_OUT_OF_BOUNDS/,
    );
    assert.match(r.stderr, /detector\.maxEventAgeMs/);
  });
});
