import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ErrorCodes } from '../../src/errors.ts';
import { type DeliveryItem, expandInputPaths, locateJsonError, type NormalizedItem } from '../../src/ingest/files.ts';
import { normalizeDeliveries, readCloudTrailDeliveries } from '../../src/ingest/sources/cloudtrail.ts';
import { FIXTURES_DIR, INVICTUS_DIR, loadDeliveriesDirectly, sharedCloudTrailMissing } from '../helpers/shared.ts';

const DELIVERIES = join(FIXTURES_DIR, 'cloudtrail/deliveries');
const IDENTITIES = join(DELIVERIES, 'identities.json');
const GAPS = join(DELIVERIES, 'gaps.json');
const MALFORMED = join(DELIVERIES, 'invalid/malformed.json');
const NO_RECORDS = join(DELIVERIES, 'invalid/no-records.json');

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** `file:index` of each item, with the kind, for compact order assertions. */
function outline(items: (DeliveryItem | NormalizedItem)[]): string[] {
  return items.map((i) => `${i.kind} ${i.file}:${i.index ?? '-'}`);
}

function errorsOf(items: (DeliveryItem | NormalizedItem)[]): Extract<DeliveryItem, { kind: 'error' }>[] {
  return items.filter((i): i is Extract<DeliveryItem, { kind: 'error' }> => i.kind === 'error');
}

function onlyError(items: DeliveryItem[]): Extract<DeliveryItem, { kind: 'error' }> {
  assert.equal(items.length, 1, `expected one item, got ${outline(items).join(', ')}`);
  const [item] = items;
  assert.ok(item?.kind === 'error', 'expected an error item');
  return item;
}

const tiny = (id: string): Record<string, unknown> => ({
  eventVersion: '1.09',
  userIdentity: { type: 'AWSService', invokedBy: 'config.amazonaws.com' },
  eventTime: '2024-03-01T10:00:00Z',
  eventSource: 'sts.amazonaws.com',
  eventName: 'AssumeRole',
  awsRegion: 'eu-west-1',
  eventID: id,
  readOnly: true,
  recipientAccountId: '111122223333',
});

describe('readCloudTrailDeliveries on the fixture directory', () => {
  test('walks it recursively in sorted order, skipping non-JSON files', async () => {
    const items = await collect(readCloudTrailDeliveries([DELIVERIES]));
    const expected = [
      ...Array.from({ length: 7 }, (_, i) => `record ${GAPS}:${i}`),
      ...Array.from({ length: 12 }, (_, i) => `record ${IDENTITIES}:${i}`),
      `error ${MALFORMED}:-`,
      `error ${NO_RECORDS}:-`,
    ];
    assert.deepEqual(outline(items), expected);
  });

  test('malformed JSON: one error naming the file, line and column', async () => {
    const item = onlyError(await collect(readCloudTrailDeliveries([MALFORMED])));
    assert.equal(item.error.code, ErrorCodes.INPUT_FILE);
    assert.equal(item.file, MALFORMED);
    assert.equal(item.index, null);
    assert.equal(item.error.message, `${MALFORMED}: malformed JSON at line 3 column 84: expected a property name but found "}"`);
    assert.equal(item.error.details.line, 3);
    assert.equal(item.error.details.column, 84);
  });

  test('a document without a Records array is an error, not an empty file', async () => {
    const item = onlyError(await collect(readCloudTrailDeliveries([NO_RECORDS])));
    assert.equal(item.error.code, ErrorCodes.INPUT_FILE);
    assert.equal(
      item.error.message,
      `${NO_RECORDS}: not a CloudTrail delivery: no "Records" array (top-level keys: records, note); for other inputs pass --format`,
    );
  });

  test('a path that does not exist is an error item, and the other paths are still read', async () => {
    const ghost = join(DELIVERIES, 'no-such-delivery.json');
    const items = await collect(readCloudTrailDeliveries([GAPS, ghost, IDENTITIES]));
    assert.deepEqual(
      outline(items).filter((line) => !line.startsWith('record')),
      [`error ${ghost}:-`],
    );
    assert.equal(items.filter((i) => i.kind === 'record').length, 19);
    // Named paths keep the order they were given in.
    assert.equal(
      items.findIndex((i) => i.kind === 'error'),
      7,
    );
    const [missing] = errorsOf(items);
    assert.equal(missing?.error.code, ErrorCodes.INPUT_FILE);
    assert.equal(missing?.error.message, `${ghost}: no such file or directory`);
  });

  test('a file named twice, or inside a named directory, is read once', async () => {
    const items = await collect(readCloudTrailDeliveries([IDENTITIES, DELIVERIES, IDENTITIES]));
    assert.equal(items.filter((i) => i.kind === 'record' && i.file === IDENTITIES).length, 12);
  });
});

