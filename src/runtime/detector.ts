import { type ConfigVersion, LiveConfig, tuningOf } from '../config/live.ts';
import type { Config, DetectorConfig } from '../config/schema.ts';
import type { AuditEvent, Finding, Insight } from '../contracts/types.ts';
import { type EngineMetrics, emptyEngineMetrics } from '../detect/engine.ts';
import { type FindingTuning, findingTuningOf } from '../detect/finding-overrides.ts';
import { type FindingSetup, findingSetupFromConfig } from '../detect/findings.ts';
import {
  type ActionRecord,
  ActionStage,
  PrincipalStage,
  partitionFor,
  type StageOutput,
  type WatermarkMarker,
} from '../detect/topology.ts';
import { findingWithConfigVersion } from '../emit/finding.ts';
import { withConfigVersion } from '../emit/insight.ts';
import { BadRecordError, causeChain, ErrorCodes, errorMessage, isTrailwatchError, TrailwatchError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Admin, Batch, BatchContext, GroupConsumer, InRecord, Transport, TxnProducer } from '../transport/types.ts';
import { ChangelogWriter, restorePartition, stateCorrupt } from './changelog.ts';
import { EventCodec } from './codec.ts';
import { ConfigTopicFollower } from './config-topic.ts';
import { type DeadLetter, deadLetterMessages, logDeadLetters } from './dead-letter.ts';
import { type OutRecord, produceRounds } from './produce.ts';
import { registerContracts, type SchemaRegistry } from './registry.ts';
import { untilStarted } from './startup.ts';
import { type DetectorTopics, ensureDetectorTopics } from './topics.ts';

export interface DetectorMetrics {
  recordsConsumed: number;
  /** Events this member decoded and handed to a principal stage (the engines' counters are per partition, over its whole life). */
  eventsDecoded: number;
  deadLetters: Record<string, number>;
  insightsEmitted: number;
  /** Insight Starts and Ends kept back by detector.suppressions (counted as judged; a retried batch counts again). */
  insightsSuppressed: number;
  /** The same, by insightType, then by state (Start, End). */
  insightsSuppressedByType: Record<string, Record<string, number>>;
  /** The config topic's version the tasks run now (what Insights carry); null on the file and environment config. */
  configVersion: number | null;
  /** Findings committed to topics.findings (rules, correlations, first-seen, breadth). */
  findingsEmitted: number;
  /** The same, by kind (finding_info.types[0]). */
  findingsByKind: Record<string, number>;
  /** Findings held back by findings.suppressions, by kind (counted as made; a retried batch counts again). */
  findingsSuppressedByKind: Record<string, number>;
  /** Findings dropped by a findings.overrides entry with enabled: false, by kind (the same). */
  findingsDroppedByKind: Record<string, number>;
  batches: number;
  transactionsCommitted: number;
  transactionsAborted: number;
  partitionsRestored: number;
  /** Time the last restore took, per task (`topic:partition`). */
  restoreMs: Record<string, number>;
  /** Records written per output topic kind, and the produce requests (rounds) their transactions took. */
  produceRounds: number;
  /** Committed Insights by insightType, then by state (Start, End). */
  insightsByType: Record<string, Record<string, number>>;
  /** Committed findings by kind (finding_info.types[0]), then by activity (Create, Update). */
  findingsByKindActivity: Record<string, Record<string, number>>;
  /** Bytes of changelog records (keys and values) committed, and read back by restores. */
  changelogBytesWritten: number;
  changelogBytesRestored: number;
}

export type StageName = 'principal' | 'action';

/**
 * What the observe layer (src/observe/) is told as it happens: durations for its histograms and
 * late events for its rate-limited log line. Everything else it reads when scraped (`view()`).
 */
export interface DetectorHooks {
  /** A batch of fresh records processed and committed (restore excluded). */
  batch?(stage: StageName, seconds: number): void;
  /** A transaction committed, from begin to commit. */
  transaction?(stage: StageName, seconds: number): void;
  /** A task's state restored from its changelog. */
  restored?(stage: StageName, seconds: number): void;
  /** Events of one batch that came after their bucket had closed (counted by the engine, not folded in). */
  late?(late: LateEvents): void;
}

export interface LateEvents {
  topic: string;
  partition: number;
  count: number;
  /** How far behind the closed buckets the latest of them was, and the earliest: closed-through time − event time. */
  minLateMs: number;
  maxLateMs: number;
}

/** One task as the observe layer sees it. */
export interface TaskView {
  id: string;
  stage: StageName;
  topic: string;
  partition: number;
  /** The next offset the consumer will fetch: past the last record, or past trailing transaction markers. */
  position: bigint;
  /** The partition's high watermark at the last fetch (-1 before one). */
  highWatermark: bigint;
  caughtUp: boolean;
  activeKeys: number;
  /**
   * Insights started and not yet ended, from the engine's counters over the partition's whole life
   * (restored history included); a key evicted at detector.maxKeys while in an Insight keeps
   * counting, as no End is emitted for it.
   */
  openInsights: number;
  /** Event time: the engine's watermark (null before it has one). */
  watermarkMs: number | null;
  /** The engine's counters over the partition's whole life (restored history included). */
  engine: EngineMetrics;
  /** Failed batches in a row, 0 while it commits. */
  failingAttempts: number;
}

