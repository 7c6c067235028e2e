/**
 * JSON lines: a service's own audit log, one JSON object a line, mapped to the AuditEvent by
 * `ingest.jsonl` in the config (dotted paths into each object, the time's format, constants for
 * what the log does not say). Without a mapping, each line is an AuditEvent as the contract has it
 * (what `trailwatch backtest` always read as jsonl).
 *
 *   ingest:
 *     jsonl:
 *       time: ts             # required, with timeFormat iso8601 | epoch-s | epoch-ms
 *       principal: actor.id  # required
 *       action: op           # required
 *       service: svc         # else defaults.service
 *
 * A required field missing from a line is a bad record naming the field (and the path looked at);
 * the caller adds the file and line.
 */
import { createHash } from 'node:crypto';
import type { JsonlMappingConfig } from '../../config/schema.ts';
import { assertAuditEvent } from '../../contracts/schemas.ts';
import type { AuditEvent } from '../../contracts/types.ts';
import { BadRecordError, ErrorCodes } from '../../errors.ts';
import { errorItem, type Normalized, normalizing, type Position, type ReadItem, type Source } from '../source.ts';
import { isObject, jsonTextItems, kindOf, messageText, readJsonValueFile, truncate } from './shared.ts';

export const JSONL_EXTENSIONS: readonly string[] = ['.jsonl', '.ndjson', '.jsonl.gz', '.ndjson.gz'];

export type TimeFormat = JsonlMappingConfig['timeFormat'];

/** `ingest.jsonl` as config/schema.ts validates it, defaults filled. */
export type JsonlMapping = JsonlMappingConfig;

export interface JsonlOptions {
  /** null: each line is an AuditEvent. */
  mapping?: JsonlMapping | null;
  raw?: boolean;
}

const MAX_ERROR_MESSAGE_CHARS = 256;
// ISO 8601 date and time with a zone (a space may stand for the T, as many loggers write it).
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})$/i;

