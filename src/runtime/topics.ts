import type { Kafka } from 'kafkajs';
import type { TopicsConfig } from '../config/schema.ts';

/** Creates trailwatch's topics when they are missing; existing topics are left as they are. */
export async function ensureTopics(kafka: Kafka, topics: TopicsConfig): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const wanted = [topics.events, topics.alerts, topics.deadLetter].filter((t) => !existing.has(t));
    if (wanted.length > 0) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: wanted.map((topic) => ({
          topic,
          numPartitions: topics.partitions,
          replicationFactor: topics.replicationFactor,
          // Dead letters are kept a month: they wait for a fix and a replay.
          configEntries: topic === topics.deadLetter ? [{ name: 'retention.ms', value: String(30 * 24 * 3_600_000) }] : [],
        })),
      });
    }
    return wanted;
  } finally {
    await admin.disconnect();
  }
}