/** The runtime at one instant, for metrics, health and the status record. */
export interface DetectorView {
  /** start() has finished: topics ensured, the group joined. */
  started: boolean;
  stopping: boolean;
  /** The runtime gave up (onFatal). */
  fatal: boolean;
  groupId: string;
  eventsTopic: string;
  actionsTopic: string | null;
  /** Partitions this member owns now, of both topics. */
  assignment: Array<{ topic: string; partition: number; stage: StageName }>;
  /** Tasks restored and running, a subset of the assignment (a partition gets its task at its first record). */
  tasks: TaskView[];
  /** Partitions whose last batch failed, by task id, with attempts. */
  failing: Array<{ id: string; attempts: number; code: string; sinceMs: number }>;
  /** How long the serialized work in hand has run, ms; 0 when idle. */
  busyMs: number;
  metrics: DetectorMetrics;
  /** Engine counters of the work this member did (as engineMetrics()), per stage. */
  work: Record<StageName, EngineMetrics>;
}

export interface DetectorRuntimeOptions {
  config: Config;
  /** The Kafka client behind the seam (createTransport in src/transport/index.ts). */
  transport: Transport;
  registry: SchemaRegistry;
  logger: Logger;
  /** Called for each Insight once its transaction has committed. */
  onInsight?: (insight: Insight) => void;
  /** Wall clock, replaceable in tests. */
  now?: () => number;
  /**
   * The config applied while running (`run --watch`): its tuning reaches every task at the next
   * batch boundary. Without one the runtime follows topics.config (every detector.configPollMs,
   * unless 0) and applies its latest version the same way.
   */
  live?: LiveConfig;
  /**
   * The detector cannot go on (the consumer crashed for good, or work stalled past
   * detector.stallTimeoutMs). Default: log and exit with status 1 for a supervisor to restart.
   */
  onFatal?: (err: Error) => void;
  /** Told of durations and late events as they happen (src/observe/). */
  hooks?: DetectorHooks;
}

/** Broker answers that no retry of the same request can change. */
const UNRETRIABLE_TYPES =
  /^(MESSAGE_TOO_LARGE|RECORD_LIST_TOO_LARGE|INVALID_RECORD|CORRUPT_MESSAGE|UNSUPPORTED_VERSION|.*_AUTHORIZATION_FAILED|INVALID_CONFIG|POLICY_VIOLATION)$/;

/**
 * What went wrong with a batch, for the decision to retry: a fenced producer (another member owns
 * the partition), a failure retrying cannot mend (a record the broker refuses as too large, an
 * authorization error, a corrupt changelog), or one worth another try (the broker restarting).
 */
export function classifyTaskFailure(err: unknown): { kind: 'fenced' | 'permanent' | 'transient'; code: string; message: string } {
  const chain = causeChain(err);
  const message = errorMessage(err);
  for (const e of chain) {
    const type = String((e as { type?: string }).type ?? '');
    const code = (e as { code?: string }).code;
    if (code === ErrorCodes.KAFKA_FENCED || /PRODUCER_FENCED|INVALID_PRODUCER_EPOCH/i.test(type)) {
      return { kind: 'fenced', code: type || 'PRODUCER_FENCED', message };
    }
  }
  for (const e of chain) {
    if (isTrailwatchError(e) && (e as TrailwatchError).canRetry === false)
      return { kind: 'permanent', code: (e as TrailwatchError).code, message };
    const type = String((e as { type?: string }).type ?? '');
    if (UNRETRIABLE_TYPES.test(type)) return { kind: 'permanent', code: type, message };
    if (e instanceof SyntaxError) return { kind: 'permanent', code: ErrorCodes.STATE_CORRUPT, message };
  }
  const type = chain.map((e) => (e as { type?: string }).type).find((t) => typeof t === 'string');
  return { kind: 'transient', code: type ?? (isTrailwatchError(err) ? (err as TrailwatchError).code : ErrorCodes.KAFKA), message };
}

/** A consumed record as the dead-letter helpers take it. */
function sourceOf(r: InRecord): DeadLetter['message'] {
  return { key: r.key, value: r.value, headers: r.headers, offset: String(r.offset), timestamp: String(r.timestampMs) };
}

/** Headers with one value each, as the transport sends them (a repeated header keeps its last). */
function singleHeaders(
  headers: Record<string, Buffer | string | Array<Buffer | string> | undefined> | undefined,
): Record<string, Buffer | string> {
  const out: Record<string, Buffer | string> = {};
  for (const [name, v] of Object.entries(headers ?? {})) {
    const last = Array.isArray(v) ? v[v.length - 1] : v;
    if (last !== undefined) out[name] = last;
  }
  return out;
}

const IDLE_TICK_MS = 1_000;
/** How long start() waits for its first read of the config topic before it starts on the file and environment config. */
const FIRST_CONFIG_READ_WAIT_MS = 15_000; // fifteen seconds
/** Backoff after a failed batch: doubles from the first to the last, per partition. */
const RETRY_BACKOFF_MS = { first: 1_000, max: 30_000 } as const;
/** A failure that retrying cannot mend gets this many attempts in a row before the process gives up. */
const PERMANENT_FAILURE_ATTEMPTS = 3;
const KIND_HEADER = 'tw.kind';

/** A partition whose batches keep failing: since when, how often, and why the last time. */
interface Failing {
  sinceMs: number;
  attempts: number;
  code: string;
  message: string;
}

/**
 * One stage partition owned by this member: its stage, the transactional producer that fences
 * any previous owner, and its changelog writer. Everything a batch produces (Insights, partials,
 * watermark markers, dead letters, changelog records) and the input offset commit together.
 */
interface Task {
  id: string;
  topic: string;
  partition: number;
  producer: TxnProducer;
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
  /** The engine's counters as restored from the changelog: this member's work is what it adds to them. */
  restoredMetrics: EngineMetrics;
  /** The consumer's position after the last fetch, and the partition's high watermark then. */
  position: bigint;
  highWatermark: bigint;
}

function countBy(counts: Record<string, Record<string, number>>, outer: string, inner: string): void {
  const byInner = counts[outer] ?? {};
  byInner[inner] = (byInner[inner] ?? 0) + 1;
  counts[outer] = byInner;
}

