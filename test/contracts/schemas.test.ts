import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import avro from 'avsc';
import {
  assertAuditEvent,
  auditEventSchema,
  auditEventType,
  avroProblems,
  insightSchema,
  insightType,
  valueSubject,
} from '../../src/contracts/schemas.ts';
import type { AuditEvent, Insight } from '../../src/contracts/types.ts';
import { BadRecordError, ErrorCodes } from '../../src/errors.ts';

const event: AuditEvent = {
  eventId: 'e-1',
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
  userAgent: null,
  attributes: { sessionName: 'ci-run-42' },
  raw: '{"eventName":"GetObject"}',
};

const start: Insight = {
  eventVersion: '1.08',
  eventTime: '2024-03-01T09:00:00Z',
  awsRegion: 'eu-west-1',
  eventID: 'b8f2c6e0-0000-4000-8000-000000000001',
  eventType: 'AwsCloudTrailInsight',
  recipientAccountId: '111122223333',
  sharedEventID: 'b8f2c6e0-0000-4000-8000-0000000000aa',
  insightDetails: {
    state: 'Start',
    eventSource: 'ec2.amazonaws.com',
    eventName: 'RunInstances',
    insightType: 'ApiCallRateInsight',
    errorCode: null,
    insightContext: {
      statistics: { baseline: { average: 0.0417 }, insight: { average: 12 }, insightDuration: null, baselineDuration: 10620 },
      attributions: [
        {
          attribute: 'userIdentityArn',
          insight: [
            { value: 'arn:aws:sts::111122223333:assumed-role/deploy-role', average: 11 },
            { value: 'arn:aws:iam::111122223333:user/ops/alice', average: 1 },
          ],
          baseline: [{ value: 'arn:aws:iam::111122223333:user/ops/alice', average: 0.0417 }],
        },
        {
          attribute: 'userAgent',
          insight: [{ value: 'aws-cli/2.15.0', average: 12 }],
          baseline: [{ value: 'aws-cli/2.15.0', average: 0.0417 }],
        },
        { attribute: 'errorCode', insight: [{ value: 'null', average: 12 }], baseline: [{ value: 'null', average: 0.0417 }] },
      ],
    },
  },
  eventCategory: 'Insight',
  trailwatch: {
    scope: 'principalAction',
    principal: 'arn:aws:sts::111122223333:assumed-role/deploy-role',
    score: 0.97,
    threshold: 0.9,
    startTimeMs: Date.UTC(2024, 2, 1, 9, 0, 0),
    endTimeMs: null,
    bucketMs: 60_000,
    historyMinutes: 7_200,
    configVersion: 12,
  },
};

const end: Insight = {
  ...start,
  eventTime: '2024-03-01T09:14:00Z',
  eventID: 'b8f2c6e0-0000-4000-8000-000000000002',
  insightDetails: {
    ...start.insightDetails,
    state: 'End',
    insightType: 'ApiErrorRateInsight',
    errorCode: 'Client.UnauthorizedOperation',
    insightContext: {
      statistics: { baseline: { average: 0.01 }, insight: { average: 4.5 }, insightDuration: 14, baselineDuration: 10620 },
      attributions: [],
    },
  },
  trailwatch: { ...start.trailwatch, scope: 'action', principal: null, score: 0.99, endTimeMs: Date.UTC(2024, 2, 1, 9, 14, 0) },
};

function withStatistics(insight: Insight, statistics: Record<string, unknown>): unknown {
  const context = insight.insightDetails.insightContext;
  return {
    ...insight,
    insightDetails: { ...insight.insightDetails, insightContext: { ...context, statistics: { ...context.statistics, ...statistics } } },
  };
}

/** The Insight schema without trailwatch.`field`: as it was before the field was added. */
function withoutTrailwatchField(schema: unknown, field: string): unknown {
  const copy = JSON.parse(JSON.stringify(schema)) as { fields: Array<{ name: string; type: { fields?: Array<{ name: string }> } }> };
  const trailwatch = copy.fields.find((f) => f.name === 'trailwatch')?.type;
  const fields = trailwatch?.fields ?? [];
  if (!trailwatch || !fields.some((f) => f.name === field)) throw new Error(`no trailwatch.${field} to take out`);
  trailwatch.fields = fields.filter((f) => f.name !== field);
  return copy;
}

