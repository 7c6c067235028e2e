import { randomUUID } from 'node:crypto';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import type { InRecord, Transport } from './types.ts';

/**
 * Reading a topic from its beginning up to the end it has when the read starts: what a command
 * that looks something up (`status`, `config history`, `feedback`) and a detector following its
 * config topic need. A throwaway consumer group that commits nothing does the reading, so it works
 * with either client behind the seam and leaves no offsets behind.
 */

export interface ReadToEndOptions {
  topic: string;
  /** Give up after this long, ms: a TW_KAFKA error (canRetry) naming the partitions left. */
  timeoutMs: number;
  /** Prefix of the throwaway group's id, e.g. `trailwatch-status` (a random suffix is added). */
  groupPrefix: string;
  /** Only these partitions (the others are paused as soon as they are assigned); default all. */
  partitions?: readonly number[];
  /** Every record up to the end, in offset order per partition. */
  onRecord(record: InRecord, partition: number): void | Promise<void>;
  /** Added to the timeout's message: what the caller can do about it, e.g. "try a larger --timeout-ms". */
  timeoutHint?: string;
}

export interface ReadToEndResult {
  /** False when the topic does not exist (nothing was read). */
  exists: boolean;
  /** Records handed to onRecord. */
  records: number;
}

/** Reads `topic` up to its end as of now; a missing topic is `{ exists: false }`, not an error. */
export async function readToEnd(transport: Transport, opts: ReadToEndOptions): Promise<ReadToEndResult> {
  const wanted = opts.partitions ? new Set(opts.partitions) : null;
  const ends = new Map<number, bigint>();
  const admin = await transport.admin();
  try {
    if (!(await admin.listTopics()).includes(opts.topic)) return { exists: false, records: 0 };
    for (const r of await admin.topicOffsets(opts.topic)) {
      if (r.high > r.low && (wanted === null || wanted.has(r.partition))) ends.set(r.partition, r.high);
    }
  } finally {
    await admin.close().catch(() => undefined);
  }
  let records = 0;
  if (ends.size === 0) return { exists: true, records };

  const consumer = transport.groupConsumer({
    groupId: `${opts.groupPrefix}-${randomUUID()}`,
    topics: [opts.topic],
    fromBeginning: true,
    maxWaitMs: 200,
  });
  let finish: (err?: unknown) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    finish = (err?: unknown) => (err === undefined ? resolve() : reject(err));
  });
  // Awaited only once the group is joined: a crash before that (or after the timeout) must not
  // become an unhandled rejection, which would end the process of a detector following its config.
  done.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), opts.timeoutMs);
  });
  let failed = false;
  const others = (tps: Array<{ topic: string; partition: number }>) => tps.filter((tp) => !ends.has(tp.partition));
  try {
    const joined = consumer.run({
      onAssigned: (tps) => {
        const idle = others(tps);
        if (idle.length > 0) consumer.pause(idle);
      },
      onCrash: (err) => finish(err),
      onBatch: async (batch) => {
        const end = ends.get(batch.partition);
        if (end === undefined || failed) return;
        try {
          for (const r of batch.records) {
            if (r.offset >= end) break;
            records++;
            await opts.onRecord(r, batch.partition);
          }
        } catch (err) {
          // The consumer would read on past a failed handler: the caller's error ends the read.
          failed = true;
          finish(err);
          return;
        }
        if (batch.nextOffset >= end) {
          ends.delete(batch.partition);
          consumer.pause([{ topic: batch.topic, partition: batch.partition }]);
          if (ends.size === 0) finish();
        }
      },
    });
    const read = joined.then(() => done).then(() => 'read' as const);
    // A failure after the timeout won the race has no one left to hear it.
    read.catch(() => undefined);
    if ((await Promise.race([read, timedOut])) === 'timeout') {
      throw new TrailwatchError(
        ErrorCodes.KAFKA,
        `could not read topic "${opts.topic}" to its end within ${opts.timeoutMs} ms (partitions left: ${[...ends.keys()].join(', ')})` +
          (opts.timeoutHint ? `; ${opts.timeoutHint}` : ''),
        { fault: 'external', canRetry: true, details: { topic: opts.topic, partitionsLeft: [...ends.keys()] } },
      );
    }
  } finally {
    clearTimeout(timer);
    await consumer.close().catch(() => undefined);
  }
  return { exists: true, records };
}
