import { BadRecordError } from '../../errors.ts';
import { defaultWorkers, type EncodeSettings, encodeDeliveries, META_FIELDS } from '../../ingest/pipeline.ts';
import { createKafka } from '../../runtime/kafka.ts';
import { DEFAULT_BATCH_RECORDS, EventPublisher } from '../../runtime/publisher.ts';
import { createRegistry } from '../../runtime/registry.ts';
import { describeRetention, ensureTopics, retentionRisks, retentionWarning, type TopicRetention } from '../../runtime/topics.ts';
import { createTransport } from '../../transport/index.ts';
import { COMMON_HELP, intOption, parse, usageError } from '../args.ts';
import { openSession } from '../connect.ts';

export const PUBLISH_USAGE = `Usage: trailwatch publish cloudtrail [options] <file-or-directory>...

Reads CloudTrail deliveries (.json and .json.gz files holding {"Records": [...]}; directories
are walked recursively), normalizes every record to an AuditEvent and publishes it as Avro
(Confluent wire format, schema in the registry) to the events topic, keyed by account|principal.
A record that cannot be normalized, or is too large for the topic's max.message.bytes
(TW_RECORD_TOO_LARGE), is reported as file:index: reason and the rest go on. The Kafka client
is kafka.client (kafkajs or platformatic).
Records are stamped with the time they are published (event time is in the value), so the
broker's retention counts from the publish. Warnings (stderr): a topic whose retention or
compaction could delete records before a detector reads them, and records older than
detector.maxEventAgeMs, which a live detector dead-letters.

Options:
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
1 nothing could be done (no Kafka, bad arguments).`;

export async function publishCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
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
  const [format, ...paths] = positionals;
  if (format !== 'cloudtrail')
    throw usageError(format ? `unknown input format "${format}" (supported: cloudtrail)` : 'missing input format', PUBLISH_USAGE);
  if (paths.length === 0) throw usageError('no files or directories given', PUBLISH_USAGE);
  const batchSize = intOption(values['batch-size'], 'batch-size', PUBLISH_USAGE) ?? DEFAULT_BATCH_RECORDS;
  const workers = intOption(values.workers, 'workers', PUBLISH_USAGE) ?? defaultWorkers();
  if (workers < 1) throw usageError('--workers must be at least 1', PUBLISH_USAGE);
  const dryRun = values['dry-run'] ?? false;

  const started = performance.now();
  let publisher: EventPublisher | undefined;
  let topic = values.topic ?? '';
  let maxEventAgeMs = 0;
  let retention: (() => Promise<TopicRetention>) | undefined;
  let brokers: string[] = [];
  const warned = new Set<string>();
  if (!dryRun) {
    const session = await openSession(values, { autoStart: true, overrides: values.topic ? { topics: { events: values.topic } } : {} });
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
    publisher = new EventPublisher(
      createTransport(session.config.kafka, session.logger),
      createRegistry(session.config.registry),
      session.config.topics,
      { batchRecords: batchSize, log: session.logger },
    );
    await publisher.start();
  }

  let published = 0;
  let rejected = 0;
  let tooOld = 0;
  const files = new Set<string>();
  const reject = (file: string, index: number | null, error: { code: string; message: string }): void => {
    rejected++;
    const where = index === null || error.message.startsWith(file) ? '' : `${file}:${index}: `;
    process.stderr.write(`rejected ${where}${error.message} [${error.code}]\n`);
  };
  const settings: EncodeSettings = publisher
    ? {
        schemaId: publisher.schemaId,
        partitions: publisher.partitionCount,
        maxMessageBytes: publisher.maxMessageBytes,
        oldBeforeMs: Date.now() - maxEventAgeMs,
        raw: !values['no-raw'],
      }
    : {
        schemaId: 0,
        partitions: 1,
        maxMessageBytes: Number.POSITIVE_INFINITY,
        oldBeforeMs: Number.NEGATIVE_INFINITY,
        raw: !values['no-raw'],
      };
  let lastProgress = 0;
  try {
    // Workers read, parse, normalize and encode; this thread only produces what they hand over.
    for await (const chunk of encodeDeliveries(paths, settings, { workers })) {
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
              reject(segment.file, meta[m + 3] as number, err);
              continue;
            }
            if (publisher.backlogged) await publisher.ready();
          }
          published++;
        }
        for (const error of segment.errors) reject(segment.file, error.index, error);
      }
      if (publisher) tooOld += chunk.tooOld;
      // Progress for people; logs and CI get only the summary.
      if (process.stderr.isTTY && published - lastProgress >= batchSize) {
        lastProgress = published;
        process.stderr.write(`… ${publisher?.acknowledgedRecords ?? published} records ${dryRun ? 'normalized' : 'published'}\x1b[K\r`);
      }
    }
    await publisher?.flush();
  } finally {
    await publisher?.stop();
  }
  if (publisher && retention) warnRetention(await retention(), Math.max(0, ...publisher.bytesPerPartition), brokers, warned);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const verb = dryRun ? 'normalized' : `published to ${topic}`;
  process.stdout.write(`${published} records ${verb} from ${files.size} files, ${rejected} rejected, in ${seconds} s\n`);
  if (tooOld > 0) {
    process.stderr.write(
      `warning: ${tooOld} of the published records are older than detector.maxEventAgeMs (${formatDays(maxEventAgeMs)}): ` +
        'a live detector dead-letters them as TW_TIMESTAMP_OUT_OF_BOUNDS. To detect on them, run the detector with a larger ' +
        'detector.maxEventAgeMs (e.g. TRAILWATCH_DETECTOR__MAX_EVENT_AGE_MS), or run `trailwatch backtest` over the files\n',
    );
  }
  return rejected > 0 ? 2 : 0;
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
