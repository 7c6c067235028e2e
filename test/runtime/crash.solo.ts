import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { loadConfig } from '../../src/config/load.ts';
import type { Config, ConfigInput } from '../../src/config/schema.ts';
import type { AuditEvent, Finding, Insight } from '../../src/contracts/types.ts';
import { type Actor, generateTraffic, mulberry32 } from '../../src/demo/traffic.ts';
import { findingSetupFromConfig } from '../../src/detect/findings.ts';
import { Topology } from '../../src/detect/topology.ts';
import { createLogger } from '../../src/logger.ts';
import { createKafka } from '../../src/runtime/kafka.ts';
import { EventPublisher } from '../../src/runtime/publisher.ts';
import { createRegistry } from '../../src/runtime/registry.ts';
import { ensureTopics } from '../../src/runtime/topics.ts';
import { stackStatus, stackUp } from '../../src/stack/local.ts';
import type { ClientName } from '../../src/transport/types.ts';
import { consumeUntil, testKafka } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

/**
 * Exactly-once under fire: a fixed input with known Insights and findings, the detector
 * SIGKILLed at random points again and again, the broker restarted under it, members joining and
 * leaving; in the end the alerts and findings topics (read committed) must hold exactly the
 * records of an uninterrupted run, none twice, none missing.
 */

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');
const KILLS = Number(process.env.TRAILWATCH_CRASH_KILLS ?? 12);
const SEED = 4242;
const MINUTES = 150;

const ACCOUNT = '123456789012';
function actor(i: number, action: string, rate: number, errorCode?: string): Actor {
  return {
    principal: `arn:aws:iam::${ACCOUNT}:user/u${i}`,
    principalType: 'IAMUser',
    userAgent: `agent/${i % 4}`,
    service: 'ec2.amazonaws.com',
    action,
    readOnly: false,
    ratePerMinute: rate,
    ...(errorCode ? { errorCode } : {}),
  };
}
const ACTIONS = ['RunInstances', 'CreateTags', 'StopInstances', 'AttachVolume'];
const ACTORS: Actor[] = Array.from({ length: 24 }, (_, i) => actor(i, ACTIONS[i % ACTIONS.length] as string, 0.5 + (i % 5) * 0.5));
const SPIKES = [
  { actor: actor(3, 'CreateTags', 30), startMinute: 70, minutes: 4 },
  { actor: actor(7, 'TerminateInstances', 25), startMinute: 95, minutes: 5 },
  { actor: actor(12, 'StopInstances', 30, 'AccessDenied'), startMinute: 115, minutes: 4 },
  { actor: actor(18, 'RunInstances', 40), startMinute: 125, minutes: 3 },
];

/**
 * What the findings stage sees beside the rates: CloudTrail stopped (repeats folded), an IAM
 * chain no principal did before (first-seen), and one principal touching 20 APIs in 40 s (breadth).
 */
function securityEvents(startMs: number): AuditEvent[] {
  const base = (i: number, minute: number, second: number, service: string, action: string): AuditEvent => ({
    eventId: `sec-${i}-${minute}-${second}-${action}`,
    eventTimeMs: startMs + minute * 60_000 + second * 1_000,
    source: 'aws.cloudtrail',
    accountId: ACCOUNT,
    region: 'us-east-1',
    principal: `arn:aws:iam::${ACCOUNT}:user/u${i}`,
    principalType: 'IAMUser',
    service,
    action,
    readOnly: false,
    errorCode: null,
    sourceIp: '198.51.100.9',
    userAgent: `agent/${i % 4}`,
    attributes: {},
  });
  const out: AuditEvent[] = [];
  // Three in a row: at least two share a fold window (10 minutes here, aligned to the epoch).
  for (const [i, minute] of [
    [5, 70],
    [5, 71],
    [5, 72],
    [9, 80],
  ] as const)
    out.push(base(i, minute, 7, 'cloudtrail.amazonaws.com', 'StopLogging'));
  for (const [n, a] of ['CreateUser', 'CreateAccessKey', 'AttachUserPolicy'].entries())
    out.push(base(10, 100 + n, 3, 'iam.amazonaws.com', a));
  for (let n = 0; n < 20; n++) out.push(base(14, 110, n * 2, 'ec2.amazonaws.com', `Describe${n}`));
  return out;
}