export function jsonlSource(options: JsonlOptions = {}): Source {
  const mapping = options.mapping ?? null;
  const normalize = mapping === null ? normalizeAuditEventLine : compileMapping(mapping, options.raw === true);
  return {
    format: 'jsonl',
    description:
      mapping === null ? 'AuditEvents as JSON lines (the contract’s fields)' : 'JSON lines mapped to AuditEvents by ingest.jsonl',
    extensions: JSONL_EXTENSIONS,
    matchesPath: (path) => JSONL_EXTENSIONS.some((ext) => path.toLowerCase().endsWith(ext)),
    sniff: (head) => /^\s*\{[\s\S]{0,1000}?"eventTimeMs"\s*:/.test(head),
    planFile: () => ({ kind: 'read', timeMs: null }),
    read: (file, readOptions) => readJsonValueFile(file, readOptions, lineItems),
    decode: (bytes, origin) => {
      const text = messageText(bytes, origin);
      if ('error' in text) return [text.error];
      return jsonTextItems(text.text, { origin, line: null, index: null }, lineItems);
    },
    normalize,
  };
}

function lineItems(value: unknown, at: Position, text: string): ReadItem[] {
  if (!isObject(value)) {
    const item = errorItem(at, ErrorCodes.DESERIALIZE, `not a JSON object (got ${kindOf(value)})`);
    return [item.kind === 'error' ? { ...item, text } : item];
  }
  return [{ kind: 'record', at, record: value }];
}

function normalizeAuditEventLine(record: unknown): Normalized {
  return normalizing(() => assertAuditEvent(record));
}

type Getter = (record: Record<string, unknown>) => unknown;

function getter(path: string): Getter {
  const parts = path.split('.');
  if (parts.length === 1) return (r) => r[path];
  return (r) => {
    let v: unknown = r;
    for (const p of parts) {
      if (!isObject(v)) return undefined;
      v = v[p];
    }
    return v;
  };
}

/** A normalizer for one mapping: paths split once, not per line. */
export function compileMapping(m: JsonlMapping, raw: boolean): (record: unknown) => Normalized {
  const get = {
    time: getter(m.time),
    principal: getter(m.principal),
    action: getter(m.action),
    service: m.service === null ? null : getter(m.service),
    eventId: m.eventId === null ? null : getter(m.eventId),
    error: m.error === null ? null : getter(m.error),
    account: m.account === null ? null : getter(m.account),
    region: m.region === null ? null : getter(m.region),
    sourceIp: m.sourceIp === null ? null : getter(m.sourceIp),
    userAgent: m.userAgent === null ? null : getter(m.userAgent),
    principalType: m.principalType === null ? null : getter(m.principalType),
    readOnly: m.readOnly === null ? null : getter(m.readOnly),
  };
  const required = (r: Record<string, unknown>, field: string, path: string, g: Getter): string => {
    const text = textOf(g(r));
    if (text === null) throw bad(`missing ${field} (ingest.jsonl.${field}: "${path}")`, field);
    return text;
  };
  const optional = (r: Record<string, unknown>, g: Getter | null): string | null => (g === null ? null : textOf(g(r)));
  return (record) =>
    normalizing(() => {
      if (!isObject(record)) throw bad(`not a JSON object (got ${kindOf(record)})`, null);
      const eventTimeMs = parseTime(get.time(record), m.time, m.timeFormat);
      const principal = required(record, 'principal', m.principal, get.principal);
      const action = required(record, 'action', m.action, get.action);
      const service = optional(record, get.service) ?? m.defaults.service;
      if (service === null)
        throw bad(`missing service (ingest.jsonl.service: "${m.service}", and no ingest.jsonl.defaults.service)`, 'service');
      const errorValue = get.error?.(record);
      const json = raw || get.eventId === null ? JSON.stringify(record) : null;
      const attributes: Record<string, string> = {};
      if (typeof errorValue === 'object' && errorValue !== null) {
        const message = textOf((errorValue as Record<string, unknown>).message);
        if (message !== null) attributes.errorMessage = truncate(message, MAX_ERROR_MESSAGE_CHARS);
      }
      const event: AuditEvent = {
        eventId: optional(record, get.eventId) ?? idOf(json as string),
        eventTimeMs,
        source: m.source,
        accountId: optional(record, get.account) ?? m.defaults.account,
        region: optional(record, get.region) ?? m.defaults.region,
        principal,
        principalType: optional(record, get.principalType) ?? m.defaults.principalType,
        service,
        action,
        readOnly: readOnlyOf(get.readOnly?.(record)),
        errorCode: errorCodeOf(errorValue),
        sourceIp: optional(record, get.sourceIp),
        userAgent: optional(record, get.userAgent),
        attributes,
        raw: raw ? json : null,
      };
      return event;
    });
}

/** A line without an id gets one from its content: the same line delivered twice is counted once. */
function idOf(json: string): string {
  return createHash('sha256').update(json).digest('base64url').slice(0, 22);
}

function textOf(v: unknown): string | null {
  if (typeof v === 'string') return v === '' ? null : v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean') return String(v);
  return null;
}

/**
 * The error code of a line: a string or number as text; `true` (a flag) as "Error"; an object
 * by its `code` (else "Error"); null, false, "" and absent mean the call succeeded.
 */
function errorCodeOf(v: unknown): string | null {
  if (v === true) return 'Error';
  if (v === false) return null;
  if (isObject(v)) return textOf(v.code) ?? textOf(v.type) ?? 'Error';
  return textOf(v);
}

function readOnlyOf(v: unknown): boolean | null {
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  return null;
}

function parseTime(v: unknown, path: string, format: TimeFormat): number {
  if (v === undefined || v === null || v === '') throw bad(`missing time (ingest.jsonl.time: "${path}")`, 'time');
  if (format === 'iso8601') {
    if (typeof v !== 'string' || !ISO_DATE_TIME.test(v)) {
      const hint =
        typeof v === 'number'
          ? '; a number: set ingest.jsonl.timeFormat to epoch-s or epoch-ms'
          : ' with a zone, e.g. 2024-05-01T12:00:00Z';
      throw bad(`time ${JSON.stringify(typeof v === 'string' ? truncate(v, 64) : v)} at "${path}" is not ISO 8601${hint}`, 'time');
    }
    const ms = Date.parse(v.replace(' ', 'T').replace(/([+-]\d{2})(\d{2})$/, '$1:$2'));
    if (!Number.isFinite(ms)) throw bad(`time ${JSON.stringify(v)} at "${path}" is not a valid date`, 'time');
    return ms;
  }
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+(?:\.\d+)?$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isFinite(n))
    throw bad(`time ${JSON.stringify(v)} at "${path}" is not a number of ${format === 'epoch-s' ? 'seconds' : 'milliseconds'}`, 'time');
  const ms = format === 'epoch-s' ? Math.round(n * 1000) : Math.round(n);
  // Off by a factor of 1000 is the usual mistake: say so rather than publish 1970 or year 50,000.
  if (ms < 1e11)
    throw bad(`time ${n} at "${path}" is before 1973 as ${format}: are these epoch seconds? set ingest.jsonl.timeFormat: epoch-s`, 'time');
  if (ms > 1e14)
    throw bad(
      `time ${n} at "${path}" is after year 5000 as ${format}: are these epoch milliseconds? set ingest.jsonl.timeFormat: epoch-ms`,
      'time',
    );
  return ms;
}

function bad(reason: string, field: string | null): BadRecordError {
  return new BadRecordError(ErrorCodes.NORMALIZE, reason, { details: { field } });
}
