/**
 * The raw-ingest stage (`trailwatch ingest`): a consumer group on raw topics where forwarders
 * write audit messages as their services send them (EventBridge events, CloudWatch Logs
 * subscription payloads, Kubernetes audit events, JSON lines, CloudTrail deliveries), normalizing
 * each into AuditEvents on the events topic in exactly the wire format `trailwatch publish` writes
 * (keys, partitions, registry-framed Avro: the detector cannot tell the two apart).
 *
 * Exactly once: each raw partition is a task with its own transactional producer (its id names
 * the group, topic and partition, so a new owner fences the old one), and a batch's events, its
 * dead letters and the consumed offsets commit in one transaction. Offsets never move past a
 * message whose outputs are not committed with them; a failed batch is read again from the
 * committed offset.
 *
 * Bad input never stops the stage: a message that cannot be decoded (corrupt gzip, JSON that does
 * not parse, too large) and a record that cannot be normalized go to the dead-letter topic with the
 * reason, the source topic, partition and offset, the format and the record's position in the
 * message; a record that is not an API call is counted as skipped.
 *
 * The pure part (message bytes → events, skips, rejections; events → records) is RawMessageReader
 * and EventEncoder, with no Kafka in them; IngestStage is the shell.
 */
import { gunzipSync } from 'node:zlib';
import type { Config } from '../config/schema.ts';
import { auditEventSchema } from '../contracts/schemas.ts';
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError, type ErrorCode, ErrorCodes, errorMessage, isTrailwatchError, TrailwatchError } from '../errors.ts';
import { isGzip } from '../ingest/files.ts';
import { FORMATS, type Format, formatPosition, type Position, type ReadItem, Skip, SNIFF_BYTES, type Source } from '../ingest/source.ts';
import { createSource, SNIFF_ORDER, type SourceSpec } from '../ingest/sources/index.ts';
import {
  BATCH_OVERHEAD_BYTES,
  eventKey,
  KeyRoutes,
  RECORD_OVERHEAD_BYTES,
  recordBytes,
  recordTooLarge,
  wireHeader,
  wireValue,
} from '../ingest/wire.ts';
import type { Logger } from '../logger.ts';
import { partitionForKey } from '../transport/partitioner.ts';
import type { Admin, Batch, BatchContext, GroupConsumer, InRecord, Transport, TxnProducer } from '../transport/types.ts';
import { type DeadLetter, DLQ_HEADERS, deadLetterMessages, logDeadLetters } from './dead-letter.ts';
import { classifyTaskFailure } from './detector.ts';
import { type OutRecord, produceRounds } from './produce.ts';
import { registerContract, type SchemaRegistry } from './registry.ts';
import { untilStarted } from './startup.ts';
import { ensureIngestTopics } from './topics.ts';

/** A Source format, or `auto`: each message sniffed on its own. */
export type IngestFormat = Format | 'auto';

export const INGEST_FORMATS: readonly IngestFormat[] = ['auto', ...FORMATS];

/** What one raw message became. */
export interface MessageOutcome {
  /** The format it was read as; null when `auto` recognized none (or the message could not be opened). */
  format: Format | null;
  events: Array<{ event: AuditEvent; at: Position; record: unknown }>;
  skipped: Array<{ at: Position; reason: string }>;
  /** Each with the bytes its dead letter carries: the message itself, or the one record at fault. */
  rejected: Array<{ at: Position; error: BadRecordError; value: Buffer }>;
}

export interface RawMessageReaderOptions {
  format: IngestFormat;
  /** How the sources shape their events (jsonl mapping, k8s cluster, raw). */
  source?: Omit<SourceSpec, 'format'>;
  /** Largest message, as received and once gunzipped. */
  maxMessageBytes: number;
}

/** CloudTrail's own EventBridge detail-types end so; any other is a different service's event on the same bus. */
const CLOUDTRAIL_DETAIL_TYPE = / via CloudTrail$/;

/**
 * Raw message bytes → AuditEvents, skips and rejections, through the Source seam (`decode` then
 * `normalize`). Pure: no Kafka, no registry. Gzip (and base64 of gzip) is inflated here, bounded
 * by `maxMessageBytes`, before any source sees it: a small message may inflate to gigabytes.
 *
 * One difference from reading files: an EventBridge event whose detail-type is not CloudTrail's
 * (an EC2 state change on the same bus) is skipped, not rejected. A file is read on purpose; a
 * stream carries whatever the rule routes, and each such event in the dead-letter topic would be
 * noise.
 */
