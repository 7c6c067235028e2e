import { randomUUID } from 'node:crypto';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import type { Transport } from '../transport/types.ts';
import { decodeStatus, type MemberStatus } from './status.ts';

/**
 * Reads the status topic up to the end it has now and returns the latest record of each member
 * (a tombstone removes one), in a throwaway consumer group that commits nothing.
 */
export async function readMemberStatuses(transport: Transport, topic: string, timeoutMs: number): Promise<MemberStatus[]> {
  const admin = await transport.admin();
  const ends = new Map<number, bigint>();
  try {
    if (!(await admin.listTopics()).includes(topic)) {
      throw new TrailwatchError(
        ErrorCodes.USAGE,
        `no status topic "${topic}" on this cluster: no detector has run here yet (\`trailwatch run\` creates it), or it runs with another topics.status`,
        { fault: 'user' },
      );
    }
    for (const r of await admin.topicOffsets(topic)) if (r.high > r.low) ends.set(r.partition, r.high);
  } finally {
    await admin.close().catch(() => undefined);
  }
  const latest = new Map<string, MemberStatus | null>();
  if (ends.size === 0) return [];

  const consumer = transport.groupConsumer({
    groupId: `trailwatch-status-${randomUUID()}`,
    topics: [topic],
    fromBeginning: true,
    maxWaitMs: 200,
  });
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    const joined = consumer.run({
      onBatch: async (batch) => {
        const end = ends.get(batch.partition);
        for (const r of batch.records) {
          if (end !== undefined && r.offset >= end) break;
          const key = r.key?.toString();
          if (key !== undefined) latest.set(key, decodeStatus(r.value));
        }
        if (end !== undefined && batch.nextOffset >= end) {
          ends.delete(batch.partition);
          if (ends.size === 0) finish();
        }
      },
    });
    const read = joined.then(() => done).then(() => 'read' as const);
    if ((await Promise.race([read, timedOut])) === 'timeout') {
      throw new TrailwatchError(
        ErrorCodes.KAFKA,
        `could not read the status topic "${topic}" to its end within ${timeoutMs} ms (partitions left: ${[...ends.keys()].join(', ')}); try a larger --timeout-ms`,
        { fault: 'external', canRetry: true },
      );
    }
  } finally {
    clearTimeout(timer);
    await consumer.close().catch(() => undefined);
  }
  return [...latest.values()].filter((s): s is MemberStatus => s !== null);
}
