/**
 * What `trailwatch backtest --report` collects and how it shapes it for the page
 * (src/emit/report.ts draws it). Pure: a `ReportRecorder` per run takes the same hooks the
 * `--series` output does (every judged bucket, every Insight), and `buildReport` turns one or two
 * recorders into the page's facts: the keys to chart (capped, downsampled, with an expected band),
 * the score histogram, Insights per day and type, and which Insights appear or vanish under a
 * second configuration.
 *
 * Memory: 16 bytes per judged bucket per run (a bucket start as a double, three floats), kept for
 * every key until the end because which keys fire is known only then. A run over 10 million judged
 * buckets holds about 160 MB for the report.
 */
import type { Insight } from '../contracts/types.ts';
import { decadesOf, surpriseAbove, surpriseBelow, type ValueModel } from '../detect/baseline/score.ts';
import type { BucketObservation } from '../detect/engine.ts';
import { globToRegExp } from '../detect/overrides.ts';
import { keyId } from '../detect/state.ts';
import type { ReportData, ReportInsight, ReportKey, ReportLeftOut, ReportRun, ReportRunName, ReportSeries } from '../emit/report.ts';

const DAY_MS = 86_400_000;

export const REPORT_DEFAULTS = {
  /** Keys charted at most; the others are listed by name. */
  maxKeys: 50,
  /** Points a key's chart holds at most: longer series keep each stretch's lowest and highest bucket. */
  maxPoints: 600,
  /** Histogram bins over the score's (0, 1]. */
  histogramBins: 50,
  /** Keys over the cap listed by name at most. */
  leftOutListed: 200,
} as const satisfies Record<string, number>;

/** One key's judged buckets in columns, in the order they were judged (time order). */
export class KeyColumns {
  t = new Float64Array(16);
  value = new Float32Array(16);
  expected = new Float32Array(16);
  dispersion = new Float32Array(16);
  score = new Float32Array(16);
  length = 0;
  peak = 0;

  push(o: BucketObservation): void {
    if (this.length === this.t.length) this.grow();
    const i = this.length++;
    this.t[i] = o.bucketStartMs;
    this.value[i] = o.count;
    this.expected[i] = o.expected;
    this.dispersion[i] = o.dispersion;
    this.score[i] = o.score;
    if (o.score > this.peak) this.peak = o.score;
  }

  private grow(): void {
    const size = this.t.length * 2;
    const t = new Float64Array(size);
    t.set(this.t);
    this.t = t;
    for (const name of ['value', 'expected', 'dispersion', 'score'] as const) {
      const next = new Float32Array(size);
      next.set(this[name]);
      this[name] = next;
    }
  }
}

interface RecordedInsight {
  keyId: string;
  type: string;
  sharedEventID: string;
  startMs: number;
  endMs: number | null;
  score: number;
  threshold: number;
}

/** The key id an Insight is about: the id its buckets carry in the series. */
export function insightKeyId(insight: Insight): string {
  const d = insight.insightDetails;
  return keyId(
    insight.trailwatch.scope,
    d.insightType,
    insight.recipientAccountId,
    insight.awsRegion,
    insight.trailwatch.principal,
    d.eventSource,
    d.eventName,
    d.errorCode ?? null,
  );
}

/** One run's share of the report: give its `onBucket` and `onInsight` to the backtest (see `tapping`). */
export class ReportRecorder {
  readonly keys = new Map<string, KeyColumns>();
  readonly histogram: number[];
  zero = 0;
  firstMs: number | null = null;
  lastMs: number | null = null;
  /** Insights in the order they started. */
  readonly insights: RecordedInsight[] = [];
  private readonly open = new Map<string, RecordedInsight>();

  constructor(bins: number = REPORT_DEFAULTS.histogramBins) {
    this.histogram = new Array<number>(bins).fill(0);
  }

  readonly onBucket = (o: BucketObservation): void => {
    let columns = this.keys.get(o.keyId);
    if (columns === undefined) {
      columns = new KeyColumns();
      this.keys.set(o.keyId, columns);
    }
    columns.push(o);
    if (o.score > 0) {
      const bins = this.histogram.length;
      const bin = Math.min(bins - 1, Math.max(0, Math.ceil(o.score * bins) - 1));
      this.histogram[bin] = (this.histogram[bin] ?? 0) + 1;
    } else {
      this.zero++;
    }
    if (this.firstMs === null || o.bucketStartMs < this.firstMs) this.firstMs = o.bucketStartMs;
    if (this.lastMs === null || o.bucketStartMs > this.lastMs) this.lastMs = o.bucketStartMs;
  };

