import type { Kafka, Message, Producer } from 'kafkajs';
import type { TopicsConfig } from '../config/schema.ts';
import { auditEventType } from '../contracts/schemas.ts';
import type { AuditEvent } from '../contracts/types.ts';
import { eventKey, partitionFor } from '../detect/topology.ts';
import { BadRecordError, ErrorCodes } from '../errors.ts';
import { WIRE_HEADER_BYTES } from './codec.ts';
import { idempotentProducer } from './kafka.ts';
import { registerContracts, type SchemaRegistry } from './registry.ts';

export { eventKey };

export interface PublisherOptions {
  /** Records per produce request (all partitions together). Default 2000. */
  batchRecords?: number;
  /**
   * Most bytes of one partition's records in one request. The broker refuses a record batch over
   * its `max.message.bytes` (1 MiB by default) with MESSAGE_TOO_LARGE; half of it leaves room.
   */
  maxPartitionBatchBytes?: number;
  /** Produce requests started and not yet acknowledged before `ready()` waits. Default 2. */
  maxPendingRequests?: number;
}

export const DEFAULT_BATCH_RECORDS = 2_000;

const DEFAULTS = {
  batchRecords: DEFAULT_BATCH_RECORDS,
  maxPartitionBatchBytes: 512 * 1024, // half the broker's default max.message.bytes
  maxPendingRequests: 2,
} as const satisfies Required<PublisherOptions>;

const CHUNK_BYTES = 1024 * 1024; // values are encoded side by side into chunks this large
const MAX_CACHED_KEYS = 100_000; // distinct account|principal keys remembered with their partition

interface Route {
  key: Buffer;
  partition: number;
}

/**
 * Publishes AuditEvents to the events topic in the Confluent wire format. Events are keyed by
 * account and principal, so one principal's calls stay in one partition and per-principal state
 * stays local to it.
 *
 * Built for throughput: values are encoded with the compiled Avro type of the contract the
 * registry just gave an id to (what the registry client's `encode` would do, without its per-call
 * lookup), a key's partition (murmur2, as the Java client) and bytes are computed once per key,
 * and records are sent in large requests while the caller goes on reading: `enqueue` returns at
 * once, `ready` waits when requests pile up, `flush` waits until every record is acknowledged.
 * One idempotent producer: the broker drops a retried request's duplicates, and one partition's
 * records keep the order they were enqueued in.
 *
 * The record timestamp is the wall clock when the request is built, never the event time:
 * retention counts from the record timestamp, and a backfill of last month's events stamped
 * with their event time would be deleted by the broker before a detector reads it. Event time
 * travels in the value (`eventTimeMs`), which is what the detector reads.
 */
export class EventPublisher {
  private readonly kafka: Kafka;
  private readonly producer: Producer;
  private readonly registry: SchemaRegistry;
  private readonly topics: TopicsConfig;
  private readonly options: Required<PublisherOptions>;
  private schemaId = -1;
  private header = Buffer.alloc(WIRE_HEADER_BYTES);
  private partitions = 0;
  private readonly routes = new Map<string, Route>();
  private chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  private chunkPos = 0;
  private pending: Message[][] = [];
  private pendingBytes: number[] = [];
  private pendingRecords = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown = null;
  private acknowledged = 0;
  /** Value bytes sent to each partition (acknowledged or not). */
  readonly bytesPerPartition: number[] = [];

  constructor(kafka: Kafka, registry: SchemaRegistry, topics: TopicsConfig, options: PublisherOptions = {}) {
    this.kafka = kafka;
    this.producer = idempotentProducer(kafka);
    this.registry = registry;
    this.topics = topics;
    this.options = { ...DEFAULTS, ...options };
  }

