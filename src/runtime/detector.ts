import type { Consumer, EachBatchPayload, Kafka, Producer } from 'kafkajs';
import type { Config } from '../config/schema.ts';
import type { AuditEvent, Insight } from '../contracts/types.ts';
import { DetectionEngine } from '../detect/engine.ts';
import { BadRecordError, ErrorCodes } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { EventCodec } from './codec.ts';
import { type DeadLetter, sendDeadLetters } from './dead-letter.ts';
import { idempotentProducer } from './kafka.ts';
import { registerContracts, type SchemaRegistry } from './registry.ts';
import { ensureTopics } from './topics.ts';

export interface DetectorMetrics {
  recordsConsumed: number;
  deadLetters: Record<string, number>;
  insightsEmitted: number;
  batches: number;
}

export interface DetectorRuntimeOptions {
  config: Config;
  kafka: Kafka;
  registry: SchemaRegistry;
  logger: Logger;
  /** Called for each Insight after it is on the alerts topic. */
  onInsight?: (insight: Insight) => void;
  /** Wall clock, replaceable in tests. */
  now?: () => number;
}

/**
 * The live detector: a consumer group on the events topic feeding the pure DetectionEngine,
 * Insights produced to the alerts topic, undecodable records to the dead-letter topic.
 * Offsets are committed only after the Insights and dead letters of a batch are acknowledged.
 */
export class DetectorRuntime {
  readonly engine: DetectionEngine;
  readonly metrics: DetectorMetrics = { recordsConsumed: 0, deadLetters: {}, insightsEmitted: 0, batches: 0 };
  private readonly opts: DetectorRuntimeOptions;
  private readonly codec: EventCodec;
  private readonly consumer: Consumer;
  private readonly producer: Producer;
  private readonly log: Logger;
  private readonly now: () => number;
  private insightSchemaId = -1;
  /** Serializes batch processing and idle watermark advances: the engine is single-threaded by design. */
  private chain: Promise<void> = Promise.resolve();
  private lastEventWallMs = 0;
  /** Per input partition: the latest event time read and when (wall clock). */
  private readonly partitionClocks = new Map<string, { maxEventMs: number; seenWallMs: number }>();
  private idleTimer: NodeJS.Timeout | undefined;
  private stopping = false;

  constructor(opts: DetectorRuntimeOptions) {
    this.opts = opts;
    this.engine = new DetectionEngine(opts.config.detector);
    this.codec = new EventCodec(opts.registry);
    this.log = opts.logger.child({ component: 'detector' });
    this.now = opts.now ?? Date.now;
    this.consumer = opts.kafka.consumer({ groupId: opts.config.detector.groupId, readUncommitted: false });
    this.producer = idempotentProducer(opts.kafka);
  }