  readonly onInsight = (insight: Insight): void => {
    const tw = insight.trailwatch;
    const seen = this.open.get(insight.sharedEventID);
    if (insight.insightDetails.state === 'End' && seen !== undefined) {
      seen.endMs = tw.endTimeMs;
      seen.score = Math.max(seen.score, tw.score);
      this.open.delete(insight.sharedEventID);
      return;
    }
    const recorded: RecordedInsight = {
      keyId: insightKeyId(insight),
      type: `${insight.insightDetails.insightType} · ${tw.scope}`,
      sharedEventID: insight.sharedEventID,
      startMs: tw.startTimeMs,
      endMs: insight.insightDetails.state === 'End' ? tw.endTimeMs : null,
      score: tw.score,
      threshold: tw.threshold,
    };
    this.insights.push(recorded);
    if (recorded.endMs === null) this.open.set(insight.sharedEventID, recorded);
  };
}

export interface ReportRunLabel {
  /** The configuration's name: its file, or "defaults". */
  label: string;
  /** detector.scoreThreshold of the run (a key's own Insight names the threshold that fired it). */
  threshold: number;
}

export interface ReportMeta {
  title?: string;
  /** ISO-8601. */
  generatedAt: string;
  inputs: string[];
  format: string;
  bucketMs: number;
  valueModel: ValueModel;
  base: ReportRunLabel;
  compare?: ReportRunLabel;
  summary: ReportData['summary'];
}

export interface ReportSelection {
  /** `--key` values: key ids or globs (`*` any run of characters, `?` one). */
  keys?: string[];
  maxKeys?: number;
  maxPoints?: number;
  leftOutListed?: number;
}

function groupBy<T>(items: T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const group = groups.get(keyOf(item));
    if (group) group.push(item);
    else groups.set(keyOf(item), [item]);
  }
  return groups;
}

const overlaps = (a: RecordedInsight, b: RecordedInsight): boolean =>
  a.startMs < (b.endMs ?? Number.POSITIVE_INFINITY) && b.startMs < (a.endMs ?? Number.POSITIVE_INFINITY);

/** Base and compare Insights with their change: one with no overlapping Insight on the same key in the other run appears or vanishes. */
function withChanges(base: RecordedInsight[], compare: RecordedInsight[] | null): { base: ReportInsight[]; compare: ReportInsight[] } {
  const byKey = (list: RecordedInsight[]): Map<string, RecordedInsight[]> => groupBy(list, (i) => i.keyId);
  const shape = (i: RecordedInsight, run: ReportRunName, change: ReportInsight['change']): ReportInsight => ({
    keyId: i.keyId,
    type: i.type,
    startMs: i.startMs,
    endMs: i.endMs,
    score: i.score,
    run,
    change,
  });
  if (compare === null) return { base: base.map((i) => shape(i, 'base', null)), compare: [] };
  const baseByKey = byKey(base);
  const compareByKey = byKey(compare);
  const twin = (i: RecordedInsight, other: Map<string, RecordedInsight[]>): boolean =>
    (other.get(i.keyId) ?? []).some((o) => overlaps(i, o));
  return {
    base: base.map((i) => shape(i, 'base', twin(i, compareByKey) ? null : 'vanishes')),
    compare: compare.map((i) => shape(i, 'compare', twin(i, baseByKey) ? null : 'appears')),
  };
}

function perDay(insights: ReportInsight[], fromMs: number | null, toMs: number | null): ReportRun['perDay'] {
  if (fromMs === null || toMs === null) return { days: [], types: [], counts: [] };
  const first = Math.floor(fromMs / DAY_MS);
  const last = Math.floor((toMs - 1) / DAY_MS);
  const days: number[] = [];
  for (let d = first; d <= last; d++) days.push(d * DAY_MS);
  const types = [...new Set(insights.map((i) => i.type))].sort();
  const counts = types.map(() => new Array<number>(days.length).fill(0));
  for (const i of insights) {
    const row = counts[types.indexOf(i.type)];
    const day = Math.floor(i.startMs / DAY_MS) - first;
    if (row !== undefined && day >= 0 && day < days.length) row[day] = (row[day] ?? 0) + 1;
  }
  return { days, types, counts };
}