export class RawMessageReader {
  private readonly format: IngestFormat;
  private readonly maxMessageBytes: number;
  private readonly sources = new Map<Format, Source>();
  private readonly jsonlMapped: boolean;

  constructor(options: RawMessageReaderOptions) {
    this.format = options.format;
    this.maxMessageBytes = options.maxMessageBytes;
    this.jsonlMapped = (options.source?.jsonl ?? null) !== null;
    for (const format of FORMATS) this.sources.set(format, createSource({ ...options.source, format }));
  }

  /** Reads one message; `origin` names it in positions and errors (`topic/partition@offset`). */
  read(value: Buffer | null, origin: string): MessageOutcome {
    const at: Position = { origin, line: null, index: null };
    const outcome: MessageOutcome = { format: this.format === 'auto' ? null : this.format, events: [], skipped: [], rejected: [] };
    const original = value ?? Buffer.alloc(0);
    const refuse = (code: ErrorCode, reason: string, cause?: unknown) => {
      outcome.rejected.push({
        at,
        error: new BadRecordError(code, `${origin}: ${reason}`, { cause, details: { reason } }),
        value: original,
      });
      return outcome;
    };
    if (original.length === 0) return refuse(ErrorCodes.DESERIALIZE, 'empty message (a tombstone?): no audit record in it');
    if (original.length > this.maxMessageBytes) {
      return refuse(
        ErrorCodes.RECORD_TOO_LARGE,
        `message of ${original.length} bytes is over ingest.maxMessageBytes (${this.maxMessageBytes}); not decoded`,
      );
    }
    const opened = this.inflate(original);
    if ('error' in opened) return refuse(opened.code, opened.error, opened.cause);
    const bytes = opened.bytes;
    const format = this.format === 'auto' ? this.sniff(bytes) : this.format;
    if (format === null) {
      return refuse(
        ErrorCodes.DESERIALIZE,
        `not a format trailwatch recognizes (${FORMATS.join(', ')}), starting ${JSON.stringify(bytes.toString('utf8', 0, 48))}: ` +
          'set ingest.format (or --format) when the topic holds one format',
      );
    }
    outcome.format = format;
    const source = this.sources.get(format) as Source;
    for (const item of source.decode(bytes, origin)) this.take(source, item, original, outcome);
    return outcome;
  }

  private take(source: Source, item: ReadItem, original: Buffer, outcome: MessageOutcome): void {
    if (item.kind === 'skip') {
      outcome.skipped.push({ at: item.at, reason: item.reason });
      return;
    }
    if (item.kind === 'error') {
      // An error about the whole message keeps its bytes as they came; one about a part, that part.
      const value = item.at.index === null || item.text === undefined ? original : Buffer.from(item.text);
      outcome.rejected.push({ at: item.at, error: item.error, value });
      return;
    }
    const n = source.normalize(item.record);
    if (n instanceof Skip) {
      outcome.skipped.push({ at: item.at, reason: n.reason });
      return;
    }
    if (n instanceof BadRecordError) {
      const detailType = source.format === 'eventbridge' ? otherDetailType(item.record) : null;
      if (detailType !== null) {
        outcome.skipped.push({ at: item.at, reason: `EventBridge detail-type ${JSON.stringify(detailType)}: not a CloudTrail record` });
        return;
      }
      const where = formatPosition(item.at);
      const error = n.message.startsWith(where)
        ? n
        : new BadRecordError(n.code, `${where}: ${n.message}`, { cause: n, details: { ...n.details, reason: n.message } });
      outcome.rejected.push({ at: item.at, error, value: recordValue(source.format, item, original) });
      return;
    }
    outcome.events.push({ event: n, at: item.at, record: item.record });
  }

