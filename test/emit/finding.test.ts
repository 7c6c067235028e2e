import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { avroProblems, findingType } from '../../src/contracts/schemas.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import {
  buildFinding,
  type FindingFact,
  type FindingSeverity,
  findingJson,
  findingUidFor,
  MAX_EVIDENCES,
  OCSF_VERSION,
  techniquesFromSigmaTags,
} from '../../src/emit/finding.ts';

const T0 = Date.UTC(2026, 2, 1, 9, 0, 0);
const ROLE = 'arn:aws:sts::111122223333:assumed-role/deploy-role';

function event(i: number, overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    eventId: `e-${String(i).padStart(3, '0')}`,
    eventTimeMs: T0 + i * 1_000,
    source: 'aws.cloudtrail',
    accountId: '111122223333',
    region: 'eu-west-1',
    principal: ROLE,
    principalType: 'AssumedRole',
    service: 'iam.amazonaws.com',
    action: 'CreateAccessKey',
    readOnly: false,
    errorCode: null,
    sourceIp: '198.51.100.7',
    userAgent: null,
    attributes: { sessionName: 'ci-run-42' },
    ...overrides,
  };
}

const fact: FindingFact = {
  kind: 'rule',
  analyticId: 'sigma-0001',
  analyticName: 'AWS IAM access key created for another user',
  title: 'Access key created',
  severity: 'medium',
  timeMs: T0 + 2_000,
  windowStartMs: T0,
  accountId: '111122223333',
  region: 'eu-west-1',
  principal: ROLE,
  principalType: 'AssumedRole',
  sessionName: 'ci-run-42',
  api: { operation: 'CreateAccessKey', service: 'iam.amazonaws.com' },
  sourceIp: '198.51.100.7',
  evidences: [event(2), event(1)],
  techniques: techniquesFromSigmaTags(['attack.persistence', 'attack.t1098']),
  extras: { rule_source: 'rules/sigma/aws_iam_access_key.yml', group_key: ROLE },
};

