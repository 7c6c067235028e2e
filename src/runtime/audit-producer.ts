/**
 * The producer a service embeds to publish its own audit events: `createAuditProducer` (the
 * package entry, src/index.ts, exports it). Each event is checked against the AuditEvent contract
 * before it is taken (a BadRecordError naming the field), then encoded, keyed and batched by the
 * same EventPublisher `trailwatch publish` uses (Confluent wire format, schema registered in the
 * registry, key `account|principal`, an idempotent producer), so a detector cannot tell a
 * service's events from a CloudTrail backfill's.
 *
 * Backpressure: events taken and not yet acknowledged by the broker are bounded (records and
 * bytes). `send` resolves once its event is taken; while the buffer is full it waits, in call
 * order, and nothing is dropped. `flush` waits until everything taken is acknowledged, `close`
 * flushes and disconnects (once, however often it is called).
 */
import { CompressionTypes, type Kafka } from 'kafkajs';
import { z } from 'zod';
import { validateConfig } from '../config/load.ts';
import type { Config, ConfigInput, KafkaConfig } from '../config/schema.ts';
import { auditEventType, avroProblems } from '../contracts/schemas.ts';
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError, ConfigError, ErrorCodes, TrailwatchError } from '../errors.ts';
import { createLogger, type Logger } from '../logger.ts';
import { mapped } from '../transport/errors.ts';
import { createTransport } from '../transport/index.ts';
import { KafkajsTransport } from '../transport/kafkajs/index.ts';
import { topicMessages } from '../transport/kafkajs/producer.ts';
import { clientOptions } from '../transport/platformatic/index.ts';
import { PlatformaticProducer } from '../transport/platformatic/producer.ts';
import type { OutRecord, Producer, Transport } from '../transport/types.ts';
import { firstContact } from './kafka.ts';
import { DEFAULT_BATCH_RECORDS, EventPublisher } from './publisher.ts';
import { createRegistry } from './registry.ts';
import { createdTopicConfig } from './topics.ts';

export const COMPRESSIONS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

/** What `createAuditProducer` takes. Connection settings are the config file's `kafka` and `registry` sections. */
export interface AuditProducerOptions {
  /** Brokers (required), client (`kafkajs` or `platformatic`), SASL, TLS, timeouts: the `kafka` config section. */
  kafka: NonNullable<ConfigInput['kafka']>;
  /** The schema registry's Confluent-compatible API root (`url`, required) and credentials: the `registry` config section. */
  registry: NonNullable<ConfigInput['registry']>;
  /** The events topic (default `trailwatch.events`, as `topics.events`). */
  topic?: string;
  /**
   * Create the topic when it is missing, with `topics.partitions` partitions and
   * `topics.eventsRetentionMs` retention as the detector expects (default true).
   */
  createTopic?: boolean;
  /** Partitions of a topic this creates (default `topics.partitions`, 3). */
  partitions?: number;
  /** Record batch compression (default `none`; kafkajs has `gzip` only, platformatic all of them). */
  compression?: Compression;
  /** Records per produce request at most (default 2000; fewer when a partition's share would pass max.message.bytes). */
  batchRecords?: number;
  /** How long a taken event may wait for others to share its request, in ms (default 20). */
  lingerMs?: number;
  /** Events taken and not yet acknowledged, at most; `send` waits beyond it (default 10,000). */
  maxBufferedRecords?: number;
  /** Key and value bytes taken and not yet acknowledged, at most (default 32 MiB; one larger event is taken alone). */
  maxBufferedBytes?: number;
  /** How long creating waits for a registry or broker that does not answer yet, in ms (default two minutes). */
  startupWaitMs?: number;
  /** A pino logger for the client's own lines (default: none). */
  logger?: Logger;
}

export interface AuditProducerStats {
  /** Events taken by `send` so far. */
  accepted: number;
  /** Events the broker acknowledged so far. */
  acknowledged: number;
  /** Taken, not yet acknowledged: never above `maxBufferedRecords`. */
  buffered: number;
  bufferedBytes: number;
  /** `send` calls waiting for room. */
  waiting: number;
}

