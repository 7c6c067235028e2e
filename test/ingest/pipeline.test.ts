import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { auditEventType } from '../../src/contracts/schemas.ts';
import { type EncodeSettings, encodeDeliveries, META_FIELDS } from '../../src/ingest/pipeline.ts';
import { normalizeDeliveries, readCloudTrailDeliveries } from '../../src/ingest/sources/cloudtrail.ts';
import { eventKey, WIRE_HEADER_BYTES } from '../../src/ingest/wire.ts';
import { partitionForKey } from '../../src/transport/partitioner.ts';
import { FIXTURES_DIR } from '../helpers/shared.ts';

const DIR = join(FIXTURES_DIR, 'cloudtrail/deliveries');
const settings: EncodeSettings = { schemaId: 42, partitions: 5, maxMessageBytes: 1_048_588, oldBeforeMs: Date.now() };

interface Out {
  records: Array<{ file: string; index: number; key: string; partition: number; schemaId: number; eventId: string }>;
  errors: Array<{ file: string; index: number | null; code: string; message: string }>;
  tooOld: number;
}

async function collect(paths: string[], s: EncodeSettings, workers: number): Promise<Out> {
  const out: Out = { records: [], errors: [], tooOld: 0 };
  for await (const chunk of encodeDeliveries(paths, s, { workers })) {
    let r = 0;
    let offset = 0;
    for (const segment of chunk.segments) {
      for (const end = r + segment.records; r < end; r++) {
        const m = r * META_FIELDS;
        const keyEnd = offset + (chunk.meta[m] as number);
        const valueEnd = keyEnd + (chunk.meta[m + 1] as number);
        const value = chunk.data.subarray(keyEnd, valueEnd);
        const event = auditEventType.fromBuffer(value.subarray(WIRE_HEADER_BYTES)) as { eventId: string };
        out.records.push({
          file: segment.file,
          index: chunk.meta[m + 3] as number,
          key: chunk.data.subarray(offset, keyEnd).toString(),
          partition: chunk.meta[m + 2] as number,
          schemaId: value.readInt32BE(1),
          eventId: event.eventId,
        });
        offset = valueEnd;
      }
      out.errors.push(...segment.errors);
    }
    out.tooOld += chunk.tooOld;
  }
  return out;
}

describe('encodeDeliveries', () => {
  test('yields what reading and normalizing on one thread gives, in the same order, encoded and placed', async () => {
    const expected: Array<{ file: string; index: number; key: string; eventId: string }> = [];
    const expectedErrors: string[] = [];
    for await (const item of normalizeDeliveries(readCloudTrailDeliveries([DIR, join(DIR, 'no-such-file.json')]))) {
      if (item.kind === 'event')
        expected.push({ file: item.file, index: item.index, key: eventKey(item.event), eventId: item.event.eventId });
      else expectedErrors.push(item.error.message);
    }
    assert.ok(expected.length > 0 && expectedErrors.length > 0, 'the fixtures hold good and bad records');
    for (const workers of [1, 2]) {
      const out = await collect([DIR, join(DIR, 'no-such-file.json')], settings, workers);
      assert.deepEqual(
        out.records.map(({ file, index, key, eventId }) => ({ file, index, key, eventId })),
        expected,
      );
      for (const r of out.records) {
        assert.equal(r.schemaId, 42);
        assert.equal(r.partition, partitionForKey(r.key, 5));
      }
      assert.deepEqual(
        out.errors.map((e) => e.message),
        expectedErrors,
      );
      assert.equal(out.tooOld, expected.length, 'every fixture event is older than now');
    }
  });

  test('a record over maxMessageBytes is an error item with file and index, the others go on', async () => {
    const all = await collect([DIR], settings, 1);
    const small = await collect([DIR], { ...settings, raw: false, maxMessageBytes: 700 }, 1);
    const refused = small.errors.filter((e) => e.code === 'TW_RECORD_TOO_LARGE');
    assert.ok(refused.length > 0 && small.records.length > 0, 'the bound splits the fixtures');
    assert.equal(small.records.length + refused.length, all.records.length);
    for (const e of refused) assert.match(e.message, new RegExp(`^${e.file.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${e.index}: event `));
  });
});
