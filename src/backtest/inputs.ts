/**
 * What `trailwatch backtest` reads: CloudTrail deliveries, AuditEvent JSON lines, or
 * pre-aggregated counts (`timestamp,key,count`, e.g. a metric export). Like the delivery reader,
 * nothing here throws for bad input: a path that cannot be read or a line that does not parse
 * becomes an error item carrying file and index, so a run reports it and goes on.
 */
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { assertAuditEvent } from '../contracts/schemas.ts';
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError, type ErrorCode, ErrorCodes, errorMessage } from '../errors.ts';
import {
  CLOUDTRAIL_EXTENSIONS,
  type DeliveryErrorItem,
  expandInputPaths,
  locateJsonError,
  type NormalizedItem,
  normalizeDeliveries,
  readCloudTrailDeliveries,
} from '../ingest/files.ts';

export type InputFormat = 'cloudtrail' | 'jsonl' | 'counts';

export const INPUT_FORMATS: readonly InputFormat[] = ['cloudtrail', 'jsonl', 'counts'];

export const JSONL_EXTENSIONS: readonly string[] = ['.jsonl', '.ndjson', '.jsonl.gz', '.ndjson.gz'];
export const COUNTS_EXTENSIONS: readonly string[] = ['.csv', '.csv.gz'];

/** The synthetic events of a counts input: one service, one account, one region. */
export const COUNTS_SERVICE = 'counts';
export const COUNTS_SOURCE = 'trailwatch.counts';
export const COUNTS_ACCOUNT = '000000000000';
export const COUNTS_REGION = 'counts';

/** A row asking for more events than this is refused: it is a typo or a unit mix-up, not a minute of traffic. */
export const MAX_COUNT_PER_ROW = 10_000_000;

/** Epoch milliseconds below this (March 1973) are taken for epoch seconds and refused. */
const MIN_EPOCH_MS = 1e11;

/** An item of any input: an event with where it came from, or an error. `index` is 0-based for deliveries, the 1-based line otherwise. */
export type InputItem = NormalizedItem;

/** One row of a counts CSV. */
export interface CountsRow {
  file: string;
  /** 1-based line number. */
  line: number;
  timestampMs: number;
  key: string;
  count: number;
}

export type CountsItem = { kind: 'row'; row: CountsRow } | DeliveryErrorItem;

/** The format a path implies by its name; directories are CloudTrail delivery trees. null when the name says nothing. */
export async function formatOfPath(path: string): Promise<InputFormat | null> {
  const lower = path.toLowerCase();
  if (CLOUDTRAIL_EXTENSIONS.some((ext) => lower.endsWith(ext))) return 'cloudtrail';
  if (JSONL_EXTENSIONS.some((ext) => lower.endsWith(ext))) return 'jsonl';
  if (COUNTS_EXTENSIONS.some((ext) => lower.endsWith(ext))) return 'counts';
  const info = await stat(path).catch(() => null);
  return info?.isDirectory() ? 'cloudtrail' : null;
}

/** Events (and error items) of every input, in file order then record order: not sorted by time. */
export async function* readInputs(paths: string[], format: InputFormat, options: { raw?: boolean } = {}): AsyncGenerator<InputItem> {
  if (format === 'cloudtrail') {
    yield* normalizeDeliveries(readCloudTrailDeliveries(paths), options);
  } else if (format === 'jsonl') {
    yield* readJsonLines(paths);
  } else {
    for await (const item of readCountsRows(paths)) {
      if (item.kind === 'error') yield item;
      else for (const event of countsEvents(item.row)) yield { kind: 'event', file: item.row.file, index: item.row.line, event };
    }
  }
}

/** Expands the paths and reads each file with `read`; a path that cannot be read is an error item. */
async function* eachFile<T>(
  paths: string[],
  exts: readonly string[],
  read: (file: string) => AsyncGenerator<T>,
): AsyncGenerator<T | DeliveryErrorItem> {
  for (const entry of await expandInputPaths(paths, exts)) {
    if (entry.kind === 'error') yield entry;
    else yield* read(entry.file);
  }
}

/** AuditEvents, one JSON object a line (plain or gzipped); blank lines are skipped. */
export function readJsonLines(paths: string[]): AsyncGenerator<InputItem> {
  return eachFile(paths, JSONL_EXTENSIONS, jsonLinesOf);
}

async function* jsonLinesOf(file: string): AsyncGenerator<InputItem> {
  for await (const item of readLines(file)) {
    if (item.kind === 'error') {
      yield item;
      continue;
    }
    const { line, text } = item;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      const at = locateJsonError(text);
      const reason = at ? `malformed JSON at column ${at.column}: ${at.reason}` : `malformed JSON: ${errorMessage(err)}`;
      yield lineError(file, line, ErrorCodes.DESERIALIZE, reason, err);
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
      yield lineError(file, line, ErrorCodes.DESERIALIZE, `not a JSON object (got ${got})`);
      continue;
    }
    try {
      yield { kind: 'event', file, index: line, event: assertAuditEvent(value) };
    } catch (err) {
      if (!(err instanceof BadRecordError)) throw err;
      yield lineError(file, line, err.code, err.message, err);
    }
  }
}

