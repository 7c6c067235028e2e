/**
 * One conformance test for every client behind the transport seam, against the real broker:
 * each client must pass every case here. A case a client cannot pass fails for that client.
 */
import assert from 'node:assert/strict';
import { after, before, describe, type TestContext, test } from 'node:test';
import { kafkaSchema } from '../../src/config/schema.ts';
import { ErrorCodes, isTrailwatchError } from '../../src/errors.ts';
import { createLogger } from '../../src/logger.ts';
import { createKafkajsTransport } from '../../src/transport/kafkajs/index.ts';
import { createPlatformaticTransport } from '../../src/transport/platformatic/index.ts';
import type { Admin, Batch, ClientName, GroupConsumerOptions, InRecord, TopicPartition, Transport } from '../../src/transport/types.ts';
import { testStack } from '../helpers/stack.ts';

let sequence = 0;
/** Unique per run (test/helpers/kafka.ts has the same, but pulls in the runtime's topic helpers). */
function uniqueName(prefix: string): string {
  sequence += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${sequence}`;
}

const logger = createLogger({ level: process.env.TRAILWATCH_TEST_LOG ?? 'warn' });
const CLIENTS: Record<ClientName, typeof createKafkajsTransport> = {
  kafkajs: createKafkajsTransport,
  platformatic: createPlatformaticTransport,
};

interface ReadResult {
  records: Array<InRecord & { partition: number }>;
  assigned: TopicPartition[];
  batches: number;
}

/**
 * Reads `topic` from the beginning in a fresh group until every partition is read to the high
 * watermark it has now (markers included), then leaves. Rejects after `timeoutMs`.
 */
async function readToEnd(
  transport: Transport,
  admin: Admin,
  topic: string,
  options: Partial<GroupConsumerOptions> & { onBatch?: (b: Batch) => Promise<void> } = {},
  timeoutMs = 30_000,
): Promise<ReadResult> {
  const ends = new Map((await admin.topicOffsets(topic)).map((r) => [r.partition, r.high]));
  const starts = options.groupId ? await admin.committedOffsets(options.groupId, topic) : new Map<number, bigint>();
  const pending = new Set([...ends].filter(([p, high]) => high > (starts.get(p) ?? 0n)).map(([p]) => p));
  const result: ReadResult = { records: [], assigned: [], batches: 0 };
  const consumer = transport.groupConsumer({
    groupId: uniqueName('tw-conf-group'),
    topics: [topic],
    fromBeginning: true,
    maxWaitMs: 200,
    ...options,
  });
  let finish: (err?: Error) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    finish = (err) => (err ? reject(err) : resolve());
  });
  if (pending.size === 0) finish();
  const timer = setTimeout(
    () => finish(new Error(`read ${result.records.length} records of ${topic}, partitions ${[...pending]} not at their end`)),
    timeoutMs,
  );
  try {
    await consumer.run({
      onAssigned: (tps) => {
        result.assigned.push(...tps);
      },
      onBatch: async (batch) => {
        result.batches++;
        for (const r of batch.records) result.records.push({ ...r, partition: batch.partition });
        await options.onBatch?.(batch);
        if (batch.nextOffset >= (ends.get(batch.partition) ?? 0n)) pending.delete(batch.partition);
        if (pending.size === 0) finish();
      },
      onCrash: (err) => finish(err),
    });
    await done;
  } finally {
    clearTimeout(timer);
    await consumer.close();
  }
  return result;
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isTrailwatchError(err), `a TrailwatchError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

for (const client of Object.keys(CLIENTS) as ClientName[]) {
  describe(`transport conformance: ${client}`, () => {
    let transport: Transport;
    let admin: Admin;

    before(async () => {
      const { brokers } = await testStack();
      transport = CLIENTS[client](kafkaSchema.parse({ brokers, clientId: `tw-conformance-${client}` }), logger);
      admin = await transport.admin();
    });
    after(async () => {
      await admin.close();
    });

    async function topic(t: TestContext, partitions = 1, configs: Record<string, string> = {}): Promise<string> {
      const name = uniqueName(`tw-conf-${client}`);
      assert.deepEqual(await admin.createTopics([{ topic: name, partitions, configs }]), [name]);
      t.after(() => admin.deleteTopics([name]).catch(() => undefined));
      return name;
    }

    test('creates a topic with configs and partitions, lists it, describes its configs and the broker limit', async (t) => {
      const name = await topic(t, 3, { 'max.message.bytes': '65536', 'retention.ms': '3600000' });
      assert.ok((await admin.listTopics()).includes(name));
      assert.deepEqual(await admin.createTopics([{ topic: name, partitions: 3 }]), [], 'an existing topic is left as it is');
      const configs = await admin.describeTopicConfigs(name, ['max.message.bytes', 'retention.ms']);
      assert.equal(configs['max.message.bytes'], '65536');
      assert.equal(configs['retention.ms'], '3600000');
      const all = await admin.describeTopicConfigs(name);
      assert.ok('cleanup.policy' in all, 'without names, every config');
      assert.ok((await admin.brokerMessageMaxBytes()) > 0);
      const offsets = await admin.topicOffsets(name);
      assert.deepEqual(
        offsets.map((o) => [o.partition, o.low, o.high]),
        [
          [0, 0n, 0n],
          [1, 0n, 0n],
          [2, 0n, 0n],
        ],
      );
    });

    test('idempotent produce and consume back: keys, headers, values, offsets, timestamps, partitions by key', async (t) => {
      const name = await topic(t, 3);
      const producer = transport.producer();
      await producer.connect();
      t.after(() => producer.close());
      const keys = Array.from({ length: 30 }, (_, i) => `123456789012|arn:aws:iam::123456789012:user/u${i}`);
      await producer.send(
        keys.map((key, i) => ({
          topic: name,
          key,
          value: Buffer.from([0, 0, 0, 0, 1, i]),
          headers: { 'tw.kind': 'event', 'tw.n': String(i) },
          timestampMs: 1_700_000_000_000 + i,
        })),
      );
      await producer.send([{ topic: name, partition: 2, key: null, value: 'explicit' }]);
      const { records } = await readToEnd(transport, admin, name);
      assert.equal(records.length, 31);
      const { partitionForKey } = await import('../../src/transport/partitioner.ts');
      for (const [i, key] of keys.entries()) {
        const r = records.find((x) => x.key?.toString() === key);
        assert.ok(r, key);
        assert.equal(r.partition, partitionForKey(key, 3), 'murmur2 placement');
        assert.deepEqual(r.value, Buffer.from([0, 0, 0, 0, 1, i]));
        assert.equal(r.headers['tw.kind']?.toString(), 'event');
        assert.equal(r.headers['tw.n']?.toString(), String(i));
        assert.equal(r.timestampMs, 1_700_000_000_000 + i);
      }
      const explicit = records.find((x) => x.value?.toString() === 'explicit');
      assert.equal(explicit?.partition, 2);
      assert.equal(explicit?.key, null);
      for (const p of [0, 1, 2]) {
        const offsets = records.filter((r) => r.partition === p).map((r) => r.offset);
        assert.deepEqual(
          offsets,
          offsets.map((_, i) => BigInt(i)),
          `partition ${p}: offsets 0… in order, no duplicates`,
        );
      }
    });

    test('a group member gets assignment callbacks, commits, and the commit is read back', async (t) => {
      const name = await topic(t, 2);
      const producer = transport.producer();
      await producer.connect();
      t.after(() => producer.close());
      await producer.send([
        { topic: name, partition: 0, value: 'a' },
        { topic: name, partition: 0, value: 'b' },
        { topic: name, partition: 1, value: 'c' },
      ]);
      const groupId = uniqueName('tw-conf-commit');
      const member = transport.groupConsumer({ groupId, topics: [name], fromBeginning: true, maxWaitMs: 200 });
      const assigned: number[] = [];
      const read = new Map<number, bigint>();
      let allRead: () => void = () => undefined;
      const done = new Promise<void>((resolve) => {
        allRead = resolve;
      });
      await member.run({
        onAssigned: (tps) => {
          assigned.push(...tps.map((tp) => tp.partition));
        },
        onBatch: async (b) => {
          await member.commit([{ topic: b.topic, partition: b.partition, offset: b.nextOffset }]);
          read.set(b.partition, b.nextOffset);
          if (read.get(0) === 2n && read.get(1) === 1n) allRead();
        },
      });
      assert.deepEqual(assigned.sort(), [0, 1]);
      assert.deepEqual(
        member
          .assignment()
          .map((tp) => tp.partition)
          .sort(),
        [0, 1],
      );
      await done;
      assert.deepEqual([...(await member.committed(name))].sort(), [
        [0, 2n],
        [1, 1n],
      ]);
      await member.close();
      assert.deepEqual([...(await admin.committedOffsets(groupId, name))].sort(), [
        [0, 2n],
        [1, 1n],
      ]);
      // A new member of the group starts where the group committed: nothing left to read.
      const again = await readToEnd(transport, admin, name, { groupId });
      assert.equal(again.records.length, 0);
    });

    test('read_committed sees committed transactions and never aborted ones', async (t) => {
      const name = await topic(t, 1);
      const producer = transport.txnProducer({ transactionalId: uniqueName('tw-conf-txn') });
      await producer.connect();
      t.after(() => producer.close());
      const committed = await producer.begin();
      await committed.send([1, 2, 3].map((i) => ({ topic: name, partition: 0, key: `k${i}`, value: `committed-${i}` })));
      await committed.commit();
      const aborted = await producer.begin();
      await aborted.send([1, 2].map((i) => ({ topic: name, partition: 0, key: `k${i}`, value: `aborted-${i}` })));
      await aborted.abort();
      const last = await producer.begin();
      await last.send([{ topic: name, partition: 0, value: 'committed-4' }]);
      await last.commit();
      const { records } = await readToEnd(transport, admin, name);
      assert.deepEqual(
        records.map((r) => r.value?.toString()),
        ['committed-1', 'committed-2', 'committed-3', 'committed-4'],
      );
      const all = await readToEnd(transport, admin, name, { readCommitted: false });
      assert.equal(all.records.filter((r) => r.value?.toString().startsWith('aborted')).length, 2, 'read_uncommitted sees them');
    });

    test('aborted records stay hidden when their abort marker comes in a later fetch', async (t) => {
      const name = await topic(t, 1);
      const producer = transport.txnProducer({ transactionalId: uniqueName('tw-conf-txn') });
      await producer.connect();
      t.after(() => producer.close());
      const big = 'x'.repeat(2_000);
      const aborted = await producer.begin();
      await aborted.send(Array.from({ length: 20 }, (_, i) => ({ topic: name, partition: 0, value: `aborted-${i}-${big}` })));
      await aborted.abort();
      const committed = await producer.begin();
      await committed.send([{ topic: name, partition: 0, value: 'committed' }]);
      await committed.commit();
      // A fetch bound below the aborted record batch: the broker sends that batch alone, its marker next time.
      const { records, batches } = await readToEnd(transport, admin, name, { maxBytesPerPartition: 1_024 });
      assert.ok(batches >= 2, `the log came in ${batches} fetches`);
      assert.deepEqual(
        records.map((r) => r.value?.toString()),
        ['committed'],
      );
    });

    test('sendOffsets in a transaction moves the group offset only when the transaction commits', async (t) => {
      const input = await topic(t, 1);
      const output = await topic(t, 1);
      const groupId = uniqueName('tw-conf-eos');
      const producer = transport.txnProducer({ transactionalId: uniqueName('tw-conf-txn') });
      await producer.connect();
      t.after(() => producer.close());
      const aborted = await producer.begin();
      await aborted.send([{ topic: output, partition: 0, value: 'out-aborted' }]);
      await aborted.sendOffsets(groupId, [{ topic: input, partition: 0, offset: 5n }]);
      await aborted.abort();
      assert.deepEqual([...(await admin.committedOffsets(groupId, input))], [], 'an aborted transaction commits no offset');
      const txn = await producer.begin();
      await txn.send([{ topic: output, partition: 0, value: 'out-committed' }]);
      await txn.sendOffsets(groupId, [{ topic: input, partition: 0, offset: 7n }]);
      await txn.commit();
      // The coordinator applies a transaction's offsets once its marker is written, just after the commit returns.
      let offsets = await admin.committedOffsets(groupId, input);
      for (let i = 0; i < 50 && offsets.size === 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        offsets = await admin.committedOffsets(groupId, input);
      }
      assert.deepEqual([...offsets], [[0, 7n]]);
      const { records } = await readToEnd(transport, admin, output);
      assert.deepEqual(
        records.map((r) => r.value?.toString()),
        ['out-committed'],
      );
    });

    test('a second producer with the same transactionalId fences the first', async (t) => {
      const name = await topic(t, 1);
      const transactionalId = uniqueName('tw-conf-fence');
      const first = transport.txnProducer({ transactionalId });
      await first.connect();
      t.after(() => first.close());
      const txn = await first.begin();
      await txn.send([{ topic: name, partition: 0, value: 'from-the-first' }]);
      const second = transport.txnProducer({ transactionalId });
      await second.connect();
      t.after(() => second.close());
      await rejectsWith(txn.commit(), ErrorCodes.KAFKA_FENCED);
      const own = await second.begin();
      await own.send([{ topic: name, partition: 0, value: 'from-the-second' }]);
      await own.commit();
      const { records } = await readToEnd(transport, admin, name);
      assert.deepEqual(
        records.map((r) => r.value?.toString()),
        ['from-the-second'],
      );
    });

    test('a record above the topic max.message.bytes fails with the record-too-large code', async (t) => {
      const name = await topic(t, 1, { 'max.message.bytes': String(64 * 1024) });
      const producer = transport.producer();
      await producer.connect();
      t.after(() => producer.close());
      await producer.send([{ topic: name, partition: 0, value: Buffer.alloc(1_000) }]);
      await rejectsWith(producer.send([{ topic: name, partition: 0, value: Buffer.alloc(100 * 1024) }]), ErrorCodes.RECORD_TOO_LARGE);
      const txnProducer = transport.txnProducer({ transactionalId: uniqueName('tw-conf-txn') });
      await txnProducer.connect();
      t.after(() => txnProducer.close());
      const txn = await txnProducer.begin();
      await rejectsWith(txn.send([{ topic: name, partition: 0, value: Buffer.alloc(100 * 1024) }]), ErrorCodes.RECORD_TOO_LARGE);
      await txn.abort().catch(() => undefined);
    });
  });
}
