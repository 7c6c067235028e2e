/**
 * The raw-ingest stage (src/runtime/ingest.ts) on the real broker and registry: raw EventBridge,
 * CloudWatch Logs (gzip) and Kubernetes audit messages and bad ones on a raw topic become
 * AuditEvents on the events topic byte for byte as `publish` writes them, dead letters with their
 * source topic, partition and offset, offsets committed in the same transactions; a restart (and
 * a zombie transaction of the previous owner) repeats nothing, and `trailwatch ingest` killed
 * mid-stream and started again gives each event exactly once.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import type { Kafka, KafkaMessage } from 'kafkajs';
import { startIngestObserve } from '../../src/cli/commands/ingest.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { ErrorCodes } from '../../src/errors.ts';
import { isEvent, type Normalized } from '../../src/ingest/source.ts';
import { createSource } from '../../src/ingest/sources/index.ts';
import { eventKey } from '../../src/ingest/wire.ts';
import { DLQ_HEADERS, headerString } from '../../src/runtime/dead-letter.ts';
import { IngestStage } from '../../src/runtime/ingest.ts';
import { EventPublisher } from '../../src/runtime/publisher.ts';
import { createRegistry } from '../../src/runtime/registry.ts';
import { createTransport } from '../../src/transport/index.ts';
import { partitionForKey } from '../../src/transport/partitioner.ts';
import type { ClientName } from '../../src/transport/types.ts';
import { startCli } from '../helpers/cli.ts';
import { testLogger } from '../helpers/detector.ts';
import { consumeMessages, consumeUntil, createTopics, testKafka, uniqueName } from '../helpers/kafka.ts';
import { FIXTURES_DIR } from '../helpers/shared.ts';
import { testStack } from '../helpers/stack.ts';

const EVENTBRIDGE = readFileSync(join(FIXTURES_DIR, 'eventbridge/cloudtrail-events.jsonl'), 'utf8').trim().split('\n');
const CWLOGS_DATA = readFileSync(join(FIXTURES_DIR, 'cwlogs/data-message.json'));
const CWLOGS_CONTROL = readFileSync(join(FIXTURES_DIR, 'cwlogs/control-message.json'));
const K8S = readFileSync(join(FIXTURES_DIR, 'k8s-audit/audit.jsonl'), 'utf8').trim().split('\n');
const K8S_BAD = readFileSync(join(FIXTURES_DIR, 'k8s-audit/audit-bad.jsonl'), 'utf8').trim().split('\n');

const RAW_PARTITIONS = 2;
const EVENT_PARTITIONS = 3;
const MAX_MESSAGE_BYTES = 64 * 1024;
const CLUSTER = 'prod-eu';

interface Setup {
  config: Config;
  kafka: Kafka;
  raw: string;
  brokers: string[];
  registryUrl: string;
}

async function setup(prefix: string, client: ClientName = 'kafkajs'): Promise<Setup> {
  const stack = await testStack();
  const name = uniqueName(prefix);
  const raw = `${name}.raw`;
  const config = loadConfig({
    env: {},
    overrides: {
      kafka: { brokers: stack.brokers, client },
      registry: { url: stack.registryUrl },
      topics: { events: `${name}.events`, deadLetter: `${name}.dlq`, partitions: EVENT_PARTITIONS },
      ingest: { rawTopics: [raw], groupId: name, maxMessageBytes: MAX_MESSAGE_BYTES, observePort: 0, k8sAudit: { cluster: CLUSTER } },
    },
  });
  await createTopics(stack.brokers, [raw], RAW_PARTITIONS);
  await createTopics(stack.brokers, [config.topics.events, config.topics.deadLetter], EVENT_PARTITIONS);
  return { config, kafka: testKafka(stack.brokers), raw, brokers: stack.brokers, registryUrl: stack.registryUrl };
}

interface Raw {
  partition: number;
  value: Buffer;
  key?: string;
}

/** Produces each message to its partition; the offset each got. */
async function produceRaw(kafka: Kafka, topic: string, messages: Raw[]): Promise<bigint[]> {
  const producer = kafka.producer();
  await producer.connect();
  try {
    const offsets: bigint[] = [];
    for (const m of messages) {
      const [meta] = await producer.send({ topic, messages: [{ partition: m.partition, key: m.key ?? null, value: m.value }] });
      offsets.push(BigInt(meta?.baseOffset ?? '-1'));
    }
    return offsets;
  } finally {
    await producer.disconnect();
  }
}

