import type { Kafka } from 'kafkajs';
import type { TopicsConfig } from '../config/schema.ts';
import { auditEventSchema } from '../contracts/schemas.ts';
import type { AuditEvent } from '../contracts/types.ts';
import {
  BATCH_OVERHEAD_BYTES,
  eventKey,
  KeyRoutes,
  recordBytes,
  recordTooLarge,
  wireHeader,
  wireValue,
  writeWireValue,
} from '../ingest/wire.ts';
import type { Logger } from '../logger.ts';
import { KafkajsAdmin } from '../transport/kafkajs/admin.ts';
import { KafkajsProducer } from '../transport/kafkajs/producer.ts';
import type { OutRecord, Producer, Transport } from '../transport/types.ts';
import { registerContract, type SchemaRegistry } from './registry.ts';
import { untilStarted } from './startup.ts';

export { eventKey };

export interface PublisherOptions {
  /** Records per produce request (all partitions together). Default 2000. */
  batchRecords?: number;
  /**
   * Most bytes of one partition's records in one request (keys, values and framing counted).
   * Never more than the topic's `max.message.bytes`, the broker's bound on one partition's record
   * batch (it refuses a larger one with MESSAGE_TOO_LARGE); default: that bound.
   */
  maxPartitionBatchBytes?: number;
  /**
   * Produce requests started and not yet acknowledged at once. Default 1: kafkajs does not keep
   * the order of concurrent sends to one partition (a later request can land first), and the
   * detector judges in event time with a bounded lateness, so an overtaken request's events would
   * be counted late. The next request still fills while one is in flight: one more waits sealed,
   * and `backlogged` turns true only then.
   */
  maxPendingRequests?: number;
  /** The producer requests go through; default the transport's own (idempotent, no compression). */
  producer?: Producer;
  /** How long `start` waits for a registry or broker that is not answering yet; default STARTUP_WAIT_MS. */
  startupWaitMs?: number;
  /** Where `start` says it is waiting. */
  log?: Pick<Logger, 'warn'>;
}

export const DEFAULT_BATCH_RECORDS = 2_000;

const DEFAULTS = {
  batchRecords: DEFAULT_BATCH_RECORDS,
  maxPendingRequests: 1,
} as const satisfies PublisherOptions;

const CHUNK_BYTES = 1024 * 1024; // values are encoded side by side into chunks this large
const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024 + 12; // Kafka's default message.max.bytes, should a broker not say

/**
 * Publishes AuditEvents to the events topic in the Confluent wire format, through the transport
 * seam (either Kafka client). Events are keyed by account and principal, so one principal's
 * calls stay in one partition and per-principal state stays local to it.
 *
 * Built for throughput: values are encoded with the compiled Avro type of the contract the
 * registry just gave an id to (what the registry client's `encode` would do, without its per-call
 * lookup), a key's partition (murmur2, as the Java client) and bytes are computed once per key,
 * and records are sent in large requests while the caller goes on reading: `enqueue` returns at
 * once, the next request fills while one is in flight, `ready` waits when one more is cut and
 * waiting, `flush` waits until every record is acknowledged. Records encoded elsewhere (the
 * ingest worker threads) come in through `enqueueEncoded`. Acknowledgements are counted in
 * enqueue order too (`acknowledgedThrough`, `onAcknowledged`), which is what a checkpoint of
 * finished inputs needs.
 * One idempotent producer: the broker drops a retried request's duplicates, and one partition's
 * records keep the order they were enqueued in.
 *
 * A request never carries more of one partition than the topic's `max.message.bytes` (keys
 * counted): the broker would refuse the whole request, and the idempotent producer start over.
 * A record larger than that alone is refused at `enqueue` as a bad record (TW_RECORD_TOO_LARGE),
 * so the caller reports it and goes on.
 *
 * The record timestamp is the wall clock when the request is built, never the event time:
 * retention counts from the record timestamp, and a backfill of last month's events stamped
 * with their event time would be deleted by the broker before a detector reads it. Event time
 * travels in the value (`eventTimeMs`), which is what the detector reads.
 */
