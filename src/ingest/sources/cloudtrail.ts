/**
 * CloudTrail deliveries: `{"Records":[…]}` documents, `.json` or `.json.gz`, as a trail writes
 * them to S3 (`AWSLogs/[o-…/]<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_
 * <YYYYMMDDTHHmmZ>_<id>.json.gz`). Digest files (`CloudTrail-Digest/`) and Insights deliveries
 * (`CloudTrail-Insight/`) that live in the same tree are recognised by name and skipped, never
 * opened; the time in a delivery's name is what --since/--until compare, so files outside the
 * range are never opened either. Records are normalized by ../cloudtrail.ts.
 */
import { basename } from 'node:path';
import type { AuditEvent } from '../../contracts/types.ts';
import { BadRecordError } from '../../errors.ts';
import { type NormalizeOptions, normalizeCloudTrail } from '../cloudtrail.ts';
import {
  CLOUDTRAIL_EXTENSIONS,
  DEFAULT_MAX_FILE_BYTES,
  type DeliveryItem,
  decodeUtf8,
  fileError,
  loadFileBytes,
  type NormalizedItem,
  parseJsonText,
  salvageRecords,
} from '../files.ts';
import { planInputs, readPlanned, type TimeRange } from '../inputs.ts';
import {
  type FilePlan,
  located,
  type Normalized,
  normalizing,
  type Position,
  type ReadItem,
  type ReadOptions,
  Skip,
  type Source,
} from '../source.ts';
import { isObject, messageText } from './shared.ts';

/** `<account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<id>`, the name S3 deliveries carry. */
const DELIVERY_NAME = /^(\d{12})_CloudTrail_([a-z0-9-]+)_(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})Z_[A-Za-z0-9]+\.json(?:\.gz)?$/;
const DIGEST = /(?:^|[/\\])CloudTrail-Digest[/\\]|_CloudTrail-Digest_/;
const INSIGHT = /(?:^|[/\\])CloudTrail-Insight[/\\]|_CloudTrail-Insight_/;

export const DIGEST_SKIP = 'a CloudTrail digest file (log file integrity), not API calls';
export const INSIGHT_SKIP = 'a CloudTrail Insights delivery (Insight events), not API calls';

/** The delivery time a CloudTrail file name carries, ms since the epoch; null when the name is not a delivery's. */
export function deliveryTimeMs(path: string): number | null {
  const m = DELIVERY_NAME.exec(basename(path));
  if (!m) return null;
  const [, , , y, mo, d, h, mi] = m;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi));
  return Number.isFinite(ms) ? ms : null;
}

