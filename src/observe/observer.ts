import { hostname } from 'node:os';
import type { Config } from '../config/schema.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { DetectorHooks, DetectorView } from '../runtime/detector.ts';
import type { Admin, Producer, Transport } from '../transport/types.ts';
import { health, type PartitionState, type Probe, partitionStates, readiness } from './health.ts';
import { LateEventLog } from './late.ts';
import { createMetricsRegistry, type DetectorMetricsRegistry, type PartitionLag } from './metrics.ts';
import { type ObserveServer, startObserveServer } from './server.ts';
import { configHash, encodeStatus, type MemberStatus, STATUS_RECORD_VERSION, statusKey, TRAILWATCH_VERSION } from './status.ts';

export interface ObserverOptions {
  config: Config;
  transport: Transport;
  logger: Logger;
  /** Wall clock, replaceable in tests. */
  now?: () => number;
  /**
   * Overrides observe.port. In the config 0 turns the endpoint off; here 0 is a port the system
   * picks, for tests that must not collide.
   */
  listenPort?: number;
  /** Default `<hostname>:<pid>`: unique among running members, stable across a container's restarts. */
  memberId?: string;
}

/** What the observer reads from the runtime (DetectorRuntime). */
export interface Observed {
  view(): DetectorView;
}

/** Measurements older than this many refresh intervals are not trusted for readiness. */
const MEASUREMENT_MAX_AGE_INTERVALS = 3;
/** At most one warning a minute about failing measurements or status records. */
const WARN_EVERY_MS = 60_000;

/**
 * Watches a running detector: the Prometheus registry, the /metrics, /healthz and /readyz
 * endpoints, the consumer lag (measured every observe.refreshMs, two admin requests per topic),
 * the member's status record for `trailwatch status`, and the rate-limited late-event log line.
 * Attach it to the runtime with `hooks` (at construction) and `attach` (after).
 */
export class Observer {
  readonly memberId: string;
  readonly metrics: DetectorMetricsRegistry;
  /** For DetectorRuntimeOptions.hooks. */
  readonly hooks: DetectorHooks;
  private readonly opts: ObserverOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly lateLog: LateEventLog;
  private readonly startedAtMs: number;
  private runtime: Observed | null = null;
  private server: ObserveServer | null = null;
  private admin: Admin | null = null;
  private producer: Producer | null = null;
  private published = false;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> = Promise.resolve();
  private lagState: { lags: PartitionLag[]; atMs: number } | null = null;
  private lastWarnMs = Number.NEGATIVE_INFINITY;
  private stopped = false;

