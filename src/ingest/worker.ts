/**
 * The ingest worker thread (started by pipeline.ts): reads, gunzips, parses, normalizes and
 * encodes its blocks of deliveries into chunks of wire-format records, posted with their
 * ArrayBuffers transferred. A chunk ends when its buffers are full or its block ends.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError } from '../errors.ts';
import { normalizeCloudTrail } from './cloudtrail.ts';
import { type Delivery, type DeliveryErrorItem, readDelivery } from './files.ts';
import { type ChunkMessage, type FileSegment, META_FIELDS, type RecordError, type WorkerEntry, type WorkerInput } from './pipeline.ts';
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
const normalizeOptions = { raw: settings.raw !== false };

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
    segment = { file, records: 0, errors: [] };
    segments.push(segment);
  }
  return segment;
}

function reject(file: string, error: RecordError): void {
  segmentOf(file).errors.push(error);
}

/** Encodes one event at the end of the chunk; false when the chunk has no room for it. */
function encodeAt(e: AuditEvent, file: string, index: number): boolean {
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
    if (!tooLarge(e, file, index, keyBytes, valueBytes)) {
      data = Buffer.allocUnsafe(keyBytes + valueBytes);
      value.copy(data, keyBytes);
      end = data.length;
    }
  }
  if (end < 0 || tooLarge(e, file, index, keyBytes, valueBytes)) return true;
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

function tooLarge(e: AuditEvent, file: string, index: number, keyBytes: number, valueBytes: number): boolean {
  if (recordBytes(keyBytes, valueBytes) + BATCH_OVERHEAD_BYTES <= settings.maxMessageBytes) return false;
  const err = recordTooLarge(`event ${e.eventId}`, keyBytes, valueBytes, settings.maxMessageBytes);
  reject(file, { file, index, code: err.code, message: `${file}:${index}: ${err.message}` });
  return true;
}

async function records(block: number, file: string, list: unknown[]): Promise<void> {
  for (let index = 0; index < list.length; index++) {
    let event: AuditEvent;
    try {
      event = normalizeCloudTrail(list[index], normalizeOptions);
    } catch (err) {
      if (!(err instanceof BadRecordError)) throw err;
      reject(file, { file, index, code: err.code, message: `${file}:${index}: ${err.message}` });
      continue;
    }
    try {
      if (!encodeAt(event, file, index)) {
        await post(block, false);
        encodeAt(event, file, index);
      }
    } catch (err) {
      if (!(err instanceof BadRecordError)) throw err;
      reject(file, { file, index, code: err.code, message: `${file}:${index}: ${err.message}` });
    }
  }
}

type Loaded = Delivery | DeliveryErrorItem | { kind: 'failed'; error: RecordError };

async function main(): Promise<void> {
  const queue: Array<{ block: number; entry: WorkerEntry; last: boolean }> = [];
  for (const b of input.blocks) {
    b.entries.forEach((entry, i) => {
      queue.push({ block: b.block, entry, last: i === b.entries.length - 1 });
    });
  }
  // The next file is read and gunzipped (in libuv's pool) while this one is encoded.
  const load = (i: number): Promise<Loaded> | null => {
    const item = queue[i];
    if (!item) return null;
    return item.entry.kind === 'file'
      ? readDelivery(item.entry.file, maxFileBytes)
      : Promise.resolve({ kind: 'failed', error: item.entry.error });
  };
  let next = load(0);
  for (let i = 0; i < queue.length; i++) {
    const { block, last } = queue[i] as (typeof queue)[number];
    const loaded = await (next as Promise<Loaded>);
    next = load(i + 1);
    if (loaded.kind === 'delivery') await records(block, loaded.file, loaded.records);
    else if (loaded.kind === 'failed') reject(loaded.error.file, loaded.error);
    else reject(loaded.file, { file: loaded.file, index: loaded.index, code: loaded.error.code, message: loaded.error.message });
    if (last) await post(block, true);
  }
  port?.unref(); // done: the thread ends once its last chunk is posted
}

await main();
