import type { AuditEvent } from '../../contracts/types.ts';
import { normalizeDeliveries, readCloudTrailDeliveries } from '../../ingest/files.ts';
import { createKafka } from '../../runtime/kafka.ts';
import { EventPublisher } from '../../runtime/publisher.ts';
import { createRegistry } from '../../runtime/registry.ts';
import { ensureTopics } from '../../runtime/topics.ts';
import { COMMON_HELP, intOption, parse, usageError } from '../args.ts';
import { openSession } from '../connect.ts';

export const PUBLISH_USAGE = `Usage: trailwatch publish cloudtrail [options] <file-or-directory>...

Reads CloudTrail deliveries (.json and .json.gz files holding {"Records": [...]}; directories
are walked recursively), normalizes every record to an AuditEvent and publishes it as Avro
(Confluent wire format, schema in the registry) to the events topic, keyed by account|principal.
A record that cannot be normalized is reported as file:index: reason and the rest go on.

Options:
      --topic NAME       events topic (default: topics.events, "trailwatch.events")
      --batch-size N     records per produce request (default 500)
      --dry-run          normalize and report only; publish nothing, no Kafka needed
${COMMON_HELP}

Exit status: 0 every record published; 2 some records were rejected (the rest were published);
1 nothing could be done (no Kafka, bad arguments).`;

export async function publishCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { topic: { type: 'string' }, 'batch-size': { type: 'string' }, 'dry-run': { type: 'boolean' } },
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
  const batchSize = intOption(values['batch-size'], 'batch-size', PUBLISH_USAGE) ?? 500;
  const dryRun = values['dry-run'] ?? false;

  const started = performance.now();
  let publisher: EventPublisher | undefined;
  let topic = values.topic ?? '';
  if (!dryRun) {
    const session = await openSession(values, { autoStart: true, overrides: values.topic ? { topics: { events: values.topic } } : {} });
    topic = session.config.topics.events;
    const kafka = createKafka(session.config.kafka, session.logger);
    await ensureTopics(kafka, session.config.topics);
    publisher = new EventPublisher(kafka, createRegistry(session.config.registry), session.config.topics);
    await publisher.start();
  }

  let published = 0;
  let rejected = 0;
  const files = new Map<string, { ok: number; bad: number }>();
  let batch: AuditEvent[] = [];
  const flush = async (): Promise<void> => {
    if (publisher) await publisher.publish(batch);
    published += batch.length;
    batch = [];
  };
  try {
    for await (const item of normalizeDeliveries(readCloudTrailDeliveries(paths))) {
      const stats = files.get(item.file) ?? { ok: 0, bad: 0 };
      files.set(item.file, stats);
      if (item.kind === 'error') {
        rejected++;
        stats.bad++;
        const where = item.index === null || item.error.message.startsWith(item.file) ? '' : `${item.file}:${item.index}: `;
        process.stderr.write(`rejected ${where}${item.error.message} [${item.error.code}]\n`);
        continue;
      }
      stats.ok++;
      batch.push(item.event);
      if (batch.length >= batchSize) {
        await flush();
        // Progress for people; logs and CI get only the summary.
        if (process.stderr.isTTY) process.stderr.write(`… ${published} records ${dryRun ? 'normalized' : 'published'}\x1b[K\r`);
      }
    }
    await flush();
  } finally {
    await publisher?.stop();
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const verb = dryRun ? 'normalized' : `published to ${topic}`;
  process.stdout.write(`${published} records ${verb} from ${files.size} files, ${rejected} rejected, in ${seconds} s\n`);
  return rejected > 0 ? 2 : 0;
}
