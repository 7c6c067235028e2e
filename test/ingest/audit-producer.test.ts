import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateConfig } from '../../src/config/load.ts';
import { type AuditEvent, BadRecordError, ConfigError, createAuditProducer, ErrorCodes, TrailwatchError } from '../../src/index.ts';
import { eventKey } from '../../src/ingest/wire.ts';
import { EventCodec } from '../../src/runtime/codec.ts';
import { createRegistry } from '../../src/runtime/registry.ts';
import { createTransport } from '../../src/transport/index.ts';
import type { ClientName, InRecord } from '../../src/transport/types.ts';
import { testLogger } from '../helpers/detector.ts';
import { testKafka, uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

function event(n: number, overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    eventId: `svc-${n}`,
    eventTimeMs: 1_760_000_000_000 + n * 1_000,
    source: 'billing.audit',
    accountId: `acct-${n % 3}`,
    region: 'eu-west-1',
    principal: `user-${n % 4}`,
    principalType: 'User',
    service: 'billing',
    action: n % 2 === 0 ? 'Refund' : 'Charge',
    readOnly: false,
    errorCode: null,
    sourceIp: '10.0.0.1',
    userAgent: 'billing/1.0',
    attributes: { tenant: `t${n % 5}` },
    raw: null,
    ...overrides,
  };
}

/**
 * Every record of `topic` from the beginning, read with `client` (kafkajs reads gzip batches
 * only: lz4 ones need the platformatic client), until `count` arrived and a second passed.
 */
async function readAll(client: ClientName, brokers: string[], topic: string, count: number): Promise<InRecord[]> {
  const transport = createTransport(validateConfig({ kafka: { brokers, client } }).kafka, testLogger);
  const consumer = transport.groupConsumer({
    groupId: uniqueName('tw-audit-producer-read'),
    topics: [topic],
    fromBeginning: true,
    maxWaitMs: 200,
  });
  const records: InRecord[] = [];
  let enough: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    enough = resolve;
  });
  const timer = setTimeout(enough, 60_000);
  try {
    await consumer.run({
      onBatch: async (batch) => {
        records.push(...batch.records);
        if (records.length >= count) setTimeout(enough, 1_000);
      },
    });
    await done;
  } finally {
    clearTimeout(timer);
    await consumer.close();
  }
  return records;
}

/** A promise's state now, without waiting for anything but already-queued microtasks. */
async function state(p: Promise<unknown>): Promise<'resolved' | 'rejected' | 'pending'> {
  const marker = Symbol('pending');
  try {
    return (await Promise.race([p, Promise.resolve(marker)])) === marker ? 'pending' : 'resolved';
  } catch {
    return 'rejected';
  }
}

describe('createAuditProducer: options', () => {
  test('bad options are refused all at once, naming each', async () => {
    await assert.rejects(
      createAuditProducer({ kafka: { brokers: [] }, registry: {}, lingerMs: -1, colour: 'red' } as never),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, ErrorCodes.CONFIG_INVALID);
        assert.ok(
          err.problems.some((p) => p.startsWith('colour: unknown option')),
          err.message,
        );
        assert.ok(
          err.problems.some((p) => p.startsWith('lingerMs:')),
          err.message,
        );
        return true;
      },
    );
    await assert.rejects(createAuditProducer({ kafka: { brokers: [] }, registry: {} }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(
        err.problems.map((p) => p.split(':')[0]),
        ['kafka.brokers', 'registry.url'],
      );
      return true;
    });
    await assert.rejects(
      createAuditProducer({ kafka: { brokers: ['localhost:9092'] }, registry: { url: 'http://localhost:1' }, compression: 'lz4' }),
      /kafkajs compresses with gzip only; use kafka.client "platformatic" for lz4/,
    );
  });
});