export interface AuditProducer {
  /**
   * Checks the event and takes it: resolves once it is in the buffer, waiting while the buffer is
   * full. Rejects with BadRecordError (TW_DESERIALIZE, `details.field` naming the first bad field)
   * when the event is not a valid AuditEvent, or TW_RECORD_TOO_LARGE when it is larger than the
   * topic accepts; with the producer's failure after one; with TW_USAGE after `close`. Await each
   * call (or bound how many you leave pending): a call that waits holds its event.
   */
  send(event: AuditEvent): Promise<void>;
  /** Resolves once every event taken (and every waiting `send`'s) is acknowledged by the broker. */
  flush(): Promise<void>;
  /** Flushes and disconnects; later calls return the same promise; `send` is refused from the first call on. */
  close(): Promise<void>;
  readonly stats: AuditProducerStats;
  /** The registry's id of the AuditEvent contract the events are written with. */
  readonly schemaId: number;
}

const DEFAULTS = {
  createTopic: true,
  compression: 'none',
  batchRecords: DEFAULT_BATCH_RECORDS,
  lingerMs: 20, // long enough for a burst to share a request, short against the detector's one-minute buckets
  maxBufferedRecords: 10_000,
  maxBufferedBytes: 32 * 1024 * 1024, // 32 MiB
} as const satisfies Partial<AuditProducerOptions>;

const optionsSchema = z.strictObject({
  kafka: z.record(z.string(), z.unknown()),
  registry: z.record(z.string(), z.unknown()),
  topic: z.string().min(1).optional(),
  createTopic: z.boolean().optional(),
  partitions: z.number().int().positive().optional(),
  compression: z.enum(COMPRESSIONS).optional(),
  batchRecords: z.number().int().positive().optional(),
  lingerMs: z.number().int().nonnegative().optional(),
  maxBufferedRecords: z.number().int().positive().optional(),
  maxBufferedBytes: z.number().int().positive().optional(),
  startupWaitMs: z.number().int().positive().optional(),
  logger: z.unknown().optional(),
});

type Settings = Required<Pick<AuditProducerOptions, keyof typeof DEFAULTS>> & { startupWaitMs?: number; partitions: number };

