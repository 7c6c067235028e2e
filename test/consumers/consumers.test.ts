/**
 * docs/consumers.md, run: a detector publishes real Insights (the demo's spike) and a finding (a
 * StopLogging call) through its own serializer and transactions, and what a subscriber's tools read
 * back is compared record for record with what trailwatch wrote:
 *   - scripts/consumers/read_insights.py with Confluent's Python client (DeserializingConsumer +
 *     AvroDeserializer against the registry's Confluent API), from a venv in .tools/py/;
 *   - kcat (keys, headers, read_committed), when installed;
 *   - scripts/consumers/java (kafka-clients + Avro, Confluent wire format), built with Maven.
 * An Insight written in an aborted transaction must reach none of them.
 *
 * Missing Python packages, kcat or Maven: the test fails in CI (CI=true; .ci/run installs kcat) and
 * skips elsewhere, naming the command that installs what is missing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { Config } from '../../src/config/schema.ts';
import { insightSchema } from '../../src/contracts/schemas.ts';
import type { Finding, Insight } from '../../src/contracts/types.ts';
import { DEMO_SPIKE_ACTOR, generateTraffic } from '../../src/demo/traffic.ts';
import { normalizeCloudTrail } from '../../src/ingest/cloudtrail.ts';
import { EventCodec } from '../../src/runtime/codec.ts';
import { createRegistry, registerContract } from '../../src/runtime/registry.ts';
import { detectorTestConfig, publishEvents, startDetector, waitCommittedToEnd } from '../helpers/detector.ts';
import { consumeUntil, createTopics, testKafka, uniqueName } from '../helpers/kafka.ts';
import { IN_CI, PY_INSTALL_COMMAND, pythonEnv } from '../helpers/python.ts';
import { REPO_ROOT } from '../helpers/shared.ts';

const run = promisify(execFile);
const READ_INSIGHTS = join(REPO_ROOT, 'scripts/consumers/read_insights.py');
const JAVA_DIR = join(REPO_ROOT, 'scripts/consumers/java');

/** One record as trailwatch wrote it, decoded with trailwatch's own codec. */
interface Published {
  topic: string;
  partition: number;
  offset: number;
  key: string;
  headers: Record<string, string>;
  value: Insight | Finding;
  bytes: Buffer;
}

/** One line of read_insights.py (and of the Java reader). */
interface ReadLine {
  topic: string;
  partition: number;
  offset: number;
  key: string;
  headers: Record<string, string>;
  value: Record<string, unknown>;
}

const where = (r: { topic: string; partition: number; offset: number }) => `${r.topic}[${r.partition}]@${r.offset}`;
/** Plain data, as JSON carries it (avsc decodes records into class instances). */
const plain = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** A StopLogging call by a role, as CloudTrail delivers it: the CIS 4.5 rule of the default pack makes it a finding. */
function stopLoggingRecord(atMs: number) {
  return {
    eventVersion: '1.09',
    userIdentity: {
      type: 'AssumedRole',
      principalId: 'AROAEXAMPLEID:mallory',
      arn: 'arn:aws:sts::123456789012:assumed-role/ops/mallory',
      accountId: '123456789012',
      sessionContext: { sessionIssuer: { type: 'Role', arn: 'arn:aws:iam::123456789012:role/ops', userName: 'ops' } },
    },
    eventTime: new Date(atMs).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    eventSource: 'cloudtrail.amazonaws.com',
    eventName: 'StopLogging',
    awsRegion: 'us-east-1',
    sourceIPAddress: '198.51.100.23',
    userAgent: 'aws-cli/2.15.0',
    requestParameters: { name: 'org-trail' },
    responseElements: null,
    requestID: 'req-stop-logging',
    eventID: 'evt-stop-logging',
    readOnly: false,
    eventType: 'AwsApiCall',
    managementEvent: true,
    recipientAccountId: '123456789012',
    eventCategory: 'Management',
  };
}

/** Every committed record of `topic` (there are `count`), decoded by trailwatch's codec. */
async function readPublished(config: Config, topic: string, count: number, decode: (b: Buffer) => Promise<Insight | Finding>) {
  const out: Published[] = [];
  if (count === 0) return out;
  await consumeUntil(
    testKafka(config.kafka.brokers),
    topic,
    async (m, partition) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(m.headers ?? {})) headers[k] = String(v);
      const bytes = m.value as Buffer;
      out.push({ topic, partition, offset: Number(m.offset), key: String(m.key), headers, value: plain(await decode(bytes)), bytes });
      return out.length >= count;
    },
    60_000,
    { settleMs: 1_000 },
  );
  return out;
}