  async start(): Promise<void> {
    this.schemaId = (await registerContracts(this.registry, this.topics)).auditEvent;
    this.header = Buffer.alloc(WIRE_HEADER_BYTES);
    this.header.writeInt32BE(this.schemaId, 1);
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      this.partitions = (await admin.fetchTopicOffsets(this.topics.events)).length;
    } finally {
      await admin.disconnect();
    }
    this.pending = Array.from({ length: this.partitions }, () => []);
    this.pendingBytes = new Array<number>(this.partitions).fill(0);
    this.bytesPerPartition.length = 0;
    this.bytesPerPartition.push(...new Array<number>(this.partitions).fill(0));
    await this.producer.connect();
  }

  /** Records acknowledged by the broker so far. */
  get acknowledgedRecords(): number {
    return this.acknowledged;
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
   * queued. Throws BadRecordError when the event does not fit the AuditEvent schema (nothing of
   * it is queued), and the error of an earlier request that failed.
   */
  enqueue(e: AuditEvent): void {
    this.throwIfFailed();
    const value = this.encode(e);
    const key = eventKey(e);
    let route = this.routes.get(key);
    if (route === undefined) {
      if (this.routes.size >= MAX_CACHED_KEYS) this.routes.clear();
      route = { key: Buffer.from(key), partition: partitionFor(key, this.partitions) };
      this.routes.set(key, route);
    }
    const p = route.partition;
    // Explicit partitions: kafkajs then skips hashing every key again.
    (this.pending[p] as Message[]).push({ key: route.key, value, partition: p });
    const bytes = (this.pendingBytes[p] as number) + value.length + route.key.length;
    this.pendingBytes[p] = bytes;
    this.pendingRecords++;
    if (this.pendingRecords >= this.options.batchRecords || bytes >= this.options.maxPartitionBatchBytes) this.send();
  }

  /** True when enough requests are unacknowledged that the caller should `await ready()`. */
  get backlogged(): boolean {
    return this.inFlight.size >= this.options.maxPendingRequests;
  }

  /** Resolves once fewer than `maxPendingRequests` requests are unacknowledged; rejects when one failed. */
  async ready(): Promise<void> {
    while (this.inFlight.size >= this.options.maxPendingRequests) await Promise.race(this.inFlight);
    this.throwIfFailed();
  }

  /** Sends what is queued and waits until every record enqueued so far is acknowledged. */
  async flush(): Promise<void> {
    this.throwIfFailed();
    this.send();
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    this.throwIfFailed();
  }

  /**
   * The Confluent wire format of `e`: magic byte, schema id, Avro body. Encoded in place into the
   * current chunk, the returned value a view of it: no buffer per record, no copy. A chunk is
   * never written twice, so a value stays valid for as long as kafkajs may retry its request.
   */
  encode(e: AuditEvent): Buffer {
    try {
      let end = this.encodeAt(e, this.chunkPos);
      if (end < 0 && this.chunkPos > 0) {
        this.chunk = Buffer.allocUnsafe(CHUNK_BYTES);
        this.chunkPos = 0;
        end = this.encodeAt(e, 0);
      }
      if (end < 0) return Buffer.concat([this.header, auditEventType.toBuffer(e)]); // an event larger than a chunk
      const value = this.chunk.subarray(this.chunkPos, end);
      this.chunkPos = end;
      return value;
    } catch (err) {
      throw new BadRecordError(ErrorCodes.DESERIALIZE, `event ${e.eventId} does not fit the AuditEvent schema: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** Header and body at `pos`; the end, or a negative number when the chunk is too small. */
  private encodeAt(e: AuditEvent, pos: number): number {
    if (pos + WIRE_HEADER_BYTES >= this.chunk.length) return -1;
    this.header.copy(this.chunk, pos);
    return auditEventType.encode(e, this.chunk, pos + WIRE_HEADER_BYTES);
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.inFlight);
    await this.producer.disconnect();
  }

  private send(): void {
    if (this.pendingRecords === 0) return;
    const messages: Message[] = [];
    for (let p = 0; p < this.partitions; p++) {
      const list = this.pending[p] as Message[];
      // A push loop: kafkajs's own grouping copies arrays per message, this is the one place we can avoid it.
      for (const m of list) messages.push(m);
      this.bytesPerPartition[p] = (this.bytesPerPartition[p] as number) + (this.pendingBytes[p] as number);
      this.pending[p] = [];
      this.pendingBytes[p] = 0;
    }
    this.pendingRecords = 0;
    const count = messages.length;
    // No timestamp on the messages: kafkajs stamps each request with Date.now() as it builds it,
    // the wall-clock stamp retention must count from (see the class comment).
    const request: Promise<void> = this.producer
      .send({ topic: this.topics.events, messages })
      .then(
        () => {
          this.acknowledged += count;
        },
        (err: unknown) => {
          this.failure ??= err;
        },
      )
      .finally(() => {
        this.inFlight.delete(request);
      });
    this.inFlight.add(request);
  }

  private throwIfFailed(): void {
    if (this.failure !== null) throw this.failure;
  }
}
