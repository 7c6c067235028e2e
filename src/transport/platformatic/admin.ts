import { type BaseOptions, ConfigResourceTypes, Admin as KafkaAdmin, ListOffsetTimestamps } from '@platformatic/kafka';
import { mapped } from '../errors.ts';
import { partitionsReady } from '../ready.ts';
import type { Admin, PartitionRange, TopicSpec } from '../types.ts';

const C = 'platformatic' as const;

export class PlatformaticAdmin implements Admin {
  private readonly admin: KafkaAdmin;

  constructor(options: BaseOptions) {
    this.admin = new KafkaAdmin(options);
  }

  listTopics(): Promise<string[]> {
    return mapped(C, 'listing topics', () => this.admin.listTopics());
  }

  createTopics(topics: TopicSpec[]): Promise<string[]> {
    return mapped(C, 'creating topics', async () => {
      const existing = new Set(await this.admin.listTopics());
      const wanted = topics.filter((t) => !existing.has(t.topic));
      // One request per topic: configs apply to every topic of a request.
      for (const t of wanted) {
        await this.admin.createTopics({
          topics: [t.topic],
          partitions: t.partitions,
          replicas: t.replicationFactor ?? 1,
          configs: Object.entries(t.configs ?? {}).map(([name, value]) => ({ name, value })),
        });
      }
      for (const t of wanted) await partitionsReady(this, t.topic, t.partitions);
      return wanted.map((t) => t.topic);
    });
  }

  deleteTopics(topics: string[]): Promise<void> {
    return mapped(C, 'deleting topics', () => this.admin.deleteTopics({ topics }));
  }

  topicOffsets(topic: string): Promise<PartitionRange[]> {
    return mapped(C, `reading the offsets of ${topic}`, async () => {
      const metadata = await this.admin.metadata({ topics: [topic], forceUpdate: true });
      const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
      const at = async (timestamp: bigint) => {
        const partitions = Array.from({ length: count }, (_, partitionIndex) => ({ partitionIndex, timestamp }));
        const [listed] = await this.admin.listOffsets({ topics: [{ name: topic, partitions }] });
        return new Map((listed?.partitions ?? []).map((p) => [p.partitionIndex, p.offset]));
      };
      const [low, high] = await Promise.all([at(ListOffsetTimestamps.EARLIEST), at(ListOffsetTimestamps.LATEST)]);
      return Array.from({ length: count }, (_, partition) => ({
        partition,
        low: low.get(partition) ?? 0n,
        high: high.get(partition) ?? 0n,
      }));
    });
  }

  committedOffsets(groupId: string, topic: string): Promise<Map<number, bigint>> {
    return mapped(C, `reading the committed offsets of ${groupId} on ${topic}`, async () => {
      const metadata = await this.admin.metadata({ topics: [topic] });
      const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
      const partitionIndexes = Array.from({ length: count }, (_, i) => i);
      const [group] = await this.admin.listConsumerGroupOffsets({
        groups: [{ groupId, topics: [{ name: topic, partitionIndexes }] }],
        // Waits for offsets of transactions still completing (KIP-447) rather than answering without them.
        requireStable: true,
      });
      const out = new Map<number, bigint>();
      for (const t of group?.topics ?? []) {
        for (const p of t.partitions) if (p.committedOffset >= 0n) out.set(p.partitionIndex, p.committedOffset);
      }
      return out;
    });
  }

  describeTopicConfigs(topic: string, names?: string[]): Promise<Record<string, string>> {
    return mapped(C, `describing the configs of ${topic}`, async () => {
      const [described] = await this.admin.describeConfigs({
        resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: topic, configurationKeys: names ?? null }],
      });
      const out: Record<string, string> = {};
      for (const c of described?.configs ?? []) if (typeof c.value === 'string') out[c.name] = c.value;
      return out;
    });
  }

  brokerMessageMaxBytes(): Promise<number> {
    return mapped(C, 'describing the broker config message.max.bytes', async () => {
      const metadata = await this.admin.metadata({});
      const [nodeId] = metadata.brokers.keys();
      if (nodeId === undefined) throw new Error('the cluster lists no broker');
      const [described] = await this.admin.describeConfigs({
        resources: [{ resourceType: ConfigResourceTypes.BROKER, resourceName: String(nodeId), configurationKeys: ['message.max.bytes'] }],
      });
      const value = described?.configs.find((c) => c.name === 'message.max.bytes')?.value;
      if (!value) throw new Error('the broker did not report message.max.bytes');
      return Number(value);
    });
  }

  close(): Promise<void> {
    return this.admin.close();
  }
}
