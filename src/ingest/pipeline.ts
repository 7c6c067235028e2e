/**
 * CloudTrail deliveries → encoded records, off the main thread. Reading, gunzip, JSON parse,
 * normalize and Avro encode cost several times what producing does (BENCHMARKS.md, "Publish"),
 * so they run in worker threads (worker.ts) and the main thread only produces. Workers hand
 * over chunks of encoded records as transferred ArrayBuffers: no copy, no object per record
 * crossing threads.
 *
 * Order is kept as one thread would read: entries (files, or paths that failed) are cut into
 * blocks of consecutive entries, block b goes to worker b mod n, and chunks are yielded block by
 * block. Each worker runs at most MAX_CHUNKS_AHEAD chunks ahead of the consumer, which bounds
 * memory whatever the input size.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import { DEFAULT_MAX_FILE_BYTES } from './files.ts';
import { type PlannedEntry, planInputs, type TimeRange } from './inputs.ts';
import { cloudTrailSource } from './sources/cloudtrail.ts';
import type { SourceSpec } from './sources/index.ts';

/** What a worker needs to encode as the publisher would. */
export interface EncodeSettings {
  /** The registry's id of the AuditEvent contract, written into every value. */
  schemaId: number;
  /** Partitions of the events topic: a key's partition is computed in the worker. */
  partitions: number;
  /** The topic's max.message.bytes: a record larger alone is reported as TW_RECORD_TOO_LARGE. */
  maxMessageBytes: number;
  /** Encoded records with an event time before this are counted as `tooOld`. */
  oldBeforeMs: number;
  /** Largest file accepted, in bytes after decompression. */
  maxFileBytes?: number;
  /** Keep each source record as JSON in the event's `raw`, for rules (default true). */
  raw?: boolean;
  /** The source the files are read with (its `raw` is `raw` above); default CloudTrail deliveries. */
  source?: Omit<SourceSpec, 'raw'>;
  /** Events outside it are counted as `outOfRange` and not encoded (formats whose file names carry no time). */
  eventRange?: TimeRange;
}

/** A path, file or record that could not be used, as `publish` reports it. */
export interface RecordError {
  file: string;
  /** The line of a line format, else the index in the document; null for the whole file. */
  index: number | null;
  /** `file:index`, `file:line` or `file:line[index]` (see formatPosition). */
  position: string;
  code: string;
  /** Leads with the position. */
  message: string;
  /** The rejected input as text (the record's JSON, the line), for the dead-letter topic; null when the whole file failed. */
  value: string | null;
}

/** The part of one file in a chunk: its encoded records (consecutive in the chunk), then its errors. */
export interface FileSegment {
  file: string;
  records: number;
  errors: RecordError[];
  /** Records read that are not API calls (a k8s RequestReceived stage, a control message), by reason. */
  skipped: Record<string, number> | null;
  /** Events outside `eventRange`. */
  outOfRange: number;
  /**
   * The file's last segment: every item of the file is in this chunk or an earlier one. Every
   * entry ends with one, a file with no items too, so a caller can tell when a file is through.
   */
  done: boolean;
}

/** Fields of `meta` per record. */
export const META_FIELDS = 4;

/** As a worker posts it. */
export interface ChunkMessage {
  block: number;
  /** The last chunk of its block. */
  last: boolean;
  /** Keys and values, record after record: key then value. */
  data: ArrayBuffer;
  /** Per record: key bytes, value bytes, partition, index in its file. */
  meta: ArrayBuffer;
  count: number;
  tooOld: number;
  segments: FileSegment[];
}

export interface EncodedChunk {
  data: Buffer;
  meta: Int32Array;
  count: number;
  tooOld: number;
  segments: FileSegment[];
}

export type WorkerEntry = { kind: 'file'; file: string } | { kind: 'error'; error: RecordError };

export interface WorkerInput {
  settings: EncodeSettings;
  blocks: Array<{ block: number; entries: WorkerEntry[] }>;
}

export interface EncodeOptions {
  /** Worker threads; default: one per core beyond the main thread's, at least 1, at most 2. */
  workers?: number;
}

