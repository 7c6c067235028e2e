import type { IHeaders, KafkaMessage, Message, Producer } from 'kafkajs';
import type { TrailwatchError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { headersBytes, recordBytes } from './produce.ts';

/** Headers every dead letter carries, so `trailwatch dlq` and any consumer can tell why. */
export const DLQ_HEADERS = {
  code: 'tw.error.code',
  reason: 'tw.error.reason',
  topic: 'tw.source.topic',
  partition: 'tw.source.partition',
  offset: 'tw.source.offset',
  failedAt: 'tw.failed.at',
  /** Set when the value was cut to fit the dead-letter topic: the original value's size in bytes. */
  truncated: 'tw.value.truncated',
  /** Set when the original headers were dropped to fit: their size in bytes. */
  headersDropped: 'tw.headers.dropped',
  /** A record rejected while reading files (publish): the file, the place in it, the input format. */
  file: 'tw.source.file',
  position: 'tw.source.position',
  format: 'tw.source.format',
} as const;

export interface DeadLetter {
  topic: string;
  partition: number;
  message: Pick<KafkaMessage, 'key' | 'value' | 'headers' | 'offset' | 'timestamp'>;
  error: TrailwatchError;
}

const MAX_REASON_CHARS = 1_000;

/** Sends the original bytes untouched, its original headers kept, plus the reason headers. */
export async function sendDeadLetters(
  producer: Pick<Producer, 'send'>,
  deadLetterTopic: string,
  letters: DeadLetter[],
  nowMs = Date.now(),
): Promise<void> {
  if (letters.length === 0) return;
  await producer.send({ topic: deadLetterTopic, messages: deadLetterMessages(deadLetterTopic, letters, nowMs) });
}

/**
 * The dead-letter records for `letters`, each naming its topic (for a transaction's batch). Each
 * is stamped with the time it was dead-lettered, not the original record's time: retention on
 * the dead-letter topic counts from the failure, so a letter about an old record is not deleted
 * at once.
 *
 * A letter that would exceed `maxBytes` (what the dead-letter topic accepts in one record) keeps
 * the first bytes of the value that fit, and says so: `tw.value.truncated` holds the original
 * value's size, and the source topic, partition and offset headers say where the whole record
 * still is (as long as the source topic's retention keeps it). Original headers that alone would
 * not fit are dropped (`tw.headers.dropped` counts their bytes).
 */
export function deadLetterMessages(
  deadLetterTopic: string,
  letters: DeadLetter[],
  nowMs = Date.now(),
  maxBytes = Number.POSITIVE_INFINITY,
): Array<Message & { topic: string }> {
  return letters.map((l) => {
    const original: IHeaders = { ...(l.message.headers ?? {}) };
    const ours: IHeaders = {
      [DLQ_HEADERS.code]: l.error.code,
      [DLQ_HEADERS.reason]: l.error.message.slice(0, MAX_REASON_CHARS),
      [DLQ_HEADERS.topic]: l.topic,
      [DLQ_HEADERS.partition]: String(l.partition),
      [DLQ_HEADERS.offset]: l.message.offset,
      [DLQ_HEADERS.failedAt]: new Date(nowMs).toISOString(),
    };
    let headers: IHeaders = { ...original, ...ours };
    let value = l.message.value;
    if (recordBytes({ key: l.message.key, value, headers }) > maxBytes) {
      // Room for the truncation headers themselves.
      const budget = maxBytes - 256;
      if (recordBytes({ key: l.message.key, value: null, headers }) > budget) {
        headers = { ...ours, [DLQ_HEADERS.headersDropped]: String(headersBytes(original)) };
      }
      const room = Math.max(0, budget - recordBytes({ key: l.message.key, value: null, headers }));
      if (value && value.length > room) {
        headers[DLQ_HEADERS.truncated] = String(value.length);
        value = value.subarray(0, room);
      }
    }
    return { topic: deadLetterTopic, key: l.message.key, value, headers, timestamp: String(nowMs) };
  });
}

/** A record `publish` could not use: where it is, why, and its text when there is one. */
export interface InputRejection {
  file: string;
  /** `file:index`, `file:line` or `file:line[index]`. */
  position: string;
  code: string;
  message: string;
  /** The rejected input (the record's JSON, the line); null when the whole file failed. */
  value: string | null;
}

/**
 * The dead letter of a record rejected while reading files: the input's text as the value (no
 * source topic: `dlq replay` passes it over unless told `--to`, since it is not an AuditEvent),
 * the reason headers, and the file, position and format it came from. Cut to `maxBytes` as above.
 */
export function inputDeadLetter(
  deadLetterTopic: string,
  r: InputRejection,
  format: string,
  nowMs = Date.now(),
  maxBytes = Number.POSITIVE_INFINITY,
): Message & { topic: string } {
  const headers: IHeaders = {
    [DLQ_HEADERS.code]: r.code,
    [DLQ_HEADERS.reason]: r.message.slice(0, MAX_REASON_CHARS),
    [DLQ_HEADERS.file]: r.file,
    [DLQ_HEADERS.position]: r.position,
    [DLQ_HEADERS.format]: format,
    [DLQ_HEADERS.failedAt]: new Date(nowMs).toISOString(),
  };
  let value = r.value === null ? null : Buffer.from(r.value);
  if (value !== null && recordBytes({ key: null, value, headers }) > maxBytes) {
    const room = Math.max(0, maxBytes - 256 - recordBytes({ key: null, value: null, headers }));
    headers[DLQ_HEADERS.truncated] = String(value.length);
    value = value.subarray(0, room);
  }
  return { topic: deadLetterTopic, key: null, value, headers, timestamp: String(nowMs) };
}

export function headerString(headers: IHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  if (v === undefined) return undefined;
  const first = Array.isArray(v) ? v[0] : v;
  return first === undefined ? undefined : first.toString();
}

/** Set on a replayed record: `<dead-letter topic>/<partition>/<offset>` it was replayed from. */
export const REPLAYED_FROM_HEADER = 'tw.replayed.from';

const DEAD_LETTER_HEADER_NAMES: ReadonlySet<string> = new Set([...Object.values(DLQ_HEADERS), REPLAYED_FROM_HEADER]);

/** A record of the dead-letter topic, its reason headers read and its original headers apart. */
export interface DeadLetterRecord {
  dlq: { topic: string; partition: number; offset: string };
  /** When it was dead-lettered (`tw.failed.at`, else the record timestamp), ms since the epoch. */
  failedAtMs: number;
  code: string;
  reason: string;
  source: { topic: string | undefined; partition: number | undefined; offset: string | undefined };
  /** Set on a record rejected while reading files (publish): where in which file, and its format. */
  input: { file: string; position: string; format: string | undefined } | null;
  key: Buffer | null;
  value: Buffer | null;
  /** The original value's size when the letter carries only its first bytes (`tw.value.truncated`), else null. */
  truncatedFromBytes: number | null;
  /** The original record's headers: the dead-letter ones (and an earlier replay's) taken out. */
  originalHeaders: IHeaders;
}

export function readDeadLetter(
  topic: string,
  partition: number,
  message: Pick<KafkaMessage, 'key' | 'value' | 'headers' | 'offset' | 'timestamp'>,
): DeadLetterRecord {
  const h = message.headers;
  const failedAt = Date.parse(headerString(h, DLQ_HEADERS.failedAt) ?? '');
  const sourcePartition = Number(headerString(h, DLQ_HEADERS.partition));
  const originalHeaders: IHeaders = {};
  for (const [name, value] of Object.entries(h ?? {})) if (!DEAD_LETTER_HEADER_NAMES.has(name)) originalHeaders[name] = value;
  return {
    dlq: { topic, partition, offset: message.offset },
    failedAtMs: Number.isFinite(failedAt) ? failedAt : Number(message.timestamp),
    code: headerString(h, DLQ_HEADERS.code) ?? 'unknown',
    reason: headerString(h, DLQ_HEADERS.reason) ?? '',
    source: {
      topic: headerString(h, DLQ_HEADERS.topic),
      partition: Number.isInteger(sourcePartition) && headerString(h, DLQ_HEADERS.partition) !== undefined ? sourcePartition : undefined,
      offset: headerString(h, DLQ_HEADERS.offset),
    },
    input:
      headerString(h, DLQ_HEADERS.file) === undefined
        ? null
        : {
            file: headerString(h, DLQ_HEADERS.file) as string,
            position: headerString(h, DLQ_HEADERS.position) ?? (headerString(h, DLQ_HEADERS.file) as string),
            format: headerString(h, DLQ_HEADERS.format),
          },
    key: message.key,
    value: message.value,
    truncatedFromBytes: headerString(h, DLQ_HEADERS.truncated) === undefined ? null : Number(headerString(h, DLQ_HEADERS.truncated)),
    originalHeaders,
  };
}

/** Which dead letters `trailwatch dlq` acts on; an absent field lets everything through. */
export interface DeadLetterFilter {
  codes?: ReadonlySet<string>;
  sourceTopics?: ReadonlySet<string>;
  /** Dead-lettered at or after this time, ms since the epoch. */
  sinceMs?: number;
}

export function matchesDeadLetter(letter: DeadLetterRecord, filter: DeadLetterFilter): boolean {
  if (filter.codes && !filter.codes.has(letter.code)) return false;
  if (filter.sourceTopics && (letter.source.topic === undefined || !filter.sourceTopics.has(letter.source.topic))) return false;
  if (filter.sinceMs !== undefined && !(letter.failedAtMs >= filter.sinceMs)) return false;
  return true;
}

/** The record to publish again: the original key, bytes and headers, and where it was replayed from. */
export function replayRecord(letter: DeadLetterRecord): { key: Buffer | null; value: Buffer | null; headers: IHeaders } {
  return {
    key: letter.key,
    value: letter.value,
    headers: { ...letter.originalHeaders, [REPLAYED_FROM_HEADER]: deadLetterAddress(letter) },
  };
}

export function deadLetterAddress(letter: DeadLetterRecord): string {
  return `${letter.dlq.topic}/${letter.dlq.partition}/${letter.dlq.offset}`;
}

/**
 * A one-line, terminal-safe look at some bytes: printable UTF-8 as a JSON string, anything else
 * (Avro, the Confluent wire format, gzip) as hex; cut at `maxChars` characters with "…".
 */
export function previewBytes(bytes: Buffer | null | undefined, maxChars = 64): string {
  if (bytes === null || bytes === undefined) return 'null';
  if (bytes.length === 0) return '(empty)';
  // A UTF-8 character is at most 4 bytes: this many bytes holds maxChars characters and one more.
  const head = bytes.subarray(0, (maxChars + 1) * 4);
  let text: string | undefined;
  try {
    // stream: a character cut in two at the end of `head` is held back, not an error.
    text = new TextDecoder('utf-8', { fatal: true }).decode(head, { stream: head.length < bytes.length });
  } catch {
    text = undefined;
  }
  if (text !== undefined && PRINTABLE.test(text)) {
    const chars = [...text];
    const cut = chars.length > maxChars || head.length < bytes.length;
    return `${JSON.stringify(chars.slice(0, maxChars).join(''))}${cut ? '…' : ''}`;
  }
  const byteCount = Math.max(1, Math.floor(maxChars / 2));
  return `hex:${bytes.subarray(0, byteCount).toString('hex')}${bytes.length > byteCount ? '…' : ''}`;
}

// Letters, marks, symbols, spaces, tabs and line breaks, and the joiners emoji need; no control,
// format (bidi overrides that reorder a terminal line), private-use or unassigned characters.
const PRINTABLE = /^(?:[\t\n\r\P{C}]|\u200C|\u200D)*$/u;

/**
 * One warning for a committed batch's dead letters (a backlog of bad records may dead-letter every
 * one: a line per record would drown the log): where they came from, how many of each code, and
 * the first one's reason. Returns the count per code.
 */
export function logDeadLetters(log: Logger, letters: readonly DeadLetter[], deadLetterTopic: string): Record<string, number> {
  const codes: Record<string, number> = {};
  const first = letters[0];
  if (!first) return codes;
  for (const l of letters) codes[l.error.code] = (codes[l.error.code] ?? 0) + 1;
  log.warn(
    {
      topic: first.topic,
      partition: first.partition,
      codes,
      firstOffset: first.message.offset,
      lastOffset: letters[letters.length - 1]?.message.offset,
      deadLetterTopic,
    },
    letters.length === 1
      ? `dead-lettered: ${first.error.message}`
      : `${letters.length} records dead-lettered, the first: ${first.error.message}`,
  );
  return codes;
}
