/**
 * The Avro schemas of the contracts (AuditEvent, Insight, Finding), loaded once from `schemas/*.avsc` (the files are the
 * source of truth: they are what gets registered), and an avsc validator for AuditEvent.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Type } from 'avsc';
import avro from 'avsc';
import { BadRecordError, ErrorCodes } from '../errors.ts';
import type { AuditEvent } from './types.ts';

/** A top-level Avro record schema, shaped as the schema-registry client's `RawAvroSchema` wants it. */
export interface AvroRecordSchema {
  type: 'record';
  name: string;
  namespace: string;
  doc?: string;
  fields: unknown[];
}

export const SCHEMAS_DIR = join(import.meta.dirname, '../../schemas');

function loadRecordSchema(file: string): AvroRecordSchema {
  const path = join(SCHEMAS_DIR, file);
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (
    typeof parsed !== 'object' ||
    parsed === null ||
    (parsed as { type?: unknown }).type !== 'record' ||
    typeof (parsed as { name?: unknown }).name !== 'string' ||
    typeof (parsed as { namespace?: unknown }).namespace !== 'string' ||
    !Array.isArray((parsed as { fields?: unknown }).fields)
  ) {
    throw new Error(`${path} is not a named Avro record schema with a namespace`);
  }
  return parsed as AvroRecordSchema;
}

export const auditEventSchema: AvroRecordSchema = loadRecordSchema('AuditEvent.avsc');
export const insightSchema: AvroRecordSchema = loadRecordSchema('Insight.avsc');
/** Not registered yet: src/runtime/registry.ts registers AuditEvent and Insight only. */
export const findingSchema: AvroRecordSchema = loadRecordSchema('Finding.avsc');

// No logical-type implementations are registered on purpose: timestamp-millis stays a plain
// number of ms, which is what the TypeScript contracts say (and what the registry client decodes).
export const auditEventType: Type = avro.Type.forSchema(auditEventSchema as avro.Schema);
export const insightType: Type = avro.Type.forSchema(insightSchema as avro.Schema);
export const findingType: Type = avro.Type.forSchema(findingSchema as avro.Schema);

/** Schema-registry subject of a topic's values under TopicNameStrategy. */
export function valueSubject(topic: string): string {
  return `${topic}-value`;
}

/**
 * Every place where `value` does not fit `type`, as `path: expected X, got Y` lines. Undeclared
 * fields count as problems too: avsc would drop them silently when encoding, which hides typos.
 */
export function avroProblems(type: Type, value: unknown): string[] {
  const problems: string[] = [];
  // Pass 1: wrong or missing values, reported at the leaf that is wrong.
  type.isValid(value, {
    errorHook(path: string[], any: unknown, t: Type) {
      problems.push(`${pathText(path)}: expected ${describeType(t)}, got ${describeValue(any)}`);
    },
  });
  // Pass 2: fields the schema does not declare. avsc reports them on the record holding them
  // (and stops looking deeper there), so only record-level reports with extra keys count here.
  type.isValid(value, {
    noUndeclaredFields: true,
    errorHook(path: string[], any: unknown, t: Type) {
      for (const name of undeclaredFields(t, any)) {
        problems.push(`${pathText([...path, name])}: not a field of ${describeType(t)}`);
      }
    },
  });
  return problems;
}

function pathText(path: string[]): string {
  return path.length === 0 ? '(root)' : path.join('.');
}

/** Checks that `value` is an AuditEvent the Avro schema accepts; throws TW_DESERIALIZE naming every bad field. */
export function assertAuditEvent(value: unknown): AuditEvent {
  const problems = avroProblems(auditEventType, value);
  if (problems.length > 0) {
    throw new BadRecordError(ErrorCodes.DESERIALIZE, `not a valid AuditEvent: ${problems.join('; ')}`, {
      details: { problems },
    });
  }
  return value as AuditEvent;
}

function undeclaredFields(type: Type, value: unknown): string[] {
  if (type.typeName !== 'record' || typeof value !== 'object' || value === null) return [];
  const declared = new Set((type as unknown as { fields: { name: string }[] }).fields.map((f) => f.name));
  return Object.keys(value).filter((key) => !declared.has(key));
}

function describeType(type: Type): string {
  const t = type as unknown as {
    typeName: string;
    name?: string;
    types?: Type[];
    symbols?: string[];
    itemsType?: Type;
    valuesType?: Type;
    underlyingType?: Type;
  };
  if (t.types) return t.types.map(describeType).join(' | ');
  if (t.typeName === 'enum' && t.symbols) return `one of ${t.symbols.join(', ')}`;
  if (t.typeName === 'array' && t.itemsType) return `array of ${describeType(t.itemsType)}`;
  if (t.typeName === 'map' && t.valuesType) return `map of ${describeType(t.valuesType)}`;
  if (t.name) return t.name.replace(/^io\.trailwatch\./, '');
  return t.typeName;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing (missing)';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string')
    return value.length > 40 ? `a string of ${value.length} characters` : `the string ${JSON.stringify(value)}`;
  if (typeof value === 'number') return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`;
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}