// A block is smaller than what its worker may run ahead, so while one worker's block is taken the
// next worker finishes its own: with 16-file blocks (~15 chunks of the benchmark's deliveries)
// and 4 chunks of credit two workers mostly took turns, each waiting for credit for a third of
// its time; with these, about a tenth (bench/publish.ts tree, `--dry-run --workers 2`).
const BLOCK_ENTRIES = 4; // consecutive files one worker reads: small deliveries share chunks
const MAX_CHUNKS_AHEAD = 8; // per worker, ~1 MiB each

export function defaultWorkers(): number {
  return Math.max(1, Math.min(2, availableParallelism() - 1));
}

/** Reads, normalizes and encodes every CloudTrail record under `paths`, yielding chunks in read order. */
export async function* encodeDeliveries(
  paths: string[],
  settings: EncodeSettings,
  options: EncodeOptions = {},
): AsyncGenerator<EncodedChunk> {
  const plan = await planInputs(paths, cloudTrailSource());
  yield* encodeInputs(plan.entries, settings, options);
}

/** Reads, normalizes (with `settings.source`) and encodes the planned files, yielding chunks in read order. */
export async function* encodeInputs(
  entries: readonly PlannedEntry[],
  settings: EncodeSettings,
  options: EncodeOptions = {},
): AsyncGenerator<EncodedChunk> {
  const blocks: Array<{ block: number; entries: WorkerEntry[] }> = [];
  for (let i = 0; i < entries.length; i += BLOCK_ENTRIES) {
    blocks.push({
      block: blocks.length,
      entries: entries.slice(i, i + BLOCK_ENTRIES).map(
        (e): WorkerEntry =>
          e.kind === 'file'
            ? { kind: 'file', file: e.file }
            : {
                kind: 'error',
                error: { file: e.file, index: e.index, position: e.file, code: e.error.code, message: e.error.message, value: null },
              },
      ),
    });
  }
  if (blocks.length === 0) return;
  const n = Math.min(options.workers ?? defaultWorkers(), blocks.length);
  const full = { maxFileBytes: DEFAULT_MAX_FILE_BYTES, ...settings };
  const workers = Array.from({ length: n }, (_, w) => new ChunkSource({ settings: full, blocks: blocks.filter((b) => b.block % n === w) }));
  try {
    for (const { block } of blocks) {
      const source = workers[block % n] as ChunkSource;
      for (;;) {
        const m = await source.next();
        if (m.block !== block) throw new TrailwatchError(ErrorCodes.INTERNAL, `ingest worker sent block ${m.block}, expected ${block}`);
        yield { data: Buffer.from(m.data), meta: new Int32Array(m.meta), count: m.count, tooOld: m.tooOld, segments: m.segments };
        source.credit();
        if (m.last) break;
      }
    }
  } finally {
    await Promise.all(workers.map((w) => w.close()));
  }
}

/** One worker thread and the chunks it sent that were not taken yet. */
class ChunkSource {
  private readonly worker: Worker;
  private readonly queue: ChunkMessage[] = [];
  private waiting: { resolve: (m: ChunkMessage) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  constructor(input: WorkerInput) {
    this.worker = new Worker(new URL('./worker.ts', import.meta.url), { workerData: { ...input, maxChunksAhead: MAX_CHUNKS_AHEAD } });
    this.worker.on('message', (m: ChunkMessage) => {
      if (this.waiting) {
        this.waiting.resolve(m);
        this.waiting = null;
      } else this.queue.push(m);
    });
    const fail = (err: Error): void => {
      this.failure ??= new TrailwatchError(ErrorCodes.INTERNAL, `ingest worker failed: ${err.message}`, { cause: err });
      this.waiting?.reject(this.failure);
      this.waiting = null;
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`exited with code ${code} before its last chunk`)));
  }

  next(): Promise<ChunkMessage> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  /** The consumer took a chunk: the worker may encode one more. */
  credit(): void {
    this.worker.postMessage(1);
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}
