import { ErrorCodes, TrailwatchError } from '../errors.ts';
import type { OutRecord as TransportRecord } from '../transport/types.ts';

/**
 * A record a stage task produces, its partition already chosen: the sizes that decide how a
 * transaction is cut into produce requests are only known per partition.
 */
export type OutRecord = TransportRecord & { partition: number };

/** Header values as either client hands them over (kafkajs may repeat one). */
type Headers = Record<string, Buffer | string | Array<Buffer | string> | undefined>;

/** Kafka's v2 record batch header. */
const BATCH_OVERHEAD_BYTES = 61;
/** Per record beyond its key, value and headers: length, attributes, deltas and the length varints, at their widest. */
const RECORD_OVERHEAD_BYTES = 32;
/** Per header beyond its name and value: two length varints. */
const HEADER_OVERHEAD_BYTES = 10;

function byteLength(v: string | Buffer | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'string' ? Buffer.byteLength(v) : v.length;
}

export function headersBytes(headers: Headers | undefined): number {
  let n = 0;
  for (const [name, value] of Object.entries(headers ?? {})) {
    for (const v of Array.isArray(value) ? value : [value]) n += HEADER_OVERHEAD_BYTES + Buffer.byteLength(name) + byteLength(v);
  }
  return n;
}

/** What one record adds to a record batch, uncompressed, counted generously. */
export function recordBytes(r: Pick<TransportRecord, 'key' | 'value'> & { headers?: Headers | undefined }): number {
  return RECORD_OVERHEAD_BYTES + byteLength(r.key) + byteLength(r.value) + headersBytes(r.headers);
}

/** The largest record (key, value, headers) a batch of its own can carry under `limitBytes`. */
export function maxRecordBytesUnder(limitBytes: number): number {
  return limitBytes - BATCH_OVERHEAD_BYTES;
}

/**
 * Cuts a transaction's records into rounds of produce requests so that no request carries more
 * for one partition than the broker accepts (`max.message.bytes` bounds one record batch, and a
 * client sends one batch per partition and request). Each round holds at most one chunk per
 * partition; sending the rounds one after another keeps every partition's order. A record too
 * large for a batch of its own can never be written: that is a TW_RECORD_TOO_LARGE error naming
 * the topic and the sizes, which no retry can fix.
 */
export function produceRounds(records: readonly OutRecord[], limitOf: (topic: string) => number): OutRecord[][] {
  const chunks = new Map<string, OutRecord[][]>();
  const room = new Map<string, number>();
  for (const r of records) {
    const id = `${r.topic}\u0000${r.partition}`;
    const limit = limitOf(r.topic);
    const size = recordBytes(r);
    if (size + BATCH_OVERHEAD_BYTES > limit) {
      throw new TrailwatchError(
        ErrorCodes.RECORD_TOO_LARGE,
        `a ${size}-byte record for ${r.topic}[${r.partition}] exceeds the topic's limit of ${limit} bytes (max.message.bytes)`,
        { fault: 'internal', canRetry: false, details: { topic: r.topic, partition: r.partition, bytes: size, limitBytes: limit } },
      );
    }
    let list = chunks.get(id);
    if (!list) {
      list = [];
      chunks.set(id, list);
    }
    const left = room.get(id) ?? 0;
    if (list.length === 0 || size > left) {
      list.push([r]);
      room.set(id, limit - BATCH_OVERHEAD_BYTES - size);
    } else {
      (list[list.length - 1] as OutRecord[]).push(r);
      room.set(id, left - size);
    }
  }
  const rounds: OutRecord[][] = [];
  for (const list of chunks.values()) {
    for (const [i, chunk] of list.entries()) {
      let round = rounds[i];
      if (!round) {
        round = [];
        rounds[i] = round;
      }
      round.push(...chunk);
    }
  }
  return rounds;
}