/**
 * Rows of counts CSVs: a header naming `timestamp`, `key` and `count` (any order; other columns
 * are ignored), then one row per key and bucket. Timestamps are ISO-8601 with a zone, or epoch
 * milliseconds; fields may be quoted as in RFC 4180 (on one line).
 */
export function readCountsRows(paths: string[]): AsyncGenerator<CountsItem> {
  return eachFile(paths, COUNTS_EXTENSIONS, countsRowsOf);
}

async function* countsRowsOf(file: string): AsyncGenerator<CountsItem> {
  let columns: { timestamp: number; key: number; count: number } | null = null;
  for await (const item of readLines(file)) {
    if (item.kind === 'error') {
      yield item;
      continue;
    }
    const { line, text } = item;
    const fields = splitCsvLine(text);
    if (fields === null) {
      yield lineError(file, line, columns ? ErrorCodes.NORMALIZE : ErrorCodes.INPUT_FILE, 'unbalanced quotes');
      if (!columns) break;
      continue;
    }
    if (!columns) {
      const names = fields.map((f) => f.trim().toLowerCase());
      const find = (name: string): number => names.indexOf(name);
      const [timestamp, key, count] = [find('timestamp'), find('key'), find('count')];
      const missing = ['timestamp', 'key', 'count'].filter((n) => find(n) < 0);
      if (missing.length > 0) {
        yield lineError(
          file,
          line,
          ErrorCodes.INPUT_FILE,
          `the header must name the columns timestamp,key,count; missing ${missing.join(', ')} (got ${JSON.stringify(text.slice(0, 80))})`,
        );
        break; // without a header no row can be read
      }
      columns = { timestamp, key, count };
      continue;
    }
    const row = parseCountsRow(file, line, fields, columns);
    if (typeof row === 'string') yield lineError(file, line, ErrorCodes.NORMALIZE, row);
    else yield { kind: 'row', row };
  }
}

function parseCountsRow(
  file: string,
  line: number,
  fields: string[],
  columns: { timestamp: number; key: number; count: number },
): CountsRow | string {
  const ts = fields[columns.timestamp]?.trim();
  const key = fields[columns.key]?.trim();
  const countText = fields[columns.count]?.trim();
  if (ts === undefined || key === undefined || countText === undefined) {
    return `expected at least ${Math.max(columns.timestamp, columns.key, columns.count) + 1} fields, got ${fields.length}`;
  }
  const timestampMs = parseTimestamp(ts);
  if (typeof timestampMs === 'string') return timestampMs;
  if (key === '') return 'empty key';
  const count = Number(countText);
  if (countText === '' || !Number.isInteger(count) || count < 0) return `count ${JSON.stringify(countText)} is not a whole number ≥ 0`;
  if (count > MAX_COUNT_PER_ROW) return `count ${count} is over the limit of ${MAX_COUNT_PER_ROW} per row`;
  return { file, line, timestampMs, key, count };
}

// ISO-8601 date and time with a zone; a space may stand for the T, as many exporters write it.
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})$/i;

/** Epoch ms or ISO-8601 with a zone → ms; else the reason. */
export function parseTimestamp(text: string): number | string {
  if (/^\d+$/.test(text)) {
    const ms = Number(text);
    if (ms < MIN_EPOCH_MS) return `timestamp ${text} looks like epoch seconds; give epoch milliseconds or ISO-8601`;
    return ms;
  }
  if (!ISO_DATE_TIME.test(text)) {
    const hint = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(text) ? ' (a time zone is required, e.g. Z)' : '';
    return `timestamp ${JSON.stringify(text.slice(0, 64))} is neither epoch milliseconds nor ISO-8601${hint}`;
  }
  const ms = Date.parse(text.replace(' ', 'T').replace(/([+-]\d{2})(\d{2})$/, '$1:$2'));
  return Number.isFinite(ms) ? ms : `timestamp ${JSON.stringify(text)} is not a valid date`;
}

/**
 * The events a counts row stands for: `count` write calls to the synthetic action named by the
 * key, by a principal of the same name, at the row's timestamp (so in the row's bucket). Ids are
 * `${key}|${timestampMs}|${i}`: deterministic, so a row repeated verbatim is counted once.
 */
export function* countsEvents(row: CountsRow): Generator<AuditEvent> {
  for (let i = 0; i < row.count; i++) {
    yield {
      eventId: `${row.key}|${row.timestampMs}|${i}`,
      eventTimeMs: row.timestampMs,
      source: COUNTS_SOURCE,
      accountId: COUNTS_ACCOUNT,
      region: COUNTS_REGION,
      principal: row.key,
      principalType: 'Counts',
      service: COUNTS_SERVICE,
      action: row.key,
      readOnly: false,
      errorCode: null,
      sourceIp: null,
      userAgent: null,
      attributes: {},
    };
  }
}

