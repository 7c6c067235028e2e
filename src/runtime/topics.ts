import kafkajs, { type Admin, type Kafka } from 'kafkajs';
import type { Config, TopicsConfig } from '../config/schema.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import type { Admin as TransportAdmin } from '../transport/types.ts';

const DEAD_LETTER_RETENTION_MS = 30 * 24 * 3_600_000; // a month: dead letters wait for a fix and a replay

/**
 * The explicit configs of a public topic trailwatch creates: its retention never falls back to
 * the broker's default (a development broker's may be a day, or hours), whose deletes would
 * take records a detector has not read yet.
 */
export function createdTopicConfig(topics: TopicsConfig, topic: string): Array<{ name: string; value: string }> {
  if (topic === topics.events) return [{ name: 'retention.ms', value: String(topics.eventsRetentionMs) }];
  if (topic === topics.alerts || topic === topics.findings) return [{ name: 'retention.ms', value: String(topics.alertsRetentionMs) }];
  if (topic === topics.deadLetter) return [{ name: 'retention.ms', value: String(DEAD_LETTER_RETENTION_MS) }];
  return [];
}

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
          configEntries: createdTopicConfig(topics, topic),
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

/**
 * The status topic keeps the latest record per member (compaction) and forgets a member that
 * stopped without its tombstone after a day (deletion); hourly segments let both happen.
 */
const STATUS_TOPIC_CONFIG = [
  { name: 'cleanup.policy', value: 'compact,delete' },
  { name: 'retention.ms', value: String(24 * 3_600_000) }, // a day
  { name: 'segment.ms', value: String(3_600_000) }, // an hour
];

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
export async function ensureDetectorTopics(admin: TransportAdmin, config: Config): Promise<DetectorTopics> {
  const { topics } = config;
  const changelogs = changelogTopics(config.detector.groupId);
  const create = async (list: Array<{ topic: string; numPartitions: number; configEntries?: Array<{ name: string; value: string }> }>) => {
    await admin.createTopics(
      list.map((t) => ({
        topic: t.topic,
        partitions: t.numPartitions,
        replicationFactor: topics.replicationFactor,
        configs: Object.fromEntries((t.configEntries ?? []).map((e) => [e.name, e.value])),
      })),
    );
  };
  await create([
    { topic: topics.events, numPartitions: topics.partitions, configEntries: createdTopicConfig(topics, topics.events) },
    { topic: topics.alerts, numPartitions: topics.partitions, configEntries: createdTopicConfig(topics, topics.alerts) },
    { topic: topics.findings, numPartitions: topics.partitions, configEntries: createdTopicConfig(topics, topics.findings) },
    { topic: topics.deadLetter, numPartitions: topics.partitions, configEntries: createdTopicConfig(topics, topics.deadLetter) },
    { topic: actionsTopic(config), numPartitions: topics.partitions },
    { topic: topics.status, numPartitions: 1, configEntries: STATUS_TOPIC_CONFIG },
  ]);
  const partitionsOf = async (topic: string) => (await admin.topicOffsets(topic)).length;
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

/**
 * Creates what the raw-ingest stage needs when missing: the events and dead-letter topics with
 * the configs trailwatch gives them, and the raw topics it reads (the broker's defaults), so the
 * stage can start before its forwarders. Returns the names created.
 */
export async function ensureIngestTopics(admin: TransportAdmin, topics: TopicsConfig, rawTopics: readonly string[]): Promise<string[]> {
  const spec = (topic: string) => ({
    topic,
    partitions: topics.partitions,
    replicationFactor: topics.replicationFactor,
    configs: Object.fromEntries(createdTopicConfig(topics, topic).map((e) => [e.name, e.value])),
  });
  return admin.createTopics([...new Set([topics.events, topics.deadLetter, ...rawTopics])].map(spec));
}

/** The configs of a topic that decide when the broker deletes its records. */
export interface TopicRetention {
  topic: string;
  partitions: number;
  /** -1: no time limit. */
  retentionMs: number;
  /** Per partition; -1: no size limit. */
  retentionBytes: number;
  cleanupPolicy: string;
  timestampType: string;
}

// kafkajs is CommonJS and Node cannot see this enum as a named export.
const { ConfigResourceTypes } = kafkajs;

const RETENTION_CONFIGS = ['retention.ms', 'retention.bytes', 'cleanup.policy', 'message.timestamp.type'];

/** Reads a topic's retention configs (its own, or the broker's defaults it inherits). */
export async function describeRetention(admin: Admin, topic: string): Promise<TopicRetention> {
  const { resources } = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: RETENTION_CONFIGS }],
    includeSynonyms: false,
  });
  const entries = new Map((resources[0]?.configEntries ?? []).map((e) => [e.configName, e.configValue]));
  const num = (name: string): number => {
    const value = Number(entries.get(name));
    return Number.isFinite(value) ? value : -1;
  };
  return {
    topic,
    partitions: (await admin.fetchTopicOffsets(topic)).length,
    retentionMs: num('retention.ms'),
    retentionBytes: num('retention.bytes'),
    cleanupPolicy: entries.get('cleanup.policy') ?? 'delete',
    timestampType: entries.get('message.timestamp.type') ?? 'CreateTime',
  };
}

