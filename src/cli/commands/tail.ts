import { randomUUID } from 'node:crypto';
import type { Insight } from '../../contracts/types.ts';
import { findingJson } from '../../emit/finding.ts';
import { insightJson } from '../../emit/insight.ts';
import { EventCodec } from '../../runtime/codec.ts';
import { createKafka } from '../../runtime/kafka.ts';
import { createRegistry } from '../../runtime/registry.ts';
import { COMMON_HELP, intOption, parse } from '../args.ts';
import { openSession } from '../connect.ts';
import { waitForSignal } from './run.ts';

export const TAIL_USAGE = `Usage: trailwatch tail [options]

Prints the alerts topic as CloudTrail-Insights-shaped JSON, one Insight per line, decoding each
record with the schema the registry names in it; with --findings, the findings topic as OCSF
Detection Findings (JSON, null fields left out); with --all, both. Reads only committed records.

Options:
      --topic NAME        alerts topic (default: topics.alerts, "trailwatch.insights")
      --findings          the findings topic instead (topics.findings, "trailwatch.findings")
      --all               the alerts and the findings topics, interleaved as they come
      --from-beginning    start at the oldest record (default: only new ones)
      --max N             exit after N records printed
      --timeout-ms N      exit after N ms (default: run until SIGINT/SIGTERM)
      --cloudtrail-only   drop trailwatch's own "trailwatch" field
${COMMON_HELP}`;

export async function tailCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      topic: { type: 'string' },
      'from-beginning': { type: 'boolean' },
      max: { type: 'string' },
      'timeout-ms': { type: 'string' },
      'cloudtrail-only': { type: 'boolean' },
      findings: { type: 'boolean' },
      all: { type: 'boolean' },
    },
    TAIL_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${TAIL_USAGE}\n`);
    return 0;
  }
  const max = intOption(values.max, 'max', TAIL_USAGE);
  const timeoutMs = intOption(values['timeout-ms'], 'timeout-ms', TAIL_USAGE);
  const session = await openSession(values, { autoStart: false });
  const alerts = values.findings ? null : (values.topic ?? session.config.topics.alerts);
  const findingsTopic = values.findings || values.all ? session.config.topics.findings : null;
  const topics = [alerts, findingsTopic].filter((t): t is string => t !== null);
  const codec = new EventCodec(createRegistry(session.config.registry));
  const kafka = createKafka(session.config.kafka, session.logger);
  // A throwaway group: tail never moves anyone else's offsets.
  const consumer = kafka.consumer({ groupId: `trailwatch-tail-${randomUUID()}`, readUncommitted: false });
  let printed = 0;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: values['from-beginning'] ?? false });
  await consumer.run({
    eachMessage: async ({ topic, message, partition }) => {
      if (max !== undefined && printed >= max) return;
      try {
        if (topic === findingsTopic) {
          process.stdout.write(`${JSON.stringify(findingJson(await codec.decodeFinding(message.value)))}\n`);
        } else {
          const insight: Insight = await codec.decodeInsight(message.value);
          const { trailwatch, ...cloudtrail } = insightJson(insight);
          process.stdout.write(`${JSON.stringify(values['cloudtrail-only'] ? cloudtrail : { ...cloudtrail, trailwatch })}\n`);
        }
        printed++;
        if (max !== undefined && printed >= max) done();
      } catch (err) {
        session.logger.warn(
          { topic, partition, offset: message.offset, err: (err as Error).message },
          `skipping a record that is not ${topic === findingsTopic ? 'a Finding' : 'an Insight'}`,
        );
      }
    },
  });
  const timers: NodeJS.Timeout[] = [];
  if (timeoutMs !== undefined) timers.push(setTimeout(done, timeoutMs));
  await Promise.race([finished, waitForSignal()]);
  for (const t of timers) clearTimeout(t);
  await consumer.disconnect();
  return 0;
}
