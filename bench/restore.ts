/**
 * `npm run bench:restore`: how long `trailwatch run` takes to restore a task with 1M keys from
 * its changelog. The changelog is built here, fast and deterministically: a PrincipalStage fed
 * `--keys` distinct principal × action keys (each seen in three buckets, so it carries a real
 * baseline), its changes written through ChangelogWriter to the changelog the detector uses for
 * the group (compacted, as many partitions as the events topic), all into partition 0. Then, per
 * run, one event lands in events partition 0 and a detector is spawned for the group: the task is
 * created on that first batch and logs `partition state restored` (restoreMs, records, bytes,
 * keys). The benchmark reads that line.
 *
 *   npm run bench:restore -- [--keys 1000000] [--runs 3] [--client kafkajs|platformatic] [--profile] [--write]
 *
 * How the time splits: restoreMs is the runtime's own figure for reading (the barrier transaction,
 * the restore consumer's join, fetching the partition up to the barrier); the rest, up to the log
 * line, is counted from the group assignment (first fetch, the task's producer, decoding every
 * key and rebuilding the engine). `--profile` adds one run under `node --cpu-prof` and splits the
 * CPU time of decoding and rebuilding from the profile. `--write` updates the "Restore" section
 * of BENCHMARKS.md.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { detectorSchema, registrySchema, topicsSchema } from '../src/config/schema.ts';
import type { AuditEvent } from '../src/contracts/types.ts';
import { PrincipalStage } from '../src/detect/topology.ts';
import { ChangelogWriter } from '../src/runtime/changelog.ts';
import { EventCodec } from '../src/runtime/codec.ts';
import { createRegistry, registerContracts } from '../src/runtime/registry.ts';
import { changelogTopics } from '../src/runtime/topics.ts';
import { planSends } from '../src/transport/batching.ts';
import { partitionForKey } from '../src/transport/partitioner.ts';
import type { OutRecord } from '../src/transport/types.ts';
import { COMMON_OPTIONS, clientName, fmt, machine, median, runId, sectionText, stackText, writeSection } from './lib/common.ts';
import { DetectorProcess, type LogLine, logDirectory } from './lib/detector.ts';
import { benchTransport, deleteTopics } from './lib/kafka.ts';

const { values } = parseArgs({
  options: {
    ...COMMON_OPTIONS,
    keys: { type: 'string', default: '1000000' },
    partitions: { type: 'string', default: '6' },
    profile: { type: 'boolean', default: false },
    /** Keep the topics afterwards (to look at them); by default they are deleted. */
    keep: { type: 'boolean', default: false },
    'timeout-s': { type: 'string', default: '300' },
  },
});
const KEYS = Number(values.keys);
const RUNS = Number(values.runs);
const PARTITIONS = Number(values.partitions);
const CLIENT = clientName(values.client);
const TIMEOUT_MS = Number(values['timeout-s']) * 1000;
const ACTIONS = 20;
const ACCOUNT = '111122223333';
const MINUTE = 60_000;
/** The detector runs with the defaults: the state is built with them too. */
const D = detectorSchema.parse({});
const ID = runId();
const logDir = logDirectory(values['log-dir'], 'restore');
const groupId = `trailwatch-bench-restore-${ID}`;
const topics = topicsSchema.parse({ events: `${groupId}.events`, alerts: `${groupId}.insights`, deadLetter: `${groupId}.dlq` });
const changelog = changelogTopics(groupId);
const phase = (what: string, since: number) => process.stderr.write(`${what} in ${((performance.now() - since) / 1000).toFixed(1)} s\n`);

