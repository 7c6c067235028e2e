import { randomUUID } from 'node:crypto';
import type { Insight } from '../../contracts/types.ts';
import { EventCodec } from '../../runtime/codec.ts';
import { createKafka } from '../../runtime/kafka.ts';
import { createRegistry } from '../../runtime/registry.ts';
import { COMMON_HELP, intOption, parse } from '../args.ts';
import { openSession } from '../connect.ts';
import { waitForSignal } from './run.ts';

export const TAIL_USAGE = `Usage: trailwatch tail [options]

Prints the alerts topic as CloudTrail-Insights-shaped JSON, one Insight per line, decoding each
record with the schema the registry names in it. Reads only committed records.

Options:
      --topic NAME        alerts topic (default: topics.alerts, "trailwatch.insights")
      --from-beginning    start at the oldest record (default: only new ones)
      --max N             exit after N Insights
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
  const topic = values.topic ?? session.config.topics.alerts;
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
  await consumer.subscribe({ topics: [topic], fromBeginning: values['from-beginning'] ?? false });
  await consumer.run({
    eachMessage: async ({ message, partition }) => {
      if (max !== undefined && printed >= max) return;
      try {
        const insight: Insight = await codec.decodeInsight(message.value);
        const { trailwatch, ...cloudtrail } = insight;
        process.stdout.write(`${JSON.stringify(values['cloudtrail-only'] ? cloudtrail : { ...cloudtrail, trailwatch })}\n`);
        printed++;
        if (max !== undefined && printed >= max) done();
      } catch (err) {
        session.logger.warn({ partition, offset: message.offset, err: (err as Error).message }, 'skipping a record that is not an Insight');
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
