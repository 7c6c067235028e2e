import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { validateConfig } from '../../../src/config/load.ts';
import { assertAuditEvent } from '../../../src/contracts/schemas.ts';
import { ConfigError, ErrorCodes } from '../../../src/errors.ts';
import { jsonlSource } from '../../../src/ingest/sources/jsonl.ts';
import { runSource } from './helpers.ts';

const lines = [
  {
    ts: '2024-05-14T09:00:00.250Z',
    actor: { id: 'svc-billing', kind: 'service' },
    op: 'invoice.create',
    tenant: 't-42',
    outcome: null,
    ip: '10.1.2.3',
  },
  {
    ts: '2024-05-14T09:00:01Z',
    actor: { id: 'u-981' },
    op: 'invoice.read',
    tenant: 't-42',
    outcome: { code: 'NotFound', message: 'no invoice 77' },
  },
  { ts: '2024-05-14T09:00:02Z', op: 'invoice.delete', tenant: 't-42' },
  { ts: 1715677203, actor: { id: 'u-981' }, op: 'invoice.read', tenant: 't-42' },
  { ts: '2024-05-14 09:00:04+0200', actor: { id: 'u-981' }, op: 'invoice.read', tenant: 't-7', outcome: 403 },
];

describe('jsonl source with a mapping from the config', () => {
  let dir: string;
  let file: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tw-jsonl-'));
    file = join(dir, 'billing-audit.jsonl');
    await writeFile(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n\n`);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const config = validateConfig({
    ingest: {
      jsonl: {
        time: 'ts',
        principal: 'actor.id',
        principalType: 'actor.kind',
        action: 'op',
        account: 'tenant',
        error: 'outcome',
        sourceIp: 'ip',
        source: 'billing.audit',
        defaults: { service: 'billing-api', region: 'eu-west-1' },
      },
    },
  });

  test('maps dotted paths, defaults and the error; a missing required field names the field, path and line', async () => {
    const run = await runSource(jsonlSource({ mapping: config.ingest.jsonl }), [file]);
    assert.deepEqual(
      run.events.map((e) => [
        e.eventTimeMs,
        e.principal,
        e.principalType,
        e.action,
        e.accountId,
        e.errorCode,
        e.service,
        e.region,
        e.source,
      ]),
      [
        [
          Date.parse('2024-05-14T09:00:00.250Z'),
          'svc-billing',
          'service',
          'invoice.create',
          't-42',
          null,
          'billing-api',
          'eu-west-1',
          'billing.audit',
        ],
        [
          Date.parse('2024-05-14T09:00:01Z'),
          'u-981',
          'Unknown',
          'invoice.read',
          't-42',
          'NotFound',
          'billing-api',
          'eu-west-1',
          'billing.audit',
        ],
        [Date.parse('2024-05-14T07:00:04Z'), 'u-981', 'Unknown', 'invoice.read', 't-7', '403', 'billing-api', 'eu-west-1', 'billing.audit'],
      ],
    );
    assert.equal(run.events[0]?.sourceIp, '10.1.2.3');
    assert.equal(run.events[1]?.attributes.errorMessage, 'no invoice 77');
    for (const e of run.events) assertAuditEvent(e);
    assert.deepEqual(
      run.errors.map((e) => e.message),
      [
        `${file}:3: missing principal (ingest.jsonl.principal: "actor.id")`,
        `${file}:4: time 1715677203 at "ts" is not ISO 8601; a number: set ingest.jsonl.timeFormat to epoch-s or epoch-ms`,
      ],
    );
    assert.ok(run.errors.every((e) => e.code === ErrorCodes.NORMALIZE));
  });

  test('epoch seconds and milliseconds; a factor of 1000 off is caught with the fix', async () => {
    const s = jsonlSource({ mapping: { ...config.ingest.jsonl!, timeFormat: 'epoch-s' } });
    const e = s.normalize({ ts: 1715677203, actor: { id: 'u' }, op: 'x' });
    assert.ok('eventTimeMs' in e && e.eventTimeMs === 1715677203000);
    const ms = jsonlSource({ mapping: { ...config.ingest.jsonl!, timeFormat: 'epoch-ms' } });
    const wrong = ms.normalize({ ts: 1715677203, actor: { id: 'u' }, op: 'x' });
    assert.ok(wrong instanceof Error);
    assert.match(wrong.message, /before 1973 as epoch-ms: are these epoch seconds\? set ingest.jsonl.timeFormat: epoch-s/);
  });

  test('without an eventId path, the id is a hash of the line: the same line twice is one event to the detector', () => {
    const s = jsonlSource({ mapping: config.ingest.jsonl });
    const a = s.normalize(lines[0]);
    const b = s.normalize(structuredClone(lines[0]));
    const c = s.normalize(lines[1]);
    assert.ok('eventId' in a && 'eventId' in b && 'eventId' in c);
    assert.equal(a.eventId, b.eventId);
    assert.notEqual(a.eventId, c.eventId);
  });

  test('without a mapping, each line is an AuditEvent as the contract has it', async () => {
    const s = jsonlSource();
    const bad = s.normalize(lines[0]);
    assert.ok(bad instanceof Error);
    assert.match(bad.message, /not a valid AuditEvent/);
  });

  test('the config refuses a mapping without the required fields, or with a bad path, naming them', () => {
    assert.throws(
      () => validateConfig({ ingest: { jsonl: { time: 'ts', principal: 'a..b', timeFormat: 'epoch' } } }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        const text = err.problems.join('\n');
        assert.match(text, /ingest\.jsonl\.action/);
        assert.match(text, /ingest\.jsonl\.principal.*dotted path/);
        assert.match(text, /ingest\.jsonl\.timeFormat/);
        return true;
      },
    );
  });
});