  constructor(opts: ObserverOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'observe' });
    this.now = opts.now ?? Date.now;
    this.startedAtMs = this.now();
    this.memberId = opts.memberId ?? `${hostname()}:${process.pid}`;
    this.lateLog = new LateEventLog({ log: this.log, allowedLatenessMs: opts.config.detector.allowedLatenessMs, now: this.now });
    this.metrics = createMetricsRegistry(
      {
        view: () => this.runtime?.view() ?? null,
        lags: () => this.lagState?.lags ?? null,
        ready: () => this.readiness().ok,
        now: this.now,
      },
      { version: TRAILWATCH_VERSION, configHash: configHash(opts.config), configVersion: '' },
    );
    this.hooks = { ...this.metrics.hooks, late: (late) => this.lateLog.note(late) };
  }

  attach(runtime: Observed): void {
    this.runtime = runtime;
  }

  /** The endpoint's address once listening; null when observe.port is 0. */
  get url(): string | null {
    return this.server?.url ?? null;
  }

  /** Starts the HTTP endpoint (before the runtime, so /healthz answers during a long start) and the refresh timer. */
  async start(): Promise<void> {
    const { observe } = this.opts.config;
    const port = this.opts.listenPort ?? observe.port;
    if (this.opts.listenPort !== undefined || observe.port > 0) {
      this.server = await startObserveServer({
        host: observe.host,
        port,
        log: this.log,
        endpoints: {
          metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
          health: () => this.health(),
          ready: () => {
            const r = this.readiness();
            return { ...r, details: { member: this.memberId, partitions: this.partitions() } };
          },
        },
      });
      this.log.info({ url: this.server.url, paths: ['/metrics', '/healthz', '/readyz'] }, 'observe endpoints listening');
    }
    this.timer = setInterval(() => {
      this.ticking = this.ticking.then(() => this.tick());
    }, observe.refreshMs);
    this.timer.unref();
  }

  health(): Probe {
    return health(this.runtime?.view() ?? null, this.opts.config.detector.stallTimeoutMs);
  }

  readiness(): Probe {
    const view = this.runtime?.view() ?? null;
    return readiness(view, view ? partitionStates(view, this.lagState?.lags ?? null) : [], {
      maxLagRecords: this.opts.config.observe.readyMaxLagRecords,
      measuredAtMs: this.lagState?.atMs ?? null,
      nowMs: this.now(),
      maxMeasurementAgeMs: MEASUREMENT_MAX_AGE_INTERVALS * this.opts.config.observe.refreshMs,
    });
  }

  partitions(): PartitionState[] {
    const view = this.runtime?.view();
    return view ? partitionStates(view, this.lagState?.lags ?? null) : [];
  }

  /** Measures lag and publishes the status record now (the timer does it every observe.refreshMs). */
  async refresh(): Promise<void> {
    this.ticking = this.ticking.then(() => this.tick());
    await this.ticking;
  }

  /** Stops the timer, removes the member's status record (a tombstone), closes the endpoint. Call after the runtime's stop. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    await this.ticking;
    this.lateLog.flush();
    if (this.published && this.producer) {
      const key = statusKey(this.opts.config.detector.groupId, this.memberId);
      await this.producer
        .send([{ topic: this.opts.config.topics.status, key, value: null }])
        .catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'could not remove the status record; it goes stale'));
    }
    await this.producer?.close().catch(() => undefined);
    await this.admin?.close().catch(() => undefined);
    await this.server?.close();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    this.lateLog.flush();
    const view = this.runtime?.view();
    // The topics exist once the runtime has started.
    if (!view?.started || view.stopping) return;
    try {
      this.lagState = { lags: await this.measureLag(view), atMs: this.now() };
      if (this.opts.config.observe.publishStatus) await this.publish(view);
    } catch (err) {
      if (this.now() - this.lastWarnMs >= WARN_EVERY_MS) {
        this.lastWarnMs = this.now();
        this.log.warn({ err: errorMessage(err) }, 'could not measure lag or publish the status record; retrying every observe.refreshMs');
      }
    }
  }

  /** Per owned partition: its end minus the consumer's position (its task's, else the group's committed offset). */
  private async measureLag(view: DetectorView): Promise<PartitionLag[]> {
    this.admin ??= await this.opts.transport.admin();
    const admin = this.admin;
    const topics = [...new Set(view.assignment.map((a) => a.topic))];
    const out: PartitionLag[] = [];
    for (const topic of topics) {
      const [ranges, committed] = await Promise.all([admin.topicOffsets(topic), admin.committedOffsets(view.groupId, topic)]);
      for (const a of view.assignment) {
        if (a.topic !== topic) continue;
        const range = ranges.find((r) => r.partition === a.partition);
        if (!range) continue;
        const task = view.tasks.find((t) => t.topic === topic && t.partition === a.partition);
        let position = task && task.position >= 0n ? task.position : (committed.get(a.partition) ?? range.low);
        if (position < range.low) position = range.low;
        out.push({ topic, partition: a.partition, stage: a.stage, lag: Math.max(0, Number(range.high - position)) });
      }
    }
    return out;
  }

  private async publish(view: DetectorView): Promise<void> {
    const { config } = this.opts;
    if (!this.producer) {
      const producer = this.opts.transport.producer();
      await producer.connect();
      this.producer = producer;
    }
    const partitions = partitionStates(view, this.lagState?.lags ?? null);
    const probe = this.readiness();
    const sum = (f: (p: PartitionState) => number) => partitions.reduce((n, p) => n + f(p), 0);
    const status: MemberStatus = {
      v: STATUS_RECORD_VERSION,
      groupId: view.groupId,
      memberId: this.memberId,
      host: hostname(),
      pid: process.pid,
      version: TRAILWATCH_VERSION,
      configHash: configHash(config),
      configVersion: view.metrics.configVersion === null ? null : String(view.metrics.configVersion),
      startedAtMs: this.startedAtMs,
      publishedAtMs: this.now(),
      intervalMs: config.observe.refreshMs,
      ready: probe.ok,
      reasons: probe.reasons,
      partitions,
      totals: {
        lag: partitions.some((p) => p.lag === null) ? null : sum((p) => p.lag ?? 0),
        keys: sum((p) => p.keys),
        openInsights: sum((p) => p.openInsights),
        eventsIn: view.metrics.eventsDecoded,
        lateEvents: view.work.principal.lateEvents + view.work.action.lateEvents,
        deadLetters: Object.values(view.metrics.deadLetters).reduce((n, c) => n + c, 0),
        insights: view.metrics.insightsEmitted,
        findings: view.metrics.findingsEmitted,
      },
    };
    await this.producer.send([{ topic: config.topics.status, key: statusKey(view.groupId, this.memberId), value: encodeStatus(status) }]);
    this.published = true;
  }
}
