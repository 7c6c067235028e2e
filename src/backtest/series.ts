/**
 * Backtest of pre-aggregated rows: counts CSVs and metric series. A row is one key's value in one
 * bucket, so it goes to the engine as that bucket's value (a BucketPartial, as the second stage
 * of the live topology receives them) and never becomes events: a run costs time per row, not
 * per count. One DetectionEngine judges every key on the per-action call-rate path, under the
 * synthetic identity of inputs.ts (service `counts`, account 000000000000, region `counts`).
 *
 * Pure like backtest.ts: rows in (in time order), Insights and per-bucket observations out
 * through callbacks. The same end-of-input rule: the watermark moves to the last row's time + one
 * bucket, and Insights still open then stay open.
 *
 * Rows of one key in one bucket add up. Lateness is as live: after every batch the watermark
 * moves to the latest row time − allowedLatenessMs, and a row whose bucket has closed by then is
 * late and left out (only possible with presorted input that is not in order).
 */
import type { DetectorConfig } from '../config/schema.ts';
import type { Insight } from '../contracts/types.ts';
import { type BucketObservation, type BucketPartial, DetectionEngine, type EngineOptions, type KeyIdentity } from '../detect/engine.ts';
import { keyId } from '../detect/state.ts';
import { collecting, DEFAULT_BATCH_SIZE, drive } from './backtest.ts';
import { COUNTS_ACCOUNT, COUNTS_REGION, COUNTS_SERVICE, type CountsRow } from './inputs.ts';

/** What a row's value is: events counted (`counts`), or a real-valued metric (`gauge`). */
export type ValueModel = NonNullable<EngineOptions['valueModel']>;

export type SeriesRow = Pick<CountsRow, 'timestampMs' | 'key' | 'value'>;

export interface SeriesBacktestOptions {
  /** `counts` (default) for counts CSVs, `gauge` for a metric series. */
  valueModel?: ValueModel;
  /**
   * Most rows per `ingestPartials` call, each followed by the watermark (default 500). A batch also
   * ends where the rows' time enters a new bucket.
   */
  batchSize?: number;
  /** Each Insight as it comes out, with the engine's watermark at that moment. */
  onInsight?: (insight: Insight, watermarkMs: number) => void;
  /** Each judged bucket of each key. */
  onBucket?: (observation: BucketObservation) => void;
}

export interface SeriesStats {
  /** Rows handed to the backtest. */
  rowsIn: number;
  /** Rows folded into their bucket: rowsIn − rowsLate. */
  rowsUsed: number;
  /** Rows whose bucket had closed when they came (presorted input out of order). */
  rowsLate: number;
  /** Sum of the values of the rows used: the events a counts input stands for. */
  valueSum: number;
  keysCreated: number;
  activeKeys: number;
  starts: number;
  ends: number;
  /** Insights started and not ended when the input ran out. */
  openAtEnd: number;
  /** null until a row was seen. */
  firstRowMs: number | null;
  lastRowMs: number | null;
  watermarkMs: number;
}

/** A series backtest in progress: push rows in time order, then `finish()`. */
export class SeriesBacktest {
  readonly engine: DetectionEngine;
  private readonly bucketMs: number;
  private readonly latenessMs: number;
  private readonly batchSize: number;
  private readonly valueModel: ValueModel;
  private readonly onInsight: SeriesBacktestOptions['onInsight'];
  private readonly identities = new Map<string, KeyIdentity>();
  private batch: SeriesRow[] = [];
  private readonly open = new Set<string>();
  private rowsIn = 0;
  private rowsLate = 0;
  private valueSum = 0;
  private starts = 0;
  private ends = 0;
  private firstRowMs: number | null = null;
  private lastRowMs: number | null = null;
  private finished = false;

  constructor(detector: DetectorConfig, options: SeriesBacktestOptions = {}) {
    this.bucketMs = detector.bucketMs;
    this.latenessMs = detector.allowedLatenessMs;
    this.batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
    this.onInsight = options.onInsight;
    this.valueModel = options.valueModel ?? 'counts';
    this.engine = new DetectionEngine(detector, {
      valueModel: this.valueModel,
      ...(options.onBucket ? { onBucket: options.onBucket } : {}),
    });
  }

  push(row: SeriesRow): void {
    if (this.finished) throw new Error('SeriesBacktest.push after finish()');
    // A batch ends where time enters a new bucket, so the watermark moves as it would live and a
    // key holds a few open buckets (the lateness window's), not one per row of the batch: the
    // engine looks its open buckets up by scanning them.
    if (this.lastRowMs !== null && Math.floor(row.timestampMs / this.bucketMs) > Math.floor(this.lastRowMs / this.bucketMs)) this.flush();
    this.batch.push(row);
    this.rowsIn++;
    this.firstRowMs ??= row.timestampMs;
    if (this.lastRowMs === null || row.timestampMs > this.lastRowMs) this.lastRowMs = row.timestampMs;
    if (this.batch.length >= this.batchSize) this.flush();
  }

