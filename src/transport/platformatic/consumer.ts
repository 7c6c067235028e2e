import { type BaseOptions, Consumer, FetchIsolationLevels, type GroupAssignment, ListOffsetTimestamps } from '@platformatic/kafka';
import type { Logger } from '../../logger.ts';
import { mapped, transportError } from '../errors.ts';
import type {
  Batch,
  GroupConsumer,
  GroupConsumerOptions,
  GroupHandlers,
  Headers,
  InRecord,
  PartitionOffset,
  TopicPartition,
} from '../types.ts';

const C = 'platformatic' as const;

type FetchRequestTopic = Parameters<Consumer['fetch']>[0]['topics'][number];
type FetchResponsePartition = Awaited<ReturnType<Consumer['fetch']>>['responses'][number]['partitions'][number];
/** Attribute bit of a record batch holding a transaction marker. */
const CONTROL_BATCH = 0x20;
const IDLE_MS = 100;
const RETRY_BACKOFF_MS = 1_000;

const tpKey = (topic: string, partition: number) => `${topic}\u0000${partition}`;

function headersOf(entries: Array<[Buffer | null, Buffer | null]>): Headers {
  const out: Headers = {};
  for (const [k, v] of entries) if (k) out[k.toString('utf8')] = v ?? Buffer.alloc(0);
  return out;
}

/**
 * Producers whose aborted transaction's marker lies beyond this fetch. The client drops aborted
 * records only when the marker is in the same response and hands the rest over "for safety";
 * under read_committed every listed transaction is complete and aborted, so a batch of such a
 * producer at or after the transaction's first offset is aborted whether its marker came yet or not.
 */
function openAborts(p: FetchResponsePartition): Map<bigint, bigint> {
  const open = new Map<bigint, bigint>();
  for (const a of p.abortedTransactions ?? []) open.set(a.producerId, a.firstOffset);
  for (const b of p.records ?? []) {
    const first = open.get(b.producerId);
    if (first !== undefined && b.attributes & CONTROL_BATCH && b.firstOffset >= first) open.delete(b.producerId);
  }
  return open;
}

/**
 * A group member on @platformatic/kafka. The client's Consumer keeps the membership (join, sync,
 * heartbeats on its own timer, so long batch work does not starve them); fetching is done here
 * with its `fetch` call rather than its MessagesStream, because the seam needs what the stream
 * does not offer: per-partition batches, seek, per-partition pause and positions we own.
 */
export class PlatformaticGroupConsumer implements GroupConsumer {
  private readonly consumer: Consumer;
  private readonly options: GroupConsumerOptions;
  private readonly log: Logger;
  private handlers: GroupHandlers | null = null;
  private owned = new Map<string, TopicPartition>();
  /** The next offset to fetch, per owned partition (absent: look up the committed one). */
  private readonly positions = new Map<string, bigint>();
  private readonly paused = new Set<string>();
  /** Bumped by seek and revoke: records fetched before are stale. */
  private readonly epochs = new Map<string, number>();
  /** The assignment of the latest join, not applied yet. */
  private latest: GroupAssignment[] | null = null;
  private loop: Promise<void> | null = null;
  private closing = false;

  constructor(base: BaseOptions, options: GroupConsumerOptions, logger: Logger) {
    this.options = options;
    this.log = logger;
    const session = options.sessionTimeoutMs ?? 30_000;
    this.consumer = new Consumer({
      ...base,
      groupId: options.groupId,
      autocommit: false,
      sessionTimeout: session,
      heartbeatInterval: Math.max(500, Math.floor(session / 10)),
      rebalanceTimeout: Math.max(10_000, 2 * session),
      isolationLevel: options.readCommitted === false ? FetchIsolationLevels.READ_UNCOMMITTED : FetchIsolationLevels.READ_COMMITTED,
      maxBytesPerPartition: options.maxBytesPerPartition ?? 1_048_576, // 1 MiB, as the Java client
      maxWaitTime: options.maxWaitMs ?? 500,
    });
  }

  private epoch(key: string): number {
    return this.epochs.get(key) ?? 0;
  }

  private bump(key: string): void {
    this.epochs.set(key, this.epoch(key) + 1);
  }

