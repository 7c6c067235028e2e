import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type OutRecord, produceRounds, recordBytes } from '../../src/runtime/produce.ts';

const rec = (topic: string, partition: number, bytes: number, n = 0): OutRecord => ({
  topic,
  partition,
  key: `k${n}`,
  value: Buffer.alloc(bytes),
});

/** Bytes one round carries per topic-partition, batch header included. */
function perPartition(round: OutRecord[]): Map<string, number> {
  const sizes = new Map<string, number>();
  for (const r of round) sizes.set(`${r.topic}:${r.partition}`, (sizes.get(`${r.topic}:${r.partition}`) ?? 61) + recordBytes(r));
  return sizes;
}

describe('produceRounds', () => {
  test('everything in one round when it fits', () => {
    const records = [rec('a', 0, 100), rec('a', 1, 100), rec('b', 0, 100)];
    assert.deepEqual(
      produceRounds(records, () => 1_000_000),
      [records],
    );
  });

  test('no round carries more than the limit for one partition, and each partition keeps its order', () => {
    const records: OutRecord[] = [];
    for (let n = 0; n < 500; n++) records.push(rec(n % 3 === 0 ? 'changelog' : 'alerts', n % 2, 200 + (n % 7) * 50, n));
    const limits: Record<string, number> = { changelog: 4_000, alerts: 10_000 };
    const rounds = produceRounds(records, (t) => limits[t] ?? 0);
    assert.ok(rounds.length > 1);
    for (const round of rounds) {
      for (const [id, bytes] of perPartition(round)) assert.ok(bytes <= (limits[id.split(':')[0] as string] ?? 0), `${id}: ${bytes}`);
    }
    // Rounds are sent one after another: reading them in turn gives each partition's records in their order.
    const flat = rounds.flat();
    assert.equal(flat.length, records.length);
    for (const id of ['changelog:0', 'changelog:1', 'alerts:0', 'alerts:1']) {
      const of = (xs: OutRecord[]) => xs.filter((r) => `${r.topic}:${r.partition}` === id).map((r) => r.key);
      assert.deepEqual(of(flat), of(records), id);
    }
  });

  test('a record too large for a batch of its own is a TW_RECORD_TOO_LARGE error naming the topic and sizes', () => {
    assert.throws(
      () => produceRounds([rec('small', 0, 10), rec('small', 2, 5_000)], () => 4_096),
      (err: Error & { code?: string }) =>
        err.code === 'TW_RECORD_TOO_LARGE' &&
        /small\[2\]/.test(err.message) &&
        /4096/.test(err.message) &&
        /max\.message\.bytes/.test(err.message),
    );
  });
});
