import type { Kafka } from 'kafkajs';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import { type DeadLetterRecord, readDeadLetter } from './dead-letter.ts';

export interface ScanContext {
  partition: number;
  /** Commits the scan's consumer group to `nextOffset` on this partition (the next record to read). */
  commit: (nextOffset: string) => Promise<void>;
}

export interface ScanOptions {
  kafka: Kafka;
  /** The dead-letter topic. */
  topic: string;
  /** The consumer group to read in; nothing is committed unless `onBatch` calls `commit`. */
  groupId: string;
  /** Per partition, the first offset to hand over (e.g. another group's committed offsets); default the earliest. */
  startOffsets?: ReadonlyMap<number, string>;
  /** Keep reading records that arrive after the scan caught up, until `signal` aborts. */
  follow?: boolean;
  signal?: AbortSignal;
  /** The records of one fetch of one partition, in offset order. Resolve to true to end the scan. */
  onBatch: (letters: DeadLetterRecord[], context: ScanContext) => Promise<boolean | undefined>;
  /** Called once every partition has been read up to the high watermark it had when the scan began. */
  onCaughtUp?: () => void;
}

export interface ScanResult {
  /** Records between the start offsets and the high watermarks when the scan began. */
  backlog: number;
  /** 'caught-up': read to the high watermarks; 'stopped': onBatch ended it; 'aborted': the signal. */
  ended: 'caught-up' | 'stopped' | 'aborted';
}

/**
 * Reads a dead-letter topic from `startOffsets` (or the beginning) up to the high watermarks it
 * has now — records that arrive meanwhile are left for the next scan unless `follow` — and hands
 * each fetched run of records to `onBatch`. Throws a user error when the topic does not exist.
 */
export async function scanDeadLetters(opts: ScanOptions): Promise<ScanResult> {
  const ranges = new Map<number, { start: bigint; high: bigint }>();
  const admin = opts.kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(opts.topic)) {
      throw new TrailwatchError(
        ErrorCodes.USAGE,
        `no dead-letter topic "${opts.topic}" on this cluster (the detector creates it when it starts; --topic names another)`,
        { fault: 'user' },
      );
    }
    for (const o of await admin.fetchTopicOffsets(opts.topic)) {
      const low = BigInt(o.low);
      const given = opts.startOffsets?.get(o.partition);
      const start = given !== undefined && BigInt(given) > low ? BigInt(given) : low;
      ranges.set(o.partition, { start, high: BigInt(o.high) });
    }
  } finally {
    await admin.disconnect();
  }
  const pending = new Set([...ranges].filter(([, r]) => r.start < r.high).map(([p]) => p));
  const backlog = [...ranges.values()].reduce((n, r) => n + Number(r.high > r.start ? r.high - r.start : 0n), 0);
  if (pending.size === 0 && !opts.follow) {
    opts.onCaughtUp?.();
    return { backlog, ended: 'caught-up' };
  }

  let settle: (ended: ScanResult['ended'] | Error) => void = () => undefined;
  const ended = new Promise<ScanResult['ended']>((resolve, reject) => {
    settle = (e) => (e instanceof Error ? reject(e) : resolve(e));
  });
  let done = false;
  const end = (e: ScanResult['ended'] | Error): void => {
    if (done) return;
    done = true;
    settle(e);
  };
  const caughtUp = (): void => {
    if (done) return;
    opts.onCaughtUp?.();
    if (!opts.follow) end('caught-up');
  };
  const onAbort = (): void => end('aborted');
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  const consumer = opts.kafka.consumer({ groupId: opts.groupId, readUncommitted: false, maxWaitTimeInMs: 500 });
  // Fired after every fetched batch of a partition, also one holding only transaction markers,
  // which never reaches eachBatch: the one reliable sign that a partition is read to its end.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    const range = ranges.get(payload.partition);
    if (payload.topic !== opts.topic || !range || !pending.has(payload.partition)) return;
    if (BigInt(payload.lastOffset) + 1n >= range.high) {
      pending.delete(payload.partition);
      if (pending.size === 0) caughtUp();
    }
  });
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [opts.topic], fromBeginning: true });
    if (pending.size === 0) caughtUp();
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, heartbeat, isRunning, isStale }) => {
        if (done || !isRunning() || isStale()) return;
        const range = ranges.get(batch.partition);
        const letters: DeadLetterRecord[] = [];
        for (const message of batch.messages) {
          const offset = BigInt(message.offset);
          if (range && offset < range.start) continue;
          if (!opts.follow && (!range || offset >= range.high)) break;
          letters.push(readDeadLetter(batch.topic, batch.partition, message));
        }
        if (letters.length === 0) return;
        const commit = (nextOffset: string): Promise<void> =>
          consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: nextOffset }]);
        try {
          if (await opts.onBatch(letters, { partition: batch.partition, commit })) end('stopped');
        } catch (err) {
          // Ends the scan instead of letting kafkajs restart the consumer and retry forever.
          end(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        await heartbeat();
      },
    });
    return { backlog, ended: await ended };
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    await consumer.disconnect();
  }
}

/** A consumer group's committed offsets on one topic, by partition; partitions it never committed are left out. */
export async function committedOffsets(kafka: Kafka, groupId: string, topic: string): Promise<Map<number, string>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return new Map((entry?.partitions ?? []).filter((p) => BigInt(p.offset) >= 0n).map((p) => [p.partition, p.offset]));
  } finally {
    await admin.disconnect();
  }
}
