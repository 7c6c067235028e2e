import { randomUUID } from 'node:crypto';
import type { EngineChanges, EngineMeta } from '../detect/engine.ts';
import type { StageCheckpoint, UpstreamClock } from '../detect/topology.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import type { Transport, TxnProducer } from '../transport/types.ts';
import type { OutRecord } from './produce.ts';

/**
 * A stage partition's state in a compacted changelog topic, one changelog partition per task
 * partition (as Kafka Streams keeps its stores):
 *
 *   meta                   the engine's clocks and metrics (+ upstream clocks for the action stage,
 *                          + the config version the commit ran)
 *   k|<key id>             one key's encoded state; a tombstone when the key is gone. A state larger
 *                          than the writer's bound (an action key holding many open buckets while a
 *                          backlog drains) is cut in parts: this record holds the first, behind
 *                          PARTS_MARK and the number of parts, and kp|<n>|<key id> the n-th
 *   kp|<n>|<key id>        part n (from 1) of a key's state; tombstoned when the state needs fewer
 *   d|<key>                the first stage's findings state (FindingStage: rule folds, first-seen and
 *                          breadth per principal, correlations), cut in dp|<n>|<key> parts like keys
 *   seen|<bucket>|<seq>    event ids first seen in one commit, for the dedupe horizon; tombstoned once
 *                          the watermark has passed the bucket
 *   barrier                written by a task that takes the partition over: the restore reads up to it
 *
 * Every record is written in the same transaction as the Insights and input offsets it goes
 * with, so a restored partition is exactly the state after its last committed batch.
 */

const META = 'meta';
const KEY_PREFIX = 'k|';
const PART_PREFIX = 'kp|';
/** Starts a key record cut in parts: `PARTS_MARK<parts>|<first part>`. No JSON value starts with it. */
const PARTS_MARK = '\u0001';
const PARTS_MARK_BYTE = 0x01;
const SEEN_PREFIX = 'seen|';
const FINDINGS_PREFIX = 'd|';
const FINDINGS_PART_PREFIX = 'dp|';
const BARRIER = 'barrier';

interface MetaRecord {
  engine: EngineMeta;
  upstream?: Array<[number, UpstreamClock]>;
  /**
   * The config topic's version the task ran when it committed this state (absent: none, or a state
   * written before versions): a restored task knows which tuning its state was built under.
   */
  configVersion?: number;
}

/** Turns the changes of one commit into changelog messages; remembers which dedupe records are live. */
export class ChangelogWriter {
  readonly topic: string;
  readonly partition: number;
  private readonly bucketMs: number;
  /** Largest value of one dedupe record: a commit's event ids are cut into records of at most this size. */
  private readonly maxSeenBytes: number;
  /** Dedupe records written, by bucket, until the watermark passes the bucket. */
  private readonly seenRecords = new Map<number, string[]>();
  /** Keys whose state is written in more than one part, and in how many: the surplus is tombstoned when it shrinks. */
  private readonly keyParts: Map<string, number>;
  private seq = 0;

  /**
   * `maxValueBytes` bounds every value written (dedupe records and key parts), so that no record
   * outgrows what the changelog topic accepts; `live` is what a restore found still in the log.
   */
  constructor(
    topic: string,
    partition: number,
    bucketMs: number,
    live: Iterable<string> = [],
    maxValueBytes = 256 * 1024,
    keyParts: Iterable<[string, number]> = [],
  ) {
    this.topic = topic;
    this.partition = partition;
    this.bucketMs = bucketMs;
    this.maxSeenBytes = maxValueBytes;
    this.keyParts = new Map(keyParts);
    for (const key of live) this.remember(key);
  }