/**
 * Below this, `retention.ms` may delete published records before a detector reads them: a
 * detector stopped over a night or a weekend, or catching up on a large backfill, is normal.
 */
export const MIN_SAFE_RETENTION_MS = 24 * 3_600_000; // one day

/**
 * Why the broker could delete records published to `r.topic` before a detector reads them; empty
 * when nothing in its configs does. The rule (README, "Publishing"):
 *   - `cleanup.policy` includes `compact`: compaction keeps only the latest record per key, and the
 *     events topic's key is account|principal, so it drops almost every event;
 *   - `retention.ms` is set and below a day (MIN_SAFE_RETENTION_MS);
 *   - `retention.bytes` is set and below the bytes this run writes to one partition
 *     (`bytesPerPartition`, when known): the oldest segments go first, this run's among them.
 * The timestamp type does not matter: publish stamps records with its own wall clock, so
 * CreateTime and LogAppendTime both count retention from the publish.
 */
export function retentionRisks(r: TopicRetention, bytesPerPartition?: number): string[] {
  const risks: string[] = [];
  if (/compact/.test(r.cleanupPolicy))
    risks.push(`cleanup.policy=${r.cleanupPolicy} keeps only the latest record of each account|principal key`);
  if (r.retentionMs >= 0 && r.retentionMs < MIN_SAFE_RETENTION_MS) {
    risks.push(`retention.ms=${r.retentionMs} (${formatDuration(r.retentionMs)}) deletes records that long after they are published`);
  }
  if (r.retentionBytes >= 0 && bytesPerPartition !== undefined && bytesPerPartition > r.retentionBytes) {
    risks.push(
      `retention.bytes=${r.retentionBytes} per partition is less than the ${bytesPerPartition} bytes this run wrote to one partition`,
    );
  }
  return risks;
}

/** One line naming the topic, what is at risk and the two fixes. */
export function retentionWarning(r: TopicRetention, risks: string[], brokers: readonly string[]): string {
  const fix =
    `kafka-configs --bootstrap-server ${brokers[0] ?? '<broker>'} --alter --entity-type topics --entity-name ${r.topic} ` +
    `--add-config retention.ms=${7 * MIN_SAFE_RETENTION_MS},retention.bytes=-1${/compact/.test(r.cleanupPolicy) ? ',cleanup.policy=delete' : ''}`;
  return (
    `warning: topic ${r.topic} may delete published records before a detector reads them: ${risks.join('; ')} ` +
    `(retention.ms=${r.retentionMs}, retention.bytes=${r.retentionBytes}). Fix: ${fix}, or publish to a new topic ` +
    '(trailwatch creates it with retention.ms = topics.eventsRetentionMs)'
  );
}

function formatDuration(ms: number): string {
  if (ms >= 3_600_000) return `${+(ms / 3_600_000).toFixed(1)} h`;
  if (ms >= 60_000) return `${+(ms / 60_000).toFixed(1)} min`;
  return `${+(ms / 1000).toFixed(1)} s`;
}
