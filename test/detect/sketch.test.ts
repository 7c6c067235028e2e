import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mulberry32 } from '../../src/demo/traffic.ts';
import { hhAdd, hhScale, hhTop, newHeavyHitters } from '../../src/detect/sketch.ts';

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
  assert.ok(sketch.values.length <= 10 && sketch.counts.length === sketch.values.length);
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

test('scaling is lazy and exact, even past the rescale point', () => {
  const s = newHeavyHitters(4);
  hhAdd(s, 'a', 8);
  hhScale(s, 0.5);
  hhAdd(s, 'b', 1);
  assert.deepEqual(hhTop(s, 2), [
    { value: 'a', count: 4 },
    { value: 'b', count: 1 },
  ]);
  for (let i = 0; i < 400; i++) hhScale(s, 0.5);
  hhAdd(s, 'c', 3);
  const top = hhTop(s, 1);
  assert.equal(top[0]?.value, 'c');
  assert.ok(Math.abs((top[0]?.count ?? 0) - 3) < 1e-9);
});
