/**
 * Backtest: the live detector's topology (both stages, every partition), driven offline over history. Pure: events in (any
 * iterable, in event-time order), Insights and per-bucket observations out through callbacks;
 * no files, no Kafka. `trailwatch backtest` and the quality harness both run through here, so
 * what they measure is what `trailwatch run` would have emitted on the same events.
 *
 * End of input: the watermark is advanced to the last event time + one bucket, so the last
 * buckets are judged as a live run would judge them once event time moves on. Insights still
 * open then are not forced closed (a live run would not close them either); they are counted
 * as open at the end.
 */
import type { DetectorConfig } from '../config/schema.ts';
import type { AuditEvent, Finding, Insight } from '../contracts/types.ts';
import type { BucketObservation } from '../detect/engine.ts';
import type { FindingSetup } from '../detect/findings.ts';
import { Topology } from '../detect/topology.ts';

export const DEFAULT_BATCH_SIZE = 500;

export interface BacktestOptions {
  /**
   * Partitions of the events topic (default 1). Per-principal state is per partition, as in the
   * live detector: give the topic's count to reproduce a live run exactly.
   */
  partitions?: number;
  /** Partitions of the action-keyed repartition topic (default: as many as `partitions`). */
  actionPartitions?: number;
  /** Events per `engine.process` call (default 500), as a consumer would fetch them. */
  batchSize?: number;
  /**
   * Also cut a batch whenever event time crosses a multiple of this many ms, so the watermark
   * moves as it would with events trickling in live. Off by default; the quality harness uses
   * it to measure time to detect without a batch-size artefact.
   */
  batchSpanMs?: number;
  /** Each Insight as it comes out, with the engine's watermark at that moment. */
  onInsight?: (insight: Insight, watermarkMs: number) => void;
  /** Each judged bucket of each key (keys with data in the bucket, or with an Insight candidate or open). */
  onBucket?: (observation: BucketObservation) => void;
  /** Rules, correlations, first-seen and breadth as `run` has them; absent: Insights only. */
  findings?: FindingSetup;
  /** Each finding as it comes out, with the slowest first-stage watermark at that moment. */
  onFinding?: (finding: Finding, watermarkMs: number) => void;
}

export interface BacktestStats {
  /** Events handed to the backtest (before the engine's dedupe and lateness checks). */
  eventsIn: number;
  eventsProcessed: number;
  lateEvents: number;
  duplicates: number;
  keysCreated: number;
  activeKeys: number;
  starts: number;
  ends: number;
  /** Findings (Creates and Updates). */
  findings: number;
  /** Insights started and not ended when the input ran out. */
  openAtEnd: number;
  /** null until an event was seen. */
  firstEventMs: number | null;
  lastEventMs: number | null;
  watermarkMs: number;
}

/** A backtest in progress: push events in event-time order, then `finish()`. */
export class Backtest {
  readonly topology: Topology;
  private readonly bucketMs: number;
  private readonly batchSize: number;
  private readonly batchSpanMs: number | undefined;
  private readonly onInsight: BacktestOptions['onInsight'];
  private readonly onFinding: BacktestOptions['onFinding'];
  private findingCount = 0;
  private batch: AuditEvent[] = [];
  private batchSlot = Number.NaN;
  private readonly open = new Set<string>();
  private eventsIn = 0;
  private starts = 0;
  private ends = 0;
  private firstEventMs: number | null = null;
  private lastEventMs: number | null = null;
  private finished = false;

  constructor(detector: DetectorConfig, options: BacktestOptions = {}) {
    this.batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
    this.batchSpanMs = options.batchSpanMs;
    this.onInsight = options.onInsight;
    this.onFinding = options.onFinding;
    const partitions = Math.max(1, options.partitions ?? 1);
    this.bucketMs = detector.bucketMs;
    this.topology = new Topology(detector, {
      partitions,
      actionPartitions: Math.max(1, options.actionPartitions ?? partitions),
      ...(options.onBucket ? { onBucket: options.onBucket } : {}),
      ...(options.findings ? { findings: options.findings } : {}),
    });
  }

  push(event: AuditEvent): void {
    if (this.finished) throw new Error('Backtest.push after finish()');
    if (this.batchSpanMs !== undefined) {
      const slot = Math.floor(event.eventTimeMs / this.batchSpanMs);
      if (slot !== this.batchSlot && this.batch.length > 0) this.flush();
      this.batchSlot = slot;
    }
    this.batch.push(event);
    this.eventsIn++;
    if (this.firstEventMs === null) this.firstEventMs = event.eventTimeMs;
    if (this.lastEventMs === null || event.eventTimeMs > this.lastEventMs) this.lastEventMs = event.eventTimeMs;
    if (this.batch.length >= this.batchSize) this.flush();
  }

  /** Hands the pending events to the engine now. */
  flush(): void {
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.emit(this.topology.process(batch));
  }

  /** Flushes, judges the last buckets (watermark → last event + one bucket) and returns the totals. Open Insights stay open. */
  finish(): BacktestStats {
    if (!this.finished) {
      this.flush();
      if (this.lastEventMs !== null) this.emit(this.topology.advanceWatermark(this.lastEventMs + this.bucketMs));
      this.finished = true;
    }
    return this.stats();
  }

