/**
 * Reads CloudTrail S3 deliveries from disk: files or directories of `{"Records":[…]}` documents,
 * plain or gzipped. Nothing here throws for bad input: a missing path, a corrupt file or a bad
 * record becomes an error item carrying file and index, so a publish run reports it and goes on.
 */
import { isAscii } from 'node:buffer';
import type { Dirent, Stats } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError, ErrorCodes, errorMessage } from '../errors.ts';
import { type NormalizeOptions, normalizeCloudTrail } from './cloudtrail.ts';

const gunzipAsync = promisify(gunzip);
const GUNZIP_CHUNK_BYTES = 256 * 1024;

export const CLOUDTRAIL_EXTENSIONS: readonly string[] = ['.json', '.json.gz'];

export const DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024; // 256 MiB uncompressed: far above a real delivery (a few MB)

export interface ReadDeliveriesOptions {
  /** Largest file accepted, in bytes after decompression. Default 256 MiB. */
  maxFileBytes?: number;
}

export type DeliveryItem =
  | { kind: 'record'; file: string; index: number; record: unknown }
  | { kind: 'error'; file: string; index: number | null; error: BadRecordError };

export type DeliveryErrorItem = Extract<DeliveryItem, { kind: 'error' }>;

export type NormalizedItem = { kind: 'event'; file: string; index: number; event: AuditEvent } | DeliveryErrorItem;

export type ExpandedPath = { kind: 'file'; file: string } | DeliveryErrorItem;

/**
 * Expands files and directories into the files to read, in the order the paths are given.
 * Directories are walked recursively, depth first, entries sorted by name (code points, not
 * locale) so the order is the same on every machine, keeping only names ending in one of `exts`;
 * a file named explicitly is read whatever its name. A path that cannot be read becomes an error
 * item. A file reached twice (e.g. named, and inside a named directory) is listed once.
 */
export async function expandInputPaths(paths: readonly string[], exts: readonly string[]): Promise<ExpandedPath[]> {
  const out: ExpandedPath[] = [];
  const seenFiles = new Set<string>();
  const seenDirs = new Set<string>();
  const addFile = async (file: string): Promise<void> => {
    const key = await realpath(file).catch(() => resolve(file));
    if (seenFiles.has(key)) return;
    seenFiles.add(key);
    out.push({ kind: 'file', file });
  };
  const walk = async (dir: string): Promise<void> => {
    let entries: Dirent[];
    try {
      const real = await realpath(dir);
      if (seenDirs.has(real)) return; // a symlink loop, or a directory named twice
      seenDirs.add(real);
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      out.push(fileError(dir, null, `cannot list directory: ${ioReason(err)}`, err));
      return;
    }
    const names = entries.map((e) => e.name).sort(compareCodePoints);
    for (const name of names) {
      const full = join(dir, name);
      let info: Stats;
      try {
        info = await stat(full);
      } catch {
        continue; // a dangling symlink inside a directory is not an input anyone asked for
      }
      if (info.isDirectory()) await walk(full);
      else if (info.isFile() && exts.some((ext) => name.endsWith(ext))) await addFile(full);
    }
  };

  for (const path of paths) {
    let info: Stats;
    try {
      info = await stat(path);
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : ioReason(err);
      out.push(fileError(path, null, reason, err));
      continue;
    }
    if (info.isDirectory()) await walk(path);
    else if (info.isFile()) await addFile(path);
    else out.push(fileError(path, null, 'not a regular file or directory'));
  }
  return out;
}

/**
 * Yields every record of every CloudTrail delivery under `paths`, in file order then record
 * order, and an error item for each path, file or document that cannot be read.
 */
export async function* readCloudTrailDeliveries(paths: string[], options: ReadDeliveriesOptions = {}): AsyncGenerator<DeliveryItem> {
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const entries = await expandInputPaths(paths, CLOUDTRAIL_EXTENSIONS);
  // The next file is read and gunzipped (in libuv's thread pool) while this one's records are
  // parsed and used: reading overlaps with the work on the main thread.
  const load = (i: number): Promise<Delivery | DeliveryErrorItem> | null => {
    const entry = entries[i];
    return entry?.kind === 'file' ? readDelivery(entry.file, maxFileBytes) : null;
  };
  let next = load(0);
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i] as ExpandedPath;
    const current = next;
    next = load(i + 1);
    if (entry.kind === 'error') {
      yield entry;
      continue;
    }
    const delivery = await (current as Promise<Delivery | DeliveryErrorItem>);
    if (delivery.kind === 'error') {
      yield delivery;
      continue;
    }
    const { file, records } = delivery;
    for (let index = 0; index < records.length; index++) {
      yield { kind: 'record', file, index, record: records[index] };
    }
  }
}

