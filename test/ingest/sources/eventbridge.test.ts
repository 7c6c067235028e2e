import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ErrorCodes } from '../../../src/errors.ts';
import { normalizeCloudTrail } from '../../../src/ingest/cloudtrail.ts';
import { eventBridgeSource, normalizeEnvelope } from '../../../src/ingest/sources/eventbridge.ts';
import { sniffFormat } from '../../../src/ingest/sources/index.ts';
import { FIXTURES_DIR } from '../../helpers/shared.ts';
import { runSource } from './helpers.ts';

const EVENTS = join(FIXTURES_DIR, 'eventbridge/cloudtrail-events.jsonl');

async function envelopes(): Promise<Array<Record<string, unknown>>> {
  return (await readFile(EVENTS, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('eventbridge source', () => {
  test('CloudTrail records come out as a delivery’s would: same eventId, fields and raw', async () => {
    const run = await runSource(eventBridgeSource({ raw: true }), [EVENTS]);
    const all = await envelopes();
    assert.deepEqual(
      run.events.map((e) => [e.service, e.action, e.errorCode]),
      [
        ['ec2.amazonaws.com', 'RunInstances', null],
        ['iam.amazonaws.com', 'CreateAccessKey', null],
        ['s3.amazonaws.com', 'PutBucketPolicy', 'AccessDenied'],
        ['signin.amazonaws.com', 'ConsoleLogin', null],
      ],
    );
    // The same call from S3 and from EventBridge is one event to the detector.
    for (const [i, event] of run.events.entries()) assert.deepEqual(event, normalizeCloudTrail(all[i]?.detail, { raw: true }));
    assert.equal(run.events[0]?.principal, 'arn:aws:sts::111122223333:assumed-role/ci-deployer');
    assert.equal(run.events[0]?.attributes.sessionName, 'deploy-pipeline');
  });

  test('another detail-type is refused naming it and the fix; an Insight is skipped', async () => {
    const run = await runSource(eventBridgeSource(), [EVENTS]);
    assert.equal(run.errors.length, 1);
    const [refused] = run.errors;
    assert.equal(refused?.position, `${EVENTS}:5`);
    assert.equal(refused?.code, ErrorCodes.NORMALIZE);
    assert.match(
      refused?.message ?? '',
      /detail-type "EC2 Instance State-change Notification" \(source "aws.ec2"\) is not a CloudTrail record/,
    );
    assert.match(refused?.message ?? '', /narrow the EventBridge rule to detail-type "AWS API Call via CloudTrail"/);
    assert.deepEqual(
      run.skips.map((s) => s.position),
      [`${EVENTS}:6`],
    );
  });

  test('a record missing its account or region takes the envelope’s', async () => {
    const [first] = await envelopes();
    const detail = { ...(first?.detail as Record<string, unknown>) };
    delete detail.recipientAccountId;
    delete detail.awsRegion;
    delete (detail.userIdentity as Record<string, unknown>).accountId;
    const e = normalizeEnvelope({ ...first, detail });
    assert.ok('accountId' in e);
    assert.equal(e.accountId, '111122223333');
    assert.equal(e.region, 'eu-west-1');
    const notAnEvent = normalizeEnvelope({ Records: [] });
    assert.ok(notAnEvent instanceof Error);
    assert.match(notAnEvent.message, /no "detail-type".*--format cloudtrail/);
  });

  test('events run together (Firehose to S3), gzipped, read the same, each with its line; sniffed by content', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tw-eb-'));
    try {
      const all = await envelopes();
      const firehose = join(dir, 'firehose-object');
      await writeFile(firehose, gzipSync(all.map((e) => JSON.stringify(e)).join('')));
      const run = await runSource(eventBridgeSource(), [firehose]);
      const expected = await runSource(eventBridgeSource(), [EVENTS]);
      assert.deepEqual(run.events, expected.events);
      assert.equal(run.errors.length, 1);
      assert.match(run.errors[0]?.position ?? '', /firehose-object:1\[4\]$/, 'the 5th event of line 1');
      assert.equal(await sniffFormat(firehose), 'eventbridge');
      assert.equal(await sniffFormat(EVENTS), 'eventbridge');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('decode: one message is one event (or an array of them)', async () => {
    const [first, second] = await envelopes();
    const source = eventBridgeSource();
    const one = source.decode(Buffer.from(JSON.stringify(first)), 'cloudtrail-raw/2@88');
    assert.equal(one.length, 1);
    assert.deepEqual(one[0]?.at, { origin: 'cloudtrail-raw/2@88', line: null, index: null });
    const batch = source.decode(gzipSync(JSON.stringify([first, second])), 'cloudtrail-raw/2@89');
    assert.deepEqual(
      batch.map((i) => (i.kind === 'record' ? source.normalize(i.record) : null)).map((n) => (n && 'action' in n ? n.action : null)),
      ['RunInstances', 'CreateAccessKey'],
    );
  });
});
