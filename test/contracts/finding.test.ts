import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import avro from 'avsc';
import { avroProblems, findingSchema, findingType } from '../../src/contracts/schemas.ts';
import type { Finding } from '../../src/contracts/types.ts';
import { buildFinding, techniquesFromSigmaTags } from '../../src/emit/finding.ts';

const ROLE = 'arn:aws:sts::111122223333:assumed-role/deploy-role';
const T0 = Date.UTC(2026, 2, 1, 9, 0, 0);

const full: Finding = {
  class_uid: 2004,
  class_name: 'Detection Finding',
  category_uid: 2,
  category_name: 'Findings',
  activity_id: 2,
  activity_name: 'Update',
  type_uid: 200402,
  type_name: 'Detection Finding: Update',
  time: T0 + 60_000,
  severity_id: 4,
  severity: 'High',
  status_id: 1,
  status: 'New',
  message: `Console login without MFA: ${ROLE} in 111122223333/eu-west-1`,
  finding_info: {
    uid: 'b8f2c6e0-0000-5000-8000-000000000001',
    title: 'Console login without MFA',
    desc: 'A console sign-in succeeded without MFA.',
    types: ['rule'],
    analytic: { uid: 'sigma-0002', name: 'AWS console login without MFA', type_id: 1, type: 'Rule' },
    first_seen_time: T0,
    last_seen_time: T0 + 60_000,
    created_time: T0,
    src_url: 'https://example.invalid/rules/sigma-0002',
  },
  cloud: { provider: 'AWS', account: { uid: '111122223333' }, region: 'eu-west-1' },
  actor: {
    user: { uid: ROLE, name: 'deploy-role', type_id: 99, type: 'AssumedRole', account: { uid: '111122223333' } },
    session: { uid: 'ci-run-42', issuer: ROLE },
  },
  api: { operation: 'ConsoleLogin', service: { name: 'signin.amazonaws.com' } },
  src_endpoint: { ip: '198.51.100.7', domain: null },
  evidences: [
    {
      uid: 'e-1',
      time: T0,
      api: { operation: 'ConsoleLogin', service: { name: 'signin.amazonaws.com' } },
      actor: { user: { uid: ROLE, name: null, type_id: null, type: null, account: null }, session: null },
      src_endpoint: { ip: null, domain: 'AWS Internal' },
      data: '{"eventId":"e-1"}',
    },
  ],
  attacks: [{ technique: { uid: 'T1078.004', name: 'Cloud Accounts' }, tactic: { uid: 'TA0001', name: 'Initial Access' } }],
  count: 2,
  metadata: {
    product: { name: 'trailwatch', vendor_name: 'trailwatch', version: '0.1.0' },
    version: '1.5.0',
    uid: 'b8f2c6e0-0000-5000-8000-000000000002',
    log_name: 'trailwatch.findings',
  },
  unmapped: { rule_source: 'rules/sigma/console_login_no_mfa.yml', evidences_total: '2' },
};

/** avsc decodes into generated record classes; compare the data only. */
function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

type Node = { type?: unknown; name?: string; doc?: string; default?: unknown; fields?: Node[]; items?: unknown; values?: unknown };

/** Every record and field, with a label to report. */
function nodes(schema: unknown): [string, Node][] {
  if (Array.isArray(schema)) return schema.flatMap(nodes);
  if (typeof schema !== 'object' || schema === null) return [];
  const node = schema as Node;
  const out: [string, Node][] = node.type === 'record' ? [[`record ${node.name}`, node]] : [];
  for (const field of node.fields ?? []) out.push([`field ${node.name}.${field.name}`, field], ...nodes(field.type));
  if (node.items !== undefined) out.push(...nodes(node.items));
  if (node.values !== undefined) out.push(...nodes(node.values));
  if (typeof node.type === 'object') out.push(...nodes(node.type));
  return out;
}

/** The schema with every field that has a default removed, at every depth: what an older, minimal writer wrote. */
function withoutOptionalFields(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutOptionalFields);
  if (typeof schema !== 'object' || schema === null) return schema;
  const node = { ...(schema as Node) };
  if (node.fields) node.fields = node.fields.filter((f) => !('default' in f)).map((f) => ({ ...f, type: withoutOptionalFields(f.type) }));
  if (node.items !== undefined) node.items = withoutOptionalFields(node.items);
  if (typeof node.type === 'object') node.type = withoutOptionalFields(node.type);
  return node;
}

