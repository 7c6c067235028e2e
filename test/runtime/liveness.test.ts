import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { KafkaMessage } from 'kafkajs';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { DEMO_ACTORS, generateTraffic } from '../../src/demo/traffic.ts';
import { DLQ_HEADERS, headerString } from '../../src/runtime/dead-letter.ts';
import { changelogTopics } from '../../src/runtime/topics.ts';
import { cli } from '../helpers/cli.ts';
import { detectorTestConfig, publishEvents, startDetector, topicRecordCount, waitCommittedToEnd } from '../helpers/detector.ts';
import { consumeMessages, testKafka } from '../helpers/kafka.ts';
import { INVICTUS_DIR, sharedCloudTrailMissing } from '../helpers/shared.ts';

/**
 * The live detector keeps going whatever its input: a batch whose dead letters together exceed
 * what one produce request may carry, a principal hundreds of kilobytes long, a record too large
 * even for the dead-letter topic. And a failure that no retry can mend ends the process with its
 * cause named, after a bounded number of attempts, instead of looping.
 */

const MIN = 60_000;

function createTopic(brokers: string[], topic: string, partitions: number, configEntries: Array<{ name: string; value: string }>) {
  return (async () => {
    const admin = testKafka(brokers, 'trailwatch-test-admin').admin();
    await admin.connect();
    try {
      await admin.createTopics({
        waitForLeaders: false,
        topics: [{ topic, numPartitions: partitions, replicationFactor: 1, configEntries }],
      });
      for (let i = 0; i < 100 && (await admin.fetchTopicOffsets(topic).catch(() => [])).length < partitions; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await admin.disconnect();
    }
  })();
}

const dlqCode = (m: KafkaMessage) => headerString(m.headers, DLQ_HEADERS.code);

describe('liveness of the live detector', { timeout: 300_000 }, () => {
  test('a backlog of old records is dead-lettered whole, though one batch of letters exceeds a produce request', async () => {
    // Records from 2023 with a 1 KB attribute each: every one is too old for detector.maxEventAgeMs,
    // and one 4 MiB fetch of them makes far more than the 1 MB a partition's request may carry.
    const config = await detectorTestConfig('tw-live-old', { detector: { fetchMaxBytes: 4 * 1024 * 1024 } });
    const startMs = Date.UTC(2023, 6, 10, 12);
    const events: AuditEvent[] = generateTraffic({ seed: 3, startMs, minutes: 400, actors: DEMO_ACTORS })
      .slice(0, 3_000)
      .map((e) => ({ ...e, attributes: { ...e.attributes, note: 'x'.repeat(1_000) } }));
    assert.equal(events.length, 3_000, 'the fixture has 3,000 events');
    await publishEvents(config, events);
    const { runtime } = await startDetector(config);
    await waitCommittedToEnd(config, config.topics.events, 120_000);
    const letters = await consumeMessages(config.kafka.brokers, config.topics.deadLetter, events.length, {
      timeoutMs: 60_000,
      settleMs: 1_000,
    });
    assert.equal(letters.length, events.length, 'every record dead-lettered, once');
    assert.ok(letters.every((m) => dlqCode(m) === 'TW_TIMESTAMP_OUT_OF_BOUNDS'));
    assert.deepEqual(runtime.metrics.deadLetters, { TW_TIMESTAMP_OUT_OF_BOUNDS: events.length });
    assert.ok(runtime.metrics.produceRounds > runtime.metrics.transactionsCommitted, 'some transactions took several requests');
    assert.equal(runtime.metrics.transactionsAborted, 0);
  });

  test('the shared CloudTrail sample, published and consumed to the end: every record accounted for', async (t) => {
    const missing = sharedCloudTrailMissing();
    if (missing) {
      t.skip(missing);
      return;
    }
    const config = await detectorTestConfig('tw-live-shared');
    const env = {
      KAFKA_BROKERS: config.kafka.brokers.join(','),
      SCHEMA_REGISTRY_URL: config.registry.url,
      TRAILWATCH_TOPICS__EVENTS: config.topics.events,
      TRAILWATCH_TOPICS__ALERTS: config.topics.alerts,
      TRAILWATCH_TOPICS__DEAD_LETTER: config.topics.deadLetter,
    };
    const published = await cli(['publish', 'cloudtrail', INVICTUS_DIR], env);
    assert.ok(published.code === 0 || published.code === 2, `publish ran (${published.code}): ${published.stderr}`);
    const admin = testKafka(config.kafka.brokers).admin();
    await admin.connect();
    const count = await topicRecordCount(admin, config.topics.events);
    await admin.disconnect();
    assert.ok(count >= 2_800, `the sample's records are on the topic (${count})`);
    const { runtime } = await startDetector(config);
    await waitCommittedToEnd(config, config.topics.events, 120_000);
    const letters = await consumeMessages(config.kafka.brokers, config.topics.deadLetter, count, { timeoutMs: 60_000, settleMs: 1_000 });
    // 2023 is far outside detector.maxEventAgeMs: the live detector sets every record aside, none is lost.
    assert.equal(letters.length, count);
    assert.equal(runtime.metrics.deadLetters.TW_TIMESTAMP_OUT_OF_BOUNDS, count);
  });

  test('principals of 300 KB and 400 KB are detected on, cut to a bounded key, and nothing stalls', async () => {
    const config = await detectorTestConfig('tw-live-long');
    const startMs = Math.floor((Date.now() - 90 * MIN) / MIN) * MIN;
    const normal = generateTraffic({ seed: 5, startMs, minutes: 60, actors: DEMO_ACTORS });
    const long = [300_000, 400_000].flatMap((size, n) =>
      Array.from({ length: 20 }, (_, i) => ({
        ...(normal[i] as AuditEvent),
        eventId: `long-${n}-${i}`,
        principal: `arn:aws:iam::123456789012:user/${String.fromCharCode(97 + n).repeat(size)}`,
      })),
    );
    await publishEvents(config, normal);
    // One a request: the key (account|principal) and the value each carry the principal, and one
    // partition's share of a request must stay under the broker's 1 MB.
    await publishEvents(config, long, 1);
    const { runtime } = await startDetector(config);
    await waitCommittedToEnd(config, config.topics.events, 120_000);
    assert.equal(runtime.metrics.eventsDecoded, normal.length + long.length, 'every event reached the engine');
    assert.deepEqual(runtime.metrics.deadLetters, {});
    assert.equal(runtime.metrics.transactionsAborted, 0, 'no transaction was refused');
  });

  test('a record too large even for the dead-letter topic is dead-lettered truncated, with its size and offset', async () => {
    const config = await detectorTestConfig('tw-live-huge');
    // An events topic that takes 2 MB records; the dead-letter topic keeps the broker's 1 MB.
    await createTopic(config.kafka.brokers, config.topics.events, 3, [{ name: 'max.message.bytes', value: String(2 * 1024 * 1024) }]);
    const huge = Buffer.concat([Buffer.from([0, 0, 0, 0, 1]), Buffer.alloc(1_500_000, 0x61)]);
    const producer = testKafka(config.kafka.brokers).producer();
    await producer.connect();
    await producer.send({ topic: config.topics.events, messages: [{ key: 'huge', value: huge, headers: { origin: 'test' } }] });
    await producer.disconnect();
    const { runtime } = await startDetector(config);
    await waitCommittedToEnd(config, config.topics.events, 60_000);
    const [letter] = await consumeMessages(config.kafka.brokers, config.topics.deadLetter, 1, { timeoutMs: 30_000 });
    assert.ok(letter);
    assert.equal(dlqCode(letter), 'TW_RECORD_TOO_LARGE');
    assert.equal(headerString(letter.headers, DLQ_HEADERS.truncated), String(huge.length), 'the original size');
    assert.equal(headerString(letter.headers, DLQ_HEADERS.topic), config.topics.events);
    assert.equal(headerString(letter.headers, DLQ_HEADERS.offset), '0', 'where the whole record is');
    assert.equal(headerString(letter.headers, 'origin'), 'test', 'original headers kept');
    const value = letter.value as Buffer;
    assert.ok(value.length > 900_000 && value.length < 1_048_576, `as many bytes as fit (${value.length})`);
    assert.ok(huge.subarray(0, value.length).equals(value), 'the first bytes of the original');
    assert.deepEqual(runtime.metrics.deadLetters, { TW_RECORD_TOO_LARGE: 1 });
  });

  test('a failure no retry can mend ends the detector after a few attempts, naming the cause and the topic', async () => {
    const config = await detectorTestConfig('tw-live-fatal');
    // A changelog that takes no record batch over 256 bytes: its barrier fits, no key's state does.
    const changelog = changelogTopics(config.detector.groupId).principal;
    await createTopic(config.kafka.brokers, changelog, 3, [
      { name: 'cleanup.policy', value: 'compact' },
      { name: 'max.message.bytes', value: '256' },
    ]);
    const startMs = Math.floor((Date.now() - 30 * MIN) / MIN) * MIN;
    await publishEvents(config, generateTraffic({ seed: 9, startMs, minutes: 10, actors: DEMO_ACTORS }));
    const { runtime, fatal } = await startDetector(config);
    const err = (await Promise.race([fatal, new Promise((r) => setTimeout(r, 90_000, null))])) as Error & { code?: string };
    assert.ok(err, 'the detector gave up');
    assert.equal(err.code, 'TW_TASK_FAILED');
    assert.match(err.message, /TW_RECORD_TOO_LARGE/);
    assert.match(err.message, new RegExp(changelog.replace(/[.]/g, '\\.')));
    assert.match(err.message, /failed 3 times/);
    assert.equal(runtime.metrics.transactionsCommitted, 0);
  });
});
