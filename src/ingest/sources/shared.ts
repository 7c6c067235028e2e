/**
 * What the sources share: JSON values read from line files (one a line, or run together as
 * Firehose writes them), messages gunzipped by content, and small type guards.
 */
import { gunzipSync } from 'node:zlib';
import { ErrorCodes } from '../../errors.ts';
import { decodeUtf8, isGzip, locateJsonError, readLineBatches, splitJsonValues } from '../files.ts';
import { errorItem, type Position, type ReadItem, type ReadOptions } from '../source.ts';

export type Json = Record<string, unknown>;

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/** A non-empty string, else null. */
export function str(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

/** At most `max` UTF-16 units, never splitting a surrogate pair. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.charCodeAt(max - 1) >= 0xd800 && text.charCodeAt(max - 1) <= 0xdbff ? max - 1 : max;
  return text.slice(0, cut);
}

/** Turns each JSON value into the items of a source (an envelope may hold several records, or none). */
export type ValueItems = (value: unknown, at: Position, text: string) => ReadItem[];

/**
 * The items of a file of JSON values: one a line (JSON lines), or several run together on a line
 * (Firehose's S3 objects). Streams: memory is a batch of lines. A line that is not JSON is an error
 * item naming the file, the line and the column.
 */
export async function* readJsonValueFile(file: string, options: ReadOptions, toItems: ValueItems): AsyncGenerator<ReadItem[]> {
  for await (const batch of readLineBatches(file, options.maxFileBytes)) {
    const items: ReadItem[] = [];
    for (const { line, text } of batch.lines) {
      jsonTextItems(text, { origin: file, line, index: null }, toItems, items);
    }
    if (batch.error) items.push({ kind: 'error', at: { origin: file, line: null, index: null }, error: batch.error.error });
    if (items.length > 0) yield items;
  }
}

/** The items of one text holding one JSON value or several run together, appended to `out`. */
export function jsonTextItems(text: string, at: Position, toItems: ValueItems, out: ReadItem[] = []): ReadItem[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // Objects run together with no separator (`}{`): split them, each keeps its own line.
    const { values, rest } = text.includes('}{') ? splitJsonValues(text, at.line ?? 1) : { values: [], rest: null };
    if (values.length > 1 || (values.length === 1 && rest !== null)) {
      values.forEach((v, i) => {
        jsonTextItems(v.text, { origin: at.origin, line: v.line, index: i }, toItems, out);
      });
      if (rest !== null) out.push(malformed(rest.text, { origin: at.origin, line: rest.line, index: values.length }, err));
      return out;
    }
    out.push(malformed(text, at, err));
    return out;
  }
  for (const item of toItems(value, at, text)) out.push(item);
  return out;
}

function malformed(text: string, at: Position, err: unknown): ReadItem {
  const where = locateJsonError(text);
  const reason = where
    ? `malformed JSON at column ${where.column}: ${where.reason}`
    : `malformed JSON: ${err instanceof Error ? err.message : String(err)}`;
  const item = errorItem(at, ErrorCodes.DESERIALIZE, reason, err);
  return item.kind === 'error' ? { ...item, text } : item;
}

/** Most bytes a message's gzip (a payload's inner `awslogs.data` included) may unpack to: a gzip bomb is an error, not a full heap. */
export const MAX_MESSAGE_TEXT_BYTES = 64 * 1024 * 1024;

/**
 * A message's bytes as text: gunzipped when they are gzip, base64 taken off when the text is
 * base64 of gzip (a Kinesis or Lambda `awslogs.data` payload). Or the error item saying why not.
 */
export function messageText(bytes: Uint8Array, origin: string): { text: string } | { error: ReadItem } {
  const at: Position = { origin, line: null, index: null };
  let buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // H4sI is base64 of the gzip magic and deflate method.
  if (buf.length > 4 && buf.toString('latin1', 0, 4) === 'H4sI') buf = Buffer.from(buf.toString('latin1').trim(), 'base64');
  if (isGzip(buf)) {
    try {
      buf = gunzipSync(buf, { maxOutputLength: MAX_MESSAGE_TEXT_BYTES });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        const reason = `gzip unpacks to more than ${MAX_MESSAGE_TEXT_BYTES} bytes: not read (a message this large is not an audit payload)`;
        return { error: errorItem(at, ErrorCodes.RECORD_TOO_LARGE, reason, err) };
      }
      return { error: errorItem(at, ErrorCodes.DESERIALIZE, `corrupt gzip: ${err instanceof Error ? err.message : String(err)}`, err) };
    }
  }
  const text = decodeUtf8(buf);
  if (text === null) return { error: errorItem(at, ErrorCodes.DESERIALIZE, 'not valid UTF-8 text') };
  return { text };
}
