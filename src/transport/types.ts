/**
 * The transport seam: every Kafka call trailwatch's runtime makes, as one small set of
 * interfaces, so the runtime never imports a Kafka client. Two implementations sit behind it,
 * `kafkajs/` and `platformatic/` (same file names in both), and both pass one conformance test
 * against the real broker (test/transport/conformance.test.ts).
 *
 * What the seam promises, whatever the client:
 *   - offsets are bigints; an offset handed over (commit, sendOffsets, seek) is the next one to read;
 *   - a group consumer calls onAssigned, onRevoked and onBatch one at a time, never two at once,
 *     and never hands over a batch of a partition after its onRevoked;
 *   - a batch is the records of one fetch of one partition, in offset order; it may hold no
 *     records when the fetch held only transaction markers or aborted records (nextOffset moves on);
 *   - keyed records without a partition land where Kafka's Java client puts them (partitioner.ts);
 *   - failures are TrailwatchErrors with codes (`TW_KAFKA`, `TW_KAFKA_AUTH`, `TW_KAFKA_FENCED`,
 *     `TW_KAFKA_NOT_AUTHORIZED`, `TW_RECORD_TOO_LARGE`) and `canRetry` from the client's own
 *     retriable flag, so callers never match messages.
 */

export interface TopicPartition {
  topic: string;
  partition: number;
}

/** A position in a partition: the next offset to read (what Kafka commits). */
export interface PartitionOffset extends TopicPartition {
  offset: bigint;
}

/** Header values as bytes; a header repeated in one record keeps its last value. */
export type Headers = Record<string, Buffer>;

/** A consumed record. */
export interface InRecord {
  key: Buffer | null;
  value: Buffer | null;
  headers: Headers;
  offset: bigint;
  timestampMs: number;
}

/** The records of one fetch of one partition. */
export interface Batch {
  topic: string;
  partition: number;
  records: InRecord[];
  /** The partition's high watermark when fetched: lag = highWatermark − nextOffset (transaction markers count). */
  highWatermark: bigint;
  /** The offset after this fetch: past the last record, or past trailing transaction markers. */
  nextOffset: bigint;
}

/** A record to produce. Without a partition, a keyed record goes by murmur2 of its key, a keyless one round-robin. */
export interface OutRecord {
  topic: string;
  partition?: number;
  key?: Buffer | string | null;
  /** Null is a tombstone. */
  value: Buffer | string | null;
  headers?: Record<string, Buffer | string>;
  timestampMs?: number;
}

export interface BatchContext {
  /** Keeps the group membership alive during long work on a batch. */
  heartbeat(): Promise<void>;
  /** True once the partition was revoked or sought elsewhere: the batch's records are no longer wanted. */
  isStale(): boolean;
}

export interface GroupHandlers {
  onAssigned?(partitions: TopicPartition[]): Promise<void> | void;
  onRevoked?(partitions: TopicPartition[]): Promise<void> | void;
  /** A rejection stops nothing: the partition is read on from `nextOffset` unless the handler seeks. */
  onBatch(batch: Batch, context: BatchContext): Promise<void>;
  /** The consumer stopped for good (not for errors it retries by itself). */
  onCrash?(error: Error): void;
}

export interface GroupConsumerOptions {
  groupId: string;
  topics: string[];
  /** Where a partition the group never committed starts: the oldest record, or only new ones. */
  fromBeginning: boolean;
  /** false reads records of open and aborted transactions too; default true (read_committed). */
  readCommitted?: boolean;
  /** Upper bound of one fetch of one partition, in bytes. */
  maxBytesPerPartition?: number;
  sessionTimeoutMs?: number;
  /** How long the broker may hold a fetch open waiting for data, in ms. */
  maxWaitMs?: number;
}

/** A member of a consumer group, with offsets in the caller's hands (nothing is committed by itself). */
export interface GroupConsumer {
  /** Joins the group and starts fetching; resolves once the first assignment is known. */
  run(handlers: GroupHandlers): Promise<void>;
  /** The next fetch of the partition starts at `offset`; records of the batch in hand are stale. */
  seek(topic: string, partition: number, offset: bigint): void;
  pause(partitions: TopicPartition[]): void;
  resume(partitions: TopicPartition[]): void;
  /** The partitions this member owns now. */
  assignment(): TopicPartition[];
  /** The group's committed offsets of `topic`; partitions never committed are left out. */
  committed(topic: string): Promise<Map<number, bigint>>;
  /** Commits outside any transaction (e.g. a scan's progress). */
  commit(offsets: PartitionOffset[]): Promise<void>;
  /** Leaves the group after the batch in hand. */
  close(): Promise<void>;
}

export interface Transaction {
  send(records: OutRecord[]): Promise<void>;
  /** Moves `groupId`'s committed offsets when, and only when, the transaction commits. */
  sendOffsets(groupId: string, offsets: PartitionOffset[]): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface TxnProducerOptions {
  /** Stable per task: connecting fences any earlier producer with the same id. */
  transactionalId: string;
  transactionTimeoutMs?: number;
}

export interface TxnProducer {
  readonly transactionalId: string;
  /** Registers the transactional id (fencing its previous owner and ending its open transaction). */
  connect(): Promise<void>;
  begin(): Promise<Transaction>;
  close(): Promise<void>;
}

/** An idempotent producer: retries never duplicate or reorder a partition's records. */
export interface Producer {
  connect(): Promise<void>;
  send(records: OutRecord[]): Promise<void>;
  close(): Promise<void>;
}

export interface TopicSpec {
  topic: string;
  partitions: number;
  replicationFactor?: number;
  configs?: Record<string, string>;
}

export interface PartitionRange {
  partition: number;
  /** The oldest offset still in the log. */
  low: bigint;
  /** The offset the next record will get. */
  high: bigint;
}

export interface Admin {
  listTopics(): Promise<string[]>;
  /** Creates the missing ones, waits until every partition answers, returns the names created. */
  createTopics(topics: TopicSpec[]): Promise<string[]>;
  deleteTopics(topics: string[]): Promise<void>;
  topicOffsets(topic: string): Promise<PartitionRange[]>;
  /** `groupId`'s committed offsets of `topic`; partitions never committed are left out. */
  committedOffsets(groupId: string, topic: string): Promise<Map<number, bigint>>;
  /** The topic's effective configs (names given: only those). */
  describeTopicConfigs(topic: string, names?: string[]): Promise<Record<string, string>>;
  /** The broker's `message.max.bytes`: the largest record batch it accepts unless a topic says otherwise. */
  brokerMessageMaxBytes(): Promise<number>;
  close(): Promise<void>;
}

export type ClientName = 'kafkajs' | 'platformatic';

/** One Kafka client behind the seam. Every client it makes connects lazily and must be closed. */
export interface Transport {
  readonly client: ClientName;
  admin(): Promise<Admin>;
  producer(): Producer;
  txnProducer(options: TxnProducerOptions): TxnProducer;
  groupConsumer(options: GroupConsumerOptions): GroupConsumer;
}
