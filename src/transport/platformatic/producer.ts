import {
  type BaseOptions,
  type Consumer,
  FindCoordinatorKeyTypes,
  Admin as KafkaAdmin,
  Producer as KafkaProducer,
  type Message,
  type MessageToProduce,
  type Partitioner,
} from '@platformatic/kafka';
import { mapped } from '../errors.ts';
import { murmur2 } from '../partitioner.ts';
import type { OutRecord, PartitionOffset, Producer, Transaction, TxnProducer, TxnProducerOptions } from '../types.ts';

const C = 'platformatic' as const;

type KafkaTransaction = NonNullable<KafkaProducer<Buffer, Buffer, Buffer, Buffer>['transaction']>;

const bytes = (v: Buffer | string): Buffer => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v);

/**
 * Our partitioner in the client's shape. It returns the positive murmur2 hash and the client
 * takes it modulo the partition count, as the Java client does; keyless records go round-robin.
 */
function partitioner(): Partitioner<Buffer, Buffer, Buffer, Buffer> {
  const next = new Map<string, number>();
  return (message, key) => {
    if (key && key.length > 0) return murmur2(key) & 0x7fffffff;
    const n = next.get(message.topic) ?? 0;
    next.set(message.topic, n + 1);
    return n;
  };
}

export function messagesOf(records: OutRecord[]): MessageToProduce<Buffer, Buffer, Buffer, Buffer>[] {
  return records.map((r) => {
    const m: MessageToProduce<Buffer, Buffer, Buffer, Buffer> = { topic: r.topic };
    if (r.key !== undefined && r.key !== null) m.key = bytes(r.key);
    if (r.value !== null) m.value = bytes(r.value);
    if (r.partition !== undefined) m.partition = r.partition;
    if (r.timestampMs !== undefined) m.timestamp = BigInt(r.timestampMs);
    if (r.headers) m.headers = new Map(Object.entries(r.headers).map(([k, v]) => [Buffer.from(k, 'utf8'), bytes(v)]));
    return m;
  });
}

export class PlatformaticProducer implements Producer {
  private readonly producer: KafkaProducer;

  constructor(options: BaseOptions) {
    this.producer = new KafkaProducer({ ...options, idempotent: true, partitioner: partitioner(), retries: Number.MAX_SAFE_INTEGER });
  }

  async connect(): Promise<void> {
    await mapped(C, 'connecting the producer', () => this.producer.initIdempotentProducer({}));
  }

  async send(records: OutRecord[]): Promise<void> {
    if (records.length === 0) return;
    await mapped(C, 'producing', () => this.producer.send({ messages: messagesOf(records) }));
  }

  close(): Promise<void> {
    return this.producer.close();
  }
}

class PlatformaticTransaction implements Transaction {
  private readonly txn: KafkaTransaction;
  private readonly owner: PlatformaticTxnProducer;

  constructor(txn: KafkaTransaction, owner: PlatformaticTxnProducer) {
    this.txn = txn;
    this.owner = owner;
  }

  async send(records: OutRecord[]): Promise<void> {
    if (records.length === 0) return;
    await mapped(C, `producing in a transaction of ${this.owner.transactionalId}`, () => this.txn.send({ messages: messagesOf(records) }));
  }

  /**
   * The client adds offsets only for records it consumed itself (it reads the group, generation
   * and coordinator from the message). We commit positions for a group by id, as the Java
   * client's sendOffsetsToTransaction(offsets, groupId) does: generation −1 and no member id,
   * which the broker accepts without checking membership. So a record-shaped object stands in.
   */
  sendOffsets(groupId: string, offsets: PartitionOffset[]): Promise<void> {
    return mapped(C, `adding offsets of ${groupId} to a transaction of ${this.owner.transactionalId}`, async () => {
      const coordinatorId = await this.owner.groupCoordinator(groupId);
      await this.txn.addConsumer({ groupId } as Consumer);
      for (const o of offsets) {
        const consumed = {
          topic: o.topic,
          partition: o.partition,
          // The client commits the record's offset + 1.
          offset: o.offset - 1n,
          metadata: { consumer: { groupId, generationId: -1, memberId: '', coordinatorId } },
        };
        await this.txn.addOffset(consumed as unknown as Message);
      }
    });
  }

  commit(): Promise<void> {
    return mapped(C, `committing a transaction of ${this.owner.transactionalId}`, () => this.txn.commit());
  }

  abort(): Promise<void> {
    return mapped(C, `aborting a transaction of ${this.owner.transactionalId}`, () => this.txn.abort());
  }
}

export class PlatformaticTxnProducer implements TxnProducer {
  readonly transactionalId: string;
  private readonly producer: KafkaProducer;
  private readonly options: BaseOptions;
  private admin: KafkaAdmin | null = null;
  private readonly coordinators = new Map<string, number>();

  constructor(options: BaseOptions, txn: TxnProducerOptions) {
    this.transactionalId = txn.transactionalId;
    this.options = options;
    this.producer = new KafkaProducer({
      ...options,
      // The client sends `timeout` as the transaction timeout too (InitProducerId): one value for both.
      timeout: Math.max(options.timeout ?? 0, txn.transactionTimeoutMs ?? 60_000),
      transactionalId: txn.transactionalId,
      idempotent: true,
      partitioner: partitioner(),
      retries: Number.MAX_SAFE_INTEGER,
    });
  }

  async connect(): Promise<void> {
    await mapped(C, `registering transactional id ${this.transactionalId}`, async () => {
      // Beginning registers the id (InitProducerId, which fences); cancel only forgets locally.
      // The client would send producer id 0 and epoch 0 as the "expected" owner (KIP-360), which
      // the broker answers PRODUCER_FENCED when another producer registered the id before: −1 asks
      // for the id as a new producer does, and fences the previous owner.
      const txn = await this.producer.beginTransaction({ producerId: -1n, producerEpoch: -1 });
      await txn.cancel();
    });
  }

  async begin(): Promise<Transaction> {
    const txn = await mapped(C, `beginning a transaction of ${this.transactionalId}`, () => this.producer.beginTransaction());
    return new PlatformaticTransaction(txn, this);
  }

  /** The node id of `groupId`'s coordinator, found once. */
  async groupCoordinator(groupId: string): Promise<number> {
    const known = this.coordinators.get(groupId);
    if (known !== undefined) return known;
    this.admin ??= new KafkaAdmin(this.options);
    const [found] = await this.admin.findCoordinator({ keyType: FindCoordinatorKeyTypes.GROUP, keys: [groupId] });
    if (!found) throw new Error(`no coordinator found for group ${groupId}`);
    this.coordinators.set(groupId, found.nodeId);
    return found.nodeId;
  }

  async close(): Promise<void> {
    await this.admin?.close().catch(() => undefined);
    await this.producer.close();
  }
}
