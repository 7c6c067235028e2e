/**
 * `npm run bench:pipeline`: throughput of `trailwatch run` (both stages, exactly-once, the
 * defaults otherwise) over a pre-filled topic of realistic AuditEvents, against the no-op
 * consumer ceiling (bench/ceiling.ts's consumer) measured in the same run on the same topic.
 * The detector is spawned as a user runs it; its progress is read from outside: the time from the
 * spawn until the group's committed offsets reach the end of the events topic.
 *
 *   npm run bench:pipeline -- [--events 500000] [--runs 3] [--client kafkajs|platformatic] [--write]
 *                             [--days 7] [--principals 500] [--partitions 6]
 *                             [--brokers 127.0.0.1:39092] [--registry http://127.0.0.1:38080/apis/ccompat/v7]
 *
 * Event times are the days before this week (`recentStartMs`): the live detector dead-letters
 * events older than detector.maxEventAgeMs by the wall clock. `--write` updates the "Pipeline"
 * section of BENCHMARKS.md.
 */
import { parseArgs } from 'node:util';
import { registrySchema } from '../src/config/schema.ts';
import { createRegistry } from '../src/runtime/registry.ts';
import { changelogTopics } from '../src/runtime/topics.ts';
import { COMMON_OPTIONS, clientName, fmt, machine, median, runId, sectionText, sleep, stackText, writeSection } from './lib/common.ts';
import { DetectorProcess, type LogLine, logDirectory } from './lib/detector.ts';
import { fillTopic, recentStartMs } from './lib/fill.ts';
import { benchTransport, deleteTopics, type NoopRead, progress, readAllNoop, sum } from './lib/kafka.ts';

const { values } = parseArgs({
  options: {
    ...COMMON_OPTIONS,
    events: { type: 'string', default: '500000' },
    days: { type: 'string', default: '7' },
    principals: { type: 'string', default: '500' },
    partitions: { type: 'string', default: '6' },
    /** Longest a detector may take to reach the end of the topic, in seconds; past it the benchmark fails. */
    'timeout-s': { type: 'string', default: '600' },
  },
});
const EVENTS = Number(values.events);
const RUNS = Number(values.runs);
const DAYS = Number(values.days);
const PRINCIPALS = Number(values.principals);
const PARTITIONS = Number(values.partitions);
const CLIENT = clientName(values.client);
const TIMEOUT_MS = Number(values['timeout-s']) * 1000;
const START_MS = recentStartMs(DAYS);
const TOPIC = `trailwatch.bench.pipeline.${EVENTS}.${PARTITIONS}.${new Date(START_MS).toISOString().slice(0, 10)}`;
/** The detector's default fetch bound (detector.fetchMaxBytes), given to the ceiling consumer too. */
const FETCH_BYTES = 1_048_576;
const POLL_MS = 200;
const ID = runId();
const logDir = logDirectory(values['log-dir'], 'pipeline');

const transport = benchTransport(values.brokers, CLIENT, 'trailwatch-bench-pipeline');
const admin = await transport.admin();

const fill = await fillTopic({
  transport,
  registry: createRegistry(registrySchema.parse({ url: values.registry })),
  topic: TOPIC,
  events: EVENTS,
  days: DAYS,
  startMs: START_MS,
  principals: PRINCIPALS,
  partitions: PARTITIONS,
  onProgress: (n) => {
    if (n % 100_000 === 0) process.stderr.write(`filled ${n}\n`);
  },
});
process.stderr.write(
  `${fill.reused ? 'reusing' : 'filled'} ${TOPIC}: ${fill.events} events (${fill.seconds.toFixed(1)} s); logs in ${logDir}\n`,
);

interface PipelineRun {
  /** Spawn → committed offsets at the end of the events topic. */
  seconds: number;
  /** First committed offset seen → the end: start-up, group join and the first restores left out. */
  steadySeconds: number;
  steadyEvents: number;
  /** Spawn → the second stage's committed offsets at the end of the repartition topic too (−1: not within a minute). */
  bothSeconds: number;
  stopped: LogLine | undefined;
  warnings: Record<string, number>;
}

