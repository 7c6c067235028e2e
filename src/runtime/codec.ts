import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { assertAuditEvent } from '../contracts/schemas.ts';
import type { AuditEvent, Insight } from '../contracts/types.ts';
import { BadRecordError, ErrorCodes } from '../errors.ts';
import { registryError } from './registry.ts';

/** Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the Avro body. */
export const WIRE_HEADER_BYTES = 5;
export const DEFAULT_MAX_RECORD_BYTES = 1024 * 1024; // 1 MiB: an audit event is a few hundred bytes

export class EventCodec {
  private readonly registry: SchemaRegistry;
  private readonly maxRecordBytes: number;

  constructor(registry: SchemaRegistry, options: { maxRecordBytes?: number } = {}) {
    this.registry = registry;
    this.maxRecordBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  }

  encodeEvent(schemaId: number, event: AuditEvent): Promise<Buffer> {
    return this.registry.encode(schemaId, event);
  }

  encodeInsight(schemaId: number, insight: Insight): Promise<Buffer> {
    return this.registry.encode(schemaId, insight);
  }

  /**
   * Decodes one events-topic value. Bad bytes throw BadRecordError (dead-lettered, never
   * retried); an unreachable registry throws a retryable TrailwatchError.
   */
  async decodeEvent(value: Buffer | null): Promise<AuditEvent> {
    const decoded = await this.decode(value);
    return assertAuditEvent(decoded);
  }

  async decodeInsight(value: Buffer | null): Promise<Insight> {
    return (await this.decode(value)) as Insight;
  }

  private async decode(value: Buffer | null): Promise<unknown> {
    if (value === null || value.length === 0) throw new BadRecordError(ErrorCodes.DESERIALIZE, 'empty record value (tombstone?)');
    if (value.length > this.maxRecordBytes) {
      throw new BadRecordError(
        ErrorCodes.RECORD_TOO_LARGE,
        `record of ${value.length} bytes exceeds the ${this.maxRecordBytes}-byte limit`,
      );
    }
    if (value.length < WIRE_HEADER_BYTES || value[0] !== 0) {
      throw new BadRecordError(
        ErrorCodes.DESERIALIZE,
        `not in Confluent wire format (magic byte ${value[0] ?? 'missing'}, ${value.length} bytes): publish with the registry-aware serializer`,
      );
    }
    const schemaId = value.readInt32BE(1);
    try {
      return await this.registry.decode(value);
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status === 404)
        throw new BadRecordError(ErrorCodes.SCHEMA_UNKNOWN, `schema id ${schemaId} is not in the registry`, { cause: err });
      if (status !== undefined || isNetworkError(err)) throw registryError(err, `fetching schema id ${schemaId}`);
      throw new BadRecordError(ErrorCodes.DESERIALIZE, `Avro body does not decode with schema id ${schemaId}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
}

function isNetworkError(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return (
    /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN|UND_ERR)/.test(code) ||
    /fetch failed|socket hang up|timeout/i.test((err as Error).message ?? '')
  );
}