/** Waits until the group has committed every raw partition to its end. */
async function untilCommitted(kafka: Kafka, groupId: string, topic: string, timeoutMs = 90_000): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const ends = await admin.fetchTopicOffsets(topic);
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
      if (ends.every((e) => (at.get(e.partition) ?? -1n) >= BigInt(e.high))) return;
      if (Date.now() > deadline) {
        throw new Error(
          `group ${groupId} did not commit ${topic} to its end: ends ${JSON.stringify(ends)}, committed ${JSON.stringify([...at])}`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await admin.disconnect();
  }
}

async function committedSum(kafka: Kafka, groupId: string, topic: string): Promise<bigint> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return (committed?.partitions ?? []).reduce((sum, p) => sum + (BigInt(p.offset) > 0n ? BigInt(p.offset) : 0n), 0n);
  } finally {
    await admin.disconnect();
  }
}

function events(list: Normalized[]): AuditEvent[] {
  return list.filter(isEvent);
}

/** What `publish` makes of the fixtures: the events the stage must write, by eventId. */
function expectedEvents(): Map<string, AuditEvent> {
  const eb = createSource({ format: 'eventbridge', raw: true });
  const cw = createSource({ format: 'cwlogs', raw: true });
  const k8s = createSource({ format: 'k8s-audit', raw: true, k8sAudit: { cluster: CLUSTER, region: 'cluster' } });
  const cwRecords = cw.decode(CWLOGS_DATA, 'x').flatMap((i) => (i.kind === 'record' ? [i.record] : []));
  const all = [
    ...events(EVENTBRIDGE.map((l) => eb.normalize(JSON.parse(l)))),
    ...events(cwRecords.map((r) => cw.normalize(r))),
    ...events(K8S.map((l) => k8s.normalize(JSON.parse(l)))),
    ...events([k8s.normalize(JSON.parse(K8S_BAD[0] as string))]),
  ];
  return new Map(all.map((e) => [e.eventId, e]));
}

/** The fixtures as raw messages over both partitions, then the bad ones. */
function rawMessages(): { good: Raw[]; bad: Array<Raw & { code: string; reason: RegExp; position?: (offset: bigint) => string }> } {
  const good: Raw[] = [
    ...EVENTBRIDGE.map((l, i) => ({ partition: i % 2, value: Buffer.from(l), key: `eb-${i}` })),
    { partition: 0, value: gzipSync(CWLOGS_DATA) },
    { partition: 1, value: gzipSync(CWLOGS_CONTROL) },
    ...K8S.map((l, i) => ({ partition: i % 2, value: Buffer.from(l) })),
    { partition: 1, value: Buffer.from(K8S_BAD[0] as string) },
  ];
  const cut = gzipSync(CWLOGS_DATA);
  const bad = [
    { partition: 0, value: cut.subarray(0, cut.length - 20), code: ErrorCodes.DESERIALIZE, reason: /corrupt gzip/ },
    {
      partition: 1,
      value: Buffer.from('{"detail-type": "AWS API Call via CloudTrail", "detail": {'),
      code: ErrorCodes.DESERIALIZE,
      reason: /malformed JSON/,
    },
    { partition: 0, value: Buffer.from(K8S_BAD[1] as string), key: 'k8s-bad', code: ErrorCodes.NORMALIZE, reason: /missing auditID/ },
    { partition: 1, value: Buffer.from(K8S_BAD[3] as string), code: ErrorCodes.NORMALIZE, reason: /not an RFC 3339 time/ },
    {
      partition: 0,
      value: Buffer.from(JSON.stringify({ padding: 'x'.repeat(100_000) })),
      code: ErrorCodes.RECORD_TOO_LARGE,
      reason: /over ingest.maxMessageBytes/,
    },
    { partition: 1, value: gzipSync(Buffer.alloc(8 * 1024 * 1024, 0x20)), code: ErrorCodes.RECORD_TOO_LARGE, reason: /inflates past/ },
  ];
  return { good, bad };
}