/** What a reader printed, in the published records' order, after checking it printed exactly those records. */
function matchRecords(published: Published[], read: ReadLine[], reader: string): void {
  const byWhere = new Map(read.map((r) => [where(r), r]));
  assert.equal(byWhere.size, read.length, `${reader} printed a record twice`);
  assert.deepEqual([...byWhere.keys()].sort(), published.map(where).sort(), `${reader} read exactly the committed records`);
  for (const p of published) {
    const r = byWhere.get(where(p)) as ReadLine;
    assert.equal(r.key, p.key, `${reader}: key of ${where(p)}`);
    assert.deepEqual(r.headers, p.headers, `${reader}: headers of ${where(p)}`);
    assert.deepEqual(r.value, p.value, `${reader}: value of ${where(p)}`);
  }
}

const lines = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as ReadLine);

describe('subscribers read Insights and findings (docs/consumers.md)', { timeout: 420_000 }, () => {
  let config: Config;
  let insights: Published[] = [];
  let findings: Published[] = [];
  const abortedKey = uniqueName('aborted-insight');
  const env = () => ({
    ...process.env,
    KAFKA_BROKERS: config.kafka.brokers.join(','),
    SCHEMA_REGISTRY_URL: config.registry.url,
  });

  before(async () => {
    config = await detectorTestConfig('tw-consumers', {
      detector: { allowedLatenessMs: 60_000, minHistoryMs: 30 * 60_000, idleAdvanceMs: 3_000 },
      rules: { defaultPack: true },
    });
    const startMs = Math.floor((Date.now() - 3 * 3_600_000) / 60_000) * 60_000;
    const events = [
      ...generateTraffic({ seed: 7, startMs, minutes: 150, spikes: [{ actor: DEMO_SPIKE_ACTOR, startMinute: 120, minutes: 5 }] }),
      normalizeCloudTrail(stopLoggingRecord(startMs + 60 * 60_000), { raw: true }),
    ];
    await publishEvents(config, events);
    const { runtime } = await startDetector(config);
    await waitCommittedToEnd(config, config.topics.events, 120_000);
    // The spike's Ends come once event time (idle advance) passes them; then nothing more is due.
    const deadline = Date.now() + 120_000;
    while (runtime.metrics.insightsEmitted < 4) {
      if (Date.now() > deadline)
        throw new Error(`only ${runtime.metrics.insightsEmitted} Insights after 120 s (expected a Start and an End per scope)`);
      await new Promise((r) => setTimeout(r, 500));
    }
    await runtime.stop();
    assert.ok(runtime.metrics.findingsEmitted >= 1, 'the StopLogging call is a finding');

    const registry = createRegistry(config.registry);
    const codec = new EventCodec(registry);
    insights = await readPublished(config, config.topics.alerts, runtime.metrics.insightsEmitted, (b) => codec.decodeInsight(b));
    findings = await readPublished(config, config.topics.findings, runtime.metrics.findingsEmitted, (b) => codec.decodeFinding(b));
    assert.equal(insights.length, runtime.metrics.insightsEmitted);
    assert.equal(findings.length, runtime.metrics.findingsEmitted);

    // An Insight in a transaction that aborts: a read_committed reader never sees it.
    const schemaId = await registerContract(registry, insightSchema, config.topics.alerts);
    const ghost = { ...(insights[0]?.value as Insight), eventID: abortedKey, sharedEventID: abortedKey };
    const producer = testKafka(config.kafka.brokers).producer({ transactionalId: abortedKey, idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      const txn = await producer.transaction();
      await txn.send({ topic: config.topics.alerts, messages: [{ key: abortedKey, value: await registry.encode(schemaId, ghost) }] });
      await txn.abort();
    } finally {
      await producer.disconnect();
    }
  });

  test('read_insights.py decodes every Insight and finding with the Confluent Python deserializer', async (t) => {
    let python: string;
    try {
      python = await pythonEnv((line) => t.diagnostic(line));
    } catch (err) {
      const why = `${(err as Error).message}\nby hand: ${PY_INSTALL_COMMAND}`;
      if (IN_CI)
        assert.fail(
          `the Python client for scripts/consumers/read_insights.py could not be installed (CI=true: this test must run): ${why}`,
        );
      t.skip(why);
      return;
    }
    const args = [
      READ_INSIGHTS,
      '--topic',
      config.topics.alerts,
      '--topic',
      config.topics.findings,
      '--from-beginning',
      '--until-end',
      '--timeout',
      '90',
    ];
    const { stdout, stderr } = await run(python, args, { env: env(), timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    const read = lines(stdout);
    matchRecords([...insights, ...findings], read, 'read_insights.py');
    assert.ok(!read.some((r) => r.key === abortedKey), 'the aborted Insight is not read');

    // What the docs promise a subscriber: a Start and an End per scope, paired by sharedEventID.
    const spike = read.filter((r) => r.topic === config.topics.alerts).map((r) => r.value as unknown as Insight);
    for (const scope of ['action', 'principalAction'] as const) {
      const ofScope = spike.filter((i) => i.trailwatch.scope === scope);
      assert.deepEqual(ofScope.map((i) => i.insightDetails.state).sort(), ['End', 'Start'], `one Start and one End for ${scope}`);
      assert.equal(ofScope[0]?.sharedEventID, ofScope[1]?.sharedEventID);
      assert.equal(typeof ofScope[0]?.trailwatch.startTimeMs, 'number', 'timestamp-millis printed as ms');
    }
    assert.match(stderr, /Insights: 2 Start, 2 End, 2 paired by sharedEventID, 0 still open/);
    const stop = read.find((r) => r.topic === config.topics.findings)?.value as unknown as Finding | undefined;
    assert.equal(stop?.api?.operation, 'StopLogging');
  });

  test('read_insights.py exits 1 and names the record it could not decode', async (t) => {
    let python: string;
    try {
      python = await pythonEnv();
    } catch (err) {
      if (IN_CI) assert.fail((err as Error).message);
      t.skip(`${(err as Error).message}\nby hand: ${PY_INSTALL_COMMAND}`);
      return;
    }
    const topic = uniqueName('tw-consumers-bad');
    await createTopics(config.kafka.brokers, [topic], 1, t);
    const producer = testKafka(config.kafka.brokers).producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: [
        // A schema id the registry does not have, then a good Insight's bytes.
        { key: 'unknown-id', value: Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0]), Buffer.from('garbage')]) },
        { key: 'good', value: insights[0]?.bytes as Buffer },
      ],
    });
    await producer.disconnect();
    const result = await run(python, [READ_INSIGHTS, '--topic', topic, '--from-beginning', '--until-end', '--timeout', '60'], {
      env: env(),
      timeout: 90_000,
    }).then(
      () => ({ code: 0, stdout: '', stderr: '' }),
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`${topic}\\[0\\]@0: .*(404|not found)`, 'i'));
    assert.deepEqual(
      lines(result.stdout).map((r) => r.key),
      ['good'],
    );
  });

  test('kcat reads the keys and headers of committed Insights only (read_committed)', async (t) => {
    const kcat = await run('sh', ['-c', 'command -v kcat']).then(
      (r) => r.stdout.trim(),
      () => '',
    );
    if (kcat === '') {
      const why = 'kcat is not installed: apt-get install -y kcat';
      if (IN_CI) assert.fail(`${why} (CI=true: .ci/run installs it)`);
      t.skip(why);
      return;
    }
    const read = async (isolation: string) => {
      const { stdout } = await run(
        kcat,
        ['-C', '-b', config.kafka.brokers.join(','), '-t', config.topics.alerts, '-o', 'beginning', '-e', '-q'].concat([
          '-X',
          `isolation.level=${isolation}`,
          '-f',
          '%p\\t%o\\t%k\\t%h\\n',
        ]),
        { timeout: 60_000 },
      );
      return stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => {
          const [partition, offset, key, headers] = l.split('\t');
          return { topic: config.topics.alerts, partition: Number(partition), offset: Number(offset), key: key as string, headers };
        });
    };
    const committed = await read('read_committed');
    assert.deepEqual(committed.map(where).sort(), insights.map(where).sort());
    for (const r of committed) {
      const p = insights.find((i) => where(i) === where(r)) as Published;
      assert.equal(r.key, p.key);
      assert.equal(r.headers, `tw.insight.state=${(p.value as Insight).insightDetails.state}`);
    }
    // The setting matters: read_uncommitted shows the aborted transaction's record too.
    const all = await read('read_uncommitted');
    assert.ok(
      all.some((r) => r.key === abortedKey),
      'read_uncommitted sees the aborted Insight',
    );
  });

  test('the Java reader (kafka-clients + Avro, Confluent wire format) decodes every Insight and finding', async (t) => {
    const mvn = await run('sh', ['-c', 'command -v mvn']).then(
      (r) => r.stdout.trim(),
      () => '',
    );
    if (mvn === '' || !existsSync(join(JAVA_DIR, 'pom.xml'))) {
      const why = 'Maven is not installed (it is needed for the local stack too)';
      if (IN_CI) assert.fail(why);
      t.skip(why);
      return;
    }
    await run(mvn, ['-q', '-B', 'package', 'dependency:copy-dependencies', '-DincludeScope=runtime'], {
      cwd: JAVA_DIR,
      timeout: 300_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const classpath = [join(JAVA_DIR, 'target/classes'), join(JAVA_DIR, 'target/dependency/*')].join(':');
    const { stdout } = await run(
      'java',
      ['-cp', classpath, 'ReadInsights', '--topic', config.topics.alerts, '--topic', config.topics.findings, '--until-end'],
      { env: env(), timeout: 120_000, maxBuffer: 64 * 1024 * 1024 },
    );
    const read = lines(stdout);
    matchRecords([...insights, ...findings], read, 'ReadInsights.java');
    assert.ok(!read.some((r) => r.key === abortedKey), 'the aborted Insight is not read');
  });
});