  /** Hands the pending rows to the engine and moves the watermark to the latest row − allowed lateness. */
  flush(): void {
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    const { bucketMs } = this;
    // The engine closes every bucket ending at or before the bucket-aligned watermark.
    const closedThroughMs = Math.floor(this.engine.watermarkMs / bucketMs) * bucketMs;
    const partials: BucketPartial[] = [];
    for (const row of batch) {
      const bucketStartMs = Math.floor(row.timestampMs / bucketMs) * bucketMs;
      if (bucketStartMs + bucketMs <= closedThroughMs) {
        this.rowsLate++;
        continue;
      }
      this.valueSum += row.value;
      // A count of zero is no calls: the engine folds a bucket without data as zero anyway, and
      // handed in, it would open the key (and count its first bucket) before any call came, where
      // events never would. A metric's zero is a reading like any other.
      if (row.value === 0 && this.valueModel === 'counts') continue;
      partials.push(this.partial(row, bucketStartMs));
    }
    this.engine.ingestPartials(partials);
    this.emit(this.engine.advanceWatermark((this.lastRowMs ?? Number.NEGATIVE_INFINITY) - this.latenessMs));
  }

  /** Flushes, judges the last buckets (watermark → last row + one bucket) and returns the totals. Open Insights stay open. */
  finish(): SeriesStats {
    if (!this.finished) {
      this.flush();
      if (this.lastRowMs !== null) this.emit(this.engine.advanceWatermark(this.lastRowMs + this.bucketMs));
      this.finished = true;
    }
    return this.stats();
  }

  stats(): SeriesStats {
    return {
      rowsIn: this.rowsIn,
      rowsUsed: this.rowsIn - this.rowsLate - this.batch.length,
      rowsLate: this.rowsLate,
      valueSum: this.valueSum,
      keysCreated: this.engine.metrics.keysCreated,
      activeKeys: this.engine.activeKeys,
      starts: this.starts,
      ends: this.ends,
      openAtEnd: this.open.size,
      firstRowMs: this.firstRowMs,
      lastRowMs: this.lastRowMs,
      watermarkMs: this.engine.watermarkMs,
    };
  }

  /**
   * The row as the first stage would have forwarded its events: one principal (named by the key),
   * no user agent, no error code. For a metric series these "contributors" carry the value itself.
   */
  private partial(row: SeriesRow, bucketStartMs: number): BucketPartial {
    const { key, value } = row;
    return {
      key: this.identity(key),
      bucketStartMs,
      count: value,
      contributors: { userIdentityArn: [[key, value]], userAgent: [['null', value]], errorCode: [['null', value]] },
    };
  }

  private identity(key: string): KeyIdentity {
    let identity = this.identities.get(key);
    if (identity === undefined) {
      identity = {
        id: keyId('action', 'ApiCallRateInsight', COUNTS_ACCOUNT, COUNTS_REGION, null, COUNTS_SERVICE, key, null),
        scope: 'action',
        insightType: 'ApiCallRateInsight',
        accountId: COUNTS_ACCOUNT,
        region: COUNTS_REGION,
        service: COUNTS_SERVICE,
        action: key,
        principal: null,
        errorCode: null,
      };
      this.identities.set(key, identity);
    }
    return identity;
  }

  private emit(insights: Insight[]): void {
    const watermarkMs = this.engine.watermarkMs;
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
  }
}

export interface SeriesRunOptions extends SeriesBacktestOptions {
  /** After every batch of rows (every `batchSize`), e.g. to drain output or report progress. */
  onProgress?: (stats: SeriesStats) => void | Promise<void>;
}

/** Runs a whole series backtest over `rows` (sync or async, in time order). */
export function runSeriesBacktest(
  rows: Iterable<SeriesRow> | AsyncIterable<SeriesRow>,
  detector: DetectorConfig,
  options: SeriesRunOptions = {},
): Promise<SeriesStats> {
  return drive(new SeriesBacktest(detector, options), rows, options.batchSize, options.onProgress);
}

export interface SeriesResult {
  insights: Insight[];
  series: BucketObservation[];
  stats: SeriesStats;
}

/** A whole series backtest in memory, for tests and small inputs. */
export function backtestSeries(rows: Iterable<SeriesRow>, detector: DetectorConfig, options: SeriesBacktestOptions = {}): SeriesResult {
  const run = collecting(options);
  const backtest = new SeriesBacktest(detector, run.options);
  for (const row of rows) backtest.push(row);
  return { insights: run.insights, series: run.series, stats: backtest.finish() };
}
