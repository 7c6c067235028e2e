import type {
  ICustomPartitioner,
  Kafka,
  Producer as KafkaProducer,
  Transaction as KafkaTransaction,
  Message,
  TopicMessages,
} from 'kafkajs';
import { mapped } from '../errors.ts';
import { Partitioner } from '../partitioner.ts';
import type { OutRecord, PartitionOffset, Producer, Transaction, TxnProducer, TxnProducerOptions } from '../types.ts';

const C = 'kafkajs' as const;

/** Our partitioner in kafkajs's shape: both clients place records the same way. */
const createPartitioner: ICustomPartitioner = () => {
  const partitioner = new Partitioner();
  return ({ topic, partitionMetadata, message }) =>
    partitioner.partition(topic, partitionMetadata.length, {
      partition: message.partition,
      key: typeof message.key === 'string' || Buffer.isBuffer(message.key) ? message.key : null,
    });
};

export function topicMessages(records: OutRecord[]): TopicMessages[] {
  const byTopic = new Map<string, Message[]>();
  for (const r of records) {
    let list = byTopic.get(r.topic);
    if (!list) {
      list = [];
      byTopic.set(r.topic, list);
    }
    list.push({
      key: r.key ?? null,
      value: r.value,
      ...(r.partition !== undefined ? { partition: r.partition } : {}),
      ...(r.headers ? { headers: r.headers } : {}),
      ...(r.timestampMs !== undefined ? { timestamp: String(r.timestampMs) } : {}),
    });
  }
  return [...byTopic].map(([topic, messages]) => ({ topic, messages }));
}

export class KafkajsProducer implements Producer {
  private readonly producer: KafkaProducer;

  constructor(kafka: Kafka) {
    // Unlimited retries bounded in time by the backoff, one request in flight: what idempotence needs.
    this.producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 30_000 },
    });
  }

  connect(): Promise<void> {
    return mapped(C, 'connecting the producer', () => this.producer.connect());
  }

  async send(records: OutRecord[]): Promise<void> {
    if (records.length === 0) return;
    await mapped(C, 'producing', () => this.producer.sendBatch({ topicMessages: topicMessages(records) }));
  }

  close(): Promise<void> {
    return this.producer.disconnect();
  }
}

class KafkajsTransaction implements Transaction {
  private readonly txn: KafkaTransaction;
  private readonly id: string;

  constructor(txn: KafkaTransaction, id: string) {
    this.txn = txn;
    this.id = id;
  }

  async send(records: OutRecord[]): Promise<void> {
    if (records.length === 0) return;
    await mapped(C, `producing in a transaction of ${this.id}`, () => this.txn.sendBatch({ topicMessages: topicMessages(records) }));
  }

  sendOffsets(groupId: string, offsets: PartitionOffset[]): Promise<void> {
    const byTopic = new Map<string, Array<{ partition: number; offset: string }>>();
    for (const o of offsets) {
      let list = byTopic.get(o.topic);
      if (!list) {
        list = [];
        byTopic.set(o.topic, list);
      }
      list.push({ partition: o.partition, offset: String(o.offset) });
    }
    return mapped(C, `adding offsets of ${groupId} to a transaction of ${this.id}`, () =>
      this.txn.sendOffsets({ consumerGroupId: groupId, topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) }),
    );
  }

  commit(): Promise<void> {
    return mapped(C, `committing a transaction of ${this.id}`, () => this.txn.commit());
  }

  abort(): Promise<void> {
    return mapped(C, `aborting a transaction of ${this.id}`, () => this.txn.abort());
  }
}

export class KafkajsTxnProducer implements TxnProducer {
  readonly transactionalId: string;
  private readonly producer: KafkaProducer;

  constructor(kafka: Kafka, options: TxnProducerOptions) {
    this.transactionalId = options.transactionalId;
    this.producer = kafka.producer({
      transactionalId: options.transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: options.transactionTimeoutMs ?? 60_000,
      createPartitioner,
      // Unlimited, as exactly-once wants; a fenced producer fails at once (not retriable).
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
  }

  async connect(): Promise<void> {
    await mapped(C, `registering transactional id ${this.transactionalId}`, async () => {
      await this.producer.connect();
      // kafkajs registers the id (InitProducerId, which fences) on its first transaction only.
      const txn = await this.producer.transaction();
      await txn.abort();
    });
  }

  async begin(): Promise<Transaction> {
    const txn = await mapped(C, `beginning a transaction of ${this.transactionalId}`, () => this.producer.transaction());
    return new KafkajsTransaction(txn, this.transactionalId);
  }

  close(): Promise<void> {
    return this.producer.disconnect();
  }
}