function changelogBytes(records: readonly OutRecord[]): number {
  let bytes = 0;
  for (const r of records) {
    if (r.key) bytes += typeof r.key === 'string' ? Buffer.byteLength(r.key) : r.key.length;
    if (r.value) bytes += typeof r.value === 'string' ? Buffer.byteLength(r.value) : r.value.length;
  }
  return bytes;
}

function stageOf(task: Task): StageName {
  return task.principal ? 'principal' : 'action';
}

/** Adds what `task`'s engine counted since it was restored to `sum`. */
function addWork(sum: EngineMetrics, task: Task): void {
  const m = (task.principal ?? task.action)?.engine.metrics;
  if (!m) return;
  for (const k of Object.keys(sum) as Array<keyof EngineMetrics>) sum[k] += m[k] - task.restoredMetrics[k];
}

/** Every counter at zero: a runtime's start, and a test's view of one. */
export function emptyDetectorMetrics(): DetectorMetrics {
  return {
    recordsConsumed: 0,
    deadLetters: {},
    insightsEmitted: 0,
    insightsSuppressed: 0,
    insightsSuppressedByType: {},
    configVersion: null,
    findingsEmitted: 0,
    findingsByKind: {},
    findingsSuppressedByKind: {},
    findingsDroppedByKind: {},
    batches: 0,
    transactionsCommitted: 0,
    transactionsAborted: 0,
    partitionsRestored: 0,
    restoreMs: {},
    produceRounds: 0,
    eventsDecoded: 0,
    insightsByType: {},
    findingsByKindActivity: {},
    changelogBytesWritten: 0,
    changelogBytesRestored: 0,
  };
}

/**
 * The live detector: one consumer group reading the events topic (first stage, per principal)
 * and the action-keyed repartition topic (second stage, per action), each partition a task with
 * its state in a changelog topic and its output committed with Kafka transactions, so a crash,
 * a rebalance or a broker restart neither loses nor repeats an Insight.
 */
export class DetectorRuntime {
  readonly metrics: DetectorMetrics = emptyDetectorMetrics();
  private readonly opts: DetectorRuntimeOptions;
  private readonly codec: EventCodec;
  private consumer: GroupConsumer | null = null;
  private admin: Admin | null = null;
  private readonly log: Logger;
  private readonly now: () => number;
  private insightSchemaId = -1;
  private findingSchemaId = -1;
  /** What the first stage's findings need: rules (rules.paths and the default pack), correlations, catalog. */
  private findingSetup: FindingSetup | null = null;
  private topics: DetectorTopics | null = null;
  private readonly tasks = new Map<string, Task>();
  /** Engine counters of the tasks this member has closed (rebalance, failed batch, stop), per stage. */
  private readonly closedWork: Record<StageName, EngineMetrics> = { principal: emptyEngineMetrics(), action: emptyEngineMetrics() };
  /** Assigned partitions of the events topic, with the wall time they were assigned. */
  private readonly assigned = new Map<number, number>();
  /** Partitions whose last batch failed, by task id, until one commits. */
  private readonly failing = new Map<string, Failing>();
  /** What the broker accepts in one record batch, per output topic (max.message.bytes). */
  private limits = new Map<string, number>();
  /** Partitions of the output topics whose records trailwatch places itself (alerts, dead letters). */
  private outputPartitions = new Map<string, number>();
  /** Serializes batches, idle ticks and rebalances: stages are single-threaded by design. */
  private chain: Promise<void> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  /** Wall time the serialized work in hand began; null when idle. */
  private busySince: number | null = null;
  private stopping = false;
  private fatalRaised = false;
  private started = false;
  private readonly hooks: DetectorHooks;
  /** Suppressions already logged as expired (by content). */
  private readonly expiredAnnounced = new Set<string>();
  /** The config whose tuning the tasks follow: `run --watch`'s, or the config topic's latest version. */
  private readonly live: LiveConfig;
  /** Follows topics.config; null under `run --watch` (the file is the source) or with detector.configPollMs 0. */
  private readonly follower: ConfigTopicFollower | null;
  /** The detector config with the tuning the tasks run now (taken at a batch boundary): what a task restored now is built with. */
  private tuned: DetectorConfig;
  /** The same for findings: their overrides and suppressions. */
  private tunedFindings: FindingTuning;

  constructor(opts: DetectorRuntimeOptions) {
    this.opts = opts;
    this.codec = new EventCodec(opts.registry, { maxRecordBytes: opts.config.detector.maxRecordBytes });
    this.log = opts.logger.child({ component: 'detector' });
    this.now = opts.now ?? Date.now;
    this.hooks = opts.hooks ?? {};
    this.live = opts.live ?? new LiveConfig(opts.config);
    this.tuned = this.live.detector;
    this.tunedFindings = findingTuningOf(this.live.config.findings);
    this.metrics.configVersion = this.live.version.version;
    this.live.onChange((config, version) => {
      void this.serialized(async () => this.retune(config, version));
    });
    const pollMs = opts.config.detector.configPollMs;
    this.follower =
      opts.live || pollMs === 0
        ? null
        : new ConfigTopicFollower({ transport: opts.transport, base: opts.config, live: this.live, logger: opts.logger, pollMs });
  }

  /** Engine counters of the work this member did: every task it ran, closed or owned, since each was restored. */
  engineMetrics(): EngineMetrics {
    const sum = emptyEngineMetrics();
    for (const k of Object.keys(sum) as Array<keyof EngineMetrics>) sum[k] = this.closedWork.principal[k] + this.closedWork.action[k];
    for (const t of this.tasks.values()) addWork(sum, t);
    return sum;
  }