/** The Insight schema as it was before trailwatch.historyMinutes. */
function withoutHistoryMinutes(schema: unknown): unknown {
  return withoutTrailwatchField(schema, 'historyMinutes');
}

/** avsc decodes into generated record classes; compare the data only. */
function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

type SchemaNode = { type?: unknown; name?: string; doc?: string; fields?: SchemaNode[]; items?: unknown; values?: unknown };

/** Every record, enum and field in a schema, with a label to report. */
function namedNodes(schema: unknown, label = ''): [string, SchemaNode][] {
  if (Array.isArray(schema)) return schema.flatMap((branch) => namedNodes(branch, label));
  if (typeof schema !== 'object' || schema === null) return [];
  const node = schema as SchemaNode;
  const out: [string, SchemaNode][] = [];
  if (node.type === 'record' || node.type === 'enum') out.push([`${node.type} ${node.name}`, node]);
  for (const field of node.fields ?? []) {
    out.push([`field ${node.name}.${field.name}`, field]);
    out.push(...namedNodes(field.type, label));
  }
  if (node.items !== undefined) out.push(...namedNodes(node.items, label));
  if (node.values !== undefined) out.push(...namedNodes(node.values, label));
  if (typeof node.type === 'object') out.push(...namedNodes(node.type, label));
  return out;
}

function nullableFieldsWithoutNullDefault(schema: unknown): string[] {
  return namedNodes(schema)
    .filter(([label, node]) => label.startsWith('field') && Array.isArray(node.type) && node.type[0] === 'null')
    .filter(([, node]) => (node as { default?: unknown }).default !== null)
    .map(([label]) => label);
}

describe('AuditEvent schema', () => {
  test('namespace, name and fields exactly as in types.ts', () => {
    assert.equal(auditEventSchema.namespace, 'io.trailwatch');
    assert.equal(auditEventSchema.name, 'AuditEvent');
    assert.deepEqual(
      auditEventSchema.fields.map((f) => (f as { name: string }).name),
      Object.keys(event),
    );
    const field = (name: string): unknown => auditEventSchema.fields.find((f) => (f as { name: string }).name === name);
    assert.deepEqual((field('eventTimeMs') as { type: unknown }).type, { type: 'long', logicalType: 'timestamp-millis' });
    assert.deepEqual(field('attributes'), {
      name: 'attributes',
      type: { type: 'map', values: 'string' },
      default: {},
      doc: (field('attributes') as { doc: string }).doc,
    });
  });

  test('every record and field is documented; every nullable field defaults to null', () => {
    for (const [label, node] of namedNodes(auditEventSchema)) assert.ok(node.doc, `${label} has a doc`);
    assert.deepEqual(nullableFieldsWithoutNullDefault(auditEventSchema), []);
  });

  test('a full event validates and round-trips; timestamps stay plain numbers', () => {
    assert.equal(assertAuditEvent(event), event);
    const decoded = auditEventType.fromBuffer(auditEventType.toBuffer(event)) as AuditEvent;
    assert.equal(typeof decoded.eventTimeMs, 'number');
    assert.deepEqual(plain(decoded), event);
  });

  test('assertAuditEvent names a missing required field', () => {
    const { action: _dropped, ...withoutAction } = event;
    assert.throws(
      () => assertAuditEvent(withoutAction),
      (err: unknown) => {
        assert.ok(err instanceof BadRecordError);
        assert.equal(err.code, ErrorCodes.DESERIALIZE);
        assert.equal(err.message, 'not a valid AuditEvent: action: expected string, got nothing (missing)');
        assert.deepEqual(err.details.problems, ['action: expected string, got nothing (missing)']);
        return true;
      },
    );
  });

  test('assertAuditEvent lists every invalid path, including undeclared fields and map values', () => {
    const bad = { ...event, eventTimeMs: 1.5, readOnly: 'yes', attributes: { ok: 'x', count: 3 }, principalArn: 'typo' };
    assert.throws(
      () => assertAuditEvent(bad),
      (err: unknown) => {
        assert.ok(err instanceof BadRecordError);
        assert.deepEqual(err.details.problems, [
          'eventTimeMs: expected long, got the number 1.5',
          'readOnly: expected null | boolean, got the string "yes"',
          'attributes.count: expected string, got the integer 3',
          'principalArn: not a field of AuditEvent',
        ]);
        return true;
      },
    );
    assert.throws(() => assertAuditEvent(null), /not a valid AuditEvent: \(root\): expected AuditEvent, got null/);
  });

  test('optional fields may be left out: Avro fills their defaults', () => {
    const { readOnly: _r, errorCode: _e, sourceIp: _s, userAgent: _u, attributes: _a, raw: _raw, ...required } = event;
    assertAuditEvent(required);
    assert.deepEqual(plain(auditEventType.fromBuffer(auditEventType.toBuffer(required))), {
      ...required,
      readOnly: null,
      errorCode: null,
      sourceIp: null,
      userAgent: null,
      attributes: {},
      raw: null,
    });
  });

  test('BACKWARD: a next version that adds an optional field reads today’s data', () => {
    const next = avro.Type.forSchema({
      ...auditEventSchema,
      fields: [...auditEventSchema.fields, { name: 'orgId', type: ['null', 'string'], default: null, doc: 'AWS Organizations id.' }],
    } as avro.Schema);
    const resolver = next.createResolver(auditEventType);
    assert.deepEqual(plain(next.fromBuffer(auditEventType.toBuffer(event), resolver)), { ...event, orgId: null });
  });
});