export interface InputEventsOptions {
  format: InputFormat;
  /**
   * The inputs are already in event-time order across files: stream them instead of loading
   * and sorting. Events more than allowedLatenessMs out of order are then counted as late.
   */
  presorted?: boolean;
  /** Called for each bad record or unreadable path, in input order. */
  onRejected?: (item: DeliveryErrorItem) => void;
  /** Called for each record read (good or bad), e.g. for progress. */
  onRead?: () => void;
  /**
   * Keep each event's CloudTrail record in `raw` (cloudtrail inputs), for rules that read fields
   * the normalized event lacks. Off by default: the sort then holds normalized events only.
   */
  keepRaw?: boolean;
}

/**
 * The events of every input in event-time order. CloudTrail writes deliveries per region and
 * per five minutes, so files overlap in time: unless `presorted`, every event is read into
 * memory first and sorted (stably: ties keep input order). Counts are sorted as rows and
 * expanded into events lazily, so they cost memory per row, not per event.
 */
export async function* inputEvents(paths: string[], options: InputEventsOptions): AsyncGenerator<AuditEvent> {
  const { format, presorted = false, onRejected, onRead } = options;
  if (format === 'counts') {
    const rows: CountsRow[] = [];
    for await (const item of readCountsRows(paths)) {
      onRead?.();
      if (item.kind === 'error') onRejected?.(item);
      else if (presorted) yield* countsEvents(item.row);
      else rows.push(item.row);
    }
    rows.sort((a, b) => a.timestampMs - b.timestampMs);
    for (const row of rows) yield* countsEvents(row);
    return;
  }
  const events: AuditEvent[] = [];
  for await (const item of readInputs(paths, format, { raw: options.keepRaw === true })) {
    onRead?.();
    if (item.kind === 'error') {
      onRejected?.(item);
      continue;
    }
    if (presorted) yield item.event;
    else events.push(item.event);
  }
  events.sort((a, b) => a.eventTimeMs - b.eventTimeMs);
  yield* events;
}

// ── helpers ──────────────────────────────────────────────────────────────

type LineItem = { kind: 'line'; line: number; text: string } | DeliveryErrorItem;

/** Lines of a text file, gunzipped when its content is gzip (decided by content, as for deliveries). */
async function* readLines(file: string): AsyncGenerator<LineItem> {
  let gzipped: boolean;
  try {
    const fd = createReadStream(file, { start: 0, end: 1 });
    const chunks: Buffer[] = [];
    for await (const chunk of fd) chunks.push(chunk as Buffer);
    const head = Buffer.concat(chunks);
    gzipped = head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  } catch (err) {
    yield lineError(file, null, ErrorCodes.INPUT_FILE, `cannot read: ${errorMessage(err)}`, err);
    return;
  }
  const raw = createReadStream(file);
  let input: Readable = raw;
  if (gzipped) {
    const gunzip = createGunzip();
    raw.on('error', (err) => gunzip.destroy(err));
    input = raw.pipe(gunzip);
  } else if (file.endsWith('.gz')) {
    raw.destroy();
    yield lineError(file, null, ErrorCodes.INPUT_FILE, 'named .gz but not gzip data');
    return;
  }
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let line = 0;
  try {
    for await (const text of lines) {
      line++;
      // Blank lines carry nothing in either line format.
      if (text.trim() !== '') yield { kind: 'line', line, text };
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'Z_BUF_ERROR'
        ? `truncated gzip after line ${line}: ${errorMessage(err)}`
        : `cannot read after line ${line}: ${errorMessage(err)}`;
    yield lineError(file, null, ErrorCodes.INPUT_FILE, reason, err);
  } finally {
    lines.close();
    if (!raw.destroyed) {
      raw.destroy();
      await once(raw, 'close').catch(() => undefined);
    }
  }
}

/**
 * Splits one CSV line into fields, RFC 4180 quoting (`"a,b"`, `""` for a quote) on a single
 * line; null when a quote is left open.
 */
export function splitCsvLine(text: string): string[] | null {
  const out: string[] = [];
  let i = 0;
  const n = text.length;
  for (;;) {
    if (text[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        if (i >= n) return null;
        const c = text[i];
        if (c === '"') {
          if (text[i + 1] === '"') {
            value += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        value += c;
        i++;
      }
      // Anything between the closing quote and the comma is kept, as lenient readers do.
      const comma = text.indexOf(',', i);
      value += comma < 0 ? text.slice(i) : text.slice(i, comma);
      out.push(value);
      if (comma < 0) return out;
      i = comma + 1;
    } else {
      const comma = text.indexOf(',', i);
      out.push(comma < 0 ? text.slice(i) : text.slice(i, comma));
      if (comma < 0) return out;
      i = comma + 1;
    }
  }
}

function lineError(file: string, line: number | null, code: ErrorCode, reason: string, cause?: unknown): DeliveryErrorItem {
  const where = line === null ? file : `${file}:${line}`;
  const error = new BadRecordError(code, `${where}: ${reason}`, { cause, details: { file, index: line, reason } });
  return { kind: 'error', file, index: line, error };
}