describe('Finding schema', () => {
  test('parses, in the trailwatch namespace, with OCSF names and the fields of types.ts', () => {
    assert.equal(findingSchema.namespace, 'io.trailwatch');
    assert.equal(findingSchema.name, 'Finding');
    assert.equal(findingType.name, 'io.trailwatch.Finding');
    assert.deepEqual(
      findingSchema.fields.map((f) => (f as { name: string }).name),
      Object.keys(full),
    );
    for (const [label] of nodes(findingSchema))
      if (label.startsWith('field')) assert.match(label, /\.[a-z][a-z_]*$/, `${label} is snake_case`);
  });

  test('every record and field is documented; every nullable field defaults to null', () => {
    const all = nodes(findingSchema);
    assert.ok(all.length > 60);
    for (const [label, node] of all) assert.ok(node.doc, `${label} has a doc`);
    const bad = all.filter(([l, n]) => l.startsWith('field') && Array.isArray(n.type) && n.type[0] === 'null' && n.default !== null);
    assert.deepEqual(
      bad.map(([l]) => l),
      [],
    );
  });

  test('a fully populated finding passes avroProblems and round-trips', () => {
    assert.deepEqual(avroProblems(findingType, full), []);
    const decoded = findingType.fromBuffer(findingType.toBuffer(full)) as Finding;
    assert.equal(typeof decoded.time, 'number');
    assert.deepEqual(plain(decoded), full);
  });

  test('a built finding passes avroProblems and round-trips', () => {
    const built = buildFinding({
      kind: 'correlation',
      analyticId: 'corr-1',
      analyticName: 'Key created then used from a new IP',
      title: 'Key created then used',
      severity: 'critical',
      timeMs: T0,
      windowStartMs: T0,
      accountId: '111122223333',
      region: 'eu-west-1',
      principal: ROLE,
      principalType: 'AssumedRole',
      api: null,
      sourceIp: '2001:db8::1',
      evidences: [],
      techniques: techniquesFromSigmaTags(['attack.t1098.001', 'attack.persistence']),
      extras: { group_key: ROLE },
    });
    assert.deepEqual(avroProblems(findingType, built), []);
    assert.deepEqual(plain(findingType.fromBuffer(findingType.toBuffer(built))), built);
  });

  test('avroProblems names wrong and undeclared fields by path', () => {
    const bad = {
      ...full,
      severity_id: 'High',
      finding_info: { ...full.finding_info, uid: undefined },
      cloud: { ...full.cloud, zone: 'a' },
    };
    assert.deepEqual(avroProblems(findingType, bad), [
      'severity_id: expected int, got the string "High"',
      'finding_info.uid: expected string, got nothing (missing)',
      'cloud.zone: not a field of Cloud',
    ]);
  });

  test('BACKWARD: the schema reads a record written without any optional field, filling defaults', () => {
    const minimalType = avro.Type.forSchema(withoutOptionalFields(findingSchema) as avro.Schema);
    const minimal = {
      class_uid: 2004,
      class_name: 'Detection Finding',
      category_uid: 2,
      category_name: 'Findings',
      activity_id: 1,
      activity_name: 'Create',
      type_uid: 200401,
      type_name: 'Detection Finding: Create',
      time: T0,
      severity_id: 3,
      severity: 'Medium',
      status_id: 1,
      status: 'New',
      message: 'm',
      finding_info: { uid: 'u', title: 't', analytic: { uid: 'a', name: 'n', type_id: 1, type: 'Rule' } },
      cloud: { provider: 'AWS', account: { uid: '111122223333' }, region: 'eu-west-1' },
      metadata: { product: { name: 'trailwatch', vendor_name: 'trailwatch' }, version: '1.5.0' },
    };
    const resolver = findingType.createResolver(minimalType);
    const read = plain(findingType.fromBuffer(minimalType.toBuffer(minimal), resolver));
    assert.deepEqual(read, {
      ...minimal,
      finding_info: {
        ...minimal.finding_info,
        desc: null,
        types: [],
        first_seen_time: null,
        last_seen_time: null,
        created_time: null,
        src_url: null,
      },
      actor: null,
      api: null,
      src_endpoint: null,
      evidences: [],
      attacks: [],
      count: 1,
      metadata: { ...minimal.metadata, product: { ...minimal.metadata.product, version: null }, uid: null, log_name: null },
      unmapped: {},
    });
  });

  test('BACKWARD: a next version that adds an optional field reads today’s data', () => {
    const next = avro.Type.forSchema({
      ...findingSchema,
      fields: [...findingSchema.fields, { name: 'risk_score', type: ['null', 'int'], default: null, doc: 'Risk score.' }],
    } as avro.Schema);
    const read = next.fromBuffer(findingType.toBuffer(full), next.createResolver(findingType));
    assert.deepEqual(plain(read), { ...full, risk_score: null });
  });
});
