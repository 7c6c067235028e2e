import type { Logger } from '../../logger.ts';
import { createIngestMetricsRegistry } from '../../observe/metrics.ts';
import { type ObserveServer, startObserveServer } from '../../observe/server.ts';
import { INGEST_FORMATS, type IngestFormat, IngestStage } from '../../runtime/ingest.ts';
import { createRegistry } from '../../runtime/registry.ts';
import { createTransport } from '../../transport/index.ts';
import { COMMON_HELP, listOption, parse, usageError } from '../args.ts';
import { openSession } from '../connect.ts';
import { waitForSignal } from './run.ts';

export const INGEST_USAGE = `Usage: trailwatch ingest [options]

Runs the raw-ingest stage: a consumer group on raw topics where forwarders write audit messages
as their services send them, normalizing each into AuditEvents on the events topic, exactly as
\`trailwatch publish\` writes them (key account|principal, Avro in the Confluent wire format, schema
in the registry), for \`trailwatch run\` to detect on. Exactly once: each partition's events, dead
letters and consumed offsets commit in one Kafka transaction, so a crash or a restart neither
loses nor repeats an event.

Formats (--format, ingest.format):
  auto         each message sniffed on its own (default)
  eventbridge  EventBridge events, detail = the CloudTrail record; other detail-types are skipped
  cwlogs       CloudWatch Logs subscription payloads (gzip, base64 of gzip, or plain JSON);
               CONTROL_MESSAGE skipped; EKS audit log events too
  k8s-audit    Kubernetes audit events (audit.k8s.io/v1 Event, or an EventList); stages other
               than ResponseComplete skipped
  cloudtrail   CloudTrail deliveries ({"Records": [...]}) or one record alone
  jsonl        AuditEvent JSON, or a service's own JSON mapped by ingest.jsonl

A message or record that cannot be used (corrupt gzip, JSON that does not parse, a record
missing fields, a message over ingest.maxMessageBytes) goes to the dead-letter topic with the
reason (tw.error.code, tw.error.reason), where it came from (tw.source.topic|partition|offset,
tw.source.position, tw.source.format) and the message, or the record, as its value; the stage
goes on. Progress is logged every 10 s: messages in, events out, skipped, rejected, per second.
Metrics on http://127.0.0.1:9465/metrics, /healthz, /readyz (ingest.observePort, 0: off).
Stops cleanly on SIGINT/SIGTERM, after the transaction in hand.

Options:
      --from TOPIC       raw topic to read (repeatable, or comma-separated; default
                         ingest.rawTopics, "trailwatch.raw"; created when missing)
      --format F         auto|cloudtrail|eventbridge|cwlogs|k8s-audit|jsonl (default ingest.format)
      --group ID         consumer group (default ingest.groupId, "trailwatch-ingest"); it also
                         names the transactional ids, so run one group per set of raw topics
      --from-beginning   a partition the group never committed starts at its oldest message
                         (default: only messages written after the group's first start)
      --no-raw           leave each record's JSON out of the event (AuditEvent.raw): smaller
                         events, but rules can then match only the normalized fields
${COMMON_HELP}`;

export async function ingestCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      from: { type: 'string', multiple: true },
      format: { type: 'string' },
      group: { type: 'string' },
      'from-beginning': { type: 'boolean' },
      'no-raw': { type: 'boolean' },
    },
    INGEST_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${INGEST_USAGE}\n`);
    return 0;
  }
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}" (raw topics are given with --from)`, INGEST_USAGE);
  const format = values.format;
  if (format !== undefined && !(INGEST_FORMATS as readonly string[]).includes(format)) {
    throw usageError(`unknown --format "${format}" (one of ${INGEST_FORMATS.join(', ')})`, INGEST_USAGE);
  }
  const from = listOption(values.from);
  if (values.group !== undefined && values.group.trim() === '') throw usageError('--group needs a name', INGEST_USAGE);
  // Listen from the start: a SIGTERM while connecting still ends in a clean stop and exit 0.
  const signalled = waitForSignal();
  const session = await openSession(values, { autoStart: true });
  const { config, logger } = session;
  const stage = new IngestStage({
    config,
    transport: createTransport(config.kafka, logger),
    registry: createRegistry(config.registry),
    logger,
    ...(from ? { rawTopics: [...from] } : {}),
    ...(format !== undefined ? { format: format as IngestFormat } : {}),
    ...(values.group !== undefined ? { groupId: values.group } : {}),
    fromBeginning: values['from-beginning'] ?? false,
    raw: !values['no-raw'],
  });
  const observe =
    config.ingest.observePort === 0
      ? null
      : await startIngestObserve(stage, { host: config.observe.host, port: config.ingest.observePort, logger });
  try {
    await stage.start();
    const signal = await signalled;
    logger.info({ signal }, 'stopping: finishing the transaction in hand, leaving the group');
    await stage.stop();
  } finally {
    await observe?.close();
  }
  return 0;
}

/**
 * /metrics, /healthz (the stage has not given up) and /readyz (started, not stopping) of a stage;
 * `port` 0 takes one the system picks.
 */
export async function startIngestObserve(stage: IngestStage, opts: { host: string; port: number; logger: Logger }): Promise<ObserveServer> {
  const registry = createIngestMetricsRegistry(() => stage.view());
  const server = await startObserveServer({
    host: opts.host,
    port: opts.port,
    log: opts.logger.child({ component: 'observe' }),
    endpoints: {
      metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
      health: () => {
        const v = stage.view();
        return { ok: !v.fatal, reasons: v.fatal ? ['the stage gave up (see its log)'] : [] };
      },
      ready: () => {
        const v = stage.view();
        const reasons = [
          ...(v.started ? [] : ['starting: topics, registry, group']),
          ...(v.stopping ? ['stopping'] : []),
          ...(v.fatal ? ['the stage gave up'] : []),
        ];
        return { ok: reasons.length === 0, reasons, details: { groupId: v.groupId, rawTopics: v.rawTopics, assignment: v.assignment } };
      },
    },
  });
  opts.logger.info({ url: server.url }, 'ingest metrics listening');
  return server;
}