/** One detector over the whole topic in a fresh group; its topics are deleted afterwards. */
async function runDetector(run: number): Promise<PipelineRun> {
  const groupId = `trailwatch-bench-pipeline-${ID}-${run}`;
  const alerts = `${groupId}.insights`;
  const deadLetter = `${groupId}.dlq`;
  const repartition = `${groupId}-actions-repartition`;
  const changelogs = changelogTopics(groupId);
  const detector = await DetectorProcess.spawn({
    name: `pipeline-${run}`,
    config: { topics: { events: TOPIC, alerts, deadLetter }, detector: { groupId } },
    client: CLIENT,
    brokers: values.brokers,
    registry: values.registry,
    logDir,
  });
  try {
    const deadline = detector.spawnedAt + TIMEOUT_MS;
    let first: { at: number; committed: number } | null = null;
    let end = 0;
    for (;;) {
      detector.assertRunning();
      const p = await progress(admin, groupId, TOPIC);
      const now = performance.now();
      const committed = sum(p.committed);
      if (!first && committed > 0) first = { at: now, committed };
      if (p.committed.every((c, i) => c >= (p.end[i] as bigint))) {
        end = now;
        break;
      }
      if (now > deadline)
        throw new Error(`the detector committed ${committed} of ${EVENTS} events in ${TIMEOUT_MS} ms (log: ${detector.logFile})`);
      await sleep(POLL_MS);
    }
    // The second stage: caught up once each repartition partition's committed offset is its end
    // but for the commit marker of the last transaction.
    let both = -1;
    for (const until = performance.now() + 60_000; performance.now() < until; await sleep(POLL_MS)) {
      const p = await progress(admin, groupId, repartition).catch(() => null);
      if (p?.committed.every((c, i) => c >= (p.end[i] as bigint) - 1n)) {
        both = performance.now();
        break;
      }
    }
    const stopped = await detector.stop();
    const f = first ?? { at: detector.spawnedAt, committed: 0 };
    return {
      seconds: (end - detector.spawnedAt) / 1000,
      steadySeconds: (end - f.at) / 1000,
      steadyEvents: EVENTS - f.committed,
      bothSeconds: both < 0 ? -1 : (both - detector.spawnedAt) / 1000,
      stopped,
      warnings: detector.warnings(),
    };
  } finally {
    await detector.stop();
    await deleteTopics(admin, [alerts, deadLetter, repartition, changelogs.principal, changelogs.action]);
  }
}

const ceilings: NoopRead[] = [];
const pipelines: PipelineRun[] = [];
let failure: Error | null = null;
try {
  for (let run = 0; run < RUNS; run++) {
    const c = await readAllNoop(transport, {
      topic: TOPIC,
      records: EVENTS,
      groupId: `trailwatch-bench-pipeline-ceiling-${ID}-${run}`,
      fetchBytes: FETCH_BYTES,
      timeoutMs: TIMEOUT_MS,
    });
    ceilings.push(c);
    const p = await runDetector(run);
    pipelines.push(p);
    const m = (p.stopped?.engine ?? {}) as Record<string, number>;
    process.stderr.write(
      `run ${run + 1}: ceiling ${fmt(c.records / c.seconds)} records/s (${c.seconds.toFixed(2)} s); ` +
        `detector ${fmt(EVENTS / p.seconds)} events/s from the spawn (${p.seconds.toFixed(2)} s), ` +
        `${fmt(p.steadyEvents / p.steadySeconds)} from its first commit; both stages done at ${p.bothSeconds.toFixed(2)} s; ` +
        `decoded ${p.stopped?.eventsDecoded ?? '?'}, processed ${m.eventsProcessed ?? '?'}, dead letters ${JSON.stringify(p.stopped?.deadLetters ?? {})}, ` +
        `Insights ${p.stopped?.insightsEmitted ?? '?'}, transactions ${p.stopped?.transactionsCommitted ?? '?'}, warnings ${JSON.stringify(p.warnings)}\n`,
    );
  }
} catch (err) {
  failure = err as Error;
}
await admin.close();
if (failure || pipelines.length === 0) {
  process.stderr.write(`bench:pipeline failed: ${failure?.message ?? 'no run finished'}\n`);
  process.exit(1);
}

