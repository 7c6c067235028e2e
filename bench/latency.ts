/**
 * `npm run bench:latency`: how long after the watermark passes an injected spike's first bucket
 * its Insight Start is readable by a read_committed consumer of the alerts topic, for both scopes:
 * per principal × action (first stage, the principal's partition) and per action (second stage,
 * behind the repartition topic and the watermarks of every upstream partition).
 *
 *   npm run bench:latency -- [--runs 3] [--spikes 40] [--client kafkajs|platformatic] [--write]
 *                            [--principals 60] [--history-days 2] [--speed 60] [--partitions 6]
 *
 * Each run: a fresh events topic holding `--history-days` of background traffic, a detector
 * spawned as a user runs it (defaults, a fresh group) that reads it up to the end, then a steady
 * stream in which each wall second advances event time by `--speed` seconds (a minute), with a
 * spike injected every `--spacing` buckets. The stream is sent in ticks of 100 ms, each awaited
 * (acknowledged by the broker) before the next; "the moment" of a spike is when the first tick
 * that moves the watermark past the spike's first bucket was acknowledged:
 *   - per principal × action: the tick that takes the principal's partition's latest event time
 *     to ≥ bucket start + bucketMs + allowedLatenessMs;
 *   - per action: the tick after which every events partition's latest event time is that far
 *     (the second stage's watermark is the slowest upstream partition's).
 * The latency is from that moment to the Start arriving at a read_committed consumer of the
 * alerts topic in this process (same clock). `--write` updates the "Latency" section of BENCHMARKS.md.
 */
import { parseArgs } from 'node:util';
import { detectorSchema, registrySchema, topicsSchema } from '../src/config/schema.ts';
import type { AuditEvent, Insight } from '../src/contracts/types.ts';
import { mulberry32 } from '../src/demo/traffic.ts';
import { EventCodec } from '../src/runtime/codec.ts';
import { createRegistry, registerContracts } from '../src/runtime/registry.ts';
import { changelogTopics } from '../src/runtime/topics.ts';
import { planSends } from '../src/transport/batching.ts';
import { partitionForKey } from '../src/transport/partitioner.ts';
import type { Admin, OutRecord, Transport } from '../src/transport/types.ts';
import {
  COMMON_OPTIONS,
  clientName,
  fmt,
  machine,
  median,
  quantile,
  runId,
  sectionText,
  sleep,
  stackText,
  until,
  writeSection,
} from './lib/common.ts';
import { DetectorProcess, logDirectory } from './lib/detector.ts';
import { benchTransport, deleteTopics, progress } from './lib/kafka.ts';

const { values } = parseArgs({
  options: {
    ...COMMON_OPTIONS,
    spikes: { type: 'string', default: '40' },
    /** Buckets between two spikes. */
    spacing: { type: 'string', default: '2' },
    /** Events of a spike, all in its first bucket. */
    'spike-events': { type: 'string', default: '30' },
    principals: { type: 'string', default: '60' },
    'history-days': { type: 'string', default: '2' },
    /** Event-time ms per wall ms in the live stream. */
    speed: { type: 'string', default: '60' },
    partitions: { type: 'string', default: '6' },
  },
});
const RUNS = Number(values.runs);
const SPIKES = Number(values.spikes);
const SPACING = Number(values.spacing);
const SPIKE_EVENTS = Number(values['spike-events']);
const PRINCIPALS = Number(values.principals);
const HISTORY_DAYS = Number(values['history-days']);
const SPEED = Number(values.speed);
const PARTITIONS = Number(values.partitions);
const CLIENT = clientName(values.client);
const TICK_MS = 100;
/** The detector runs with the defaults: the engine's clock is read from them. */
const D = detectorSchema.parse({});
const BUCKET = D.bucketMs;
const LATENESS = D.allowedLatenessMs;
const MINUTE = 60_000;
const DAY = 1_440 * MINUTE;
const ID = runId();
const logDir = logDirectory(values['log-dir'], 'latency');