  messages(
    changes: EngineChanges,
    upstream: Array<[number, UpstreamClock]> | null,
    findings: ReadonlyArray<[string, string | null]> = [],
    configVersion: number | null = null,
  ): OutRecord[] {
    const out: OutRecord[] = [];
    const put = (key: string, value: string | null) => out.push({ topic: this.topic, key, value, partition: this.partition });
    for (const [id, encoded] of changes.keys) this.putKey(put, id, encoded);
    for (const [id, encoded] of findings) this.putKey(put, id, encoded, FINDINGS_PREFIX, FINDINGS_PART_PREFIX);
    const byBucket = new Map<number, Array<[string, number]>>();
    for (const entry of changes.seen) {
      const bucket = Math.floor(entry[1] / this.bucketMs) * this.bucketMs;
      let list = byBucket.get(bucket);
      if (!list) {
        list = [];
        byBucket.set(bucket, list);
      }
      list.push(entry);
    }
    const stamp = `${Date.now().toString(36)}.${(this.seq++).toString(36)}`;
    for (const [bucket, entries] of byBucket) {
      // One record per bucket and commit, cut so that none outgrows what the topic accepts.
      let chunk: Array<[string, number]> = [];
      let bytes = 2;
      let part = 0;
      const flush = () => {
        const key = `${SEEN_PREFIX}${bucket}|${stamp}.${(part++).toString(36)}`;
        this.remember(key);
        put(key, JSON.stringify(chunk));
        chunk = [];
        bytes = 2;
      };
      for (const entry of entries) {
        const size = entry[0].length * 3 + 24;
        if (chunk.length > 0 && bytes + size > this.maxSeenBytes) flush();
        chunk.push(entry);
        bytes += size;
      }
      if (chunk.length > 0) flush();
    }
    // The engine forgets an event id once the watermark closes the bucket after its own.
    const closed = changes.meta.closedThroughMs ?? Number.NEGATIVE_INFINITY;
    for (const [bucket, keys] of this.seenRecords) {
      if (bucket + 2 * this.bucketMs > closed) continue;
      for (const key of keys) put(key, null);
      this.seenRecords.delete(bucket);
    }
    const meta: MetaRecord = {
      engine: changes.meta,
      ...(upstream ? { upstream } : {}),
      ...(configVersion !== null ? { configVersion } : {}),
    };
    put(META, JSON.stringify(meta));
    return out;
  }

  /** One key's state: one record, or (too large for one) a head and parts, stale parts tombstoned. */
  private putKey(
    put: (key: string, value: string | null) => void,
    id: string,
    encoded: string | null,
    prefix = KEY_PREFIX,
    partPrefix = PART_PREFIX,
  ): void {
    const partsKey = prefix === KEY_PREFIX ? id : prefix + id;
    const before = this.keyParts.get(partsKey) ?? 1;
    let parts = 1;
    // A UTF-16 unit is at most 3 bytes of UTF-8: this many units always fit.
    const step = Math.max(1, Math.floor((this.maxSeenBytes - 32) / 3));
    if (encoded === null || encoded.length <= step) {
      put(prefix + id, encoded);
    } else {
      const slices: string[] = [];
      for (let at = 0; at < encoded.length; ) {
        let end = Math.min(encoded.length, at + step);
        // Never between the two halves of a surrogate pair: each part must be valid text on its own.
        const last = encoded.charCodeAt(end - 1);
        if (end < encoded.length && last >= 0xd800 && last <= 0xdbff) end--;
        slices.push(encoded.slice(at, end));
        at = end;
      }
      parts = slices.length;
      for (let n = 1; n < parts; n++) put(`${partPrefix}${n}|${id}`, slices[n] as string);
      put(prefix + id, `${PARTS_MARK}${parts}|${slices[0]}`);
    }
    for (let n = parts; n < before; n++) put(`${partPrefix}${n}|${id}`, null);
    if (parts > 1) this.keyParts.set(partsKey, parts);
    else this.keyParts.delete(partsKey);
  }

  private remember(key: string): void {
    if (!key.startsWith(SEEN_PREFIX)) return;
    const bucket = Number(key.slice(SEEN_PREFIX.length, key.indexOf('|', SEEN_PREFIX.length)));
    let list = this.seenRecords.get(bucket);
    if (!list) {
      list = [];
      this.seenRecords.set(bucket, list);
    }
    list.push(key);
  }
}

/** A changelog record as JSON; one that does not parse is a corrupt state no retry can mend. */
function parseState(value: Buffer, topic: string, partition: number, offset: string): unknown {
  try {
    return JSON.parse(value.toString());
  } catch (err) {
    throw stateCorrupt(topic, partition, `the record at offset ${offset} is not JSON (${(err as Error).message})`, err);
  }
}