describe('Insight schema', () => {
  test('top-level fields are CloudTrail Insights’ names, plus trailwatch', () => {
    assert.equal(insightSchema.namespace, 'io.trailwatch');
    assert.deepEqual(
      insightSchema.fields.map((f) => (f as { name: string }).name),
      Object.keys(start),
    );
  });

  test('every record, enum and field is documented; every nullable field defaults to null', () => {
    const nodes = namedNodes(insightSchema);
    assert.ok(nodes.length > 30);
    for (const [label, node] of nodes) assert.ok(node.doc, `${label} has a doc`);
    assert.deepEqual(nullableFieldsWithoutNullDefault(insightSchema), []);
  });

  test('enums carry exactly the TypeScript unions', () => {
    const symbols = Object.fromEntries(
      namedNodes(insightSchema)
        .filter(([label]) => label.startsWith('enum'))
        .map(([, node]) => [node.name, (node as { symbols: string[] }).symbols]),
    );
    assert.deepEqual(symbols, {
      InsightState: ['Start', 'End'],
      InsightType: ['ApiCallRateInsight', 'ApiErrorRateInsight'],
      AttributionAttribute: ['userIdentityArn', 'userAgent', 'errorCode'],
      InsightScope: ['action', 'principalAction'],
    });
  });

  for (const insight of [start, end]) {
    test(`a fully populated ${insight.insightDetails.state} validates and round-trips`, () => {
      assert.deepEqual(avroProblems(insightType, insight), []);
      const decoded = insightType.fromBuffer(insightType.toBuffer(insight));
      assert.deepEqual(plain(decoded), insight);
    });
  }

  test('insightDuration is a null-first union defaulting to null: a Start carries null, an End whole minutes', () => {
    const statistics = namedNodes(insightSchema).find(([label]) => label === 'record InsightStatistics')?.[1];
    const duration = statistics?.fields?.find((f) => f.name === 'insightDuration') as { type: unknown; default: unknown } | undefined;
    assert.deepEqual(duration?.type, ['null', 'long']);
    assert.equal(duration?.default, null);
    assert.deepEqual(avroProblems(insightType, withStatistics(start, { insightDuration: 1.5 })), [
      'insightDetails.insightContext.statistics.insightDuration: expected long, got the number 1.5',
    ]);
  });

  test('BACKWARD: today’s schema reads Insights written before trailwatch.historyMinutes (as null)', () => {
    const previous = avro.Type.forSchema(withoutHistoryMinutes(insightSchema) as avro.Schema);
    const { historyMinutes: _h, ...oldTrailwatch } = start.trailwatch;
    const written = previous.toBuffer({ ...start, trailwatch: oldTrailwatch });
    const read = insightType.fromBuffer(written, insightType.createResolver(previous));
    assert.deepEqual(plain(read), { ...start, trailwatch: { ...start.trailwatch, historyMinutes: null } });
  });

  test('FORWARD: a reader still on the previous schema reads today’s Insights, without historyMinutes', () => {
    const previous = avro.Type.forSchema(withoutHistoryMinutes(insightSchema) as avro.Schema);
    const read = previous.fromBuffer(insightType.toBuffer(end), previous.createResolver(insightType));
    const { historyMinutes: _h, ...oldTrailwatch } = end.trailwatch;
    assert.deepEqual(plain(read), { ...end, trailwatch: oldTrailwatch });
  });

  test('trailwatch.configVersion is a null-first long defaulting to null', () => {
    const fields = namedNodes(insightSchema).find(([label]) => label === 'record TrailwatchInsightFields')?.[1]?.fields ?? [];
    const field = fields.find((f) => f.name === 'configVersion') as { type: unknown; default: unknown } | undefined;
    assert.deepEqual(field?.type, ['null', 'long']);
    assert.equal(field?.default, null);
    assert.deepEqual(avroProblems(insightType, { ...start, trailwatch: { ...start.trailwatch, configVersion: null } }), []);
    assert.deepEqual(avroProblems(insightType, { ...start, trailwatch: { ...start.trailwatch, configVersion: '12' } }), [
      'trailwatch.configVersion: expected null | long, got the string "12"',
    ]);
  });

  test('BACKWARD: today’s schema reads Insights written before trailwatch.configVersion (as null)', () => {
    const previous = avro.Type.forSchema(withoutTrailwatchField(insightSchema, 'configVersion') as avro.Schema);
    const { configVersion: _v, ...oldTrailwatch } = start.trailwatch;
    const written = previous.toBuffer({ ...start, trailwatch: oldTrailwatch });
    const read = insightType.fromBuffer(written, insightType.createResolver(previous));
    assert.deepEqual(plain(read), { ...start, trailwatch: { ...start.trailwatch, configVersion: null } });
  });

  test('FORWARD: a reader still on the previous schema reads today’s Insights, without configVersion', () => {
    const previous = avro.Type.forSchema(withoutTrailwatchField(insightSchema, 'configVersion') as avro.Schema);
    const read = previous.fromBuffer(insightType.toBuffer(end), previous.createResolver(insightType));
    const { configVersion: _v, ...oldTrailwatch } = end.trailwatch;
    assert.deepEqual(plain(read), { ...end, trailwatch: oldTrailwatch });
  });

  test('rejects an unknown enum symbol and a missing nested field, by path', () => {
    const bad = {
      ...start,
      insightDetails: {
        ...start.insightDetails,
        state: 'Ongoing',
        insightContext: {
          ...start.insightDetails.insightContext,
          statistics: { ...start.insightDetails.insightContext.statistics, baselineDuration: undefined },
        },
      },
    };
    assert.deepEqual(avroProblems(insightType, bad), [
      'insightDetails.state: expected one of Start, End, got the string "Ongoing"',
      'insightDetails.insightContext.statistics.baselineDuration: expected long, got nothing (missing)',
    ]);
  });
});

test('valueSubject follows TopicNameStrategy', () => {
  assert.equal(valueSubject('trailwatch.events'), 'trailwatch.events-value');
  assert.equal(valueSubject('trailwatch.insights'), 'trailwatch.insights-value');
});