// ── traffic ────────────────────────────────────────────────────────────────
const ACCOUNTS = ['111122223333', '444455556666'];
const HOME = 'us-east-1';
/** The background's writes (read-only calls do not count by default: detector.includeReadOnly). */
const HABITS: Array<[string, string]> = [
  ['s3.amazonaws.com', 'PutObject'],
  ['dynamodb.amazonaws.com', 'PutItem'],
  ['lambda.amazonaws.com', 'Invoke'],
  ['sqs.amazonaws.com', 'SendMessage'],
  ['logs.amazonaws.com', 'PutLogEvents'],
  ['sts.amazonaws.com', 'AssumeRole'],
  ['ec2.amazonaws.com', 'CreateTags'],
];
/** Writes the background never makes: each spike is a principal suddenly making one of them, in a region it never used. */
const SPIKE_ACTIONS: Array<[string, string]> = [
  ['ec2.amazonaws.com', 'RunInstances'],
  ['ec2.amazonaws.com', 'TerminateInstances'],
  ['ec2.amazonaws.com', 'StopInstances'],
  ['ec2.amazonaws.com', 'AuthorizeSecurityGroupIngress'],
  ['ec2.amazonaws.com', 'CreateSnapshot'],
  ['s3.amazonaws.com', 'DeleteObject'],
  ['s3.amazonaws.com', 'CreateBucket'],
  ['s3.amazonaws.com', 'PutBucketPolicy'],
  ['iam.amazonaws.com', 'CreateUser'],
  ['iam.amazonaws.com', 'CreateAccessKey'],
  ['iam.amazonaws.com', 'AttachRolePolicy'],
  ['lambda.amazonaws.com', 'UpdateFunctionCode'],
  ['cloudformation.amazonaws.com', 'UpdateStack'],
  ['ec2.amazonaws.com', 'StartInstances'],
];
const SPIKE_REGIONS = ['eu-west-1', 'us-west-2', 'ap-southeast-2', 'eu-central-1'];
if (SPIKES > SPIKE_ACTIONS.length * SPIKE_REGIONS.length) throw new Error(`at most ${SPIKE_ACTIONS.length * SPIKE_REGIONS.length} spikes`);

interface Principal {
  account: string;
  arn: string;
  partition: number;
  habits: Array<{ service: string; action: string; perMinute: number }>;
}

interface Spike {
  n: number;
  principal: Principal;
  service: string;
  action: string;
  region: string;
  bucketStartMs: number;
  /** Latest event time that closes the bucket: bucket end + allowed lateness. */
  closesAtMs: number;
}

function principals(rand: () => number): Principal[] {
  return Array.from({ length: PRINCIPALS }, (_, i) => {
    const account = ACCOUNTS[i % ACCOUNTS.length] as string;
    const arn = `arn:aws:iam::${account}:role/service-${i}`;
    const first = Math.floor(rand() * HABITS.length);
    const habits = [0, 3].map((d) => {
      const [service, action] = HABITS[(first + d) % HABITS.length] as [string, string];
      return { service, action, perMinute: 0.2 + rand() * 0.6 };
    });
    return { account, arn, partition: partitionForKey(`${account}|${arn}`, PARTITIONS), habits };
  });
}

/** Knuth's Poisson sampler: a handful of events a minute. */
function poisson(rand: () => number, lambda: number): number {
  const limit = Math.exp(-lambda);
  let k = 0;
  for (let p = rand(); p > limit; p *= rand()) k++;
  return k;
}

function event(id: string, p: Principal, service: string, action: string, region: string, timeMs: number): AuditEvent {
  return {
    eventId: id,
    eventTimeMs: timeMs,
    source: 'aws.cloudtrail',
    accountId: p.account,
    region,
    principal: p.arn,
    principalType: 'AssumedRole',
    service,
    action,
    readOnly: false,
    errorCode: null,
    sourceIp: '10.0.0.1',
    userAgent: 'aws-sdk-go-v2/1.30.0',
    attributes: { eventType: 'AwsApiCall' },
  };
}

