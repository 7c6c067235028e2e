import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { COMPATIBILITY, SchemaType } from '@kafkajs/confluent-schema-registry';
import { loadConfig } from '../../src/config/load.ts';
import type { TopicsConfig } from '../../src/config/schema.ts';
import { type AvroRecordSchema, auditEventSchema, insightSchema, insightType } from '../../src/contracts/schemas.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { BadRecordError, ErrorCodes, TrailwatchError } from '../../src/errors.ts';
import { EventCodec } from '../../src/runtime/codec.ts';
import { createRegistry, registerContracts, type SchemaRegistry } from '../../src/runtime/registry.ts';
import { uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

/** An address nothing listens on: every connection is refused. */
const REFUSING_REGISTRY = 'http://127.0.0.1:1/apis/ccompat/v7';

const event: AuditEvent = {
  eventId: 'codec-1',
  eventTimeMs: Date.UTC(2024, 2, 1, 9, 0, 0),
  source: 'aws.cloudtrail',
  accountId: '111122223333',
  region: 'eu-west-1',
  principal: 'arn:aws:sts::111122223333:assumed-role/deploy-role',
  principalType: 'AssumedRole',
  service: 'ec2.amazonaws.com',
  action: 'RunInstances',
  readOnly: false,
  errorCode: null,
  sourceIp: '198.51.100.7',
  userAgent: 'aws-cli/2.15',
  attributes: { sessionName: 'ci-run-42' },
  raw: null,
};

/** AuditEvent as a newer producer might publish it: one optional field more (BACKWARD compatible). */
const auditEventV2: AvroRecordSchema = {
  ...auditEventSchema,
  fields: [...auditEventSchema.fields, { name: 'tenant', type: ['null', 'string'], default: null }],
};

/** AuditEvent as an older producer might publish it: without userAgent, which has a default. */
const auditEventWithoutUserAgent: AvroRecordSchema = {
  ...auditEventSchema,
  fields: auditEventSchema.fields.filter((f) => (f as { name: string }).name !== 'userAgent'),
};

/** A change no reader can follow: `action` became a number. */
const auditEventActionInt: AvroRecordSchema = {
  ...auditEventSchema,
  fields: auditEventSchema.fields.map((f) => ((f as { name: string }).name === 'action' ? { name: 'action', type: 'int' } : f)),
};

const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

const topicsOf = (prefix: string): TopicsConfig =>
  loadConfig({ env: {}, overrides: { topics: { events: prefix, alerts: `${prefix}.insights` } } }).topics;

async function register(registry: SchemaRegistry, schema: AvroRecordSchema, subject: string): Promise<number> {
  const { id } = await registry.register(
    { type: SchemaType.AVRO, schema: JSON.stringify(schema) },
    { subject, compatibility: COMPATIBILITY.BACKWARD },
  );
  return id;
}

/** The rejection of `promise`, which must reject. */
async function rejection(promise: Promise<unknown>): Promise<TrailwatchError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof TrailwatchError, `a TrailwatchError, not ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}

describe('EventCodec against the real registry', { timeout: 60_000 }, () => {
  let registry: SchemaRegistry;
  let codec: EventCodec;
  let v1Id: number;
  let v2Id: number;
  const subject = `${uniqueName('tw-codec')}-value`;

  before(async () => {
    const stack = await testStack();
    registry = createRegistry({ url: stack.registryUrl });
    codec = new EventCodec(registry);
    v1Id = await register(registry, auditEventSchema, subject);
    // The registry itself judges v2 BACKWARD compatible with v1, as a producer's registration would be.
    v2Id = await register(registry, auditEventV2, subject);
  });

  test('a record written with a BACKWARD-compatible v2 decodes as trailwatch’s AuditEvent, the new field dropped', async () => {
    assert.notEqual(v2Id, v1Id);
    const bytes = await registry.encode(v2Id, { ...event, tenant: 'acme' });
    assert.equal(bytes.readInt32BE(1), v2Id, 'written with the v2 schema id');
    assert.deepEqual(plain(await codec.decodeEvent(bytes)), event);
    // The decoder is kept per writer id: the same id again, and v1 beside it.
    const again = await registry.encode(v2Id, { ...event, eventId: 'codec-2', tenant: null });
    assert.deepEqual(plain(await codec.decodeEvent(again)), { ...event, eventId: 'codec-2' });
    assert.deepEqual(plain(await codec.decodeEvent(await registry.encode(v1Id, event))), event);
  });

  test('a field the writer lacks takes the reader’s default', async () => {
    const id = await register(registry, auditEventWithoutUserAgent, `${uniqueName('tw-codec-old')}-value`);
    const { userAgent: _, ...older } = event;
    const decoded = await codec.decodeEvent(await registry.encode(id, older));
    assert.deepEqual(plain(decoded), { ...event, userAgent: null });
  });

  test('a writer schema that cannot be read as AuditEvent is a TW_SCHEMA_INCOMPATIBLE bad record', async () => {
    const id = await register(registry, auditEventActionInt, `${uniqueName('tw-codec-bad')}-value`);
    const bytes = await registry.encode(id, { ...event, action: 7 });
    for (let i = 0; i < 2; i++) {
      const err = await rejection(codec.decodeEvent(bytes));
      assert.ok(err instanceof BadRecordError);
      assert.equal(err.code, ErrorCodes.SCHEMA_INCOMPATIBLE);
      assert.match(err.message, new RegExp(`schema id ${id} cannot be read as AuditEvent`));
      assert.match(err.message, /action: cannot read "int" as "string"/);
    }
  });

  test('an unknown schema id, a body that does not decode and a non-wire-format value keep their codes', async () => {
    const unknown = Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0]), Buffer.from('garbage')]);
    assert.equal((await rejection(codec.decodeEvent(unknown))).code, ErrorCodes.SCHEMA_UNKNOWN);
    const header = Buffer.alloc(5);
    header.writeInt32BE(v2Id, 1);
    const truncated = Buffer.concat([header, Buffer.from([0x02, 0x61])]);
    const bad = await rejection(codec.decodeEvent(truncated));
    assert.ok(bad instanceof BadRecordError);
    assert.equal(bad.code, ErrorCodes.DESERIALIZE);
    assert.match(bad.message, new RegExp(`does not decode with schema id ${v2Id}`));
    assert.equal((await rejection(codec.decodeEvent(Buffer.from('{"eventName":"x"}')))).code, ErrorCodes.DESERIALIZE);
  });

  test('Insights are read in trailwatch’s Insight schema too', async () => {
    const v2: AvroRecordSchema = { ...insightSchema, fields: [...insightSchema.fields, { name: 'ticket', type: 'string', default: '' }] };
    const subjectOfInsights = `${uniqueName('tw-codec-insight')}-value`;
    await register(registry, insightSchema, subjectOfInsights);
    const id = await register(registry, v2, subjectOfInsights);
    // avsc types `random()` as a Type; it returns a value of the type.
    const insight = insightType.random() as unknown as Record<string, unknown>;
    const decoded = await codec.decodeInsight(await registry.encode(id, { ...insight, ticket: 'SEC-1' }));
    assert.deepEqual(plain(decoded), plain(insight));
  });

  test('a registration the registry refuses (HTTP 409, incompatible) is not retried', async () => {
    const topic = uniqueName('tw-codec-409');
    await register(registry, auditEventActionInt, `${topic}-value`);
    const err = await rejection(registerContracts(registry, topicsOf(topic)));
    assert.equal(err.code, ErrorCodes.REGISTRY);
    assert.equal(err.canRetry, false);
    assert.equal(err.details.status, 409);
  });
});

describe('a registry that refuses connections', { timeout: 60_000 }, () => {
  test('decoding fails with a retriable TW_REGISTRY, not a dead letter', async () => {
    const stack = await testStack();
    const real = createRegistry({ url: stack.registryUrl });
    const id = await register(real, auditEventV2, `${uniqueName('tw-codec-down')}-value`);
    const bytes = await real.encode(id, { ...event, tenant: 'acme' });
    const err = await rejection(new EventCodec(createRegistry({ url: REFUSING_REGISTRY })).decodeEvent(bytes));
    assert.ok(!(err instanceof BadRecordError), 'not a bad record: the record is fine, the registry is away');
    assert.equal(err.code, ErrorCodes.REGISTRY);
    assert.equal(err.canRetry, true);
    assert.match(err.message, /ECONNREFUSED/);
  });

  test('registering the contracts fails with a retriable TW_REGISTRY', async () => {
    const err = await rejection(registerContracts(createRegistry({ url: REFUSING_REGISTRY }), topicsOf('tw-codec-down')));
    assert.equal(err.code, ErrorCodes.REGISTRY);
    assert.equal(err.canRetry, true);
    assert.equal(err.fault, 'external');
    assert.match(err.message, /unreachable .*ECONNREFUSED/);
  });

  test('a host name that does not resolve is retriable too', async () => {
    const err = await rejection(
      new EventCodec(createRegistry({ url: 'http://registry.invalid:8080/apis/ccompat/v7' })).decodeEvent(Buffer.from([0, 0, 0, 0, 1, 0])),
    );
    assert.equal(err.canRetry, true);
    assert.match(err.message, /ENOTFOUND|EAI_AGAIN/);
  });
});
