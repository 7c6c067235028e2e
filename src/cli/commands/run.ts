import type { Insight } from '../../contracts/types.ts';
import { insightJson } from '../../emit/insight.ts';
import { Observer } from '../../observe/observer.ts';
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

While it runs: Prometheus metrics on http://127.0.0.1:9464/metrics, /healthz (the process is
alive) and /readyz (200 once partitions are assigned, restored and caught up; 503 with the
reasons otherwise); observe.port / TRAILWATCH_OBSERVE__PORT moves them, 0 turns them off,
observe.host 0.0.0.0 opens them to other hosts. Every observe.refreshMs the member publishes its
status (partitions, lag, keys, open Insights) for \`trailwatch status\`.

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
  const transport = createTransport(session.config.kafka, session.logger);
  const observer = new Observer({ config: session.config, transport, logger: session.logger });
  const runtime = new DetectorRuntime({
    config: session.config,
    transport,
    registry: createRegistry(session.config.registry),
    logger: session.logger,
    hooks: observer.hooks,
    ...(onInsight ? { onInsight } : {}),
  });
  observer.attach(runtime);
  // Listening first: /healthz answers and /readyz says "starting" while topics and state come up.
  await observer.start();
  try {
    await runtime.start();
    await observer.refresh();
    const signal = await signalled;
    session.logger.info({ signal }, 'stopping: finishing the batch in hand, committing, leaving the group');
    await runtime.stop();
  } finally {
    await observer.stop();
  }
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