/** An EventBridge message of the first fixture line with its own eventID. */
function ebMessage(n: number, partition: number): Raw {
  const envelope = JSON.parse(EVENTBRIDGE[0] as string) as { detail: Record<string, unknown> };
  envelope.detail.eventID = `00000000-0000-4000-8000-${n.toString().padStart(12, '0')}`;
  return { partition, value: Buffer.from(JSON.stringify(envelope)) };
}

/** Reads `count` committed records of `topic` from the beginning (and any extra within the settle time), with their partitions. */
async function consumeWithPartitions(
  kafka: Kafka,
  topic: string,
  count: number,
): Promise<Array<{ message: KafkaMessage; partition: number }>> {
  const out: Array<{ message: KafkaMessage; partition: number }> = [];
  await consumeUntil(
    kafka,
    topic,
    (message, partition) => {
      out.push({ message, partition });
      return out.length >= count;
    },
    30_000,
    { settleMs: 1_500 },
  );
  return out;
}

function decodeAll(registry: SchemaRegistry, messages: KafkaMessage[]): Promise<AuditEvent[]> {
  return Promise.all(messages.map(async (m) => ({ ...((await registry.decode(m.value as Buffer)) as AuditEvent) })));
}

for (const client of ['kafkajs', 'platformatic'] as const) {
  describe(`ingest stage (${client})`, { timeout: 300_000 }, () => {
    test('raw EventBridge, CloudWatch Logs and k8s audit messages → the events publish writes; bad ones dead-lettered with their source; offsets committed; a restart repeats nothing', async () => {
      const s = await setup(`tw-ingest-${client}`, client);
      const { good, bad } = rawMessages();
      const goodOffsets = await produceRaw(s.kafka, s.raw, good);
      const badOffsets = await produceRaw(s.kafka, s.raw, bad);
      assert.ok(goodOffsets.every((o) => o >= 0n) && badOffsets.every((o) => o >= 0n));

      const fatal: Error[] = [];
      const stage = new IngestStage({
        config: s.config,
        transport: createTransport(s.config.kafka, testLogger),
        registry: createRegistry(s.config.registry),
        logger: testLogger,
        fromBeginning: true,
        onFatal: (err) => fatal.push(err),
      });
      await stage.start();
      const observe = await startIngestObserve(stage, { host: '127.0.0.1', port: 0, logger: testLogger });
      try {
        await untilCommitted(s.kafka, s.config.ingest.groupId, s.raw);
        assert.equal(fatal.length, 0, fatal.map((e) => e.message).join('; '));

        // Events: what publish makes of the same records, keyed and placed as publish places them.
        const expected = expectedEvents();
        assert.equal(expected.size, 15);
        const placed = await consumeWithPartitions(s.kafka, s.config.topics.events, expected.size);
        const records = placed.map((r) => r.message);
        assert.equal(records.length, expected.size, 'each event once, nothing else');
        const registry = new SchemaRegistry({ host: s.registryUrl });
        const decoded = await decodeAll(registry, records);
        assert.deepEqual(new Map(decoded.map((e) => [e.eventId, e])), expected);
        const publisher = new EventPublisher(
          createTransport(s.config.kafka, testLogger),
          createRegistry(s.config.registry),
          s.config.topics,
        );
        await publisher.start();
        try {
          for (const [n, m] of records.entries()) {
            const e = decoded[n] as AuditEvent;
            assert.equal(m.key?.toString(), eventKey(e));
            assert.equal(placed[n]?.partition, partitionForKey(eventKey(e), EVENT_PARTITIONS), 'placed by murmur2 of its key');
            assert.ok(m.value?.equals(publisher.encode(e)), `event ${e.eventId} is byte for byte what publish writes`);
          }
        } finally {
          await publisher.stop();
        }
        // Dead letters: the bad messages and the one bad log event, with where they came from.
        const letters = await consumeMessages(s.brokers, s.config.topics.deadLetter, bad.length + 1, { settleMs: 1_500 });
        assert.equal(letters.length, bad.length + 1, 'skipped records are not dead-lettered');
        const byOffset = new Map(
          letters.map((m) => [`${headerString(m.headers, DLQ_HEADERS.partition)}@${headerString(m.headers, DLQ_HEADERS.offset)}`, m]),
        );
        for (const [i, b] of bad.entries()) {
          const letter = byOffset.get(`${b.partition}@${badOffsets[i]}`);
          assert.ok(letter, `a dead letter for ${b.partition}@${badOffsets[i]}`);
          assert.equal(headerString(letter.headers, DLQ_HEADERS.topic), s.raw);
          assert.equal(headerString(letter.headers, DLQ_HEADERS.code), b.code);
          assert.match(headerString(letter.headers, DLQ_HEADERS.reason) ?? '', b.reason);
          assert.equal(headerString(letter.headers, DLQ_HEADERS.position), `${s.raw}/${b.partition}@${badOffsets[i]}`);
          assert.ok(headerString(letter.headers, DLQ_HEADERS.format));
          assert.equal(letter.key?.toString() ?? null, b.key ?? null);
          if (b.code !== ErrorCodes.RECORD_TOO_LARGE) assert.ok(letter.value?.equals(b.value), 'the message as it came');
        }
        const cwOffset = goodOffsets[EVENTBRIDGE.length] as bigint;
        const logEvent = byOffset.get(`0@${cwOffset}`);
        assert.equal(headerString(logEvent?.headers, DLQ_HEADERS.position), `${s.raw}/0@${cwOffset}:2`);
        assert.equal(headerString(logEvent?.headers, DLQ_HEADERS.format), 'cwlogs');
        assert.equal(headerString(logEvent?.headers, DLQ_HEADERS.code), ErrorCodes.NORMALIZE);

        const m = stage.view().metrics;
        assert.equal(m.messagesIn, good.length + bad.length);
        assert.equal(m.eventsOut, expected.size);
        // EC2 state change, Insight, control message, two RequestReceived and one ResponseStarted.
        assert.equal(m.skipped, 6);
        assert.deepEqual(m.deadLetters, { [ErrorCodes.DESERIALIZE]: 2, [ErrorCodes.NORMALIZE]: 3, [ErrorCodes.RECORD_TOO_LARGE]: 2 });
        const metrics = await (await fetch(`${observe.url}/metrics`)).text();
        assert.match(metrics, new RegExp(`^trailwatch_ingest_events_total ${expected.size}$`, 'm'));
        assert.match(metrics, /^trailwatch_ingest_dead_letters_total\{code="TW_RECORD_TOO_LARGE"\} 2$/m);
        assert.match(metrics, /^trailwatch_ingest_messages_total\{format="k8s-audit"\} 14$/m);
        assert.equal((await fetch(`${observe.url}/readyz`)).status, 200);
      } finally {
        await stage.stop();
        await observe.close();
      }

      // A zombie: the previous owner of raw partition 0 left a transaction open with an event in it.
      const transport = createTransport(s.config.kafka, testLogger);
      const zombie = transport.txnProducer({ transactionalId: `${s.config.ingest.groupId}.${s.raw}.0` });
      await zombie.connect();
      const open = await zombie.begin();
      // In the partition the next events go to: were it not aborted, read_committed readers would wait on it.
      const next = createSource({ format: 'eventbridge' }).normalize(JSON.parse(EVENTBRIDGE[0] as string)) as AuditEvent;
      const partition = partitionForKey(eventKey(next), EVENT_PARTITIONS);
      await open.send([{ topic: s.config.topics.events, partition, key: 'zombie', value: Buffer.from('never committed') }]);

      // A restart: more messages, the same group; each event once, the zombie's never.
      const more = [ebMessage(1, 0), ebMessage(2, 1), ebMessage(3, 0)];
      await produceRaw(s.kafka, s.raw, more);
      const again = new IngestStage({
        config: s.config,
        transport,
        registry: createRegistry(s.config.registry),
        logger: testLogger,
        fromBeginning: true,
        onFatal: (err) => fatal.push(err),
      });
      await again.start();
      try {
        await untilCommitted(s.kafka, s.config.ingest.groupId, s.raw);
        assert.equal(again.view().metrics.messagesIn, more.length, 'only the new messages are read');
      } finally {
        await again.stop();
        await zombie.close().catch(() => undefined);
      }
      assert.equal(fatal.length, 0, fatal.map((e) => e.message).join('; '));
      const total = 15 + more.length;
      const all = await consumeMessages(s.brokers, s.config.topics.events, total, { settleMs: 2_000 });
      assert.equal(all.length, total);
      assert.ok(!all.some((m) => m.key?.toString() === 'zombie'), 'the fenced transaction was aborted');
      const ids = (await decodeAll(new SchemaRegistry({ host: s.registryUrl }), all)).map((e) => e.eventId);
      assert.equal(new Set(ids).size, total);
    });
  });
}

