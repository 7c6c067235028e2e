import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { Config } from '../../src/config/schema.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { generateTraffic } from '../../src/demo/traffic.ts';
import { eventKey, partitionFor } from '../../src/detect/topology.ts';
import { BadRecordError, ErrorCodes } from '../../src/errors.ts';
import { createLogger } from '../../src/logger.ts';
import { EventCodec } from '../../src/runtime/codec.ts';
import { createKafka } from '../../src/runtime/kafka.ts';
import { EventPublisher } from '../../src/runtime/publisher.ts';
import { createRegistry } from '../../src/runtime/registry.ts';
import { ensureTopics } from '../../src/runtime/topics.ts';
import { createTransport } from '../../src/transport/index.ts';
import type { ClientName } from '../../src/transport/types.ts';
import { detectorTestConfig } from '../helpers/detector.ts';
import { consumeUntil, testKafka } from '../helpers/kafka.ts';

const logger = createLogger({ level: 'silent' });

async function startPublisher(config: Config): Promise<EventPublisher> {
  await ensureTopics(createKafka(config.kafka, logger), config.topics);
  const publisher = new EventPublisher(createTransport(config.kafka, logger), createRegistry(config.registry), config.topics);
  await publisher.start();
  return publisher;
}

/** Every record of the events topic, decoded, with its key and partition; until `count` are read. */
async function readBack(config: Config, count: number): Promise<Array<{ event: AuditEvent; key: string; partition: number; ts: number }>> {
  const codec = new EventCodec(createRegistry(config.registry));
  const out: Array<{ event: AuditEvent; key: string; partition: number; ts: number }> = [];
  await consumeUntil(
    testKafka(config.kafka.brokers),
    config.topics.events,
    async (message, partition) => {
      out.push({
        event: await codec.decodeEvent(message.value),
        key: message.key?.toString() ?? '',
        partition,
        ts: Number(message.timestamp),
      });
      return out.length >= count;
    },
    60_000,
  );
  return out;
}

