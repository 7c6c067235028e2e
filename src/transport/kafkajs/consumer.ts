import type { Consumer, EachBatchPayload, IHeaders, Kafka, Admin as KafkaAdmin, KafkaMessage } from 'kafkajs';
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

const C = 'kafkajs' as const;

function headersOf(h: IHeaders | undefined): Headers {
  const out: Headers = {};
  if (!h) return out;
  for (const [name, v] of Object.entries(h)) {
    const last = Array.isArray(v) ? v[v.length - 1] : v;
    if (last !== undefined) out[name] = Buffer.isBuffer(last) ? last : Buffer.from(last);
  }
  return out;
}

function recordOf(m: KafkaMessage): InRecord {
  return { key: m.key, value: m.value, headers: headersOf(m.headers), offset: BigInt(m.offset), timestampMs: Number(m.timestamp) };
}

const tpKey = (topic: string, partition: number) => `${topic}\u0000${partition}`;

/**
 * kafkajs's consumer with the seam's guarantees: its eachBatch, its GROUP_JOIN event and its
 * batches that held only transaction markers (END_BATCH_PROCESS, which never reach eachBatch)
 * all go through one queue, so handlers never overlap.
 */
export class KafkajsGroupConsumer implements GroupConsumer {
  private readonly consumer: Consumer;
  private readonly kafka: Kafka;
  private readonly options: GroupConsumerOptions;
  private admin: KafkaAdmin | null = null;
  private owned = new Map<string, TopicPartition>();
  /** Bumped by seek and revoke: a batch taken before is stale. */
  private readonly epochs = new Map<string, number>();
  private chain: Promise<void> = Promise.resolve();
  private closing = false;

  constructor(kafka: Kafka, options: GroupConsumerOptions) {
    this.kafka = kafka;
    this.options = options;
    const session = options.sessionTimeoutMs ?? 30_000;
    this.consumer = kafka.consumer({
      groupId: options.groupId,
      readUncommitted: options.readCommitted === false,
      sessionTimeout: session,
      heartbeatInterval: Math.max(500, Math.floor(session / 10)),
      rebalanceTimeout: Math.max(10_000, 2 * session),
      ...(options.maxBytesPerPartition !== undefined ? { maxBytesPerPartition: options.maxBytesPerPartition } : {}),
      ...(options.maxWaitMs !== undefined ? { maxWaitTimeInMs: options.maxWaitMs } : {}),
    });
  }

  private serialized(fn: () => Promise<void> | void): Promise<void> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private epoch(topic: string, partition: number): number {
    return this.epochs.get(tpKey(topic, partition)) ?? 0;
  }

  private bump(topic: string, partition: number): void {
    const k = tpKey(topic, partition);
    this.epochs.set(k, (this.epochs.get(k) ?? 0) + 1);
  }

