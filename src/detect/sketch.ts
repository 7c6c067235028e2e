/**
 * Space-Saving heavy hitters (Metwally et al.) on plain data, so it checkpoints as JSON.
 * At most `capacity` values are tracked; a new value replaces the smallest and inherits its
 * count as an over-estimate bound. With capacity ≥ 2 × top-N the top N are reliable for skewed
 * streams, which contributor lists are.
 */
export interface HeavyHitters {
  capacity: number;
  counts: Record<string, number>;
}

export function newHeavyHitters(capacity: number): HeavyHitters {
  return { capacity, counts: Object.create(null) as Record<string, number> };
}

export function hhAdd(sketch: HeavyHitters, value: string, weight = 1): void {
  const counts = sketch.counts;
  const current = counts[value];
  if (current !== undefined) {
    counts[value] = current + weight;
    return;
  }
  const keys = Object.keys(counts);
  if (keys.length < sketch.capacity) {
    counts[value] = weight;
    return;
  }
  let minKey = keys[0] as string;
  let minCount = counts[minKey] as number;
  for (const k of keys) {
    const c = counts[k] as number;
    if (c < minCount) {
      minCount = c;
      minKey = k;
    }
  }
  delete counts[minKey];
  counts[value] = minCount + weight;
}

export function hhMerge(into: HeavyHitters, from: HeavyHitters, factor = 1): void {
  for (const [value, count] of Object.entries(from.counts)) hhAdd(into, value, count * factor);
}

export function hhScale(sketch: HeavyHitters, factor: number): void {
  for (const k of Object.keys(sketch.counts)) sketch.counts[k] = (sketch.counts[k] as number) * factor;
}

/** The n largest, highest first; ties broken by value so output is deterministic. */
export function hhTop(sketch: HeavyHitters, n: number): Array<{ value: string; count: number }> {
  return Object.entries(sketch.counts)
    .map(([value, count]) => ({ value, count }))
    .sort((a, b) => b.count - a.count || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0))
    .slice(0, n);
}
