import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../config/load.ts';
import type { Config } from '../../config/schema.ts';
import { BadRecordError } from '../../errors.ts';
import { type FileIdentity, fileIdentities, PublishCheckpoint } from '../../ingest/files.ts';
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
import { assertPathsExist, COMMON_HELP, intOption, parse, sinceOption, usageError } from '../args.ts';
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
                         share would pass the topic's max.message.bytes)
      --workers N        threads that read, parse, normalize and encode while the main thread
                         produces (default: one per core beyond the first, 1 or 2)
      --no-raw           leave each record's JSON out of the event (AuditEvent.raw): about half
                         the bytes, but rules can then match only the normalized fields
      --dry-run          normalize and encode only; publish nothing, no Kafka needed (no
                         checkpoint is read or written)
      --checkpoint FILE  where the files already published are recorded (default: one file per
                         brokers, topic and format under $TRAILWATCH_CACHE_DIR or
                         ~/.cache/trailwatch, in publish/)
      --no-checkpoint    neither skip nor record finished files: publish every file
      --no-progress      no progress on stderr
      --progress-every S seconds between progress lines when stderr is not a terminal (default 5)
${COMMON_HELP}

Progress: on a terminal, one line redrawn in place (records acknowledged, records/s, files
done of all, ETA by bytes); otherwise a line every --progress-every seconds on stderr.

Resume: a file is recorded in the checkpoint once every record of it (and its dead letters) is
acknowledged by the broker. Run the same command again after an interruption and the recorded
files are skipped ("skipped N files already published"), with the same size and modification
time, that is; a file that changed is published again. New files in a tree are picked up by the
next run. Ctrl-C (or SIGTERM) finishes the file in hand, records what is acknowledged and exits
130: nothing is published twice. After a crash or kill -9 the files that were being published
are published again from their start, so their records already acknowledged are on the topic
twice (at least once for those few files, never for a recorded one; the detector counts an
eventId once within its lateness window).