for (const [client, compression] of [
  ['kafkajs', 'gzip'],
  ['platformatic', 'lz4'],
] as const) {
  describe(`createAuditProducer over ${client} (${compression})`, { timeout: 120_000 }, () => {
    test('a full buffer makes send wait, in order, nothing dropped; flushed events read back through the registry; close is idempotent', async (t) => {
      const stack = await testStack();
      const topic = uniqueName(`tw-audit-producer-${client}`);
      t.after(async () => {
        const admin = testKafka(stack.brokers).admin();
        await admin.connect();
        await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
        await admin.disconnect();
      });
      const producer = await createAuditProducer({
        kafka: { brokers: stack.brokers, client },
        registry: { url: stack.registryUrl },
        topic,
        partitions: 3,
        compression,
        batchRecords: 2,
        maxBufferedRecords: 5,
      });
      t.after(() => producer.close().catch(() => undefined));
      const events = Array.from({ length: 40 }, (_, n) => event(n));
      const taken: number[] = [];
      const bufferedWhenTaken: number[] = [];
      // Every send made at once, none awaited: only five fit.
      const sends = events.map((e, n) =>
        producer.send(e).then(() => {
          taken.push(n);
          bufferedWhenTaken.push(producer.stats.buffered);
        }),
      );
      await Promise.all(sends.slice(0, 5));
      assert.deepEqual(taken, [0, 1, 2, 3, 4], 'the first five are taken at once');
      assert.equal(await state(sends[5] as Promise<void>), 'pending', 'the sixth waits: the buffer is full');
      assert.equal(await state(sends[39] as Promise<void>), 'pending');
      assert.equal(producer.stats.buffered, 5);
      assert.equal(producer.stats.waiting, 35);

      await Promise.all(sends);
      assert.deepEqual(
        taken,
        events.map((_, n) => n),
        'taken in the order sent',
      );
      assert.ok(
        bufferedWhenTaken.every((b) => b <= 5),
        `never more than five buffered: ${bufferedWhenTaken.join(',')}`,
      );
      await producer.flush();
      assert.equal(producer.stats.acknowledged, 40);
      assert.equal(producer.stats.buffered, 0);

      // A bad event is refused with the field named, and nothing of it is taken.
      const { principal: _, ...noPrincipal } = event(100);
      const bad: Array<[unknown, string]> = [
        [noPrincipal, 'principal'],
        [event(101, { eventTimeMs: 'yesterday' as unknown as number }), 'eventTimeMs'],
        [event(102, { eventId: '' }), 'eventId'],
        [{ ...event(103), colour: 'red' }, 'colour'],
        ['not an event', '(root)'],
      ];
      for (const [e, field] of bad) {
        await assert.rejects(producer.send(e as AuditEvent), (err: unknown) => {
          assert.ok(err instanceof BadRecordError, String(err));
          assert.equal(err.code, ErrorCodes.DESERIALIZE);
          assert.equal(err.details.field, field);
          assert.match(err.message, new RegExp(`${field.replace(/[()]/g, '\\$&')}: `));
          return true;
        });
      }
      assert.equal(producer.stats.accepted, 40);

      const closing = producer.close();
      assert.equal(producer.close(), closing, 'a second close is the same close');
      await closing;
      await producer.close();
      await assert.rejects(producer.send(event(200)), (err: unknown) => err instanceof TrailwatchError && err.code === ErrorCodes.USAGE);

      const codec = new EventCodec(createRegistry({ url: stack.registryUrl }));
      const read: Array<{ key: string; event: AuditEvent }> = [];
      for (const r of await readAll(client, stack.brokers, topic, events.length)) {
        read.push({ key: r.key?.toString() ?? '', event: await codec.decodeEvent(r.value) });
      }
      assert.equal(read.length, events.length, 'each event once');
      const byId = new Map(events.map((e) => [e.eventId, e]));
      for (const r of read) {
        const sent = byId.get(r.event.eventId);
        assert.ok(sent, `unexpected ${r.event.eventId}`);
        assert.deepEqual({ ...r.event }, sent);
        assert.equal(r.key, eventKey(sent));
        byId.delete(r.event.eventId);
      }
      assert.equal(byId.size, 0);
    });
  });
}
