import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import type { Kafka } from 'kafkajs';
import { stackStatus, stackUp } from '../../src/stack/local.ts';
import { consumeMessages, createTopics, testKafka, uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

/**
 * What trailwatch needs from the stack, checked against the running one (KAFKA_BROKERS,
 * SCHEMA_REGISTRY_URL): kafkajs 2.2.4 works with Kafka 4.1 (which dropped old protocol versions,
 * KIP-896) for admin, consumer groups and transactions, and the registry's Confluent-compatible
 * API round-trips Avro for a client that knows only its URL.
 */
describe('local stack', { timeout: 60_000 }, () => {
  let brokers: string[];
  let registryUrl: string;
  let kafka: Kafka;

  before(async () => {
    ({ brokers, registryUrl } = await testStack());
    kafka = testKafka(brokers);
  });

  const text = (m: { value: Buffer | null }): string => m.value?.toString() ?? '';

  test('admin creates topics with the partitions asked for', async (t) => {
    const topic = uniqueName('tw-stack-admin');
    await createTopics(brokers, [topic], 3, t);
    const admin = kafka.admin();
    await admin.connect();
    try {
      const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
      assert.equal(metadata.topics[0]?.partitions.length, 3);
      assert.ok((await admin.listTopics()).includes(topic));
    } finally {
      await admin.disconnect();
    }
  });

  test('a consumer group reads what a producer wrote and commits its offsets', async (t) => {
    const topic = uniqueName('tw-stack-group');
    const groupId = uniqueName('tw-stack-group');
    await createTopics(brokers, [topic], 2, t);
    const producer = kafka.producer();
    await producer.connect();
    const sent = Array.from({ length: 6 }, (_, i) => ({ key: `k${i}`, value: `v${i}` }));
    try {
      await producer.send({ topic, messages: sent });
    } finally {
      await producer.disconnect();
    }

    const received = await consumeMessages(brokers, topic, sent.length, { groupId });
    assert.deepEqual(received.map(text).sort(), sent.map((m) => m.value).sort());

    const admin = kafka.admin();
    await admin.connect();
    try {
      const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const committed = (offsets?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
      assert.equal(committed, sent.length, 'the group committed past every record');
    } finally {
      await admin.disconnect();
    }
  });

  test('transactions: committed records reach read_committed consumers, aborted ones do not, offsets commit with them', async (t) => {
    const input = uniqueName('tw-stack-tx-in');
    const output = uniqueName('tw-stack-tx-out');
    const groupId = uniqueName('tw-stack-tx-group');
    await createTopics(brokers, [input, output], 1, t);
    const plain = kafka.producer();
    await plain.connect();
    await plain.send({ topic: input, messages: [{ value: 'in-0' }, { value: 'in-1' }, { value: 'in-2' }] });
    await plain.disconnect();

    // The settings trailwatch's detector uses for exactly-once: idempotent, one request in flight.
    const producer = kafka.producer({ transactionalId: uniqueName('tw-stack-txid'), idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    t.after(() => producer.disconnect());
    const first = await producer.transaction();
    await first.send({ topic: output, messages: [{ value: 'committed-1' }, { value: 'committed-2' }] });
    await first.sendOffsets({ consumerGroupId: groupId, topics: [{ topic: input, partitions: [{ partition: 0, offset: '3' }] }] });
    await first.commit();
    const aborted = await producer.transaction();
    await aborted.send({ topic: output, messages: [{ value: 'aborted' }] });
    await aborted.abort();
    const last = await producer.transaction();
    await last.send({ topic: output, messages: [{ value: 'committed-3' }] });
    await last.commit();

    // committed-3 lies after the aborted record, so reading it means the consumer went past it.
    const committed = await consumeMessages(brokers, output, 3, { readUncommitted: false, settleMs: 500 });
    assert.deepEqual(committed.map(text), ['committed-1', 'committed-2', 'committed-3']);
    // The aborted record was written; only read_committed hides it.
    const everything = await consumeMessages(brokers, output, 4, { readUncommitted: true });
    assert.deepEqual(everything.map(text), ['committed-1', 'committed-2', 'aborted', 'committed-3']);

    const admin = kafka.admin();
    await admin.connect();
    try {
      const [offsets] = await admin.fetchOffsets({ groupId, topics: [input] });
      assert.equal(offsets?.partitions.find((p) => p.partition === 0)?.offset, '3', 'sendOffsets committed with the transaction');
    } finally {
      await admin.disconnect();
    }
  });

  test('the registry round-trips Avro for a fresh client, and register ids are the ids /schemas/ids serves', async () => {
    const subject = `${uniqueName('tw-stack-registry')}-value`;
    const schema = {
      type: 'record',
      name: 'Probe',
      namespace: 'dev.trailwatch.test',
      fields: [
        { name: 'id', type: 'string' },
        { name: 'count', type: 'long' },
        { name: 'tag', type: ['null', 'string'], default: null },
      ],
    };
    const writer = new SchemaRegistry({ host: registryUrl });
    const { id } = await writer.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject });
    const payload = await writer.encode(id, { id: 'a-1', count: 42, tag: 'x' });
    assert.equal(payload.readUInt8(0), 0, 'Confluent wire format: magic byte');
    assert.equal(payload.readUInt32BE(1), id, 'Confluent wire format: schema id');

    // A client that knows only the URL decodes it.
    const reader = new SchemaRegistry({ host: registryUrl });
    assert.deepEqual({ ...(await reader.decode(payload)) }, { id: 'a-1', count: 42, tag: 'x' });
    assert.equal(await reader.getLatestSchemaId(subject), id);

    const byId = await fetch(`${registryUrl}/schemas/ids/${id}`);
    assert.equal(byId.status, 200);
    assert.deepEqual(JSON.parse(((await byId.json()) as { schema: string }).schema), schema);

    // Ids are per content, as in Confluent's registry: same schema, other subject, same id.
    const again = await writer.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject: `${subject}-copy` });
    assert.equal(again.id, id);
    const other = await writer.register(
      { type: SchemaType.AVRO, schema: JSON.stringify({ ...schema, name: 'OtherProbe' }) },
      { subject: `${subject}-other` },
    );
    assert.notEqual(other.id, id);
  });

  test('stackUp() while the local stack runs reuses it', async (t) => {
    const status = await stackStatus();
    const sameEndpoints = status.brokers.join(',') === brokers.join(',') && status.registryUrl === registryUrl;
    if (!status.running || !sameEndpoints) {
      t.skip(
        `KAFKA_BROKERS=${brokers.join(',')} / SCHEMA_REGISTRY_URL=${registryUrl} are not this machine's local stack ` +
          `(${status.brokers.join(',')}, ${status.registryUrl}, ${status.running ? 'running' : 'not running'})`,
      );
      return;
    }
    const info = await stackUp({ log: () => {} });
    assert.equal(info.reused, true);
    assert.deepEqual(info.brokers, brokers);
    assert.equal(info.registryUrl, registryUrl);
    assert.equal(info.kafkaPid, status.kafka.pid);
    assert.equal(info.registryPid, status.registry.pid);
  });
});
