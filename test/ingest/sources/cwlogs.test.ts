import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ErrorCodes } from '../../../src/errors.ts';
import { normalizeCloudTrail } from '../../../src/ingest/cloudtrail.ts';
import { isEvent } from '../../../src/ingest/source.ts';
import { cwLogsSource } from '../../../src/ingest/sources/cwlogs.ts';
import { sniffFormat } from '../../../src/ingest/sources/index.ts';
import { MAX_MESSAGE_TEXT_BYTES } from '../../../src/ingest/sources/shared.ts';
import { FIXTURES_DIR } from '../../helpers/shared.ts';
import { runSource } from './helpers.ts';

const DATA = join(FIXTURES_DIR, 'cwlogs/data-message.json');
const CONTROL = join(FIXTURES_DIR, 'cwlogs/control-message.json');
const K8S = join(FIXTURES_DIR, 'k8s-audit/audit.jsonl');

describe('cwlogs source', () => {
  test('a gzip DATA_MESSAGE: one event per log event; a message that is not a record is an error at its index', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tw-cwl-'));
    try {
      const file = join(dir, 'payload.gz');
      const payload = await readFile(DATA);
      await writeFile(file, gzipSync(payload));
      const run = await runSource(cwLogsSource({ raw: true }), [file]);
      assert.deepEqual(
        run.events.map((e) => [e.service, e.action, e.principal]),
        [
          ['ec2.amazonaws.com', 'DescribeInstances', 'arn:aws:sts::111122223333:assumed-role/ci-deployer'],
          ['sts.amazonaws.com', 'AssumeRole', 'autoscaling.amazonaws.com'],
        ],
      );
      const doc = JSON.parse(payload.toString()) as { logEvents: Array<{ message: string }> };
      // Same event as the record would give from S3; raw is the message as CloudWatch Logs carried it.
      assert.deepEqual(run.events[0], {
        ...normalizeCloudTrail(JSON.parse(doc.logEvents[0]?.message ?? '')),
        raw: doc.logEvents[0]?.message,
      });
      assert.deepEqual(
        run.errors.map((e) => [e.position, e.code]),
        [[`${file}:1[2]`, ErrorCodes.NORMALIZE]],
      );
      assert.match(run.errors[0]?.message ?? '', /message is not JSON/);
      assert.equal(await sniffFormat(file), 'cwlogs');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('CONTROL_MESSAGE is skipped, not an error; payloads run together (Firehose) each read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tw-cwl-'));
    try {
      const file = join(dir, 'firehose.gz');
      const data = JSON.stringify(JSON.parse(await readFile(DATA, 'utf8')));
      const control = JSON.stringify(JSON.parse(await readFile(CONTROL, 'utf8')));
      // Firehose concatenates gzip members; each holds a payload, no separator.
      await writeFile(file, Buffer.concat([gzipSync(control), gzipSync(data), gzipSync(data)]));
      const run = await runSource(cwLogsSource(), [file]);
      assert.equal(run.events.length, 4);
      assert.deepEqual(
        run.skips.map((s) => s.position),
        [`${file}:1`],
      );
      assert.match(run.skips[0]?.reason ?? '', /CONTROL_MESSAGE/);
      assert.equal(run.errors.length, 2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('decode: the gzip bytes, base64 of them, or a Lambda awslogs event', async () => {
    const source = cwLogsSource();
    const gz = gzipSync(await readFile(DATA));
    for (const bytes of [
      gz,
      Buffer.from(gz.toString('base64')),
      Buffer.from(JSON.stringify({ awslogs: { data: gz.toString('base64') } })),
    ]) {
      const items = source.decode(bytes, 'cwl-raw/0@5');
      assert.deepEqual(
        items.map((i) => [i.kind, i.at.index]),
        [
          ['record', 0],
          ['record', 1],
          ['record', 2],
        ],
      );
      const events = items.map((i) => (i.kind === 'record' ? source.normalize(i.record) : null)).filter((n) => n !== null && isEvent(n));
      assert.equal(events.length, 2);
    }
    const control = source.decode(gzipSync(await readFile(CONTROL)), 'cwl-raw/0@6');
    assert.deepEqual(
      control.map((i) => i.kind),
      ['skip'],
    );
    const notAPayload = source.decode(gzipSync('{"hello":1}'), 'cwl-raw/0@7');
    assert.ok(notAPayload[0]?.kind === 'error');
    assert.match(notAPayload[0].error.message, /^cwl-raw\/0@7: not a CloudWatch Logs payload: no "messageType"/);
  });

  test('a gzip bomb, bare or inside a Lambda awslogs event, is one RECORD_TOO_LARGE error, not a full heap', () => {
    const source = cwLogsSource();
    // 80 MiB of spaces gzip to about 80 KiB.
    const bomb = gzipSync(Buffer.alloc(MAX_MESSAGE_TEXT_BYTES + 16 * 1024 * 1024, 0x20));
    for (const bytes of [bomb, Buffer.from(JSON.stringify({ awslogs: { data: bomb.toString('base64') } }))]) {
      const items = source.decode(bytes, 'cwl-raw/0@8');
      assert.equal(items.length, 1);
      const [item] = items;
      assert.ok(item?.kind === 'error');
      assert.equal(item.error.code, ErrorCodes.RECORD_TOO_LARGE);
      assert.match(item.error.message, /^cwl-raw\/0@8: gzip unpacks to more than/);
    }
  });

  test('EKS audit logs through a subscription: Kubernetes events, the cluster from the log group', async () => {
    const lines = (await readFile(K8S, 'utf8')).trim().split('\n');
    const payload = {
      messageType: 'DATA_MESSAGE',
      owner: '111122223333',
      logGroup: '/aws/eks/prod-eu/cluster',
      logStream: 'kube-apiserver-audit-0a1b2c3d4e5f',
      subscriptionFilters: ['trailwatch'],
      logEvents: lines.map((message, i) => ({ id: String(i), timestamp: 1715678000000 + i, message })),
    };
    const source = cwLogsSource();
    const items = source.decode(gzipSync(JSON.stringify(payload)), 'eks');
    const out = items.map((i) => (i.kind === 'record' ? source.normalize(i.record) : null));
    const events = out.filter((n) => n !== null && isEvent(n));
    assert.equal(events.length, 8, 'ResponseComplete only');
    assert.ok(events.every((e) => 'accountId' in e && e.accountId === 'prod-eu' && e.source === 'k8s.audit'));
  });
});
