import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { generateTraffic } from '../../src/demo/traffic.ts';
import { eventKey, partitionFor } from '../../src/detect/topology.ts';
import { EventCodec } from '../../src/runtime/codec.ts';
import { createRegistry } from '../../src/runtime/registry.ts';
import { detectorTestConfig, publishEvents } from '../helpers/detector.ts';
import { consumeUntil, testKafka } from '../helpers/kafka.ts';

describe('EventPublisher', { timeout: 120_000 }, async () => {
  const config = await detectorTestConfig('tw-publisher', { topics: { partitions: 4 } });
  const admin = testKafka(config.kafka.brokers).admin();
  await admin.connect();
  after(async () => {
    await admin.deleteTopics({ topics: [config.topics.events, config.topics.alerts, config.topics.deadLetter] }).catch(() => undefined);
    await admin.disconnect();
  });

  test('every event arrives once, decodes to itself, in its key partition, stamped with the publish time', async () => {
    const startMs = Date.now() - 40 * 86_400_000; // old event times: the record timestamp must not be them
    const events = generateTraffic({ seed: 3, startMs, minutes: 300 });
    assert.ok(events.length > 2_000, 'more than one request');
    const sentAt = Date.now();
    await publishEvents(config, events, 1_500);
    const doneAt = Date.now();

    const codec = new EventCodec(createRegistry(config.registry));
    const byId = new Map<string, AuditEvent>(events.map((e) => [e.eventId, e]));
    const seen = new Set<string>();
    await consumeUntil(
      testKafka(config.kafka.brokers),
      config.topics.events,
      async (message, partition) => {
        const event = await codec.decodeEvent(message.value);
        const original = byId.get(event.eventId);
        assert.ok(original, `unknown event ${event.eventId}`);
        assert.ok(!seen.has(event.eventId), `duplicate ${event.eventId}`);
        seen.add(event.eventId);
        assert.deepEqual({ ...event }, original);
        assert.equal(message.key?.toString(), eventKey(original));
        assert.equal(partition, partitionFor(eventKey(original), 4));
        const ts = Number(message.timestamp);
        assert.ok(ts >= sentAt - 1_000 && ts <= doneAt + 1_000, `record timestamp ${ts} is not the publish time`);
        return seen.size === events.length;
      },
      60_000,
    );
    assert.equal(seen.size, events.length);
  });
});
