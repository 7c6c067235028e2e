import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ErrorCodes } from '../../../src/errors.ts';
import { outcomeOf, planInputs, readPlanned, type TimeRange } from '../../../src/ingest/inputs.ts';
import { type ReadItem, Skip } from '../../../src/ingest/source.ts';
import { cloudTrailSource, DIGEST_SKIP, deliveryTimeMs, INSIGHT_SKIP, readDelivery } from '../../../src/ingest/sources/cloudtrail.ts';
import { INVICTUS_DIR, loadDeliveriesDirectly, sharedCloudTrailMissing } from '../../helpers/shared.ts';

const record = (id: string, account: string, region: string, time: string): Record<string, unknown> => ({
  eventVersion: '1.09',
  userIdentity: { type: 'IAMUser', arn: `arn:aws:iam::${account}:user/alice`, accountId: account, userName: 'alice' },
  eventTime: time,
  eventSource: 'ec2.amazonaws.com',
  eventName: 'DescribeInstances',
  awsRegion: region,
  eventID: id,
  readOnly: true,
  eventType: 'AwsApiCall',
  recipientAccountId: account,
});

/** `YYYYMMDDTHHmmZ` of a Date. */
function stamp(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').slice(0, 13).concat('Z');
}

/**
 * An S3-layout tree: two accounts under an organization trail (`o-…/<account>/`), one plain
 * account, two regions, deliveries at 00:05 on three days; a digest file and an Insights
 * delivery beside them. Deliveries on 2024-03-01 are deliberately not gzip: opening one fails.
 */
async function writeTree(root: string): Promise<{ ids: Map<string, string> }> {
  const ids = new Map<string, string>(); // eventID → file
  const places = [
    { prefix: 'AWSLogs/o-a1b2c3d4e5/111111111111', account: '111111111111' },
    { prefix: 'AWSLogs/o-a1b2c3d4e5/222222222222', account: '222222222222' },
    { prefix: 'AWSLogs/333333333333', account: '333333333333' },
  ];
  for (const { prefix, account } of places) {
    for (const region of ['us-east-1', 'eu-west-1']) {
      for (const day of ['01', '02', '03']) {
        const at = new Date(`2024-03-${day}T00:05:00Z`);
        const dir = join(root, prefix, 'CloudTrail', region, '2024', '03', day);
        await mkdir(dir, { recursive: true });
        const name = `${account}_CloudTrail_${region}_${stamp(at)}_AbCdEf0123456789.json.gz`;
        const file = join(dir, name);
        if (day === '01') {
          await writeFile(file, 'this is not gzip: opening it is an error'); // out of range below: never opened
          continue;
        }
        const id = `${account}-${region}-${day}`;
        ids.set(id, file);
        await writeFile(file, gzipSync(JSON.stringify({ Records: [record(id, account, region, `2024-03-${day}T00:01:00Z`)] })));
      }
    }
    const digestDir = join(root, prefix, 'CloudTrail-Digest', 'us-east-1', '2024', '03', '02');
    await mkdir(digestDir, { recursive: true });
    await writeFile(
      join(digestDir, `${account}_CloudTrail-Digest_us-east-1_org-trail_us-east-1_20240302T010000Z.json.gz`),
      gzipSync(JSON.stringify({ awsAccountId: account, digestStartTime: '2024-03-02T00:00:00Z', logFiles: [] })),
    );
    const insightDir = join(root, prefix, 'CloudTrail-Insight', 'us-east-1', '2024', '03', '02');
    await mkdir(insightDir, { recursive: true });
    await writeFile(
      join(insightDir, `${account}_CloudTrail-Insight_us-east-1_20240302T0100Z_ZyXwVu9876543210.json.gz`),
      // Were it read as API calls, this record would normalize fine: only its name keeps it out.
      gzipSync(JSON.stringify({ Records: [record(`insight-${account}`, account, 'us-east-1', '2024-03-02T00:30:00Z')] })),
    );
  }
  return { ids };
}