  async run(handlers: GroupHandlers): Promise<void> {
    this.handlers = handlers;
    this.consumer.on('consumer:group:join', (payload) => {
      this.latest = payload.assignments ?? [];
    });
    // The client reports a failed rejoin as an 'error' event: without a listener it would throw.
    this.consumer.on('error', (err: Error) => this.log.warn({ err: err.message, groupId: this.options.groupId }, 'group rejoin failed'));
    this.consumer.topics.trackAll(...this.options.topics);
    await mapped(C, `joining group ${this.options.groupId}`, () => this.consumer.joinGroup({}));
    this.latest ??= this.consumer.assignments ?? [];
    await this.applyAssignment();
    this.loop = this.fetchLoop().catch((err: unknown) => {
      if (this.closing) return;
      handlers.onCrash?.(transportError(err, C, `consumer of group ${this.options.groupId} stopped`));
    });
  }

  /** Revokes and assigns, between batches, what the latest join changed. */
  private async applyAssignment(): Promise<void> {
    const latest = this.latest;
    if (latest === null) return;
    this.latest = null;
    const next = new Map<string, TopicPartition>();
    for (const a of latest) for (const partition of a.partitions) next.set(tpKey(a.topic, partition), { topic: a.topic, partition });
    const revoked = [...this.owned].filter(([k]) => !next.has(k));
    const assigned = [...next].filter(([k]) => !this.owned.has(k)).map(([, tp]) => tp);
    for (const [k] of revoked) {
      this.bump(k);
      this.positions.delete(k);
    }
    this.owned = next;
    if (revoked.length > 0) await this.handlers?.onRevoked?.(revoked.map(([, tp]) => tp));
    if (assigned.length > 0) await this.handlers?.onAssigned?.(assigned);
  }

  /** Positions of partitions that have none: the committed offset, else the earliest or latest. */
  private async resolvePositions(keys: string[]): Promise<void> {
    const missing = keys.filter((k) => !this.positions.has(k)).map((k) => this.owned.get(k) as TopicPartition);
    if (missing.length === 0) return;
    const byTopic = new Map<string, number[]>();
    for (const tp of missing) byTopic.set(tp.topic, [...(byTopic.get(tp.topic) ?? []), tp.partition]);
    const committed = await this.consumer.listCommittedOffsets({
      topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
    });
    const unset: TopicPartition[] = [];
    for (const tp of missing) {
      const offset = committed.get(tp.topic)?.[tp.partition];
      if (offset !== undefined && offset >= 0n) this.positions.set(tpKey(tp.topic, tp.partition), offset);
      else unset.push(tp);
    }
    if (unset.length === 0) return;
    const partitions: Record<string, number[]> = {};
    for (const tp of unset) partitions[tp.topic] = [...(partitions[tp.topic] ?? []), tp.partition];
    const offsets = await this.consumer.listOffsets({
      topics: Object.keys(partitions),
      partitions,
      timestamp: this.options.fromBeginning ? ListOffsetTimestamps.EARLIEST : ListOffsetTimestamps.LATEST,
    });
    for (const tp of unset) this.positions.set(tpKey(tp.topic, tp.partition), offsets.get(tp.topic)?.[tp.partition] ?? 0n);
  }

  private async fetchLoop(): Promise<void> {
    while (!this.closing) {
      try {
        await this.applyAssignment();
        const keys = [...this.owned.keys()].filter((k) => !this.paused.has(k));
        if (keys.length === 0 || !this.consumer.isActive()) {
          await new Promise((r) => setTimeout(r, IDLE_MS));
          continue;
        }
        await this.resolvePositions(keys);
        await this.fetchOnce(keys);
      } catch (err) {
        if (this.closing) return;
        const e = transportError(err, C, `fetching for group ${this.options.groupId}`);
        if (!e.canRetry) throw e;
        this.log.warn({ err: e.message, groupId: this.options.groupId }, 'fetch failed: retrying');
        await new Promise((r) => setTimeout(r, RETRY_BACKOFF_MS));
      }
    }
  }