/** The band's edges at one bucket: the values at which this bucket alone would be `decades` rare. */
export function bandEdges(expected: number, dispersion: number, model: ValueModel, decades: number): { low: number; high: number } {
  const scale =
    model === 'gauge'
      ? Math.sqrt(Math.max(dispersion, 1e-12)) + 1e-6 * Math.abs(expected)
      : Math.sqrt(Math.max(expected, 1e-3) * Math.max(1, dispersion));
  const edge = (sign: 1 | -1): number => {
    const surprise = (v: number): number =>
      sign > 0 ? surpriseAbove(v, expected, dispersion, model) : surpriseBelow(v, expected, dispersion, model);
    // A count cannot go below zero: when even zero is not rare enough, the band reaches it.
    if (sign < 0 && model === 'counts' && surprise(0) < decades) return 0;
    let near = expected;
    let far = expected + sign * scale;
    for (let i = 0; i < 60 && surprise(far) < decades; i++) {
      near = far;
      far = expected + sign * scale * 2 ** (i + 1);
    }
    if (sign < 0 && model === 'counts') far = Math.max(0, far);
    for (let i = 0; i < 24; i++) {
      const mid = (near + far) / 2;
      if (surprise(mid) < decades) near = mid;
      else far = mid;
    }
    return (near + far) / 2;
  };
  return { low: edge(-1), high: edge(1) };
}

/** Indices to draw: all when few, else each stretch's lowest and highest value (spikes and drops survive). */
export function downsampleIndices(values: ArrayLike<number>, length: number, maxPoints: number): number[] {
  if (length <= maxPoints) return Array.from({ length }, (_, i) => i);
  const bins = Math.max(1, Math.floor(maxPoints / 2));
  const out: number[] = [];
  for (let b = 0; b < bins; b++) {
    const from = Math.floor((b * length) / bins);
    const to = Math.floor(((b + 1) * length) / bins);
    if (to <= from) continue;
    let lo = from;
    let hi = from;
    for (let i = from + 1; i < to; i++) {
      if ((values[i] as number) < (values[lo] as number)) lo = i;
      if ((values[i] as number) > (values[hi] as number)) hi = i;
    }
    if (lo === hi) out.push(lo);
    else out.push(Math.min(lo, hi), Math.max(lo, hi));
  }
  return out;
}

const round4 = (x: number): number => (x === 0 || !Number.isFinite(x) ? x : Number(x.toPrecision(4)));

/**
 * A key's chart series: the band where each drawn point was judged (the expectation and dispersion
 * the engine judged it with), and the quiet stretches between judged buckets shown as zero (counts:
 * judged against the last expectation) or as a gap (a metric: no reading).
 */
export function keySeries(
  columns: KeyColumns,
  model: ValueModel,
  bucketMs: number,
  threshold: number,
  maxPoints: number,
): { series: ReportSeries; points: number } {
  const { length, t, value, expected, dispersion } = columns;
  const decades = decadesOf(threshold);
  const counts = model === 'counts';
  const keep = downsampleIndices(value, length, maxPoints);
  const series: ReportSeries = { t: [], value: [], expected: [], low: [], high: [] };
  const push = (ms: number, v: number | null, e: number | null, low: number | null, high: number | null): void => {
    series.t.push(ms);
    series.value.push(v === null ? null : round4(v));
    series.expected.push(e === null ? null : round4(e));
    series.low.push(low === null ? null : round4(low));
    series.high.push(high === null ? null : round4(high));
  };
  let prev = -1;
  let last = { e: 0, low: 0, high: 0 };
  for (const i of keep) {
    const ti = t[i] as number;
    if (prev >= 0) {
      const tp = t[prev] as number;
      // A quiet stretch between the drawn points (bucket starts further apart than the buckets between them):
      // a counts key made no calls there, judged against its last expectation; a metric had no reading.
      if (ti - tp > (i - prev) * bucketMs) {
        if (counts) {
          push(tp + bucketMs, 0, last.e, last.low, last.high);
          if (ti - bucketMs > tp + bucketMs) push(ti - bucketMs, 0, last.e, last.low, last.high);
        } else {
          push(tp + bucketMs, null, null, null, null);
        }
      }
    }
    const e = expected[i] as number;
    const band = bandEdges(e, dispersion[i] as number, model, decades);
    push(ti, value[i] as number, e, band.low, band.high);
    last = { e, ...band };
    prev = i;
  }
  return { series, points: length };
}

