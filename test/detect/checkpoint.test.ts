import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { activityOrder, checkVersion, emptyEngineMetrics, finiteOrNull, orNegInf, SNAPSHOT_VERSION } from '../../src/detect/checkpoint.ts';

describe('engine checkpoint shapes', () => {
  test('clocks without a value travel as null and come back as −∞', () => {
    assert.equal(finiteOrNull(Number.NEGATIVE_INFINITY), null);
    assert.equal(finiteOrNull(1_767_571_200_000), 1_767_571_200_000);
    assert.equal(orNegInf(null), Number.NEGATIVE_INFINITY);
    assert.equal(orNegInf(undefined), Number.NEGATIVE_INFINITY);
    assert.equal(orNegInf(finiteOrNull(42)), 42);
    assert.equal(JSON.stringify({ t: finiteOrNull(Number.NEGATIVE_INFINITY) }), '{"t":null}');
  });

  test('another version is refused, naming what it was', () => {
    assert.doesNotThrow(() => checkVersion(SNAPSHOT_VERSION, 'snapshot'));
    assert.throws(() => checkVersion(SNAPSHOT_VERSION + 1, 'checkpoint'), /unsupported engine checkpoint version 2/);
  });

  test('restored keys are adopted by activity, ties in the changelog’s order', () => {
    assert.deepEqual(activityOrder([30, 10, 20, 10, 30]), [1, 3, 2, 0, 4]);
    assert.deepEqual(activityOrder([]), []);
  });

  test('metrics start at zero, a fresh object each time', () => {
    const a = emptyEngineMetrics();
    assert.ok(Object.values(a).every((v) => v === 0));
    a.duplicates++;
    assert.equal(emptyEngineMetrics().duplicates, 0);
  });
});