describe('buildFinding', () => {
  test('class, category and type uids follow OCSF Detection Finding', () => {
    const f = buildFinding(fact);
    assert.equal(f.class_uid, 2004);
    assert.equal(f.category_uid, 2);
    assert.equal(f.activity_id, 1);
    assert.equal(f.type_uid, 200401);
    assert.equal(f.type_name, 'Detection Finding: Create');
    assert.equal(f.metadata.version, OCSF_VERSION);
    assert.equal(f.status_id, 1);
    assert.deepEqual(avroProblems(findingType, f), []);
    const update = buildFinding({ ...fact, count: 3 });
    assert.equal(update.activity_id, 2);
    assert.equal(update.type_uid, 200402);
    assert.equal(update.count, 3);
    assert.equal(update.finding_info.uid, f.finding_info.uid);
    assert.notEqual(update.metadata.uid, f.metadata.uid);
  });

  test('severity names map to OCSF severity_id', () => {
    const expected: [FindingSeverity, number, string][] = [
      ['informational', 1, 'Informational'],
      ['low', 2, 'Low'],
      ['medium', 3, 'Medium'],
      ['high', 4, 'High'],
      ['critical', 5, 'Critical'],
    ];
    for (const [severity, id, label] of expected) {
      const f = buildFinding({ ...fact, severity });
      assert.equal(f.severity_id, id);
      assert.equal(f.severity, label);
    }
  });

  test('analytic type follows the kind', () => {
    const typeOf = (kind: FindingFact['kind']): [number, string] => {
      const a = buildFinding({ ...fact, kind }).finding_info.analytic;
      return [a.type_id, a.type];
    };
    assert.deepEqual(typeOf('rule'), [1, 'Rule']);
    assert.deepEqual(typeOf('correlation'), [1, 'Rule']);
    assert.deepEqual(typeOf('first-seen'), [2, 'Behavioral']);
    assert.deepEqual(typeOf('breadth'), [3, 'Statistical']);
    assert.deepEqual(buildFinding({ ...fact, kind: 'breadth' }).finding_info.types, ['breadth']);
  });

  test('finding ids are stable across calls and differ per window, analytic and principal', () => {
    assert.equal(buildFinding(fact).finding_info.uid, buildFinding({ ...fact, evidences: [event(1)] }).finding_info.uid);
    assert.equal(findingUidFor('a', 'p', 1), findingUidFor('a', 'p', 1));
    assert.notEqual(findingUidFor('a', 'p', 1), findingUidFor('a', 'p', 2));
    assert.notEqual(findingUidFor('a', 'p', 1), findingUidFor('b', 'p', 1));
    assert.notEqual(findingUidFor('a', 'p', 1), findingUidFor('a', 'q', 1));
    assert.notEqual(buildFinding(fact).finding_info.uid, buildFinding({ ...fact, windowStartMs: T0 + 3_600_000 }).finding_info.uid);
    assert.match(buildFinding(fact).finding_info.uid, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  test('evidences are earliest first, capped, with the total in unmapped', () => {
    const many = Array.from({ length: 25 }, (_, i) => event(24 - i));
    const f = buildFinding({ ...fact, evidences: many, count: 25 });
    assert.equal(f.evidences.length, MAX_EVIDENCES);
    assert.deepEqual(
      f.evidences.map((e) => e.uid),
      Array.from({ length: MAX_EVIDENCES }, (_, i) => `e-${String(i).padStart(3, '0')}`),
    );
    assert.equal(f.unmapped.evidences_total, '25');
    assert.equal(f.unmapped.rule_source, 'rules/sigma/aws_iam_access_key.yml');
    assert.equal(f.finding_info.first_seen_time, T0);
    assert.equal(f.finding_info.last_seen_time, T0 + 24_000);
    assert.deepEqual(avroProblems(findingType, f), []);
  });

  test('evidences carry OCSF api, actor and source, and the event JSON unless turned off', () => {
    const [first] = buildFinding(fact).evidences;
    assert.ok(first);
    assert.deepEqual(first.api, { operation: 'CreateAccessKey', service: { name: 'iam.amazonaws.com' } });
    assert.equal(first.actor?.user.uid, ROLE);
    assert.deepEqual(first.actor?.session, { uid: 'ci-run-42', issuer: ROLE });
    assert.deepEqual(first.src_endpoint, { ip: '198.51.100.7', domain: null });
    assert.deepEqual(
      JSON.parse(first.data ?? 'null'),
      { ...event(1), raw: event(1).raw ?? null },
      'the event, raw spelled out when absent',
    );
    assert.equal(buildFinding({ ...fact, evidenceData: false }).evidences[0]?.data, null);
    const internal = buildFinding({ ...fact, sourceIp: 'AWS Internal', evidences: [event(1, { sourceIp: 'ec2.amazonaws.com' })] });
    assert.deepEqual(internal.src_endpoint, { ip: null, domain: 'AWS Internal' });
    assert.deepEqual(internal.evidences[0]?.src_endpoint, { ip: null, domain: 'ec2.amazonaws.com' });
  });

  test('actor user type and name come from the CloudTrail identity', () => {
    const user = buildFinding({
      ...fact,
      principal: 'arn:aws:iam::111122223333:user/ops/alice',
      principalType: 'IAMUser',
      sessionName: null,
    });
    assert.deepEqual(user.actor, {
      user: {
        uid: 'arn:aws:iam::111122223333:user/ops/alice',
        name: 'alice',
        type_id: 1,
        type: 'IAMUser',
        account: { uid: '111122223333' },
      },
      session: null,
    });
    const root = buildFinding({ ...fact, principal: 'arn:aws:iam::111122223333:root', principalType: 'Root', sessionName: null });
    assert.equal(root.actor?.user.type_id, 2);
    assert.equal(root.actor?.user.name, 'root');
    assert.equal(buildFinding({ ...fact, principal: null }).actor, null);
  });

  test('Sigma ATT&CK tags become attacks; a tactic only when the rule names one', () => {
    assert.deepEqual(buildFinding(fact).attacks, [
      { technique: { uid: 'T1098', name: null }, tactic: { uid: 'TA0003', name: 'Persistence' } },
    ]);
    assert.deepEqual(techniquesFromSigmaTags(['attack.t1078.004', 'attack.persistence', 'attack.privilege_escalation', 'cve.2021']), [
      { uid: 'T1078.004', name: null, tactic: null },
    ]);
  });
});

describe('findingJson', () => {
  test('drops null fields at every depth and turns evidence data into an object', () => {
    const f = buildFinding({ ...fact, api: null, evidences: [event(1, { sourceIp: null })] });
    const json = findingJson(f);
    assert.equal('api' in json, false);
    const info = json.finding_info as Record<string, unknown>;
    assert.equal('desc' in info, false);
    assert.equal('src_url' in info, false);
    const [evidence] = json.evidences as Record<string, unknown>[];
    assert.ok(evidence);
    assert.equal('src_endpoint' in evidence, false);
    const { errorCode: _e, sourceIp: _s, userAgent: _u, ...nonNull } = event(1);
    assert.deepEqual(evidence.data, nonNull);
    assert.equal(JSON.stringify(json).includes('null'), false);
    assert.equal(json.class_uid, 2004);
    assert.equal(json.type_uid, 200401);
    assert.deepEqual(json.unmapped, f.unmapped);
  });
});
