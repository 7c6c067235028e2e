import type { ConfigInput } from '../../config/schema.ts';
import type { Insight } from '../../contracts/types.ts';
import { DEMO_SPIKE_ACTOR, generateTraffic } from '../../demo/traffic.ts';
import { DetectorRuntime } from '../../runtime/detector.ts';
import { createKafka } from '../../runtime/kafka.ts';
import { EventPublisher } from '../../runtime/publisher.ts';
import { createRegistry } from '../../runtime/registry.ts';
import { ensureTopics } from '../../runtime/topics.ts';
import { stackDown, stackStatus } from '../../stack/local.ts';
import { createTransport } from '../../transport/index.ts';
import { COMMON_HELP, intOption, parse } from '../args.ts';
import { openSession } from '../connect.ts';

export const DEMO_USAGE = `Usage: trailwatch demo [options]

Shows trailwatch end to end on the local stack (started if needed): a detector on fresh demo
topics, two and a half hours of synthetic CloudTrail-like traffic in event time (four
principals at steady rates), and at minute 120 a CI role launching EC2 instances twenty times
its habit for six minutes. The Insights print as they fire: a Start, then an End with the same
sharedEventID, per action and per principal × action.

Options:
      --minute-ms N     wall-clock ms per simulated minute while publishing (default 150)
      --seed N          traffic seed (default 7)
      --keep-stack      leave a local stack this command started running afterwards
${COMMON_HELP}`;

const MINUTES = 150;
const SPIKE_AT = 120;

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    { 'minute-ms': { type: 'string' }, seed: { type: 'string' }, 'keep-stack': { type: 'boolean' } },
    DEMO_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${DEMO_USAGE}\n`);
    return 0;
  }
  const minuteMs = intOption(values['minute-ms'], 'minute-ms', DEMO_USAGE) ?? 150;
  const seed = intOption(values.seed, 'seed', DEMO_USAGE) ?? 7;
  const wasRunning = (await stackStatus()).running;
  const run = Date.now().toString(36);
  const overrides: ConfigInput = {
    topics: {
      events: `trailwatch.demo.${run}.events`,
      alerts: `trailwatch.demo.${run}.insights`,
      deadLetter: `trailwatch.demo.${run}.dlq`,
    },
    detector: { groupId: `trailwatch-demo-${run}`, allowedLatenessMs: 60_000, minHistoryMs: 30 * 60_000, idleAdvanceMs: 5_000 },
  };
  const say = (line: string) => process.stdout.write(`${line}\n`);
  say('trailwatch demo: bringing up Kafka and the schema registry (the first run downloads them once)…');
  // The Insights print as lines of their own; logs only for warnings unless asked.
  const session = await openSession({ ...values, 'log-level': values['log-level'] ?? 'warn' }, { autoStart: true, overrides });
  const { config, logger } = session;
  say(`Kafka ${config.kafka.brokers.join(',')} · registry ${config.registry.url}`);
  say(`topics: ${config.topics.events} → detector → ${config.topics.alerts}`);

  const kafka = createKafka(config.kafka, logger);
  const registry = createRegistry(config.registry);
  await ensureTopics(kafka, config.topics);
  const open = new Set<string>();
  let ends = 0;
  let allEnded: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => {
    allEnded = resolve;
  });
  const runtime = new DetectorRuntime({
    config,
    transport: createTransport(config.kafka, logger),
    registry,
    logger,
    onInsight: (i) => {
      say(describeInsight(i));
      if (i.insightDetails.state === 'Start') open.add(i.sharedEventID);
      else {
        open.delete(i.sharedEventID);
        ends++;
        if (open.size === 0) allEnded();
      }
    },
  });
  await runtime.start();
  const publisher = new EventPublisher(kafka, registry, config.topics);
  await publisher.start();

  const startMs = Math.floor((Date.now() - (MINUTES + 5) * 60_000) / 60_000) * 60_000;
  const events = generateTraffic({
    seed,
    startMs,
    minutes: MINUTES,
    spikes: [{ actor: DEMO_SPIKE_ACTOR, startMinute: SPIKE_AT, minutes: 6 }],
  });
  say(`publishing ${events.length} events: ${MINUTES} minutes of traffic, a spike at minute ${SPIKE_AT} (${minuteMs} ms per minute)…`);
  let i = 0;
  for (let m = 0; m < MINUTES; m++) {
    const until = startMs + (m + 1) * 60_000;
    const chunk = [];
    while (i < events.length && (events[i]?.eventTimeMs ?? Number.POSITIVE_INFINITY) < until)
      chunk.push(events[i++] as (typeof events)[number]);
    await publisher.publish(chunk);
    if (m % 30 === 29) say(`  … minute ${m + 1}/${MINUTES}`);
    await new Promise((r) => setTimeout(r, minuteMs));
  }
  await publisher.stop();
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 120_000).unref());
  const outcome = open.size === 0 && ends > 0 ? 'done' : await Promise.race([ended.then(() => 'done' as const), timeout]);
  await runtime.stop();
  const stopStack = session.localStack && !wasRunning && !values['keep-stack'];
  say(
    outcome === 'done'
      ? `demo complete: ${runtime.metrics.insightsEmitted} Insights (${ends} anomalies opened and closed).` +
          (stopStack ? '' : ` Read them again with: trailwatch tail --topic ${config.topics.alerts} --from-beginning`)
      : `demo timed out with ${open.size} Insight(s) still open`,
  );
  if (stopStack) {
    say('stopping the local stack this demo started (use --keep-stack to keep it)…');
    await stackDown();
  }
  return outcome === 'done' ? 0 : 1;
}

export function describeInsight(i: Insight): string {
  const d = i.insightDetails;
  const st = d.insightContext.statistics;
  const where = i.trailwatch.scope === 'action' ? `all principals, ${i.awsRegion}` : (i.trailwatch.principal ?? '');
  const arrow = d.state === 'Start' ? '▲ Start' : '▼ End  ';
  const duration = st.insightDuration === null ? '' : `, ${st.insightDuration} min`;
  return (
    `${arrow} ${i.eventTime} ${d.insightType}${d.errorCode ? `(${d.errorCode})` : ''} ${d.eventSource}:${d.eventName} [${where}] ` +
    `${st.insight.average.toFixed(1)}/min vs baseline ${st.baseline.average.toFixed(1)}/min${duration} · score ${i.trailwatch.score.toFixed(2)} · ${i.sharedEventID}`
  );
}
