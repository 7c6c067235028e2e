/**
 * Space-Saving heavy hitters (Metwally et al.) on plain arrays, so it is small in memory and
 * checkpoints as JSON. At most `capacity` values are tracked; a new value replaces the smallest
 * and inherits its count as an over-estimate bound. With capacity ≥ 2 × top-N the top N are
 * reliable for skewed streams, which contributor lists are.
 *
 * Counts are stored divided by `scale`, so decaying every count (an EWMA step) is one
 * multiplication of `scale`, not a pass over the values.
 */
export interface HeavyHitters {
  capacity: number;
  values: string[];
  counts: number[];
  scale: number;
}

const RESCALE_BELOW = 1e-100;

export function newHeavyHitters(capacity: number): HeavyHitters {
  return { capacity, values: [], counts: [], scale: 1 };
}

export function hhAdd(sketch: HeavyHitters, value: string, weight = 1): void {
  const stored = weight / sketch.scale;
  const i = sketch.values.indexOf(value);
  if (i >= 0) {
    sketch.counts[i] = (sketch.counts[i] as number) + stored;
    return;
  }
  if (sketch.values.length < sketch.capacity) {
    sketch.values.push(value);
    sketch.counts.push(stored);
    return;
  }
  let min = 0;
  for (let j = 1; j < sketch.counts.length; j++) if ((sketch.counts[j] as number) < (sketch.counts[min] as number)) min = j;
  sketch.values[min] = value;
  sketch.counts[min] = (sketch.counts[min] as number) + stored;
}

export function hhMerge(into: HeavyHitters, from: HeavyHitters, factor = 1): void {
  for (let i = 0; i < from.values.length; i++) hhAdd(into, from.values[i] as string, (from.counts[i] as number) * from.scale * factor);
}

/** Multiplies every count by `factor` in O(1). */
export function hhScale(sketch: HeavyHitters, factor: number): void {
  sketch.scale *= factor;
  if (sketch.scale < RESCALE_BELOW) {
    for (let i = 0; i < sketch.counts.length; i++) sketch.counts[i] = (sketch.counts[i] as number) * sketch.scale;
    sketch.scale = 1;
  }
}

/** The n largest, highest first; ties broken by value so output is deterministic. */
export function hhTop(sketch: HeavyHitters, n: number): Array<{ value: string; count: number }> {
  return sketch.values
    .map((value, i) => ({ value, count: (sketch.counts[i] as number) * sketch.scale }))
    .sort((a, b) => b.count - a.count || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0))
    .slice(0, n);
}
