/**
 * Reading inputs from disk, for every source (sources/): walking paths, whole documents gunzipped
 * by content (a truncated gzip keeps what came before the cut), lines streamed, JSON values run
 * together split apart, and where a JSON document goes wrong. Nothing here throws for bad input:
 * a missing path, a corrupt file or a bad line becomes an error item carrying file and position,
 * so a run reports it and goes on. Also the checkpoint of the files a publish has finished
 * (PublishCheckpoint), by which an interrupted publish resumes.
 */
import { isAscii } from 'node:buffer';
import { once } from 'node:events';
import type { Dirent, Stats } from 'node:fs';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, realpath, stat, truncate } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip, gunzip, gunzipSync, constants as zlibConstants } from 'node:zlib';
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError, ErrorCodes, errorMessage, TrailwatchError } from '../errors.ts';

const gunzipAsync = promisify(gunzip);
const GUNZIP_CHUNK_BYTES = 256 * 1024;

export const CLOUDTRAIL_EXTENSIONS: readonly string[] = ['.json', '.json.gz'];

export const DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024; // 256 MiB uncompressed: far above a real delivery (a few MB)

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
export async function expandInputPaths(
  paths: readonly string[],
  exts: readonly string[],
  options: { /** A directory inside a walk for which this is true is not listed. */ skipDir?: (dir: string) => boolean } = {},
): Promise<ExpandedPath[]> {
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
      if (info.isDirectory()) {
        if (!options.skipDir?.(full)) await walk(full);
      } else if (info.isFile() && exts.some((ext) => name.endsWith(ext))) await addFile(full);
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

export type Loaded = { value: unknown } | { error: DeliveryErrorItem };
export type LoadedBytes = { bytes: Buffer; truncated?: DeliveryErrorItem } | { error: DeliveryErrorItem };

/**
 * The file's bytes, gunzipped when they are gzip (decided by content). A gzip stream cut short (a
 * download interrupted, a disk full) gives the bytes before the cut and, in `truncated`, the error
 * to report: the caller keeps what it can parse of them.
 */
export async function loadFileBytes(file: string, maxFileBytes: number = DEFAULT_MAX_FILE_BYTES): Promise<LoadedBytes> {
  return loadBytes(file, maxFileBytes);
}

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
  return gunzipBytes(file, raw, maxFileBytes);
}

/** `raw` gunzipped when it is gzip (several members are read one after the other); see loadFileBytes. */
export async function gunzipBytes(file: string, raw: Buffer, maxFileBytes: number = DEFAULT_MAX_FILE_BYTES): Promise<LoadedBytes> {
  // Decided by content, not name: S3 downloads often keep `.json.gz` content under `.json`.
  if (!isGzip(raw)) {
    if (file.endsWith('.gz')) return { error: fileError(file, null, 'named .gz but not gzip data') };
    return { bytes: raw };
  }
  try {
    // 256 KiB output chunks, not zlib's 16 KiB: a delivery inflates to megabytes, and a callback
    // and a copy per small chunk cost over twice the CPU of inflating itself.
    return { bytes: await gunzipAsync(raw, { maxOutputLength: maxFileBytes, chunkSize: GUNZIP_CHUNK_BYTES }) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'Z_BUF_ERROR') {
      // Inflate again without asking for the end of the stream: zlib then hands over what it has.
      let partial: Buffer;
      try {
        partial = gunzipSync(raw, { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: maxFileBytes });
      } catch {
        partial = Buffer.alloc(0);
      }
      const truncated = fileError(
        file,
        null,
        `truncated gzip: the compressed data ends early after ${partial.length} bytes of content (${errorMessage(err)}); the records before the cut were read, the rest are lost: fetch the file again`,
        err,
        { bytesBeforeCut: partial.length },
      );
      return { bytes: partial, truncated };
    }
    const reason =
      code === 'ERR_BUFFER_TOO_LARGE'
        ? `decompresses to more than the limit of ${maxFileBytes} bytes`
        : `corrupt gzip: ${errorMessage(err)}`;
    return { error: fileError(file, null, reason, err, { limit: maxFileBytes }) };
  }
}

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Bytes as text: ASCII (what CloudTrail writes, non-ASCII escaped) is UTF-8 that decodes byte for
 * byte, and the one-byte copy is several times faster than decoding and gives JSON.parse a
 * one-byte string. null when the bytes are not UTF-8.
 */