/** Background traffic of every principal from `fromMs` to `toMs`, minute by minute, in time order. */
function background(rand: () => number, people: Principal[], fromMs: number, toMs: number, tag: string): AuditEvent[] {
  const out: AuditEvent[] = [];
  for (let m = fromMs; m < toMs; m += MINUTE) {
    const minute: AuditEvent[] = [];
    for (const [i, p] of people.entries()) {
      for (const h of p.habits) {
        for (let k = poisson(rand, h.perMinute); k > 0; k--) {
          minute.push(event(`${tag}-${m}-${i}-${h.action}-${k}`, p, h.service, h.action, HOME, m + Math.floor(rand() * MINUTE)));
        }
      }
    }
    out.push(...minute.sort((a, b) => a.eventTimeMs - b.eventTimeMs));
  }
  return out;
}

// ── one run ────────────────────────────────────────────────────────────────
interface Measured {
  spike: Spike;
  scope: 'principalAction' | 'action';
  latencyMs: number;
}

interface RunResult {
  measured: Measured[];
  missing: string[];
  historyEvents: number;
  streamEvents: number;
  catchUpSeconds: number;
  /** How far behind the wall-clock schedule the stream's ticks ran at worst, ms. */
  worstTickLagMs: number;
}

async function produce(transport: Transport, records: Array<OutRecord & { partition: number }>): Promise<void> {
  const producer = transport.producer();
  await producer.connect();
  try {
    for (const group of planSends(records, 900_000, (r) => r.partition).groups) await producer.send(group);
  } finally {
    await producer.close();
  }
}