  /** Gunzips gzip (and base64 of gzip, a Lambda's `awslogs.data`) within maxMessageBytes; other bytes as they are. */
  private inflate(bytes: Buffer): { bytes: Buffer } | { error: string; code: ErrorCode; cause?: unknown } {
    // H4sI is base64 of the gzip magic and deflate method.
    const gz =
      bytes.length > 4 && bytes.toString('latin1', 0, 4) === 'H4sI' ? Buffer.from(bytes.toString('latin1').trim(), 'base64') : bytes;
    if (!isGzip(gz)) return { bytes };
    try {
      return { bytes: gunzipSync(gz, { maxOutputLength: this.maxMessageBytes }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        return {
          code: ErrorCodes.RECORD_TOO_LARGE,
          error: `gzip of ${bytes.length} bytes inflates past ingest.maxMessageBytes (${this.maxMessageBytes}); not decoded`,
        };
      }
      return { code: ErrorCodes.DESERIALIZE, error: `corrupt gzip: ${errorMessage(err)}`, cause: err };
    }
  }

  /** The format of one message from its first bytes; null when none recognizes them. */
  private sniff(bytes: Buffer): Format | null {
    const head = bytes.toString('utf8', 0, Math.min(bytes.length, SNIFF_BYTES));
    for (const format of SNIFF_ORDER) if ((this.sources.get(format) as Source).sniff(head)) return format;
    // One CloudTrail record alone (not in a delivery): the cloudtrail source reads it as a delivery of one.
    if (/^\s*\{/.test(head) && head.includes('"eventSource"') && head.includes('"eventID"')) return 'cloudtrail';
    // A service's own lines have no shape to recognize: with a mapping configured, JSON is taken as them.
    if (this.jsonlMapped && /^\s*\{/.test(head)) return 'jsonl';
    return null;
  }
}

/** The detail-type of an EventBridge event that is not CloudTrail's; null for anything else. */
function otherDetailType(record: unknown): string | null {
  if (typeof record !== 'object' || record === null) return null;
  const detailType = (record as Record<string, unknown>)['detail-type'];
  return typeof detailType === 'string' && !CLOUDTRAIL_DETAIL_TYPE.test(detailType) ? detailType : null;
}

/**
 * The dead letter's value for a record that could not be normalized: the message itself when the
 * record is the whole message, else the record as a message of its format of its own, so that
 * `dlq replay` to the raw topic hands the stage something it can read again (a log event goes back
 * in a DATA_MESSAGE of one).
 */
function recordValue(format: Format, item: Extract<ReadItem, { kind: 'record' }>, original: Buffer): Buffer {
  if (item.at.index === null) return original;
  const r = item.record;
  if (format === 'cwlogs' && typeof r === 'object' && r !== null) {
    const e = r as { message?: unknown; id?: unknown; timestamp?: unknown; logGroup?: unknown; owner?: unknown };
    const payload = {
      messageType: 'DATA_MESSAGE',
      owner: e.owner ?? null,
      logGroup: e.logGroup ?? null,
      logEvents: [{ id: e.id ?? null, timestamp: e.timestamp ?? null, message: e.message ?? null }],
    };
    return Buffer.from(JSON.stringify(payload));
  }
  return Buffer.from(typeof r === 'string' ? r : (JSON.stringify(r) ?? 'null'));
}

/**
 * AuditEvents → events-topic records exactly as the publisher writes them: key `account|principal`,
 * partition by murmur2 of the key, value in the Confluent wire format. No timestamp: the client
 * stamps the wall clock, which retention counts from (see EventPublisher).
 */
export class EventEncoder {
  private readonly topic: string;
  private readonly header: Buffer;
  private readonly routes: KeyRoutes;
  private readonly maxMessageBytes: number;

  constructor(options: { topic: string; schemaId: number; partitions: number; maxMessageBytes: number }) {
    this.topic = options.topic;
    this.header = wireHeader(options.schemaId);
    this.routes = new KeyRoutes(options.partitions);
    this.maxMessageBytes = options.maxMessageBytes;
  }

  /** The record, or the BadRecordError saying why it cannot be written (not in the schema, too large). */
  encode(e: AuditEvent): OutRecord | BadRecordError {
    const route = this.routes.get(eventKey(e));
    let value: Buffer;
    try {
      value = wireValue(e, this.header);
    } catch (err) {
      if (err instanceof BadRecordError) return err;
      throw err;
    }
    if (recordBytes(route.key.length, value.length) + BATCH_OVERHEAD_BYTES > this.maxMessageBytes) {
      return recordTooLarge(`event ${e.eventId}`, route.key.length, value.length, this.maxMessageBytes);
    }
    return { topic: this.topic, partition: route.partition, key: route.key, value };
  }
}

/** Counters of committed work (a batch that did not commit is not counted: it is done again). */
export interface IngestMetrics {
  /** Raw messages consumed and committed. */
  messagesIn: number;
  /** The same, by the format they were read as (`unknown`: not recognized or not opened). */
  messagesByFormat: Record<string, number>;
  /** AuditEvents committed to the events topic. */
  eventsOut: number;
  /** Records read that are not API calls. */
  skipped: number;
  /** Dead letters committed, by error code. */
  deadLetters: Record<string, number>;
  transactionsCommitted: number;
  transactionsAborted: number;
}

export function emptyIngestMetrics(): IngestMetrics {
  return {
    messagesIn: 0,
    messagesByFormat: {},
    eventsOut: 0,
    skipped: 0,
    deadLetters: {},
    transactionsCommitted: 0,
    transactionsAborted: 0,
  };
}

/** The stage at one instant, for metrics and probes. */
export interface IngestView {
  started: boolean;
  stopping: boolean;
  fatal: boolean;
  groupId: string;
  rawTopics: readonly string[];
  format: IngestFormat;
  assignment: Array<{ topic: string; partition: number }>;
  metrics: IngestMetrics;
}

export interface IngestStageOptions {
  config: Config;
  /** The Kafka client behind the seam (createTransport). */
  transport: Transport;
  registry: SchemaRegistry;
  logger: Logger;
  /** Default ingest.rawTopics. */
  rawTopics?: readonly string[];
  /** Default ingest.format. */
  format?: IngestFormat;
  /** Default ingest.groupId. */
  groupId?: string;
  /** Where a partition the group never committed starts; default false (only new messages). */
  fromBeginning?: boolean;
  /** Keep each source record's JSON in AuditEvent.raw, as publish does by default (default true). */
  raw?: boolean;
  /** How often progress is logged; default 10 s. */
  progressEveryMs?: number;
  /** Wall clock, replaceable in tests. */
  now?: () => number;
  /** The stage cannot go on; default: log and exit with status 1 for a supervisor to restart. */
  onFatal?: (err: Error) => void;
}

/** One raw partition this member owns: its transactional producer and where its committed input ends. */
interface Task {
  id: string;
  topic: string;
  partition: number;
  producer: TxnProducer;
  /** Next offset to read: messages below it are committed. */
  nextOffset: bigint;
}

/** The outputs of the messages since the last commit, and what they count for. */
interface Pending {
  records: OutRecord[];
  letters: DeadLetter[];
  bytes: number;
  messages: number;
  events: number;
  skipped: number;
  byFormat: Map<string, number>;
  skipReasons: Map<string, number>;
}

function emptyPending(): Pending {
  return { records: [], letters: [], bytes: 0, messages: 0, events: 0, skipped: 0, byFormat: new Map(), skipReasons: new Map() };
}

const DEFAULT_PROGRESS_EVERY_MS = 10_000;
/** Outputs of one transaction, in bytes: a batch of gzipped payloads inflating to more is committed in several. */
const MAX_TRANSACTION_BYTES = 32 * 1024 * 1024;
const RETRY_BACKOFF_MS = { first: 1_000, max: 30_000 } as const;
/** A failure no retry mends gets this many attempts in a row before the stage gives up. */
const PERMANENT_FAILURE_ATTEMPTS = 3;
/** Skip reasons announced once each, at most this many. */
const MAX_ANNOUNCED_SKIPS = 100;
/** Room kept in a dead letter for the headers the client adds. */
const DEAD_LETTER_SLACK_BYTES = 512;

export class IngestStage {
  readonly metrics: IngestMetrics = emptyIngestMetrics();
  private readonly opts: IngestStageOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly rawTopics: readonly string[];
  private readonly format: IngestFormat;
  private readonly groupId: string;
  private readonly reader: RawMessageReader;
  private encoder: EventEncoder | null = null;
  private consumer: GroupConsumer | null = null;
  private admin: Admin | null = null;
  private readonly tasks = new Map<string, Task>();
  private readonly failing = new Map<string, { sinceMs: number; attempts: number }>();
  private deadLetterPartitions = 1;
  private deadLetterLimit = 1_048_588;
  private eventsLimit = 1_048_588;
  private chain: Promise<void> = Promise.resolve();
  private busySince: number | null = null;
  private progressTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private lastProgress = { atMs: 0, messagesIn: 0, eventsOut: 0, skipped: 0, rejected: 0 };
  private readonly announcedSkips = new Set<string>();
  private started = false;
  private stopping = false;
  private fatalRaised = false;

  constructor(opts: IngestStageOptions) {
    this.opts = opts;
    const { ingest } = opts.config;
    this.log = opts.logger.child({ component: 'ingest' });
    this.now = opts.now ?? Date.now;
    this.rawTopics = opts.rawTopics ?? ingest.rawTopics;
    this.format = opts.format ?? ingest.format;
    this.groupId = opts.groupId ?? ingest.groupId;
    this.reader = new RawMessageReader({
      format: this.format,
      maxMessageBytes: ingest.maxMessageBytes,
      source: { jsonl: ingest.jsonl, k8sAudit: ingest.k8sAudit, raw: opts.raw !== false },
    });
    if (this.rawTopics.includes(opts.config.topics.events) || this.rawTopics.includes(opts.config.topics.deadLetter)) {
      throw new TrailwatchError(
        ErrorCodes.CONFIG_INVALID,
        `the raw topics (${this.rawTopics.join(', ')}) include the events or dead-letter topic: the stage would read its own output; ` +
          'set ingest.rawTopics (or --from) to the topics forwarders write raw messages to',
        { fault: 'user' },
      );
    }
  }

  view(): IngestView {
    return {
      started: this.started,
      stopping: this.stopping,
      fatal: this.fatalRaised,
      groupId: this.groupId,
      rawTopics: this.rawTopics,
      format: this.format,
      assignment: this.stopping ? [] : (this.consumer?.assignment() ?? []),
      metrics: this.metrics,
    };
  }

  async start(): Promise<void> {
    const { config } = this.opts;
    const { topics } = config;
    const created = await untilStarted(
      async () => {
        this.admin ??= await this.opts.transport.admin();
        const made = await ensureIngestTopics(this.admin, topics, this.rawTopics);
        const schemaId = await registerContract(this.opts.registry, auditEventSchema, topics.events);
        this.eventsLimit = await this.maxMessageBytes(topics.events);
        this.deadLetterLimit = await this.maxMessageBytes(topics.deadLetter);
        this.deadLetterPartitions = (await this.connectedAdmin().topicOffsets(topics.deadLetter)).length;
        const partitions = (await this.connectedAdmin().topicOffsets(topics.events)).length;
        this.encoder = new EventEncoder({ topic: topics.events, schemaId, partitions, maxMessageBytes: this.eventsLimit });
        return made;
      },
      { log: this.log, now: this.now },
    );
    if (created.length > 0) this.log.info({ topics: created }, 'topics created');
    this.consumer = this.opts.transport.groupConsumer({
      groupId: this.groupId,
      topics: [...this.rawTopics],
      fromBeginning: this.opts.fromBeginning ?? false,
      readCommitted: true,
      sessionTimeoutMs: config.detector.sessionTimeoutMs,
    });
    this.watchdog = setInterval(() => this.checkStall(), 1_000);
    this.watchdog.unref();
    await this.consumer.run({
      onAssigned: () => this.serialized(() => this.rebalanced()),
      onRevoked: () => this.serialized(() => this.rebalanced()),
      onBatch: (batch, context) => this.serialized(() => this.handleBatch(batch, context)),
      onCrash: (err) => {
        if (!this.stopping) this.fatal(new Error(`the consumer crashed and will not restart: ${errorMessage(err)}`));
      },
    });
    this.lastProgress = { atMs: this.now(), messagesIn: 0, eventsOut: 0, skipped: 0, rejected: 0 };
    this.progressTimer = setInterval(() => this.logProgress(), this.opts.progressEveryMs ?? DEFAULT_PROGRESS_EVERY_MS);
    this.progressTimer.unref();
    this.started = true;
    this.log.info(
      {
        rawTopics: this.rawTopics,
        format: this.format,
        groupId: this.groupId,
        eventsTopic: topics.events,
        deadLetterTopic: topics.deadLetter,
        fromBeginning: this.opts.fromBeginning ?? false,
      },
      'ingest running',
    );
  }

  /** Finishes the transaction in hand, leaves the group, closes every task's producer. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.progressTimer) clearInterval(this.progressTimer);
    if (this.watchdog) clearInterval(this.watchdog);
    await this.consumer?.close().catch(() => undefined);
    await this.chain.catch(() => undefined);
    for (const task of [...this.tasks.values()]) await this.closeTask(task);
    await this.admin?.close().catch(() => undefined);
    this.log.info({ ...this.metrics }, 'ingest stopped');
  }

  private fatal(err: Error): void {
    if (this.stopping || this.fatalRaised) return;
    this.fatalRaised = true;
    this.log.fatal({ err: err.message, ...(isTrailwatchError(err) ? { code: err.code } : {}) }, 'ingest cannot go on');
    if (!this.opts.onFatal) process.exit(1);
    void this.stop().catch(() => undefined);
    this.opts.onFatal(err);
  }

  private checkStall(): void {
    const { stallTimeoutMs } = this.opts.config.detector;
    if (this.stopping) return;
    if (this.busySince !== null && this.now() - this.busySince > stallTimeoutMs) {
      this.fatal(
        new Error(`no progress for ${stallTimeoutMs} ms (detector.stallTimeoutMs): restarting is safe, offsets are transactional`),
      );
      return;
    }
    for (const [id, f] of this.failing) {
      if (this.now() - f.sinceMs > stallTimeoutMs) {
        this.fatal(this.taskFailed(id, f.attempts, `still failing after ${stallTimeoutMs} ms (detector.stallTimeoutMs)`));
        return;
      }
    }
  }

  private serialized(fn: () => Promise<void>): Promise<void> {
    const run = this.chain.then(async () => {
      this.busySince = this.now();
      try {
        await fn();
      } finally {
        this.busySince = null;
      }
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async rebalanced(): Promise<void> {
    const assignment = this.consumer?.assignment() ?? [];
    const owned = new Set(assignment.map((tp) => `${tp.topic}:${tp.partition}`));
    for (const task of [...this.tasks.values()]) if (!owned.has(task.id)) await this.closeTask(task);
    this.log.info({ assignment: assignment.map((tp) => `${tp.topic}:${tp.partition}`) }, 'partitions assigned');
  }

  private async closeTask(task: Task): Promise<void> {
    this.tasks.delete(task.id);
    await task.producer.close().catch(() => undefined);
  }

  /**
   * The task of a raw partition. Its producer connects first, which fences any previous owner and
   * ends its open transaction; only then is the committed offset read, so it is final.
   */
  private async task(topic: string, partition: number): Promise<Task> {
    const id = `${topic}:${partition}`;
    const known = this.tasks.get(id);
    if (known) return known;
    const producer = this.opts.transport.txnProducer({
      transactionalId: `${this.groupId}.${topic}.${partition}`,
      transactionTimeoutMs: 60_000,
    });
    try {
      await producer.connect();
      const committed = await this.connectedAdmin().committedOffsets(this.groupId, topic);
      const task: Task = { id, topic, partition, producer, nextOffset: committed.get(partition) ?? -1n };
      this.tasks.set(id, task);
      return task;
    } catch (err) {
      await producer.close().catch(() => undefined);
      throw err;
    }
  }

  private async handleBatch(batch: Batch, context: BatchContext): Promise<void> {
    if (this.stopping || context.isStale() || batch.records.length === 0) return;
    let task: Task | undefined;
    const batchStart = (batch.records[0] as InRecord).offset;
    try {
      task = await this.task(batch.topic, batch.partition);
      const from = task.nextOffset;
      const fresh = from <= (batch.records[0] as InRecord).offset ? batch.records : batch.records.filter((r) => r.offset >= from);
      let pending = emptyPending();
      for (const [n, record] of fresh.entries()) {
        this.add(pending, batch.topic, batch.partition, record);
        const last = n === fresh.length - 1;
        if (last || pending.bytes >= MAX_TRANSACTION_BYTES) {
          await this.commit(task, pending, record.offset + 1n);
          pending = emptyPending();
          await context.heartbeat();
          // Stopping: the transaction in hand has committed; the rest of the batch waits for the next start.
          if (this.stopping || context.isStale()) return;
        }
      }
      this.failing.delete(task.id);
    } catch (err) {
      await this.failed(batch.topic, batch.partition, task, err, batchStart);
    }
  }

  /** One raw message into the pending transaction: its events encoded, its rejections as dead letters. */
  private add(pending: Pending, topic: string, partition: number, message: InRecord): void {
    const encoder = this.encoder as EventEncoder;
    const outcome = this.reader.read(message.value, `${topic}/${partition}@${message.offset}`);
    const format = outcome.format ?? 'unknown';
    pending.messages++;
    pending.byFormat.set(format, (pending.byFormat.get(format) ?? 0) + 1);
    const letter = (at: Position, error: BadRecordError, value: Buffer): void => {
      const headers = { ...message.headers, [DLQ_HEADERS.format]: format, [DLQ_HEADERS.position]: formatPosition(at) };
      pending.letters.push({
        topic,
        partition,
        message: { key: message.key, value, headers, offset: String(message.offset), timestamp: String(message.timestampMs) },
        error,
      });
      pending.bytes += value.length;
    };
    for (const { event, at, record } of outcome.events) {
      const out = encoder.encode(event);
      if (out instanceof BadRecordError) {
        const where = formatPosition(at);
        const error = new BadRecordError(out.code, `${where}: ${out.message}`, {
          cause: out,
          details: { ...out.details, reason: out.message },
        });
        letter(at, error, Buffer.from(typeof record === 'string' ? record : (JSON.stringify(record) ?? 'null')));
        continue;
      }
      pending.records.push(out);
      pending.events++;
      pending.bytes += RECORD_OVERHEAD_BYTES + (out.value as Buffer).length;
    }
    for (const { at, error, value } of outcome.rejected) letter(at, error, value);
    for (const { reason } of outcome.skipped) {
      pending.skipped++;
      pending.skipReasons.set(reason, (pending.skipReasons.get(reason) ?? 0) + 1);
    }
  }

  /** One transaction: the events, the dead letters and the input offset; counted once committed. */
  private async commit(task: Task, pending: Pending, nextOffset: bigint): Promise<void> {
    const records = [...pending.records, ...this.deadLetterRecords(pending.letters)];
    const rounds = produceRounds(records, (topic) => (topic === this.opts.config.topics.events ? this.eventsLimit : this.deadLetterLimit));
    const txn = await task.producer.begin();
    try {
      for (const round of rounds) await txn.send(round);
      await txn.sendOffsets(this.groupId, [{ topic: task.topic, partition: task.partition, offset: nextOffset }]);
      await txn.commit();
    } catch (err) {
      await txn.abort().catch(() => undefined);
      throw err;
    }
    task.nextOffset = nextOffset;
    const m = this.metrics;
    m.transactionsCommitted++;
    m.messagesIn += pending.messages;
    m.eventsOut += pending.events;
    m.skipped += pending.skipped;
    for (const [format, n] of pending.byFormat) m.messagesByFormat[format] = (m.messagesByFormat[format] ?? 0) + n;
    for (const l of pending.letters) m.deadLetters[l.error.code] = (m.deadLetters[l.error.code] ?? 0) + 1;
    this.announceSkips(pending.skipReasons);
    logDeadLetters(this.log, pending.letters, this.opts.config.topics.deadLetter);
  }

  private deadLetterRecords(letters: DeadLetter[]): OutRecord[] {
    if (letters.length === 0) return [];
    const topic = this.opts.config.topics.deadLetter;
    return deadLetterMessages(topic, letters, this.now(), this.deadLetterLimit - DEAD_LETTER_SLACK_BYTES).map((m, n) => {
      const letter = letters[n] as DeadLetter;
      const key = (m.key ?? null) as Buffer | string | null;
      const headers: Record<string, Buffer | string> = {};
      for (const [name, v] of Object.entries(m.headers ?? {})) {
        const last = Array.isArray(v) ? v[v.length - 1] : v;
        if (last !== undefined) headers[name] = last;
      }
      return {
        topic,
        // A keyed letter goes where its key says; one without a key, beside its source partition.
        partition: key === null ? letter.partition % this.deadLetterPartitions : partitionForKey(key, this.deadLetterPartitions),
        key,
        value: (m.value ?? null) as Buffer | string | null,
        headers,
        timestampMs: Number(m.timestamp),
      };
    });
  }

  /** Each skip reason once, so an operator learns what is passed over without a line per record. */
  private announceSkips(reasons: Map<string, number>): void {
    for (const reason of reasons.keys()) {
      if (this.announcedSkips.has(reason) || this.announcedSkips.size >= MAX_ANNOUNCED_SKIPS) continue;
      this.announcedSkips.add(reason);
      this.log.info({ reason }, 'skipping records that are not API calls (counted, not dead-lettered)');
    }
  }

  private logProgress(): void {
    const m = this.metrics;
    const rejected = Object.values(m.deadLetters).reduce((a, b) => a + b, 0);
    const last = this.lastProgress;
    const nowMs = this.now();
    if (m.messagesIn === last.messagesIn && rejected === last.rejected) return;
    const seconds = Math.max(0.001, (nowMs - last.atMs) / 1000);
    const rate = (a: number, b: number) => Math.round(((a - b) / seconds) * 10) / 10;
    this.log.info(
      {
        messagesIn: m.messagesIn,
        eventsOut: m.eventsOut,
        skipped: m.skipped,
        rejected,
        perSecond: {
          in: rate(m.messagesIn, last.messagesIn),
          out: rate(m.eventsOut, last.eventsOut),
          skipped: rate(m.skipped, last.skipped),
          rejected: rate(rejected, last.rejected),
        },
        partitions: this.tasks.size,
      },
      'ingest progress',
    );
    this.lastProgress = { atMs: nowMs, messagesIn: m.messagesIn, eventsOut: m.eventsOut, skipped: m.skipped, rejected };
  }

  /**
   * A batch that did not commit: drop its task (a new producer fences nothing of ours but starts
   * clean), read again from the committed offset after a backoff that doubles with each failure in
   * a row. The other partitions go on. Fenced: another member owns the partition now. A failure no
   * retry mends ends the stage after a few attempts.
   */
  private async failed(topic: string, partition: number, task: Task | undefined, err: unknown, batchStart: bigint): Promise<void> {
    this.metrics.transactionsAborted++;
    const id = `${topic}:${partition}`;
    const cause = classifyTaskFailure(err);
    if (task) await this.closeTask(task);
    if (cause.kind === 'fenced') {
      this.log.warn({ err: cause.message, topic, partition }, 'another member owns this partition now: dropping it');
      this.failing.delete(id);
      return;
    }
    const f = this.failing.get(id) ?? { sinceMs: this.now(), attempts: 0 };
    f.attempts++;
    this.failing.set(id, f);
    const backoffMs = Math.min(RETRY_BACKOFF_MS.max, RETRY_BACKOFF_MS.first * 2 ** (f.attempts - 1));
    this.log.warn(
      { err: cause.message, code: cause.code, topic, partition, attempt: f.attempts, permanent: cause.kind === 'permanent', backoffMs },
      'batch not committed: reading again from the committed offset',
    );
    if (this.stopping) return;
    if (cause.kind === 'permanent' && f.attempts >= PERMANENT_FAILURE_ATTEMPTS) {
      this.fatal(
        this.taskFailed(id, f.attempts, `failed ${f.attempts} times in a row with an error retrying cannot mend: ${cause.message}`),
      );
      return;
    }
    const committed = await this.connectedAdmin()
      .committedOffsets(this.groupId, topic)
      .catch(() => new Map<number, bigint>());
    const consumer = this.consumer;
    if (!consumer) return;
    const where = [{ topic, partition }];
    consumer.pause(where);
    // Never committed: nothing before this batch was taken, so it starts again at its first message.
    consumer.seek(topic, partition, committed.get(partition) ?? batchStart);
    const timer = setTimeout(() => {
      if (!this.stopping) consumer.resume(where);
    }, backoffMs);
    timer.unref();
  }

  private taskFailed(id: string, attempts: number, what: string): TrailwatchError {
    return new TrailwatchError(ErrorCodes.TASK_FAILED, `ingest task ${id} ${what}`, {
      fault: 'external',
      canRetry: false,
      details: { task: id, attempts },
    });
  }

  private connectedAdmin(): Admin {
    if (!this.admin) throw new TrailwatchError(ErrorCodes.INTERNAL, 'the ingest stage was used before start()');
    return this.admin;
  }

  private async maxMessageBytes(topic: string): Promise<number> {
    const admin = this.connectedAdmin();
    const value = Number((await admin.describeTopicConfigs(topic, ['max.message.bytes']))['max.message.bytes']);
    return Number.isFinite(value) && value > 0 ? value : admin.brokerMessageMaxBytes();
  }
}