/** The page's facts from the base run and, with `--compare`, the compare run. */
export function buildReport(
  base: ReportRecorder,
  compare: ReportRecorder | null,
  meta: ReportMeta,
  selection: ReportSelection = {},
): ReportData {
  const maxKeys = selection.maxKeys ?? REPORT_DEFAULTS.maxKeys;
  const maxPoints = selection.maxPoints ?? REPORT_DEFAULTS.maxPoints;
  const listed = selection.leftOutListed ?? REPORT_DEFAULTS.leftOutListed;
  const runs = compare ? [base, compare] : [base];
  const firsts = runs.map((r) => r.firstMs).filter((x) => x !== null);
  const lasts = runs.map((r) => r.lastMs).filter((x) => x !== null);
  const fromMs = firsts.length > 0 ? Math.min(...firsts) : null;
  const toMs = lasts.length > 0 ? Math.max(...lasts) + meta.bucketMs : null;

  const insights = withChanges(base.insights, compare?.insights ?? null);
  const byKey = groupBy([...insights.base, ...insights.compare], (i) => i.keyId);

  // Keys asked for by --key, then keys that fired; each group highest peak score first.
  const patterns = (selection.keys ?? []).map((p) => ({ pattern: p, re: globToRegExp(p), matched: false }));
  const asked = new Set<string>();
  if (patterns.length > 0) {
    for (const run of runs) {
      for (const id of run.keys.keys()) {
        for (const p of patterns) {
          if (p.re.test(id)) {
            p.matched = true;
            asked.add(id);
          }
        }
      }
    }
  }
  const peakOf = (id: string): number =>
    Math.max(base.keys.get(id)?.peak ?? 0, compare?.keys.get(id)?.peak ?? 0, ...(byKey.get(id) ?? []).map((i) => i.score));
  const peaks = new Map<string, number>();
  for (const id of new Set([...asked, ...byKey.keys()])) peaks.set(id, peakOf(id));
  const ranked = (ids: Iterable<string>): string[] =>
    [...ids].sort((a, b) => (peaks.get(b) ?? 0) - (peaks.get(a) ?? 0) || (a < b ? -1 : 1));
  const order = [...ranked(asked), ...ranked([...byKey.keys()].filter((id) => !asked.has(id)))];
  const charted = order.slice(0, maxKeys);
  const rest = order.slice(maxKeys);

  const keys: ReportKey[] = charted.map((id) => {
    const own = byKey.get(id) ?? [];
    const fromBase = base.keys.get(id);
    const columns = fromBase ?? compare?.keys.get(id);
    const seriesFrom: ReportRunName | null = fromBase ? 'base' : columns ? 'compare' : null;
    const run = seriesFrom === 'compare' ? (compare as ReportRecorder) : base;
    const runLabel = seriesFrom === 'compare' ? meta.compare : meta.base;
    // The threshold that fired the key in the run drawn (overrides make it per key), else the run's.
    const threshold = run.insights.find((i) => i.keyId === id)?.threshold ?? runLabel?.threshold ?? meta.base.threshold;
    const drawn = columns ? keySeries(columns, meta.valueModel, meta.bucketMs, threshold, maxPoints) : null;
    return {
      id,
      peakScore: peaks.get(id) ?? 0,
      asked: asked.has(id),
      seriesFrom,
      series: drawn?.series ?? null,
      points: drawn?.points ?? 0,
      threshold,
      insights: own.sort((a, b) => a.startMs - b.startMs),
    };
  });
  const leftOut: ReportLeftOut[] = rest
    .slice(0, listed)
    .map((id) => ({ id, peakScore: peaks.get(id) ?? 0, insights: (byKey.get(id) ?? []).length }));

  const run = (recorder: ReportRecorder, label: ReportRunLabel, shaped: ReportInsight[]): ReportRun => ({
    label: label.label,
    threshold: label.threshold,
    histogram: { counts: [...recorder.histogram], zero: recorder.zero },
    insights: shaped,
    perDay: perDay(shaped, fromMs, toMs),
  });

  return {
    title: meta.title ?? 'trailwatch backtest report',
    generatedAt: meta.generatedAt,
    inputs: meta.inputs,
    format: meta.format,
    bucketMs: meta.bucketMs,
    fromMs,
    toMs,
    summary: meta.summary,
    base: run(base, meta.base, insights.base),
    compare: compare && meta.compare ? run(compare, meta.compare, insights.compare) : null,
    keys,
    leftOut,
    leftOutTotal: rest.length,
    maxKeys,
    unmatched: patterns.filter((p) => !p.matched).map((p) => p.pattern),
  };
}
