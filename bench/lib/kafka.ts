/**
 * The benchmarks' own Kafka calls, through the transport seam: offsets to watch a detector's
 * progress from outside, the no-op consumer that is the ceiling of any detector throughput, and
 * clean-up of a run's topics.
 */
import type { KafkaConfig } from '../../src/config/schema.ts';
import { kafkaSchema } from '../../src/config/schema.ts';
import { createLogger } from '../../src/logger.ts';
import { createTransport } from '../../src/transport/index.ts';
import type { Admin, ClientName, Transport } from '../../src/transport/types.ts';

export function benchTransport(brokers: string, client: ClientName, clientId: string): Transport {
  const kafka: KafkaConfig = kafkaSchema.parse({ brokers: brokers.split(','), clientId, client });
  return createTransport(kafka, createLogger({ level: 'warn' }));
}

/** Per partition: the end offset of `topic`, and how far `groupId` has committed (0 when it has not). */
export async function progress(admin: Admin, groupId: string, topic: string): Promise<{ end: bigint[]; committed: bigint[] }> {
  const [ranges, committed] = await Promise.all([admin.topicOffsets(topic), admin.committedOffsets(groupId, topic)]);
  const sorted = [...ranges].sort((a, b) => a.partition - b.partition);
  return { end: sorted.map((r) => r.high), committed: sorted.map((r) => committed.get(r.partition) ?? 0n) };
}

export const sum = (xs: readonly bigint[]): number => Number(xs.reduce((a, b) => a + b, 0n));

/** Deletes those of `topics` that exist; a failure is reported, not thrown (clean-up must not hide a result). */
export async function deleteTopics(admin: Admin, topics: string[]): Promise<void> {
  try {
    const existing = new Set(await admin.listTopics());
    const gone = topics.filter((t) => existing.has(t));
    if (gone.length > 0) await admin.deleteTopics(gone);
  } catch (err) {
    process.stderr.write(`could not delete ${topics.join(', ')}: ${(err as Error).message}\n`);
  }
}

export interface NoopRead {
  records: number;
  bytes: number;
  /** From the first batch to the last record (as bench/ceiling.ts times it: the group join left out). */
  seconds: number;
  /** From run() (group join included) to the last record. */
  secondsFromStart: number;
}

/**
 * bench/ceiling.ts's consumer: a fresh group, read_committed, from the beginning, records counted
 * in the batch callback, nothing decoded. Fails after `timeoutMs`.
 */
export async function readAllNoop(
  transport: Transport,
  o: { topic: string; records: number; groupId: string; fetchBytes: number; timeoutMs: number },
): Promise<NoopRead> {
  let records = 0;
  let bytes = 0;
  let done: (err?: Error) => void = () => undefined;
  const finished = new Promise<void>((resolve, reject) => {
    done = (err) => (err ? reject(err) : resolve());
  });
  const consumer = transport.groupConsumer({
    groupId: o.groupId,
    topics: [o.topic],
    fromBeginning: true,
    maxBytesPerPartition: o.fetchBytes,
    sessionTimeoutMs: 30_000,
  });
  const timer = setTimeout(
    () => done(new Error(`the no-op consumer read ${records} of ${o.records} records in ${o.timeoutMs} ms`)),
    o.timeoutMs,
  );
  const begun = process.hrtime.bigint();
  let started = 0n;
  let ended = 0n;
  try {
    await consumer.run({
      onBatch: async (batch) => {
        if (started === 0n) started = process.hrtime.bigint();
        records += batch.records.length;
        for (const r of batch.records) bytes += (r.value?.length ?? 0) + (r.key?.length ?? 0);
        if (records >= o.records && ended === 0n) {
          ended = process.hrtime.bigint();
          done();
        }
      },
      onCrash: (err) => done(err),
    });
    await finished;
  } finally {
    clearTimeout(timer);
    await consumer.close().catch(() => undefined);
  }
  return { records, bytes, seconds: Number(ended - started) / 1e9, secondsFromStart: Number(ended - begun) / 1e9 };
}