async function oneRun(transport: Transport, admin: Admin, run: number): Promise<RunResult> {
  const rand = mulberry32(1_000 + run);
  const people = principals(rand);
  const covered = new Set(people.map((p) => p.partition));
  if (covered.size < PARTITIONS)
    throw new Error(`only ${covered.size} of ${PARTITIONS} partitions have background principals: raise --principals`);

  const streamBuckets = 10 + SPIKES * SPACING + Math.ceil(LATENESS / BUCKET) + 3;
  // The stream's event time ends about now by the wall clock when it started: it stays inside
  // [now − maxEventAgeMs, now + maxFutureSkewMs] whatever the speed.
  const streamStart = Math.floor((Date.now() - streamBuckets * BUCKET) / BUCKET) * BUCKET;
  const streamEnd = streamStart + streamBuckets * BUCKET;
  const historyStart = streamStart - HISTORY_DAYS * DAY;
  const spikes: Spike[] = Array.from({ length: SPIKES }, (_, n) => {
    const [service, action] = SPIKE_ACTIONS[n % SPIKE_ACTIONS.length] as [string, string];
    const bucketStartMs = streamStart + (10 + n * SPACING) * BUCKET;
    return {
      n,
      // Distinct principals (7 is prime to the count unless it divides it).
      principal: people[(n * 7) % people.length] as Principal,
      service,
      action,
      region: SPIKE_REGIONS[Math.floor(n / SPIKE_ACTIONS.length)] as string,
      bucketStartMs,
      closesAtMs: bucketStartMs + BUCKET + LATENESS,
    };
  });
  const stream = background(rand, people, streamStart, streamEnd, `s${run}`);
  for (const s of spikes) {
    for (let k = 0; k < SPIKE_EVENTS; k++) {
      const t = s.bucketStartMs + Math.floor(((k + 0.5) * BUCKET) / SPIKE_EVENTS);
      stream.push(event(`spike-${run}-${s.n}-${k}`, s.principal, s.service, s.action, s.region, t));
    }
  }
  stream.sort((a, b) => a.eventTimeMs - b.eventTimeMs);

  const prefix = `trailwatch-bench-latency-${ID}-${run}`;
  const topics = topicsSchema.parse({ events: `${prefix}.events`, alerts: `${prefix}.insights`, deadLetter: `${prefix}.dlq` });
  const changelogs = changelogTopics(prefix);
  await admin.createTopics([{ topic: topics.events, partitions: PARTITIONS }]);
  const registry = createRegistry(registrySchema.parse({ url: values.registry }));
  const codec = new EventCodec(registry);
  const ids = await registerContracts(registry, topics);
  const encode = async (e: AuditEvent): Promise<OutRecord & { partition: number }> => ({
    topic: topics.events,
    partition: partitionForKey(`${e.accountId}|${e.principal}`, PARTITIONS),
    key: `${e.accountId}|${e.principal}`,
    value: await codec.encodeEvent(ids.auditEvent, e),
  });

  const history = background(rand, people, historyStart, streamStart, `h${run}`);
  const encoded: Array<OutRecord & { partition: number }> = [];
  for (const e of history) encoded.push(await encode(e));
  await produce(transport, encoded);
  process.stderr.write(`run ${run + 1}: ${history.length} history events written; spawning the detector\n`);

  const detector = await DetectorProcess.spawn({
    name: `latency-${run}`,
    config: { topics: { events: topics.events, alerts: topics.alerts, deadLetter: topics.deadLetter }, detector: { groupId: prefix } },
    client: CLIENT,
    brokers: values.brokers,
    registry: values.registry,
    logDir,
  });
  const starts = new Map<string, number>();
  const reader = transport.groupConsumer({
    groupId: `${prefix}-reader`,
    topics: [topics.alerts],
    fromBeginning: true,
    readCommitted: true,
    // Only bounds how long an empty fetch waits: a committed record completes it at once.
    maxWaitMs: 100,
  });
  try {
    const caughtUp = await until('the detector reading the history to its end', 600_000, async () => {
      detector.assertRunning();
      const p = await progress(admin, prefix, topics.events);
      return p.committed.every((c, i) => c >= (p.end[i] as bigint)) ? performance.now() : undefined;
    });
    await until('the alerts topic', 60_000, async () => ((await admin.listTopics()).includes(topics.alerts) ? true : undefined));
    await reader.run({
      onBatch: async (batch) => {
        const at = performance.now();
        for (const r of batch.records) {
          const i: Insight = await codec.decodeInsight(r.value);
          if (i.insightDetails.state !== 'Start') continue;
          const key = [
            i.trailwatch.scope,
            i.recipientAccountId,
            i.trailwatch.scope === 'action' ? i.awsRegion : i.trailwatch.principal,
            i.insightDetails.eventName,
            i.trailwatch.startTimeMs,
          ].join('|');
          if (!starts.has(key)) starts.set(key, at);
        }
      },
      onCrash: (err) => process.stderr.write(`alerts reader crashed: ${err.message}\n`),
    });

    // The live stream: ticks of TICK_MS, each acknowledged before the next.
    const latest = new Array<number>(PARTITIONS).fill(Number.NEGATIVE_INFINITY);
    const moments = new Map<string, number>();
    const producer = transport.producer();
    await producer.connect();
    let sent = 0;
    let worstLag = 0;
    const w0 = performance.now();
    try {
      for (let tick = 1; sent < stream.length; tick++) {
        detector.assertRunning();
        const due = w0 + tick * TICK_MS;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        else worstLag = Math.max(worstLag, -wait);
        const upTo = streamStart + (performance.now() - w0) * SPEED;
        const slice: AuditEvent[] = [];
        while (sent < stream.length && (stream[sent] as AuditEvent).eventTimeMs <= upTo) slice.push(stream[sent++] as AuditEvent);
        if (slice.length === 0) continue;
        const records = await Promise.all(slice.map(encode));
        await producer.send(records);
        const ackedAt = performance.now();
        for (const [n, e] of slice.entries()) {
          const p = (records[n] as { partition: number }).partition;
          if (e.eventTimeMs > (latest[p] as number)) latest[p] = e.eventTimeMs;
        }
        const slowest = Math.min(...latest);
        for (const s of spikes) {
          const pa = `p${s.n}`;
          const ac = `a${s.n}`;
          if (!moments.has(pa) && (latest[s.principal.partition] as number) >= s.closesAtMs) moments.set(pa, ackedAt);
          if (!moments.has(ac) && slowest >= s.closesAtMs) moments.set(ac, ackedAt);
        }
      }
    } finally {
      await producer.close();
    }
    // The last spike's Insights have had the stream's tail to come; give them a little more.
    const keyOf = (s: Spike, scope: 'principalAction' | 'action') =>
      [scope, s.principal.account, scope === 'action' ? s.region : s.principal.arn, s.action, s.bucketStartMs].join('|');
    const expected = spikes.flatMap((s) => [keyOf(s, 'principalAction'), keyOf(s, 'action')]);
    await until("every spike's Starts", 30_000, async () => (expected.every((k) => starts.has(k)) ? true : undefined)).catch(
      () => undefined,
    );
    const measured: Measured[] = [];
    const missing: string[] = [];
    for (const s of spikes) {
      for (const scope of ['principalAction', 'action'] as const) {
        const got = starts.get(keyOf(s, scope));
        const moment = moments.get(`${scope === 'action' ? 'a' : 'p'}${s.n}`);
        if (got === undefined || moment === undefined) missing.push(`${scope} ${s.principal.arn} ${s.service}:${s.action} ${s.region}`);
        else measured.push({ spike: s, scope, latencyMs: got - moment });
      }
    }
    return {
      measured,
      missing,
      historyEvents: history.length,
      streamEvents: stream.length,
      catchUpSeconds: (caughtUp - detector.spawnedAt) / 1000,
      worstTickLagMs: worstLag,
    };
  } finally {
    await reader.close().catch(() => undefined);
    await detector.stop();
    await deleteTopics(admin, [
      topics.events,
      topics.alerts,
      topics.deadLetter,
      `${prefix}-actions-repartition`,
      changelogs.principal,
      changelogs.action,
    ]);
  }
}