/** Checks the options, every problem at once (ConfigError, TW_CONFIG_INVALID). */
function resolveOptions(options: AuditProducerOptions): { config: Config; settings: Settings } {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.flatMap((i) =>
        i.code === 'unrecognized_keys' ? i.keys.map((k) => `${k}: unknown option`) : [`${i.path.join('.') || '(options)'}: ${i.message}`],
      ),
    );
  }
  const topics = options.topic === undefined ? {} : { events: options.topic };
  const config = validateConfig({ kafka: options.kafka, registry: options.registry, topics });
  const problems: string[] = [];
  if (config.kafka.brokers.length === 0) problems.push('kafka.brokers: give at least one broker, host:port');
  if (!config.registry.url) problems.push('registry.url: give the registry API root, e.g. http://registry:8080/apis/ccompat/v7');
  const compression = options.compression ?? DEFAULTS.compression;
  if (config.kafka.client === 'kafkajs' && compression !== 'none' && compression !== 'gzip') {
    problems.push(`compression: kafkajs compresses with gzip only; use kafka.client "platformatic" for ${compression}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const settings: Settings = {
    ...DEFAULTS,
    ...Object.fromEntries(Object.entries(options).filter(([k, v]) => v !== undefined && k in DEFAULTS)),
    partitions: options.partitions ?? config.topics.partitions,
    ...(options.startupWaitMs === undefined ? {} : { startupWaitMs: options.startupWaitMs }),
  } as Settings;
  return { config, settings };
}

/**
 * Connects a producer for the events topic: checks the options, creates the topic when missing,
 * registers the AuditEvent contract and connects. Rejects with ConfigError for bad options.
 */
export async function createAuditProducer(options: AuditProducerOptions): Promise<AuditProducer> {
  const { config, settings } = resolveOptions(options);
  const logger = options.logger ?? createLogger({ level: 'silent' });
  const transport = createTransport(config.kafka, logger);
  if (settings.createTopic) {
    const admin = await transport.admin();
    try {
      const topic = config.topics.events;
      const configs = Object.fromEntries(createdTopicConfig(config.topics, topic).map((e) => [e.name, e.value]));
      await admin.createTopics([{ topic, partitions: settings.partitions, replicationFactor: config.topics.replicationFactor, configs }]);
    } finally {
      await admin.close();
    }
  }
  const producer = compressingProducer(transport, config.kafka, settings.compression, logger);
  const publisher = new EventPublisher(transport, createRegistry(config.registry), config.topics, {
    batchRecords: settings.batchRecords,
    log: logger,
    ...(producer ? { producer } : {}),
    ...(settings.startupWaitMs === undefined ? {} : { startupWaitMs: settings.startupWaitMs }),
  });
  try {
    await publisher.start();
  } catch (err) {
    await publisher.stop().catch(() => undefined);
    throw err;
  }
  return new BufferedAuditProducer(publisher, settings);
}

/** Fields the detector keys and counts by: an empty one would pass the schema and mislead it. */
const NON_EMPTY: ReadonlyArray<keyof AuditEvent> = ['eventId', 'source', 'accountId', 'principal', 'service', 'action'];

/** Throws BadRecordError naming the first field at fault (all of them in `details.problems`). */
export function checkAuditEvent(event: unknown): asserts event is AuditEvent {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw new BadRecordError(
      ErrorCodes.DESERIALIZE,
      `not a valid AuditEvent: (root): expected an object, got ${event === null ? 'null' : Array.isArray(event) ? 'an array' : `a ${typeof event}`}`,
      {
        details: { field: '(root)', fields: ['(root)'], problems: [] },
      },
    );
  }
  const record = event as Record<string, unknown>;
  const empty = NON_EMPTY.filter((f) => record[f] === '').map((f) => `${f}: must not be empty`);
  if (empty.length === 0 && auditEventType.isValid(event, { noUndeclaredFields: true })) return;
  const problems = [...avroProblems(auditEventType, event), ...empty];
  const fields = [...new Set(problems.map((p) => p.slice(0, p.indexOf(':'))))];
  const id = typeof record.eventId === 'string' && record.eventId !== '' ? `event ${record.eventId}` : 'event';
  throw new BadRecordError(ErrorCodes.DESERIALIZE, `${id} is not a valid AuditEvent: ${problems.join('; ')}`, {
    details: { field: fields[0], fields, problems },
  });
}

interface Waiter {
  event: AuditEvent;
  resolve: () => void;
  reject: (err: unknown) => void;
}

class BufferedAuditProducer implements AuditProducer {
  private readonly publisher: EventPublisher;
  private readonly settings: Settings;
  private readonly waiters: Waiter[] = [];
  private accepted = 0;
  private failure: unknown = null;
  private closing: Promise<void> | null = null;
  private linger: NodeJS.Timeout | null = null;

  constructor(publisher: EventPublisher, settings: Settings) {
    this.publisher = publisher;
    this.settings = settings;
    publisher.onAcknowledged(() => this.admitWaiting());
    publisher.onFailed((err) => this.fail(err));
  }

  get schemaId(): number {
    return this.publisher.schemaId;
  }

  get stats(): AuditProducerStats {
    const p = this.publisher;
    return {
      accepted: this.accepted,
      acknowledged: p.acknowledgedRecords,
      buffered: p.enqueuedRecords - p.acknowledgedRecords,
      bufferedBytes: p.enqueuedBytes - p.acknowledgedBytes,
      waiting: this.waiters.length,
    };
  }

  send(event: AuditEvent): Promise<void> {
    if (this.closing) {
      return Promise.reject(
        new TrailwatchError(ErrorCodes.USAGE, 'the audit producer is closed: create another one to send more', { fault: 'user' }),
      );
    }
    try {
      checkAuditEvent(event);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.waiters.length === 0 && this.hasRoom()) {
      try {
        this.take(event);
      } catch (err) {
        return Promise.reject(err);
      }
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => this.waiters.push({ event, resolve, reject }));
  }

  async flush(): Promise<void> {
    for (;;) {
      if (this.failure !== null) throw this.failure;
      const p = this.publisher;
      if (this.waiters.length === 0 && p.acknowledgedRecords === p.enqueuedRecords) return;
      this.stopLinger();
      try {
        await p.flush();
      } catch (err) {
        this.fail(err);
      }
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.flush();
      } finally {
        this.stopLinger();
        await this.publisher.stop();
      }
    })();
    return this.closing;
  }

  /** Room for one more: under both bounds, or an empty buffer (an event larger than the byte bound goes alone). */
  private hasRoom(): boolean {
    const p = this.publisher;
    const records = p.enqueuedRecords - p.acknowledgedRecords;
    if (records === 0) return true;
    return records < this.settings.maxBufferedRecords && p.enqueuedBytes - p.acknowledgedBytes < this.settings.maxBufferedBytes;
  }

  /** Encodes and queues one event (throws its BadRecordError, e.g. too large for the topic). */
  private take(event: AuditEvent): void {
    this.publisher.enqueue(event);
    this.accepted++;
    if (this.publisher.enqueuedRecords > this.publisher.acknowledgedRecords && this.linger === null) {
      this.linger = setTimeout(() => {
        this.linger = null;
        this.publisher.sendQueued();
      }, this.settings.lingerMs);
    }
  }

  /** Called as acknowledgements free room: the waiting sends are taken in the order they were made. */
  private admitWaiting(): void {
    while (this.waiters.length > 0 && this.failure === null && this.hasRoom()) {
      const w = this.waiters.shift() as Waiter;
      try {
        this.take(w.event);
        w.resolve();
      } catch (err) {
        w.reject(err);
      }
    }
  }

  private fail(err: unknown): void {
    this.failure ??= err;
    for (const w of this.waiters.splice(0)) w.reject(this.failure);
  }

  private stopLinger(): void {
    if (this.linger) clearTimeout(this.linger);
    this.linger = null;
  }
}

/**
 * A producer with record batch compression, or undefined for none (the transport's own). The
 * transport seam's producers do not compress, so this builds one of the same client with the
 * same settings and the compression set.
 */
function compressingProducer(transport: Transport, config: KafkaConfig, compression: Compression, logger: Logger): Producer | undefined {
  if (compression === 'none') return undefined;
  if (transport instanceof KafkajsTransport) return new KafkajsGzipProducer(transport.kafka);
  const contact = firstContact(config, logger);
  // PlatformaticProducer passes its options on to the client, compression among them.
  const inner = new PlatformaticProducer({ ...clientOptions(config), compression } as ReturnType<typeof clientOptions>);
  return {
    connect: async () => {
      await contact();
      await inner.connect();
    },
    send: (records) => inner.send(records),
    close: () => inner.close(),
  };
}

/** kafkajs's idempotent producer as the seam configures it, sending gzip record batches. */
class KafkajsGzipProducer implements Producer {
  private readonly producer: ReturnType<Kafka['producer']>;

  constructor(kafka: Kafka) {
    this.producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      // Every record the publisher sends names its partition.
      createPartitioner:
        () =>
        ({ message }) =>
          message.partition ?? 0,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 30_000 },
    });
  }

  connect(): Promise<void> {
    return mapped('kafkajs', 'connecting the producer', () => this.producer.connect());
  }

  async send(records: OutRecord[]): Promise<void> {
    if (records.length === 0) return;
    await mapped('kafkajs', 'producing', () =>
      this.producer.sendBatch({ topicMessages: topicMessages(records), compression: CompressionTypes.GZIP }),
    );
  }

  close(): Promise<void> {
    return this.producer.disconnect();
  }
}
