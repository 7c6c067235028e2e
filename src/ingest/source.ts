/**
 * The one seam every audit source goes through: a Source knows its format, how to recognize its
 * input (by path and by a sniffed first value), how to read its files as a stream of raw records
 * with their positions, how to decode one raw message (a Kafka value, a line) into raw records, and
 * how to normalize one raw record into an AuditEvent. A new source is one file in `sources/` and
 * one entry in `SOURCES` (sources/index.ts).
 *
 * Nothing here throws for bad input: a record that cannot be used comes back as a BadRecordError
 * carrying its position, a record that is not an API call (a Kubernetes RequestReceived stage, a
 * CloudWatch Logs control message) as a Skip, so callers count both and go on.
 *
 * Callers: `publish` (the ingest worker threads, pipeline.ts), `backtest` (backtest/inputs.ts),
 * and the raw-ingest stage (a consumer group normalizing raw messages: `decode` then `normalize`).
 */
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError, type ErrorCode } from '../errors.ts';

export const FORMATS = ['cloudtrail', 'eventbridge', 'cwlogs', 'k8s-audit', 'jsonl'] as const;

/** How much of an input `sniff` sees. */
export const SNIFF_BYTES = 64 * 1024;
export type Format = (typeof FORMATS)[number];

/**
 * Where a raw record came from. `origin` is a file path (or, for a Kafka message, whatever the
 * caller passed to `decode`, e.g. `topic/partition@offset`). `line` is the 1-based line a line
 * format's record starts on; `index` the 0-based place of the record inside its document (a
 * delivery's `Records[i]`, a payload's `logEvents[i]`). Either may be null when it says nothing.
 */
export interface Position {
  origin: string;
  line: number | null;
  index: number | null;
}

/** A record read but not an API call: counted apart, never an error, never dead-lettered. */
export class Skip {
  readonly reason: string;
  constructor(reason: string) {
    this.reason = reason;
  }
}

/** What reading yields, in order: raw records to normalize, skips, and errors (a file, a line, a payload). */
export type ReadItem =
  | { kind: 'record'; at: Position; record: unknown }
  | { kind: 'skip'; at: Position; reason: string }
  | {
      kind: 'error';
      at: Position;
      error: BadRecordError /** The offending input as text, when there is one, for the dead-letter topic. */;
      text?: string;
    };

/** A record normalized: the event, a skip with its reason, or why it is bad (its message leads with nothing: see `located`). */
export type Normalized = AuditEvent | Skip | BadRecordError;

/** What a source makes of a file's name before opening it. */
export type FilePlan =
  /** Read it; `timeMs` is the time its name carries (a CloudTrail delivery's), for --since/--until without opening it. */
  | { kind: 'read'; timeMs: number | null }
  /** Recognised and not this source's records (a CloudTrail digest or Insights delivery): counted, never opened. */
  | { kind: 'skip'; reason: string };

export interface ReadOptions {
  /** Largest file accepted, in bytes after decompression. */
  maxFileBytes: number;
}

export interface Source {
  readonly format: Format;
  /** One line for help texts. */
  readonly description: string;
  /** Names a directory walk keeps (a file named on the command line is read whatever its name). */
  readonly extensions: readonly string[];
  /** Whether a path's name says it is this source's input (its extension or S3 key layout). */
  matchesPath(path: string): boolean;
  /**
   * Whether an input's first bytes (gunzipped and decoded, at most SNIFF_BYTES: the first value
   * may be cut) look like this source's, for inputs whose name says nothing.
   */
  sniff(head: string): boolean;
  /** What to do with a file found in a walk or named, from its path alone. */
  planFile(path: string): FilePlan;
  /** Streams a file's raw records in order, in batches (one batch per document or per many lines). */
  read(file: string, options: ReadOptions): AsyncIterable<ReadItem[]>;
  /**
   * The raw records of one message: a Kafka record's value, an HTTP body, one line. Gzip is
   * recognized by content. `origin` names the message in positions and errors.
   */
  decode(bytes: Uint8Array, origin: string): ReadItem[];
  /** One raw record → an AuditEvent, a Skip, or the BadRecordError saying why not. Pure. */
  normalize(record: unknown): Normalized;
}

/** `file:index` (a document's record, as publish always printed it), `file:line`, or `file:line[index]`. */
export function formatPosition(at: Position): string {
  if (at.line === null) return at.index === null ? at.origin : `${at.origin}:${at.index}`;
  return at.index === null ? `${at.origin}:${at.line}` : `${at.origin}:${at.line}[${at.index}]`;
}

/** The number callers that keep one number per record store: the line of a line format, else the index. */
export function positionNumber(at: Position): number | null {
  return at.line ?? at.index;
}

/** `error` again, its message led by where the record is and its details naming file, line, index and reason. */
export function located(error: BadRecordError, at: Position): BadRecordError {
  const where = formatPosition(at);
  if (error.message.startsWith(`${at.origin}`)) return error;
  return new BadRecordError(error.code, `${where}: ${error.message}`, {
    cause: error,
    details: { ...error.details, file: at.origin, line: at.line, index: at.index, reason: error.message },
  });
}

/** An error item at `at`, its message `where: reason`. */
export function errorItem(at: Position, code: ErrorCode, reason: string, cause?: unknown, extra: Record<string, unknown> = {}): ReadItem {
  const error = new BadRecordError(code, `${formatPosition(at)}: ${reason}`, {
    cause,
    details: { file: at.origin, line: at.line, index: at.index, reason, ...extra },
  });
  return { kind: 'error', at, error };
}

export function isEvent(n: Normalized): n is AuditEvent {
  return !(n instanceof Skip) && !(n instanceof BadRecordError);
}

/**
 * Runs a throwing normalizer and turns its BadRecordError into a value: the sources' normalizers
 * are written as straight-line code that throws at the first field at fault.
 */
export function normalizing(fn: () => AuditEvent | Skip): Normalized {
  try {
    return fn();
  } catch (err) {
    if (err instanceof BadRecordError) return err;
    throw err; // anything else is a bug and should surface
  }
}