// ── main ───────────────────────────────────────────────────────────────────
const transport = benchTransport(values.brokers, CLIENT, 'trailwatch-bench-latency');
const admin = await transport.admin();
const results: RunResult[] = [];
let failure: Error | null = null;
try {
  for (let run = 0; run < RUNS; run++) {
    const r = await oneRun(transport, admin, run);
    results.push(r);
    const of = (scope: Measured['scope']) => r.measured.filter((m) => m.scope === scope).map((m) => m.latencyMs);
    process.stderr.write(
      `run ${run + 1}: caught up with ${r.historyEvents} history events in ${r.catchUpSeconds.toFixed(1)} s; ${r.streamEvents} stream events; ` +
        `principal × action p50 ${fmt(quantile(of('principalAction'), 0.5))} ms p99 ${fmt(quantile(of('principalAction'), 0.99))} ms (${of('principalAction').length}); ` +
        `action p50 ${fmt(quantile(of('action'), 0.5))} ms p99 ${fmt(quantile(of('action'), 0.99))} ms (${of('action').length}); ` +
        `missing ${r.missing.length}; worst tick lag ${fmt(r.worstTickLagMs)} ms\n`,
    );
    for (const m of r.missing) process.stderr.write(`  no Start: ${m}\n`);
  }
} catch (err) {
  failure = err as Error;
}
await admin.close();
if (failure || results.length === 0) {
  process.stderr.write(`bench:latency failed: ${failure?.message ?? 'no run finished'} (logs in ${logDir})\n`);
  process.exit(1);
}