  /** The runtime now, for the observe layer: cheap, no Kafka calls (lag needs the end offsets, which it asks for itself). */
  view(): DetectorView {
    const { config } = this.opts;
    const work = { principal: { ...this.closedWork.principal }, action: { ...this.closedWork.action } };
    const tasks: TaskView[] = [];
    for (const t of this.tasks.values()) {
      const stage = stageOf(t);
      addWork(work[stage], t);
      const engine = (t.principal ?? t.action)?.engine;
      const m = engine?.metrics ?? emptyEngineMetrics();
      const wm = engine?.watermarkMs ?? Number.NEGATIVE_INFINITY;
      tasks.push({
        id: t.id,
        stage,
        topic: t.topic,
        partition: t.partition,
        position: t.position >= 0n ? t.position : t.nextOffset,
        highWatermark: t.highWatermark,
        caughtUp: t.caughtUp,
        activeKeys: engine?.activeKeys ?? 0,
        openInsights: Math.max(0, m.insightsStarted - m.insightsEnded),
        watermarkMs: Number.isFinite(wm) ? wm : null,
        engine: { ...m },
        failingAttempts: this.failing.get(t.id)?.attempts ?? 0,
      });
    }
    const events = config.topics.events;
    return {
      started: this.started,
      stopping: this.stopping,
      fatal: this.fatalRaised,
      groupId: config.detector.groupId,
      eventsTopic: events,
      actionsTopic: this.topics?.actions ?? null,
      assignment: (this.stopping ? [] : (this.consumer?.assignment() ?? [])).map((tp) => ({
        ...tp,
        stage: tp.topic === events ? ('principal' as const) : ('action' as const),
      })),
      tasks,
      failing: [...this.failing].map(([id, f]) => ({ id, attempts: f.attempts, code: f.code, sinceMs: f.sinceMs })),
      busyMs: this.busySince === null ? 0 : Math.max(0, this.now() - this.busySince),
      metrics: this.metrics,
      work,
    };
  }

  async start(): Promise<void> {
    const { config } = this.opts;
    this.findingSetup = await this.loadFindingSetup();
    // A broker or registry that is restarting is waited for, not a reason to give up.
    const topics = await untilStarted(
      async () => {
        // Connected once, however often start-up is retried.
        this.admin ??= await this.opts.transport.admin();
        const ensured = await ensureDetectorTopics(this.admin, config);
        await this.readOutputLimits(ensured);
        const ids = await registerContracts(this.opts.registry, config.topics);
        this.insightSchemaId = ids.insight;
        this.findingSchemaId = ids.finding;
        return ensured;
      },
      { log: this.log, now: this.now },
    );
    this.topics = topics;
    // The latest config version before the first batch, when the topic can be read now; else the
    // file and environment config until it can (a broker restarting is no reason not to start).
    await this.follower?.start(FIRST_CONFIG_READ_WAIT_MS);
    this.watchdog = setInterval(() => {
      const { stallTimeoutMs } = this.opts.config.detector;
      if (this.stopping) return;
      if (this.busySince !== null && this.now() - this.busySince > stallTimeoutMs) {
        this.fatal(new Error(`no progress for ${stallTimeoutMs} ms (detector.stallTimeoutMs): restarting is safe, state is in Kafka`));
        return;
      }
      // Retries are fresh work each: a partition failing for as long is stuck all the same.
      for (const [id, f] of this.failing) {
        if (this.now() - f.sinceMs > stallTimeoutMs) {
          this.fatal(this.taskFailed(id, f, `still failing after ${stallTimeoutMs} ms (detector.stallTimeoutMs)`));
          return;
        }
      }
    }, 1_000);
    this.watchdog.unref();
    const d = config.detector;
    this.consumer = this.opts.transport.groupConsumer({
      groupId: d.groupId,
      topics: [config.topics.events, topics.actions],
      fromBeginning: true,
      readCommitted: true,
      maxBytesPerPartition: d.fetchMaxBytes,
      sessionTimeoutMs: d.sessionTimeoutMs,
    });
    await this.consumer.run({
      onAssigned: () => this.serialized(() => this.rebalanced()),
      onRevoked: () => this.serialized(() => this.rebalanced()),
      onBatch: (batch, context) => this.serialized(() => this.handleBatch(batch, context)),
      onCrash: (err) => {
        if (!this.stopping) this.fatal(new Error(`the consumer crashed and will not restart: ${errorMessage(err)}`));
      },
    });
    this.idleTimer = setInterval(() => {
      void this.serialized(() => this.advanceIdle()).catch((err: unknown) => this.log.error({ err }, 'idle watermark advance failed'));
    }, IDLE_TICK_MS);
    this.idleTimer.unref();
    this.started = true;
    this.log.info(
      {
        eventsTopic: config.topics.events,
        actionsTopic: topics.actions,
        alertsTopic: config.topics.alerts,
        groupId: config.detector.groupId,
        partitions: topics.eventPartitions,
        actionPartitions: topics.actionPartitions,
      },
      'detector running',
    );
  }

