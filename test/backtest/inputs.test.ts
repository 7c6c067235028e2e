import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import {
  type CountsItem,
  countsEvents,
  formatOfPath,
  type InputItem,
  inputRows,
  parseTimestamp,
  readCountsRows,
  readInputs,
  splitCsvLine,
} from '../../src/backtest/inputs.ts';
import { ErrorCodes } from '../../src/errors.ts';
import { FIXTURES_DIR } from '../helpers/shared.ts';
import { BAD_LINES_JSONL, COUNTS_CSV, ensureFixtures, SPIKE_JSONL } from './fixtures.ts';

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

function errors(items: (InputItem | CountsItem)[]): string[] {
  return items.flatMap((i) => (i.kind === 'error' ? [`${i.error.message} [${i.error.code}]`] : []));
}

let dir = '';
before(async () => {
  ensureFixtures();
  dir = await mkdtemp(join(tmpdir(), 'tw-backtest-inputs-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('formatOfPath', () => {
  test('by extension; directories are CloudTrail delivery trees', async () => {
    assert.equal(await formatOfPath('a/b.json'), 'cloudtrail');
    assert.equal(await formatOfPath('a/b.json.gz'), 'cloudtrail');
    assert.equal(await formatOfPath('b.jsonl'), 'jsonl');
    assert.equal(await formatOfPath('b.NDJSON'), 'jsonl');
    assert.equal(await formatOfPath('b.jsonl.gz'), 'jsonl');
    assert.equal(await formatOfPath('b.csv'), 'counts');
    assert.equal(await formatOfPath(FIXTURES_DIR), 'cloudtrail');
    assert.equal(await formatOfPath('nothing-here.txt'), null);
  });
});

describe('JSON lines', () => {
  test('bad lines are reported with file and line; the rest goes on', async () => {
    const items = await collect(readInputs([BAD_LINES_JSONL], 'jsonl'));
    assert.deepEqual(
      items.filter((i) => i.kind === 'event').map((i) => i.index),
      [1, 2, 5, 9],
    );
    const f = BAD_LINES_JSONL;
    assert.deepEqual(errors(items), [
      `${f}:3: malformed JSON at column 55: expected a property name but found end of input [${ErrorCodes.DESERIALIZE}]`,
      `${f}:6: not a valid AuditEvent: eventTimeMs: expected long, got nothing (missing) [${ErrorCodes.DESERIALIZE}]`,
      `${f}:7: not a JSON object (got an array) [${ErrorCodes.DESERIALIZE}]`,
      `${f}:8: not a valid AuditEvent: tenant: not a field of AuditEvent [${ErrorCodes.DESERIALIZE}]`,
    ]);
  });

  test('gzipped lines, a missing file and a truncated gzip', async () => {
    const text = (await collect(readInputs([SPIKE_JSONL], 'jsonl'))).length;
    const gz = join(dir, 'events.jsonl.gz');
    const { readFileSync } = await import('node:fs');
    const raw = gzipSync(readFileSync(SPIKE_JSONL));
    await writeFile(gz, raw);
    assert.equal((await collect(readInputs([gz], 'jsonl'))).length, text);

    const cut = join(dir, 'cut.jsonl.gz');
    await writeFile(cut, raw.subarray(0, Math.floor(raw.length / 2)));
    const cutItems = await collect(readInputs([cut], 'jsonl'));
    assert.ok(cutItems.filter((i) => i.kind === 'event').length > 0);
    assert.match(errors(cutItems).at(-1) ?? '', /cut\.jsonl\.gz: (truncated gzip|cannot read)/);

    const missing = join(dir, 'missing.jsonl');
    assert.deepEqual(errors(await collect(readInputs([missing], 'jsonl'))), [
      `${missing}: no such file or directory [${ErrorCodes.INPUT_FILE}]`,
    ]);

    const fake = join(dir, 'fake.jsonl.gz');
    await writeFile(fake, '{}\n');
    assert.deepEqual(errors(await collect(readInputs([fake], 'jsonl'))), [
      `${fake}: named .gz but not gzip data [${ErrorCodes.INPUT_FILE}]`,
    ]);
  });
});

describe('counts CSV', () => {
  test('rows: ISO-8601 or epoch ms, quoted keys, header in any order with extra columns', async () => {
    const file = join(dir, 'counts.csv');
    await writeFile(
      file,
      [
        'count,host,key,timestamp',
        '3,h1,api.calls,2026-01-05T10:00:00Z',
        '2,h1,"a,b ""c""",1767607200000',
        '',
        '1,h1,x,2026-01-05 10:01:00+0100',
        '1.5,h1,x,2026-01-05T10:02:00Z',
        '1,h1,x,2026-01-05T10:02:00',
        '1,h1,x,1767607200',
        '-1,h1,x,2026-01-05T10:02:00Z',
        '1,h1,,2026-01-05T10:02:00Z',
        '1,h1',
        '1,h1,"x,2026-01-05T10:02:00Z',
      ].join('\r\n'),
    );
    const items = await collect(readCountsRows([file]));
    const rows = items.flatMap((i) => (i.kind === 'row' ? [i.row] : []));
    assert.deepEqual(
      rows.map((r) => [r.line, r.key, r.timestampMs, r.value]),
      [
        [2, 'api.calls', Date.UTC(2026, 0, 5, 10), 3],
        [3, 'a,b "c"', 1767607200000, 2],
        [5, 'x', Date.UTC(2026, 0, 5, 9, 1), 1],
      ],
    );
    const code = ErrorCodes.NORMALIZE;
    assert.deepEqual(errors(items), [
      `${file}:6: count "1.5" is not a whole number ≥ 0 [${code}]`,
      `${file}:7: timestamp "2026-01-05T10:02:00" is neither epoch milliseconds nor ISO-8601 (a time zone is required, e.g. Z) [${code}]`,
      `${file}:8: timestamp 1767607200 looks like epoch seconds; give epoch milliseconds or ISO-8601 [${code}]`,
      `${file}:9: count "-1" is not a whole number ≥ 0 [${code}]`,
      `${file}:10: empty key [${code}]`,
      `${file}:11: expected at least 4 fields, got 2 [${code}]`,
      `${file}:12: unbalanced quotes [${code}]`,
    ]);
  });

  test('a file without the header is one error, not a row per line', async () => {
    const file = join(dir, 'noheader.csv');
    await writeFile(file, '2026-01-05T10:00:00Z,a,1\n2026-01-05T10:01:00Z,a,1\n');
    assert.deepEqual(errors(await collect(readCountsRows([file]))), [
      `${file}:1: the header must name the columns timestamp,key,count; missing timestamp, key, count (got "2026-01-05T10:00:00Z,a,1") [${ErrorCodes.INPUT_FILE}]`,
    ]);
  });

  test('counts have no upper bound (a row is never expanded), but must be exact as a double', async () => {
    const file = join(dir, 'large.csv');
    await writeFile(file, 'timestamp,key,count\n2026-01-05T10:00:00Z,a,50000000\n2026-01-05T10:00:00Z,b,9007199254740993\n');
    const items = await collect(readCountsRows([file]));
    assert.deepEqual(
      items.flatMap((i) => (i.kind === 'row' ? [i.row.value] : [])),
      [50_000_000],
    );
    assert.deepEqual(errors(items), [
      `${file}:3: count 9007199254740993 is over 9007199254740991, the largest whole number kept exactly [${ErrorCodes.NORMALIZE}]`,
    ]);
  });

  test('the reference expansion: each row stands for value write calls with deterministic ids', () => {
    const events = [...countsEvents({ timestampMs: 1767607200000, key: 'api.calls', value: 3 })];
    assert.deepEqual(
      events.map((e) => e.eventId),
      ['api.calls|1767607200000|0', 'api.calls|1767607200000|1', 'api.calls|1767607200000|2'],
    );
    const e = events[0];
    assert.equal(e?.service, 'counts');
    assert.equal(e?.action, 'api.calls');
    assert.equal(e?.principal, 'api.calls');
    assert.equal(e?.readOnly, false);
    assert.equal(e?.eventTimeMs, 1767607200000);
  });

  test('inputRows sorts rows by time (ties in input order) unless presorted, and reports refusals', async () => {
    const file = join(dir, 'unsorted.csv');
    await writeFile(file, 'timestamp,key,count\n1767607260000,a,2\n1767607200000,b,1\nnope,x,1\n1767607260000,c,1\n');
    const rejected: string[] = [];
    let read = 0;
    const rows = await collect(inputRows([file], { onRejected: (i) => rejected.push(i.error.message), onRead: () => read++ }));
    assert.deepEqual(
      rows.map((r) => [r.key, r.value]),
      [
        ['b', 1],
        ['a', 2],
        ['c', 1],
      ],
    );
    assert.equal(read, 4);
    assert.deepEqual(rejected, [`${file}:4: timestamp "nope" is neither epoch milliseconds nor ISO-8601`]);
    const presorted = await collect(inputRows([file], { presorted: true }));
    assert.deepEqual(
      presorted.map((r) => r.key),
      ['a', 'b', 'c'],
    );
  });

  test('the committed fixture reads cleanly', async () => {
    const items = await collect(readCountsRows([COUNTS_CSV]));
    assert.deepEqual(errors(items), []);
    assert.equal(items.length, 200);
  });
});

describe('metric series CSV (a value column named)', () => {
  const metricFile = async (name: string, lines: string[]): Promise<string> => {
    const file = join(dir, name);
    await writeFile(file, `${lines.join('\n')}\n`);
    return file;
  };

  test('fractional values are read; the column is matched case-insensitively; count is just another column', async () => {
    const file = await metricFile('latency.csv', [
      'Timestamp,Key,count,Latency_MS',
      '2026-01-05T10:00:00Z,p99,3,12.75',
      '2026-01-05T10:01:00Z,p99,x,0.003',
      '2026-01-05T10:02:00Z,p99,1,1e3',
      '2026-01-05T10:03:00Z,p99,1,0',
    ]);
    const items = await collect(readCountsRows([file], { valueColumn: 'latency_ms', metric: true }));
    assert.deepEqual(errors(items), []);
    assert.deepEqual(
      items.flatMap((i) => (i.kind === 'row' ? [[i.row.line, i.row.value]] : [])),
      [
        [2, 12.75],
        [3, 0.003],
        [4, 1000],
        [5, 0],
      ],
    );
    // The same file as counts: its count column is read, and a non-number there is refused.
    assert.deepEqual(
      errors(await collect(readCountsRows([file])))[0],
      `${file}:3: count "x" is not a whole number ≥ 0 [${ErrorCodes.NORMALIZE}]`,
    );
  });

  test('a negative value is refused with its file:line unless negatives are allowed (detector.direction both)', async () => {
    const file = await metricFile('delta.csv', [
      'timestamp,key,value',
      '2026-01-05T10:00:00Z,balance,5.5',
      '2026-01-05T10:01:00Z,balance,-3.25',
      '2026-01-05T10:02:00Z,balance,-0.5',
      '2026-01-05T10:03:00Z,balance,abc',
      '2026-01-05T10:04:00Z,balance,Infinity',
      '2026-01-05T10:05:00Z,balance,',
    ]);
    const code = ErrorCodes.NORMALIZE;
    const notNumbers = [
      `${file}:5: value "abc" is not a finite number [${code}]`,
      `${file}:6: value "Infinity" is not a finite number [${code}]`,
      `${file}:7: value "" is not a finite number [${code}]`,
    ];
    const up = await collect(readCountsRows([file], { valueColumn: 'value', metric: true }));
    assert.deepEqual(errors(up), [
      `${file}:3: value -3.25 is negative: a series that goes below zero needs detector.direction both [${code}]`,
      `${file}:4: value -0.5 is negative: a series that goes below zero needs detector.direction both [${code}]`,
      ...notNumbers,
    ]);
    const both = await collect(readCountsRows([file], { valueColumn: 'value', metric: true, allowNegative: true }));
    assert.deepEqual(errors(both), notNumbers);
    assert.deepEqual(
      both.flatMap((i) => (i.kind === 'row' ? [i.row.value] : [])),
      [5.5, -3.25, -0.5],
    );
  });

  test('a header without the value column names it', async () => {
    const file = await metricFile('nocolumn.csv', ['timestamp,key,count', '2026-01-05T10:00:00Z,a,1']);
    assert.deepEqual(errors(await collect(readCountsRows([file], { valueColumn: 'value', metric: true }))), [
      `${file}:1: the header must name the columns timestamp,key,value; missing value (got "timestamp,key,count") [${ErrorCodes.INPUT_FILE}]`,
    ]);
  });
});

describe('helpers', () => {
  test('splitCsvLine', () => {
    assert.deepEqual(splitCsvLine('a,b,c'), ['a', 'b', 'c']);
    assert.deepEqual(splitCsvLine('"a,1",,"x""y"'), ['a,1', '', 'x"y']);
    assert.deepEqual(splitCsvLine(''), ['']);
    assert.equal(splitCsvLine('"open'), null);
  });

  test('parseTimestamp', () => {
    assert.equal(parseTimestamp('2026-01-05T10:00:00.250Z'), Date.UTC(2026, 0, 5, 10, 0, 0, 250));
    assert.equal(parseTimestamp('2026-01-05T10:00Z'), Date.UTC(2026, 0, 5, 10));
    assert.equal(parseTimestamp('2026-01-05T12:00:00+02:00'), Date.UTC(2026, 0, 5, 10));
    assert.equal(parseTimestamp('1767607200000'), 1767607200000);
    assert.equal(typeof parseTimestamp('yesterday'), 'string');
    assert.equal(typeof parseTimestamp('2026-13-45T10:00:00Z'), 'string');
  });
});

describe('backtest reads every source through the same sources as publish', () => {
  const K8S = join(FIXTURES_DIR, 'k8s-audit/audit.jsonl');
  const EVENTBRIDGE = join(FIXTURES_DIR, 'eventbridge/cloudtrail-events.jsonl');

  test('the format of a file whose name says nothing is sniffed from its content', async () => {
    assert.equal(await formatOfPath(K8S), 'k8s-audit');
    assert.equal(await formatOfPath(EVENTBRIDGE), 'eventbridge');
    assert.equal(await formatOfPath(join(FIXTURES_DIR, 'cwlogs/data-message.json')), 'cwlogs');
    assert.equal(await formatOfPath(join(FIXTURES_DIR, 'cloudtrail/deliveries/gaps.json')), 'cloudtrail');
  });

  test('k8s-audit: events, skips counted apart, --since/--until by event time', async () => {
    const skipped = new Map<string, number>();
    const onSkipped = (reason: string, n: number): void => {
      skipped.set(reason, (skipped.get(reason) ?? 0) + n);
    };
    const all = await collect(readInputs([K8S], 'k8s-audit', { onSkipped }));
    assert.equal(all.filter((i) => i.kind === 'event').length, 8);
    assert.deepEqual(errors(all), []);
    assert.equal(
      [...skipped.values()].reduce((a, b) => a + b, 0),
      3,
    );
    assert.equal(all[0]?.kind === 'event' ? all[0].index : null, 2, 'the line of the first ResponseComplete');
    skipped.clear();
    const range = { sinceMs: Date.parse('2024-05-14T09:13:00Z'), untilMs: Date.parse('2024-05-14T09:15:05Z') };
    const some = await collect(readInputs([K8S], 'k8s-audit', { range, onSkipped }));
    assert.deepEqual(
      some.flatMap((i) => (i.kind === 'event' ? [i.event.action] : [])),
      ['create:pods/exec', 'patch:deployments', 'delete:configmaps'],
    );
    assert.equal(skipped.get('outside --since/--until (by event time)'), 5);
  });
});
