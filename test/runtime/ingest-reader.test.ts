/**
 * The pure core of the raw-ingest stage (src/runtime/ingest.ts): one raw message's bytes →
 * AuditEvents, skips and dead-letter values (RawMessageReader), and events → the records publish
 * writes (EventEncoder). No Kafka here; test/runtime/ingest.test.ts runs the stage on the broker.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { loadConfig } from '../../src/config/load.ts';
import { auditEventType } from '../../src/contracts/schemas.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { BadRecordError, ErrorCodes } from '../../src/errors.ts';
import { FORMATS, isEvent } from '../../src/ingest/source.ts';
import { createSource } from '../../src/ingest/sources/index.ts';
import { eventKey } from '../../src/ingest/wire.ts';
import { EventEncoder, INGEST_FORMATS, type IngestFormat, RawMessageReader } from '../../src/runtime/ingest.ts';
import { partitionForKey } from '../../src/transport/partitioner.ts';
import { FIXTURES_DIR } from '../helpers/shared.ts';

const EVENTBRIDGE = readFileSync(join(FIXTURES_DIR, 'eventbridge/cloudtrail-events.jsonl'), 'utf8').trim().split('\n');
const CWLOGS_DATA = readFileSync(join(FIXTURES_DIR, 'cwlogs/data-message.json'));
const CWLOGS_CONTROL = readFileSync(join(FIXTURES_DIR, 'cwlogs/control-message.json'));
const K8S = readFileSync(join(FIXTURES_DIR, 'k8s-audit/audit.jsonl'), 'utf8').trim().split('\n');
const K8S_BAD = readFileSync(join(FIXTURES_DIR, 'k8s-audit/audit-bad.jsonl'), 'utf8').trim().split('\n');

const MiB = 1024 * 1024;

function reader(format: IngestFormat = 'auto', extra: Partial<ConstructorParameters<typeof RawMessageReader>[0]> = {}): RawMessageReader {
  return new RawMessageReader({ format, maxMessageBytes: MiB, source: { raw: true }, ...extra });
}

describe('RawMessageReader', () => {
  test('EventBridge: CloudTrail detail-types become events; other detail-types and Insights are skipped, not rejected', () => {
    for (const format of ['auto', 'eventbridge'] as const) {
      const r = reader(format);
      const outcomes = EVENTBRIDGE.map((line, i) => r.read(Buffer.from(line), `raw/0@${i}`));
      assert.deepEqual(
        outcomes.flatMap((o) => o.events.map((e) => e.event.action)),
        ['RunInstances', 'CreateAccessKey', 'PutBucketPolicy', 'ConsoleLogin'],
      );
      assert.deepEqual(
        outcomes.map((o) => o.format),
        Array(6).fill('eventbridge'),
      );
      assert.deepEqual(
        outcomes.flatMap((o) => o.rejected),
        [],
      );
      const skipped = outcomes.flatMap((o) => o.skipped.map((s) => s.reason));
      assert.equal(skipped.length, 2);
      assert.match(skipped[0] ?? '', /detail-type "EC2 Instance State-change Notification": not a CloudTrail record/);
      assert.match(skipped[1] ?? '', /Insight/);
    }
  });

  test('EventBridge: the same event as publish --format eventbridge makes of the line (raw kept)', () => {
    const source = createSource({ format: 'eventbridge', raw: true });
    const line = EVENTBRIDGE[0] as string;
    const expected = source.normalize(JSON.parse(line));
    assert.ok(isEvent(expected));
    assert.deepEqual(reader('eventbridge').read(Buffer.from(line), 'raw/0@0').events[0]?.event, expected);
  });

  test('CloudWatch Logs, gzip and base64 of gzip: one event per log event; a log event that is not a record is rejected at its index', () => {
    for (const bytes of [gzipSync(CWLOGS_DATA), Buffer.from(gzipSync(CWLOGS_DATA).toString('base64')), CWLOGS_DATA]) {
      const o = reader().read(bytes, 'raw/2@41');
      assert.equal(o.format, 'cwlogs');
      assert.deepEqual(
        o.events.map((e) => [e.event.action, e.at.index]),
        [
          ['DescribeInstances', 0],
          ['AssumeRole', 1],
        ],
      );
      assert.equal(o.rejected.length, 1);
      const bad = o.rejected[0];
      assert.equal(bad?.error.code, ErrorCodes.NORMALIZE);
      assert.match(bad?.error.message ?? '', /^raw\/2@41:2: .*message is not JSON/);
      // The dead letter is a DATA_MESSAGE of the one log event: replayed to the raw topic, it reads again.
      const replayed = JSON.parse(bad?.value.toString() ?? '{}') as {
        messageType: string;
        logGroup: string;
        logEvents: Array<{ message: string }>;
      };
      assert.equal(replayed.messageType, 'DATA_MESSAGE');
      assert.equal(replayed.logGroup, 'aws-cloudtrail-logs-111122223333-6f1c2a3b');
      assert.deepEqual(
        replayed.logEvents.map((e) => e.message),
        ['not a CloudTrail record'],
      );
      const again = reader().read(bad?.value ?? null, 'dlq/0@0');
      assert.equal(again.rejected[0]?.error.code, ErrorCodes.NORMALIZE);
    }
  });

  test('a CloudWatch Logs CONTROL_MESSAGE is one skip', () => {
    const o = reader('cwlogs').read(gzipSync(CWLOGS_CONTROL), 'raw/0@0');
    assert.deepEqual(o.events, []);
    assert.deepEqual(o.rejected, []);
    assert.match(o.skipped[0]?.reason ?? '', /CONTROL_MESSAGE/);
  });

  test('Kubernetes audit: ResponseComplete is an event, earlier stages skipped; a record missing fields is rejected with the message as its value', () => {
    const r = reader('auto', { source: { k8sAudit: { cluster: 'prod-eu', region: 'eu-west-1' } } });
    const outcomes = K8S.map((line, i) => r.read(Buffer.from(line), `raw/1@${i}`));
    const events = outcomes.flatMap((o) => o.events.map((e) => e.event));
    assert.equal(events.length, 8);
    assert.ok(events.every((e) => e.accountId === 'prod-eu' && e.source === 'k8s.audit'));
    assert.equal(outcomes.flatMap((o) => o.skipped).length, 3);
    const noId = r.read(Buffer.from(K8S_BAD[1] as string), 'raw/1@99');
    assert.equal(noId.format, 'k8s-audit');
    assert.equal(noId.rejected[0]?.error.code, ErrorCodes.NORMALIZE);
    assert.match(noId.rejected[0]?.error.message ?? '', /^raw\/1@99: missing auditID/);
    assert.equal(noId.rejected[0]?.value.toString(), K8S_BAD[1]);
  });

  test('a Kubernetes EventList: one event per item, positions by index', () => {
    const items = K8S.map((l) => JSON.parse(l) as unknown);
    const list = Buffer.from(JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items }));
    const o = reader().read(list, 'raw/0@7');
    assert.equal(o.format, 'k8s-audit');
    assert.equal(o.events.length, 8);
    assert.deepEqual(o.events[0]?.at, { origin: 'raw/0@7', line: null, index: 1 });
  });

  test('CloudTrail: a delivery, and one record alone (sniffed by auto)', () => {
    const record = JSON.parse(EVENTBRIDGE[1] as string).detail as Record<string, unknown>;
    const delivery = reader().read(gzipSync(JSON.stringify({ Records: [record, record] })), 'raw/0@1');
    assert.equal(delivery.format, 'cloudtrail');
    assert.equal(delivery.events.length, 2);
    const alone = reader().read(Buffer.from(JSON.stringify(record)), 'raw/0@2');
    assert.equal(alone.format, 'cloudtrail');
    assert.deepEqual(
      alone.events.map((e) => e.event.action),
      ['CreateAccessKey'],
    );
  });

  test('bad messages are rejected with the message as the value: corrupt gzip, JSON that does not parse, empty', () => {
    const gz = gzipSync(CWLOGS_DATA);
    const cut = gz.subarray(0, gz.length - 20);
    const cases: Array<[Buffer | null, string, RegExp]> = [
      [cut, ErrorCodes.DESERIALIZE, /^raw\/0@3: corrupt gzip/],
      [Buffer.from('{"detail-type": "AWS API Call via CloudTrail", "detail": {'), ErrorCodes.DESERIALIZE, /malformed JSON/],
      [Buffer.alloc(0), ErrorCodes.DESERIALIZE, /empty message/],
      [null, ErrorCodes.DESERIALIZE, /empty message/],
    ];
    for (const [bytes, code, message] of cases) {
      for (const format of ['auto', 'eventbridge'] as const) {
        const o = reader(format).read(bytes, 'raw/0@3');
        assert.equal(o.events.length, 0);
        assert.equal(o.rejected.length, 1, `${format}: ${String(bytes)}`);
        assert.equal(o.rejected[0]?.error.code, code);
        assert.match(o.rejected[0]?.error.message ?? '', message);
        assert.ok(o.rejected[0]?.value.equals(bytes ?? Buffer.alloc(0)), 'the dead letter carries the message as it came');
      }
    }
  });

  test('a message over maxMessageBytes, as received or once gunzipped, is rejected undecoded as TW_RECORD_TOO_LARGE', () => {
    const small = reader('auto', { maxMessageBytes: 64 * 1024 });
    const big = Buffer.from(JSON.stringify({ padding: 'x'.repeat(100_000) }));
    const o = small.read(big, 'raw/0@5');
    assert.equal(o.rejected[0]?.error.code, ErrorCodes.RECORD_TOO_LARGE);
    assert.match(o.rejected[0]?.error.message ?? '', /message of 100\d+ bytes is over ingest.maxMessageBytes \(65536\)/);
    // 10 MB of one character gzips to a few KB: refused once it inflates past the limit.
    const bomb = gzipSync(Buffer.alloc(10 * MiB, 0x20));
    assert.ok(bomb.length < 64 * 1024);
    const b = small.read(bomb, 'raw/0@6');
    assert.equal(b.rejected[0]?.error.code, ErrorCodes.RECORD_TOO_LARGE);
    assert.match(b.rejected[0]?.error.message ?? '', /inflates past ingest.maxMessageBytes/);
  });

  test('auto: a message no format recognizes is rejected naming the setting; with a jsonl mapping, JSON is read as mapped lines', () => {
    const line = Buffer.from(JSON.stringify({ ts: '2024-05-14T09:00:00Z', actor: { id: 'svc-a' }, op: 'Export' }));
    const unknown = reader().read(line, 'raw/0@0');
    assert.equal(unknown.format, null);
    assert.equal(unknown.rejected[0]?.error.code, ErrorCodes.DESERIALIZE);
    assert.match(unknown.rejected[0]?.error.message ?? '', /not a format trailwatch recognizes .* set ingest.format/);
    const config = loadConfig({
      env: {},
      overrides: { ingest: { jsonl: { time: 'ts', principal: 'actor.id', action: 'op', defaults: { service: 'billing' } } } },
    });
    const mapped = reader('auto', { source: { jsonl: config.ingest.jsonl } }).read(line, 'raw/0@0');
    assert.equal(mapped.format, 'jsonl');
    assert.deepEqual(
      mapped.events.map((e) => [e.event.principal, e.event.service, e.event.action]),
      [['svc-a', 'billing', 'Export']],
    );
  });

  test('a format given is used whatever the message looks like: a k8s event read as eventbridge is rejected, not sniffed', () => {
    const o = reader('eventbridge').read(Buffer.from(K8S[1] as string), 'raw/0@0');
    assert.equal(o.format, 'eventbridge');
    assert.equal(o.rejected[0]?.error.code, ErrorCodes.NORMALIZE);
    assert.match(o.rejected[0]?.error.message ?? '', /no "detail-type"/);
  });
});

describe('EventEncoder', () => {
  const event = reader('eventbridge').read(Buffer.from(EVENTBRIDGE[0] as string), 'raw/0@0').events[0]?.event as AuditEvent;

  test('key account|principal, partition by murmur2 of the key, value magic byte + schema id + Avro body: what publish writes', () => {
    const encoder = new EventEncoder({ topic: 'events', schemaId: 4242, partitions: 7, maxMessageBytes: MiB });
    const out = encoder.encode(event);
    assert.ok(!(out instanceof BadRecordError));
    assert.equal(out.topic, 'events');
    assert.equal(out.key?.toString(), eventKey(event));
    assert.equal(out.partition, partitionForKey(eventKey(event), 7));
    const value = out.value as Buffer;
    assert.equal(value[0], 0);
    assert.equal(value.readInt32BE(1), 4242);
    assert.deepEqual({ ...auditEventType.fromBuffer(value.subarray(5)) }, event);
    assert.equal(out.timestampMs, undefined, 'the client stamps the wall clock, as for publish');
  });

  test('an event too large for the events topic, or outside the schema, is a BadRecordError', () => {
    const tiny = new EventEncoder({ topic: 'events', schemaId: 1, partitions: 1, maxMessageBytes: 200 });
    const tooLarge = tiny.encode(event);
    assert.ok(tooLarge instanceof BadRecordError);
    assert.equal(tooLarge.code, ErrorCodes.RECORD_TOO_LARGE);
    const encoder = new EventEncoder({ topic: 'events', schemaId: 1, partitions: 1, maxMessageBytes: MiB });
    const notInSchema = encoder.encode({ ...event, eventTimeMs: 'soon' as unknown as number });
    assert.ok(notInSchema instanceof BadRecordError);
    assert.equal(notInSchema.code, ErrorCodes.DESERIALIZE);
  });
});

test('ingest.format accepts auto and every Source format, nothing else', () => {
  assert.deepEqual([...INGEST_FORMATS].sort(), ['auto', ...FORMATS].sort());
  for (const format of INGEST_FORMATS) assert.equal(loadConfig({ env: {}, overrides: { ingest: { format } } }).ingest.format, format);
  assert.throws(() => loadConfig({ env: {}, overrides: { ingest: { format: 'xml' as IngestFormat } } }), /ingest.format/);
  assert.deepEqual(loadConfig({ env: { TRAILWATCH_INGEST__RAW_TOPICS: 'a, b' } }).ingest.rawTopics, ['a', 'b']);
});
