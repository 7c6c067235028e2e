/**
 * What `trailwatch backtest` reads: any audit source (src/ingest/sources/: CloudTrail deliveries
 * and S3 trees, EventBridge events, CloudWatch Logs payloads, Kubernetes audit logs, JSON lines),
 * or pre-aggregated rows: counts (`timestamp,key,count`) or a metric series (`timestamp,key,<value
 * column>`, e.g. a metric export). Like the sources, nothing here throws for bad input: a path that
 * cannot be read or a line that does not parse becomes an error item carrying file and position,
 * so a run reports it and goes on.
 */
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError, type ErrorCode, ErrorCodes, errorMessage } from '../errors.ts';
import { CLOUDTRAIL_EXTENSIONS, type DeliveryErrorItem, expandInputPaths, type NormalizedItem } from '../ingest/files.ts';
import { inRange, OPEN_RANGE, outcomeOf, planInputs, readPlanned, type TimeRange } from '../ingest/inputs.ts';
import { FORMATS, type Format, positionNumber } from '../ingest/source.ts';
import { createSource, type SourceSpec, sniffFormat } from '../ingest/sources/index.ts';
import { JSONL_EXTENSIONS } from '../ingest/sources/jsonl.ts';

export type InputFormat = Format | 'counts';
/** The formats read as events; counts are rows, one pre-aggregated value per key and bucket (see series.ts). */
export type EventFormat = Format;

export const INPUT_FORMATS: readonly InputFormat[] = [...FORMATS, 'counts'];

export { JSONL_EXTENSIONS };
export const COUNTS_EXTENSIONS: readonly string[] = ['.csv', '.csv.gz'];

/** The synthetic identity of a counts or metric input's keys: one service, one account, one region. */
export const COUNTS_SERVICE = 'counts';
export const COUNTS_SOURCE = 'trailwatch.counts';
export const COUNTS_ACCOUNT = '000000000000';
export const COUNTS_REGION = 'counts';

/** The value column of a counts CSV. */
export const DEFAULT_VALUE_COLUMN = 'count';

/** Epoch milliseconds below this (March 1973) are taken for epoch seconds and refused. */
const MIN_EPOCH_MS = 1e11;

/** An item of any input: an event with where it came from, or an error. `index` is 0-based for deliveries, the 1-based line otherwise. */
export type InputItem = NormalizedItem;

/** One row of a counts CSV or metric series. */
export interface CountsRow {
  file: string;
  /** 1-based line number. */
  line: number;
  timestampMs: number;
  key: string;
  /** A whole count ≥ 0, or for a metric series any finite number (negative only when allowed). */
  value: number;
}

export interface CountsReadOptions {
  /** The column holding each row's value, matched case-insensitively (default `count`). */
  valueColumn?: string;
  /** The values are a metric's: fractions allowed, negatives when `allowNegative`. Default: whole counts ≥ 0. */
  metric?: boolean;
  /** A metric series may go below zero (the detector judges it in both directions). */
  allowNegative?: boolean;
}

export type CountsItem = { kind: 'row'; row: CountsRow } | DeliveryErrorItem;

/**
 * The format of a path: a file by its first bytes (an EventBridge event, a CloudWatch Logs payload,
 * a Kubernetes audit event, a delivery, an AuditEvent line), else by its name; directories are
 * CloudTrail delivery trees. null when neither says.
 */
export async function formatOfPath(path: string): Promise<InputFormat | null> {
  const lower = path.toLowerCase();
  if (COUNTS_EXTENSIONS.some((ext) => lower.endsWith(ext))) return 'counts';
  const info = await stat(path).catch(() => null);
  if (info?.isDirectory()) return 'cloudtrail';
  if (info?.isFile()) {
    const sniffed = await sniffFormat(path);
    if (sniffed !== null) return sniffed;
  }
  if (CLOUDTRAIL_EXTENSIONS.some((ext) => lower.endsWith(ext))) return 'cloudtrail';
  if (JSONL_EXTENSIONS.some((ext) => lower.endsWith(ext))) return 'jsonl';
  return null;
}