interface Member {
  name: string;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Both clients behind the transport seam; TRAILWATCH_CRASH_CLIENTS=kafkajs (say) runs one. */
const CLIENTS = (process.env.TRAILWATCH_CRASH_CLIENTS ?? 'kafkajs,platformatic').split(',').map((c) => c.trim()) as ClientName[];

for (const client of CLIENTS) {
  describe(`exactly-once Insights through crashes, a broker restart and rebalances (${client})`, { timeout: 900_000 }, () => {
    const logger = createLogger({ level: 'warn' });
    const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
    const startMs = Math.floor((Date.now() - 4 * 3_600_000) / 60_000) * 60_000;
    let events: AuditEvent[] = [];
    let config: Config;
    let configFile: string;
    let logDir: string;
    let brokersEnv: string;
    let registryEnv: string;
    const members = new Set<Member>();

    before(async () => {
      const stack = await testStack();
      brokersEnv = stack.brokers.join(',');
      registryEnv = stack.registryUrl;
      logDir = await mkdtemp(join(tmpdir(), 'tw-crash-'));
      const input: ConfigInput = {
        kafka: { client },
        // Several members on one host: no metrics endpoint (they would all ask for the same port).
        observe: { port: 0 },
        topics: {
          events: `tw-crash-${run}.events`,
          alerts: `tw-crash-${run}.insights`,
          findings: `tw-crash-${run}.findings`,
          deadLetter: `tw-crash-${run}.dlq`,
          actions: `tw-crash-${run}.actions`,
          // Its own config versions: a version applied on the cluster's default topic must not retune these members.
          config: `tw-crash-${run}.config`,
          feedback: `tw-crash-${run}.feedback`,
          partitions: 3,
        },
        detector: {
          groupId: `tw-crash-${run}`,
          allowedLatenessMs: 60_000,
          minHistoryMs: 30 * 60_000,
          // Chunks of input arrive between kills: event time must not run ahead of them on the wall
          // clock. Every partition has data to the end, so nothing waits on an idle one.
          idleAdvanceMs: 600_000,
          // Small fetches: many transactions, so kills land between and inside them.
          fetchMaxBytes: 8 * 1024,
          sessionTimeoutMs: 6_000,
          stallTimeoutMs: 30_000,
        },
        // The input spans 150 minutes: principals learn in the first hour, and every fold window
        // closes before the input ends (event time stops there: nothing would close a later one).
        findings: { foldMs: 600_000, firstSeen: { learningMs: 3_600_000, groupMs: 300_000 }, breadth: { learningMs: 3_600_000 } },
      };
      configFile = join(logDir, 'config.json');
      await writeFile(configFile, JSON.stringify(input, null, 2));
      config = loadConfig({ file: configFile, env: { KAFKA_BROKERS: brokersEnv, SCHEMA_REGISTRY_URL: registryEnv } });

      const generated = [
        ...generateTraffic({ seed: SEED, startMs, minutes: MINUTES, actors: ACTORS, spikes: SPIKES }),
        ...securityEvents(startMs),
      ].sort((a, b) => a.eventTimeMs - b.eventTimeMs);
      // CloudTrail delivers some events twice: every 97th again, a little later in the stream.
      events = [...generated];
      for (let i = 0; i < generated.length; i += 97) events.splice(Math.min(events.length, i + 40), 0, generated[i] as AuditEvent);
      const kafka = createKafka(config.kafka, logger);
      await ensureTopics(kafka, config.topics);
      publisher = new EventPublisher(kafka, createRegistry(config.registry), config.topics);
      await publisher.start();
    });

    let publisher: EventPublisher;
    let published = 0;
    /** Publishes the input up to `share` (0..1) of it: each member gets fresh work to be killed in. */
    async function publishUpTo(share: number): Promise<void> {
      const until = Math.min(events.length, Math.ceil(events.length * share));
      for (; published < until; published += 500) await publisher.publish(events.slice(published, Math.min(until, published + 500)));
      published = until;
    }

    after(async () => {
      for (const m of members) m.child.kill('SIGKILL');
      await publisher?.stop();
    });

    function spawnMember(name: string): Member {
      const out = createWriteStream(join(logDir, `${name}.log`));
      const child = spawn(process.execPath, [MAIN, 'run', '--config', configFile, '--log-level', 'info'], {
        env: { ...process.env, KAFKA_BROKERS: brokersEnv, SCHEMA_REGISTRY_URL: registryEnv, KAFKAJS_NO_PARTITIONER_WARNING: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout?.pipe(out);
      child.stderr?.pipe(out);
      const member: Member = {
        name,
        child,
        exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))),
      };
      members.add(member);
      void member.exited.then(() => members.delete(member));
      return member;
    }

    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    /** A member under a supervisor: restarted whenever it exits unasked (as systemd or Kubernetes would). */
    function supervise(name: string) {
      let current = spawnMember(name);
      let stopped = false;
      let restarts = 0;
      void (async () => {
        for (;;) {
          const exit = await current.exited;
          if (stopped) return;
          restarts++;
          process.stderr.write(`crash test: ${current.name} exited by itself (${JSON.stringify(exit)}); restarting it\n`);
          current = spawnMember(`${name}-r${restarts}`);
        }
      })();
      return {
        restarts: () => restarts,
        stop: async () => {
          stopped = true;
          current.child.kill('SIGTERM');
          return current.exited;
        },
      };
    }

    test('the alerts and findings topics end up with exactly the records of an uninterrupted run', async (t) => {
      // The uninterrupted run: the pure topology with the topics' partitions and the rules `run` loads.
      const setup = await findingSetupFromConfig(config.rules, config.findings, config.topics.findings);
      const golden = new Topology(config.detector, { partitions: 3, actionPartitions: 3, findings: setup });
      const lastEventMs = Math.max(...events.map((e) => e.eventTimeMs));
      const expected = [...golden.process(events), ...golden.advanceWatermark(lastEventMs + config.detector.bucketMs)];
      const expectedFindings = golden.drainFindings();
      // More event time changes nothing: the live detector's idle advance may go further than the golden run.
      assert.deepEqual(golden.advanceWatermark(lastEventMs + 3_600_000), [], 'no Insight is still open at the end of the input');
      assert.deepEqual(golden.drainFindings(), [], 'no finding waits for event time past the end of the input');
      const findingKinds = new Set(expectedFindings.map((f) => `${f.finding_info.types[0]}:${f.activity_name}`));
      for (const kind of ['rule:Create', 'rule:Update', 'first-seen:Create', 'breadth:Create'])
        assert.ok(findingKinds.has(kind), `the input has a ${kind} finding (got ${[...findingKinds].join(', ')})`);
      const starts = expected.filter((i) => i.insightDetails.state === 'Start');
      assert.ok(starts.length >= 6, `the input has Insights of both scopes (got ${starts.length} Starts)`);
      assert.ok(starts.some((i) => i.trailwatch.scope === 'action') && starts.some((i) => i.trailwatch.scope === 'principalAction'));

      // 1. SIGKILL at random points: during start-up, restores, and batches.
      const rand = mulberry32(SEED);
      const kills: number[] = [];
      for (let k = 0; k < KILLS; k++) {
        await publishUpTo((k + 1) / (KILLS + 2));
        const m = spawnMember(`kill-${k}`);
        const delay = 1_500 + Math.floor(rand() * 9_000);
        await sleep(delay);
        m.child.kill('SIGKILL');
        const { signal } = await m.exited;
        assert.equal(signal, 'SIGKILL', `member ${m.name} died of the kill, not before (see ${logDir})`);
        kills.push(delay);
      }
      t.diagnostic(`${kills.length} SIGKILLs after ${kills.join(', ')} ms`);

      // 2. A broker restart under a running member (only where this run owns the broker).
      await publishUpTo((KILLS + 1) / (KILLS + 2));
      const a = supervise('a');
      await sleep(4_000);
      if (process.env.TRAILWATCH_TEST_LOCAL_STACK === '1') {
        const status = await stackStatus();
        assert.ok(status.kafka.pid, 'the local broker runs');
        process.kill(status.kafka.pid, 'SIGTERM');
        for (let i = 0; i < 100 && (await stackStatus()).kafka.pid !== null; i++) await sleep(200);
        const up = await stackUp({ log: () => undefined });
        t.diagnostic(`broker restarted (pid ${status.kafka.pid} → ${up.kafkaPid})`);
      } else {
        t.diagnostic('broker restart skipped: the tests run against a broker this run did not start');
      }

      // 3. Rebalances: b joins then leaves cleanly (SIGTERM), c joins and is killed.
      await publishUpTo(1);
      const b = spawnMember('b');
      await sleep(8_000);
      b.child.kill('SIGTERM');
      assert.deepEqual(await b.exited, { code: 0, signal: null }, 'SIGTERM: finish the batch, commit, leave, exit 0');
      const c = spawnMember('c');
      await sleep(7_000);
      c.child.kill('SIGKILL');
      await c.exited;

      // 4. a carries on alone until the alerts topic holds as many Insights as the golden run, and a bit longer.
      const registry = new SchemaRegistry({ host: config.registry.url });
      /** Every committed Insight on the alerts topic, from the beginning, until `expected.length` have come (and `settleMs` more). */
      const readAlerts = async (timeoutMs: number, settleMs = 0): Promise<Insight[]> => {
        const read: Insight[] = [];
        await consumeUntil(
          testKafka(config.kafka.brokers),
          config.topics.alerts,
          async (message) => {
            read.push(JSON.parse(JSON.stringify(await registry.decode(message.value as Buffer))) as Insight);
            return read.length >= expected.length;
          },
          timeoutMs,
          { settleMs },
        ).catch((err: unknown) => {
          throw new Error(`${read.length} of ${expected.length} Insights arrived (logs in ${logDir}): ${String(err)}`);
        });
        return read;
      };
      await readAlerts(300_000);
      await sleep(5_000);
      assert.deepEqual(await a.stop(), { code: 0, signal: null }, 'SIGTERM: a clean exit');
      t.diagnostic(`the supervised member restarted itself ${a.restarts()} time(s)`);

      // Read everything committed once more, from the beginning, now that nothing writes.
      // Keep reading a while past the count: a duplicate would come after it.
      const all = await readAlerts(60_000, 4_000);
      const byId = (xs: Insight[]) => [...xs].sort((x, y) => (x.eventID < y.eventID ? -1 : x.eventID > y.eventID ? 1 : 0));
      const ids = all.map((i) => i.eventID);
      assert.equal(new Set(ids).size, ids.length, 'no Insight twice');
      assert.deepEqual(
        byId(all).map((i) => i.eventID),
        byId(expected).map((i) => i.eventID),
        'the same Insights as the uninterrupted run',
      );
      const want = byId(expected);
      // Record by record, so a difference names its field.
      for (const [n, insight] of byId(all).entries()) assert.deepEqual(insight, want[n], `Insight ${insight.eventID}`);

      // The findings topic: every record of the uninterrupted run (Creates and Updates), once.
      const findings: Finding[] = [];
      await consumeUntil(
        testKafka(config.kafka.brokers),
        config.topics.findings,
        async (message) => {
          findings.push(JSON.parse(JSON.stringify(await registry.decode(message.value as Buffer))) as Finding);
          return findings.length >= expectedFindings.length;
        },
        60_000,
        { settleMs: 4_000 },
      ).catch((err: unknown) => {
        throw new Error(`${findings.length} of ${expectedFindings.length} findings arrived (logs in ${logDir}): ${String(err)}`);
      });
      const recordId = (f: Finding) => f.metadata.uid ?? '';
      const byRecord = (xs: Finding[]) => [...xs].sort((x, y) => (recordId(x) < recordId(y) ? -1 : recordId(x) > recordId(y) ? 1 : 0));
      const records = findings.map((f) => f.metadata.uid);
      assert.equal(new Set(records).size, records.length, 'no finding record twice');
      const wantFindings = byRecord(JSON.parse(JSON.stringify(expectedFindings)) as Finding[]);
      assert.deepEqual(
        byRecord(findings).map((f) => f.metadata.uid),
        wantFindings.map((f) => f.metadata.uid),
        'the same finding records as the uninterrupted run',
      );
      for (const [n, f] of byRecord(findings).entries()) assert.deepEqual(f, wantFindings[n], `finding ${f.metadata.uid}`);
      t.diagnostic(`${expectedFindings.length} finding records: ${[...findingKinds].join(', ')}`);

      const logFiles = (await readdir(logDir)).filter((f) => f.endsWith('.log'));
      const logs = await Promise.all(logFiles.map((f) => readFile(join(logDir, f), 'utf8')));
      const emittedBy = logFiles.filter((_, n) => (logs[n] as string).includes('"msg":"insight"'));
      t.diagnostic(`Insights were committed by ${emittedBy.length} different processes: ${emittedBy.join(', ')}`);
      const restores = logs.flatMap((l) => [...l.matchAll(/"restoreMs":(\d+)/g)].map((m) => Number(m[1])));
      restores.sort((x, y) => x - y);
      t.diagnostic(
        `${expected.length} Insights; ${restores.length} partition restores, median ${restores[Math.floor(restores.length / 2)] ?? '-'} ms, max ${restores.at(-1) ?? '-'} ms`,
      );
    });
  });
}