  /** One fetch per leader, in parallel; then the batches, one at a time. */
  private async fetchOnce(keys: string[]): Promise<void> {
    const metadata = await this.consumer.metadata({ topics: this.options.topics });
    const byNode = new Map<number, FetchRequestTopic[]>();
    const names = new Map<string, string>();
    const asked = new Map<string, { offset: bigint; epoch: number }>();
    for (const key of keys) {
      const tp = this.owned.get(key) as TopicPartition;
      const topic = metadata.topics.get(tp.topic);
      const leader = topic?.partitions[tp.partition]?.leader;
      const offset = this.positions.get(key);
      if (!topic || leader === undefined || offset === undefined) continue;
      names.set(topic.id, tp.topic);
      asked.set(key, { offset, epoch: this.epoch(key) });
      const list = byNode.get(leader) ?? [];
      list.push({
        topicId: topic.id,
        partitions: [
          {
            partition: tp.partition,
            fetchOffset: offset,
            partitionMaxBytes: this.options.maxBytesPerPartition ?? 1_048_576,
            currentLeaderEpoch: -1,
            lastFetchedEpoch: -1,
          },
        ],
      });
      byNode.set(leader, list);
    }
    const responses = await Promise.all([...byNode].map(([node, topics]) => this.consumer.fetch({ node, topics })));
    for (const response of responses) {
      for (const t of response.responses) {
        const topic = names.get(t.topicId) ?? t.topicId;
        for (const p of t.partitions) {
          const key = tpKey(topic, p.partitionIndex);
          const ask = asked.get(key);
          if (!ask || this.closing || this.epoch(key) !== ask.epoch || !this.owned.has(key)) continue;
          const batch = this.batchOf(topic, p, ask.offset);
          if (!batch) continue;
          this.positions.set(key, batch.nextOffset);
          await this.deliver(key, batch, ask.epoch);
          // A rebalance between batches is handled before the next one.
          await this.applyAssignment();
        }
      }
    }
  }

  private batchOf(topic: string, p: FetchResponsePartition, from: bigint): Batch | null {
    const batches = p.records ?? [];
    const last = batches[batches.length - 1];
    if (!last) return null;
    const aborted = this.options.readCommitted === false ? new Map<bigint, bigint>() : openAborts(p);
    const records: InRecord[] = [];
    for (const b of batches) {
      if (b.attributes & CONTROL_BATCH) continue;
      const abortedFrom = aborted.get(b.producerId);
      if (abortedFrom !== undefined && b.firstOffset >= abortedFrom) continue;
      for (const r of b.records) {
        const offset = b.firstOffset + BigInt(r.offsetDelta);
        // A compressed batch starts where it was written, before the offset asked for.
        if (offset < from) continue;
        records.push({
          key: r.key,
          value: r.value,
          headers: headersOf(r.headers),
          offset,
          timestampMs: Number(b.firstTimestamp + r.timestampDelta),
        });
      }
    }
    const nextOffset = last.firstOffset + BigInt(last.lastOffsetDelta) + 1n;
    if (nextOffset <= from) return null;
    return { topic, partition: p.partitionIndex, records, highWatermark: p.highWatermark, nextOffset };
  }

  private async deliver(key: string, batch: Batch, epoch: number): Promise<void> {
    const handlers = this.handlers;
    if (!handlers) return;
    try {
      await handlers.onBatch(batch, {
        // The client heartbeats on its own timer, whatever the batch work does.
        heartbeat: async () => undefined,
        isStale: () => this.closing || this.epoch(key) !== epoch || !this.owned.has(key),
      });
    } catch (err) {
      this.log.warn({ err: (err as Error).message, topic: batch.topic, partition: batch.partition }, 'batch handler failed');
    }
  }

  seek(topic: string, partition: number, offset: bigint): void {
    const key = tpKey(topic, partition);
    this.bump(key);
    this.positions.set(key, offset);
  }

  pause(partitions: TopicPartition[]): void {
    for (const tp of partitions) this.paused.add(tpKey(tp.topic, tp.partition));
  }

  resume(partitions: TopicPartition[]): void {
    for (const tp of partitions) this.paused.delete(tpKey(tp.topic, tp.partition));
  }

  assignment(): TopicPartition[] {
    return [...this.owned.values()];
  }

  committed(topic: string): Promise<Map<number, bigint>> {
    return mapped(C, `reading the committed offsets of ${this.options.groupId}`, async () => {
      const metadata = await this.consumer.metadata({ topics: [topic] });
      const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
      const partitions = Array.from({ length: count }, (_, i) => i);
      const committed = await this.consumer.listCommittedOffsets({ topics: [{ topic, partitions }] });
      const out = new Map<number, bigint>();
      for (const p of partitions) {
        const offset = committed.get(topic)?.[p];
        if (offset !== undefined && offset >= 0n) out.set(p, offset);
      }
      return out;
    });
  }

  commit(offsets: PartitionOffset[]): Promise<void> {
    return mapped(C, `committing offsets of ${this.options.groupId}`, () =>
      this.consumer.commit({
        offsets: offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset, leaderEpoch: -1 })),
      }),
    );
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.loop;
    await new Promise<void>((resolve) => this.consumer.leaveGroup(false, () => resolve()));
    await this.consumer.close();
  }
}