const ceilingRate = ceilings.map((c) => c.records / c.seconds);
const fromStart = pipelines.map((p) => EVENTS / p.seconds);
const steady = pipelines.map((p) => p.steadyEvents / p.steadySeconds);
const ratio = pipelines.map((_, i) => (fromStart[i] as number) / (ceilingRate[i] as number));
const steadyRatio = pipelines.map((_, i) => (steady[i] as number) / (ceilingRate[i] as number));
const deadLetters = pipelines.reduce(
  (n, p) => n + Object.values((p.stopped?.deadLetters ?? {}) as Record<string, number>).reduce((a, b) => a + b, 0),
  0,
);
const insights = pipelines.map((p) => Number(p.stopped?.insightsEmitted ?? Number.NaN));
const transactions = pipelines.map((p) => Number(p.stopped?.transactionsCommitted ?? Number.NaN));
const list = (xs: number[], digits = 0) => xs.map((x) => (digits ? x.toFixed(digits) : fmt(x))).join(', ');
const lines = [
  '## Pipeline',
  '',
  "`trailwatch run` (both stages, exactly-once, the defaults otherwise) spawned as a user runs it, over a pre-filled topic, against the no-op consumer ceiling (`bench/ceiling.ts`'s consumer, same client, same fetch bound) read from the same topic in the same run (`bench/pipeline.ts`).",
  '',
  `- command: \`npm run bench:pipeline -- --events ${EVENTS} --runs ${RUNS} --client ${CLIENT} --write\` ${stackText(values.brokers, values.registry)}`,
  `- machine: ${machine()}`,
  `- topic: ${PARTITIONS} partitions, ${EVENTS.toLocaleString('en-US')} AuditEvents (quality generator traffic over ${DAYS} days from ${new Date(START_MS).toISOString().slice(0, 10)}, ${PRINCIPALS} principals, Avro in the Confluent wire format, ~470 B a record), written by an idempotent producer (\`bench/lib/fill.ts\`)`,
  `- detector: \`kafka.client = ${CLIENT}\` (TRAILWATCH_KAFKA__CLIENT), a fresh group each run (new changelogs, repartition and alerts topics, ${'`topics.partitions`'} = 3 for those it creates); timed from the spawn of the process until the group's committed offsets reach the end of the events topic (polled every ${POLL_MS} ms); "steady" leaves out the start-up (process start, topic creation, group join, the first restores) by timing from the first committed offset seen`,
  `- the ceiling: a fresh group each run, timed from its first batch to its last record; runs alternate ceiling, detector`,
  `- check: ${deadLetters} dead letters over all runs; Insights per run ${list(insights)}; transactions per run ${list(transactions)}; both stages caught up (repartition topic too) at ${list(
    pipelines.map((p) => p.bothSeconds),
    1,
  )} s from the spawn`,
  '',
  '| | median | per run |',
  '|---|---:|---|',
  `| detector events/s, spawn → end | **${fmt(median(fromStart))}** | ${list(fromStart)} |`,
  `| detector events/s, steady (first commit → end) | ${fmt(median(steady))} | ${list(steady)} |`,
  `| ceiling records/s (no-op consumer) | ${fmt(median(ceilingRate))} | ${list(ceilingRate)} |`,
  `| ratio detector (spawn → end) / ceiling | **${median(ratio).toFixed(2)}** | ${list(ratio, 2)} |`,
  `| ratio detector (steady) / ceiling | ${median(steadyRatio).toFixed(2)} | ${list(steadyRatio, 2)} |`,
  '',
  'Target: ≥ 150,000 events/s per process; ratio to the ceiling aim ≥ 0.5.',
];
process.stdout.write(sectionText(lines));
if (values.write) writeSection('pipeline', lines);
process.exit(0);