  /** Finishes the batch in hand, leaves the group, closes every task's producer. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.follower?.stop();
    if (this.idleTimer) clearInterval(this.idleTimer);
    if (this.watchdog) clearInterval(this.watchdog);
    await this.consumer?.close().catch(() => undefined);
    await this.chain.catch(() => undefined);
    for (const task of [...this.tasks.values()]) await this.closeTask(task);
    await this.admin?.close().catch(() => undefined);
    this.log.info({ ...this.metrics, engine: this.engineMetrics() }, 'detector stopped');
  }

  private fatal(err: Error): void {
    if (this.stopping || this.fatalRaised) return;
    this.fatalRaised = true;
    this.log.fatal(
      { err: err.message, ...(isTrailwatchError(err) ? { code: (err as TrailwatchError).code } : {}) },
      'detector cannot go on',
    );
    if (!this.opts.onFatal) process.exit(1);
    // Embedded (a test, a host process): stop reading, so nothing retries behind the caller's back.
    void this.stop().catch(() => undefined);
    this.opts.onFatal(err);
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(async () => {
      this.busySince = this.now();
      try {
        return await fn();
      } finally {
        this.busySince = null;
        this.announceExpiredSuppressions();
      }
    });
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** A config applied live (LiveConfig): every task's engine takes its tuning now, between batches. */
  private retune(config: Config, version: ConfigVersion): void {
    const tuning = tuningOf(config.detector);
    this.tuned = { ...this.opts.config.detector, ...tuning };
    this.metrics.configVersion = version.version;
    const findingTuning = findingTuningOf(config.findings);
    this.tunedFindings = findingTuning;
    for (const t of this.tasks.values()) {
      (t.principal ?? t.action)?.engine.retune(tuning);
      t.principal?.findings?.retune(findingTuning);
    }
    this.log.info({ configVersion: version.id, version: version.version, tasks: this.tasks.size }, 'config applied');
  }

  /** Logs each suppression once, when the event time of this member's partitions passes its expiry. */
  private announceExpiredSuppressions(): void {
    const suppressions = this.tuned.suppressions;
    if (suppressions.length === 0) return;
    let watermark = Number.NEGATIVE_INFINITY;
    for (const t of this.tasks.values()) watermark = Math.max(watermark, (t.principal ?? t.action)?.engine.watermarkMs ?? watermark);
    for (const [index, s] of suppressions.entries()) {
      const id = JSON.stringify(s);
      if (this.expiredAnnounced.has(id) || !(Date.parse(s.expires) <= watermark)) continue;
      this.expiredAnnounced.add(id);
      this.log.info(
        { suppression: index, match: s.match, reason: s.reason, author: s.author, expires: s.expires, watermarkMs: watermark },
        'suppression expired: its keys are reported again',
      );
    }
  }

  private async rebalanced(): Promise<void> {
    const topics = this.topics as DetectorTopics;
    const assignment = this.consumer?.assignment() ?? [];
    const owned = new Set(assignment.map((tp) => `${tp.topic}:${tp.partition}`));
    for (const task of [...this.tasks.values()]) if (!owned.has(task.id)) await this.closeTask(task);
    const events = new Set(assignment.filter((tp) => tp.topic === this.opts.config.topics.events).map((tp) => tp.partition));
    for (const p of [...this.assigned.keys()]) if (!events.has(p)) this.assigned.delete(p);
    const wall = this.now();
    for (const p of events) if (!this.assigned.has(p)) this.assigned.set(p, wall);
    this.log.info(
      { assignment: assignment.map((tp) => `${tp.topic}:${tp.partition}`), actionsTopic: topics.actions },
      'partitions assigned',
    );
  }

  /** Closes a task; `work: false` for one whose last batch did not commit (that work is done again). */
  private async closeTask(task: Task, work = true): Promise<void> {
    if (this.tasks.delete(task.id) && work) addWork(this.closedWork[stageOf(task)], task);
    await task.producer.close().catch(() => undefined);
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
    // Retries without limit, as exactly-once wants; a broker that never answers trips detector.stallTimeoutMs.
    const producer = this.opts.transport.txnProducer({
      transactionalId: `${config.detector.groupId}.${topic}.${partition}`,
      transactionTimeoutMs: 60_000,
    });
    try {
      await producer.connect();
      const restored = await restorePartition({
        transport: this.opts.transport,
        producer,
        topic: changelog,
        partition,
        groupId: config.detector.groupId,
        heartbeat,
      });
      const options = {
        trackChanges: true,
        onSuppressed: (facts: { insightType: string; state: string }) => {
          this.metrics.insightsSuppressed++;
          countBy(this.metrics.insightsSuppressedByType, facts.insightType, facts.state);
        },
        ...(this.findingSetup
          ? { findings: { ...this.findingSetup, config: { ...this.findingSetup.config, ...this.tunedFindings } } }
          : {}),
      };
      // With the tuning taken so far (LiveConfig); the rest of the detector config never changes while running.
      const detector = this.tuned;
      const task: Task = {
        id,
        topic,
        partition,
        producer,
        writer: new ChangelogWriter(
          changelog,
          partition,
          config.detector.bucketMs,
          restored.seenKeys,
          Math.min(256 * 1024, Math.floor(this.limitOf(changelog) / 4)),
          restored.keyParts,
        ),
        nextOffset: await this.committedOffset(topic, partition),
        lastRecordWallMs: this.now(),
        caughtUp: false,
        lastMarker: '',
        restoredMetrics: emptyEngineMetrics(),
        position: -1n,
        highWatermark: -1n,
      };
      try {
        if (principalStage) task.principal = PrincipalStage.fromCheckpoint(detector, partition, restored.checkpoint, options);
        else task.action = ActionStage.fromCheckpoint(detector, partition, topics.eventPartitions, restored.checkpoint, options);
      } catch (err) {
        throw stateCorrupt(changelog, partition, `its state does not load (${errorMessage(err)})`, err);
      }
      // The restored engine is the committed state: nothing of it is a change to write again.
      (task.principal ?? task.action)?.engine.drainChanges();
      task.principal?.findings?.drainChanges();
      task.restoredMetrics = { ...((task.principal ?? task.action)?.engine.metrics ?? emptyEngineMetrics()) };
      this.tasks.set(id, task);
      this.metrics.partitionsRestored++;
      this.metrics.restoreMs[id] = restored.ms;
      this.metrics.changelogBytesRestored += restored.bytes;
      this.hooks.restored?.(stageOf(task), restored.ms / 1000);
      this.log.info(
        {
          task: id,
          changelog,
          records: restored.records,
          bytes: restored.bytes,
          keys: (task.principal ?? task.action)?.engine.activeKeys,
          restoreMs: restored.ms,
          nextOffset: String(task.nextOffset),
          // The version its state was committed under, and the one it goes on with.
          stateConfigVersion: restored.configVersion,
          configVersion: this.metrics.configVersion,
        },
        'partition state restored',
      );
      if (restored.configVersion !== null && restored.configVersion !== this.metrics.configVersion) {
        // E.g. a member started while the config topic could not be read: it runs its file config until it can.
        this.log.warn(
          { task: id, stateConfigVersion: restored.configVersion, configVersion: this.metrics.configVersion },
          'partition state was committed under another config version: its next batches follow the version this member runs',
        );
      }
      return task;
    } catch (err) {
      await producer.close().catch(() => undefined);
      throw err;
    }
  }

