import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { DetectorHooks, DetectorView, StageName } from '../runtime/detector.ts';
import type { IngestView } from '../runtime/ingest.ts';

/**
 * The detector's Prometheus metrics. Nearly all are read when scraped from what the runtime
 * already counts (`DetectorRuntime.view()`): nothing is added to the hot path but the three
 * duration histograms, which the runtime feeds through its hooks. Names follow Prometheus's
 * conventions: `trailwatch_` prefix, `_total` counters, base units (`_seconds`, `_bytes`).
 */

/** One member's consumer lag on one partition, as the observer last measured it. */
export interface PartitionLag {
  topic: string;
  partition: number;
  stage: StageName;
  /** Records between the consumer's position and the partition's end. */
  lag: number;
}

/** What the metrics read when scraped. */
export interface MetricsSource {
  /** Null before the runtime is attached. */
  view(): DetectorView | null;
  /** Null before the first measurement. */
  lags(): readonly PartitionLag[] | null;
  ready(): boolean;
  now(): number;
}

export interface BuildInfo {
  version: string;
  configHash: string;
  /** The applied config's version, once configs are versioned; empty until then. */
  configVersion: string;
}

export interface DetectorMetricsRegistry {
  registry: Registry;
  /** For DetectorRuntimeOptions.hooks: the histograms. */
  hooks: Required<Pick<DetectorHooks, 'batch' | 'transaction' | 'restored'>>;
}

const STAGES: readonly StageName[] = ['principal', 'action'];

// A batch or a transaction takes milliseconds to seconds; a restore, up to minutes for a large state.
const DURATION_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const RESTORE_BUCKETS_SECONDS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

type Labels = Record<string, string>;

/**
 * A counter whose value is read from a count the runtime keeps. Prometheus wants counters never
 * to go down, and one source can: the runtime drops the work of a batch that did not commit
 * (it is done again after the restore). The counter holds its highest value per series, so the
 * work done again is not counted twice.
 */
function sourcedCounter(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly string[],
  read: () => Iterable<[Labels, number]>,
): void {
  const highest = new Map<string, { labels: Labels; value: number }>();
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      for (const [labels, value] of read()) {
        const key = JSON.stringify(labels);
        const known = highest.get(key);
        if (!known || value > known.value) highest.set(key, { labels, value });
      }
      this.reset();
      if (labelNames.length === 0) this.inc(highest.get('{}')?.value ?? 0);
      for (const { labels, value } of highest.values()) if (labelNames.length > 0) this.inc(labels, value);
    },
  });
}

/** A gauge set to what `read` gives when scraped; series it no longer gives disappear. */
function sourcedGauge(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly string[],
  read: () => Iterable<[Labels, number]>,
): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.set(labels, value);
    },
  });
}

function* perStage(view: DetectorView | null, value: (view: DetectorView, stage: StageName) => number): Iterable<[Labels, number]> {
  if (!view) return;
  for (const stage of STAGES) yield [{ stage }, value(view, stage)];
}

function* byKind(counts: Record<string, number>): Iterable<[Labels, number]> {
  for (const [kind, n] of Object.entries(counts)) yield [{ kind }, n];
}

function* nested(counts: Record<string, Record<string, number>>): Iterable<[Labels, number]> {
  for (const [type, byState] of Object.entries(counts)) for (const [state, n] of Object.entries(byState)) yield [{ type, state }, n];
}