export function decodeUtf8(bytes: Uint8Array): string | null {
  if (isAscii(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return null;
  }
}

/** One JSON value of a text holding several, and the 1-based line it starts on. */
export interface JsonValueText {
  text: string;
  line: number;
}

/**
 * Splits a text of JSON values written one after the other (JSON lines, or objects run together
 * with no separator, as Firehose writes EventBridge events and CloudWatch Logs payloads to S3)
 * into the text of each value. Only objects and arrays are split on; scanning stops at the first
 * place that is neither whitespace nor the start of one, or at an unterminated value, which then
 * comes back in `rest` with its line (a truncated file's last value).
 */
export function splitJsonValues(text: string, firstLine = 1): { values: JsonValueText[]; rest: JsonValueText | null } {
  const values: JsonValueText[] = [];
  const n = text.length;
  let i = 0;
  let line = firstLine;
  for (;;) {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x0a) line++;
      else if (c !== 0x20 && c !== 0x09 && c !== 0x0d) break;
      i++;
    }
    if (i >= n) return { values, rest: null };
    const start = i;
    const startLine = line;
    const open = text.charCodeAt(i);
    if (open !== 0x7b && open !== 0x5b) return { values, rest: { text: text.slice(start), line: startLine } };
    let depth = 0;
    let inString = false;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (inString) {
        if (c === 0x5c) i++;
        else if (c === 0x22) inString = false;
        continue;
      }
      if (c === 0x22) inString = true;
      else if (c === 0x7b || c === 0x5b) depth++;
      else if (c === 0x7d || c === 0x5d) {
        if (--depth === 0) {
          i++;
          break;
        }
      } else if (c === 0x0a) line++;
    }
    if (depth !== 0 || inString) return { values, rest: { text: text.slice(start), line: startLine } };
    values.push({ text: text.slice(start, i), line: startLine });
  }
}

/**
 * The complete elements of the array under `"Records"` in a delivery cut short: each element that
 * was written to its end, in order. What `JSON.parse` cannot give for a truncated document.
 */