  private async committedOffset(topic: string, partition: number): Promise<bigint> {
    const committed = await this.connectedAdmin().committedOffsets(this.opts.config.detector.groupId, topic);
    return committed.get(partition) ?? -1n;
  }

  private async handleBatch(batch: Batch, context: BatchContext): Promise<void> {
    if (this.stopping || context.isStale()) return;
    const known = this.tasks.get(`${batch.topic}:${batch.partition}`);
    // A fetch of transaction markers only: nothing to do, but it may say the partition is at its end.
    if (batch.records.length === 0) {
      if (known) {
        known.caughtUp = batch.nextOffset >= batch.highWatermark;
        known.position = batch.nextOffset;
        known.highWatermark = batch.highWatermark;
      }
      return;
    }
    let task: Task | undefined;
    try {
      task = await this.task(batch.topic, batch.partition, () => context.heartbeat());
      const from = task.nextOffset;
      const fresh = from <= (batch.records[0] as InRecord).offset ? batch.records : batch.records.filter((r) => r.offset >= from);
      const last = batch.records[batch.records.length - 1] as InRecord;
      if (fresh.length > 0) {
        const began = performance.now();
        if (task.principal) await this.principalBatch(task, batch.topic, fresh, last.offset);
        else await this.actionBatch(task, batch.topic, fresh, last.offset);
        this.hooks.batch?.(stageOf(task), (performance.now() - began) / 1000);
      }
      task.lastRecordWallMs = this.now();
      task.caughtUp = batch.nextOffset >= batch.highWatermark;
      task.position = batch.nextOffset;
      task.highWatermark = batch.highWatermark;
      this.metrics.recordsConsumed += fresh.length;
      this.metrics.batches++;
      await context.heartbeat();
    } catch (err) {
      await this.failed(batch.topic, batch.partition, task, err);
    }
  }

  /**
   * A batch that could not commit leaves the stage ahead of its committed state: drop the task
   * (it is restored from the changelog next time) and read again from the committed offset,
   * after a backoff that doubles with each failure in a row. The partition waits paused, so the
   * others go on meanwhile. A failure that no retry can mend (a record the broker refuses, an
   * authorization error, a corrupt changelog) ends the process after a few attempts, and so does
   * one that lasts longer than detector.stallTimeoutMs: both name the cause, for the supervisor's
   * log.
   */
  private async failed(topic: string, partition: number, task: Task | undefined, err: unknown): Promise<void> {
    this.metrics.transactionsAborted++;
    const id = `${topic}:${partition}`;
    const cause = classifyTaskFailure(err);
    if (task) await this.closeTask(task, false);
    if (cause.kind === 'fenced') {
      this.log.warn({ err: cause.message, topic, partition }, 'another member owns this partition now: dropping it');
      this.failing.delete(id);
      return;
    }
    const wall = this.now();
    const f = this.failing.get(id) ?? { sinceMs: wall, attempts: 0, code: cause.code, message: cause.message };
    f.attempts++;
    f.code = cause.code;
    f.message = cause.message;
    this.failing.set(id, f);
    const backoffMs = Math.min(RETRY_BACKOFF_MS.max, RETRY_BACKOFF_MS.first * 2 ** (f.attempts - 1));
    this.log.warn(
      { err: cause.message, code: cause.code, topic, partition, attempt: f.attempts, permanent: cause.kind === 'permanent', backoffMs },
      'batch not committed: restoring the partition and retrying',
    );
    if (this.stopping) return;
    if (cause.kind === 'permanent' && f.attempts >= PERMANENT_FAILURE_ATTEMPTS) {
      this.fatal(this.taskFailed(id, f, `failed ${f.attempts} times in a row with an error retrying cannot mend`));
      return;
    }
    const offset = await this.committedOffset(topic, partition).catch(() => -1n);
    const consumer = this.consumer;
    if (!consumer) return;
    const where = [{ topic, partition }];
    consumer.pause(where);
    // Never committed: from the start, as the group's fromBeginning says.
    consumer.seek(topic, partition, offset >= 0n ? offset : 0n);
    const timer = setTimeout(() => {
      if (!this.stopping) consumer.resume(where);
    }, backoffMs);
    timer.unref();
  }

  private taskFailed(id: string, f: Failing, what: string): TrailwatchError {
    return new TrailwatchError(ErrorCodes.TASK_FAILED, `task ${id} ${what}: ${f.code}: ${f.message}`, {
      fault: 'external',
      canRetry: false,
      details: { task: id, attempts: f.attempts, cause: f.code, failingForMs: this.now() - f.sinceMs },
    });
  }

  /** The admin client; only asked for after start() connected it. */
  private connectedAdmin(): Admin {
    if (!this.admin) throw new TrailwatchError(ErrorCodes.INTERNAL, 'the detector was used before start()');
    return this.admin;
  }

  private limitOf(topic: string): number {
    return this.limits.get(topic) ?? 1_048_588;
  }