const scopes = [
  ['principalAction', 'per principal × action (first stage)'],
  ['action', 'per action (second stage, via the repartition topic)'],
] as const;
const rows = scopes.map(([scope, label]) => {
  const perRun = results.map((r) => r.measured.filter((m) => m.scope === scope).map((m) => m.latencyMs));
  const p50s = perRun.map((xs) => quantile(xs, 0.5));
  const p99s = perRun.map((xs) => quantile(xs, 0.99));
  const all = perRun.flat();
  const n = perRun.map((xs) => xs.length).join(', ');
  return `| ${label} | **${fmt(median(p50s))}** | **${fmt(median(p99s))}** | ${fmt(quantile(all, 0.5))} / ${fmt(quantile(all, 0.99))} / ${fmt(Math.max(...all))} | ${p50s.map(fmt).join(', ')} | ${p99s.map(fmt).join(', ')} | ${n} |`;
});
const missing = results.reduce((n, r) => n + r.missing.length, 0);
const lines = [
  '## Latency',
  '',
  "From the moment the watermark passes an injected spike's first bucket to its Insight Start being readable by a read_committed consumer of the alerts topic (`bench/latency.ts`), `trailwatch run` spawned as a user runs it.",
  '',
  `- command: \`npm run bench:latency -- --runs ${RUNS} --spikes ${SPIKES} --client ${CLIENT} --write\` ${stackText(values.brokers, values.registry)}`,
  `- machine: ${machine()}`,
  `- detector: the defaults (bucket ${BUCKET / 1000} s, allowed lateness ${LATENESS / 60_000} min, minEventsPerBucket ${D.minEventsPerBucket}, minRatio ${D.minRatio}, burstMargin ${D.burstMargin}, minHistoryMs ${D.minHistoryMs / 60_000} min, scoreThreshold ${D.scoreThreshold}), \`kafka.client = ${CLIENT}\`, a fresh group and topics each run, events topic of ${PARTITIONS} partitions (the repartition topic: \`topics.partitions\` = 3)`,
  `- traffic: ${PRINCIPALS} service principals in ${ACCOUNTS.length} accounts, each writing two of ${HABITS.length} APIs in ${HOME} at 0.2–0.8 calls a minute (Poisson), ${HISTORY_DAYS} days of history (${fmt(median(results.map((r) => r.historyEvents)))} events, read to the end before the stream starts: ${results.map((r) => r.catchUpSeconds.toFixed(1)).join(', ')} s from the spawn), then a stream where each wall second advances event time by ${SPEED} s (~${fmt(median(results.map((r) => r.streamEvents)))} events over ${Math.round(((10 + SPIKES * SPACING + LATENESS / BUCKET + 3) * BUCKET) / SPEED / 1000)} s), sent in ticks of ${TICK_MS} ms, each acknowledged before the next (worst tick late by ${results.map((r) => fmt(r.worstTickLagMs)).join(', ')} ms)`,
  `- spikes: ${SPIKES} a run, one every ${SPACING} buckets, each ${SPIKE_EVENTS} calls within one bucket by one principal of an API it never called, in a region its account never used: a new key on both scopes, judged at once (its account has been watched for days, so it is past minHistoryMs), baseline at the floor (0.05 a minute), so the count clears every floor (≥ ${D.minEventsPerBucket} events, ≥ ${D.minRatio} × baseline, > ${D.burstMargin} × a burst memory of 0) and scores 1`,
  "- the moment: the acknowledgement of the first tick that takes the watermark to the end of the spike's first bucket (latest event time − allowed lateness ≥ bucket start + bucket): per principal × action, of the principal's own partition; per action, of every events partition (the second stage waits for the slowest)",
  `- ${missing === 0 ? 'every spike fired on both scopes' : `**${missing} spike Starts did not arrive** (listed on stderr)`}`,
  '',
  '| scope | p50 ms (median of runs) | p99 ms (median of runs) | all spikes p50 / p99 / max ms | p50 per run | p99 per run | spikes per run |',
  '|---|---:|---:|---:|---|---|---|',
  ...rows,
  '',
  'Target: p99 ≤ 2 s.',
];
process.stdout.write(sectionText(lines));
if (values.write) writeSection('latency', lines);
process.exit(missing > 0 ? 1 : 0);
