import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { Kafka, logLevel } from 'kafkajs';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import type { Insight } from '../../src/contracts/types.ts';
import { DEMO_SPIKE_ACTOR, generateTraffic } from '../../src/demo/traffic.ts';
import { Topology } from '../../src/detect/topology.ts';
import { createLogger } from '../../src/logger.ts';
import { DLQ_HEADERS, headerString } from '../../src/runtime/dead-letter.ts';
import { DetectorRuntime } from '../../src/runtime/detector.ts';
import { createKafka } from '../../src/runtime/kafka.ts';
import { EventPublisher } from '../../src/runtime/publisher.ts';
import { createRegistry } from '../../src/runtime/registry.ts';
import { ensureTopics } from '../../src/runtime/topics.ts';
import { createTransport } from '../../src/transport/index.ts';
import { consumeUntil } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

/**
 * The end-to-end slice against the real broker and registry: AuditEvents published as Avro,
 * the detector consuming them, Insights read back by a client that knows only the registry URL.
 */
describe('detector end to end', { timeout: 240_000 }, () => {
  let config: Config;
  let runtime: DetectorRuntime;
  const logger = createLogger({ level: process.env.TRAILWATCH_TEST_LOG ?? 'warn' });
  const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  const startMs = Math.floor((Date.now() - 3 * 3_600_000) / 60_000) * 60_000;
  const events = generateTraffic({ seed: 11, startMs, minutes: 150, spikes: [{ actor: DEMO_SPIKE_ACTOR, startMinute: 120, minutes: 5 }] });

  before(async () => {
    const stack = await testStack();
    config = loadConfig({
      env: {},
      overrides: {
        kafka: { brokers: stack.brokers },
        registry: { url: stack.registryUrl },
        topics: { events: `tw-e2e-${run}.events`, alerts: `tw-e2e-${run}.insights`, deadLetter: `tw-e2e-${run}.dlq`, partitions: 3 },
        detector: {
          groupId: `tw-e2e-${run}`,
          allowedLatenessMs: 60_000,
          minHistoryMs: 30 * 60_000,
          idleAdvanceMs: 3_000,
          maxRecordBytes: 4_096,
        },
      },
    });
    const kafka = createKafka(config.kafka, logger);
    await ensureTopics(kafka, config.topics);
    const registry = createRegistry(config.registry);
    const publisher = new EventPublisher(kafka, registry, config.topics);
    await publisher.start();
    for (let i = 0; i < events.length; i += 200) await publisher.publish(events.slice(i, i + 200));
    await publisher.stop();
    // Bad records among the good: raw JSON (no wire format) and an unknown schema id.
    const raw = kafka.producer();
    await raw.connect();
    const unknownId = Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0]), Buffer.from('garbage')]);
    await raw.send({
      topic: config.topics.events,
      messages: [
        { key: 'bad-1', value: Buffer.from('{"eventName":"RunInstances"}'), headers: { origin: 'test' } },
        { key: 'bad-2', value: unknownId },
        { key: 'bad-3', value: Buffer.concat([Buffer.from([0, 0, 0, 0, 1]), Buffer.alloc(5_000, 0x61)]) },
      ],
    });
    await raw.disconnect();
    runtime = new DetectorRuntime({ config, transport: createTransport(config.kafka, logger), registry, logger });
    await runtime.start();
  });

  after(async () => {
    await runtime?.stop();
  });

  test('an injected spike yields exactly one Start and one End per scope, read with only the registry URL', async () => {
    // A fresh client: no schema given, only the registry's address.
    const registry = new SchemaRegistry({ host: config.registry.url });
    const kafka = new Kafka({ brokers: config.kafka.brokers, logLevel: logLevel.NOTHING });
    const insights: Insight[] = [];
    await consumeUntil(
      kafka,
      config.topics.alerts,
      async (m) => {
        // Plain data: avsc decodes records into class instances.
        insights.push(JSON.parse(JSON.stringify(await registry.decode(m.value as Buffer))) as Insight);
        return insights.filter((i) => i.insightDetails.state === 'End').length >= 2;
      },
      180_000,
    );

    const action = insights.filter((i) => i.trailwatch.scope === 'action');
    const principal = insights.filter((i) => i.trailwatch.scope === 'principalAction');
    assert.deepEqual(
      action.map((i) => i.insightDetails.state),
      ['Start', 'End'],
    );
    assert.deepEqual(
      principal.map((i) => i.insightDetails.state),
      ['Start', 'End'],
    );
    assert.equal(action[0]?.sharedEventID, action[1]?.sharedEventID);
    assert.equal(principal[0]?.sharedEventID, principal[1]?.sharedEventID);
    assert.equal(principal[0]?.trailwatch.principal, DEMO_SPIKE_ACTOR.principal);
    assert.equal(action[0]?.insightDetails.eventName, 'RunInstances');
    assert.equal(action[0]?.eventTime, new Date(startMs + 120 * 60_000).toISOString().replace('.000Z', 'Z'));

    // Live equals the pure topology (as many partitions as the topics) on the same events: same records, same ids.
    const offline = new Topology(config.detector, { partitions: 3, actionPartitions: 3 });
    const expected = [...offline.process(events), ...offline.advanceWatermark(startMs + 200 * 60_000)];
    const byId = (xs: Insight[]) => [...xs].sort((a, b) => (a.eventID < b.eventID ? -1 : 1));
    assert.deepEqual(byId(insights), byId(expected));
  });

  test('undecodable records land in the dead-letter topic with their reason, and the detector goes on', async () => {
    const kafka = new Kafka({ brokers: config.kafka.brokers, logLevel: logLevel.NOTHING });
    const letters: Array<{
      key: string;
      code?: string | undefined;
      reason?: string | undefined;
      topic?: string | undefined;
      value: Buffer;
      origin?: string | undefined;
    }> = [];
    await consumeUntil(
      kafka,
      config.topics.deadLetter,
      async (m) => {
        letters.push({
          key: m.key?.toString() ?? '',
          code: headerString(m.headers, DLQ_HEADERS.code),
          reason: headerString(m.headers, DLQ_HEADERS.reason),
          topic: headerString(m.headers, DLQ_HEADERS.topic),
          origin: headerString(m.headers, 'origin'),
          value: m.value as Buffer,
        });
        return letters.length >= 3;
      },
      60_000,
    );
    letters.sort((a, b) => (a.key < b.key ? -1 : 1));
    assert.equal(letters[0]?.code, 'TW_DESERIALIZE');
    assert.match(letters[0]?.reason ?? '', /not in Confluent wire format/);
    assert.equal(letters[0]?.topic, config.topics.events);
    assert.equal(letters[0]?.origin, 'test', 'original headers are kept');
    assert.equal(letters[0]?.value.toString(), '{"eventName":"RunInstances"}');
    assert.equal(letters[1]?.code, 'TW_SCHEMA_UNKNOWN');
    assert.equal(letters[2]?.code, 'TW_RECORD_TOO_LARGE');
    assert.equal(letters[2]?.value.length, 5_005, 'the original bytes, all of them');
    assert.deepEqual(runtime.metrics.deadLetters, { TW_DESERIALIZE: 1, TW_SCHEMA_UNKNOWN: 1, TW_RECORD_TOO_LARGE: 1 });
    assert.ok(runtime.metrics.recordsConsumed >= events.length + 3);
    assert.equal(runtime.engineMetrics().eventsProcessed, events.length);
  });
});