/** The records of one CloudTrail delivery file. */
export interface Delivery {
  kind: 'delivery';
  file: string;
  records: unknown[];
}

/**
 * Reads, gunzips (by content) and parses one delivery file: its `Records`, or an error item
 * saying why the file cannot be used.
 */
export async function readDelivery(file: string, maxFileBytes: number = DEFAULT_MAX_FILE_BYTES): Promise<Delivery | DeliveryErrorItem> {
  const bytes = await loadBytes(file, maxFileBytes);
  const loaded = 'error' in bytes ? bytes : parseDocument(file, bytes.bytes);
  if ('error' in loaded) return loaded.error;
  const doc = loaded.value;
  const records = typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as { Records?: unknown }).Records : undefined;
  if (!Array.isArray(records)) {
    const what =
      typeof doc === 'object' && doc !== null && !Array.isArray(doc)
        ? `top-level keys: ${Object.keys(doc).slice(0, 5).join(', ') || 'none'}`
        : `top level is ${Array.isArray(doc) ? 'an array' : doc === null ? 'null' : `a ${typeof doc}`}`;
    return fileError(file, null, `not a CloudTrail delivery: no "Records" array (${what})`);
  }
  return { kind: 'delivery', file, records };
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
    try {
      yield { kind: 'event', file: item.file, index: item.index, event: normalizeCloudTrail(item.record, options) };
    } catch (err) {
      // Only bad input is turned into an item; anything else is a bug and should surface.
      if (!(err instanceof BadRecordError)) throw err;
      yield {
        kind: 'error',
        file: item.file,
        index: item.index,
        error: new BadRecordError(err.code, `${item.file}:${item.index}: ${err.message}`, {
          cause: err,
          details: { ...err.details, file: item.file, index: item.index, reason: err.message },
        }),
      };
    }
  }
}

/** Where a JSON document stops being valid, for messages a person can act on. */
export interface JsonErrorLocation {
  /** Offset in UTF-16 units from the start of the text. */
  position: number;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  reason: string;
}

/**
 * Finds the first syntax error in `text`, or null when it is valid JSON. V8's JSON.parse does not
 * always say where it failed ("Unexpected token '}', …"), so on failure this scans once more.
 */
export function locateJsonError(text: string): JsonErrorLocation | null {
  const n = text.length;
  let i = 0;
  const stack: ('{' | '[')[] = [];
  const found = (): string => (i >= n ? 'end of input' : JSON.stringify(text[i]));
  const fail = (reason: string): JsonErrorLocation => {
    let line = 1;
    let lineStart = 0;
    for (let k = text.indexOf('\n'); k !== -1 && k < i; k = text.indexOf('\n', k + 1)) {
      line++;
      lineStart = k + 1;
    }
    return { position: i, line, column: i - lineStart + 1, reason };
  };
  const skipSpace = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      i++;
    }
  };
  const scanString = (): JsonErrorLocation | null => {
    i++; // opening quote
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return null;
      }
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) return fail('invalid \\u escape in string');
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          i += 2;
        } else {
          return fail('invalid escape in string');
        }
        continue;
      }
      if (c < 0x20) return fail('control character in string');
      i++;
    }
    return fail('unterminated string');
  };
  const scanKey = (): JsonErrorLocation | null => {
    skipSpace();
    if (text[i] !== '"') return fail(`expected a property name but found ${found()}`);
    const err = scanString();
    if (err) return err;
    skipSpace();
    if (text[i] !== ':') return fail(`expected ':' after a property name but found ${found()}`);
    i++;
    return null;
  };
  const number = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

  let expectValue = true;
  for (;;) {
    skipSpace();
    if (expectValue) {
      if (i >= n) return fail('unexpected end of input');
      const ch = text[i];
      if (ch === '{') {
        i++;
        skipSpace();
        if (text[i] === '}') {
          i++;
          expectValue = false;
          continue;
        }
        const err = scanKey();
        if (err) return err;
        stack.push('{');
        continue;
      }
      if (ch === '[') {
        i++;
        skipSpace();
        if (text[i] === ']') {
          i++;
          expectValue = false;
          continue;
        }
        stack.push('[');
        continue;
      }
      if (ch === '"') {
        const err = scanString();
        if (err) return err;
        expectValue = false;
        continue;
      }
      const literal = ['true', 'false', 'null'].find((word) => text.startsWith(word, i));
      if (literal) {
        i += literal.length;
        expectValue = false;
        continue;
      }
      number.lastIndex = i;
      if (number.test(text)) {
        i = number.lastIndex;
        expectValue = false;
        continue;
      }
      return fail(`unexpected ${found()} where a value was expected`);
    }
    const top = stack.at(-1);
    if (top === undefined) return i < n ? fail(`unexpected ${found()} after the end of the document`) : null;
    const close = top === '{' ? '}' : ']';
    if (text[i] === ',') {
      i++;
      if (top === '{') {
        const err = scanKey();
        if (err) return err;
      }
      expectValue = true;
      continue;
    }
    if (text[i] === close) {
      i++;
      stack.pop();
      continue;
    }
    return fail(`expected ',' or '${close}' but found ${found()}`);
  }
}