/** A registry with the detector's metrics, Node's process metrics, and the hooks that feed its histograms. */
export function createMetricsRegistry(source: MetricsSource, info: BuildInfo): DetectorMetricsRegistry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const view = () => source.view();
  const one = (value: number | undefined): Iterable<[Labels, number]> => (value === undefined ? [] : [[{}, value]]);

  // Input.
  sourcedCounter(registry, 'trailwatch_events_in_total', 'Events decoded from the events topic and handed to detection.', [], () =>
    one(view()?.metrics.eventsDecoded),
  );
  sourcedCounter(
    registry,
    'trailwatch_records_consumed_total',
    'Records of the events and repartition topics consumed and committed.',
    [],
    () => one(view()?.metrics.recordsConsumed),
  );
  sourcedCounter(
    registry,
    'trailwatch_events_late_total',
    'Events that arrived after their bucket had closed (past detector.allowedLatenessMs): not counted in the rates, still seen by the rules.',
    ['stage'],
    () => perStage(view(), (v, s) => v.work[s].lateEvents),
  );
  sourcedCounter(registry, 'trailwatch_events_duplicate_total', 'Events dropped as repeats of an event id already seen.', [], () => {
    const v = view();
    return one(v ? v.work.principal.duplicates + v.work.action.duplicates : undefined);
  });
  sourcedCounter(registry, 'trailwatch_dead_letters_total', 'Records sent to the dead-letter topic, by error code.', ['code'], () => {
    const v = view();
    return v ? Object.entries(v.metrics.deadLetters).map(([code, n]): [Labels, number] => [{ code }, n]) : [];
  });

  // Output.
  sourcedCounter(
    registry,
    'trailwatch_insights_total',
    'Insights committed to the alerts topic, by insight type and state (Start, End).',
    ['type', 'state'],
    () => nested(view()?.metrics.insightsByType ?? {}),
  );
  sourcedCounter(
    registry,
    'trailwatch_findings_total',
    'Findings committed to the findings topic, by kind and activity (Create, Update).',
    ['type', 'state'],
    () => nested(view()?.metrics.findingsByKindActivity ?? {}),
  );
  sourcedCounter(
    registry,
    'trailwatch_insights_suppressed_total',
    'Insights kept back by detector.suppressions (not emitted), by insight type and state (Start, End); a retried batch counts again.',
    ['type', 'state'],
    () => nested(view()?.metrics.insightsSuppressedByType ?? {}),
  );
  sourcedCounter(
    registry,
    'trailwatch_findings_suppressed_total',
    'Findings kept back by findings.suppressions (not emitted), by kind; a retried batch counts again.',
    ['kind'],
    () => byKind(view()?.metrics.findingsSuppressedByKind ?? {}),
  );
  sourcedCounter(
    registry,
    'trailwatch_findings_dropped_total',
    'Findings dropped by a findings.overrides entry with enabled: false, by kind; a retried batch counts again.',
    ['kind'],
    () => byKind(view()?.metrics.findingsDroppedByKind ?? {}),
  );
  sourcedGauge(
    registry,
    'trailwatch_config_version',
    "The config topic's version (trailwatch config history) the tasks run now; 0 while on the file and environment config.",
    [],
    () => {
      const v = view();
      return v ? one(v.metrics.configVersion ?? 0) : [];
    },
  );
  sourcedGauge(
    registry,
    'trailwatch_insights_open',
    'Insights started and not yet ended, in the partitions this member owns.',
    ['stage'],
    function* () {
      for (const stage of STAGES) {
        const tasks = view()?.tasks.filter((t) => t.stage === stage);
        if (tasks) yield [{ stage }, tasks.reduce((n, t) => n + t.openInsights, 0)];
      }
    },
  );

  // State.
  sourcedGauge(registry, 'trailwatch_keys_active', 'Keys held in memory by the partitions this member owns.', ['stage'], function* () {
    for (const stage of STAGES) {
      const tasks = view()?.tasks.filter((t) => t.stage === stage);
      if (tasks) yield [{ stage }, tasks.reduce((n, t) => n + t.activeKeys, 0)];
    }
  });
  sourcedCounter(registry, 'trailwatch_keys_created_total', 'Keys created.', ['stage'], () =>
    perStage(view(), (v, s) => v.work[s].keysCreated),
  );
  sourcedCounter(
    registry,
    'trailwatch_keys_evicted_total',
    'Keys dropped: reason capacity (detector.maxKeys reached, least recently active first) or idle (detector.keyIdleTtlMs).',
    ['stage', 'reason'],
    function* () {
      const v = view();
      if (!v) return;
      for (const stage of STAGES) {
        yield [{ stage, reason: 'capacity' }, v.work[stage].keysEvicted];
        yield [{ stage, reason: 'idle' }, v.work[stage].keysExpired];
      }
    },
  );
  sourcedCounter(
    registry,
    'trailwatch_changelog_written_bytes_total',
    'Bytes of state changes committed to the changelog topics.',
    [],
    () => one(view()?.metrics.changelogBytesWritten),
  );
  sourcedCounter(registry, 'trailwatch_changelog_restored_bytes_total', 'Bytes of changelog read back when restoring partitions.', [], () =>
    one(view()?.metrics.changelogBytesRestored),
  );
  sourcedCounter(registry, 'trailwatch_restores_total', 'Partitions whose state was restored from their changelog.', [], () =>
    one(view()?.metrics.partitionsRestored),
  );

  // Progress.
  sourcedGauge(registry, 'trailwatch_partitions_assigned', 'Partitions this member owns.', ['stage'], function* () {
    const v = view();
    if (v) for (const stage of STAGES) yield [{ stage }, v.assignment.filter((a) => a.stage === stage).length];
  });
  sourcedGauge(
    registry,
    'trailwatch_partitions_restored',
    'Owned partitions whose state is restored and running (a partition is restored at its first record).',
    ['stage'],
    function* () {
      const v = view();
      if (v) for (const stage of STAGES) yield [{ stage }, v.tasks.filter((t) => t.stage === stage).length];
    },
  );
  sourcedGauge(registry, 'trailwatch_partitions_failing', 'Owned partitions whose last batch failed (retrying with backoff).', [], () =>
    one(view()?.failing.length),
  );
  sourcedGauge(
    registry,
    'trailwatch_consumer_lag_records',
    "Records between this member's position and the end of each partition it owns (measured every observe.refreshMs).",
    ['topic', 'partition'],
    () => (source.lags() ?? []).map((l): [Labels, number] => [{ topic: l.topic, partition: String(l.partition) }, l.lag]),
  );
  sourcedGauge(
    registry,
    'trailwatch_watermark_delay_seconds',
    'Wall time minus event time: how far behind now the watermark of each owned partition is.',
    ['stage', 'partition'],
    function* () {
      const nowMs = source.now();
      for (const t of view()?.tasks ?? []) {
        if (t.watermarkMs !== null) yield [{ stage: t.stage, partition: String(t.partition) }, (nowMs - t.watermarkMs) / 1000];
      }
    },
  );
  sourcedCounter(registry, 'trailwatch_transactions_total', 'Transactions by outcome (committed, aborted).', ['outcome'], function* () {
    const v = view();
    if (!v) return;
    yield [{ outcome: 'committed' }, v.metrics.transactionsCommitted];
    yield [{ outcome: 'aborted' }, v.metrics.transactionsAborted];
  });
  sourcedCounter(registry, 'trailwatch_produce_requests_total', 'Produce requests the committed transactions took.', [], () =>
    one(view()?.metrics.produceRounds),
  );
  sourcedGauge(registry, 'trailwatch_ready', '1 while /readyz answers 200: partitions assigned, restored, caught up.', [], () =>
    one(source.ready() ? 1 : 0),
  );
  const build = new Gauge({
    name: 'trailwatch_build_info',
    help: 'Always 1; the labels name the trailwatch version and the detection config this member runs.',
    labelNames: ['version', 'config_hash', 'config_version'],
    registers: [registry],
  });
  build.set({ version: info.version, config_hash: info.configHash, config_version: info.configVersion }, 1);

  const batch = new Histogram({
    name: 'trailwatch_batch_duration_seconds',
    help: 'Time to process and commit one fetched batch of one partition.',
    labelNames: ['stage'],
    buckets: DURATION_BUCKETS_SECONDS,
    registers: [registry],
  });
  const transaction = new Histogram({
    name: 'trailwatch_transaction_duration_seconds',
    help: 'Time from a transaction begin to its commit (output, changelog and offsets together).',
    labelNames: ['stage'],
    buckets: DURATION_BUCKETS_SECONDS,
    registers: [registry],
  });
  const restore = new Histogram({
    name: 'trailwatch_restore_duration_seconds',
    help: "Time to restore one partition's state from its changelog.",
    labelNames: ['stage'],
    buckets: RESTORE_BUCKETS_SECONDS,
    registers: [registry],
  });
  return {
    registry,
    hooks: {
      batch: (stage, seconds) => batch.observe({ stage }, seconds),
      transaction: (stage, seconds) => transaction.observe({ stage }, seconds),
      restored: (stage, seconds) => restore.observe({ stage }, seconds),
    },
  };
}

