import { loadConfig } from '../../config/load.ts';
import type { Config } from '../../config/schema.ts';
import { BadRecordError } from '../../errors.ts';
import { OPEN_RANGE, planInputs, type TimeRange } from '../../ingest/inputs.ts';
import { defaultWorkers, type EncodeSettings, encodeInputs, META_FIELDS, type RecordError } from '../../ingest/pipeline.ts';
import { FORMATS, type Format } from '../../ingest/source.ts';
import { createSource } from '../../ingest/sources/index.ts';
import { type InputRejection, inputDeadLetter } from '../../runtime/dead-letter.ts';
import { createKafka } from '../../runtime/kafka.ts';
import { DEFAULT_BATCH_RECORDS, EventPublisher } from '../../runtime/publisher.ts';
import { createRegistry } from '../../runtime/registry.ts';
import { describeRetention, ensureTopics, retentionRisks, retentionWarning, type TopicRetention } from '../../runtime/topics.ts';
import { createTransport } from '../../transport/index.ts';
import type { Producer } from '../../transport/types.ts';
import { COMMON_HELP, intOption, parse, sinceOption, usageError } from '../args.ts';
import { openSession } from '../connect.ts';

export const PUBLISH_USAGE = `Usage: trailwatch publish <format> [options] <file-or-directory>...
       trailwatch publish --format <format> [options] <file-or-directory>...

Reads audit records from files (directories are walked recursively; gzip is recognised by
content), normalizes every record to an AuditEvent and publishes it as Avro (Confluent wire
format, schema in the registry) to the events topic, keyed by account|principal.

Formats:
  cloudtrail   CloudTrail deliveries ({"Records": [...]}, .json / .json.gz), S3 trees included:
               AWSLogs/[o-…/]<account>/CloudTrail/<region>/YYYY/MM/DD/…; digest files and
               CloudTrail-Insight deliveries in the tree are recognised and skipped
  eventbridge  EventBridge events (detail-type "AWS API Call via CloudTrail", detail = the
               record), one a line or run together as Firehose writes them
  cwlogs       CloudWatch Logs subscription payloads (gzip JSON, DATA_MESSAGE, logEvents[].message
               = one record; CONTROL_MESSAGE skipped); EKS audit log events too
  k8s-audit    Kubernetes API-server audit events (audit.k8s.io/v1, JSON lines): only stage
               ResponseComplete is a call, other stages are skipped (ingest.k8sAudit names the cluster)
  jsonl        JSON lines: AuditEvents, or a service's own log mapped by ingest.jsonl in the config

A record that cannot be used (not normalizable, or too large for the topic's max.message.bytes:
TW_RECORD_TOO_LARGE) is reported as file:position: reason [code], written to the dead-letter
topic (topics.deadLetter, with tw.source.file / tw.source.position headers and the input as the
value), and the rest go on. Records that are not API calls are counted as skipped, not rejected.
The Kafka client is kafka.client (kafkajs or platformatic).
Records are stamped with the time they are published (event time is in the value), so the
broker's retention counts from the publish. Warnings (stderr): a topic whose retention or
compaction could delete records before a detector reads them, and records older than
detector.maxEventAgeMs, which a live detector dead-letters.

Options:
      --format F         cloudtrail|eventbridge|cwlogs|k8s-audit|jsonl (or as the first argument)
      --since T          only from T: an ISO time (2024-05-01, 2024-05-01T12:00:00Z) or a duration
                         back from now (90m, 2d). CloudTrail: by the delivery time in each file's
                         name (5-15 minutes after its events); files outside are never opened.
                         Other formats: by event time
      --until T          only before T (same forms)
      --topic NAME       events topic (default: topics.events, "trailwatch.events")
      --batch-size N     records per produce request (default 2000; fewer when one partition's
                         share would pass 512 KiB)
      --workers N        threads that read, parse, normalize and encode while the main thread
                         produces (default: one per core beyond the first, 1 or 2)
      --no-raw           leave each record's JSON out of the event (AuditEvent.raw): about half
                         the bytes, but rules can then match only the normalized fields
      --dry-run          normalize and encode only; publish nothing, no Kafka needed
${COMMON_HELP}

Exit status: 0 every record published; 2 some records were rejected (the rest were published);
1 nothing could be done (no Kafka, bad arguments, or no record could be used).`;