describe('normalizeDeliveries', () => {
  test('bad records become file:index errors; good records in the same file still come out', async () => {
    const items = await collect(normalizeDeliveries(readCloudTrailDeliveries([GAPS])));
    assert.deepEqual(outline(items), [
      `event ${GAPS}:0`,
      `error ${GAPS}:1`,
      `event ${GAPS}:2`,
      `error ${GAPS}:3`,
      `error ${GAPS}:4`,
      `error ${GAPS}:5`,
      `event ${GAPS}:6`,
    ]);
    const errors = errorsOf(items);
    assert.deepEqual(
      errors.map((e) => e.error.message),
      [
        `${GAPS}:1: missing eventTime`,
        `${GAPS}:3: missing eventName`,
        `${GAPS}:4: eventTime "last tuesday" is not an ISO-8601 UTC time`,
        `${GAPS}:5: record is not an object (got a string)`,
      ],
    );
    for (const e of errors) {
      assert.equal(e.error.code, ErrorCodes.NORMALIZE);
      assert.equal(e.error.details.file, GAPS);
      assert.equal(e.error.details.index, e.index);
    }
    const events = items.flatMap((i) => (i.kind === 'event' ? [i.event.eventId] : []));
    assert.deepEqual(events, [
      '00000000-0000-4000-8000-000000000020',
      '00000000-0000-4000-8000-000000000022',
      '00000000-0000-4000-8000-000000000025',
    ]);
  });

  test('file-level errors pass through unchanged', async () => {
    const items = await collect(normalizeDeliveries(readCloudTrailDeliveries([MALFORMED, IDENTITIES])));
    assert.equal(items[0]?.kind, 'error');
    assert.equal(items[0]?.error.code, ErrorCodes.INPUT_FILE);
    assert.equal(items.filter((i) => i.kind === 'event').length, 12);
  });

  test('accepts a plain iterable', async () => {
    const items = await collect(normalizeDeliveries([{ kind: 'record', file: 'inline', index: 0, record: tiny('inline-0') }]));
    assert.equal(items[0]?.kind === 'event' && items[0].event.principal, 'config.amazonaws.com');
  });
});

describe('readCloudTrailDeliveries on generated files', () => {
  let dir = '';
  const body = JSON.stringify({ Records: [tiny('gz-0'), tiny('gz-1'), tiny('gz-2')] });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trailwatch-files-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a .json.gz delivery is decompressed', async () => {
    const file = join(dir, 'good.json.gz');
    await writeFile(file, gzipSync(body));
    const items = await collect(readCloudTrailDeliveries([file]));
    assert.deepEqual(outline(items), [`record ${file}:0`, `record ${file}:1`, `record ${file}:2`]);
    assert.deepEqual(
      items.map((i) => (i.kind === 'record' ? (i.record as { eventID: string }).eventID : null)),
      ['gz-0', 'gz-1', 'gz-2'],
    );
  });

  test('a gzip cut short is one error naming the file', async () => {
    const file = join(dir, 'cut.json.gz');
    const gz = gzipSync(body);
    await writeFile(file, gz.subarray(0, Math.floor(gz.length / 2)));
    const item = onlyError(await collect(readCloudTrailDeliveries([file])));
    assert.equal(item.error.code, ErrorCodes.INPUT_FILE);
    assert.equal(item.file, file);
    assert.equal(item.index, null);
    assert.ok(item.error.message.startsWith(`${file}: truncated gzip: `), item.error.message);
  });

  test('gzip content is recognised by its bytes, whatever the name', async () => {
    const file = join(dir, 'downloaded.json');
    await writeFile(file, gzipSync(body));
    assert.equal((await collect(readCloudTrailDeliveries([file]))).filter((i) => i.kind === 'record').length, 3);
    const fake = join(dir, 'fake.json.gz');
    await writeFile(fake, body);
    assert.equal(onlyError(await collect(readCloudTrailDeliveries([fake]))).error.message, `${fake}: named .gz but not gzip data`);
  });

  test('files over maxFileBytes are refused, compressed or not', async () => {
    const plain = join(dir, 'big.json');
    const gz = join(dir, 'big.json.gz');
    await writeFile(plain, body);
    await writeFile(gz, gzipSync(body));
    const limit = body.length - 1;
    const a = onlyError(await collect(readCloudTrailDeliveries([plain], { maxFileBytes: limit })));
    assert.equal(a.error.message, `${plain}: file is ${body.length} bytes, over the limit of ${limit} bytes`);
    const b = onlyError(await collect(readCloudTrailDeliveries([gz], { maxFileBytes: limit })));
    assert.equal(b.error.message, `${gz}: decompresses to more than the limit of ${limit} bytes`);
    assert.equal((await collect(readCloudTrailDeliveries([plain], { maxFileBytes: body.length }))).length, 3);
  });

  test('a byte-order mark is tolerated; invalid UTF-8 and non-object documents are errors', async () => {
    const bom = join(dir, 'bom.json');
    await writeFile(bom, `\uFEFF${body}`);
    assert.equal((await collect(readCloudTrailDeliveries([bom]))).length, 3);
    const latin1 = join(dir, 'latin1.json');
    await writeFile(latin1, Buffer.concat([Buffer.from('{"Records":[{"eventName":"'), Buffer.from([0xe9]), Buffer.from('"}]}')]));
    assert.equal(onlyError(await collect(readCloudTrailDeliveries([latin1]))).error.message, `${latin1}: not valid UTF-8 text`);
    const array = join(dir, 'array.json');
    await writeFile(array, JSON.stringify([tiny('a')]));
    assert.equal(
      onlyError(await collect(readCloudTrailDeliveries([array]))).error.message,
      `${array}: not a CloudTrail delivery: no "Records" array (top level is an array); for other inputs pass --format`,
    );
  });

  test('expandInputPaths keeps the extensions asked for and survives symlink loops', async () => {
    const root = join(dir, 'tree');
    await mkdir(join(root, 'b/nested'), { recursive: true });
    await writeFile(join(root, 'b/nested/z.jsonl'), '');
    await writeFile(join(root, 'a.jsonl'), '');
    await writeFile(join(root, 'a.json'), '');
    await writeFile(join(root, 'notes.txt'), '');
    await symlink(root, join(root, 'b/loop'));
    const found = await expandInputPaths([root], ['.jsonl']);
    assert.deepEqual(found, [
      { kind: 'file', file: join(root, 'a.jsonl') },
      { kind: 'file', file: join(root, 'b/nested/z.jsonl') },
    ]);
  });
});