// ── the state ──────────────────────────────────────────────────────────────
// Principals whose events all land in events partition 0, as the publisher keys them.
const principals: string[] = [];
for (let i = 0; principals.length < Math.ceil(KEYS / ACTIONS); i++) {
  const arn = `arn:aws:iam::${ACCOUNT}:user/user-${i}`;
  if (partitionForKey(`${ACCOUNT}|${arn}`, PARTITIONS) === 0) principals.push(arn);
}
// Two hours ago, so every event is inside the detector's [now − maxEventAgeMs, now + maxFutureSkewMs].
const T0 = Math.floor((Date.now() - 2 * 3_600_000) / 3_600_000) * 3_600_000;
const event = (i: number, minute: number, run: string): AuditEvent => ({
  eventId: `${run}-${i}-${minute}`,
  eventTimeMs: T0 + minute * MINUTE + (i % 50_000),
  source: 'aws.cloudtrail',
  accountId: ACCOUNT,
  region: 'us-east-1',
  principal: principals[i % principals.length] as string,
  principalType: 'IAMUser',
  service: 'ec2.amazonaws.com',
  action: `Action${Math.floor(i / principals.length) % ACTIONS}`,
  readOnly: false,
  errorCode: null,
  sourceIp: null,
  userAgent: `agent-${i % 7}`,
  attributes: {},
});

let started = performance.now();
const stage = PrincipalStage.create(D, 0, { trackChanges: true });
// Three active minutes per key (as bench/memory.ts), then the watermark closes every bucket.
for (const minute of [0, 7, 30]) {
  const batch: AuditEvent[] = [];
  for (let i = 0; i < KEYS; i++) {
    batch.push(event(i, minute, 'state'));
    if (batch.length === 10_000) stage.process(batch.splice(0));
  }
  stage.process(batch);
}
stage.advanceWatermark(T0 + 40 * MINUTE, false);
const changes = stage.engine.drainChanges();
// The dedupe records are tombstoned by the time the watermark has passed their buckets, and
// compaction drops them: the state a long-running changelog restores is the keys and the meta.
const messages = new ChangelogWriter(changelog.principal, 0, D.bucketMs).messages({ ...changes, seen: [] }, null);
const stateKeys = stage.engine.activeKeys;
phase(`${stateKeys} keys built and encoded (${messages.length} changelog records)`, started);

const transport = benchTransport(values.brokers, CLIENT, 'trailwatch-bench-restore');
const admin = await transport.admin();
const registry = createRegistry(registrySchema.parse({ url: values.registry }));
const codec = new EventCodec(registry);
const schemaIds = await registerContracts(registry, topics);
let changelogBytes = 0;

/** One event of a key the state holds, into events partition 0: the task is created on its batch. */
async function trigger(run: number): Promise<void> {
  const e = event(0, 41 + run, `trigger-${run}`);
  const producer = transport.producer();
  await producer.connect();
  try {
    const key = `${e.accountId}|${e.principal}`;
    await producer.send([{ topic: topics.events, partition: 0, key, value: await codec.encodeEvent(schemaIds.auditEvent, e) }]);
  } finally {
    await producer.close();
  }
}

interface RestoreRun {
  restoreMs: number;
  records: number;
  bytes: number;
  keys: number;
  /** From the group assignment to the restored task (the log line), ms. */
  totalMs: number;
  profile?: ProfileSplit;
}

interface ProfileSplit {
  /** CPU ms inclusive in each function, summed over the profile. */
  fromCheckpoint: number;
  decodeKey: number;
  fromRecord: number;
  adopt: number;
  /** Self CPU ms in kafkajs during the whole process life (reading, fetching, decoding batches). */
  kafkajs: number;
  /** Self CPU ms of the garbage collector. */
  gc: number;
}

