import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mulberry32 } from '../../src/demo/traffic.ts';
import { hhAdd, hhTop, newHeavyHitters } from '../../src/detect/sketch.ts';

test('space-saving keeps the heavy hitters of a skewed stream within its capacity', () => {
  const sketch = newHeavyHitters(10);
  const rand = mulberry32(1);
  const truth = new Map<string, number>();
  for (let i = 0; i < 20_000; i++) {
    // Zipf-like: value k with weight ~ 1/k over 500 values.
    const k = Math.floor(1 / (rand() * 0.998 + 0.002));
    const v = `v${k}`;
    truth.set(v, (truth.get(v) ?? 0) + 1);
    hhAdd(sketch, v);
  }
  assert.ok(Object.keys(sketch.counts).length <= 10);
  const expected = [...truth.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([v]) => v);
  assert.deepEqual(
    hhTop(sketch, 3).map((x) => x.value),
    expected,
  );
});

test('top is ordered by count, ties by value', () => {
  const s = newHeavyHitters(5);
  for (const v of ['b', 'a', 'c', 'c']) hhAdd(s, v);
  assert.deepEqual(hhTop(s, 3), [
    { value: 'c', count: 2 },
    { value: 'a', count: 1 },
    { value: 'b', count: 1 },
  ]);
});
