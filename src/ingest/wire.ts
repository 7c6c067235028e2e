/**
 * AuditEvent → the record `publish` produces: key `account|principal` (UTF-8), value in the
 * Confluent wire format (magic byte, schema id, Avro body), partition by murmur2 of the key as
 * Kafka's Java client places it. Pure and free of any Kafka client, so the publisher and the
 * ingest worker threads (worker.ts) encode alike.
 */
import { auditEventType } from '../contracts/schemas.ts';
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError, ErrorCodes } from '../errors.ts';
import { BATCH_OVERHEAD_BYTES, RECORD_OVERHEAD_BYTES } from '../transport/batching.ts';
import { partitionForKey } from '../transport/partitioner.ts';

/** Magic byte and 4-byte schema id. */
export const WIRE_HEADER_BYTES = 5;

export { BATCH_OVERHEAD_BYTES, RECORD_OVERHEAD_BYTES };

const MAX_CACHED_KEYS = 100_000; // distinct account|principal keys remembered with their partition

export interface Route {
  key: Buffer;
  partition: number;
}

export function eventKey(e: Pick<AuditEvent, 'accountId' | 'principal'>): string {
  return `${e.accountId}|${e.principal}`;
}

export function wireHeader(schemaId: number): Buffer {
  const header = Buffer.alloc(WIRE_HEADER_BYTES);
  header.writeInt32BE(schemaId, 1);
  return header;
}

/** A record's share of a partition's record batch: what the broker's max.message.bytes bounds. */
export function recordBytes(keyBytes: number, valueBytes: number): number {
  return RECORD_OVERHEAD_BYTES + keyBytes + valueBytes;
}

/** The error of a record too large for the topic even alone in its request. */
export function recordTooLarge(what: string, keyBytes: number, valueBytes: number, maxMessageBytes: number): BadRecordError {
  const bytes = recordBytes(keyBytes, valueBytes) + BATCH_OVERHEAD_BYTES;
  return new BadRecordError(
    ErrorCodes.RECORD_TOO_LARGE,
    `${what} is ${bytes} bytes as a record (key ${keyBytes}, value ${valueBytes}), over the topic's max.message.bytes of ${maxMessageBytes}`,
    { details: { keyBytes, valueBytes, bytes, limit: maxMessageBytes } },
  );
}

/** Keys and their partitions, computed once per distinct key. */
export class KeyRoutes {
  private readonly partitions: number;
  private readonly routes = new Map<string, Route>();

  constructor(partitions: number) {
    this.partitions = partitions;
  }

  get(key: string): Route {
    let route = this.routes.get(key);
    if (route === undefined) {
      if (this.routes.size >= MAX_CACHED_KEYS) this.routes.clear();
      const bytes = Buffer.from(key, 'utf8');
      route = { key: bytes, partition: partitionForKey(bytes, this.partitions) };
      this.routes.set(key, route);
    }
    return route;
  }
}

/**
 * Writes `header` and the Avro body of `e` into `buf` at `pos`: the end, or a negative number
 * when `buf` is too small from `pos` (nothing usable written). Throws BadRecordError
 * (TW_DESERIALIZE) when the event does not fit the AuditEvent schema.
 */
export function writeWireValue(e: AuditEvent, header: Buffer, buf: Buffer, pos: number): number {
  if (pos + WIRE_HEADER_BYTES >= buf.length) return -1;
  try {
    header.copy(buf, pos);
    return auditEventType.encode(e, buf, pos + WIRE_HEADER_BYTES);
  } catch (err) {
    throw notInSchema(e, err);
  }
}

/** The wire value of `e` in a buffer of its own (for an event larger than any chunk). */
export function wireValue(e: AuditEvent, header: Buffer): Buffer {
  try {
    return Buffer.concat([header, auditEventType.toBuffer(e)]);
  } catch (err) {
    throw notInSchema(e, err);
  }
}

function notInSchema(e: AuditEvent, err: unknown): BadRecordError {
  return new BadRecordError(ErrorCodes.DESERIALIZE, `event ${e.eventId} does not fit the AuditEvent schema: ${(err as Error).message}`, {
    cause: err,
  });
}