/** Inclusive CPU ms per function name (and kafkajs's and the GC's self time) in a .cpuprofile. */
function splitProfile(file: string): ProfileSplit {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string };
    children?: number[];
  }
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
  const self = new Map<number, number>();
  for (const [n, id] of p.samples.entries()) self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[n] ?? 0) / 1000);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const inclusive = new Map<number, number>();
  const total = (id: number): number => {
    const known = inclusive.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id) as Node;
    const t = (self.get(id) ?? 0) + (node.children ?? []).reduce((s, c) => s + total(c), 0);
    inclusive.set(id, t);
    return t;
  };
  // Inclusive time of a name, counted once per stack (the outermost frame of that name).
  const named = (name: string, under = ''): number => {
    let sum = 0;
    const walk = (id: number, inside: boolean, counted: boolean) => {
      const node = byId.get(id) as Node;
      const here = node.callFrame.functionName === name && (under === '' || inside);
      if (here && !counted) {
        sum += total(id);
        counted = true;
      }
      for (const c of node.children ?? []) walk(c, inside || node.callFrame.functionName === under, counted);
    };
    walk(p.nodes[0]?.id ?? 1, false, false);
    return sum;
  };
  let kafkajs = 0;
  let gc = 0;
  for (const n of p.nodes) {
    if (/node_modules\/kafkajs\//.test(n.callFrame.url)) kafkajs += self.get(n.id) ?? 0;
    if (n.callFrame.functionName === '(garbage collector)') gc += self.get(n.id) ?? 0;
  }
  return {
    fromCheckpoint: named('fromCheckpoint'),
    decodeKey: named('decodeKey', 'fromCheckpoint'),
    fromRecord: named('fromRecord', 'fromCheckpoint'),
    adopt: named('adopt', 'fromCheckpoint'),
    kafkajs,
    gc,
  };
}

async function restoreOnce(run: number, profile: boolean): Promise<RestoreRun> {
  await trigger(run);
  const profDir = join(logDir, `prof-${run}`);
  const detector = await DetectorProcess.spawn({
    name: `restore-${run}${profile ? '-profiled' : ''}`,
    config: { topics: { events: topics.events, alerts: topics.alerts, deadLetter: topics.deadLetter }, detector: { groupId } },
    client: CLIENT,
    brokers: values.brokers,
    registry: values.registry,
    logDir,
    ...(profile ? { nodeFlags: ['--cpu-prof', '--cpu-prof-dir', profDir] } : {}),
  });
  try {
    const task = `${topics.events}:0`;
    const restored = await detector.waitFor(
      'the restore of events partition 0',
      (l) => l.msg === 'partition state restored' && l.task === task,
      TIMEOUT_MS,
    );
    const assigned = detector.lines.find((l) => l.msg === 'partitions assigned') as LogLine;
    await detector.stop();
    const out: RestoreRun = {
      restoreMs: Number(restored.restoreMs),
      records: Number(restored.records),
      bytes: Number(restored.bytes),
      keys: Number(restored.keys),
      totalMs: restored.time - assigned.time,
    };
    if (profile) {
      const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
      if (file) out.profile = splitProfile(join(profDir, file));
      else process.stderr.write(`no CPU profile in ${profDir}\n`);
    }
    return out;
  } finally {
    await detector.stop();
  }
}

const results: RestoreRun[] = [];
let profiled: RestoreRun | undefined;
let failure: Error | null = null;
try {
  await admin.createTopics([
    { topic: topics.events, partitions: PARTITIONS },
    { topic: changelog.principal, partitions: PARTITIONS, configs: { 'cleanup.policy': 'compact' } },
  ]);
  started = performance.now();
  const producer = transport.producer();
  await producer.connect();
  try {
    const records = messages as Array<OutRecord & { partition: number }>;
    for (const r of records) changelogBytes += (r.value ? Buffer.byteLength(r.value) : 0) + (r.key ? Buffer.byteLength(r.key) : 0);
    for (const group of planSends(records, 900_000, (r) => r.partition).groups) await producer.send(group);
  } finally {
    await producer.close();
  }
  phase(`changelog written (${fmt(changelogBytes / 2 ** 20)} MiB)`, started);
  messages.length = 0;
  for (let run = 0; run < RUNS; run++) {
    const r = await restoreOnce(run, false);
    results.push(r);
    process.stderr.write(
      `run ${run + 1}: restoreMs ${r.restoreMs}, ${r.records} records, ${fmt(r.bytes / 2 ** 20)} MiB, ${r.keys} keys; ${r.totalMs} ms from the assignment to the task\n`,
    );
  }
  if (values.profile) {
    profiled = await restoreOnce(RUNS, true);
    process.stderr.write(`profiled run: ${JSON.stringify(profiled)}\n`);
  }
} catch (err) {
  failure = err as Error;
} finally {
  if (!values.keep) {
    await deleteTopics(admin, [
      topics.events,
      topics.alerts,
      topics.deadLetter,
      `${groupId}-actions-repartition`,
      changelog.principal,
      changelog.action,
    ]);
  }
  await admin.close();
}
if (failure || results.length === 0) {
  process.stderr.write(`bench:restore failed: ${failure?.message ?? 'no run finished'} (logs in ${logDir})\n`);
  process.exit(1);
}

