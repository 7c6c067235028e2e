import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { COMPATIBILITY, SchemaType } from '@kafkajs/confluent-schema-registry';
import { loadConfig } from '../../src/config/load.ts';
import { type AvroRecordSchema, auditEventSchema, valueSubject } from '../../src/contracts/schemas.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { createLogger } from '../../src/logger.ts';
import { DetectorRuntime } from '../../src/runtime/detector.ts';
import { createKafka } from '../../src/runtime/kafka.ts';
import { createRegistry } from '../../src/runtime/registry.ts';
import { ensureTopics } from '../../src/runtime/topics.ts';
import { createTransport } from '../../src/transport/index.ts';
import { Forwarder } from '../helpers/forwarder.ts';
import { deleteTopicsWithPrefix, uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

async function waitUntil(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** AuditEvent as a newer producer publishes it: one optional field more (BACKWARD compatible). */
const auditEventV2: AvroRecordSchema = {
  ...auditEventSchema,
  fields: [...auditEventSchema.fields, { name: 'tenant', type: ['null', 'string'], default: null }],
};

describe('detector start-up', { timeout: 180_000 }, () => {
  test('waits for a registry that refuses connections, then starts and reads events a v2 producer wrote', async (t) => {
    const stack = await testStack();
    const registryUrl = new URL(stack.registryUrl);
    const forwarder = await Forwarder.onFreePort({ host: registryUrl.hostname, port: Number(registryUrl.port) });
    t.after(() => forwarder.close());
    const run = uniqueName('tw-startup');
    const config = loadConfig({
      env: {},
      overrides: {
        kafka: { brokers: stack.brokers },
        registry: { url: `http://127.0.0.1:${forwarder.port}${registryUrl.pathname}` },
        topics: { events: `${run}.events`, alerts: `${run}.insights`, deadLetter: `${run}.dlq`, partitions: 1 },
        detector: { groupId: run },
      },
    });
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn', destination: { write: (line: string) => void lines.push(line) } });
    const kafka = createKafka(config.kafka, logger);
    await ensureTopics(kafka, config.topics);
    t.after(async () => {
      await deleteTopicsWithPrefix(stack.brokers, run);
    });

    let fatal: Error | null = null;
    const runtime = new DetectorRuntime({
      config,
      transport: createTransport(config.kafka, logger),
      registry: createRegistry(config.registry),
      logger,
      onFatal: (err) => {
        fatal = err;
      },
    });
    t.after(() => runtime.stop());
    let startFailed: unknown = null;
    const started = runtime.start();
    started.catch((err: unknown) => {
      startFailed = err;
    });
    await waitUntil(
      'the detector to find the registry refusing connections',
      () => {
        // A refused connection taken for a refused request ends the start-up: say so at once.
        if (startFailed) throw startFailed;
        return lines.some((l) => l.includes('ECONNREFUSED'));
      },
      60_000,
    );
    await forwarder.open();
    await started;

    // A producer with a newer AuditEvent: registered BACKWARD compatible beside trailwatch's own.
    const producerRegistry = createRegistry({ url: stack.registryUrl });
    const { id } = await producerRegistry.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(auditEventV2) },
      { subject: valueSubject(config.topics.events), compatibility: COMPATIBILITY.BACKWARD },
    );
    const now = Date.now();
    const events: AuditEvent[] = [0, 1, 2].map((i) => ({
      eventId: `${run}-${i}`,
      eventTimeMs: now - 120_000 + i * 1_000,
      source: 'aws.cloudtrail',
      accountId: '111122223333',
      region: 'eu-west-1',
      principal: 'arn:aws:iam::111122223333:user/alice',
      principalType: 'IAMUser',
      service: 's3.amazonaws.com',
      action: 'GetObject',
      readOnly: true,
      errorCode: null,
      sourceIp: '198.51.100.7',
      userAgent: null,
      attributes: {},
    }));
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic: config.topics.events,
      messages: await Promise.all(
        events.map(async (e) => ({ key: e.principal, value: await producerRegistry.encode(id, { ...e, tenant: 'acme' }) })),
      ),
    });
    await producer.disconnect();

    await waitUntil('the detector to process the three events', () => runtime.engineMetrics().eventsProcessed >= events.length, 60_000);
    assert.equal(runtime.engineMetrics().eventsProcessed, events.length);
    assert.deepEqual(runtime.metrics.deadLetters, {}, 'no record dead-lettered');
    assert.equal(fatal, null);
  });
});
