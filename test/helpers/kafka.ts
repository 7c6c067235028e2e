/**
 * Small Kafka helpers for integration tests: unique names, topics that delete themselves after the
 * test, and consuming a known number of records with a time limit.
 */

import { after, type TestContext } from 'node:test';
import { Kafka, type KafkaMessage, logLevel } from 'kafkajs';
import { waitForTopicsReady } from '../../src/runtime/topics.ts';

let sequence = 0;

/** A topic, group or transactional id no other test (or earlier run) uses: `<prefix>-<pid>-<time>-<n>-<random>`. */
export function uniqueName(prefix: string): string {
  sequence += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${sequence}-${Math.random().toString(36).slice(2, 6)}`;
}

/** A kafkajs client for tests; kafkajs logs only when TRAILWATCH_TEST_KAFKA_LOG=debug|info|warn|error. */
export function testKafka(brokers: string[], clientId = 'trailwatch-test'): Kafka {
  const levels: Record<string, logLevel> = { debug: logLevel.DEBUG, info: logLevel.INFO, warn: logLevel.WARN, error: logLevel.ERROR };
  return new Kafka({ clientId, brokers, logLevel: levels[process.env.TRAILWATCH_TEST_KAFKA_LOG ?? ''] ?? logLevel.NOTHING });
}

/** Registers cleanup on the test (`t.after`) when given one, else on the enclosing suite or file (`after`). */
function onCleanup(fn: () => Promise<void>, t?: Pick<TestContext, 'after'>): void {
  if (t) t.after(fn);
  else after(fn);
}

/** Deletes every topic whose name starts with `prefix` (a test's unique name): best effort, after a test. */
export async function deleteTopicsWithPrefix(brokers: string[], prefix: string): Promise<void> {
  const admin = testKafka(brokers, 'trailwatch-test-cleanup').admin();
  try {
    await admin.connect();
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 10_000 });
  } catch {
    // best effort: a topic left behind has a unique name and harms nothing
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** Creates topics (replication factor 1) and waits for their leaders; they are deleted after the test. */
export async function createTopics(brokers: string[], topics: string[], partitions = 1, t?: Pick<TestContext, 'after'>): Promise<void> {
  const admin = testKafka(brokers, 'trailwatch-test-admin').admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: topics.map((topic) => ({ topic, numPartitions: partitions, replicationFactor: 1 })),
      // kafkajs gives up on UNKNOWN_TOPIC_OR_PARTITION while it waits for leaders (it retries
      // only LEADER_NOT_AVAILABLE), which a fresh KRaft broker answers: wait below instead.
      waitForLeaders: false,
    });
    await waitForTopicsReady(admin, topics);
  } finally {
    await admin.disconnect();
  }
  onCleanup(async () => {
    const cleaner = testKafka(brokers, 'trailwatch-test-cleanup').admin();
    try {
      await cleaner.connect();
      await cleaner.deleteTopics({ topics, timeout: 10_000 });
    } catch {
      // best effort: a topic left behind has a unique name and harms nothing
    } finally {
      await cleaner.disconnect().catch(() => undefined);
    }
  }, t);
}

export interface ConsumeOptions {
  /** Give up after this long, in ms (default 20 000). */
  timeoutMs?: number;
  /** Consumer group; default a unique one. */
  groupId?: string;
  /** false (the default) reads only committed transactional records, as read_committed. */
  readUncommitted?: boolean;
  /** After `count` records arrived, keep listening this long (ms) so extra records show up too (default 0). */
  settleMs?: number;
}

/**
 * Reads `count` records from the beginning of `topic` in a consumer group, then leaves the group
 * (committing offsets). Returns every record seen, which is more than `count` if more arrived
 * within `settleMs`. Rejects, naming how many arrived, when `count` are not there in time.
 */
export async function consumeMessages(
  brokers: string[],
  topic: string,
  count: number,
  options: ConsumeOptions = {},
): Promise<KafkaMessage[]> {
  const messages: KafkaMessage[] = [];
  await consumeUntil(
    testKafka(brokers, 'trailwatch-test-consumer'),
    topic,
    (message) => {
      messages.push(message);
      return messages.length >= count;
    },
    options.timeoutMs ?? 20_000,
    options,
  );
  return messages;
}

/**
 * Feeds every record of `topic` (from the beginning) to `onMessage` until it returns true (and, with
 * `settleMs`, for that much longer, ignoring what it returns), in a fresh consumer group unless one
 * is given. Rejects after `timeoutMs`. The consumer is always disconnected before this settles.
 */
export async function consumeUntil(
  kafka: Kafka,
  topic: string,
  onMessage: (message: KafkaMessage, partition: number) => boolean | Promise<boolean>,
  timeoutMs = 20_000,
  options: Omit<ConsumeOptions, 'timeoutMs'> = {},
): Promise<void> {
  const consumer = kafka.consumer({
    groupId: options.groupId ?? uniqueName('tw-test-group'),
    readUncommitted: options.readUncommitted ?? false,
    maxWaitTimeInMs: 500,
  });
  let seen = 0;
  let finish: (err?: unknown) => void = () => {};
  const done = new Promise<void>((resolve, reject) => {
    finish = (err?: unknown) => (err === undefined ? resolve() : reject(err));
  });
  let finished = false;
  let settling = false;
  const timer = setTimeout(() => {
    finish(new Error(`timed out after ${timeoutMs} ms waiting for records on ${topic} (${seen} arrived)`));
  }, timeoutMs);
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message, partition }) => {
        if (finished) return;
        seen += 1;
        try {
          const enough = await onMessage(message, partition);
          if (enough && !settling) {
            const settleMs = options.settleMs ?? 0;
            if (settleMs > 0) {
              settling = true;
              setTimeout(() => {
                finished = true;
                finish();
              }, settleMs);
            } else {
              finished = true;
              finish();
            }
          }
        } catch (err) {
          finished = true;
          finish(err);
        }
      },
    });
    await done;
  } finally {
    clearTimeout(timer);
    finished = true;
    await consumer.disconnect();
  }
}