const restoreMs = results.map((r) => r.restoreMs);
const totalMs = results.map((r) => r.totalMs);
const rest = results.map((r) => r.totalMs - r.restoreMs);
const first = results[0] as RestoreRun;
const s = profiled?.profile;
const lines = [
  '## Restore',
  '',
  'The time `trailwatch run` takes to restore a task from its changelog, the state built in the benchmark process (`bench/restore.ts`): a PrincipalStage fed distinct principal × action keys, each seen in three buckets (a real baseline, as `bench/memory.ts`), every bucket closed, its changes written through ChangelogWriter to changelog partition 0 of the group (compacted, as many partitions as the events topic; dedupe records left out, as compaction leaves them). Per run, one event lands in events partition 0 and a detector is spawned for the group; its log line `partition state restored` gives the figures.',
  '',
  `- command: \`npm run bench:restore -- --keys ${KEYS} --runs ${RUNS} --client ${CLIENT}${values.profile ? ' --profile' : ''} --write\` ${stackText(values.brokers, values.registry)}`,
  `- machine: ${machine()}`,
  `- detector: the defaults (\`detector.maxKeys\` = ${fmt(D.maxKeys)}), \`kafka.client = ${CLIENT}\`; events topic of ${PARTITIONS} partitions`,
  `- changelog partition: ${fmt(first.records)} records, ${fmt(first.bytes / 2 ** 20)} MiB of values (${fmt(first.bytes / Math.max(1, first.records))} B a record), ${fmt(first.keys)} keys restored`,
  "- reading = `restoreMs` as the runtime logs it (a barrier transaction, the restore consumer joining its group, fetching up to the barrier, keeping each key's encoded state); the rest = from the `partitions assigned` line to the `partition state restored` line (pino timestamps) minus reading: the first fetch, the task's transactional producer, decoding every key and rebuilding the engine",
  '',
  '| | median ms | per run ms |',
  '|---|---:|---|',
  `| reading (\`restoreMs\`) | **${fmt(median(restoreMs))}** | ${restoreMs.map(fmt).join(', ')} |`,
  `| the rest (decode, rebuild, task set-up) | ${fmt(median(rest))} | ${rest.map(fmt).join(', ')} |`,
  `| assignment → task restored | **${fmt(median(totalMs))}** | ${totalMs.map(fmt).join(', ')} |`,
  ...(s
    ? [
        '',
        `CPU profile of one more run (\`node --cpu-prof\`, which slows it: reading ${fmt(profiled?.restoreMs ?? Number.NaN)} ms, assignment → task ${fmt(profiled?.totalMs ?? Number.NaN)} ms): \`DetectionEngine.fromCheckpoint\` ${fmt(s.fromCheckpoint)} ms, of which decoding the keys (\`decodeKey\`, JSON.parse) ${fmt(s.decodeKey)} ms, rebuilding (\`fromRecord\` ${fmt(s.fromRecord)} ms, \`adopt\` ${fmt(s.adopt)} ms); kafkajs (fetching and decoding record batches) ${fmt(s.kafkajs)} ms of self time over the process's life; the garbage collector ${fmt(s.gc)} ms.`,
      ]
    : []),
  '',
  'Target: ≤ 15 s for a task with 1M keys.',
];
process.stdout.write(sectionText(lines));
if (values.write) writeSection('restore', lines);
process.exit(0);