export function cloudTrailSource(options: NormalizeOptions = {}): Source {
  return {
    format: 'cloudtrail',
    description: 'CloudTrail deliveries ({"Records":[…]}, .json / .json.gz), S3 trees with organization trails included',
    extensions: CLOUDTRAIL_EXTENSIONS,
    matchesPath: (path) => CLOUDTRAIL_EXTENSIONS.some((ext) => path.toLowerCase().endsWith(ext)),
    sniff: (head) => /^\s*\{\s*"Records"\s*:\s*\[/.test(head),
    planFile,
    read: (file, readOptions) => readDeliveryFile(file, readOptions),
    decode: (bytes, origin) => decodeDelivery(bytes, origin),
    normalize: (record) => normalizeRecord(record, options),
  };
}

function planFile(path: string): FilePlan {
  if (DIGEST.test(path)) return { kind: 'skip', reason: DIGEST_SKIP };
  if (INSIGHT.test(path)) return { kind: 'skip', reason: INSIGHT_SKIP };
  return { kind: 'read', timeMs: deliveryTimeMs(path) };
}

/** One CloudTrail record → AuditEvent; an Insight event (in a delivery named by hand) is skipped, not taken for a call. */
export function normalizeRecord(record: unknown, options: NormalizeOptions): Normalized {
  if (isObject(record) && (record.eventType === 'AwsCloudTrailInsight' || record.eventCategory === 'Insight')) {
    return new Skip('a CloudTrail Insight event, not an API call');
  }
  // try/catch inline rather than through normalizing(): no closure per record on the hot path.
  try {
    return normalizeCloudTrail(record, options);
  } catch (err) {
    if (err instanceof BadRecordError) return err;
    throw err;
  }
}

async function* readDeliveryFile(file: string, options: ReadOptions): AsyncGenerator<ReadItem[]> {
  yield await readDelivery(file, options.maxFileBytes);
}

/**
 * The items of one delivery file: its records in order, or why it cannot be used. A gzip cut
 * short keeps every record written before the cut, then reports the cut.
 */
export async function readDelivery(file: string, maxFileBytes: number = DEFAULT_MAX_FILE_BYTES): Promise<ReadItem[]> {
  const at: Position = { origin: file, line: null, index: null };
  const loaded = await loadFileBytes(file, maxFileBytes);
  if ('error' in loaded) return [{ kind: 'error', at, error: loaded.error.error }];
  if (loaded.truncated) {
    const text = decodeUtf8(loaded.bytes) ?? '';
    const items = recordItems(file, salvageRecords(text));
    items.push({ kind: 'error', at, error: loaded.truncated.error });
    return items;
  }
  const text = decodeUtf8(loaded.bytes);
  if (text === null) return [{ kind: 'error', at, error: fileError(file, null, 'not valid UTF-8 text').error }];
  return documentItems(file, text);
}

function documentItems(origin: string, text: string): ReadItem[] {
  const at: Position = { origin, line: null, index: null };
  const parsed = parseJsonText(origin, text);
  if ('error' in parsed) return [{ kind: 'error', at, error: parsed.error.error }];
  const doc = parsed.value;
  const records = isObject(doc) ? doc.Records : undefined;
  if (Array.isArray(records)) return recordItems(origin, records);
  if (isObject(doc) && 'digestStartTime' in doc && 'logFiles' in doc) return [{ kind: 'skip', at, reason: DIGEST_SKIP }];
  // One record alone (an export, a Kafka message holding a single record).
  if (isObject(doc) && typeof doc.eventID === 'string') return [{ kind: 'record', at: { origin, line: null, index: 0 }, record: doc }];
  const what = isObject(doc)
    ? `top-level keys: ${Object.keys(doc).slice(0, 5).join(', ') || 'none'}`
    : `top level is ${Array.isArray(doc) ? 'an array' : doc === null ? 'null' : `a ${typeof doc}`}`;
  return [
    {
      kind: 'error',
      at,
      error: fileError(origin, null, `not a CloudTrail delivery: no "Records" array (${what}); for other inputs pass --format`).error,
    },
  ];
}

function recordItems(origin: string, records: unknown[]): ReadItem[] {
  const items: ReadItem[] = [];
  for (let index = 0; index < records.length; index++) {
    items.push({ kind: 'record', at: { origin, line: null, index }, record: records[index] });
  }
  return items;
}

/** A delivery (or one record) held in a message, gzipped or not. */
function decodeDelivery(bytes: Uint8Array, origin: string): ReadItem[] {
  const text = messageText(bytes, origin);
  if ('error' in text) return [text.error];
  return documentItems(origin, text.text);
}

/**
 * Every record of every delivery under `paths`, in reading order (see planInputs), and an error
 * item for each path, file or document that cannot be read: the one-thread reader that tests and
 * benchmarks hold the worker pipeline against. Skipped files and items are left out.
 */
export async function* readCloudTrailDeliveries(
  paths: string[],
  options: { maxFileBytes?: number; range?: TimeRange } = {},
): AsyncGenerator<DeliveryItem> {
  const source = cloudTrailSource();
  const plan = await planInputs(paths, source, options.range);
  for await (const { file, items } of readPlanned(plan.entries, source, options.maxFileBytes)) {
    for (const item of items) {
      if (item.kind === 'record') yield { kind: 'record', file, index: item.at.index ?? 0, record: item.record };
      else if (item.kind === 'error') yield { kind: 'error', file, index: item.at.index, error: item.error };
    }
  }
}

/**
 * Maps record items through normalizeCloudTrail. A record that cannot be normalized becomes an
 * error item whose message reads `file:index: reason`; error items pass through unchanged.
 */
export async function* normalizeDeliveries(
  items: AsyncIterable<DeliveryItem> | Iterable<DeliveryItem>,
  options: NormalizeOptions = {},
): AsyncGenerator<NormalizedItem> {
  for await (const item of items) {
    if (item.kind === 'error') {
      yield item;
      continue;
    }
    const at: Position = { origin: item.file, line: null, index: item.index };
    const n = normalizing(() => normalizeCloudTrail(item.record, options));
    if (n instanceof BadRecordError) yield { kind: 'error', file: item.file, index: item.index, error: located(n, at) };
    else yield { kind: 'event', file: item.file, index: item.index, event: n as AuditEvent };
  }
}
