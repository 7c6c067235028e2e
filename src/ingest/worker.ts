/**
 * The ingest worker thread (started by pipeline.ts): reads its blocks of files with the source
 * named in its settings (sources/), normalizes and encodes their records into chunks of
 * wire-format records, posted with their ArrayBuffers transferred. A chunk ends when its buffers
 * are full or its block ends.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError, type ErrorCode } from '../errors.ts';
import { inRange, type PlannedEntry, readPlanned } from './inputs.ts';
import { type ChunkMessage, type FileSegment, META_FIELDS, type RecordError, type WorkerInput } from './pipeline.ts';
import { formatPosition, type Position, positionNumber, type ReadItem, Skip } from './source.ts';
import { createSource } from './sources/index.ts';
import { BATCH_OVERHEAD_BYTES, eventKey, KeyRoutes, recordBytes, recordTooLarge, wireHeader, wireValue, writeWireValue } from './wire.ts';

const DATA_BYTES = 1024 * 1024;
const META_RECORDS = 4096;

const input = workerData as WorkerInput & { maxChunksAhead: number };
const port = parentPort;
if (port === null) throw new Error('worker.ts runs as a worker thread (see pipeline.ts)');

const { settings } = input;
const header = wireHeader(settings.schemaId);
const routes = new KeyRoutes(settings.partitions);
const maxFileBytes = settings.maxFileBytes as number;
const source = createSource({ format: 'cloudtrail', ...settings.source, raw: settings.raw !== false });
const range = settings.eventRange ?? null;
const ranged = range !== null && (range.sinceMs !== null || range.untilMs !== null);

let ahead = 0;
let wake: (() => void) | null = null;
port.on('message', () => {
  ahead--;
  wake?.();
  wake = null;
});

let data = Buffer.allocUnsafe(DATA_BYTES);
let meta = new Int32Array(META_RECORDS * META_FIELDS);
let pos = 0;
let count = 0;
let tooOld = 0;
let segments: FileSegment[] = [];
let segment: FileSegment | null = null;

async function post(block: number, last: boolean): Promise<void> {
  while (ahead >= input.maxChunksAhead) await new Promise<void>((resolve) => (wake = resolve));
  // A chunk mostly full moves as it is; a mostly empty one (a block's tail) as a copy of its
  // bytes, so records waiting for their acknowledgement do not hold whole empty megabytes.
  const dataBuf = pos > data.length / 2 && data.byteOffset === 0 ? data.buffer : copyOf(data.subarray(0, pos));
  const metaBuf = meta.slice(0, count * META_FIELDS).buffer;
  const m: ChunkMessage = { block, last, data: dataBuf as ArrayBuffer, meta: metaBuf, count, tooOld, segments };
  ahead++;
  port?.postMessage(m, [m.data, m.meta]);
  data = Buffer.allocUnsafe(DATA_BYTES);
  meta = new Int32Array(META_RECORDS * META_FIELDS);
  pos = 0;
  count = 0;
  tooOld = 0;
  segments = [];
  segment = null;
}

function copyOf(b: Buffer): ArrayBuffer {
  const ab = new ArrayBuffer(b.length);
  new Uint8Array(ab).set(b);
  return ab;
}

function segmentOf(file: string): FileSegment {
  if (segment?.file !== file) {
    segment = { file, records: 0, errors: [], skipped: null, outOfRange: 0, done: false };
    segments.push(segment);
  }
  return segment;
}

function reject(file: string, error: RecordError): void {
  segmentOf(file).errors.push(error);
}

/** Encodes one event at the end of the chunk; false when the chunk has no room for it. */
function encodeAt(e: AuditEvent, file: string, at: Position): boolean {
  const index = positionNumber(at) ?? 0;
  const route = routes.get(eventKey(e));
  const keyBytes = route.key.length;
  let end = -1;
  if (count < META_RECORDS && pos + keyBytes < data.length) end = writeWireValue(e, header, data, pos + keyBytes);
  let valueBytes: number;
  if (end >= 0) valueBytes = end - pos - keyBytes;
  else if (count > 0) return false;
  else {
    // Larger than an empty chunk: its own buffer, unless it is too large to send anyway.
    const value = wireValue(e, header);
    valueBytes = value.length;
    if (!tooLarge(e, file, at, keyBytes, valueBytes)) {
      data = Buffer.allocUnsafe(keyBytes + valueBytes);
      value.copy(data, keyBytes);
      end = data.length;
    }
  }
  if (end < 0 || tooLarge(e, file, at, keyBytes, valueBytes)) return true;
  route.key.copy(data, pos);
  const m = count * META_FIELDS;
  meta[m] = keyBytes;
  meta[m + 1] = valueBytes;
  meta[m + 2] = route.partition;
  meta[m + 3] = index;
  pos = end;
  count++;
  segmentOf(file).records++;
  if (e.eventTimeMs < settings.oldBeforeMs) tooOld++;
  return true;
}

