import type { ConfigResourceTypes, Kafka, Admin as KafkaAdmin } from 'kafkajs';
import { mapped } from '../errors.ts';
import { partitionsReady } from '../ready.ts';
import type { Admin, PartitionRange, TopicSpec } from '../types.ts';

const C = 'kafkajs' as const;
// kafkajs's enum is not a named export Node's CommonJS loader can see: its values, typed.
const TOPIC = 2 as ConfigResourceTypes;
const BROKER = 4 as ConfigResourceTypes;

export class KafkajsAdmin implements Admin {
  private readonly admin: KafkaAdmin;

  constructor(kafka: Kafka) {
    this.admin = kafka.admin();
  }

  connect(): Promise<void> {
    return mapped(C, 'connecting the admin client', () => this.admin.connect());
  }

  listTopics(): Promise<string[]> {
    return mapped(C, 'listing topics', () => this.admin.listTopics());
  }

  createTopics(topics: TopicSpec[]): Promise<string[]> {
    return mapped(C, 'creating topics', async () => {
      const existing = new Set(await this.admin.listTopics());
      const wanted = topics.filter((t) => !existing.has(t.topic));
      if (wanted.length === 0) return [];
      await this.admin.createTopics({
        // kafkajs gives up on UNKNOWN_TOPIC_OR_PARTITION while it waits for leaders, which a fresh
        // KRaft broker answers: wait below instead.
        waitForLeaders: false,
        topics: wanted.map((t) => ({
          topic: t.topic,
          numPartitions: t.partitions,
          replicationFactor: t.replicationFactor ?? 1,
          configEntries: Object.entries(t.configs ?? {}).map(([name, value]) => ({ name, value })),
        })),
      });
      for (const t of wanted) await partitionsReady(this, t.topic, t.partitions);
      return wanted.map((t) => t.topic);
    });
  }

  deleteTopics(topics: string[]): Promise<void> {
    return mapped(C, 'deleting topics', () => this.admin.deleteTopics({ topics, timeout: 10_000 }));
  }

  topicOffsets(topic: string): Promise<PartitionRange[]> {
    return mapped(C, `reading the offsets of ${topic}`, async () =>
      (await this.admin.fetchTopicOffsets(topic))
        .map((o) => ({ partition: o.partition, low: BigInt(o.low), high: BigInt(o.high) }))
        .sort((a, b) => a.partition - b.partition),
    );
  }

  committedOffsets(groupId: string, topic: string): Promise<Map<number, bigint>> {
    return mapped(C, `reading the committed offsets of ${groupId} on ${topic}`, async () => {
      const [entry] = await this.admin.fetchOffsets({ groupId, topics: [topic] });
      const out = new Map<number, bigint>();
      for (const p of entry?.partitions ?? []) if (BigInt(p.offset) >= 0n) out.set(p.partition, BigInt(p.offset));
      return out;
    });
  }

  describeTopicConfigs(topic: string, names?: string[]): Promise<Record<string, string>> {
    return mapped(C, `describing the configs of ${topic}`, async () => {
      const { resources } = await this.admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: TOPIC, name: topic, ...(names ? { configNames: names } : {}) }],
      });
      const out: Record<string, string> = {};
      for (const e of resources[0]?.configEntries ?? []) if (e.configValue !== null) out[e.configName] = e.configValue;
      return out;
    });
  }

  brokerMessageMaxBytes(): Promise<number> {
    return mapped(C, 'describing the broker config message.max.bytes', async () => {
      const { brokers } = await this.admin.describeCluster();
      const broker = brokers[0];
      if (!broker) throw new Error('the cluster lists no broker');
      const { resources } = await this.admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: BROKER, name: String(broker.nodeId), configNames: ['message.max.bytes'] }],
      });
      const value = resources[0]?.configEntries.find((e) => e.configName === 'message.max.bytes')?.configValue;
      if (!value) throw new Error('the broker did not report message.max.bytes');
      return Number(value);
    });
  }

  close(): Promise<void> {
    return this.admin.disconnect();
  }
}