describe('trailwatch ingest (spawned)', { timeout: 300_000 }, () => {
  test('killed mid-stream and started again: every event exactly once; SIGTERM stops it cleanly with exit 0', async (t) => {
    const s = await setup('tw-ingest-cli');
    const count = 20_000;
    const messages = Array.from({ length: count }, (_, n) => ebMessage(n, n % RAW_PARTITIONS));
    const producer = s.kafka.producer();
    await producer.connect();
    try {
      // Requests well under the broker's 1 MiB.
      for (let i = 0; i < count; i += 500) {
        await producer.send({
          topic: s.raw,
          messages: messages.slice(i, i + 500).map((m) => ({ partition: m.partition, value: m.value })),
        });
      }
    } finally {
      await producer.disconnect();
    }

    const env = {
      KAFKA_BROKERS: s.brokers.join(','),
      SCHEMA_REGISTRY_URL: s.registryUrl,
      TRAILWATCH_TOPICS__EVENTS: s.config.topics.events,
      TRAILWATCH_TOPICS__DEAD_LETTER: s.config.topics.deadLetter,
      TRAILWATCH_INGEST__OBSERVE_PORT: '0',
      TRAILWATCH_LOG_LEVEL: 'info',
    };
    const args = ['ingest', '--from', s.raw, '--group', s.config.ingest.groupId, '--from-beginning', '--format', 'eventbridge'];
    const first = startCli(args, env);
    t.after(() => first.child.kill('SIGKILL'));
    // Killed as soon as it has committed something (or finished, on a fast machine).
    const deadline = Date.now() + 90_000;
    let committed = 0n;
    while (committed === 0n && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      committed = await committedSum(s.kafka, s.config.ingest.groupId, s.raw);
    }
    first.child.kill('SIGKILL');
    await first.closed;
    assert.ok(committed > 0n, `the first run committed nothing: ${first.stderr()}`);
    t.diagnostic(`killed after ${committed} of ${count} messages were committed`);

    const second = startCli(args, env);
    t.after(() => second.child.kill('SIGKILL'));
    await untilCommitted(s.kafka, s.config.ingest.groupId, s.raw);
    // Its signal handlers are in place once it runs (a SIGTERM before would end it as Node does by default).
    while (!/ingest running/.test(second.stderr()) && second.child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
    second.child.kill('SIGTERM');
    assert.equal(await second.closed, 0, second.stderr());
    assert.match(second.stderr(), /ingest stopped/);
    assert.match(second.stderr(), /ingest progress|"messagesIn"/);

    const records = await consumeMessages(s.brokers, s.config.topics.events, count, { settleMs: 2_000, timeoutMs: 60_000 });
    assert.equal(records.length, count, 'no event lost, none repeated');
    const ids = (await decodeAll(new SchemaRegistry({ host: s.registryUrl }), records)).map((e) => e.eventId);
    assert.equal(new Set(ids).size, count);
  });
});