/** The state in a changelog partition cannot be read back: the task cannot start, and retrying will not change that. */
export function stateCorrupt(topic: string, partition: number, what: string, cause?: unknown): TrailwatchError {
  return new TrailwatchError(
    ErrorCodes.STATE_CORRUPT,
    `changelog ${topic}[${partition}] is corrupt: ${what}. Delete the changelog topic to rebuild the state from scratch, ` +
      'or give the detector a new detector.groupId',
    { fault: 'internal', canRetry: false, cause, details: { topic, partition } },
  );
}

export interface RestoredPartition {
  checkpoint: StageCheckpoint;
  /** Live dedupe record keys, for the writer. */
  seenKeys: string[];
  /** Keys whose state was found in several parts, and how many, for the writer. */
  keyParts: Array<[string, number]>;
  /** The config version the last committed batch ran; null for none (or a state from before versions). */
  configVersion: number | null;
  records: number;
  bytes: number;
  ms: number;
}

/**
 * Writes a barrier to the partition in its own transaction (the producer has already fenced any
 * previous owner, so everything committed before is in the log before it), then reads the
 * partition from the beginning up to that barrier. Reading up to a record we wrote ourselves
 * avoids guessing where a log that ends in transaction markers really ends.
 */
export async function restorePartition(opts: {
  transport: Transport;
  /** The task's producer, connected: it has fenced any previous owner. */
  producer: TxnProducer;
  topic: string;
  partition: number;
  groupId: string;
  /** Called while reading, to keep the caller's consumer group membership alive. */
  heartbeat?: () => Promise<void>;
  timeoutMs?: number;
  /** Give up a reader that reads nothing this long (joining included); default 20 s. */
  idleMs?: number;
}): Promise<RestoredPartition> {
  const started = Date.now();
  const nonce = randomUUID();
  const txn = await opts.producer.begin();
  try {
    await txn.send([{ topic: opts.topic, partition: opts.partition, key: BARRIER, value: nonce }]);
    await txn.commit();
  } catch (err) {
    await txn.abort().catch(() => undefined);
    throw err;
  }

  let meta: MetaRecord | null = null;
  // Kept as the fetched bytes, decoded one at a time while the engine is rebuilt: a million
  // strings held at once would be hundreds of MiB of old-generation heap for the collector to move.
  const keys = new Map<string, Buffer | string>();
  const parts = new Map<string, string>();
  const findings = new Map<string, Buffer | string>();
  const findingParts = new Map<string, string>();
  const seen = new Map<string, Array<[string, number]>>();
  let records = 0;
  let bytes = 0;
  const consumer = opts.transport.groupConsumer({
    groupId: `${opts.groupId}.restore.${nonce}`,
    topics: [opts.topic],
    fromBeginning: true,
    readCommitted: true,
    // A restore reads fast and keeps nothing: no offsets to commit, a short session.
    sessionTimeoutMs: 10_000,
  });
  const timeoutMs = opts.timeoutMs ?? 5 * 60_000;
  const idleMs = opts.idleMs ?? 20_000;
  let timer: NodeJS.Timeout | undefined;
  let beat: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new TrailwatchError(ErrorCodes.KAFKA, `restoring ${opts.topic}[${opts.partition}] took longer than ${timeoutMs} ms`, {
              canRetry: true,
            }),
          ),
        timeoutMs,
      );
      let finished = false;
      let progressAt = Date.now();
      beat = setInterval(() => {
        void opts.heartbeat?.().catch(() => undefined);
        // A reader wedged (seen with kafkajs after it restarted on a partition its broker did not
        // host yet) never reaches the barrier: give it up and let the task try a new one.
        if (Date.now() - progressAt > idleMs) {
          done(
            new TrailwatchError(
              ErrorCodes.KAFKA,
              `restoring ${opts.topic}[${opts.partition}]: nothing read for ${idleMs} ms, the barrier not reached: retrying with a new reader`,
              { canRetry: true, details: { records } },
            ),
          );
        }
      }, 2_000);
      const done = (err?: unknown) => {
        if (finished) return;
        finished = true;
        if (err) reject(err);
        else resolve();
      };
      const others = (tps: Array<{ topic: string; partition: number }>) => tps.filter((tp) => tp.partition !== opts.partition);
      consumer
        .run({
          onAssigned: (tps) => consumer.pause(others(tps)),
          onCrash: done,
          onBatch: async (batch) => {
            if (finished) return;
            progressAt = Date.now();
            if (batch.partition !== opts.partition) {
              consumer.pause([{ topic: batch.topic, partition: batch.partition }]);
              return;
            }
            for (const m of batch.records) {
              const key = m.key?.toString() ?? '';
              const offset = String(m.offset);
              records++;
              bytes += m.value?.length ?? 0;
              if (key === BARRIER) {
                if (m.value?.toString() === nonce) {
                  done();
                  return;
                }
              } else if (key === META) {
                if (m.value) meta = parseState(m.value, opts.topic, batch.partition, offset) as MetaRecord;
              } else if (key.startsWith(KEY_PREFIX)) {
                const id = key.slice(KEY_PREFIX.length);
                if (m.value) keys.set(id, m.value);
                else keys.delete(id);
              } else if (key.startsWith(PART_PREFIX)) {
                if (m.value) parts.set(key, m.value.toString());
                else parts.delete(key);
              } else if (key.startsWith(FINDINGS_PREFIX)) {
                const id = key.slice(FINDINGS_PREFIX.length);
                if (m.value) findings.set(id, m.value);
                else findings.delete(id);
              } else if (key.startsWith(FINDINGS_PART_PREFIX)) {
                if (m.value) findingParts.set(key, m.value.toString());
                else findingParts.delete(key);
              } else if (key.startsWith(SEEN_PREFIX)) {
                if (m.value) seen.set(key, parseState(m.value, opts.topic, batch.partition, offset) as Array<[string, number]>);
                else seen.delete(key);
              }
            }
          },
        })
        .catch(done);
    });
  } finally {
    clearTimeout(timer);
    clearInterval(beat);
    await consumer.close().catch(() => undefined);
  }
  const restoredMeta = meta as MetaRecord | null;
  const keyParts: Array<[string, number]> = [];
  const join = (values: Map<string, Buffer | string>, partsOf: Map<string, string>, partPrefix: string, writerPrefix: string) => {
    for (const [id, bytes] of values) {
      if (bytes[0] !== PARTS_MARK_BYTE && !(typeof bytes === 'string' && bytes.startsWith(PARTS_MARK))) continue;
      const value = bytes.toString();
      const bar = value.indexOf('|');
      const count = Number(value.slice(PARTS_MARK.length, bar));
      let whole = value.slice(bar + 1);
      for (let n = 1; n < count; n++) {
        const part = partsOf.get(`${partPrefix}${n}|${id}`);
        if (part === undefined)
          throw stateCorrupt(opts.topic, opts.partition, `part ${n} of ${count} of key ${id.slice(0, 200)} is missing`);
        whole += part;
      }
      values.set(id, whole);
      keyParts.push([writerPrefix + id, count]);
    }
  };
  join(keys, parts, PART_PREFIX, '');
  join(findings, findingParts, FINDINGS_PART_PREFIX, FINDINGS_PREFIX);
  return {
    checkpoint: {
      meta: restoredMeta?.engine ?? null,
      keys: decoded(keys.values()),
      seen: [...seen.values()].flat(),
      ...(restoredMeta?.upstream ? { upstream: restoredMeta.upstream } : {}),
      findings: [...findings].map(([id, v]): [string, string] => [id, typeof v === 'string' ? v : v.toString()]),
    },
    seenKeys: [...seen.keys()],
    keyParts,
    configVersion: typeof restoredMeta?.configVersion === 'number' ? restoredMeta.configVersion : null,
    records,
    bytes,
    ms: Date.now() - started,
  };
}

/** Each key's state as a string, made when the engine asks for it. */
function* decoded(values: Iterable<Buffer | string>): Generator<string> {
  for (const v of values) yield typeof v === 'string' ? v : v.toString();
}
