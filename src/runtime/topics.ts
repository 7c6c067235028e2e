import type { Admin, Kafka } from 'kafkajs';
import type { Config, TopicsConfig } from '../config/schema.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';

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

/** The detector's internal topics and the partition counts its tasks follow. */
export interface DetectorTopics {
  actions: string;
  principalChangelog: string;
  actionChangelog: string;
  eventPartitions: number;
  actionPartitions: number;
}

/** Changelog topics are named after the consumer group, as Kafka Streams names its stores'. */
export function changelogTopics(groupId: string): { principal: string; action: string } {
  return { principal: `${groupId}-principal-changelog`, action: `${groupId}-action-changelog` };
}

/** The repartition topic: configured, or named after the group (as Kafka Streams names its own). */
export function actionsTopic(config: Config): string {
  return config.topics.actions ?? `${config.detector.groupId}-actions-repartition`;
}

/**
 * Creates what the detector needs: the public topics, the repartition topic, and one compacted
 * changelog per stage with as many partitions as the topic the stage reads (a task's state sits
 * in the changelog partition of the same number).
 */
export async function ensureDetectorTopics(admin: Admin, config: Config): Promise<DetectorTopics> {
  const { topics } = config;
  const changelogs = changelogTopics(config.detector.groupId);
  const create = async (list: Array<{ topic: string; numPartitions: number; configEntries?: Array<{ name: string; value: string }> }>) => {
    const existing = new Set(await admin.listTopics());
    const wanted = list.filter((t) => !existing.has(t.topic));
    if (wanted.length === 0) return;
    await admin.createTopics({
      waitForLeaders: false,
      topics: wanted.map((t) => ({ ...t, replicationFactor: topics.replicationFactor })),
    });
    await waitForTopicsReady(
      admin,
      wanted.map((t) => t.topic),
    );
  };
  await create([
    { topic: topics.events, numPartitions: topics.partitions },
    { topic: topics.alerts, numPartitions: topics.partitions },
    {
      topic: topics.deadLetter,
      numPartitions: topics.partitions,
      configEntries: [{ name: 'retention.ms', value: String(30 * 24 * 3_600_000) }],
    },
    { topic: actionsTopic(config), numPartitions: topics.partitions },
  ]);
  const partitionsOf = async (topic: string) => (await admin.fetchTopicOffsets(topic)).length;
  const eventPartitions = await partitionsOf(topics.events);
  const actionPartitions = await partitionsOf(actionsTopic(config));
  const compacted = [{ name: 'cleanup.policy', value: 'compact' }];
  await create([
    { topic: changelogs.principal, numPartitions: eventPartitions, configEntries: compacted },
    { topic: changelogs.action, numPartitions: actionPartitions, configEntries: compacted },
  ]);
  for (const [changelog, expected] of [
    [changelogs.principal, eventPartitions],
    [changelogs.action, actionPartitions],
  ] as const) {
    const actual = await partitionsOf(changelog);
    if (actual !== expected) {
      throw new TrailwatchError(
        ErrorCodes.CONFIG_INVALID,
        `changelog ${changelog} has ${actual} partitions but its input has ${expected}: state cannot follow partitions; ` +
          'delete the changelog (its state is rebuilt from scratch) or give the detector a new detector.groupId',
        { fault: 'user' },
      );
    }
  }
  return {
    actions: actionsTopic(config),
    principalChangelog: changelogs.principal,
    actionChangelog: changelogs.action,
    eventPartitions,
    actionPartitions,
  };
}
