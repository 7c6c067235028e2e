import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { assertAuditEvent } from '../../../src/contracts/schemas.ts';
import { BadRecordError, ErrorCodes } from '../../../src/errors.ts';
import { Skip } from '../../../src/ingest/source.ts';
import { sniffFormat } from '../../../src/ingest/sources/index.ts';
import { K8S_AUDIT_SOURCE, k8sAuditSource, normalizeK8sAudit } from '../../../src/ingest/sources/k8s-audit.ts';
import { FIXTURES_DIR } from '../../helpers/shared.ts';
import { runSource } from './helpers.ts';

const AUDIT = join(FIXTURES_DIR, 'k8s-audit/audit.jsonl');
const BAD = join(FIXTURES_DIR, 'k8s-audit/audit-bad.jsonl');

describe('k8s-audit source', () => {
  test('one AuditEvent per ResponseComplete; RequestReceived and ResponseStarted are skipped, not errors', async () => {
    const run = await runSource(k8sAuditSource({ cluster: 'prod-eu', region: 'eu-west-1' }), [AUDIT]);
    assert.deepEqual(run.errors, []);
    assert.deepEqual(
      run.skips.map((s) => s.position.replace(`${AUDIT}:`, '')),
      ['1', '4', '5'],
      'the get’s RequestReceived (line 1), the exec’s RequestReceived and ResponseStarted (4, 5)',
    );
    assert.match(run.skips[0]?.reason ?? '', /stage RequestReceived/);
    assert.deepEqual(
      run.events.map((e) => [e.principal, e.service, e.action, e.errorCode]),
      [
        ['alice@example.com', 'k8s.io/core', 'get:pods', null],
        ['system:serviceaccount:payments:ci-deployer', 'k8s.io/core', 'list:secrets', null],
        ['bob@example.com', 'k8s.io/core', 'create:pods/exec', null],
        ['bob@example.com', 'k8s.io/apps', 'patch:deployments', null],
        ['alice@example.com', 'k8s.io/core', 'delete:configmaps', '403'],
        ['alice@example.com', 'k8s.io/rbac.authorization.k8s.io', 'create:clusterrolebindings', '403'],
        ['system:node:ip-10-20-3-17.eu-west-1.compute.internal', 'k8s.io/core', 'watch:configmaps', null],
        ['system:anonymous', 'k8s.io/nonresource', 'get:/readyz', null],
      ],
    );
    for (const e of run.events) assertAuditEvent(e); // every one fits the Avro contract
    assert.equal(new Set(run.events.map((e) => e.eventId)).size, run.events.length, 'auditIDs stay unique: one stage each');
  });

  test('maps identity, time, namespace, impersonation, source IP, user agent and the 403', async () => {
    const run = await runSource(k8sAuditSource({ cluster: 'prod-eu', region: 'eu-west-1' }), [AUDIT]);
    const [get, list, exec, patch, denied, , watch, probe] = run.events;
    assert.ok(get && list && exec && patch && denied && watch && probe);
    assert.equal(get.eventId, '0f3ad8a6-5c2b-4f0e-9d6b-1b2f8f6d4a01');
    assert.equal(get.eventTimeMs, Date.parse('2024-05-14T09:12:03.114Z'));
    assert.equal(get.source, K8S_AUDIT_SOURCE);
    assert.equal(get.accountId, 'prod-eu');
    assert.equal(get.region, 'eu-west-1');
    assert.equal(get.principalType, 'User');
    assert.equal(get.readOnly, true);
    assert.equal(get.sourceIp, '10.20.1.15');
    assert.equal(get.userAgent, 'kubectl/v1.29.3 (linux/amd64) kubernetes/6813625');
    assert.deepEqual(
      { namespace: get.attributes.namespace, name: get.attributes.name, decision: get.attributes.decision, stage: get.attributes.stage },
      { namespace: 'payments', name: 'api-7d9c8b6f5-x2kqp', decision: 'allow', stage: 'ResponseComplete' },
    );
    assert.equal(list.principalType, 'ServiceAccount');
    assert.equal(exec.readOnly, false);
    assert.equal(exec.eventTimeMs, Date.parse('2024-05-14T09:13:10.000Z'), 'the time the call was received, not when the stream closed');
    // Impersonation: the authenticated caller is the principal, the identity used is an attribute.
    assert.equal(patch.principal, 'bob@example.com');
    assert.equal(patch.attributes.impersonatedUser, 'system:serviceaccount:payments:ci-deployer');
    assert.equal(patch.sourceIp, '192.0.2.44', 'sourceIPs[0]');
    assert.equal(denied.attributes.statusReason, 'Forbidden');
    assert.match(denied.attributes.errorMessage ?? '', /cannot delete resource "configmaps"/);
    assert.equal(denied.attributes.decision, 'forbid');
    assert.equal(watch.principalType, 'Node');
    assert.equal(probe.principalType, 'Anonymous');
    assert.equal(probe.attributes.namespace, undefined);
  });

  test('bad lines are errors naming the file, the line and the field; the good ones still come out', async () => {
    const run = await runSource(k8sAuditSource(), [BAD]);
    assert.equal(run.events.length, 1);
    assert.deepEqual(
      run.errors.map((e) => [e.position, e.code]),
      [
        [`${BAD}:2`, ErrorCodes.NORMALIZE],
        [`${BAD}:3`, ErrorCodes.DESERIALIZE],
        [`${BAD}:4`, ErrorCodes.NORMALIZE],
      ],
    );
    assert.equal(run.errors[0]?.message, `${BAD}:2: missing auditID`);
    assert.match(run.errors[1]?.message ?? '', new RegExp(`^${BAD}:3: malformed JSON at column \\d+`));
    assert.ok(run.errors[1]?.text?.startsWith('{"kind":"Event"'), 'the line itself travels with the error, for the dead-letter topic');
    assert.match(run.errors[2]?.message ?? '', /requestReceivedTimestamp "yesterday" is not an RFC 3339 time/);
  });

  test('an EventList (the webhook backend’s batch) and a gzipped log read alike; a Panic is a failed call', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tw-k8s-'));
    try {
      const lines = (await readFile(AUDIT, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      const gz = join(dir, 'audit.log.gz');
      await writeFile(gz, gzipSync(`${lines.map((l) => JSON.stringify(l)).join('\n')}\n`));
      const list = join(dir, 'batch.json');
      await writeFile(list, JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items: lines }));
      const fromGz = await runSource(k8sAuditSource(), [gz]);
      const fromList = await runSource(k8sAuditSource(), [list]);
      assert.equal(fromGz.events.length, 8);
      assert.deepEqual(fromList.events, fromGz.events);
      assert.equal(await sniffFormat(gz), 'k8s-audit');
      assert.equal(await sniffFormat(list), 'k8s-audit');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const panic = normalizeK8sAudit({
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      auditID: 'p1',
      stage: 'Panic',
      verb: 'get',
      requestURI: '/api/v1/pods',
      user: { username: 'alice' },
      objectRef: { resource: 'pods', apiVersion: 'v1' },
      requestReceivedTimestamp: '2024-05-14T09:00:00Z',
    });
    assert.ok(!(panic instanceof Skip) && !(panic instanceof BadRecordError));
    assert.equal(panic.errorCode, '500');
  });
});
