import type { Admin, Consumer, EachBatchPayload, Kafka, KafkaMessage, Message, Producer } from 'kafkajs';
import { Partitioners } from 'kafkajs';
import type { Config } from '../config/schema.ts';
import type { AuditEvent, Insight } from '../contracts/types.ts';
import { type EngineMetrics, emptyEngineMetrics } from '../detect/engine.ts';
import { type ActionRecord, ActionStage, PrincipalStage, type StageOutput, type WatermarkMarker } from '../detect/topology.ts';
import { BadRecordError, ErrorCodes, errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { ChangelogWriter, restorePartition } from './changelog.ts';
import { EventCodec } from './codec.ts';
import { type DeadLetter, deadLetterMessages } from './dead-letter.ts';
import { registerContracts, type SchemaRegistry } from './registry.ts';
import { type DetectorTopics, ensureDetectorTopics } from './topics.ts';

export interface DetectorMetrics {
  recordsConsumed: number;
  deadLetters: Record<string, number>;
  insightsEmitted: number;
  batches: number;
  transactionsCommitted: number;
  transactionsAborted: number;
  partitionsRestored: number;
  /** Time the last restore took, per task (`topic:partition`). */
  restoreMs: Record<string, number>;
}

export interface DetectorRuntimeOptions {
  config: Config;
  kafka: Kafka;
  registry: SchemaRegistry;
  logger: Logger;
  /** Called for each Insight once its transaction has committed. */
  onInsight?: (insight: Insight) => void;
  /** Wall clock, replaceable in tests. */
  now?: () => number;
  /**
   * The detector cannot go on (the consumer crashed for good, or work stalled past
   * detector.stallTimeoutMs). Default: log and exit with status 1 for a supervisor to restart.
   */
  onFatal?: (err: Error) => void;
}

const STARTUP_RETRY_MS = 120_000;

/** Whether a Kafka client error is worth another try (broker restarting, leader moving, coordinator loading). */
function retriable(err: unknown): boolean {
  const e = err as { retriable?: boolean; name?: string };
  return e?.retriable === true || /Connection|NotLeader|Coordinator|Leader|Timeout/i.test(e?.name ?? '');
}

const IDLE_TICK_MS = 1_000;
const RETRY_BACKOFF_MS = 1_000;
const KIND_HEADER = 'tw.kind';

/**
 * One stage partition owned by this member: its stage, the transactional producer that fences
 * any previous owner, and its changelog writer. Everything a batch produces (Insights, partials,
 * watermark markers, dead letters, changelog records) and the input offset commit together.
 */
interface Task {
  id: string;
  topic: string;
  partition: number;
  producer: Producer;
  writer: ChangelogWriter;
  /** Next input offset to process: records below it are already in the committed state. */
  nextOffset: bigint;
  principal?: PrincipalStage;
  action?: ActionStage;
  /** Wall time of the last record, and whether the partition was caught up then. */
  lastRecordWallMs: number;
  caughtUp: boolean;
  /** The last marker sent downstream: an idle partition only speaks when it changes. */
  lastMarker: string;
}

/**
 * The live detector: one consumer group reading the events topic (first stage, per principal)
 * and the action-keyed repartition topic (second stage, per action), each partition a task with
 * its state in a changelog topic and its output committed with Kafka transactions, so a crash,
 * a rebalance or a broker restart neither loses nor repeats an Insight.
 */
export class DetectorRuntime {
  readonly metrics: DetectorMetrics = {
    recordsConsumed: 0,
    deadLetters: {},
    insightsEmitted: 0,
    batches: 0,
    transactionsCommitted: 0,
    transactionsAborted: 0,
    partitionsRestored: 0,
    restoreMs: {},
  };
  private readonly opts: DetectorRuntimeOptions;
  private readonly codec: EventCodec;
  private readonly consumer: Consumer;
  private readonly admin: Admin;
  private readonly log: Logger;
  private readonly now: () => number;
  private insightSchemaId = -1;
  private topics: DetectorTopics | null = null;
  private readonly tasks = new Map<string, Task>();
  /** Assigned partitions of the events topic, with the wall time they were assigned. */
  private readonly assigned = new Map<number, number>();
  /** Serializes batches, idle ticks and rebalances: stages are single-threaded by design. */
  private chain: Promise<void> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  /** Wall time the serialized work in hand began; null when idle. */
  private busySince: number | null = null;
  private stopping = false;

  constructor(opts: DetectorRuntimeOptions) {
    this.opts = opts;
    this.codec = new EventCodec(opts.registry, { maxRecordBytes: opts.config.detector.maxRecordBytes });
    this.log = opts.logger.child({ component: 'detector' });
    this.now = opts.now ?? Date.now;
    const d = opts.config.detector;
    this.consumer = opts.kafka.consumer({
      groupId: d.groupId,
      readUncommitted: false,
      maxBytesPerPartition: d.fetchMaxBytes,
      sessionTimeout: d.sessionTimeoutMs,
      heartbeatInterval: Math.max(500, Math.floor(d.sessionTimeoutMs / 10)),
      rebalanceTimeout: Math.max(10_000, 2 * d.sessionTimeoutMs),
    });
    this.admin = opts.kafka.admin();
  }

  /** Sum of every owned stage engine's counters. */
  engineMetrics(): EngineMetrics {
    const sum = emptyEngineMetrics();
    for (const t of this.tasks.values()) {
      const m = (t.principal ?? t.action)?.engine.metrics;
      if (!m) continue;
      for (const k of Object.keys(sum) as Array<keyof EngineMetrics>) sum[k] += m[k];
    }
    return sum;
  }

  async start(): Promise<void> {
    const { config } = this.opts;
    // A broker or registry that is restarting is waited for, not a reason to give up.
    const deadline = this.now() + STARTUP_RETRY_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.admin.connect();
        this.topics = await ensureDetectorTopics(this.admin, config);
        this.insightSchemaId = (await registerContracts(this.opts.registry, config.topics)).insight;
        break;
      } catch (err) {
        const canRetry = retriable(err) || (err as { canRetry?: boolean }).canRetry === true;
        if (!canRetry || this.now() > deadline) throw err;
        this.log.warn({ err: errorMessage(err), attempt }, 'Kafka or the registry is not ready: retrying');
        await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** attempt)));
      }
    }
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => {
      if (payload.restart || this.stopping) return;
      this.fatal(new Error(`the consumer crashed and will not restart: ${errorMessage(payload.error)}`));
    });
    this.watchdog = setInterval(() => {
      const { stallTimeoutMs } = this.opts.config.detector;
      if (this.busySince !== null && this.now() - this.busySince > stallTimeoutMs && !this.stopping) {
        this.fatal(new Error(`no progress for ${stallTimeoutMs} ms (detector.stallTimeoutMs): restarting is safe, state is in Kafka`));
      }
    }, 1_000);
    this.watchdog.unref();
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: [config.topics.events, this.topics.actions], fromBeginning: true });
    this.consumer.on(this.consumer.events.GROUP_JOIN, ({ payload }) => {
      const assignment = payload.memberAssignment;
      void this.serialized(() => this.rebalanced(assignment)).catch((err: unknown) => this.log.error({ err }, 'rebalance handling failed'));
    });
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.serialized(() => this.handleBatch(payload)),
    });
    this.idleTimer = setInterval(() => {
      void this.serialized(() => this.advanceIdle()).catch((err: unknown) => this.log.error({ err }, 'idle watermark advance failed'));
    }, IDLE_TICK_MS);
    this.idleTimer.unref();
    this.log.info(
      {
        eventsTopic: config.topics.events,
        actionsTopic: this.topics.actions,
        alertsTopic: config.topics.alerts,
        groupId: config.detector.groupId,
        partitions: this.topics.eventPartitions,
        actionPartitions: this.topics.actionPartitions,
      },
      'detector running',
    );
  }

  /** Finishes the batch in hand, leaves the group, closes every task's producer. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    if (this.watchdog) clearInterval(this.watchdog);
    await this.consumer.disconnect();
    await this.chain.catch(() => undefined);
    for (const task of [...this.tasks.values()]) await this.closeTask(task);
    await this.admin.disconnect().catch(() => undefined);
    this.log.info({ ...this.metrics, engine: this.engineMetrics() }, 'detector stopped');
  }

  private fatal(err: Error): void {
    this.log.fatal({ err: err.message }, 'detector cannot go on');
    if (this.opts.onFatal) this.opts.onFatal(err);
    else process.exit(1);
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(async () => {
      this.busySince = this.now();
      try {
        return await fn();
      } finally {
        this.busySince = null;
      }
    });
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async rebalanced(assignment: Record<string, number[]>): Promise<void> {
    const topics = this.topics as DetectorTopics;
    const owned = new Set(Object.entries(assignment).flatMap(([t, ps]) => ps.map((p) => `${t}:${p}`)));
    for (const task of [...this.tasks.values()]) if (!owned.has(task.id)) await this.closeTask(task);
    const events = new Set(assignment[this.opts.config.topics.events] ?? []);
    for (const p of [...this.assigned.keys()]) if (!events.has(p)) this.assigned.delete(p);
    const wall = this.now();
    for (const p of events) if (!this.assigned.has(p)) this.assigned.set(p, wall);
    this.log.info({ assignment, actionsTopic: topics.actions }, 'partitions assigned');
  }

  private async closeTask(task: Task): Promise<void> {
    this.tasks.delete(task.id);
    await task.producer.disconnect().catch(() => undefined);
  }

  /** The task for a partition, restored from its changelog the first time this member needs it. */
  private async task(topic: string, partition: number, heartbeat: () => Promise<void>): Promise<Task> {
    const id = `${topic}:${partition}`;
    const known = this.tasks.get(id);
    if (known) return known;
    const topics = this.topics as DetectorTopics;
    const { config } = this.opts;
    const principalStage = topic === config.topics.events;
    const changelog = principalStage ? topics.principalChangelog : topics.actionChangelog;
    const producer = this.opts.kafka.producer({
      transactionalId: `${config.detector.groupId}.${topic}.${partition}`,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: 60_000,
      createPartitioner: Partitioners.DefaultPartitioner,
      // Unlimited, as exactly-once wants; a broker that never answers trips detector.stallTimeoutMs.
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
    await producer.connect();
    try {
      const restored = await restorePartition({
        kafka: this.opts.kafka,
        producer,
        topic: changelog,
        partition,
        groupId: config.detector.groupId,
        heartbeat,
      });
      const options = { trackChanges: true };
      const task: Task = {
        id,
        topic,
        partition,
        producer,
        writer: new ChangelogWriter(changelog, partition, config.detector.bucketMs, restored.seenKeys),
        nextOffset: await this.committedOffset(topic, partition),
        lastRecordWallMs: this.now(),
        caughtUp: false,
        lastMarker: '',
      };
      if (principalStage) task.principal = PrincipalStage.fromCheckpoint(config.detector, partition, restored.checkpoint, options);
      else task.action = ActionStage.fromCheckpoint(config.detector, partition, topics.eventPartitions, restored.checkpoint, options);
      // The restored engine is the committed state: nothing of it is a change to write again.
      (task.principal ?? task.action)?.engine.drainChanges();
      this.tasks.set(id, task);
      this.metrics.partitionsRestored++;
      this.metrics.restoreMs[id] = restored.ms;
      this.log.info(
        {
          task: id,
          changelog,
          records: restored.records,
          bytes: restored.bytes,
          keys: (task.principal ?? task.action)?.engine.activeKeys,
          restoreMs: restored.ms,
          nextOffset: String(task.nextOffset),
        },
        'partition state restored',
      );
      return task;
    } catch (err) {
      await producer.disconnect().catch(() => undefined);
      throw err;
    }
  }

  private async committedOffset(topic: string, partition: number): Promise<bigint> {
    const [entry] = await this.admin.fetchOffsets({ groupId: this.opts.config.detector.groupId, topics: [topic] });
    const offset = entry?.partitions.find((p) => p.partition === partition)?.offset ?? '-1';
    return BigInt(offset);
  }

  private async handleBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
    if (!isRunning() || isStale() || batch.messages.length === 0) return;
    let task: Task | undefined;
    try {
      task = await this.task(batch.topic, batch.partition, heartbeat);
      const fresh = batch.messages.filter((m) => BigInt(m.offset) >= (task as Task).nextOffset);
      const last = batch.messages[batch.messages.length - 1] as KafkaMessage;
      if (fresh.length > 0) {
        if (task.principal) await this.principalBatch(task, batch.topic, fresh, last.offset);
        else await this.actionBatch(task, fresh, last.offset);
      }
      task.lastRecordWallMs = this.now();
      task.caughtUp = batch.offsetLag() === '0';
      this.metrics.recordsConsumed += fresh.length;
      this.metrics.batches++;
      resolveOffset(last.offset);
      await heartbeat();
    } catch (err) {
      await this.failed(batch.topic, batch.partition, task, err);
    }
  }

  /**
   * A batch that could not commit leaves the stage ahead of its committed state: drop the task
   * (it is restored from the changelog next time) and read again from the committed offset.
   */
  private async failed(topic: string, partition: number, task: Task | undefined, err: unknown): Promise<void> {
    this.metrics.transactionsAborted++;
    const fenced = /fenced|epoch|INVALID_PRODUCER_EPOCH|PRODUCER_FENCED/i.test(
      String((err as { type?: string }).type ?? errorMessage(err)),
    );
    this.log.warn(
      { err: errorMessage(err), topic, partition, fenced },
      fenced ? 'another member owns this partition now: dropping it' : 'batch not committed: restoring the partition and retrying',
    );
    if (task) await this.closeTask(task);
    if (!this.stopping && !fenced) {
      const offset = await this.committedOffset(topic, partition).catch(() => -1n);
      if (offset >= 0n) this.consumer.seek({ topic, partition, offset: String(offset) });
      await new Promise((r) => setTimeout(r, RETRY_BACKOFF_MS));
    }
  }

  private async principalBatch(task: Task, topic: string, messages: KafkaMessage[], lastOffset: string): Promise<void> {
    const stage = task.principal as PrincipalStage;
    const { maxFutureSkewMs, maxEventAgeMs } = this.opts.config.detector;
    const events: AuditEvent[] = [];
    const deadLetters: DeadLetter[] = [];
    const nowMs = this.now();
    for (const message of messages) {
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
        deadLetters.push({ topic, partition: task.partition, message, error: err });
      }
    }
    const out = stage.process(events);
    await this.commit(
      task,
      out.insights,
      [...this.downstream(task, out, true), ...deadLetterMessages(this.opts.config.topics.deadLetter, deadLetters)],
      lastOffset,
    );
    for (const d of deadLetters) {
      this.metrics.deadLetters[d.error.code] = (this.metrics.deadLetters[d.error.code] ?? 0) + 1;
      this.log.warn({ code: d.error.code, topic, partition: d.partition, offset: d.message.offset }, d.error.message);
    }
  }

  private async actionBatch(task: Task, messages: KafkaMessage[], lastOffset: string): Promise<void> {
    const stage = task.action as ActionStage;
    const records: ActionRecord[] = [];
    for (const m of messages) {
      if (!m.value) continue;
      records.push(JSON.parse(m.value.toString()) as ActionRecord);
    }
    await this.commit(task, stage.ingest(records), [], lastOffset);
  }

  /** Partials to their action partition (by key), the watermark marker to every action partition. */
  private downstream(task: Task, out: StageOutput, force: boolean): Message[] {
    const topics = this.topics as DetectorTopics;
    if (!this.opts.config.detector.scopes.action) return [];
    const messages: Message[] = out.partials.map((partial) => ({
      key: partial.key.id,
      value: JSON.stringify({ kind: 'partial', partial } satisfies ActionRecord),
      headers: { [KIND_HEADER]: 'partial' },
    }));
    const marker = JSON.stringify({ kind: 'marker', marker: out.marker } satisfies ActionRecord);
    // Downstream time moves in buckets: an idle partition whose clock ticks on says so once a bucket.
    const { bucketMs } = this.opts.config.detector;
    const wm = out.marker.watermarkMs;
    const signature = JSON.stringify({
      ...out.marker,
      watermarkMs: wm === null ? null : Math.floor(wm / bucketMs),
      accountStarts: [],
    } satisfies WatermarkMarker);
    if (force || messages.length > 0 || out.marker.accountStarts.length > 0 || signature !== task.lastMarker) {
      task.lastMarker = signature;
      for (let q = 0; q < topics.actionPartitions; q++) {
        messages.push({ key: null, value: marker, partition: q, headers: { [KIND_HEADER]: 'watermark' } });
      }
    }
    return messages.map((m) => ({ ...m, topic: topics.actions }) as Message & { topic: string });
  }

  /** One transaction: Insights, other output, changelog and (with an offset) the input position. */
  private async commit(task: Task, insights: Insight[], output: Message[], lastOffset: string | null): Promise<void> {
    const { config } = this.opts;
    const stage = task.principal ?? task.action;
    if (!stage) return;
    const changes = stage.engine.drainChanges();
    const upstream = task.action?.drainUpstream() ?? null;
    const byTopic = new Map<string, Message[]>();
    const add = (topic: string, m: Message) => {
      let list = byTopic.get(topic);
      if (!list) {
        list = [];
        byTopic.set(topic, list);
      }
      list.push(m);
    };
    for (const i of insights) {
      add(config.topics.alerts, {
        key: i.sharedEventID,
        value: await this.codec.encodeInsight(this.insightSchemaId, i),
        headers: { 'tw.insight.state': i.insightDetails.state },
        timestamp: String(Date.parse(i.eventTime)),
      });
    }
    for (const m of output) {
      const { topic, ...message } = m as Message & { topic: string };
      add(topic, message);
    }
    for (const m of task.writer.messages(changes, upstream)) add(task.writer.topic, m);

    const txn = await task.producer.transaction();
    try {
      await txn.sendBatch({ topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
      if (lastOffset !== null) {
        await txn.sendOffsets({
          consumerGroupId: config.detector.groupId,
          topics: [{ topic: task.topic, partitions: [{ partition: task.partition, offset: String(BigInt(lastOffset) + 1n) }] }],
        });
      }
      await txn.commit();
    } catch (err) {
      await txn.abort().catch(() => undefined);
      throw err;
    }
    this.metrics.transactionsCommitted++;
    if (lastOffset !== null) task.nextOffset = BigInt(lastOffset) + 1n;
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

  /**
   * An events partition caught up and silent for idleAdvanceMs moves its event time on with the
   * wall clock and tells the action stage it is idle, so Ends are not held back. One that never
   * delivered anything is idle once its committed offset is its end.
   */
  private async advanceIdle(): Promise<void> {
    if (this.stopping || !this.topics) return;
    const { idleAdvanceMs, allowedLatenessMs } = this.opts.config.detector;
    const wall = this.now();
    for (const [p, assignedAt] of this.assigned) {
      const id = `${this.opts.config.topics.events}:${p}`;
      let task = this.tasks.get(id);
      if (task && (!task.caughtUp || wall - task.lastRecordWallMs < idleAdvanceMs)) continue;
      if (!task) {
        if (wall - assignedAt < idleAdvanceMs || !(await this.atEnd(p))) continue;
        try {
          task = await this.task(this.opts.config.topics.events, p, async () => undefined);
        } catch (err) {
          this.log.warn({ err: errorMessage(err), partition: p }, 'could not open an idle partition');
          continue;
        }
        task.caughtUp = true;
        task.lastRecordWallMs = assignedAt;
      }
      const stage = task.principal as PrincipalStage;
      const latest = stage.engine.latestEventTimeMs;
      const target = Number.isFinite(latest) ? latest + (wall - task.lastRecordWallMs) - allowedLatenessMs : Number.NEGATIVE_INFINITY;
      const out = stage.advanceWatermark(target, true);
      const output = this.downstream(task, out, false);
      if (out.insights.length === 0 && output.length === 0) continue;
      try {
        await this.commit(task, out.insights, output, null);
      } catch (err) {
        await this.failed(task.topic, p, task, err);
      }
    }
  }

  /** Whether the group's committed offset of an events partition is its end (nothing to read). */
  private async atEnd(partition: number): Promise<boolean> {
    const topic = this.opts.config.topics.events;
    const [offsets, committed] = await Promise.all([this.admin.fetchTopicOffsets(topic), this.committedOffset(topic, partition)]);
    const o = offsets.find((x) => x.partition === partition);
    if (!o) return false;
    const end = BigInt(o.high);
    return end === BigInt(o.low) || committed >= end;
  }
}
