import type { OutRecord } from './types.ts';

/**
 * Splits records into produce requests so that no request carries more than `maxBytes` for one
 * partition: the broker refuses a record batch above the topic's `max.message.bytes` as a whole,
 * and every record of a transaction would then fail with it. Sizes are counted conservatively
 * (key + value + header names and values + RECORD_OVERHEAD_BYTES per record, BATCH_OVERHEAD_BYTES
 * per partition), as uncompressed.
 */

/** Per-record framing in a v2 record batch: length, attributes, deltas, varints (well above the real ~20). */
export const RECORD_OVERHEAD_BYTES = 70;
/** A v2 record batch header. */
export const BATCH_OVERHEAD_BYTES = 61;

function bytes(v: Buffer | string | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length;
}

/** A record's share of a record batch, overhead included. */
export function recordSize(record: Pick<OutRecord, 'key' | 'value' | 'headers'>): number {
  let size = RECORD_OVERHEAD_BYTES + bytes(record.key) + bytes(record.value);
  if (record.headers) for (const [name, value] of Object.entries(record.headers)) size += bytes(name) + bytes(value);
  return size;
}

export interface SendPlan<T> {
  /** Send in this order, one request each: a partition's records keep their order. */
  groups: T[][];
  /** Records larger than `maxBytes` alone, left out of every group for the caller to deal with. */
  oversized: Array<{ record: T; bytes: number }>;
}

/**
 * `partitionOf` gives each record's partition (resolved by the caller: the same key must give
 * the same partition here and when sent). A new group starts when a record would take its
 * partition past `maxBytes` in the current one.
 */
export function planSends<T extends Pick<OutRecord, 'topic' | 'key' | 'value' | 'headers'>>(
  records: readonly T[],
  maxBytes: number,
  partitionOf: (record: T) => number,
): SendPlan<T> {
  const groups: T[][] = [];
  const oversized: Array<{ record: T; bytes: number }> = [];
  let current: T[] = [];
  let used = new Map<string, number>();
  for (const record of records) {
    const size = recordSize(record);
    if (size + BATCH_OVERHEAD_BYTES > maxBytes) {
      oversized.push({ record, bytes: size + BATCH_OVERHEAD_BYTES });
      continue;
    }
    const tp = `${record.topic}\u0000${partitionOf(record)}`;
    const before = used.get(tp) ?? BATCH_OVERHEAD_BYTES;
    if (before + size > maxBytes) {
      groups.push(current);
      current = [];
      used = new Map();
    }
    used.set(tp, (used.get(tp) ?? BATCH_OVERHEAD_BYTES) + size);
    current.push(record);
  }
  if (current.length > 0) groups.push(current);
  return { groups, oversized };
}
