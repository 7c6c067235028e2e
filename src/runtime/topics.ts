import type { Admin, Kafka } from 'kafkajs';
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
        // kafkajs gives up on UNKNOWN_TOPIC_OR_PARTITION while it waits for leaders (it retries
        // only LEADER_NOT_AVAILABLE), which a fresh KRaft broker answers: wait below instead.
        waitForLeaders: false,
        topics: wanted.map((topic) => ({
          topic,
          numPartitions: topics.partitions,
          replicationFactor: topics.replicationFactor,
          // Dead letters are kept a month: they wait for a fix and a replay.
          configEntries: topic === topics.deadLetter ? [{ name: 'retention.ms', value: String(30 * 24 * 3_600_000) }] : [],
        })),
      });
    }
    if (wanted.length > 0) await waitForTopicsReady(admin, wanted);
    return wanted;
  } finally {
    await admin.disconnect();
  }
}

/**
 * Waits until every partition of the topics answers a ListOffsets on its leader. A leader
 * elected by the controller is not yet a broker that hosts the partition, and a producer that
 * comes too early gets UNKNOWN_TOPIC_OR_PARTITION on a busy machine.
 */
export async function waitForTopicsReady(admin: Admin, topics: string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const topic of topics) {
    for (;;) {
      try {
        const offsets = await admin.fetchTopicOffsets(topic);
        if (offsets.length > 0) break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
