import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BadRecordError } from '../../src/errors.ts';
import {
  DLQ_HEADERS,
  deadLetterMessages,
  matchesDeadLetter,
  previewBytes,
  REPLAYED_FROM_HEADER,
  readDeadLetter,
  replayRecord,
} from '../../src/runtime/dead-letter.ts';
import { recordBytes } from '../../src/runtime/produce.ts';

const FAILED_AT = '2026-05-01T12:00:00.000Z';

function deadLetterMessage(headers: Record<string, string | Buffer> = {}) {
  return {
    key: Buffer.from('acct|alice'),
    value: Buffer.from([0, 0, 0, 0, 7, 0xff]),
    offset: '42',
    timestamp: '1700000000000',
    headers: {
      origin: Buffer.from('svc'),
      [DLQ_HEADERS.code]: Buffer.from('TW_DESERIALIZE'),
      [DLQ_HEADERS.reason]: Buffer.from('bad magic byte'),
      [DLQ_HEADERS.topic]: Buffer.from('trailwatch.events'),
      [DLQ_HEADERS.partition]: Buffer.from('2'),
      [DLQ_HEADERS.offset]: Buffer.from('1234'),
      [DLQ_HEADERS.failedAt]: Buffer.from(FAILED_AT),
      ...headers,
    },
  };
}

describe('readDeadLetter', () => {
  test('reads the reason headers and keeps the original ones apart', () => {
    const letter = readDeadLetter('trailwatch.dlq', 1, deadLetterMessage());
    assert.deepEqual(letter.dlq, { topic: 'trailwatch.dlq', partition: 1, offset: '42' });
    assert.equal(letter.failedAtMs, Date.parse(FAILED_AT));
    assert.equal(letter.code, 'TW_DESERIALIZE');
    assert.equal(letter.reason, 'bad magic byte');
    assert.deepEqual(letter.source, { topic: 'trailwatch.events', partition: 2, offset: '1234' });
    assert.deepEqual(letter.originalHeaders, { origin: Buffer.from('svc') });
  });

  test('a record without the headers: unknown code, the record timestamp as failure time', () => {
    const letter = readDeadLetter('dlq', 0, { key: null, value: null, offset: '0', timestamp: '1700000000000', headers: {} });
    assert.equal(letter.code, 'unknown');
    assert.equal(letter.failedAtMs, 1_700_000_000_000);
    assert.deepEqual(letter.source, { topic: undefined, partition: undefined, offset: undefined });
  });
});

describe('matchesDeadLetter', () => {
  const letter = readDeadLetter('dlq', 0, deadLetterMessage());
  test('every given filter must hold; none given lets everything through', () => {
    assert.equal(matchesDeadLetter(letter, {}), true);
    assert.equal(matchesDeadLetter(letter, { codes: new Set(['TW_DESERIALIZE', 'TW_NORMALIZE']) }), true);
    assert.equal(matchesDeadLetter(letter, { codes: new Set(['TW_NORMALIZE']) }), false);
    assert.equal(matchesDeadLetter(letter, { sourceTopics: new Set(['trailwatch.events']) }), true);
    assert.equal(matchesDeadLetter(letter, { sourceTopics: new Set(['other']) }), false);
    assert.equal(matchesDeadLetter(letter, { sinceMs: Date.parse(FAILED_AT) }), true);
    assert.equal(matchesDeadLetter(letter, { sinceMs: Date.parse(FAILED_AT) + 1 }), false);
    assert.equal(matchesDeadLetter(letter, { codes: new Set(['TW_DESERIALIZE']), sourceTopics: new Set(['other']) }), false);
  });
});

describe('replayRecord', () => {
  test('original key, bytes and headers, the dead-letter headers out, replayed-from in', () => {
    const message = deadLetterMessage({ [REPLAYED_FROM_HEADER]: Buffer.from('dlq/0/1') });
    const letter = readDeadLetter('trailwatch.dlq', 1, message);
    const record = replayRecord(letter);
    assert.equal(record.key, message.key);
    assert.equal(record.value, message.value);
    assert.deepEqual(record.headers, { origin: Buffer.from('svc'), [REPLAYED_FROM_HEADER]: 'trailwatch.dlq/1/42' });
  });
});