  async run(handlers: GroupHandlers): Promise<void> {
    let joined: () => void = () => undefined;
    let failed: (err: Error) => void = () => undefined;
    const first = new Promise<void>((resolve, reject) => {
      joined = resolve;
      failed = reject;
    });
    this.consumer.on(this.consumer.events.GROUP_JOIN, ({ payload }) => {
      const next = new Map<string, TopicPartition>();
      for (const [topic, partitions] of Object.entries(payload.memberAssignment)) {
        for (const partition of partitions) next.set(tpKey(topic, partition), { topic, partition });
      }
      void this.serialized(async () => {
        const revoked = [...this.owned].filter(([k]) => !next.has(k)).map(([, tp]) => tp);
        const assigned = [...next].filter(([k]) => !this.owned.has(k)).map(([, tp]) => tp);
        for (const tp of revoked) this.bump(tp.topic, tp.partition);
        this.owned = next;
        if (revoked.length > 0) await handlers.onRevoked?.(revoked);
        if (assigned.length > 0) await handlers.onAssigned?.(assigned);
      }).then(joined, failed);
    });
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => {
      if (payload.restart || this.closing) return;
      const err = transportError(payload.error, C, `consumer of group ${this.options.groupId} crashed`);
      failed(err);
      handlers.onCrash?.(err);
    });
    // A fetch that held only transaction markers or aborted records moves the position on but
    // never reaches eachBatch: hand it over as an empty batch, so callers see where a log ends.
    this.consumer.on(this.consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      if (payload.batchSize !== 0 || !this.owned.has(tpKey(payload.topic, payload.partition))) return;
      const batch: Batch = {
        topic: payload.topic,
        partition: payload.partition,
        records: [],
        highWatermark: BigInt(payload.highWatermark),
        nextOffset: BigInt(payload.lastOffset) + 1n,
      };
      const epoch = this.epoch(batch.topic, batch.partition);
      void this.serialized(async () => {
        if (this.epoch(batch.topic, batch.partition) !== epoch || this.closing) return;
        await handlers.onBatch(batch, {
          heartbeat: async () => undefined,
          isStale: () => this.epoch(batch.topic, batch.partition) !== epoch,
        });
      }).catch(() => undefined);
    });
    await mapped(C, `joining group ${this.options.groupId}`, async () => {
      await this.consumer.connect();
      await this.consumer.subscribe({ topics: this.options.topics, fromBeginning: this.options.fromBeginning });
      await this.consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: (payload) => this.serialized(() => this.handle(payload, handlers)),
      });
    });
    await first;
  }

  private async handle(payload: EachBatchPayload, handlers: GroupHandlers): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
    const { topic, partition } = batch;
    if (!isRunning() || isStale() || this.closing || !this.owned.has(tpKey(topic, partition))) return;
    const epoch = this.epoch(topic, partition);
    const out: Batch = {
      topic,
      partition,
      records: batch.messages.map(recordOf),
      highWatermark: BigInt(batch.highWatermark),
      nextOffset: BigInt(batch.lastOffset()) + 1n,
    };
    const stale = () => isStale() || this.epoch(topic, partition) !== epoch;
    try {
      await handlers.onBatch(out, { heartbeat: () => heartbeat(), isStale: stale });
    } finally {
      // kafkajs fetches a batch again unless resolved; a seek during the batch set the position already.
      if (!stale()) resolveOffset(String(out.nextOffset - 1n));
    }
  }

  seek(topic: string, partition: number, offset: bigint): void {
    this.bump(topic, partition);
    this.consumer.seek({ topic, partition, offset: String(offset) });
  }

  pause(partitions: TopicPartition[]): void {
    this.consumer.pause(partitions.map((p) => ({ topic: p.topic, partitions: [p.partition] })));
  }

  resume(partitions: TopicPartition[]): void {
    this.consumer.resume(partitions.map((p) => ({ topic: p.topic, partitions: [p.partition] })));
  }

  assignment(): TopicPartition[] {
    return [...this.owned.values()];
  }

  committed(topic: string): Promise<Map<number, bigint>> {
    return mapped(C, `reading the committed offsets of ${this.options.groupId}`, async () => {
      if (!this.admin) {
        this.admin = this.kafka.admin();
        await this.admin.connect();
      }
      const [entry] = await this.admin.fetchOffsets({ groupId: this.options.groupId, topics: [topic] });
      const out = new Map<number, bigint>();
      for (const p of entry?.partitions ?? []) if (BigInt(p.offset) >= 0n) out.set(p.partition, BigInt(p.offset));
      return out;
    });
  }

  commit(offsets: PartitionOffset[]): Promise<void> {
    return mapped(C, `committing offsets of ${this.options.groupId}`, () =>
      this.consumer.commitOffsets(offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: String(o.offset) }))),
    );
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.consumer.disconnect();
    await this.chain;
    await this.admin?.disconnect().catch(() => undefined);
    this.admin = null;
  }
}