  stats(): BacktestStats {
    const engines = this.topology.engines();
    const sum = (f: (e: (typeof engines)[number]) => number) => engines.reduce((n, e) => n + f(e), 0);
    return {
      eventsIn: this.eventsIn,
      eventsProcessed: sum((e) => e.metrics.eventsProcessed),
      lateEvents: sum((e) => e.metrics.lateEvents),
      duplicates: sum((e) => e.metrics.duplicates),
      keysCreated: sum((e) => e.metrics.keysCreated),
      activeKeys: sum((e) => e.activeKeys),
      starts: this.starts,
      ends: this.ends,
      findings: this.findingCount,
      openAtEnd: this.open.size,
      firstEventMs: this.firstEventMs,
      lastEventMs: this.lastEventMs,
      watermarkMs: this.topology.watermarkMs,
    };
  }

  private emit(insights: Insight[]): void {
    const watermarkMs = this.topology.watermarkMs;
    for (const insight of insights) {
      if (insight.insightDetails.state === 'Start') {
        this.starts++;
        this.open.add(insight.sharedEventID);
      } else {
        this.ends++;
        this.open.delete(insight.sharedEventID);
      }
      this.onInsight?.(insight, watermarkMs);
    }
    for (const finding of this.topology.drainFindings()) {
      this.findingCount++;
      this.onFinding?.(finding, watermarkMs);
    }
  }
}

export interface BacktestRunOptions extends BacktestOptions {
  /** After every batch of events pushed (every `batchSize`), e.g. to drain output or report progress. */
  onProgress?: (stats: BacktestStats) => void | Promise<void>;
}

/** Runs a whole backtest over `events` (sync or async, in event-time order). */
export function runBacktest(
  events: Iterable<AuditEvent> | AsyncIterable<AuditEvent>,
  detector: DetectorConfig,
  options: BacktestRunOptions = {},
): Promise<BacktestStats> {
  return drive(new Backtest(detector, options), events, options.batchSize, options.onProgress);
}

/** What drive() and collecting() need of a backtest: events or series rows in, stats out. */
interface Driven<T, S> {
  push(item: T): void;
  stats(): S;
  finish(): S;
}

/** Pushes every item, reports progress every `batchSize` items and at the end, and finishes. */
export async function drive<T, S>(
  backtest: Driven<T, S>,
  items: Iterable<T> | AsyncIterable<T>,
  batchSize: number | undefined,
  onProgress: ((stats: S) => void | Promise<void>) | undefined,
): Promise<S> {
  const every = Math.max(1, batchSize ?? DEFAULT_BATCH_SIZE);
  let n = 0;
  for await (const item of items) {
    backtest.push(item);
    if (++n % every === 0 && onProgress) await onProgress(backtest.stats());
  }
  const stats = backtest.finish();
  await onProgress?.(stats);
  return stats;
}

type Hooks = Pick<BacktestOptions, 'onInsight' | 'onBucket'>;

/**
 * Options whose onInsight and onBucket also hand what they see to `tap` (first), e.g. a report
 * being collected beside the CLI's own outputs. A hook neither has stays off.
 */
export function tapping<O extends Hooks>(options: O, tap: Hooks): O {
  const out: O = { ...options };
  if (tap.onInsight || options.onInsight) {
    out.onInsight = (insight: Insight, watermarkMs: number) => {
      tap.onInsight?.(insight, watermarkMs);
      options.onInsight?.(insight, watermarkMs);
    };
  }
  if (tap.onBucket || options.onBucket) {
    out.onBucket = (observation: BucketObservation) => {
      tap.onBucket?.(observation);
      options.onBucket?.(observation);
    };
  }
  return out;
}

/** Options whose onInsight and onBucket also collect what they see, for the in-memory runs. */
export function collecting<O extends Hooks>(options: O): { options: O; insights: Insight[]; series: BucketObservation[] } {
  const insights: Insight[] = [];
  const series: BucketObservation[] = [];
  return {
    insights,
    series,
    options: tapping(options, { onInsight: (insight) => insights.push(insight), onBucket: (observation) => series.push(observation) }),
  };
}

export interface BacktestResult {
  insights: Insight[];
  series: BucketObservation[];
  stats: BacktestStats;
}

/** A whole backtest in memory, for tests and small inputs. */
export function backtestEvents(events: Iterable<AuditEvent>, detector: DetectorConfig, options: BacktestOptions = {}): BacktestResult {
  const run = collecting(options);
  const backtest = new Backtest(detector, run.options);
  for (const event of events) backtest.push(event);
  return { insights: run.insights, series: run.series, stats: backtest.finish() };
}

/** The CSV header of a series file. */
export const SERIES_HEADER = 'timestamp,key,count,baseline,score,expected,rawScore,veto,direction,sustained';

/**
 * One series row: bucket start (ISO-8601), key id, count (a metric series' value), baseline mean
 * per bucket, the decision score (what the Start/End machine reads: 0 when a floor vetoed the
 * bucket), the expectation the bucket was judged against, the score before the floors, the floor
 * that vetoed it (empty when none), which way it was unusual, and whether a sustained run carried
 * the evidence; fractions rounded to 6 decimals.
 */
export function seriesLine(o: BucketObservation): string {
  return `${new Date(o.bucketStartMs).toISOString()},${csvField(o.keyId)},${round6(o.count)},${round6(o.baselineMean)},${round6(o.score)},${round6(o.expected)},${round6(o.rawScore)},${o.veto ?? ''},${o.direction},${o.sustained}`;
}

/** Whole numbers as they are (a count can be past where n × 10⁶ stays exact); fractions to 6 decimals. */
function round6(n: number): number {
  return Number.isInteger(n) ? n : Math.round(n * 1e6) / 1e6;
}

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}