describe('previewBytes', () => {
  test('null, empty', () => {
    assert.equal(previewBytes(null), 'null');
    assert.equal(previewBytes(Buffer.alloc(0)), '(empty)');
  });

  test('printable UTF-8 as a JSON string, escaped, cut with …', () => {
    assert.equal(previewBytes(Buffer.from('{"a":1}\n')), '"{\\"a\\":1}\\n"');
    assert.equal(previewBytes(Buffer.from('héllo wörld ✓'), 5), '"héllo"…');
    assert.equal(previewBytes(Buffer.from('x'.repeat(1_000)), 3), '"xxx"…');
  });

  test('a multi-byte character cut at the edge of the bytes looked at is still text', () => {
    const text = 'é'.repeat(100);
    assert.equal(previewBytes(Buffer.from(text), 10), `"${'é'.repeat(10)}"…`);
  });

  test('binary, control characters and bidi overrides as hex', () => {
    assert.equal(previewBytes(Buffer.from([0, 0, 0, 3, 0xe9])), 'hex:00000003e9');
    assert.equal(previewBytes(Buffer.from([0xff, 0xfe, 0x41])), 'hex:fffe41');
    assert.equal(previewBytes(Buffer.from('ok\x1b[2J')), `hex:${Buffer.from('ok\x1b[2J').toString('hex')}`);
    assert.match(previewBytes(Buffer.from('abc\u202Edef')), /^hex:/);
    assert.equal(previewBytes(Buffer.alloc(100, 0xff), 8), 'hex:ffffffff…');
  });
});

describe('deadLetterMessages', () => {
  const error = new BadRecordError('TW_RECORD_TOO_LARGE', 'too large');
  const letter = (value: Buffer, headers: Record<string, string> = { origin: 'svc' }) => ({
    topic: 'trailwatch.events',
    partition: 2,
    message: { key: Buffer.from('acct|alice'), value, headers, offset: '77', timestamp: '1500000000000' },
    error,
  });

  test('stamps the letter with the time of the failure, not the original record time', () => {
    const [m] = deadLetterMessages('trailwatch.dlq', [letter(Buffer.from('abc'))], 1_800_000_000_000);
    assert.equal(m?.timestamp, '1800000000000');
    assert.equal(m?.value?.toString(), 'abc');
    assert.equal(m?.headers?.[DLQ_HEADERS.truncated], undefined);
  });

  test('a letter over the bound keeps the first bytes that fit and says how large the original was', () => {
    const value = Buffer.alloc(50_000, 0x62);
    const [m] = deadLetterMessages('trailwatch.dlq', [letter(value)], 0, 10_000);
    assert.ok(m);
    assert.equal(m.headers?.[DLQ_HEADERS.truncated], '50000');
    assert.equal(m.headers?.origin, 'svc', 'small original headers stay');
    assert.equal(m.headers?.[DLQ_HEADERS.offset], '77');
    assert.ok(recordBytes({ key: m.key ?? null, value: m.value as Buffer, headers: m.headers }) <= 10_000);
    assert.ok(value.subarray(0, (m.value as Buffer).length).equals(m.value as Buffer));
    assert.ok((m.value as Buffer).length > 9_000, 'as much as fits');
    const read = readDeadLetter('trailwatch.dlq', 0, {
      ...m,
      key: m.key as Buffer,
      value: m.value as Buffer,
      offset: '0',
      timestamp: '0',
      headers: m.headers ?? {},
    });
    assert.equal(read.truncatedFromBytes, 50_000);
  });

  test('original headers too large to fit are dropped, and counted', () => {
    const [m] = deadLetterMessages('trailwatch.dlq', [letter(Buffer.from('v'), { big: 'h'.repeat(20_000) })], 0, 10_000);
    assert.equal(m?.headers?.big, undefined);
    assert.ok(Number(m?.headers?.[DLQ_HEADERS.headersDropped]) > 20_000);
    assert.equal(m?.value?.toString(), 'v');
    assert.equal(m?.headers?.[DLQ_HEADERS.truncated], undefined);
  });
});