  async start(): Promise<void> {
    const { config } = this.opts;
    const created = await ensureTopics(this.opts.kafka, config.topics);
    if (created.length > 0) this.log.info({ topics: created }, 'created topics');
    this.insightSchemaId = (await registerContracts(this.opts.registry, config.topics)).insight;
    await this.producer.connect();
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: [config.topics.events], fromBeginning: true });
    // Every assigned partition holds the watermark back until it has delivered (or sat idle for
    // idleAdvanceMs); one that moved to another member no longer does.
    this.consumer.on(this.consumer.events.GROUP_JOIN, ({ payload }) => {
      const assigned = new Set(Object.entries(payload.memberAssignment).flatMap(([t, ps]) => ps.map((p) => `${t}:${p}`)));
      for (const key of this.partitionClocks.keys()) if (!assigned.has(key)) this.partitionClocks.delete(key);
      const wall = this.now();
      for (const key of assigned)
        if (!this.partitionClocks.has(key)) this.partitionClocks.set(key, { maxEventMs: Number.NEGATIVE_INFINITY, seenWallMs: wall });
    });
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.serialized(() => this.handleBatch(payload)),
    });
    this.idleTimer = setInterval(() => {
      void this.serialized(() => this.advanceIdle()).catch((err: unknown) => this.log.error({ err }, 'idle watermark advance failed'));
    }, 1_000);
    this.idleTimer.unref();
    this.log.info(
      {
        eventsTopic: config.topics.events,
        alertsTopic: config.topics.alerts,
        groupId: config.detector.groupId,
        bucketMs: config.detector.bucketMs,
      },
      'detector running',
    );
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    await this.consumer.disconnect();
    await this.chain.catch(() => undefined);
    await this.producer.disconnect();
    this.log.info({ ...this.metrics, engine: this.engine.metrics }, 'detector stopped');
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async handleBatch({
    batch,
    resolveOffset,
    heartbeat,
    commitOffsetsIfNecessary,
    isRunning,
    isStale,
  }: EachBatchPayload): Promise<void> {
    if (!isRunning() || isStale()) return;
    const events: AuditEvent[] = [];
    const deadLetters: DeadLetter[] = [];
    const nowMs = this.now();
    const { maxFutureSkewMs, maxEventAgeMs } = this.opts.config.detector;
    for (const message of batch.messages) {
      try {
        const event = await this.codec.decodeEvent(message.value);
        if (event.eventTimeMs > nowMs + maxFutureSkewMs || event.eventTimeMs < nowMs - maxEventAgeMs) {
          throw new BadRecordError(
            ErrorCodes.TIMESTAMP_OUT_OF_BOUNDS,
            `event time ${new Date(event.eventTimeMs).toISOString()} is outside [now − ${maxEventAgeMs} ms, now + ${maxFutureSkewMs} ms]`,
          );
        }
        events.push(event);
      } catch (err) {
        // Only bad bytes are dead-lettered; a registry outage throws and the batch is retried.
        if (!(err instanceof BadRecordError)) throw err;
        deadLetters.push({ topic: batch.topic, partition: batch.partition, message, error: err });
      }
    }
    if (events.length > 0) {
      const wall = this.now();
      this.lastEventWallMs = wall;
      const key = `${batch.topic}:${batch.partition}`;
      const clock = this.partitionClocks.get(key) ?? { maxEventMs: Number.NEGATIVE_INFINITY, seenWallMs: wall };
      for (const e of events) if (e.eventTimeMs > clock.maxEventMs) clock.maxEventMs = e.eventTimeMs;
      clock.seenWallMs = wall;
      this.partitionClocks.set(key, clock);
    }
    const insights = this.engine.process(events, this.watermark());
    await this.emit(insights);
    if (deadLetters.length > 0) {
      await sendDeadLetters(this.producer, this.opts.config.topics.deadLetter, deadLetters);
      for (const d of deadLetters) {
        this.metrics.deadLetters[d.error.code] = (this.metrics.deadLetters[d.error.code] ?? 0) + 1;
        this.log.warn({ code: d.error.code, topic: d.topic, partition: d.partition, offset: d.message.offset }, d.error.message);
      }
    }
    this.metrics.recordsConsumed += batch.messages.length;
    this.metrics.batches++;
    const last = batch.messages[batch.messages.length - 1];
    if (last) resolveOffset(last.offset);
    await commitOffsetsIfNecessary();
    await heartbeat();
  }

  /**
   * The slowest active partition's latest event time minus the allowed lateness. A partition
   * silent for idleAdvanceMs stops holding the watermark back (it is idle, not slow).
   */
  private watermark(): number {
    const { idleAdvanceMs, allowedLatenessMs } = this.opts.config.detector;
    const wall = this.now();
    let slowest = Number.POSITIVE_INFINITY;
    let newest = Number.NEGATIVE_INFINITY;
    let active = 0;
    for (const c of this.partitionClocks.values()) {
      newest = Math.max(newest, c.maxEventMs);
      if (wall - c.seenWallMs < idleAdvanceMs) {
        active++;
        slowest = Math.min(slowest, c.maxEventMs);
      }
    }
    // An active partition that has delivered nothing yet keeps the watermark where it is (−∞).
    return (active > 0 ? slowest : newest) - allowedLatenessMs;
  }

  /** With no events for idleAdvanceMs, event time moves on with the wall clock. */
  private async advanceIdle(): Promise<void> {
    const { idleAdvanceMs, allowedLatenessMs } = this.opts.config.detector;
    const latest = this.engine.latestEventTimeMs;
    if (!Number.isFinite(latest) || this.lastEventWallMs === 0) return;
    const idleFor = this.now() - this.lastEventWallMs;
    if (idleFor < idleAdvanceMs) return;
    await this.emit(this.engine.advanceWatermark(latest + idleFor - allowedLatenessMs));
  }

  private async emit(insights: Insight[]): Promise<void> {
    if (insights.length === 0) return;
    const messages = await Promise.all(
      insights.map(async (i) => ({
        key: i.sharedEventID,
        value: await this.codec.encodeInsight(this.insightSchemaId, i),
        headers: { 'tw.insight.state': i.insightDetails.state },
        timestamp: String(Date.parse(i.eventTime)),
      })),
    );
    await this.producer.send({ topic: this.opts.config.topics.alerts, messages });
    for (const i of insights) {
      this.metrics.insightsEmitted++;
      this.log.info(
        {
          state: i.insightDetails.state,
          sharedEventID: i.sharedEventID,
          insightType: i.insightDetails.insightType,
          action: `${i.insightDetails.eventSource}:${i.insightDetails.eventName}`,
          principal: i.trailwatch.principal,
          eventTime: i.eventTime,
        },
        'insight',
      );
      this.opts.onInsight?.(i);
    }
  }
}