function tooLarge(e: AuditEvent, file: string, at: Position, keyBytes: number, valueBytes: number): boolean {
  if (recordBytes(keyBytes, valueBytes) + BATCH_OVERHEAD_BYTES <= settings.maxMessageBytes) return false;
  const err = recordTooLarge(`event ${e.eventId}`, keyBytes, valueBytes, settings.maxMessageBytes);
  // No value for the dead letter: a record too large for the events topic is too large there too.
  reject(file, { ...recordError(at, err, null), message: `${formatPosition(at)}: ${err.message}` });
  return true;
}

/** A rejected item as publish reports and dead-letters it. */
function recordError(at: Position, error: BadRecordError, value: string | null): RecordError {
  return { file: at.origin, index: positionNumber(at), position: formatPosition(at), code: error.code, message: error.message, value };
}

/** The input behind a rejected record, as text; capped: a dead letter says what was wrong, the file holds the rest. */
function inputText(item: ReadItem): string | null {
  const MAX = 256 * 1024;
  let text: string | null = null;
  if (item.kind === 'record') text = typeof item.record === 'string' ? item.record : (JSON.stringify(item.record) ?? null);
  else if (item.kind === 'error') text = item.text ?? null;
  return text !== null && text.length > MAX ? text.slice(0, MAX) : text;
}

async function items(block: number, file: string, list: ReadItem[]): Promise<void> {
  for (const item of list) {
    if (item.kind === 'skip') {
      skip(file, item.reason);
      continue;
    }
    if (item.kind === 'error') {
      reject(file, recordError(item.at, item.error, inputText(item)));
      continue;
    }
    const n = source.normalize(item.record);
    if (n instanceof BadRecordError) {
      const where = formatPosition(item.at);
      reject(file, { ...recordError(item.at, n, inputText(item)), message: `${where}: ${n.message}` });
      continue;
    }
    if (n instanceof Skip) {
      skip(file, n.reason);
      continue;
    }
    const event: AuditEvent = n;
    if (ranged && !inRange(event.eventTimeMs, range)) {
      segmentOf(file).outOfRange++;
      continue;
    }
    try {
      if (!encodeAt(event, file, item.at)) {
        await post(block, false);
        encodeAt(event, file, item.at);
      }
    } catch (err) {
      if (!(err instanceof BadRecordError)) throw err;
      const where = formatPosition(item.at);
      reject(file, { ...recordError(item.at, err, inputText(item)), message: `${where}: ${err.message}` });
    }
  }
}

function skip(file: string, reason: string): void {
  const seg = segmentOf(file);
  seg.skipped ??= {};
  seg.skipped[reason] = (seg.skipped[reason] ?? 0) + 1;
}

async function main(): Promise<void> {
  // Block boundaries by entry: a chunk is posted when the last entry of its block is done.
  const entries: PlannedEntry[] = [];
  const blockOf: number[] = [];
  const lastOfBlock = new Set<number>();
  for (const b of input.blocks) {
    b.entries.forEach((entry, i) => {
      if (entry.kind === 'file') entries.push({ kind: 'file', file: entry.file, timeMs: null });
      else {
        const { file, index, code, message } = entry.error;
        entries.push({ kind: 'error', file, index, error: new BadRecordError(code as ErrorCode, message) });
      }
      blockOf.push(b.block);
      if (i === b.entries.length - 1) lastOfBlock.add(entries.length - 1);
    });
  }
  for await (const batch of readPlanned(entries, source, maxFileBytes)) {
    const block = blockOf[batch.entry] as number;
    if (!batch.end) await items(block, batch.file, batch.items);
    else {
      segmentOf(batch.file).done = true;
      if (lastOfBlock.has(batch.entry)) await post(block, true);
    }
  }
  port?.unref(); // done: the thread ends once its last chunk is posted
}

await main();