export function salvageRecords(text: string): unknown[] {
  const key = /"Records"\s*:\s*\[/.exec(text);
  if (!key) return [];
  const out: unknown[] = [];
  let i = key.index + key[0].length;
  for (;;) {
    i = text.indexOf('{', i);
    if (i < 0) return out;
    const end = objectEnd(text, i);
    if (end < 0) return out;
    try {
      out.push(JSON.parse(text.slice(i, end)));
    } catch {
      return out;
    }
    i = end;
  }
}

/** Where the object or array starting at `i` ends (exclusive), or -1 when the text ends first. */
function objectEnd(text: string, i: number): number {
  let depth = 0;
  let inString = false;
  for (let k = i; k < text.length; k++) {
    const c = text.charCodeAt(k);
    if (inString) {
      if (c === 0x5c) k++;
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) depth++;
    else if ((c === 0x7d || c === 0x5d) && --depth === 0) return k + 1;
  }
  return -1;
}

/** A batch of lines read from a file; blank lines are left out (they carry nothing in any line format). */
export interface LineBatch {
  lines: Array<{ line: number; text: string }>;
  /** Set on the last batch when the file could not be read to its end: what went wrong. */
  error?: DeliveryErrorItem;
}

const LINES_PER_BATCH = 512;
const READ_CHUNK_BYTES = 256 * 1024;

/**
 * Streams a text file's lines in batches, gunzipped when its content is gzip. Memory is one batch
 * and one line, whatever the file's size. A file cut short keeps every line before the cut; the
 * partial last line is reported in the closing error, with the line it starts on.
 */
export async function* readLineBatches(file: string, maxLineBytes: number = DEFAULT_MAX_FILE_BYTES): AsyncGenerator<LineBatch> {
  let gzipped: boolean;
  try {
    const fh = await open(file);
    try {
      const head = Buffer.alloc(2);
      const { bytesRead } = await fh.read(head, 0, 2, 0);
      gzipped = isGzip(head.subarray(0, bytesRead));
    } finally {
      await fh.close();
    }
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : `cannot read: ${ioReason(err)}`;
    yield { lines: [], error: fileError(file, null, reason, err) };
    return;
  }
  if (!gzipped && file.endsWith('.gz')) {
    yield { lines: [], error: fileError(file, null, 'named .gz but not gzip data') };
    return;
  }
  const raw = createReadStream(file, { highWaterMark: READ_CHUNK_BYTES });
  let input: Readable = raw;
  if (gzipped) {
    const gunzip = createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES });
    raw.on('error', (err) => gunzip.destroy(err));
    input = raw.pipe(gunzip);
  }
  let line = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let batch: LineBatch['lines'] = [];
  const push = (bytes: Buffer): DeliveryErrorItem | null => {
    line++;
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] === 0x0d) end--; // CRLF
    const text = decodeUtf8(bytes.subarray(0, end));
    if (text === null) return fileError(file, line, 'not valid UTF-8 text', undefined, { line });
    if (text.trim() !== '') batch.push({ line, text });
    return null;
  };
  const lineErrors: DeliveryErrorItem[] = [];
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
        const piece = chunk.subarray(start, nl);
        const whole = pendingBytes === 0 ? piece : Buffer.concat([...pending, piece]);
        pending = [];
        pendingBytes = 0;
        const bad = push(whole);
        if (bad) lineErrors.push(bad);
        start = nl + 1;
      }
      if (start < chunk.length) {
        pending.push(chunk.subarray(start));
        pendingBytes += chunk.length - start;
        if (pendingBytes > maxLineBytes) {
          throw new LineTooLong(line + 1, maxLineBytes);
        }
      }
      if (batch.length >= LINES_PER_BATCH || lineErrors.length > 0) {
        yield { lines: batch };
        batch = [];
        for (const e of lineErrors.splice(0)) yield { lines: [], error: e };
      }
    }
    if (pendingBytes > 0) {
      const bad = push(Buffer.concat(pending));
      if (bad) lineErrors.push(bad);
    }
    yield { lines: batch };
    for (const e of lineErrors) yield { lines: [], error: e };
  } catch (err) {
    if (batch.length > 0) yield { lines: batch };
    for (const e of lineErrors) yield { lines: [], error: e };
    const code = (err as NodeJS.ErrnoException).code;
    const cut = pendingBytes > 0 ? `; the partial line ${line + 1} (${pendingBytes} bytes) is lost` : '';
    const reason =
      err instanceof LineTooLong
        ? err.message
        : code === 'Z_BUF_ERROR'
          ? `truncated gzip: the compressed data ends early after line ${line}${cut}; the lines before the cut were read: fetch the file again`
          : `cannot read after line ${line}: ${ioReason(err)}`;
    yield { lines: [], error: fileError(file, null, reason, err, { line }) };
  } finally {
    if (!raw.destroyed) {
      raw.destroy();
      await once(raw, 'close').catch(() => undefined);
    }
  }
}

class LineTooLong extends Error {
  constructor(line: number, max: number) {
    super(`line ${line} is longer than the limit of ${max} bytes: is this a line format?`);
  }
}

/** Parses a whole document, or says where and why it is not JSON. */
export function parseDocument(file: string, bytes: Buffer): Loaded {
  const text = decodeUtf8(bytes);
  if (text === null) return { error: fileError(file, null, 'not valid UTF-8 text') };
  return parseJsonText(file, text);
}