Exit status: 0 every record published; 2 some records were rejected (the rest were published);
1 nothing could be done (no Kafka, bad arguments, or no record could be used); 130 interrupted
(what was read is published and recorded: the same command goes on).`;

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
      checkpoint: { type: 'string' },
      'no-checkpoint': { type: 'boolean' },
      'no-progress': { type: 'boolean' },
      'progress-every': { type: 'string' },
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
  assertPathsExist(paths);
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
  if (values.checkpoint !== undefined && values['no-checkpoint']) {
    throw usageError('--checkpoint and --no-checkpoint contradict each other: pick one', PUBLISH_USAGE);
  }
  const progressEverySeconds = intOption(values['progress-every'], 'progress-every', PUBLISH_USAGE) ?? 5;
  if (progressEverySeconds < 1) throw usageError('--progress-every must be at least 1 second', PUBLISH_USAGE);

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
  const identities = await fileIdentities(plan.entries.flatMap((e) => (e.kind === 'file' ? [e.file] : [])));

  // Files a run before finished are skipped, by path, size and modification time.
  let checkpoint: PublishCheckpoint | null = null;
  let alreadyPublished = 0;
  let entries = plan.entries;
  if (publisher && !values['no-checkpoint']) {
    // Other formats filter records (not files) by --since/--until: a file is finished only for its range.
    const scope = { brokers: [...brokers].sort(), topic, format, range: format === 'cloudtrail' ? null : range };
    checkpoint = await PublishCheckpoint.open(values.checkpoint ?? defaultCheckpointPath(scope), { topic, format });
    const done = checkpoint;
    entries = plan.entries.filter((e) => {
      const id = e.kind === 'file' ? identities.get(e.file) : null;
      if (id && done.has(id)) {
        alreadyPublished++;
        return false;
      }
      return true;
    });
    if (alreadyPublished > 0) {
      process.stderr.write(
        `skipped ${alreadyPublished} files already published (checkpoint ${checkpoint.path}; --no-checkpoint publishes them again)\n`,
      );
    }
  }

  let published = 0;
  let rejected = 0;
  let tooOld = 0;
  let outOfRange = 0;
  const skipped = new Map<string, number>(Object.entries(plan.skippedFiles).map(([reason, n]) => [`file: ${reason}`, n]));
  const files = new Set<string>();
  let filesTotal = 0;
  let bytesTotal = 0;
  for (const e of entries) {
    if (e.kind !== 'file') continue;
    filesTotal++;
    bytesTotal += identities.get(e.file)?.bytes ?? 0;
  }
  let filesDone = 0;
  let bytesDone = 0;
  const progress =
    values['no-progress'] || filesTotal === 0
      ? null
      : new ProgressReporter(
          process.stderr,
          () => ({ records: publisher ? publisher.acknowledgedRecords : published, filesDone, bytesDone }),
          { files: filesTotal, bytes: bytesTotal, verb: dryRun ? 'normalized' : 'published' },
          progressEverySeconds * 1000,
        );
  const say = (line: string): void => {
    progress?.clear();
    process.stderr.write(`${line}\n`);
  };
  const reject = (error: RecordError): void => {
    rejected++;
    say(`rejected ${error.message} [${error.code}]`);
    deadLetters?.add(error);
  };

  // A file is finished once the records enqueued up to its end and its dead letters are
  // acknowledged; it is recorded as soon as they are (from the acknowledgement), one commit at a time.
  const finishing: Array<{ id: FileIdentity | null; through: number; letters: number }> = [];
  let committing: Promise<void> = Promise.resolve();
  const commit = (): Promise<void> => {
    committing = committing.then(commitFinished);
    return committing;
  };
  const commitFinished = async (): Promise<void> => {
    const finished: FileIdentity[] = [];
    while (finishing.length > 0) {
      const f = finishing[0] as (typeof finishing)[number];
      if (publisher && f.through > publisher.acknowledgedThrough) break;
      if (deadLetters && f.letters > deadLetters.acknowledged) {
        await deadLetters.flush();
        if (f.letters > deadLetters.acknowledged) break;
      }
      finishing.shift();
      filesDone++;
      bytesDone += f.id?.bytes ?? 0;
      if (f.id) finished.push(f.id);
    }
    await checkpoint?.record(finished);
  };

  // A failed commit surfaces at the loop's next `await commit()`.
  publisher?.onAcknowledged(() => void commit().catch(() => undefined));

  // Ctrl-C: stop reading at the end of the file in hand, publish and record what is read, and say
  // how to go on (a second Ctrl-C ends the process at once).
  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

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
  progress?.start();
  try {
    // Workers read, parse, normalize and encode; this thread only produces what they hand over.
    for await (const chunk of encodeInputs(entries, settings, { workers })) {
      const { data, meta } = chunk;
      let record = 0;
      let offset = 0;
      for (const segment of chunk.segments) {
        if (segment.records > 0 || segment.errors.length > 0 || segment.skipped !== null || segment.outOfRange > 0) files.add(segment.file);
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
        if (segment.done) {
          const id = identities.get(segment.file) ?? null;
          finishing.push({ id, through: publisher?.enqueuedRecords ?? 0, letters: deadLetters?.added ?? 0 });
        }
      }
      if (publisher) tooOld += chunk.tooOld;
      if (deadLetters?.backlogged) await deadLetters.flush();
      await commit();
      if (interrupted && (chunk.segments.at(-1)?.done ?? true)) break;
    }
    await publisher?.flush();
    await deadLetters?.flush();
    await commit();
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    progress?.stop();
    await publisher?.stop();
    // What was acknowledged before a failure is finished all the same.
    committing = committing.catch(() => undefined);
    await commit().catch(() => undefined);
    await deadLetters?.close();
  }
  if (publisher && retention) warnRetention(await retention(), Math.max(0, ...publisher.bytesPerPartition), brokers, warned);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const verb = dryRun ? 'normalized' : `published to ${topic}`;
  const skippedTotal = [...skipped.values()].reduce((a, b) => a + b, 0);
  const extra =
    `${skippedTotal > 0 ? `, ${skippedTotal} skipped` : ''}` +
    `${plan.outOfRangeFiles + outOfRange > 0 ? `, ${describeOutOfRange(plan.outOfRangeFiles, outOfRange)}` : ''}` +
    `${alreadyPublished > 0 ? `, ${alreadyPublished} files already published` : ''}`;
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
  if (interrupted) {
    const left = filesTotal - filesDone;
    process.stderr.write(
      `interrupted: ${left} of ${filesTotal} files not finished${checkpoint ? `; run the same command again to publish them (checkpoint ${checkpoint.path})` : ''}\n`,
    );
    return 130;
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
  private flushing: Promise<void> = Promise.resolve();

  constructor(producer: Producer, topic: string, format: string) {
    this.producer = producer;
    this.topic = topic;
    this.format = format;
  }

  /** Letters added so far, and those acknowledged by the broker (in the order added). */
  added = 0;
  acknowledged = 0;

  add(r: InputRejection): void {
    this.pending.push(r);
    this.added++;
  }

  get backlogged(): boolean {
    return this.pending.length >= 500;
  }

  /** Sends what is pending; flushes run one after the other, so `acknowledged` counts in the order added. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.send());
    return this.flushing;
  }

  private async send(): Promise<void> {
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
        this.acknowledged += slice.length;
        slice = [];
        bytes = 0;
      }
      slice.push(r);
      bytes += size;
    }
    if (slice.length > 0) await this.producer.send(slice);
    this.acknowledged += slice.length;
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

/**
 * The checkpoint a publish uses unless told: one per brokers, topic and format (and range, for
 * formats filtered by event time), under the cache directory the local stack uses too.
 */
export function defaultCheckpointPath(scope: object, env: NodeJS.ProcessEnv = process.env): string {
  const cacheDir = env.TRAILWATCH_CACHE_DIR || join(homedir(), '.cache', 'trailwatch');
  const key = createHash('sha256').update(JSON.stringify(scope)).digest('hex').slice(0, 20);
  return join(cacheDir, 'publish', `${key}.jsonl`);
}

/** One moment of a publish, as the progress line shows it. */
export interface ProgressSnapshot {
  records: number;
  recordsPerSecond: number;
  filesDone: number;
  filesTotal: number;
  /** Share done by bytes of the files, in [0, 1]. */
  fraction: number;
  /** Seconds left, null until a file is done. */
  etaSeconds: number | null;
  verb: string;
}

/** The progress line: `bar` for a terminal (fits `width`), `line` for logs. */
export function formatProgress(p: ProgressSnapshot, style: 'bar' | 'line', width = 80): string {
  const eta = p.etaSeconds === null ? '?' : formatDuration(p.etaSeconds);
  const records = Math.round(p.records).toLocaleString('en');
  const rate = Math.round(p.recordsPerSecond).toLocaleString('en');
  if (style === 'line') {
    return `publish: ${records} records ${p.verb} (${rate}/s), ${p.filesDone} of ${p.filesTotal} files done, ${p.filesTotal - p.filesDone} left, ETA ${eta}`;
  }
  const percent = `${Math.floor(p.fraction * 100)}%`.padStart(4);
  const text = ` ${percent} ${records} records ${rate}/s files ${p.filesDone}/${p.filesTotal} ETA ${eta}`;
  const cells = Math.max(10, Math.min(30, width - text.length - 3));
  const full = Math.min(cells, Math.floor(p.fraction * cells));
  return `[${'#'.repeat(full)}${'.'.repeat(cells - full)}]${text}`.slice(0, Math.max(1, width - 1));
}

function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const BAR_REDRAW_MS = 250;
const RATE_WINDOW_MS = 10_000; // records/s over the last ten seconds

/**
 * Progress on stderr: on a terminal one line redrawn in place every BAR_REDRAW_MS, otherwise a
 * line every `everyMs`. Records/s is over the last RATE_WINDOW_MS; the ETA goes by the bytes of
 * the files done so far against the time taken.
 */
export class ProgressReporter {
  private readonly stream: NodeJS.WriteStream;
  private readonly read: () => { records: number; filesDone: number; bytesDone: number };
  private readonly totals: { files: number; bytes: number; verb: string };
  private readonly tty: boolean;
  private readonly everyMs: number;
  private readonly samples: Array<{ atMs: number; records: number }> = [];
  private timer: NodeJS.Timeout | null = null;
  private startedMs = 0;
  private drawn = false;

  constructor(
    stream: NodeJS.WriteStream,
    read: () => { records: number; filesDone: number; bytesDone: number },
    totals: { files: number; bytes: number; verb: string },
    everyMs: number,
  ) {
    this.stream = stream;
    this.read = read;
    this.totals = totals;
    this.tty = stream.isTTY === true;
    this.everyMs = everyMs;
  }

  start(): void {
    this.startedMs = performance.now();
    this.samples.push({ atMs: this.startedMs, records: 0 });
    this.timer = setInterval(() => this.tick(), this.tty ? BAR_REDRAW_MS : this.everyMs);
    this.timer.unref();
  }

  /** Takes the bar off the terminal, so a message can be written where it was. */
  clear(): void {
    if (!this.drawn) return;
    this.stream.write('\r\x1b[K');
    this.drawn = false;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.clear();
  }

  private tick(): void {
    const now = performance.now();
    const { records, filesDone, bytesDone } = this.read();
    this.samples.push({ atMs: now, records });
    while (this.samples.length > 2 && now - (this.samples[1] as { atMs: number }).atMs >= RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0] as { atMs: number; records: number };
    const recordsPerSecond = now > first.atMs ? ((records - first.records) * 1000) / (now - first.atMs) : 0;
    const elapsedSeconds = (now - this.startedMs) / 1000;
    const fraction = this.totals.bytes > 0 ? bytesDone / this.totals.bytes : this.totals.files > 0 ? filesDone / this.totals.files : 0;
    const etaSeconds = fraction > 0 ? (elapsedSeconds * (1 - fraction)) / fraction : null;
    const snapshot = { records, recordsPerSecond, filesDone, filesTotal: this.totals.files, fraction, etaSeconds, verb: this.totals.verb };
    if (this.tty) {
      this.stream.write(`\r${formatProgress(snapshot, 'bar', this.stream.columns || 80)}\x1b[K`);
      this.drawn = true;
    } else {
      this.stream.write(`${formatProgress(snapshot, 'line')}\n`);
    }
  }
}