for (const client of ['kafkajs', 'platformatic'] satisfies ClientName[]) {
  describe(`EventPublisher over ${client}`, { timeout: 120_000 }, async () => {
    const base = await detectorTestConfig(`tw-publisher-${client}`, { topics: { partitions: 4 }, kafka: { client } });
    const admin = testKafka(base.kafka.brokers).admin();
    await admin.connect();
    const topics: string[] = [];
    const configFor = (name: string): Config => {
      const config = structuredClone(base);
      config.topics.events = `${base.topics.events}.${name}`;
      topics.push(config.topics.events);
      return config;
    };
    after(async () => {
      await admin.deleteTopics({ topics: [...topics, base.topics.alerts, base.topics.deadLetter] }).catch(() => undefined);
      await admin.disconnect();
    });

    test('every event arrives once, decodes to itself, in its key partition, stamped with the publish time', async () => {
      const config = configFor('all');
      const startMs = Date.now() - 40 * 86_400_000; // old event times: the record timestamp must not be them
      const events = generateTraffic({ seed: 3, startMs, minutes: 300 });
      assert.ok(events.length > 2_000, 'more than one request');
      const sentAt = Date.now();
      const publisher = await startPublisher(config);
      try {
        for (let i = 0; i < events.length; i += 1_500) await publisher.publish(events.slice(i, i + 1_500));
        assert.equal(publisher.acknowledgedRecords, events.length);
      } finally {
        await publisher.stop();
      }
      const doneAt = Date.now();

      const byId = new Map<string, AuditEvent>(events.map((e) => [e.eventId, e]));
      const seen = new Set<string>();
      for (const { event, key, partition, ts } of await readBack(config, events.length)) {
        const original = byId.get(event.eventId);
        assert.ok(original, `unknown event ${event.eventId}`);
        assert.ok(!seen.has(event.eventId), `duplicate ${event.eventId}`);
        seen.add(event.eventId);
        assert.deepEqual({ ...event }, { ...original, raw: original.raw ?? null }, 'a raw left out reads as null');
        assert.equal(key, eventKey(original));
        assert.equal(partition, partitionFor(eventKey(original), 4));
        assert.ok(ts >= sentAt - 1_000 && ts <= doneAt + 1_000, `record timestamp ${ts} is not the publish time`);
      }
      assert.equal(seen.size, events.length);
    });

    test('each partition keeps the publish order, with several requests under way', async () => {
      const config = configFor('order');
      // Event time order, as a delivery holds it: the detector judges in event time with a bounded
      // lateness, so a request overtaking an earlier one would make its events late.
      const events = generateTraffic({ seed: 13, startMs: Date.now() - 20 * 3_600_000, minutes: 1_200 });
      assert.ok(events.length > 5 * 2_000, `several requests (${events.length} events)`);
      const publisher = await startPublisher(config);
      try {
        await publisher.publish(events);
      } finally {
        await publisher.stop();
      }
      const index = new Map(events.map((e, n) => [e.eventId, n]));
      const last = new Map<number, number>();
      let checked = 0;
      for (const { event, partition } of await readBack(config, events.length)) {
        const n = index.get(event.eventId) as number;
        assert.ok(n > (last.get(partition) ?? -1), `partition ${partition}: event ${n} after ${last.get(partition)}`);
        last.set(partition, n);
        checked++;
      }
      assert.equal(checked, events.length);
    });

    test('a record too large for the topic alone is refused as TW_RECORD_TOO_LARGE; the others, and later ones, are published', async () => {
      const config = configFor('large');
      const events = generateTraffic({ seed: 5, startMs: Date.now() - 3_600_000, minutes: 30 });
      // A 600 KB principal is both in the key and in the value: about 1.2 MB, over the default 1 MiB.
      const huge: AuditEvent = { ...(events[10] as AuditEvent), eventId: 'huge', principal: `arn:aws:iam::1:user/${'p'.repeat(600_000)}` };
      const publisher = await startPublisher(config);
      const refused: BadRecordError[] = [];
      try {
        for (const e of [...events.slice(0, 100), huge, ...events.slice(100)]) {
          try {
            publisher.enqueue(e);
          } catch (err) {
            assert.ok(err instanceof BadRecordError, String(err));
            refused.push(err);
          }
          if (publisher.backlogged) await publisher.ready();
        }
        await publisher.flush();
        // Not failed: more records go out after it.
        await publisher.publish(events.slice(0, 5));
        assert.equal(publisher.acknowledgedRecords, events.length + 5);
      } finally {
        await publisher.stop();
      }
      assert.equal(refused.length, 1);
      assert.equal(refused[0]?.code, ErrorCodes.RECORD_TOO_LARGE);
      assert.match(
        refused[0]?.message ?? '',
        /event huge is \d+ bytes as a record \(key 600\d{3}, value 600\d{3}\), over the topic's max\.message\.bytes of \d+/,
      );
      const read = await readBack(config, events.length + 5);
      assert.equal(read.length, events.length + 5);
      assert.ok(!read.some((r) => r.event.eventId === 'huge'));
    });

    test("one partition's share of a request stays under a small max.message.bytes (keys counted)", async () => {
      const config = configFor('small');
      const transport = createTransport(config.kafka, logger);
      const seam = await transport.admin();
      try {
        await seam.createTopics([{ topic: config.topics.events, partitions: 4, configs: { 'max.message.bytes': String(64 * 1024) } }]);
      } finally {
        await seam.close();
      }
      // One principal, so one partition, with keys of 2 KB: 2,000 records are ~5 MB for it.
      const principal = `arn:aws:iam::1:user/${'k'.repeat(2_000)}`;
      const events = generateTraffic({ seed: 7, startMs: Date.now() - 3_600_000, minutes: 60 })
        .slice(0, 2_000)
        .map((e) => ({ ...e, principal }));
      const publisher = await startPublisher(config);
      try {
        assert.equal(publisher.maxMessageBytes, 64 * 1024);
        await publisher.publish(events);
        assert.equal(publisher.acknowledgedRecords, events.length);
      } finally {
        await publisher.stop();
      }
      const offsets = await admin.fetchTopicOffsets(config.topics.events);
      assert.equal(
        offsets.reduce((n, o) => n + Number(o.high), 0),
        events.length,
      );
    });
  });
}