export interface ReadInputsOptions extends Omit<SourceSpec, 'format'> {
  /** --since/--until: files by the time in their names where they carry one, events by their time otherwise. */
  range?: TimeRange;
  /** Called for each record read that is not an API call (and each file skipped by name), with the reason. */
  onSkipped?: (reason: string, count: number) => void;
}

/** Events (and error items) of every input, in reading order (see planInputs): not sorted by event time. */
export async function* readInputs(paths: string[], format: EventFormat, options: ReadInputsOptions = {}): AsyncGenerator<InputItem> {
  const { range = OPEN_RANGE, onSkipped, ...spec } = options;
  const source = createSource({ ...spec, format });
  const plan = await planInputs(paths, source, range);
  for (const [reason, count] of Object.entries(plan.skippedFiles)) onSkipped?.(reason, count);
  if (plan.outOfRangeFiles > 0) onSkipped?.('outside --since/--until (by the time in the file name; not opened)', plan.outOfRangeFiles);
  const byEventTime = range.sinceMs !== null || range.untilMs !== null;
  const timed = new Set(plan.entries.flatMap((e) => (e.kind === 'file' && e.timeMs !== null ? [e.file] : [])));
  for await (const { file, items } of readPlanned(plan.entries, source)) {
    // Files whose names carry a time were chosen by it already; the rest are judged by event time.
    const filterEvents = byEventTime && !timed.has(file);
    for (const item of items) {
      const o = outcomeOf(source, item);
      const index = positionNumber(item.at);
      if (o.kind === 'event') {
        if (filterEvents && !inRange(o.event.eventTimeMs, range)) {
          onSkipped?.('outside --since/--until (by event time)', 1);
          continue;
        }
        yield { kind: 'event', file, index: index ?? 0, event: o.event };
      } else if (o.kind === 'skip') onSkipped?.(o.reason, 1);
      else yield { kind: 'error', file, index, error: o.error };
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

/**
 * Rows of counts CSVs: a header naming `timestamp`, `key` and the value column (`count` unless
 * `valueColumn`; any order, other columns are ignored), then one row per key and bucket.
 * Timestamps are ISO-8601 with a zone, or epoch milliseconds; fields may be quoted as in RFC 4180
 * (on one line).
 */
export function readCountsRows(paths: string[], options: CountsReadOptions = {}): AsyncGenerator<CountsItem> {
  return eachFile(paths, COUNTS_EXTENSIONS, (file) => countsRowsOf(file, options));
}

interface Columns {
  timestamp: number;
  key: number;
  value: number;
}

async function* countsRowsOf(file: string, options: CountsReadOptions): AsyncGenerator<CountsItem> {
  const valueName = (options.valueColumn ?? DEFAULT_VALUE_COLUMN).trim();
  let columns: Columns | null = null;
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
      const find = (name: string): number => names.indexOf(name.toLowerCase());
      const wanted = ['timestamp', 'key', valueName];
      const missing = wanted.filter((n) => find(n) < 0);
      if (missing.length > 0) {
        yield lineError(
          file,
          line,
          ErrorCodes.INPUT_FILE,
          `the header must name the columns ${wanted.join(',')}; missing ${missing.join(', ')} (got ${JSON.stringify(text.slice(0, 80))})`,
        );
        break; // without a header no row can be read
      }
      columns = { timestamp: find('timestamp'), key: find('key'), value: find(valueName) };
      continue;
    }
    const row = parseCountsRow(file, line, fields, columns, valueName, options);
    if (typeof row === 'string') yield lineError(file, line, ErrorCodes.NORMALIZE, row);
    else yield { kind: 'row', row };
  }
}

function parseCountsRow(
  file: string,
  line: number,
  fields: string[],
  columns: Columns,
  valueName: string,
  options: CountsReadOptions,
): CountsRow | string {
  const ts = fields[columns.timestamp]?.trim();
  const key = fields[columns.key]?.trim();
  const valueText = fields[columns.value]?.trim();
  if (ts === undefined || key === undefined || valueText === undefined) {
    return `expected at least ${Math.max(columns.timestamp, columns.key, columns.value) + 1} fields, got ${fields.length}`;
  }
  const timestampMs = parseTimestamp(ts);
  if (typeof timestampMs === 'string') return timestampMs;
  if (key === '') return 'empty key';
  const value = options.metric ? parseMetricValue(valueText, valueName, options.allowNegative === true) : parseCount(valueText);
  if (typeof value === 'string') return value;
  return { file, line, timestampMs, key, value };
}

/** A count: a whole number ≥ 0, exact as a double. No upper bound: a row is one bucket's value, never expanded. */
function parseCount(text: string): number | string {
  const count = Number(text);
  if (text === '' || !Number.isInteger(count) || count < 0) return `count ${JSON.stringify(text)} is not a whole number ≥ 0`;
  if (!Number.isSafeInteger(count)) return `count ${text} is over ${Number.MAX_SAFE_INTEGER}, the largest whole number kept exactly`;
  return count;
}

/** A metric's value: any finite number; below zero only when the detector judges both directions. */
function parseMetricValue(text: string, column: string, allowNegative: boolean): number | string {
  const value = Number(text);
  if (text === '' || !Number.isFinite(value)) return `${column} ${JSON.stringify(text.slice(0, 64))} is not a finite number`;
  if (value < 0 && !allowNegative) return `${column} ${text} is negative: a series that goes below zero needs detector.direction both`;
  return value;
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
 * The events a counts row stood for before rows went to the engine as bucket values: `value`
 * write calls to the synthetic action named by the key, by a principal of the same name, at the
 * row's timestamp. Ids are `${key}|${timestampMs}|${i}`. Not on any command's path: O(count), it
 * is kept as the reference the series path must agree with (test/backtest/series.test.ts) and
 * the baseline bench/series.ts measures it against.
 */
export function* countsEvents(row: Pick<CountsRow, 'key' | 'timestampMs' | 'value'>): Generator<AuditEvent> {
  for (let i = 0; i < row.value; i++) {
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

export interface InputEventsOptions extends Pick<ReadInputsOptions, 'range' | 'jsonl' | 'k8sAudit' | 'onSkipped'> {
  format: EventFormat;
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
 * memory first and sorted (stably: ties keep input order).
 */
export async function* inputEvents(paths: string[], options: InputEventsOptions): AsyncGenerator<AuditEvent> {
  const { format, presorted = false, onRejected, onRead } = options;
  const events: AuditEvent[] = [];
  const { range, jsonl, k8sAudit, onSkipped } = options;
  for await (const item of readInputs(paths, format, { raw: options.keepRaw === true, range, jsonl, k8sAudit, onSkipped })) {
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

export interface InputRowsOptions extends CountsReadOptions {
  /** The rows are already in time order across files: stream them (rows out of order by more than allowedLatenessMs are late). */
  presorted?: boolean;
  /** Called for each refused row or unreadable path, in input order. */
  onRejected?: (item: DeliveryErrorItem) => void;
  /** Called for each row read (good or bad), e.g. for progress. */
  onRead?: () => void;
}

/** The rows of every counts input in time order: read whole and sorted (stably) unless `presorted`. Memory per row. */
export async function* inputRows(paths: string[], options: InputRowsOptions = {}): AsyncGenerator<CountsRow> {
  const { presorted = false, onRejected, onRead } = options;
  const rows: CountsRow[] = [];
  for await (const item of readCountsRows(paths, options)) {
    onRead?.();
    if (item.kind === 'error') onRejected?.(item);
    else if (presorted) yield item.row;
    else rows.push(item.row);
  }
  rows.sort((a, b) => a.timestampMs - b.timestampMs);
  yield* rows;
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