export class EventPublisher {
  private readonly transport: Pick<Transport, 'admin' | 'producer'>;
  private readonly producer: Producer;
  private readonly registry: SchemaRegistry;
  private readonly topics: TopicsConfig;
  private readonly options: PublisherOptions & Required<Pick<PublisherOptions, 'batchRecords' | 'maxPendingRequests'>>;
  private schemaIdValue = -1;
  private header = wireHeader(0);
  private partitions = 0;
  private maxMessageBytesValue = DEFAULT_MAX_MESSAGE_BYTES;
  private partitionCap = DEFAULT_MAX_MESSAGE_BYTES;
  private routes = new KeyRoutes(1);
  private chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  private chunkPos = 0;
  private pending: OutRecord[][] = [];
  private pendingBytes: number[] = [];
  private pendingRecords = 0;
  private pendingDataBytes = 0;
  /** Requests cut and waiting for a free slot (at most one while callers heed `backlogged`). */
  private readonly sealed: SealedRequest[] = [];
  /** Every request cut and not yet settled, in the order cut: the acknowledged prefix advances along it. */
  private readonly unsettled: SealedRequest[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown = null;
  private acknowledged = 0;
  private enqueued = 0;
  private enqueuedBytesValue = 0;
  private acknowledgedBytesValue = 0;
  private acknowledgedThroughValue = 0;
  private readonly ackListeners: Array<(through: number) => void> = [];
  private readonly failListeners: Array<(err: unknown) => void> = [];
  /** Bytes (keys and values) sent to each partition, acknowledged or not. */
  readonly bytesPerPartition: number[] = [];

  /**
   * `transport` picks the Kafka client (createTransport). A kafkajs `Kafka` is still taken, for
   * callers not yet on the seam: it is used through the seam's kafkajs implementation.
   */
  constructor(transport: Transport | Kafka, registry: SchemaRegistry, topics: TopicsConfig, options: PublisherOptions = {}) {
    this.transport = 'client' in transport ? transport : kafkajsSeam(transport);
    this.producer = options.producer ?? this.transport.producer();
    this.registry = registry;
    this.topics = topics;
    this.options = { ...DEFAULTS, ...options };
  }

  async start(): Promise<void> {
    // A registry warming up (its first registration can take seconds) or restarting is waited for.
    const { startupWaitMs, log } = this.options;
    const wait = { ...(startupWaitMs === undefined ? {} : { waitMs: startupWaitMs }), ...(log === undefined ? {} : { log }) };
    this.schemaIdValue = await untilStarted(() => registerContract(this.registry, auditEventSchema, this.topics.events), wait);
    this.header = wireHeader(this.schemaIdValue);
    const admin = await this.transport.admin();
    try {
      this.partitions = (await admin.topicOffsets(this.topics.events)).length;
      const configured = Number((await admin.describeTopicConfigs(this.topics.events, ['max.message.bytes']))['max.message.bytes']);
      this.maxMessageBytesValue = configured > 0 ? configured : await admin.brokerMessageMaxBytes();
    } finally {
      await admin.close();
    }
    this.partitionCap = Math.min(this.options.maxPartitionBatchBytes ?? Number.POSITIVE_INFINITY, this.maxMessageBytesValue);
    this.routes = new KeyRoutes(this.partitions);
    this.pending = Array.from({ length: this.partitions }, () => []);
    this.pendingBytes = new Array<number>(this.partitions).fill(BATCH_OVERHEAD_BYTES);
    this.bytesPerPartition.length = 0;
    this.bytesPerPartition.push(...new Array<number>(this.partitions).fill(0));
    await this.producer.connect();
  }

  /** The registry's id of the AuditEvent contract (known after `start`). */
  get schemaId(): number {
    return this.schemaIdValue;
  }

  /** Partitions of the events topic (known after `start`). */
  get partitionCount(): number {
    return this.partitions;
  }

  /** The events topic's `max.message.bytes` (known after `start`). */
  get maxMessageBytes(): number {
    return this.maxMessageBytesValue;
  }

  /** Records acknowledged by the broker so far. */
  get acknowledgedRecords(): number {
    return this.acknowledged;
  }

  /** Records enqueued so far (refused ones not counted): the next record's sequence number. */
  get enqueuedRecords(): number {
    return this.enqueued;
  }

  /** Key and value bytes of the records enqueued, and of those acknowledged, so far. */
  get enqueuedBytes(): number {
    return this.enqueuedBytesValue;
  }

  get acknowledgedBytes(): number {
    return this.acknowledgedBytesValue;
  }

  /**
   * Every record enqueued before this many (its sequence number, counted from 0) is acknowledged:
   * the prefix a checkpoint may record. With several requests in flight one can be acknowledged
   * before an earlier one; this waits for the earlier.
   */
  get acknowledgedThrough(): number {
    return this.acknowledgedThroughValue;
  }

  /** Calls `listener` each time `acknowledgedThrough` advances (from the acknowledgement's callback: keep it short). */
  onAcknowledged(listener: (through: number) => void): void {
    this.ackListeners.push(listener);
  }

  /** Calls `listener` once, when a request fails for good (every later call throws that error too). */
  onFailed(listener: (err: unknown) => void): void {
    this.failListeners.push(listener);
  }

  /** Encodes then sends, and waits for the acknowledgement of everything enqueued. */
  async publish(events: AuditEvent[]): Promise<void> {
    for (const e of events) {
      this.enqueue(e);
      if (this.backlogged) await this.ready();
    }
    await this.flush();
  }

  /**
   * Encodes one event and queues it for the next request, which starts once enough records are
   * queued. Throws BadRecordError when the event does not fit the AuditEvent schema or is too
   * large for the topic (nothing of it is queued), and the error of an earlier request that failed.
   */
  enqueue(e: AuditEvent): void {
    this.throwIfFailed();
    const route = this.routes.get(eventKey(e));
    const value = this.encode(e);
    if (recordBytes(route.key.length, value.length) + BATCH_OVERHEAD_BYTES > this.maxMessageBytesValue) {
      throw recordTooLarge(`event ${e.eventId}`, route.key.length, value.length, this.maxMessageBytesValue);
    }
    this.push(route.key, value, route.partition);
  }

  /**
   * Queues a record encoded elsewhere (key, wire-format value, its key's partition). Throws
   * BadRecordError when it is too large for the topic, and the error of an earlier request.
   * `key` and `value` must stay unchanged until the record is acknowledged.
   */
  enqueueEncoded(key: Buffer, value: Buffer, partition: number): void {
    this.throwIfFailed();
    if (recordBytes(key.length, value.length) + BATCH_OVERHEAD_BYTES > this.maxMessageBytesValue) {
      throw recordTooLarge('record', key.length, value.length, this.maxMessageBytesValue);
    }
    this.push(key, value, partition);
  }

  private push(key: Buffer, value: Buffer, p: number): void {
    const size = recordBytes(key.length, value.length);
    // The partition's share stays under the cap: what is queued goes first when this would pass it.
    if ((this.pendingBytes[p] as number) + size > this.partitionCap) this.seal();
    // Explicit partitions: no client hashes every key again.
    (this.pending[p] as OutRecord[]).push({ topic: this.topics.events, key, value, partition: p });
    this.pendingBytes[p] = (this.pendingBytes[p] as number) + size;
    const bytes = key.length + value.length;
    this.bytesPerPartition[p] = (this.bytesPerPartition[p] as number) + bytes;
    this.pendingDataBytes += bytes;
    this.enqueuedBytesValue += bytes;
    this.enqueued++;
    if (++this.pendingRecords >= this.options.batchRecords) this.seal();
  }

  /**
   * True when a request is cut and waits for a free slot: the caller should `await ready()`
   * before enqueueing more, which bounds what is held to the requests in flight, one sealed and
   * the one filling.
   */
  get backlogged(): boolean {
    return this.sealed.length > 0;
  }

  /** Resolves once no cut request waits for a slot; rejects when a request failed. */
  async ready(): Promise<void> {
    while (this.sealed.length > 0 && this.failure === null && this.inFlight.size > 0) await Promise.race(this.inFlight);
    this.throwIfFailed();
  }

  /** Starts a request with what is queued, without waiting (it waits sealed when the slots are taken). */
  sendQueued(): void {
    this.seal();
  }

  /** Sends what is queued and waits until every record enqueued so far is acknowledged. */
  async flush(): Promise<void> {
    this.throwIfFailed();
    this.seal();
    while (this.inFlight.size > 0 && this.failure === null) await Promise.race(this.inFlight);
    this.throwIfFailed();
  }

  /**
   * The Confluent wire format of `e`: magic byte, schema id, Avro body. Encoded in place into the
   * current chunk, the returned value a view of it: no buffer per record, no copy. A chunk is
   * never written twice, so a value stays valid for as long as the client may retry its request.
   */
  encode(e: AuditEvent): Buffer {
    let end = writeWireValue(e, this.header, this.chunk, this.chunkPos);
    if (end < 0 && this.chunkPos > 0) {
      this.chunk = Buffer.allocUnsafe(CHUNK_BYTES);
      this.chunkPos = 0;
      end = writeWireValue(e, this.header, this.chunk, 0);
    }
    if (end < 0) return wireValue(e, this.header); // an event larger than a chunk
    const value = this.chunk.subarray(this.chunkPos, end);
    this.chunkPos = end;
    return value;
  }

  /** Waits for the requests in flight (those waiting sealed are not sent), then closes the producer. */
  async stop(): Promise<void> {
    this.sealed.length = 0;
    while (this.inFlight.size > 0) await Promise.allSettled(this.inFlight);
    await this.producer.close();
  }

  /** Cuts what is queued into a request, sent at once when a slot is free. */
  private seal(): void {
    if (this.pendingRecords === 0) return;
    const records: OutRecord[] = [];
    for (let p = 0; p < this.partitions; p++) {
      const list = this.pending[p] as OutRecord[];
      for (const r of list) records.push(r);
      this.pending[p] = [];
      this.pendingBytes[p] = BATCH_OVERHEAD_BYTES;
    }
    const request: SealedRequest = { records, bytes: this.pendingDataBytes, through: this.enqueued, settled: false };
    this.pendingRecords = 0;
    this.pendingDataBytes = 0;
    this.sealed.push(request);
    this.unsettled.push(request);
    this.dispatch();
  }

  private dispatch(): void {
    while (this.failure === null && this.inFlight.size < this.options.maxPendingRequests) {
      const next = this.sealed.shift();
      if (next === undefined) return;
      this.launch(next);
    }
  }

  private launch(sealed: SealedRequest): void {
    const count = sealed.records.length;
    // No timestamp on the records: both clients stamp a request with Date.now() as they build
    // it, the wall-clock stamp retention must count from (see the class comment).
    const request: Promise<void> = this.producer
      .send(sealed.records)
      .then(
        () => {
          this.acknowledged += count;
          this.acknowledgedBytesValue += sealed.bytes;
          sealed.settled = true;
          sealed.records = [];
          this.advance();
        },
        (err: unknown) => {
          if (this.failure !== null) return;
          this.failure = err;
          for (const listener of this.failListeners) listener(err);
        },
      )
      .finally(() => {
        this.inFlight.delete(request);
        // The next request goes out from the acknowledgement itself, not when a caller next looks.
        this.dispatch();
      });
    this.inFlight.add(request);
  }

  /** Moves the acknowledged prefix over the requests settled in the order they were cut. */
  private advance(): void {
    let through = this.acknowledgedThroughValue;
    while (this.unsettled.length > 0 && (this.unsettled[0] as SealedRequest).settled) {
      through = (this.unsettled.shift() as SealedRequest).through;
    }
    if (through === this.acknowledgedThroughValue) return;
    this.acknowledgedThroughValue = through;
    for (const listener of this.ackListeners) listener(through);
  }

  private throwIfFailed(): void {
    if (this.failure !== null) throw this.failure;
  }
}

/** Records cut into one produce request. */
interface SealedRequest {
  records: OutRecord[];
  /** Key and value bytes. */
  bytes: number;
  /** The enqueue count after its last record: once it is acknowledged (and all before it), so is every record before this. */
  through: number;
  settled: boolean;
}

/** The seam's kafkajs producer and admin over a caller's `Kafka`. */
function kafkajsSeam(kafka: Kafka): Pick<Transport, 'admin' | 'producer'> {
  return {
    producer: () => new KafkajsProducer(kafka),
    admin: async () => {
      const admin = new KafkajsAdmin(kafka);
      await admin.connect();
      return admin;
    },
  };
}
