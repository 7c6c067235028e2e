/**
 * Kafka's default partitioner for keyed records, as the Java client computes it:
 * `Utils.toPositive(Utils.murmur2(keyBytes)) % partitions`. Pure, so the topology and the
 * backtest place keys exactly where every producer (ours, Kafka Streams, the Java clients) does.
 */

const SEED = 0x9747b28c;
const M = 0x5bd1e995;

/** Murmur2 (32-bit) of `data`, as a signed 32-bit integer like Java's `Utils.murmur2`. */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = SEED ^ length;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = (data[i] as number) | ((data[i + 1] as number) << 8) | ((data[i + 2] as number) << 16) | ((data[i + 3] as number) << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  // The tail bytes fall through from three to one, as in the Java switch.
  const rest = length & 3;
  if (rest === 3) h ^= (data[whole + 2] as number) << 16;
  if (rest >= 2) h ^= (data[whole + 1] as number) << 8;
  if (rest >= 1) {
    h ^= data[whole] as number;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition of a keyed record among `partitions`; string keys are taken as UTF-8. */
export function partitionForKey(key: string | Uint8Array, partitions: number): number {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  return (murmur2(bytes) & 0x7fffffff) % partitions;
}

/**
 * Where a record goes: its explicit partition, else its key's, else round-robin (keyless records
 * carry no locality to keep). One counter per topic, so a keyless topic spreads evenly.
 */
export class Partitioner {
  private readonly next = new Map<string, number>();

  partition(
    topic: string,
    partitions: number,
    record: { partition?: number | undefined; key?: string | Uint8Array | null | undefined },
  ): number {
    if (record.partition !== undefined) return record.partition;
    if (record.key !== undefined && record.key !== null) return partitionForKey(record.key, partitions);
    const n = this.next.get(topic) ?? 0;
    this.next.set(topic, n + 1);
    return n % partitions;
  }
}
