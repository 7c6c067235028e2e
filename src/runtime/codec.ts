import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import avro, { type Type } from 'avsc';
import { assertAuditEvent, auditEventType, findingType, insightType } from '../contracts/schemas.ts';
import type { AuditEvent, Finding, Insight } from '../contracts/types.ts';
import { BadRecordError, ErrorCodes } from '../errors.ts';
import { registryError, registryUnreachable } from './registry.ts';

/** Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the Avro body. */
export const WIRE_HEADER_BYTES = 5;
export const DEFAULT_MAX_RECORD_BYTES = 1024 * 1024; // 1 MiB: an audit event is a few hundred bytes

/** Reads one Avro body written with a known writer schema as the reader's type; throws BadRecordError. */
type BodyDecoder = (body: Buffer) => unknown;

/**
 * Decodes records in the reader's schema (trailwatch's own contracts), whatever BACKWARD-compatible
 * version the producer wrote them with: fields the writer added are dropped, fields it lacks take
 * the reader's defaults, as Avro schema resolution says. One decoder per writer schema id, built
 * once: the registry is asked once per id, and no schema is parsed per record.
 */
export class EventCodec {
  private readonly registry: SchemaRegistry;
  private readonly maxRecordBytes: number;
  private readonly eventDecoders = new Map<number, BodyDecoder>();
  private readonly insightDecoders = new Map<number, BodyDecoder>();
  private readonly findingDecoders = new Map<number, BodyDecoder>();

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

  encodeFinding(schemaId: number, finding: Finding): Promise<Buffer> {
    return this.registry.encode(schemaId, finding);
  }

  /**
   * Decodes one events-topic value. Bad bytes, an unknown schema id or a writer schema that cannot
   * be read as AuditEvent throw BadRecordError (dead-lettered, never retried); an unreachable
   * registry throws a retryable TrailwatchError.
   */
  async decodeEvent(value: Buffer | null): Promise<AuditEvent> {
    const decoded = await this.decode(value, auditEventType, this.eventDecoders);
    return assertAuditEvent(decoded);
  }

  async decodeInsight(value: Buffer | null): Promise<Insight> {
    return (await this.decode(value, insightType, this.insightDecoders)) as Insight;
  }

  async decodeFinding(value: Buffer | null): Promise<Finding> {
    return (await this.decode(value, findingType, this.findingDecoders)) as Finding;
  }

  private async decode(value: Buffer | null, reader: Type, decoders: Map<number, BodyDecoder>): Promise<unknown> {
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
    let decoder = decoders.get(schemaId);
    if (decoder === undefined) {
      decoder = bodyDecoder(schemaId, await this.writerSchema(schemaId), reader);
      decoders.set(schemaId, decoder);
    }
    return decoder(value.subarray(WIRE_HEADER_BYTES));
  }

  /** The writer's schema, or the reason it cannot be had: unknown id (dead letter) or registry trouble (retried). */
  private async writerSchema(schemaId: number): Promise<Type | BadRecordError> {
    let writer: unknown;
    try {
      writer = await this.registry.getSchema(schemaId);
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status === 404)
        throw new BadRecordError(ErrorCodes.SCHEMA_UNKNOWN, `schema id ${schemaId} is not in the registry`, { cause: err });
      if (status !== undefined || registryUnreachable(err) !== null) throw registryError(err, `fetching schema id ${schemaId}`);
      // The registry answered, but the client could not parse what it holds under that id.
      return new BadRecordError(
        ErrorCodes.SCHEMA_INCOMPATIBLE,
        `schema id ${schemaId} is not a usable Avro schema: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (!avro.Type.isType(writer)) {
      return new BadRecordError(ErrorCodes.SCHEMA_INCOMPATIBLE, `schema id ${schemaId} is not an Avro schema (JSON Schema or Protobuf?)`);
    }
    return writer as Type;
  }
}

/**
 * The decoder for bodies written with `writer`, read as `reader`. A writer that cannot be
 * resolved to the reader (a change that is not BACKWARD compatible: a field's type changed, a
 * field the reader needs has no default) yields a decoder that dead-letters every such record.
 */
function bodyDecoder(schemaId: number, writer: Type | BadRecordError, reader: Type): BodyDecoder {
  const readerName = (reader.name ?? reader.typeName).replace(/^.*\./, '');
  const refuse = (error: BadRecordError): BodyDecoder => {
    return () => {
      throw new BadRecordError(error.code, error.message, { cause: error.cause });
    };
  };
  if (writer instanceof BadRecordError) return refuse(writer);
  const undecodable = (err: unknown) =>
    new BadRecordError(ErrorCodes.DESERIALIZE, `Avro body does not decode with schema id ${schemaId}: ${(err as Error).message}`, {
      cause: err,
    });
  // The same schema (canonical form: docs and defaults aside) needs no resolution.
  if (writer.equals(reader)) {
    return (body) => {
      try {
        return reader.fromBuffer(body);
      } catch (err) {
        throw undecodable(err);
      }
    };
  }
  let resolver: ReturnType<Type['createResolver']>;
  try {
    resolver = reader.createResolver(writer);
  } catch (err) {
    const why = fieldConflicts(reader, writer);
    return refuse(
      new BadRecordError(
        ErrorCodes.SCHEMA_INCOMPATIBLE,
        `records written with schema id ${schemaId} cannot be read as ${readerName} (not a BACKWARD-compatible change): ` +
          (why.length > 0 ? why.join('; ') : (err as Error).message),
        { cause: err },
      ),
    );
  }
  return (body) => {
    try {
      return reader.fromBuffer(body, resolver);
    } catch (err) {
      throw undecodable(err);
    }
  };
}

interface RecordField {
  name: string;
  type: Type;
  defaultValue: () => unknown;
}

/** Which top-level fields keep `writer` from resolving to `reader`, for the dead letter's reason. */
function fieldConflicts(reader: Type, writer: Type): string[] {
  const fields = (t: Type) => (t as unknown as { fields?: RecordField[] }).fields ?? [];
  if (reader.typeName !== 'record' || writer.typeName !== 'record') return [];
  if (reader.name !== writer.name) return [`the writer's record is ${writer.name}, not ${reader.name}`];
  const written = new Map(fields(writer).map((f) => [f.name, f]));
  const conflicts: string[] = [];
  for (const field of fields(reader)) {
    const w = written.get(field.name);
    if (!w) {
      if (field.defaultValue() === undefined) conflicts.push(`${field.name}: missing in the writer, and the reader has no default`);
      continue;
    }
    try {
      field.type.createResolver(w.type);
    } catch (err) {
      conflicts.push(`${field.name}: ${(err as Error).message}`);
    }
  }
  return conflicts;
}