/**
 * The raw-ingest stage's metrics (`trailwatch ingest`), read when scraped from what the stage
 * counts once each transaction commits: messages in (by format), events out, records skipped,
 * dead letters by code, transactions; Node's process metrics too.
 */
export function createIngestMetricsRegistry(view: () => IngestView | null): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const one = (value: number | undefined): Iterable<[Labels, number]> => (value === undefined ? [] : [[{}, value]]);
  const byLabel = (label: string, counts: Record<string, number> | undefined): Iterable<[Labels, number]> =>
    Object.entries(counts ?? {}).map(([value, n]): [Labels, number] => [{ [label]: value }, n]);
  sourcedCounter(
    registry,
    'trailwatch_ingest_messages_total',
    'Raw messages consumed and committed, by the format they were read as (unknown: not recognized or not opened).',
    ['format'],
    () => byLabel('format', view()?.metrics.messagesByFormat),
  );
  sourcedCounter(registry, 'trailwatch_ingest_events_total', 'AuditEvents committed to the events topic.', [], () =>
    one(view()?.metrics.eventsOut),
  );
  sourcedCounter(
    registry,
    'trailwatch_ingest_skipped_total',
    'Records read that are not API calls (other stages, control messages, other EventBridge detail-types).',
    [],
    () => one(view()?.metrics.skipped),
  );
  sourcedCounter(
    registry,
    'trailwatch_ingest_dead_letters_total',
    'Messages and records sent to the dead-letter topic, by error code.',
    ['code'],
    () => byLabel('code', view()?.metrics.deadLetters),
  );
  sourcedCounter(
    registry,
    'trailwatch_ingest_transactions_total',
    'Transactions by outcome (committed, aborted).',
    ['outcome'],
    function* () {
      const v = view();
      if (!v) return;
      yield [{ outcome: 'committed' }, v.metrics.transactionsCommitted];
      yield [{ outcome: 'aborted' }, v.metrics.transactionsAborted];
    },
  );
  sourcedGauge(registry, 'trailwatch_ingest_partitions_assigned', 'Raw partitions this member owns.', [], () =>
    one(view()?.assignment.length),
  );
  return registry;
}

/** Every series name a registry exposes: its metrics, a histogram's `_bucket`, `_sum` and `_count` too. */
export function exposedNames(registry: Registry): Set<string> {
  const names = new Set<string>();
  for (const metric of registry.getMetricsAsArray()) {
    const { name } = metric as unknown as { name: string };
    names.add(name);
    if (metric instanceof Histogram) for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
  }
  return names;
}
