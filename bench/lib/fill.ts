/**
 * Pre-fills a topic with realistic AuditEvents in the Confluent wire format (the quality
 * generator's traffic, encoded with the project's own schema and registry), for benchmarks that
 * read them back. Idempotent: a topic that already holds exactly what was asked is reused.
 */
import { createHash } from 'node:crypto';
import type { TopicsConfig } from '../../src/config/schema.ts';
import { topicsSchema } from '../../src/config/schema.ts';
import { auditEventSchema } from '../../src/contracts/schemas.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { EventCodec } from '../../src/runtime/codec.ts';
import { registerContract, type SchemaRegistry } from '../../src/runtime/registry.ts';
import { planSends } from '../../src/transport/batching.ts';
import { partitionForKey } from '../../src/transport/partitioner.ts';
import type { OutRecord, Transport } from '../../src/transport/types.ts';
import { buildPopulation, DAY_MS, DEFAULT_START_MS, TrafficGenerator } from '../quality/generator.ts';

export interface FillOptions {
  transport: Transport;
  registry: SchemaRegistry;
  topic: string;
  /** Records to write. */
  events: number;
  /** Event time spans this many days from `startMs`. */
  days: number;
  /**
   * First event time; DEFAULT_START_MS (a Monday in January 2026) when left out. A live detector
   * dead-letters events older than detector.maxEventAgeMs by the wall clock: benchmarks that run
   * the detector pass a recent start (`recentStartMs`).
   */
  startMs?: number;
  principals: number;
  partitions: number;
  seed?: number;
  /** Progress, once per produced chunk. */
  onProgress?: (written: number) => void;
}

export interface FillResult {
  topic: string;
  events: number;
  /** Sum of value bytes written (or found). */
  valueBytes: number;
  reused: boolean;
  seconds: number;
}

/**
 * The latest Monday 00:00 UTC at least `days` + 1 days before `nowMs`: a start for `days` of
 * traffic that ends a day before now (well inside detector.maxEventAgeMs) and keeps the
 * generator's weekdays in line. It changes once a week, so a topic named after it is reused.
 */
export function recentStartMs(days: number, nowMs = Date.now()): number {
  const latest = Math.floor((nowMs - (days + 1) * DAY_MS) / DAY_MS) * DAY_MS;
  // 1970-01-01 was a Thursday: days since a Monday.
  const sinceMonday = (Math.floor(latest / DAY_MS) + 3) % 7;
  return latest - sinceMonday * DAY_MS;
}

/** One principal's events in one partition, as the publisher keys them. */
const keyOf = (e: AuditEvent) => `${e.accountId}|${e.principal}`;

/** The sessions' user agents and request fields CloudTrail carries, so a record is the size of a real one (~450 B). */
function enrich(e: AuditEvent, i: number): AuditEvent {
  const digest = createHash('sha1').update(e.eventId).digest('hex');
  return {
    ...e,
    attributes: {
      eventType: 'AwsApiCall',
      requestID: `${digest.slice(0, 8)}-${digest.slice(8, 12)}-${digest.slice(12, 16)}-${digest.slice(16, 20)}-${digest.slice(20, 32)}`,
      sessionName: `session-${i % 97}`,
      recipientAccountId: e.accountId,
      requestParameters: JSON.stringify({
        resource: `arn:aws:${e.service.split('.')[0]}:${e.region}:${e.accountId}:res/${digest.slice(0, 16)}`,
        maxResults: 50,
      }),
    },
  };
}

/**
 * Writes `events` AuditEvents over `days` days for `principals` principals into `topic`
 * (created with `partitions` partitions), keyed by account|principal. The generator's events
 * are taken in time order until there are enough, then their times are stretched onto the
 * `days` asked for, order kept.
 */
export async function fillTopic(o: FillOptions): Promise<FillResult> {
  const started = Date.now();
  const admin = await o.transport.admin();
  try {
    if ((await admin.listTopics()).includes(o.topic)) {
      const ranges = await admin.topicOffsets(o.topic);
      const held = ranges.reduce((n, r) => n + Number(r.high - r.low), 0);
      if (ranges.length === o.partitions && held === o.events) {
        return { topic: o.topic, events: held, valueBytes: Number.NaN, reused: true, seconds: (Date.now() - started) / 1000 };
      }
      await admin.deleteTopics([o.topic]);
      // Deletion is asynchronous on the broker: wait until the name is free.
      while ((await admin.listTopics()).includes(o.topic)) await new Promise((r) => setTimeout(r, 200));
    }
    // Kept whatever the broker's retention (the local stack deletes past a day or 256 MiB a
    // partition): records are stamped with their event time, days old.
    await admin.createTopics([{ topic: o.topic, partitions: o.partitions, configs: { 'retention.ms': '-1', 'retention.bytes': '-1' } }]);
  } finally {
    await admin.close();
  }

  const events: AuditEvent[] = [];
  for (let round = 0; events.length < o.events; round++) {
    const population = buildPopulation({ seed: (o.seed ?? 42) + round, principals: o.principals, days: o.days });
    for (const e of new TrafficGenerator({ population }).events()) {
      events.push(e);
      if (events.length >= o.events) break;
    }
  }
  const first = events[0]?.eventTimeMs ?? DEFAULT_START_MS;
  const last = events[events.length - 1]?.eventTimeMs ?? first;
  const stretch = last > first ? (o.days * DAY_MS - 1) / (last - first) : 0;
  const startMs = o.startMs ?? DEFAULT_START_MS;

  const topics: TopicsConfig = topicsSchema.parse({ events: o.topic });
  const schemaId = await registerContract(o.registry, auditEventSchema, topics.events);
  const codec = new EventCodec(o.registry);
  const producer = o.transport.producer();
  await producer.connect();
  let valueBytes = 0;
  try {
    const CHUNK = 10_000;
    for (let at = 0; at < events.length; at += CHUNK) {
      const chunk: Array<OutRecord & { partition: number }> = [];
      for (let i = at; i < Math.min(at + CHUNK, events.length); i++) {
        const raw = events[i] as AuditEvent;
        const e = enrich({ ...raw, eventTimeMs: startMs + Math.round((raw.eventTimeMs - first) * stretch) }, i);
        const value = await codec.encodeEvent(schemaId, e);
        valueBytes += value.length;
        const key = keyOf(e);
        chunk.push({ topic: o.topic, partition: partitionForKey(key, o.partitions), key, value, timestampMs: e.eventTimeMs });
      }
      // Below the broker's default 1 MiB record batch per partition, whatever the key skew.
      for (const group of planSends(chunk, 900_000, (r) => r.partition).groups) await producer.send(group);
      o.onProgress?.(Math.min(at + CHUNK, events.length));
    }
  } finally {
    await producer.close();
  }
  return { topic: o.topic, events: events.length, valueBytes, reused: false, seconds: (Date.now() - started) / 1000 };
}