async function readAll(paths: string[], range?: TimeRange) {
  const source = cloudTrailSource();
  const plan = await planInputs(paths, source, range);
  const events: Array<{ id: string; file: string }> = [];
  const errors: string[] = [];
  const skips: string[] = [];
  for await (const { file, items } of readPlanned(plan.entries, source)) {
    for (const item of items) {
      const o = outcomeOf(source, item);
      if (o.kind === 'event') events.push({ id: o.event.eventId, file });
      else if (o.kind === 'error') errors.push(o.error.message);
      else skips.push(o.reason);
    }
  }
  return { plan, events, errors, skips };
}

describe('CloudTrail archives in the S3 layout', () => {
  let root: string;
  let ids: Map<string, string>;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'tw-s3-tree-'));
    ({ ids } = await writeTree(root));
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('the delivery time comes from the file name, or null when the name is not a delivery’s', () => {
    assert.equal(deliveryTimeMs('x/111122223333_CloudTrail_us-east-1_20240302T0005Z_AbC123.json.gz'), Date.UTC(2024, 2, 2, 0, 5));
    assert.equal(deliveryTimeMs('x/111122223333_CloudTrail_us-east-1_20240302T0005Z_AbC123.json'), Date.UTC(2024, 2, 2, 0, 5));
    assert.equal(deliveryTimeMs('x/records.json'), null);
  });

  test('--since/--until choose by name: files outside are never opened, digest and Insights deliveries are skipped and counted', async () => {
    const range = { sinceMs: Date.parse('2024-03-02T00:00:00Z'), untilMs: Date.parse('2024-03-04T00:00:00Z') };
    const { plan, events, errors } = await readAll([root], range);
    // The 2024-03-01 files are not gzip: had any been opened, it would be an error here.
    assert.deepEqual(errors, []);
    // Day 01's date folders are not even listed, so nothing is counted for them; every in-range delivery is read.
    assert.equal(events.length, 12);
    assert.deepEqual(new Set(events.map((e) => e.id)), new Set(ids.keys()));
    assert.deepEqual(plan.skippedFiles, { [DIGEST_SKIP]: 3, [INSIGHT_SKIP]: 3 });
    assert.ok(!events.some((e) => e.id.startsWith('insight-')), 'an Insights delivery is never taken for API calls');
  });

  test('a range that only cuts inside a day counts the files left out by name, unopened', async () => {
    // Day 01's deliveries are at 00:05: since 00:10 leaves them out by name, without reading them.
    const range = { sinceMs: Date.parse('2024-03-01T00:10:00Z'), untilMs: null };
    const { plan, errors, events } = await readAll([root], range);
    assert.deepEqual(errors, []);
    assert.equal(plan.outOfRangeFiles, 6);
    assert.equal(events.length, 12);
  });

  test('without a range, the unreadable deliveries are opened and reported, naming the file', async () => {
    const { errors } = await readAll([root]);
    assert.equal(errors.length, 6);
    for (const e of errors) assert.match(e, /_CloudTrail_.*_20240301T0005Z_.*\.json\.gz: named \.gz but not gzip data/);
  });

  test('several accounts and regions read in time order, then path order: deterministic', async () => {
    const range = { sinceMs: Date.parse('2024-03-02T00:00:00Z'), untilMs: null };
    const { events } = await readAll([join(root, 'AWSLogs/333333333333'), join(root, 'AWSLogs/o-a1b2c3d4e5')], range);
    const order = events.map((e) => relative(root, e.file));
    const sorted = [...order].sort((a, b) => {
      const t = (p: string) => /_(\d{8}T\d{4}Z)_/.exec(p)?.[1] ?? '';
      return t(a) < t(b) ? -1 : t(a) > t(b) ? 1 : a < b ? -1 : a > b ? 1 : 0;
    });
    assert.deepEqual(order, sorted);
    // Day 02 of every account comes before day 03 of any: time first, across the paths given.
    assert.ok(order.slice(0, 6).every((p) => p.includes('20240302T')));
    assert.ok(order.slice(6).every((p) => p.includes('20240303T')));
  });

  test('a digest or Insights delivery named on its own is recognised too', async () => {
    const digestDir = join(root, 'AWSLogs/333333333333/CloudTrail-Digest/us-east-1/2024/03/02');
    const [digest] = await readdir(digestDir);
    const { plan, events } = await readAll([join(digestDir, digest as string)]);
    assert.equal(events.length, 0);
    assert.deepEqual(plan.skippedFiles, { [DIGEST_SKIP]: 1 });
  });
});