type Loaded = { value: unknown } | { error: DeliveryErrorItem };
type LoadedBytes = { bytes: Buffer } | { error: DeliveryErrorItem };

/** The file's bytes, gunzipped when they are gzip. */
async function loadBytes(file: string, maxFileBytes: number): Promise<LoadedBytes> {
  let raw: Buffer;
  try {
    const { size } = await stat(file);
    if (size > maxFileBytes) {
      return {
        error: fileError(file, null, `file is ${size} bytes, over the limit of ${maxFileBytes} bytes`, undefined, { limit: maxFileBytes }),
      };
    }
    raw = await readFile(file);
  } catch (err) {
    return { error: fileError(file, null, `cannot read: ${ioReason(err)}`, err) };
  }

  let bytes = raw;
  // Decided by content, not name: S3 downloads often keep `.json.gz` content under `.json`.
  const gzipped = raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b;
  if (gzipped) {
    try {
      // 256 KiB output chunks, not zlib's 16 KiB: a delivery inflates to megabytes, and a callback
      // and a copy per small chunk cost over twice the CPU of inflating itself.
      bytes = await gunzipAsync(raw, { maxOutputLength: maxFileBytes, chunkSize: GUNZIP_CHUNK_BYTES });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const reason =
        code === 'ERR_BUFFER_TOO_LARGE'
          ? `decompresses to more than the limit of ${maxFileBytes} bytes`
          : code === 'Z_BUF_ERROR'
            ? `truncated gzip: the compressed data ends early (${errorMessage(err)})`
            : `corrupt gzip: ${errorMessage(err)}`;
      return { error: fileError(file, null, reason, err, { limit: maxFileBytes }) };
    }
  } else if (file.endsWith('.gz')) {
    return { error: fileError(file, null, 'named .gz but not gzip data') };
  }

  return { bytes };
}

function parseDocument(file: string, bytes: Buffer): Loaded {
  let text: string;
  try {
    // ASCII (what CloudTrail writes, non-ASCII escaped) is UTF-8 that decodes byte for byte: the
    // one-byte copy is several times faster than decoding, and gives JSON.parse a one-byte string.
    text = isAscii(bytes) ? bytes.toString('latin1') : new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch (err) {
    return { error: fileError(file, null, 'not valid UTF-8 text', err) };
  }
  try {
    return { value: JSON.parse(text) };
  } catch (err) {
    const at = locateJsonError(text);
    if (at === null) return { error: fileError(file, null, `malformed JSON: ${errorMessage(err)}`, err) };
    return {
      error: fileError(file, null, `malformed JSON at line ${at.line} column ${at.column}: ${at.reason}`, err, {
        position: at.position,
        line: at.line,
        column: at.column,
      }),
    };
  }
}

function fileError(
  file: string,
  index: number | null,
  reason: string,
  cause?: unknown,
  extra: Record<string, unknown> = {},
): DeliveryErrorItem {
  const where = index === null ? file : `${file}:${index}`;
  const error = new BadRecordError(ErrorCodes.INPUT_FILE, `${where}: ${reason}`, {
    cause,
    details: { file, index, reason, ...extra },
  });
  return { kind: 'error', file, index, error };
}

function ioReason(err: unknown): string {
  return errorMessage(err); // Node's messages already lead with the errno code, e.g. "EACCES: permission denied, open '…'"
}

function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
