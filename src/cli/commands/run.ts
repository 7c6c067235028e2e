import type { Insight } from '../../contracts/types.ts';
import { insightJson } from '../../emit/insight.ts';
import { DetectorRuntime } from '../../runtime/detector.ts';
import { createRegistry } from '../../runtime/registry.ts';
import { createTransport } from '../../transport/index.ts';
import { COMMON_HELP, parse } from '../args.ts';
import { openSession } from '../connect.ts';

export const RUN_USAGE = `Usage: trailwatch run [options]

Runs the detector: a consumer group on the events topic keeps per-action and per principal ×
action baselines in event time and produces Insight Start/End records to the alerts topic
(Avro, Confluent wire format). Records it cannot decode go to the dead-letter topic with the
reason in their headers. With no KAFKA_BROKERS configured it uses (and starts) the local stack.
Stops cleanly on SIGINT/SIGTERM.

Options:
      --print            also print each Insight as JSON on stdout
${COMMON_HELP}`;

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { print: { type: 'boolean' } }, RUN_USAGE);
  if (values.help) {
    process.stdout.write(`${RUN_USAGE}\n`);
    return 0;
  }
  // Listen from the start: a SIGTERM while connecting still ends in a clean stop and exit 0.
  const signalled = waitForSignal();
  const session = await openSession(values, { autoStart: true });
  const onInsight = values.print ? (i: Insight) => process.stdout.write(`${JSON.stringify(insightJson(i))}\n`) : undefined;
  const runtime = new DetectorRuntime({
    config: session.config,
    transport: createTransport(session.config.kafka, session.logger),
    registry: createRegistry(session.config.registry),
    logger: session.logger,
    ...(onInsight ? { onInsight } : {}),
  });
  await runtime.start();
  const signal = await signalled;
  session.logger.info({ signal }, 'stopping: finishing the batch in hand, committing, leaving the group');
  await runtime.stop();
  return 0;
}

export function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
