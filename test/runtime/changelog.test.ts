import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { kafkaSchema } from '../../src/config/schema.ts';
import { type EngineChanges, emptyEngineMetrics } from '../../src/detect/engine.ts';
import { ErrorCodes, type TrailwatchError } from '../../src/errors.ts';
import { createLogger } from '../../src/logger.ts';
import { ChangelogWriter, restorePartition } from '../../src/runtime/changelog.ts';
import { createTransport } from '../../src/transport/index.ts';
import type { GroupConsumer, GroupHandlers, Transport } from '../../src/transport/types.ts';
import { createTopics, uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

const meta = {
  version: 1,
  maxEventTimeMs: null,
  watermarkMs: null,
  closedThroughMs: null,
  streamStartMs: [],
  metrics: emptyEngineMetrics(),
};
const changes = (keys: Array<[string, string | null]>, seen: Array<[string, number]> = []): EngineChanges => ({ meta, keys, seen });

/** A key state of `chars` characters with astral characters (surrogate pairs) all through it. */
const bigState = (chars: number, fill = 'a') => JSON.stringify({ s: `${fill}😀`.repeat(Math.ceil(chars / 3)) });

describe('ChangelogWriter', () => {
  test('a state within the bound is one record; a larger one is cut in parts under the bound', () => {
    const writer = new ChangelogWriter('cl', 0, 60_000, [], 4_096);
    const small = writer.messages(changes([['k1', '{"a":1}']]), null);
    assert.deepEqual(
      small.filter((r) => r.key !== 'meta').map((r) => [r.key, r.value]),
      [['k|k1', '{"a":1}']],
    );
    const big = writer.messages(changes([['k1', bigState(20_000)]]), null).filter((r) => r.key !== 'meta');
    assert.ok(big.length > 5);
    for (const r of big)
      assert.ok(Buffer.byteLength(r.value as string) <= 4_096, `${r.key}: ${Buffer.byteLength(r.value as string)} bytes`);
    for (const r of big) assert.ok(!/[\ud800-\udbff]$/.test(r.value as string), 'no part ends inside a surrogate pair');
    assert.equal(big.at(-1)?.key, 'k|k1', 'the head comes last');
    assert.match(big.at(-1)?.value as string, new RegExp(`^\\u0001${big.length}\\|`));
    // Shrinking back tombstones every part that is no longer needed.
    const shrunk = writer.messages(changes([['k1', '{"a":2}']]), null).filter((r) => r.key !== 'meta');
    assert.deepEqual(shrunk[0], { topic: 'cl', partition: 0, key: 'k|k1', value: '{"a":2}' });
    assert.deepEqual(
      shrunk.slice(1).map((r) => r.value),
      Array(big.length - 1).fill(null),
    );
  });

  test('dedupe records are cut under the bound', () => {
    const writer = new ChangelogWriter('cl', 0, 60_000, [], 2_048);
    const seen: Array<[string, number]> = Array.from({ length: 500 }, (_, n) => [`event-${n}`, 1_000]);
    const records = writer.messages(changes([], seen), null).filter((r) => String(r.key).startsWith('seen|'));
    assert.ok(records.length > 1);
    for (const r of records) assert.ok(Buffer.byteLength(r.value as string) <= 2_048);
    assert.equal(records.flatMap((r) => JSON.parse(r.value as string) as unknown[]).length, 500);
  });
});

describe('restorePartition', { timeout: 120_000 }, () => {
  test('reads back the state of keys written in parts, and keys that shrank again', async () => {
    const { brokers } = await testStack();
    const topic = uniqueName('tw-changelog');
    await createTopics(brokers, [topic], 2);
    const transport = createTransport(kafkaSchema.parse({ brokers }), createLogger({ level: 'warn' }));
    const producer = transport.txnProducer({ transactionalId: uniqueName('tw-changelog-txn') });
    await producer.connect();
    const writer = new ChangelogWriter(topic, 1, 60_000, [], 4_096);
    const write = async (keys: Array<[string, string | null]>) => {
      const txn = await producer.begin();
      await txn.send(writer.messages(changes(keys), null));
      await txn.commit();
    };
    const big = bigState(30_000, 'b');
    await write([
      ['grows', bigState(10_000)],
      ['shrinks', bigState(10_000, 'c')],
      ['small', '{"x":1}'],
    ]);
    await write([
      ['grows', big],
      ['shrinks', '{"y":2}'],
    ]);
    const restored = await restorePartition({ transport, producer, topic, partition: 1, groupId: uniqueName('tw-changelog-group') });
    await producer.close();
    assert.deepEqual([...restored.checkpoint.keys].sort(), [big, '{"x":1}', '{"y":2}'].sort());
    assert.equal(restored.keyParts.length, 1);
    assert.equal(restored.keyParts[0]?.[0], 'grows');
    assert.ok((restored.keyParts[0]?.[1] ?? 0) > 5);
  });

  test('the meta keeps the config version of the last commit; a state from before versions restores as null', async () => {
    const { brokers } = await testStack();
    const topic = uniqueName('tw-changelog-version');
    await createTopics(brokers, [topic], 1);
    const transport = createTransport(kafkaSchema.parse({ brokers }), createLogger({ level: 'warn' }));
    const producer = transport.txnProducer({ transactionalId: uniqueName('tw-changelog-txn') });
    await producer.connect();
    const writer = new ChangelogWriter(topic, 0, 60_000);
    const restore = () => restorePartition({ transport, producer, topic, partition: 0, groupId: uniqueName('tw-changelog-group') });
    const write = async (version: number | null) => {
      const txn = await producer.begin();
      await txn.send(writer.messages(changes([['k', '{"a":1}']]), null, [], version));
      await txn.commit();
    };
    try {
      await write(null);
      assert.equal((await restore()).configVersion, null);
      await write(3);
      await write(4);
      assert.equal((await restore()).configVersion, 4);
    } finally {
      await producer.close();
    }
  });

  test('a reader that never reaches the barrier is given up after idleMs with a retriable error, not waited on for ever', async () => {
    const { brokers } = await testStack();
    const topic = uniqueName('tw-changelog-wedged');
    await createTopics(brokers, [topic], 1);
    const real = createTransport(kafkaSchema.parse({ brokers }), createLogger({ level: 'warn' }));
    // The real reader, with its batches withheld: a client wedged after a restart reads nothing.
    const wedged: Transport = {
      ...real,
      client: real.client,
      admin: () => real.admin(),
      producer: () => real.producer(),
      txnProducer: (o) => real.txnProducer(o),
      groupConsumer: (o) => {
        const consumer = real.groupConsumer(o);
        return Object.assign(Object.create(consumer) as GroupConsumer, {
          run: (handlers: GroupHandlers) => consumer.run({ ...handlers, onBatch: async () => undefined }),
          close: () => consumer.close(),
        });
      },
    };
    const producer = real.txnProducer({ transactionalId: uniqueName('tw-changelog-txn') });
    await producer.connect();
    const started = Date.now();
    try {
      await assert.rejects(
        restorePartition({ transport: wedged, producer, topic, partition: 0, groupId: uniqueName('tw-changelog-group'), idleMs: 3_000 }),
        (err: TrailwatchError) => {
          assert.equal(err.code, ErrorCodes.KAFKA);
          assert.equal(err.canRetry, true);
          assert.match(err.message, new RegExp(`restoring ${topic}\\[0\\]: nothing read for 3000 ms`));
          return true;
        },
      );
      assert.ok(Date.now() - started < 60_000, 'given up long before the restore timeout');
    } finally {
      await producer.close();
    }
  });
});