/** Parses a whole document's text, or says where and why it is not JSON. */
export function parseJsonText(file: string, text: string): Loaded {
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

export function fileError(
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

/** A file as a publish checkpoint knows it: where, how large, when last changed. */
export interface FileIdentity {
  /** Absolute path. */
  file: string;
  bytes: number;
  mtimeMs: number;
}

/** The identity of each file (null for one that cannot be stat'ed now), `concurrency` stats at a time. */
export async function fileIdentities(files: readonly string[], concurrency = 32): Promise<Map<string, FileIdentity | null>> {
  const out = new Map<string, FileIdentity | null>();
  let next = 0;
  const work = async (): Promise<void> => {
    for (let i = next++; i < files.length; i = next++) {
      const file = files[i] as string;
      try {
        const info = await stat(file);
        out.set(file, { file: resolve(file), bytes: info.size, mtimeMs: info.mtimeMs });
      } catch {
        out.set(file, null); // reading it will report why
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, work));
  return out;
}

/** What a checkpoint belongs to: a second publish may use it only when these are the same. */
export interface CheckpointScope {
  topic: string;
  format: string;
}

const CHECKPOINT_KIND = 'trailwatch-publish-checkpoint';

/**
 * The files a publish has finished, on disk: JSON lines, a header naming the topic and format,
 * then one line per file ({"file","bytes","mtimeMs"}), appended (and synced) only once every
 * record of the file is acknowledged by the broker. A file counts as published when its path,
 * size and modification time are all the same: one replaced by a different version (a delivery
 * fetched again) is published again. A last line cut short by a crash is dropped on open.
 */
export class PublishCheckpoint {
  readonly path: string;
  private readonly finished = new Map<string, string>();
  private appending: Promise<void> = Promise.resolve();

  private constructor(path: string) {
    this.path = path;
  }

  /**
   * Reads the checkpoint at `path` (created with its header when missing). Throws TW_USAGE when it
   * belongs to another topic or format, or is not a checkpoint, naming the fix.
   */
  static async open(path: string, scope: CheckpointScope): Promise<PublishCheckpoint> {
    const checkpoint = new PublishCheckpoint(path);
    let text = '';
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw checkpointError(path, `cannot read it: ${errorMessage(err)}`, err);
    }
    const complete = text.endsWith('\n') ? text : text.slice(0, text.lastIndexOf('\n') + 1);
    if (complete.length < text.length) await truncate(path, Buffer.byteLength(complete)); // a line cut short by a crash
    const lines = complete.split('\n').filter((line) => line !== '');
    if (lines.length === 0) {
      await mkdir(dirname(path), { recursive: true });
      const header = { kind: CHECKPOINT_KIND, version: 1, topic: scope.topic, format: scope.format, createdAt: new Date().toISOString() };
      await checkpoint.append(`${JSON.stringify(header)}\n`);
      return checkpoint;
    }
    const header = parseLine(lines[0] as string) as { kind?: unknown; topic?: unknown; format?: unknown } | null;
    if (header?.kind !== CHECKPOINT_KIND) throw checkpointError(path, 'it is not a trailwatch publish checkpoint');
    if (header.topic !== scope.topic || header.format !== scope.format) {
      throw checkpointError(
        path,
        `it records a publish of ${String(header.format)} to topic ${String(header.topic)}, not of ${scope.format} to ${scope.topic}`,
      );
    }
    for (let i = 1; i < lines.length; i++) {
      const entry = parseLine(lines[i] as string) as Partial<FileIdentity> | null;
      if (typeof entry?.file !== 'string' || typeof entry.bytes !== 'number' || typeof entry.mtimeMs !== 'number') {
        throw checkpointError(path, `line ${i + 1} is not a finished file`);
      }
      checkpoint.finished.set(entry.file, versionOf(entry as FileIdentity));
    }
    return checkpoint;
  }

  /** Files recorded as finished. */
  get size(): number {
    return this.finished.size;
  }

  /** Whether this version of the file was published to the end. */
  has(id: FileIdentity): boolean {
    return this.finished.get(id.file) === versionOf(id);
  }

  /** Records files as finished: resolves once the lines are on disk. */
  record(ids: readonly FileIdentity[]): Promise<void> {
    if (ids.length === 0) return this.appending;
    for (const id of ids) this.finished.set(id.file, versionOf(id));
    return this.append(ids.map((id) => `${JSON.stringify({ file: id.file, bytes: id.bytes, mtimeMs: id.mtimeMs })}\n`).join(''));
  }

  /** Appends in call order, each write synced before the next. */
  private append(text: string): Promise<void> {
    this.appending = this.appending.then(async () => {
      const handle = await open(this.path, 'a');
      try {
        await handle.write(text);
        await handle.datasync();
      } finally {
        await handle.close();
      }
    });
    return this.appending;
  }
}

function versionOf(id: FileIdentity): string {
  return `${id.bytes}:${id.mtimeMs}`;
}

function parseLine(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}

function checkpointError(path: string, reason: string, cause?: unknown): TrailwatchError {
  return new TrailwatchError(
    ErrorCodes.USAGE,
    `cannot use the checkpoint ${path}: ${reason}. Pass another --checkpoint FILE, delete this one to publish every file again, or --no-checkpoint`,
    { fault: 'user', cause, details: { checkpoint: path } },
  );
}