describe('locateJsonError', () => {
  test('agrees with JSON.parse on validity and says where it broke', () => {
    const cases: [text: string, at: { line: number; column: number } | null][] = [
      ['{"Records":[{"a":1}]}', null],
      [' [1, -2.5e3, "\\u00e9", true, false, null, {}] ', null],
      ['{"Records":[', { line: 1, column: 13 }],
      ['{\n  "a": tru\n}', { line: 2, column: 8 }],
      ['{"a":1}\n{"b":2}', { line: 2, column: 1 }],
      ['["bad \\q escape"]', { line: 1, column: 7 }],
      ['[01]', { line: 1, column: 3 }],
      ['', { line: 1, column: 1 }],
    ];
    for (const [text, at] of cases) {
      let valid = true;
      try {
        JSON.parse(text);
      } catch {
        valid = false;
      }
      const found = locateJsonError(text);
      assert.equal(found === null, valid, text);
      if (at) assert.deepEqual({ line: found?.line, column: found?.column }, at, text);
    }
  });
});

describe('readCloudTrailDeliveries on the shared invictus CloudTrail data', () => {
  test('55 deliveries, each yielding exactly its Records, 2,900 in all, and all normalize', async (t) => {
    const missing = sharedCloudTrailMissing();
    if (missing !== null) return t.skip(missing);
    const dir = join(INVICTUS_DIR, 'CloudTrail');
    const direct = loadDeliveriesDirectly(dir);
    const items = await collect(readCloudTrailDeliveries([INVICTUS_DIR]));
    assert.deepEqual(errorsOf(items), []);
    const perFile = new Map<string, number>();
    for (const i of items) perFile.set(i.file, (perFile.get(i.file) ?? 0) + 1);
    assert.equal(perFile.size, 55);
    assert.deepEqual(
      [...perFile],
      direct.map((d) => [d.file, d.records.length]),
    );
    assert.equal(items.length, 2900);

    const normalized = await collect(normalizeDeliveries(items));
    assert.deepEqual(errorsOf(normalized), []);
    assert.equal(normalized.length, 2900);
  });

  test('a gzipped copy of a real delivery reads the same', async (t) => {
    const missing = sharedCloudTrailMissing();
    if (missing !== null) return t.skip(missing);
    const [first] = loadDeliveriesDirectly(join(INVICTUS_DIR, 'CloudTrail'));
    assert.ok(first);
    const dir = await mkdtemp(join(tmpdir(), 'trailwatch-files-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const gz = join(dir, 'copy.json.gz');
    await writeFile(gz, gzipSync(await readFile(first.file)));
    const items = await collect(readCloudTrailDeliveries([gz]));
    assert.deepEqual(
      items.map((i) => (i.kind === 'record' ? i.record : i.error.message)),
      first.records,
    );
  });
});