describe('CloudTrail deliveries cut short and odd', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tw-ct-source-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('a truncated .json.gz keeps every record written before the cut, then reports the cut', async () => {
    const records = Array.from({ length: 200 }, (_, i) => record(`id-${i}`, '111122223333', 'eu-west-1', '2024-03-02T00:01:00Z'));
    const gz = gzipSync(JSON.stringify({ Records: records }));
    const file = join(dir, 'cut.json.gz');
    await writeFile(file, gz.subarray(0, Math.floor(gz.length * 0.6)));
    const items = await readDelivery(file);
    const kept = items.filter((i): i is Extract<ReadItem, { kind: 'record' }> => i.kind === 'record');
    assert.ok(kept.length > 20 && kept.length < 200, `kept ${kept.length} of 200`);
    // The records kept are the first ones, in order, each whole.
    kept.forEach((item, i) => {
      assert.equal((item.record as { eventID: string }).eventID, `id-${i}`);
      assert.equal(item.at.index, i);
    });
    const last = items.at(-1);
    assert.ok(last?.kind === 'error');
    assert.equal(last.error.code, ErrorCodes.INPUT_FILE);
    assert.match(last.error.message, new RegExp(`^${file}: truncated gzip: .*the records before the cut were read`));
  });

  test('an Insight event inside a delivery is skipped, not counted as a call', () => {
    const source = cloudTrailSource();
    const n = source.normalize({ ...record('i1', '111122223333', 'eu-west-1', '2024-03-02T00:01:00Z'), eventType: 'AwsCloudTrailInsight' });
    assert.ok(n instanceof Skip);
  });

  test('decode: a delivery or a single record held in one message, gzipped or not', () => {
    const source = cloudTrailSource();
    const one = record('m1', '111122223333', 'eu-west-1', '2024-03-02T00:01:00Z');
    const fromDelivery = source.decode(gzipSync(JSON.stringify({ Records: [one, one] })), 'raw/0@17');
    assert.deepEqual(
      fromDelivery.map((i) => [i.kind, i.at.origin, i.at.index]),
      [
        ['record', 'raw/0@17', 0],
        ['record', 'raw/0@17', 1],
      ],
    );
    const single = source.decode(Buffer.from(JSON.stringify(one)), 'raw/0@18');
    assert.equal(single.length, 1);
    assert.equal(single[0]?.kind, 'record');
    const bad = source.decode(Buffer.from('{"Records": [1,'), 'raw/0@19');
    assert.ok(bad[0]?.kind === 'error');
    assert.match(bad[0].error.message, /^raw\/0@19: malformed JSON at line 1/);
  });
});

describe('the cloudtrail source on the shared invictus data', () => {
  test('reads every record of every delivery, as a plain JSON.parse of the files does', async (t) => {
    const missing = sharedCloudTrailMissing();
    if (missing) return t.skip(missing);
    const { events, errors } = await readAll([INVICTUS_DIR]);
    assert.deepEqual(errors, []);
    const direct = loadDeliveriesDirectly(INVICTUS_DIR);
    const expected = direct.flatMap((d) => d.records.map((r) => (r as { eventID: string }).eventID));
    assert.equal(events.length, 2900);
    assert.deepEqual(new Set(events.map((e) => e.id)), new Set(expected));
    // One account and region: time order is the names' order, which is the path order.
    const files = [...new Set(events.map((e) => e.file))];
    assert.deepEqual(files, [...files].sort());
    assert.ok((await readFile(files[0] as string)).length > 0);
  });
});