export async function publishCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      format: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      topic: { type: 'string' },
      'batch-size': { type: 'string' },
      workers: { type: 'string' },
      'dry-run': { type: 'boolean' },
      'no-raw': { type: 'boolean' },
    },
    PUBLISH_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${PUBLISH_USAGE}\n`);
    return 0;
  }
  const supported = FORMATS.join(', ');
  const isFormat = (f: string | undefined): f is Format => f !== undefined && (FORMATS as readonly string[]).includes(f);
  let format: Format;
  let paths: string[];
  if (values.format !== undefined) {
    if (!isFormat(values.format)) throw usageError(`unknown --format "${values.format}" (supported: ${supported})`, PUBLISH_USAGE);
    format = values.format;
    // `publish --format cloudtrail cloudtrail dir/` would be odd; `publish cloudtrail --format cloudtrail dir/` is tolerated.
    paths = positionals[0] === format ? positionals.slice(1) : positionals;
  } else {
    const [first, ...rest] = positionals;
    if (!isFormat(first))
      throw usageError(first ? `unknown input format "${first}" (supported: ${supported})` : 'missing input format', PUBLISH_USAGE);
    format = first;
    paths = rest;
  }
  if (paths.length === 0) throw usageError('no files or directories given', PUBLISH_USAGE);
  const batchSize = intOption(values['batch-size'], 'batch-size', PUBLISH_USAGE) ?? DEFAULT_BATCH_RECORDS;
  const workers = intOption(values.workers, 'workers', PUBLISH_USAGE) ?? defaultWorkers();
  if (workers < 1) throw usageError('--workers must be at least 1', PUBLISH_USAGE);
  const nowMs = Date.now();
  const range: TimeRange = {
    sinceMs: sinceOption(values.since, nowMs, PUBLISH_USAGE, 'since') ?? null,
    untilMs: sinceOption(values.until, nowMs, PUBLISH_USAGE, 'until') ?? null,
  };
  if (range.sinceMs !== null && range.untilMs !== null && range.untilMs <= range.sinceMs) {
    throw usageError(
      `--until (${new Date(range.untilMs).toISOString()}) must be after --since (${new Date(range.sinceMs).toISOString()})`,
      PUBLISH_USAGE,
    );
  }
  const dryRun = values['dry-run'] ?? false;

  const started = performance.now();
  let publisher: EventPublisher | undefined;
  let deadLetters: DeadLetterSink | undefined;
  let topic = values.topic ?? '';
  let maxEventAgeMs = 0;
  let retention: (() => Promise<TopicRetention>) | undefined;
  let brokers: string[] = [];
  let config: Config;
  const warned = new Set<string>();
  if (!dryRun) {
    const session = await openSession(values, { autoStart: true, overrides: values.topic ? { topics: { events: values.topic } } : {} });
    config = session.config;
    topic = session.config.topics.events;
    maxEventAgeMs = session.config.detector.maxEventAgeMs;
    brokers = session.config.kafka.brokers;
    const kafka = createKafka(session.config.kafka, session.logger);
    const created = await ensureTopics(kafka, session.config.topics);
    retention = async () => {
      const admin = kafka.admin();
      await admin.connect();
      try {
        return await describeRetention(admin, topic);
      } finally {
        await admin.disconnect();
      }
    };
    // A topic trailwatch just created has the retention it chose; one that was there may not.
    if (!created.includes(topic)) warnRetention(await retention(), undefined, brokers, warned);
    const transport = createTransport(session.config.kafka, session.logger);
    publisher = new EventPublisher(transport, createRegistry(session.config.registry), session.config.topics, {
      batchRecords: batchSize,
      log: session.logger,
    });
    await publisher.start();
    deadLetters = new DeadLetterSink(transport.producer(), session.config.topics.deadLetter, format);
  } else {
    config = loadConfig({ file: values.config });
  }

  // Which files: walked, filtered by the time in their names, recognised and skipped by name.
  const source = createSource({ format, jsonl: config.ingest.jsonl, k8sAudit: config.ingest.k8sAudit });
  const plan = await planInputs(paths, source, format === 'cloudtrail' ? range : OPEN_RANGE);

  let published = 0;
  let rejected = 0;
  let tooOld = 0;
  let outOfRange = 0;
  const skipped = new Map<string, number>(Object.entries(plan.skippedFiles).map(([reason, n]) => [`file: ${reason}`, n]));
  const files = new Set<string>();
  const reject = (error: RecordError): void => {
    rejected++;
    process.stderr.write(`rejected ${error.message} [${error.code}]\n`);
    deadLetters?.add(error);
  };
  const base = { raw: !values['no-raw'], source: { format, jsonl: config.ingest.jsonl, k8sAudit: config.ingest.k8sAudit } };
  // Formats whose file names carry no time are filtered by event time instead.
  const eventRange = format === 'cloudtrail' ? OPEN_RANGE : range;
  const settings: EncodeSettings = publisher
    ? {
        schemaId: publisher.schemaId,
        partitions: publisher.partitionCount,
        maxMessageBytes: publisher.maxMessageBytes,
        oldBeforeMs: Date.now() - maxEventAgeMs,
        eventRange,
        ...base,
      }
    : {
        schemaId: 0,
        partitions: 1,
        maxMessageBytes: Number.POSITIVE_INFINITY,
        oldBeforeMs: Number.NEGATIVE_INFINITY,
        eventRange,
        ...base,
      };
  let lastProgress = 0;
  try {
    // Workers read, parse, normalize and encode; this thread only produces what they hand over.
    for await (const chunk of encodeInputs(plan.entries, settings, { workers })) {
      const { data, meta } = chunk;
      let record = 0;
      let offset = 0;
      for (const segment of chunk.segments) {
        files.add(segment.file);
        for (const end = record + segment.records; record < end; record++) {
          const m = record * META_FIELDS;
          const keyEnd = offset + (meta[m] as number);
          const valueEnd = keyEnd + (meta[m + 1] as number);
          const key = data.subarray(offset, keyEnd);
          const value = data.subarray(keyEnd, valueEnd);
          offset = valueEnd;
          if (publisher) {
            try {
              publisher.enqueueEncoded(key, value, meta[m + 2] as number);
            } catch (err) {
              if (!(err instanceof BadRecordError)) throw err;
              const index = meta[m + 3] as number;
              const position = `${segment.file}:${index}`;
              reject({ file: segment.file, index, position, code: err.code, message: `${position}: ${err.message}`, value: null });
              continue;
            }
            if (publisher.backlogged) await publisher.ready();
          }
          published++;
        }
        for (const error of segment.errors) reject(error);
        if (segment.skipped) for (const [reason, n] of Object.entries(segment.skipped)) skipped.set(reason, (skipped.get(reason) ?? 0) + n);
        outOfRange += segment.outOfRange;
      }
      if (publisher) tooOld += chunk.tooOld;
      if (deadLetters?.backlogged) await deadLetters.flush();
      // Progress for people; logs and CI get only the summary.
      if (process.stderr.isTTY && published - lastProgress >= batchSize) {
        lastProgress = published;
        process.stderr.write(`… ${publisher?.acknowledgedRecords ?? published} records ${dryRun ? 'normalized' : 'published'}\x1b[K\r`);
      }
    }
    await publisher?.flush();
    await deadLetters?.flush();
  } finally {
    await publisher?.stop();
    await deadLetters?.close();
  }
  if (publisher && retention) warnRetention(await retention(), Math.max(0, ...publisher.bytesPerPartition), brokers, warned);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const verb = dryRun ? 'normalized' : `published to ${topic}`;
  const skippedTotal = [...skipped.values()].reduce((a, b) => a + b, 0);
  const extra = `${skippedTotal > 0 ? `, ${skippedTotal} skipped` : ''}${plan.outOfRangeFiles + outOfRange > 0 ? `, ${describeOutOfRange(plan.outOfRangeFiles, outOfRange)}` : ''}`;
  process.stdout.write(`${published} records ${verb} from ${files.size} files, ${rejected} rejected${extra}, in ${seconds} s\n`);
  for (const [reason, n] of skipped) process.stderr.write(`skipped ${n}: ${reason}\n`);
  if (rejected > 0 && deadLetters)
    process.stderr.write(`${rejected} rejected records written to the dead-letter topic ${deadLetters.topic} (trailwatch dlq show)\n`);
  if (tooOld > 0) {
    process.stderr.write(
      `warning: ${tooOld} of the published records are older than detector.maxEventAgeMs (${formatDays(maxEventAgeMs)}): ` +
        'a live detector dead-letters them as TW_TIMESTAMP_OUT_OF_BOUNDS. To detect on them, run the detector with a larger ' +
        'detector.maxEventAgeMs (e.g. TRAILWATCH_DETECTOR__MAX_EVENT_AGE_MS), or run `trailwatch backtest` over the files\n',
    );
  }
  if (published === 0 && rejected > 0) return 1;
  return rejected > 0 ? 2 : 0;
}

function describeOutOfRange(files: number, events: number): string {
  const parts: string[] = [];
  if (files > 0) parts.push(`${files} files outside --since/--until (not opened)`);
  if (events > 0) parts.push(`${events} records outside --since/--until`);
  return parts.join(', ');
}

/** Rejected records on their way to the dead-letter topic, sent in batches beside the events. */
class DeadLetterSink {
  readonly topic: string;
  private readonly producer: Producer;
  private readonly format: string;
  private pending: InputRejection[] = [];
  private connected: Promise<void> | null = null;

  constructor(producer: Producer, topic: string, format: string) {
    this.producer = producer;
    this.topic = topic;
    this.format = format;
  }

  add(r: InputRejection): void {
    this.pending.push(r);
  }

  get backlogged(): boolean {
    return this.pending.length >= 500;
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const now = Date.now();
    // The default max.message.bytes (1 MiB) bounds a letter; the value is cut to fit, headers say so.
    const records = this.pending.map((r) => {
      const m = inputDeadLetter(this.topic, r, this.format, now, 1_000_000);
      return { topic: this.topic, key: null, value: m.value ?? null, headers: m.headers as Record<string, string>, timestampMs: now };
    });
    this.pending = [];
    this.connected ??= this.producer.connect();
    await this.connected;
    // Requests of at most ~900 KB of letters: they may all land in one partition, whose batch the
    // broker bounds by max.message.bytes (1 MiB by default).
    let slice: typeof records = [];
    let bytes = 0;
    for (const r of records) {
      const size = (r.value?.length ?? 0) + 512;
      if (slice.length > 0 && bytes + size > 900_000) {
        await this.producer.send(slice);
        slice = [];
        bytes = 0;
      }
      slice.push(r);
      bytes += size;
    }
    if (slice.length > 0) await this.producer.send(slice);
  }

  async close(): Promise<void> {
    if (this.connected) await this.producer.close();
  }
}

/** Prints the retention warning once per risk found. */
function warnRetention(r: TopicRetention, bytesPerPartition: number | undefined, brokers: string[], warned: Set<string>): void {
  const risks = retentionRisks(r, bytesPerPartition).filter((risk) => !warned.has(risk));
  if (risks.length === 0) return;
  for (const risk of risks) warned.add(risk);
  process.stderr.write(`${retentionWarning(r, risks, brokers)}\n`);
}

function formatDays(ms: number): string {
  return `${+(ms / 86_400_000).toFixed(1)} days`;
}