  /** The record-batch limit of every topic the tasks write to, and the partitions of those whose records we place ourselves. */
  private async readOutputLimits(topics: DetectorTopics): Promise<void> {
    const { config } = this.opts;
    const outputs = [
      config.topics.alerts,
      config.topics.findings,
      config.topics.deadLetter,
      topics.actions,
      topics.principalChangelog,
      topics.actionChangelog,
    ];
    for (const t of new Set(outputs)) {
      const value = Number((await this.connectedAdmin().describeTopicConfigs(t, ['max.message.bytes']))['max.message.bytes']);
      this.limits.set(t, Number.isFinite(value) && value > 0 ? value : await this.connectedAdmin().brokerMessageMaxBytes());
    }
    for (const t of [config.topics.alerts, config.topics.findings, config.topics.deadLetter]) {
      this.outputPartitions.set(t, (await this.connectedAdmin().topicOffsets(t)).length);
    }
  }

  private async principalBatch(task: Task, topic: string, messages: InRecord[], lastOffset: bigint): Promise<void> {
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
        deadLetters.push({ topic, partition: task.partition, message: sourceOf(message), error: err });
      }
    }
    this.metrics.eventsDecoded += events.length;
    const before = this.hooks.late ? { late: stage.engine.metrics.lateEvents, closedThroughMs: stage.engine.meta().closedThroughMs } : null;
    const out = stage.process(events);
    const late = before ? this.lateEvents(task, events, before) : null;
    await this.commit(
      task,
      out.insights,
      [...this.downstream(task, out, true), ...this.deadLetterRecords(deadLetters)],
      lastOffset,
      out.findings,
    );
    this.countDeadLetters(deadLetters);
    if (late) this.hooks.late?.(late);
  }

  /**
   * How many of a batch's events the engine found late, and how late, for the hooks: an event is
   * late when its bucket had closed before the batch (the engine counts, the runtime measures).
   */
  private lateEvents(
    task: Task,
    events: readonly AuditEvent[],
    before: { late: number; closedThroughMs: number | null },
  ): LateEvents | null {
    const stage = task.principal as PrincipalStage;
    const count = stage.engine.metrics.lateEvents - before.late;
    if (count <= 0 || before.closedThroughMs === null) return null;
    const { bucketMs } = this.opts.config.detector;
    let minLateMs = Number.POSITIVE_INFINITY;
    let maxLateMs = 0;
    for (const e of events) {
      if (Math.floor(e.eventTimeMs / bucketMs) * bucketMs + bucketMs > before.closedThroughMs) continue;
      const lateMs = before.closedThroughMs - e.eventTimeMs;
      if (lateMs < minLateMs) minLateMs = lateMs;
      if (lateMs > maxLateMs) maxLateMs = lateMs;
    }
    return { topic: task.topic, partition: task.partition, count, minLateMs: Number.isFinite(minLateMs) ? minLateMs : 0, maxLateMs };
  }

  /** A batch's findings, for its transaction: keyed by finding id (a Create and its Update share it), stamped with the wall clock. */
  private async findingRecords(findings: readonly Finding[]): Promise<OutRecord[]> {
    if (findings.length === 0) return [];
    const topic = this.opts.config.topics.findings;
    const partitions = this.outputPartitions.get(topic) ?? 1;
    const stamp = this.now();
    const records: OutRecord[] = [];
    for (const finding of findings) {
      const uid = finding.finding_info.uid;
      records.push({
        topic,
        partition: partitionFor(uid, partitions),
        key: uid,
        value: await this.codec.encodeFinding(this.findingSchemaId, finding),
        headers: { 'tw.finding.analytic': finding.finding_info.analytic.uid, 'tw.finding.kind': finding.finding_info.types[0] ?? '' },
        timestampMs: stamp,
      });
    }
    return records;
  }

  /** rules.paths and the default pack, the findings settings; a rule with a problem stops the start. */
  private async loadFindingSetup(): Promise<FindingSetup> {
    const { config } = this.opts;
    const loaded = await findingSetupFromConfig(config.rules, config.findings, config.topics.findings);
    const setup: FindingSetup & { ruleFiles: number } = {
      ...loaded,
      onHeld: (kind, held) => {
        const counts = held === 'suppressed' ? this.metrics.findingsSuppressedByKind : this.metrics.findingsDroppedByKind;
        counts[kind] = (counts[kind] ?? 0) + 1;
      },
    };
    this.log.info(
      {
        rules: setup.rules.size,
        correlations: setup.correlations.length,
        files: setup.ruleFiles,
        firstSeen: config.findings.firstSeen.enabled,
        breadth: config.findings.breadth.enabled,
      },
      'rules loaded',
    );
    return setup;
  }

  /** Counts a committed batch's dead letters; one log line per batch (a backlog of old records may dead-letter every one). */
  private countDeadLetters(deadLetters: DeadLetter[]): void {
    const codes = logDeadLetters(this.log, deadLetters, this.opts.config.topics.deadLetter);
    for (const [code, n] of Object.entries(codes)) this.metrics.deadLetters[code] = (this.metrics.deadLetters[code] ?? 0) + n;
  }

  private async actionBatch(task: Task, topic: string, messages: InRecord[], lastOffset: bigint): Promise<void> {
    const stage = task.action as ActionStage;
    const records: ActionRecord[] = [];
    const deadLetters: DeadLetter[] = [];
    for (const m of messages) {
      if (!m.value) continue;
      try {
        records.push(JSON.parse(m.value.toString()) as ActionRecord);
      } catch (err) {
        // Only trailwatch writes this topic; a record that is not its JSON is set aside, not a reason to stop.
        const error = new BadRecordError(ErrorCodes.DESERIALIZE, `not a repartition record: ${errorMessage(err)}`, { cause: err });
        deadLetters.push({ topic, partition: task.partition, message: sourceOf(m), error });
      }
    }
    await this.commit(task, stage.ingest(records), this.deadLetterRecords(deadLetters), lastOffset);
    this.countDeadLetters(deadLetters);
  }

  private deadLetterRecords(letters: DeadLetter[]): OutRecord[] {
    if (letters.length === 0) return [];
    const topic = this.opts.config.topics.deadLetter;
    const partitions = this.outputPartitions.get(topic) ?? 1;
    const max = this.limitOf(topic) - 512;
    return deadLetterMessages(topic, letters, this.now(), max).map((m, n) => {
      const letter = letters[n] as DeadLetter;
      const key = m.key ?? null;
      return {
        topic,
        // A keyed letter goes where the key says; one without a key, beside its source partition.
        partition: key === null ? letter.partition % partitions : partitionFor(key.toString(), partitions),
        key: key as Buffer | string | null,
        value: (m.value ?? null) as Buffer | string | null,
        headers: singleHeaders(m.headers),
        timestampMs: Number(m.timestamp),
      };
    });
  }

  /** Partials to their action partition (by key), the watermark marker to every action partition. */
  private downstream(task: Task, out: StageOutput, force: boolean): OutRecord[] {
    const topics = this.topics as DetectorTopics;
    if (!this.opts.config.detector.scopes.action) return [];
    const messages: OutRecord[] = out.partials.map((partial) => ({
      topic: topics.actions,
      partition: partitionFor(partial.key.id, topics.actionPartitions),
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
        messages.push({ topic: topics.actions, key: null, value: marker, partition: q, headers: { [KIND_HEADER]: 'watermark' } });
      }
    }
    return messages;
  }

  /**
   * One transaction: Insights, other output, changelog and (with an offset) the input position.
   * Its records go out in as many produce requests as the topics' max.message.bytes need.
   */
  private async commit(
    task: Task,
    judged: Insight[],
    output: OutRecord[],
    lastOffset: bigint | null,
    produced: readonly Finding[] = [],
  ): Promise<void> {
    const { config } = this.opts;
    const stage = task.principal ?? task.action;
    if (!stage) return;
    // What the engine produced, named with the config version it ran (retunes wait for batch boundaries).
    const version = this.metrics.configVersion;
    const insights = judged.map((i) => withConfigVersion(i, version));
    const findings = produced.map((f) => findingWithConfigVersion(f, version));
    const changes = stage.engine.drainChanges();
    const upstream = task.action?.drainUpstream() ?? null;
    const findingState = task.principal?.findings?.drainChanges() ?? [];
    const records: OutRecord[] = await this.findingRecords(findings);
    const alerts = config.topics.alerts;
    const alertPartitions = this.outputPartitions.get(alerts) ?? 1;
    // Stamped with the wall clock, not the Insight's event time: retention counts from when it was raised.
    const stamp = this.now();
    for (const i of insights) {
      records.push({
        topic: alerts,
        partition: partitionFor(i.sharedEventID, alertPartitions),
        key: i.sharedEventID,
        value: await this.codec.encodeInsight(this.insightSchemaId, i),
        headers: { 'tw.insight.state': i.insightDetails.state },
        timestampMs: stamp,
      });
    }
    const changelog = task.writer.messages(changes, upstream, findingState, version);
    records.push(...output, ...changelog);
    const rounds = produceRounds(records, (topic) => this.limitOf(topic));

    const began = performance.now();
    const txn = await task.producer.begin();
    try {
      for (const round of rounds) await txn.send(round);
      if (lastOffset !== null) {
        await txn.sendOffsets(config.detector.groupId, [{ topic: task.topic, partition: task.partition, offset: lastOffset + 1n }]);
      }
      await txn.commit();
    } catch (err) {
      await txn.abort().catch(() => undefined);
      throw err;
    }
    this.hooks.transaction?.(stageOf(task), (performance.now() - began) / 1000);
    this.metrics.changelogBytesWritten += changelogBytes(changelog);
    this.metrics.produceRounds += rounds.length;
    this.failing.delete(task.id);
    this.metrics.transactionsCommitted++;
    if (lastOffset !== null) task.nextOffset = lastOffset + 1n;
    for (const f of findings) {
      const kind = f.finding_info.types[0] ?? 'unknown';
      this.metrics.findingsEmitted++;
      this.metrics.findingsByKind[kind] = (this.metrics.findingsByKind[kind] ?? 0) + 1;
      countBy(this.metrics.findingsByKindActivity, kind, f.activity_name);
    }
    if (findings.length > 0) {
      this.log.info(
        {
          findings: findings.length,
          partition: task.partition,
          analytics: [...new Set(findings.map((f) => f.finding_info.analytic.uid))].slice(0, 10),
        },
        'findings',
      );
    }
    for (const i of insights) {
      this.metrics.insightsEmitted++;
      countBy(this.metrics.insightsByType, i.insightDetails.insightType, i.insightDetails.state);
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
      if (out.insights.length === 0 && output.length === 0 && out.findings.length === 0) continue;
      try {
        await this.commit(task, out.insights, output, null, out.findings);
      } catch (err) {
        await this.failed(task.topic, p, task, err);
      }
    }
  }

  /** Whether the group's committed offset of an events partition is its end (nothing to read). */
  private async atEnd(partition: number): Promise<boolean> {
    const topic = this.opts.config.topics.events;
    const [offsets, committed] = await Promise.all([this.connectedAdmin().topicOffsets(topic), this.committedOffset(topic, partition)]);
    const o = offsets.find((x) => x.partition === partition);
    if (!o) return false;
    return o.high === o.low || committed >= o.high;
  }
}
