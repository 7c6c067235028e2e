import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BATCH_OVERHEAD_BYTES, planSends, RECORD_OVERHEAD_BYTES, recordSize } from '../../src/transport/batching.ts';
import type { OutRecord } from '../../src/transport/types.ts';

const rec = (partition: number, valueBytes: number, extra: Partial<OutRecord> = {}): OutRecord & { partition: number } => ({
  topic: 't',
  partition,
  value: Buffer.alloc(valueBytes),
  ...extra,
});

describe('planSends', () => {
  test('counts key, value, header names and values and the per-record overhead', () => {
    assert.equal(recordSize({ key: 'abc', value: Buffer.alloc(10), headers: { h: 'xy' } }), RECORD_OVERHEAD_BYTES + 3 + 10 + 1 + 2);
    assert.equal(recordSize({ key: 'é', value: null }), RECORD_OVERHEAD_BYTES + 2, 'strings as UTF-8 bytes; a tombstone has no value');
  });

  test('keeps everything in one request when it fits', () => {
    const records = [rec(0, 100), rec(1, 100), rec(0, 100)];
    const plan = planSends(records, 10_000, (r) => r.partition);
    assert.deepEqual(plan.groups, [records]);
    assert.deepEqual(plan.oversized, []);
  });

  test('no request carries more than the limit for one partition, and order is kept', () => {
    const records = Array.from({ length: 100 }, (_, i) => rec(i % 3, 50 + (i % 7) * 40, { key: `k${i}` }));
    const limit = 1_000;
    const plan = planSends(records, limit, (r) => r.partition);
    assert.deepEqual(plan.groups.flat(), records, 'every record once, in order');
    for (const group of plan.groups) {
      const perPartition = new Map<number, number>();
      for (const r of group) perPartition.set(r.partition, (perPartition.get(r.partition) ?? BATCH_OVERHEAD_BYTES) + recordSize(r));
      for (const [p, bytes] of perPartition) assert.ok(bytes <= limit, `partition ${p}: ${bytes} bytes`);
    }
    assert.ok(plan.groups.length > 1);
  });

  test('the limit is per partition: other partitions fill the same request', () => {
    const size = recordSize(rec(0, 400));
    const limit = BATCH_OVERHEAD_BYTES + 2 * size;
    const records = [rec(0, 400), rec(1, 400), rec(0, 400), rec(1, 400), rec(0, 400)];
    const plan = planSends(records, limit, (r) => r.partition);
    assert.deepEqual(
      plan.groups.map((g) => g.length),
      [4, 1],
    );
  });

  test('reports a record larger than the limit by itself and leaves it out', () => {
    const small = rec(0, 10);
    const huge = rec(0, 5_000);
    const plan = planSends([small, huge, small], 1_000, (r) => r.partition);
    assert.deepEqual(plan.groups, [[small, small]]);
    assert.equal(plan.oversized.length, 1);
    assert.equal(plan.oversized[0]?.record, huge);
    assert.equal(plan.oversized[0]?.bytes, recordSize(huge) + BATCH_OVERHEAD_BYTES);
  });

  test('a record exactly at the limit fits alone', () => {
    const limit = BATCH_OVERHEAD_BYTES + recordSize(rec(0, 500));
    const plan = planSends([rec(0, 500), rec(0, 500)], limit, (r) => r.partition);
    assert.deepEqual(
      plan.groups.map((g) => g.length),
      [1, 1],
    );
    assert.deepEqual(plan.oversized, []);
  });

  test('nothing in, nothing out', () => {
    assert.deepEqual(
      planSends([], 1_000, () => 0),
      { groups: [], oversized: [] },
    );
  });
});
