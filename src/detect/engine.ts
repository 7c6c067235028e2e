import type { DetectorConfig } from '../config/schema.ts';
import type { AttributionAttribute, AuditEvent, Insight, InsightScope, InsightType } from '../contracts/types.ts';
import { type AnomalyFacts, buildInsight, type ContributorAverages, type InsightSubject } from '../emit/insight.ts';
import { CUSUM_WEIGHT, type CusumRun } from './baseline/cusum.ts';
import { dispersionAlpha, squaredResidual } from './baseline/dispersion.ts';
import { type Judgement, type JudgeSettings, judge, type Veto } from './baseline/judge.ts';
import { type Direction, decadesOf, type ValueModel, watchesDown } from './baseline/score.ts';
import { boundEvent } from './bounds.ts';
import { Overrides } from './overrides.ts';
import { DEFAULT_CATALOG, type SensitivityCatalog } from './rules/catalog.ts';
import { hhAdd, hhMerge, hhTop, newHeavyHitters } from './sketch.ts';
import {
  BaselineSketches,
  type BucketAcc,
  type Contributors,
  CUSUM_FIELDS,
  decodeKey,
  encodeKey,
  F,
  fromRecord,
  hourlyOf,
  type KeyRecord,
  KeyState,
  keyId,
  type OpenBucket,
  SKETCH_ATTRIBUTES,
  SlotPool,
  type Streak,
  setHourly,
  subjectOf,
  toRecord,
} from './state.ts';

export { decodeKey, encodeKey, type KeyRecord, KeyState } from './state.ts';

/**
 * The detection engine: pure, synchronous, no Kafka inside. The live consumer, `trailwatch
 * backtest` and the benchmarks all drive this one class, so they agree by construction.
 *
 * Lifecycle: `process(batch)` folds events into event-time buckets; `advanceWatermark(ms)`
 * closes buckets (the runtime calls it when the source goes idle); `snapshot()`/`restore()`
 * checkpoint the whole state as JSON-safe data.
 */

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;
/** Days an hour-of-day slot averages over once it has warmed up. */
const SEASON_DAYS = 7;
/**
 * Half-life of a key's burst memory, in working time: the highest recent count fades by half in
 * seven working days. Saturdays and Sundays (UTC) do not count: a deploy role's Monday is judged
 * against Friday's deployments, not against a memory the weekend faded.
 */
const BURST_HALF_LIFE_MS = 7 * DAY_MS;
/** A bucket scoring at least this share of the threshold is a near miss, remembered for the day. */
const NEAR_MISS = 0.8;
/**
 * Buckets are winsorized into the baseline (cut to a borderline value) only when they fired and
 * were at least this rare (decades): a lower scoreThreshold makes more Insights, but must not teach
 * the baseline less of the key's real traffic (it once starved baselines into alert storms).
 */
const WINSOR_MIN_DECADES = 6;
/** History before a sustained run upwards is reported (it is remembered from the start). */
const RUN_LEARNING_MS = 7 * DAY_MS;
/** A near miss recurring within this many days of the previous one is a habit. */
const NEAR_MISS_RECUR_DAYS = 7;
/** Two daily peaks this close in time of day make a habit. */
const HABIT_WINDOW_MINUTES = 90;
/**
 * Over-dispersion assumed at least, as variance / mean, while a key has less history than the
 * hourly profile needs (two days): before that the baseline has not seen a whole day's cycle or a
 * second burst, and its variance understates how much the key swings.
 */
const COLD_DISPERSION = 4;
/** Baseline floor in events per minute: a key that never calls still needs a few calls to look unusual. */
const MEAN_FLOOR_PER_MINUTE = 0.05;
const ATTRIBUTES: AttributionAttribute[] = ['userIdentityArn', 'userAgent', 'errorCode'];
/** Index of who called in SKETCH_ATTRIBUTES. */
const WHO = SKETCH_ATTRIBUTES.indexOf('userIdentityArn');
const SNAPSHOT_VERSION = 1;
/** Capacity of a bucket's sketches while partials add up in it: in effect unbounded (a few per upstream partition). */
const EXACT_CAPACITY = 1_000_000;
/** Interned identity strings kept at most; past it the pool starts over (correctness never depends on it). */
const MAX_INTERNED = 1_000_000;
/** `observed` of a key whose first bucket is not judged yet. */
const UNBORN = -1;
/**
 * Event tuples whose key ids are cached at most; past it the cache starts over. Small next to the
 * keys themselves (a few hundred bytes a tuple), so a million keys still fit in a KiB each.
 */
const MAX_CACHED_TUPLES = 32_768;

/**
 * The key ids an event tuple (account, region, principal, service, action) counts towards, built
 * once rather than per event. Chained when one principal calls one action in several places.
 */
interface SignalIds {
  accountId: string;
  region: string;
  service: string;
  actionCall: CachedKey;
  principalCall: CachedKey;
  /** By error code: the per-action and the per-principal error keys. */
  errors: Map<string, [CachedKey, CachedKey]> | null;
  next: SignalIds | null;
}

/** A key id and, once looked up, its state (until the key is dropped): no map lookup per event. */
interface CachedKey {
  id: string;
  key: KeyState | null;
}

const cachedKey = (id: string): CachedKey => ({ id, key: null });

/** What names a key: the scope, the signal and where it is measured. */
export type KeyIdentity = InsightSubject & { id: string };

/** Every counter at zero; also the start of a sum over several engines. */
export function emptyEngineMetrics(): EngineMetrics {
  return {
    eventsProcessed: 0,
    duplicates: 0,
    lateEvents: 0,
    keysCreated: 0,
    keysEvicted: 0,
    keysExpired: 0,
    insightsStarted: 0,
    insightsEnded: 0,
  };
}

export interface EngineMetrics {
  eventsProcessed: number;
  duplicates: number;
  lateEvents: number;
  keysCreated: number;
  keysEvicted: number;
  keysExpired: number;
  insightsStarted: number;
  insightsEnded: number;
}

export interface EngineSnapshot {
  version: number;
  maxEventTimeMs: number;
  watermarkMs: number;
  closedThroughMs: number;
  keys: KeyRecord[];
  seen: Array<[string, number]>;
  streamStartMs: Array<[string, number]>;
  metrics: EngineMetrics;
}

/** One judged bucket of one key, for series output (backtest) and debugging. */
export interface BucketObservation {
  keyId: string;
  bucketStartMs: number;
  count: number;
  /** Baseline mean per bucket before this bucket was folded in. */
  baselineMean: number;
  /** What the bucket was judged against: the hour's expectation once the key has its profile, else the mean (floored for counts). */
  expected: number;
  /** The decision score: what the Start/End machine reads (0 when a floor vetoes the bucket). */
  score: number;
  /** The score before the floors. */
  rawScore: number;
  /** The floor that vetoed the bucket, if any. */
  veto: Veto | null;
  /** Which way the bucket is unusual. */
  direction: 'up' | 'down';
  /** Whether a sustained run, rather than the bucket alone, carries the evidence. */
  sustained: boolean;
}

export interface EngineHooks {
  /** Called for every judged bucket; keep it cheap, it is on the hot path. */
  onBucket?: (observation: BucketObservation) => void;
}

export interface KeyView {
  id: string;
  learning: boolean;
  /** Less history than the hourly profile needs (two days): scored with a wider dispersion, bursts remembered as they come. */
  coldStart: boolean;
  historyMinutes: number;
  baselinePerMinute: number;
  inInsight: boolean;
}

/**
 * One key's count in one closed bucket, with its contributors: what a stage that only
 * aggregates (per input partition) hands to the stage that judges the key (per action).
 */
export interface BucketPartial {
  key: KeyIdentity;
  bucketStartMs: number;
  count: number;
  contributors: Record<AttributionAttribute, Array<[string, number]>>;
}

export interface EngineOptions extends EngineHooks {
  /** Scopes whose keys are aggregated per bucket and handed out by `drainPartials()` instead of judged. */
  forwardScopes?: InsightScope[];
  /** Record what changed for `drainChanges()` (incremental checkpoints); off by default, it costs memory. */
  trackChanges?: boolean;
  /** The calls detector.sensitiveReads counts although they are reads (default: the shipped catalog). */
  catalog?: SensitivityCatalog;
  /**
   * What a bucket's value is: `counts` (events, non-negative: a count model with Poisson noise), or
   * `gauge` (a real-valued metric series, fractions and negatives allowed: a location-scale model).
   */
  valueModel?: 'counts' | 'gauge';
}

/** Engine-wide state of a checkpoint, besides the keys and the dedupe horizon. */
export interface EngineMeta {
  version: number;
  maxEventTimeMs: number | null;
  watermarkMs: number | null;
  closedThroughMs: number | null;
  streamStartMs: Array<[string, number]>;
  metrics: EngineMetrics;
}

/** What changed since the previous `drainChanges()`: enough to bring a checkpoint up to date. */
export interface EngineChanges {
  meta: EngineMeta;
  /** Encoded key state by key id; null when the key is gone (evicted or expired). */
  keys: Array<[string, string | null]>;
  /** Event ids first seen since the previous drain, with their event times. */
  seen: Array<[string, number]>;
}

/** Saturday or Sunday, UTC (1970-01-01 was a Thursday). */
const isWeekend = (ms: number): boolean => (((Math.floor(ms / DAY_MS) + 3) % 7) + 7) % 7 >= 5;
/** Integers below this (in magnitude) keep every product and difference in modFloor exact. */
const MOD_EXACT_BELOW = 2 ** 52;

/**
 * ((a % b) + b) % b, the remainder rounded towards −∞, for an integer `b`. Event times are past
 * 2^31, where `%` of doubles is a call to fmod: this is the same number in a few instructions
 * (integers only; anything else takes the `%`).
 */
export function modFloor(a: number, b: number): number {
  if (!Number.isInteger(a) || a >= MOD_EXACT_BELOW || a <= -MOD_EXACT_BELOW) return ((a % b) + b) % b;
  const r = a - Math.floor(a / b) * b;
  return r < 0 ? r + b : r >= b ? r - b : r;
}

/** a % b (the sign of `a`), for an integer `b`; see modFloor. */
export function remainder(a: number, b: number): number {
  return a >= 0 ? modFloor(a, b) : a % b;
}

const finiteOrNull = (n: number): number | null => (Number.isFinite(n) ? n : null);
const orNegInf = (n: number | null | undefined): number => (n === null || n === undefined ? Number.NEGATIVE_INFINITY : n);

function newContributors(capacity: number): Contributors {
  return {
    userIdentityArn: newHeavyHitters(capacity),
    userAgent: newHeavyHitters(capacity),
    errorCode: newHeavyHitters(capacity),
  };
}

export class DetectionEngine {
  readonly config: DetectorConfig;
  private readonly keys = new Map<string, KeyState>();
  /**
   * Ends of the keys' LRU order (least recently active first), linked through the keys
   * themselves: moving a key to the end is a few pointer writes, not a map delete and insert.
   */
  private oldest: KeyState | null = null;
  private newest: KeyState | null = null;
  /** eventId → event time, for the dedupe horizon (the lateness window). */
  private readonly seen = new Map<string, number>();
  /** Bucket start → keys with pending counts in it. */
  private readonly pendingIndex = new Map<number, Set<string>>();
  /** Keys with a streak: evaluated every bucket, even at zero count, so Ends are not held back. */
  private readonly streaking = new Set<string>();
  private readonly strings = new Map<string, string>();
  /** principal → action → the key ids of its tuples (see SignalIds). */
  private readonly signalIdCache = new Map<string, Map<string, SignalIds>>();
  private cachedTuples = 0;
  private readonly scopeAction: boolean;
  private readonly scopePrincipal: boolean;
  private readonly callRate: boolean;
  private readonly errorRate: boolean;
  private readonly includeReadOnly: boolean;
  /** Read-only calls counted anyway (secret reads): null when detector.sensitiveReads is off or reads all count. */
  private readonly sensitiveReads: SensitivityCatalog | null;
  /** First bucket seen per account: a key born later has watched zeros since then, not nothing. */
  private readonly streamStartMs = new Map<string, number>();
  private maxEventTimeMs = Number.NEGATIVE_INFINITY;
  private watermark = Number.NEGATIVE_INFINITY;
  /** All buckets ending at or before this are closed. */
  private closedThroughMs = Number.NEGATIVE_INFINITY;
  private readonly windowBuckets: number;
  private readonly capacity: number;
  private readonly bucketMinutes: number;
  private readonly meanFloor: number;
  private readonly seasonal: boolean;
  private readonly seasonalAfterBuckets: number;
  private readonly bucketsPerHour: number;
  private readonly burstDecay: number;
  private readonly model: ValueModel;
  private readonly runLearningBuckets: number;
  private readonly overrides: Overrides;
  private readonly judgeUp: JudgeSettings;
  private readonly thresholdDecades: number;
  /** Keys watched for drops: judged every bucket, data or not (a silent key is what a drop looks like). */
  private readonly watchingDown = new Set<string>();
  /** Where every key's numbers live (see state.ts): principal keys need no sketch of who called. */
  private readonly principalPool: SlotPool;
  private readonly actionPool: SlotPool;
  private readonly sketches: BaselineSketches;
  readonly metrics: EngineMetrics = emptyEngineMetrics();

  private readonly onBucket: EngineHooks['onBucket'];
  private readonly forwardScopes: ReadonlySet<InsightScope>;
  private partials: BucketPartial[] = [];
  /** Change tracking for incremental checkpoints; null unless `trackChanges`. */
  private readonly changes: { keys: Set<KeyState>; seen: Array<[string, number]> } | null;

  constructor(config: DetectorConfig, options: EngineOptions = {}) {
    this.config = config;
    this.onBucket = options.onBucket;
    this.forwardScopes = new Set(options.forwardScopes ?? []);
    this.changes = options.trackChanges ? { keys: new Set(), seen: [] } : null;
    this.scopeAction = config.scopes.action;
    this.scopePrincipal = config.scopes.principalAction;
    this.callRate = config.insightTypes.apiCallRate;
    this.errorRate = config.insightTypes.apiErrorRate;
    this.includeReadOnly = config.includeReadOnly;
    this.sensitiveReads = config.sensitiveReads && !config.includeReadOnly ? (options.catalog ?? DEFAULT_CATALOG) : null;
    this.windowBuckets = Math.max(2, Math.floor(config.baselineWindowMs / config.bucketMs));
    this.capacity = config.topN * 2;
    this.bucketMinutes = config.bucketMs / MINUTE_MS;
    this.meanFloor = MEAN_FLOOR_PER_MINUTE * this.bucketMinutes;
    // An hourly profile needs buckets shorter than an hour and two days (two cycles) of history.
    this.seasonal = config.seasonality === 'hourOfDay' && config.bucketMs < HOUR_MS && HOUR_MS % config.bucketMs === 0;
    this.bucketsPerHour = Math.max(1, Math.floor(HOUR_MS / config.bucketMs));
    this.burstDecay = 0.5 ** (config.bucketMs / BURST_HALF_LIFE_MS);
    this.seasonalAfterBuckets = Math.ceil((2 * DAY_MS) / config.bucketMs);
    this.model = options.valueModel ?? 'counts';
    this.runLearningBuckets = Math.min(this.windowBuckets, Math.ceil(RUN_LEARNING_MS / config.bucketMs));
    this.overrides = new Overrides(config);
    this.thresholdDecades = decadesOf(config.scoreThreshold);
    this.judgeUp = {
      model: this.model,
      direction: 'up',
      thresholdDecades: this.thresholdDecades,
      minEventsPerBucket: config.minEventsPerBucket,
      minRatio: config.minRatio,
      burstMargin: config.burstMargin,
    };
    this.principalPool = new SlotPool(config.topN, SKETCH_ATTRIBUTES.length - 1, this.seasonal);
    this.actionPool = new SlotPool(config.topN, SKETCH_ATTRIBUTES.length, this.seasonal);
    this.sketches = new BaselineSketches(this.actionPool, (v) => this.intern(v));
  }

  get watermarkMs(): number {
    return this.watermark;
  }

  get latestEventTimeMs(): number {
    return this.maxEventTimeMs;
  }

  /** First bucket seen per account. */
  accountStarts(): ReadonlyMap<string, number> {
    return this.streamStartMs;
  }

  get activeKeys(): number {
    return this.keys.size;
  }

  /**
   * Folds a batch of events in, then closes whatever buckets the new watermark passed: by
   * default the latest event time seen minus the allowed lateness. A caller reading several
   * partitions passes its own (the slowest partition's), so a partition that runs ahead does not
   * make the others' events late. `fresh`, when given, receives every event that is not a
   * repeat of one already seen (late ones included), for the detectors beside the rates.
   */
  process(events: Iterable<AuditEvent>, watermarkMs?: number, fresh?: AuditEvent[]): Insight[] {
    const { bucketMs } = this.config;
    const { seen, changes, metrics } = this;
    for (const raw of events) {
      const e = boundEvent(raw);
      const t = e.eventTimeMs;
      if (seen.has(e.eventId)) {
        metrics.duplicates++;
        continue;
      }
      // Late for the rates, still news for the rules: only repeats are left out.
      fresh?.push(e);
      const bucket = Math.floor(t / bucketMs) * bucketMs;
      if (bucket + bucketMs <= this.closedThroughMs) {
        metrics.lateEvents++;
        continue;
      }
      seen.set(e.eventId, t);
      changes?.seen.push([e.eventId, t]);
      metrics.eventsProcessed++;
      if (t > this.maxEventTimeMs) this.maxEventTimeMs = t;
      this.noteAccountStart(e.accountId, bucket);
      this.countSignals(e, bucket);
    }
    return this.advanceWatermark(watermarkMs ?? this.maxEventTimeMs - this.config.allowedLatenessMs);
  }

  /**
   * Moves event time forward (never back) and closes every bucket that ends at or before it.
   * The runtime calls this when the source is idle; `process` calls it after every batch.
   */
  advanceWatermark(watermarkMs: number): Insight[] {
    if (!(watermarkMs > this.watermark)) return [];
    this.watermark = watermarkMs;
    const { bucketMs } = this.config;
    const target = Math.floor(watermarkMs / bucketMs) * bucketMs;
    const out: Insight[] = [];
    let b = Number.isFinite(this.closedThroughMs) ? this.closedThroughMs : this.firstPendingBucket();
    while (b !== undefined && b + bucketMs <= target) {
      if (this.streaking.size === 0 && this.watchingDown.size === 0 && !this.pendingIndex.has(b)) {
        // Nothing happens between here and the next bucket with data: jump.
        b = this.firstPendingBucket();
        if (b === undefined || b + bucketMs > target) break;
      }
      this.closeBucket(b, out);
      b += bucketMs;
    }
    this.closedThroughMs = Math.max(this.closedThroughMs, target);
    this.expire();
    return out;
  }

  /** Per-key learning state, for `trailwatch` status output and tests. */
  keyView(id: string): KeyView | undefined {
    const k = this.keys.get(id);
    if (!k) return undefined;
    return {
      id,
      learning: k.observed * this.config.bucketMs < this.config.minHistoryMs,
      coldStart: k.observed < this.seasonalAfterBuckets,
      historyMinutes: Math.max(0, k.observed) * this.bucketMinutes,
      baselinePerMinute: k.mean / this.bucketMinutes,
      inInsight: k.streak?.started ?? false,
    };
  }

  keyIds(): string[] {
    return this.lruOrder().map((k) => k.id);
  }

  snapshot(): EngineSnapshot {
    return structuredClone({
      version: SNAPSHOT_VERSION,
      maxEventTimeMs: this.maxEventTimeMs,
      watermarkMs: this.watermark,
      closedThroughMs: this.closedThroughMs,
      keys: this.lruOrder().map((k) => this.record(k)),
      seen: [...this.seen.entries()],
      streamStartMs: [...this.streamStartMs.entries()],
      metrics: { ...this.metrics },
    });
  }

  static restore(config: DetectorConfig, snapshot: EngineSnapshot, options: EngineOptions = {}): DetectionEngine {
    if (snapshot.version !== SNAPSHOT_VERSION) throw new Error(`unsupported engine snapshot version ${snapshot.version}`);
    const engine = new DetectionEngine(config, options);
    const s = structuredClone(snapshot);
    engine.maxEventTimeMs = s.maxEventTimeMs ?? Number.NEGATIVE_INFINITY;
    engine.watermark = s.watermarkMs ?? Number.NEGATIVE_INFINITY;
    engine.closedThroughMs = s.closedThroughMs ?? Number.NEGATIVE_INFINITY;
    Object.assign(engine.metrics, s.metrics);
    for (const [id, t] of s.seen) engine.seen.set(id, t);
    for (const [account, t] of s.streamStartMs) engine.streamStartMs.set(account, t);
    for (const k of s.keys) engine.adopt(fromRecord(k, engine.poolOf(k.scope), engine.sketches));
    return engine;
  }

  /**
   * Counts of already-aggregated buckets (from a stage that forwards), folded in as if their
   * events had arrived here. A partial for a bucket already closed is late and only counted.
   */
  ingestPartials(partials: Iterable<BucketPartial>): void {
    for (const p of partials) {
      if (p.bucketStartMs + this.config.bucketMs <= this.closedThroughMs) {
        this.metrics.lateEvents += p.count;
        continue;
      }
      this.noteAccountStart(p.key.accountId, p.bucketStartMs);
      const k = this.touch(p.key, p.bucketStartMs, p.bucketStartMs, p.key.region);
      // Exact sums while the bucket is open: partials arrive in an order that depends on timing,
      // and a bounded sketch would depend on it too. Cut to size, in a fixed order, at close.
      const acc = this.accumulator(k, p.bucketStartMs, EXACT_CAPACITY);
      acc.count += p.count;
      for (const attr of ATTRIBUTES) for (const [value, n] of p.contributors[attr]) hhAdd(acc.contributors[attr], value, n);
    }
  }

  /** Buckets closed since the last call for keys of the forwarded scopes, in closing order. */
  drainPartials(): BucketPartial[] {
    const out = this.partials;
    this.partials = [];
    return out;
  }

  /** The first bucket of an account, as learned elsewhere (another partition's stream). Only ever moves earlier. */
  noteAccountStart(accountId: string, bucketStartMs: number): void {
    const known = this.streamStartMs.get(accountId);
    if (known !== undefined && known <= bucketStartMs) return;
    this.streamStartMs.set(accountId, bucketStartMs);
  }

  /** Engine-wide checkpoint state. */
  meta(): EngineMeta {
    return {
      version: SNAPSHOT_VERSION,
      maxEventTimeMs: finiteOrNull(this.maxEventTimeMs),
      watermarkMs: finiteOrNull(this.watermark),
      closedThroughMs: finiteOrNull(this.closedThroughMs),
      streamStartMs: [...this.streamStartMs.entries()],
      metrics: { ...this.metrics },
    };
  }

  /** Everything that changed since the previous call (needs `trackChanges`). */
  drainChanges(): EngineChanges {
    if (!this.changes) throw new Error('DetectionEngine.drainChanges needs the trackChanges option');
    const keys: Array<[string, string | null]> = [];
    // By state, not by id: no lookup per key. A key dropped and created again in one batch is
    // two entries, the gone one first (it changed first), so the latest still wins.
    for (const k of this.changes.keys) keys.push([k.id, k.dropped ? null : encodeKey(k, this.poolOf(k.scope))]);
    const out: EngineChanges = {
      meta: this.meta(),
      keys,
      seen: this.changes.seen,
    };
    this.changes.keys.clear();
    this.changes.seen = [];
    return out;
  }

  /**
   * An engine rebuilt from an incremental checkpoint: the latest meta, the latest encoding of
   * every live key, and the dedupe entries still inside the horizon (older ones are ignored).
   */
  static fromCheckpoint(
    config: DetectorConfig,
    meta: EngineMeta | null,
    keys: Iterable<string>,
    seen: Iterable<[string, number]>,
    options: EngineOptions = {},
  ): DetectionEngine {
    const engine = new DetectionEngine(config, options);
    if (meta) {
      if (meta.version !== SNAPSHOT_VERSION) throw new Error(`unsupported engine checkpoint version ${meta.version}`);
      engine.maxEventTimeMs = orNegInf(meta.maxEventTimeMs);
      engine.watermark = orNegInf(meta.watermarkMs);
      engine.closedThroughMs = orNegInf(meta.closedThroughMs);
      Object.assign(engine.metrics, meta.metrics);
      for (const [account, t] of meta.streamStartMs) engine.streamStartMs.set(account, t);
    }
    // Each key is rebuilt as it is decoded, so its plain record dies young.
    const restored: KeyState[] = [];
    const lastEventMs: number[] = [];
    for (const encoded of keys) {
      const r = decodeKey(encoded);
      restored.push(fromRecord(r, engine.poolOf(r.scope), engine.sketches));
      lastEventMs.push(r.lastEventMs);
    }
    // The LRU order is by activity: rebuild it so eviction and expiry pick the same keys (ties in
    // the changelog's order, as the sort is stable).
    const order = Array.from(restored.keys()).sort((a, b) => (lastEventMs[a] as number) - (lastEventMs[b] as number));
    for (const i of order) engine.adopt(restored[i] as KeyState);
    for (const [id, t] of seen) if (t + config.bucketMs > engine.closedThroughMs) engine.seen.set(id, t);
    return engine;
  }

  // ── internals ────────────────────────────────────────────────────────────

  private poolOf(scope: InsightScope): SlotPool {
    return scope === 'principalAction' ? this.principalPool : this.actionPool;
  }

  private record(k: KeyState): KeyRecord {
    return toRecord(k, this.actionPool, this.sketches, this.seasonal, this.config.topN);
  }

  private adopt(k: KeyState): void {
    this.place(k);
    this.keys.set(k.id, k);
    this.lruAppend(k);
    if (k.pending) for (const p of k.pending) this.indexPending(p.startMs, k.id);
    if (k.streak) this.streaking.add(k.id);
  }

  /**
   * The keys an event counts towards, in a fixed order (per action, then per principal; calls,
   * then errors): the order keys are created and touched in is the LRU order eviction and expiry
   * follow, so it must not change.
   */
  private countSignals(e: AuditEvent, bucket: number): void {
    const call =
      this.callRate && (this.includeReadOnly || e.readOnly === false || this.sensitiveReads?.isSensitiveRead(e.service, e.action) === true);
    const errorCode = this.errorRate && e.errorCode ? e.errorCode : null;
    if (!call && errorCode === null) return;
    const ids = this.signalIds(e);
    const errorIds = errorCode === null ? null : this.errorIds(ids, e, errorCode);
    if (this.scopeAction) {
      if (call) this.count(ids.actionCall, 'action', 'ApiCallRateInsight', null, e, bucket);
      if (errorIds) this.count(errorIds[0], 'action', 'ApiErrorRateInsight', errorCode, e, bucket);
    }
    if (this.scopePrincipal) {
      if (call) this.count(ids.principalCall, 'principalAction', 'ApiCallRateInsight', null, e, bucket);
      if (errorIds) this.count(errorIds[1], 'principalAction', 'ApiErrorRateInsight', errorCode, e, bucket);
    }
  }

  /** The cached key ids of the event's tuple, built on first sight. */
  private signalIds(e: AuditEvent): SignalIds {
    let byAction = this.signalIdCache.get(e.principal);
    let head = byAction?.get(e.action) ?? null;
    for (let s = head; s !== null; s = s.next) {
      if (s.service === e.service && s.region === e.region && s.accountId === e.accountId) return s;
    }
    if (this.cachedTuples >= MAX_CACHED_TUPLES) {
      this.signalIdCache.clear();
      this.cachedTuples = 0;
      byAction = undefined;
      head = null;
    }
    if (byAction === undefined) {
      byAction = new Map();
      this.signalIdCache.set(this.intern(e.principal), byAction);
    }
    const { accountId, region, principal, service, action } = e;
    const ids: SignalIds = {
      accountId: this.intern(accountId),
      region: this.intern(region),
      service: this.intern(service),
      // Only the scopes counted: an id built for nothing would be kept for nothing.
      actionCall: cachedKey(this.scopeAction ? keyId('action', 'ApiCallRateInsight', accountId, region, null, service, action, null) : ''),
      principalCall: cachedKey(
        this.scopePrincipal ? keyId('principalAction', 'ApiCallRateInsight', accountId, region, principal, service, action, null) : '',
      ),
      errors: null,
      next: head,
    };
    this.cachedTuples++;
    // A key already in the map keeps its string: the event's copy is not retained.
    byAction.set(head === null ? this.intern(action) : action, ids);
    return ids;
  }

  private errorIds(ids: SignalIds, e: AuditEvent, errorCode: string): [CachedKey, CachedKey] {
    ids.errors ??= new Map();
    let pair = ids.errors.get(errorCode);
    if (pair === undefined) {
      const { accountId, region, principal, service, action } = e;
      pair = [
        cachedKey(this.scopeAction ? keyId('action', 'ApiErrorRateInsight', accountId, region, null, service, action, errorCode) : ''),
        cachedKey(
          this.scopePrincipal
            ? keyId('principalAction', 'ApiErrorRateInsight', accountId, region, principal, service, action, errorCode)
            : '',
        ),
      ];
      this.cachedTuples++;
      ids.errors.set(this.intern(errorCode), pair);
    }
    return pair;
  }

  private count(
    cached: CachedKey,
    scope: InsightScope,
    insightType: InsightType,
    errorCode: string | null,
    e: AuditEvent,
    bucket: number,
  ): void {
    let k = cached.key;
    if (k === null || k.dropped) {
      k = this.keys.get(cached.id) ?? this.key(cached.id, scope, insightType, errorCode, e, bucket);
      cached.key = k;
    }
    this.touched(k, bucket, e.eventTimeMs, e.region);
    const acc = this.accumulator(k, bucket);
    acc.count++;
    hhAdd(acc.contributors.userIdentityArn, e.principal);
    hhAdd(acc.contributors.userAgent, e.userAgent ?? 'null');
    hhAdd(acc.contributors.errorCode, e.errorCode ?? 'null');
  }

  private key(
    id: string,
    scope: InsightScope,
    insightType: InsightType,
    errorCode: string | null,
    e: AuditEvent,
    bucket: number,
  ): KeyState {
    return this.create(
      id,
      scope,
      insightType,
      e.accountId,
      e.region,
      e.service,
      e.action,
      scope === 'principalAction' ? e.principal : null,
      errorCode,
      bucket,
      e.eventTimeMs,
    );
  }

  /** The key's state, created when new, moved to the most recently active end of the LRU order. */
  private touch(proto: KeyIdentity, bucket: number, eventTimeMs: number, region: string): KeyState {
    const k =
      this.keys.get(proto.id) ??
      this.create(
        proto.id,
        proto.scope,
        proto.insightType,
        proto.accountId,
        proto.region,
        proto.service,
        proto.action,
        proto.principal,
        proto.errorCode,
        bucket,
        eventTimeMs,
      );
    this.touched(k, bucket, eventTimeMs, region);
    return k;
  }

  /** A new key, at the most recently active end of the LRU order. */
  private create(
    id: string,
    scope: InsightScope,
    insightType: InsightType,
    accountId: string,
    region: string,
    service: string,
    action: string,
    principal: string | null,
    errorCode: string | null,
    bucket: number,
    eventTimeMs: number,
  ): KeyState {
    const k = new KeyState(
      {
        id,
        scope,
        insightType,
        accountId: this.intern(accountId),
        region: this.intern(region),
        service: this.intern(service),
        action: this.intern(action),
        principal: principal === null ? null : this.intern(principal),
        errorCode: errorCode === null ? null : this.intern(errorCode),
      },
      this.forwardScopes.has(scope),
      this.poolOf(scope).alloc(),
    );
    k.lastFoldedMs = bucket - this.config.bucketMs;
    k.observed = UNBORN;
    k.prevPeakMinute = -1;
    k.nearDay = -1;
    // Not yet active in `bucket`, so that `touched` leaves it where it is: at the end.
    k.lastEventMs = eventTimeMs;
    this.metrics.keysCreated++;
    this.evictIfFull();
    this.place(k);
    this.keys.set(id, k);
    this.lruAppend(k);
    return k;
  }

  /** The key's direction from the overrides; a key watched for drops is judged every bucket. */
  private place(k: KeyState): void {
    k.direction = this.overrides.directionOf(k);
    if (!k.forward && watchesDown(k.direction)) this.watchingDown.add(k.id);
  }

  /** Bookkeeping of a key that an event (or a partial) just reached. */
  private touched(k: KeyState, bucket: number, eventTimeMs: number, region: string): void {
    // Least recently active first: re-insert to move to the end, once per key and bucket
    // rather than per event (the map's order only has to be right to the bucket).
    if (k.lastEventMs < bucket && k !== this.newest) {
      this.lruRemove(k);
      this.lruAppend(k);
    }
    if (k.scope === 'principalAction' && k.region !== region) k.region = this.intern(region);
    const last = k.lastEventMs;
    if (eventTimeMs > last) k.lastEventMs = eventTimeMs;
    this.changes?.keys.add(k);
  }

  /** The key's open bucket starting at `bucket`, opened when new. A key has a few at most (the lateness window's). */
  private accumulator(k: KeyState, bucket: number, capacity = this.capacity): BucketAcc {
    const pending = k.pending;
    if (pending !== null) {
      for (let i = 0; i < pending.length; i++) {
        const open = pending[i] as OpenBucket;
        if (open.startMs === bucket) return open;
      }
    }
    const acc: OpenBucket = { startMs: bucket, count: 0, contributors: newContributors(capacity) };
    if (pending === null) k.pending = [acc];
    else pending.push(acc);
    this.indexPending(bucket, k.id);
    return acc;
  }

  /** An exact accumulator (of partials) cut to the usual sketch size, largest first, ties by value: the same whatever the arrival order. */
  private canonical(acc: BucketAcc): void {
    const { userIdentityArn, userAgent, errorCode } = acc.contributors;
    // Only partials add up in exact sketches: a bucket of events is already cut to size.
    if (userIdentityArn.capacity <= this.capacity && userAgent.capacity <= this.capacity && errorCode.capacity <= this.capacity) return;
    for (const attr of ATTRIBUTES) {
      const exact = acc.contributors[attr];
      if (exact.capacity <= this.capacity) continue;
      const sketch = newHeavyHitters(this.capacity);
      for (const { value, count } of hhTop(exact, this.capacity)) hhAdd(sketch, value, count);
      acc.contributors[attr] = sketch;
    }
  }

  private indexPending(bucket: number, id: string): void {
    let set = this.pendingIndex.get(bucket);
    if (!set) {
      set = new Set();
      this.pendingIndex.set(bucket, set);
    }
    set.add(id);
  }

  private firstPendingBucket(): number | undefined {
    let min: number | undefined;
    for (const b of this.pendingIndex.keys()) if (min === undefined || b < min) min = b;
    return min;
  }

  private closeBucket(b: number, out: Insight[]): void {
    const ids: string[] = [...this.streaking];
    const withData = this.pendingIndex.get(b);
    if (withData) for (const id of withData) if (!this.streaking.has(id)) ids.push(id);
    for (const id of this.watchingDown) if (!this.streaking.has(id) && !withData?.has(id)) ids.push(id);
    this.pendingIndex.delete(b);
    // Sorted so that Insights of one bucket come out in the same order in every run.
    ids.sort();
    for (const id of ids) {
      const k = this.keys.get(id);
      if (!k) continue;
      const acc = takeOpen(k, b);
      this.changes?.keys.add(k);
      if (acc) this.canonical(acc);
      if (k.forward) {
        if (acc) this.partials.push(toPartial(k, b, acc));
        continue;
      }
      this.evaluate(k, b, acc, out);
    }
  }

  private alpha(k: KeyState): number {
    const a = Math.max(1 / (k.observed + 1), 2 / (this.windowBuckets + 1));
    // A metric series has no Poisson noise to be wide with before its hourly profile exists: its
    // expectation then is its level over about the last hour, so a daily swing is followed, not flagged.
    if (this.model === 'gauge' && this.seasonal && k.observed < this.seasonalAfterBuckets)
      return Math.max(a, 2 / (this.bucketsPerHour + 1));
    return a;
  }

  private hourSlot(bucket: number): number {
    return Math.floor(modFloor(bucket, DAY_MS) / HOUR_MS);
  }

  /** Expected count of a bucket: its hour's profile once two days of history exist, else the mean. */
  private expected(k: KeyState, bucket: number): number {
    if (this.seasonal && k.observed >= this.seasonalAfterBuckets) return hourlyOf(this.actionPool, k, this.hourSlot(bucket));
    return k.mean;
  }

  /**
   * At the first bucket of a new UTC day: a peak that recurred at about the same time is a habit,
   * and so is a near miss that recurs within a week (deployments skip weekends and some days).
   */
  private closeDay(k: KeyState, bucket: number): void {
    const closed = Math.floor(k.lastFoldedMs / DAY_MS);
    const yesterday = Math.floor(bucket / DAY_MS) - closed === 1;
    if (k.dayPeak > 0 && k.prevPeakMinute >= 0 && yesterday) {
      const apart = Math.abs(k.dayPeakMinute - k.prevPeakMinute);
      if (k.dayPeakNear || Math.min(apart, 1_440 - apart) <= HABIT_WINDOW_MINUTES) k.burst = Math.max(k.burst, k.dayPeak);
    }
    if (k.dayPeak > 0 && k.dayPeakNear) {
      if (k.nearDay >= 0 && closed - k.nearDay <= NEAR_MISS_RECUR_DAYS) k.burst = Math.max(k.burst, k.dayPeak);
      k.nearDay = closed;
    }
    k.prevPeakMinute = k.dayPeak > 0 && yesterday ? k.dayPeakMinute : -1;
    k.dayPeak = 0;
  }

  /** The dispersion a bucket is judged with: around the hour's profile once it is ready, else around the mean. */
  private dispersionOf(k: KeyState): number {
    return this.seasonal && k.observed >= this.seasonalAfterBuckets ? k.hourlyDispersion : k.dispersion;
  }

  /**
   * Folds one bucket into the baseline: `count` (winsorized when the bucket fired) into the mean,
   * the hourly profile and the dispersions; `raw` into the burst tracker.
   */
  private fold(k: KeyState, bucket: number, count: number, raw: number, contributors: Contributors | undefined): void {
    const a = this.alpha(k);
    const da = dispersionAlpha(k.observed, this.config.bucketMs);
    const history = k.observed;
    // A residual needs an expectation: the first bucket (and an hour's first visit) has none.
    if (history > 0)
      k.dispersion += da * (squaredResidual(count, k.mean, k.dispersion, this.model, this.meanFloor, history) - k.dispersion);
    k.mean += a * (count - k.mean);
    if (this.seasonal) {
      const slot = this.hourSlot(bucket);
      const prev = hourlyOf(this.actionPool, k, slot);
      // Each hour's slot sees bucketsPerHour buckets a day: a cumulative average at first, then
      // an EWMA over about SEASON_DAYS days.
      const visits =
        Math.floor(k.observed / (24 * this.bucketsPerHour)) * this.bucketsPerHour +
        Math.floor(remainder(bucket, HOUR_MS) / this.config.bucketMs);
      if (visits > 0)
        k.hourlyDispersion +=
          da * (squaredResidual(count, prev, k.hourlyDispersion, this.model, this.meanFloor, history) - k.hourlyDispersion);
      const as = Math.max(1 / (visits + 1), 1 / (SEASON_DAYS * this.bucketsPerHour));
      setHourly(this.actionPool, k, slot, prev + as * (count - prev));
    }
    if (Math.floor(bucket / DAY_MS) !== Math.floor(k.lastFoldedMs / DAY_MS)) this.closeDay(k, bucket);
    k.burst = Math.max(isWeekend(bucket) ? k.burst : k.burst * this.burstDecay, raw);
    if (!isWeekend(bucket)) k.f[k.o + F.runPeak] = (k.f[k.o + F.runPeak] as number) * this.burstDecay;
    for (let i = 0; i < SKETCH_ATTRIBUTES.length; i++) {
      const attr = SKETCH_ATTRIBUTES[i] as AttributionAttribute;
      // A principal's own key needs no sketch of who called: it is always the principal.
      if (attr === 'userIdentityArn' && k.scope === 'principalAction') continue;
      if (!this.sketches.has(k, i)) {
        if (!contributors) continue;
        this.sketches.create(k, i);
      }
      this.sketches.scale(k, i, 1 - a);
      if (contributors) this.sketches.merge(k, i, contributors[attr], a);
    }
    if (k.observed < this.windowBuckets) k.observed++;
    k.lastFoldedMs = bucket;
  }

  private foldZerosUntil(k: KeyState, bucket: number): void {
    const { bucketMs } = this.config;
    // Past a full window of zeros the baseline is as good as empty: cap the work.
    const gap = Math.min(Math.round((bucket - k.lastFoldedMs) / bucketMs) - 1, this.windowBuckets);
    // A metric series with a gap has no reading there, not a reading of zero.
    if (gap > 0 && this.model === 'counts') {
      this.foldZeros(k, bucket - gap * bucketMs, gap);
      // Empty buckets are no evidence of a rise: a run upwards loses 2 decades a bucket (see cusum.ts).
      const at = k.o + F.cusumUp;
      const s = k.f[at] as number;
      if (s > 0) {
        const left = s - 2 * gap;
        if (left > 0) k.f[at] = left;
        else {
          this.rememberRun(k, k.f[at + 2] as number, k.f[at + 3] as number, k.f[at + 4] as number);
          k.f.fill(0, at, at + CUSUM_FIELDS);
        }
      }
    }
    k.lastFoldedMs = bucket - bucketMs;
  }

  /**
   * `gap` empty buckets from `from` on, folded in: exactly `fold(k, t, 0, 0, undefined)` for each,
   * the same operations in the same order, with the key's numbers held in locals between buckets.
   * A sparse key folds hundreds of zeros each time it is judged; this is where the time went.
   */
  private foldZeros(k: KeyState, from: number, gap: number): void {
    const { bucketMs } = this.config;
    const f = k.f;
    const o = k.o;
    const hourlyAt = o + this.actionPool.hourlyAt;
    const seasonal = this.seasonal;
    const bph = this.bucketsPerHour;
    const windowBuckets = this.windowBuckets;
    const minAlpha = 2 / (windowBuckets + 1);
    const minSeasonAlpha = 1 / (SEASON_DAYS * bph);
    const decay = this.burstDecay;
    const model = this.model;
    const meanFloor = this.meanFloor;
    let mean = f[o + F.mean] as number;
    let dispersion = f[o + F.dispersion] as number;
    let hourlyDispersion = f[o + F.hourlyDispersion] as number;
    let burst = f[o + F.burst] as number;
    let observed = f[o + F.observed] as number;
    let lastFolded = f[o + F.lastFoldedMs] as number;
    for (let t = from; gap > 0; gap--, t += bucketMs) {
      const a = Math.max(1 / (observed + 1), minAlpha);
      const da = dispersionAlpha(observed, bucketMs);
      if (observed > 0) dispersion += da * (squaredResidual(0, mean, dispersion, model, meanFloor, observed) - dispersion);
      mean += a * (0 - mean);
      if (seasonal) {
        const at = hourlyAt + this.hourSlot(t);
        const prev = f[at] as number;
        const visits = Math.floor(observed / (24 * bph)) * bph + Math.floor(remainder(t, HOUR_MS) / bucketMs);
        if (visits > 0)
          hourlyDispersion += da * (squaredResidual(0, prev, hourlyDispersion, model, meanFloor, observed) - hourlyDispersion);
        const as = Math.max(1 / (visits + 1), minSeasonAlpha);
        f[at] = prev + as * (0 - prev);
      }
      if (Math.floor(t / DAY_MS) !== Math.floor(lastFolded / DAY_MS)) {
        // closeDay reads and writes the slot: hand it the numbers as they stand.
        f[o + F.burst] = burst;
        f[o + F.lastFoldedMs] = lastFolded;
        this.closeDay(k, t);
        burst = f[o + F.burst] as number;
      }
      burst = Math.max(isWeekend(t) ? burst : burst * decay, 0);
      if (!isWeekend(t)) f[o + F.runPeak] = (f[o + F.runPeak] as number) * decay;
      for (let i = 0; i < SKETCH_ATTRIBUTES.length; i++) {
        if (k.sketches[i] !== null && !(i === WHO && k.scope === 'principalAction')) this.sketches.scale(k, i, 1 - a);
      }
      if (observed < windowBuckets) observed++;
      lastFolded = t;
    }
    f[o + F.mean] = mean;
    f[o + F.dispersion] = dispersion;
    f[o + F.hourlyDispersion] = hourlyDispersion;
    f[o + F.burst] = burst;
    f[o + F.observed] = observed;
    f[o + F.lastFoldedMs] = lastFolded;
  }

  /** Judge settings by direction: one object each, not one per bucket. */
  private readonly settingsByDirection = new Map<Direction, JudgeSettings>();

  private settingsFor(direction: Direction): JudgeSettings {
    if (direction === 'up') return this.judgeUp;
    let s = this.settingsByDirection.get(direction);
    if (s === undefined) {
      s = { ...this.judgeUp, direction };
      this.settingsByDirection.set(direction, s);
    }
    return s;
  }

  /**
   * A run upwards that mattered (half the threshold's evidence), once it is over, joins the run
   * memory; in the cold start a quarter does (its wide dispersion keeps runs small, and a nightly
   * job's first runs are what the key will do every night).
   */
  private rememberRun(k: KeyState, sum: number, buckets: number, peak: number): void {
    const share = k.observed < this.seasonalAfterBuckets ? 4 : 2;
    if (buckets > 0 && CUSUM_WEIGHT * peak >= this.thresholdDecades / share)
      k.f[k.o + F.runPeak] = Math.max(k.f[k.o + F.runPeak] as number, sum / buckets);
  }

  /** Reads a key's sustained-shift run from its slot (at F.cusumUp or F.cusumDown). */
  private readRun(k: KeyState, at: number, run: CusumRun): CusumRun {
    const f = k.f;
    const o = k.o + at;
    run.s = f[o] as number;
    run.startMs = f[o + 1] as number;
    run.sum = f[o + 2] as number;
    run.buckets = f[o + 3] as number;
    run.peak = f[o + 4] as number;
    return run;
  }

  private writeRun(k: KeyState, at: number, run: CusumRun): void {
    const f = k.f;
    const o = k.o + at;
    f[o] = run.s;
    f[o + 1] = run.startMs;
    f[o + 2] = run.sum;
    f[o + 3] = run.buckets;
    f[o + 4] = run.peak;
  }

  private readonly runUp: CusumRun = { s: 0, startMs: 0, sum: 0, buckets: 0, peak: 0 };
  private readonly runDown: CusumRun = { s: 0, startMs: 0, sum: 0, buckets: 0, peak: 0 };

  private evaluate(k: KeyState, b: number, acc: BucketAcc | undefined, out: Insight[]): void {
    const c = this.config;
    if (k.observed === UNBORN) {
      // The account has been watched since its first bucket with this key at zero: that is
      // history too, so a principal calling an API it never used is judged, not learned. Set
      // when the bucket closes, not when the key appears, so arrival order cannot change it.
      const watched = Math.floor((b - (this.streamStartMs.get(k.accountId) ?? b)) / c.bucketMs);
      k.observed = Math.min(Math.max(0, watched), this.windowBuckets);
    }
    this.foldZerosUntil(k, b);
    const count = acc?.count ?? 0;
    const expected = this.expected(k, b);
    const counts = this.model === 'counts';
    if (!counts && acc === undefined) {
      this.noReading(k, b, out);
      return;
    }
    const lambda = counts ? Math.max(expected, this.meanFloor) : expected;
    const cold = k.observed < this.seasonalAfterBuckets;
    const learning = k.observed * c.bucketMs < c.minHistoryMs;
    const dispersion = counts && cold ? Math.max(this.dispersionOf(k), COLD_DISPERSION) : this.dispersionOf(k);
    const up = this.readRun(k, F.cusumUp, this.runUp);
    const down = this.readRun(k, F.cusumDown, this.runDown);
    const upBuckets = up.buckets;
    const upSum = up.sum;
    const upPeak = up.peak;
    const runPeak = k.f[k.o + F.runPeak] as number;
    const j = judge(
      this.settingsFor(k.direction),
      {
        bucketStartMs: b,
        value: count,
        expected: lambda,
        dropFrom: expected,
        dispersion,
        learning,
        // A drop is judged only once the expectation knows the key's quiet hours (or there are none to know).
        dropsReady: !cold || !this.seasonal,
        burst: k.burst,
        runPeak,
        // Runs upwards are learned, not reported, for a week: deployments and jobs come back on
        // working days, and two days of them are not yet the key's habits.
        runsCold: k.observed < this.runLearningBuckets,
      },
      up,
      down,
    );
    if (upBuckets > 0 && up.buckets === 0) this.rememberRun(k, upSum, upBuckets, upPeak);
    this.writeRun(k, F.cusumUp, up);
    this.writeRun(k, F.cusumDown, down);
    const anomalous = j.score >= c.scoreThreshold;
    const end = b + c.bucketMs;
    this.onBucket?.({
      keyId: k.id,
      bucketStartMs: b,
      count,
      baselineMean: k.mean,
      expected: lambda,
      score: j.score,
      rawScore: j.rawScore,
      veto: j.veto,
      direction: j.direction,
      sustained: j.sustained,
    });

    let s = k.streak;
    if (s?.started && (s.direction ?? 'up') !== j.direction && anomalous) {
      // The key swung the other way while an Insight was open: that Insight is over.
      this.end(k, s, out);
      s = null;
    }
    if (anomalous) {
      if (!s) s = this.openStreak(k, b, j, count, j.direction === 'up' ? up : down);
      s.buckets++;
      s.count += count;
      s.lastEndMs = end;
      s.belowStreak = 0;
      s.peakScore = Math.max(s.peakScore, j.score);
      s.peakCount = j.direction === 'up' ? Math.max(s.peakCount, count) : s.peakCount;
      if (acc) for (const attr of ATTRIBUTES) hhMerge(s.contributors[attr], acc.contributors[attr]);
      if (!s.started && s.buckets >= c.startAfterBuckets) {
        s.started = true;
        s.startScore = j.score;
        s.baselineTop = this.baselineSnapshot(k, s.baselineMean);
        this.metrics.insightsStarted++;
        out.push(buildInsight(this.facts(k, s, 'Start')));
      }
      // Winsorized: a rare anomaly teaches the baseline only as much as a borderline bucket would.
      // The burst memory learns an anomaly only once it is over (below): a slow ramp must not
      // raise the bar it is measured against while it climbs.
      const winsorize = j.direction === 'up' && j.decades >= Math.max(this.thresholdDecades, WINSOR_MIN_DECADES);
      const cap = counts ? lambda + 3 * Math.sqrt(lambda * Math.max(1, dispersion)) + 1 : lambda + 3 * Math.sqrt(dispersion);
      this.fold(k, b, winsorize ? Math.min(count, cap) : count, 0, undefined);
    } else {
      if (s) {
        if (!s.started) {
          // A candidate that did not last k buckets: forget it.
          k.streak = null;
          this.streaking.delete(k.id);
          s = null;
        } else {
          s.belowStreak++;
        }
      }
      // Only unremarkable buckets raise the burst memory at once; a merely suspicious one (a ramp
      // on its way up) may keep it from fading but must not lift the bar it is judged against today.
      // A suspicious bucket that did not fire is remembered as today's peak. A peak that recurs
      // the next day is a habit and joins the burst memory at midnight UTC: at about the same
      // time of day (a nightly job), or at any time when it came close to firing (deployments).
      // Poisson noise rarely does either. Ordinary buckets only keep the memory from fading.
      // In the cold start (learning, then the first two days) the key has no habits yet to
      // recognise a burst by: a burst that did not fire then is remembered as it comes.
      const learn = learning || cold ? count : Math.min(count, k.burst);
      const rise = j.direction === 'up' ? j.bucketDecades : 0;
      if (rise >= this.thresholdDecades / 2 && count > k.dayPeak) {
        k.dayPeakNear = rise >= NEAR_MISS * this.thresholdDecades;
        k.dayPeak = count;
        k.dayPeakMinute = Math.floor(modFloor(b, DAY_MS) / MINUTE_MS);
      }
      this.fold(k, b, count, learn, acc?.contributors);
    }
    if (s?.started && (s.belowStreak >= c.endAfterBuckets || end - s.startMs >= c.maxDurationMs)) {
      if (s.belowStreak === 0) s.lastEndMs = end;
      this.end(k, s, out);
    }
  }

  /**
   * A metric series' bucket without a reading (a gap, or a key watched for drops judged between its
   * readings): nothing is learned and nothing is judged; an open Insight counts it as ordinary.
   */
  private noReading(k: KeyState, b: number, out: Insight[]): void {
    const s = k.streak;
    if (!s) return;
    if (!s.started) {
      k.streak = null;
      this.streaking.delete(k.id);
      return;
    }
    s.belowStreak++;
    if (s.belowStreak >= this.config.endAfterBuckets || b + this.config.bucketMs - s.startMs >= this.config.maxDurationMs)
      this.end(k, s, out);
  }

  /** A new streak at bucket `b`; a sustained run's streak begins where the run began, with its counts so far. */
  private openStreak(k: KeyState, b: number, j: Judgement, count: number, run: CusumRun): Streak {
    // A shift began where its run began, whichever evidence (the run's or the bucket's) crossed first.
    const fromRun = run.buckets > 1;
    const s: Streak = {
      startMs: fromRun ? run.startMs : b,
      lastEndMs: b,
      buckets: fromRun ? run.buckets - 1 : 0,
      count: fromRun ? run.sum - count : 0,
      peakScore: 0,
      peakCount: 0,
      startScore: j.score,
      contributors: newContributors(this.capacity),
      baselineMean: k.mean,
      baselineMinutes: k.observed * this.bucketMinutes,
      belowStreak: 0,
      started: false,
      direction: j.direction,
    };
    k.streak = s;
    this.streaking.add(k.id);
    return s;
  }

  private end(k: KeyState, s: Streak, out: Insight[]): void {
    this.metrics.insightsEnded++;
    out.push(buildInsight(this.facts(k, s, 'End')));
    // Reported once; the same burst again within a week or so is this key's habit.
    if ((s.direction ?? 'up') === 'up') k.burst = Math.max(k.burst, s.peakCount);
    // The run was reported: a later Start names a run of its own, never this one's start again.
    const at = k.o + ((s.direction ?? 'up') === 'up' ? F.cusumUp : F.cusumDown);
    if ((s.direction ?? 'up') === 'up') this.rememberRun(k, k.f[at + 2] as number, k.f[at + 3] as number, k.f[at + 4] as number);
    k.f.fill(0, at, at + CUSUM_FIELDS);
    k.streak = null;
    this.streaking.delete(k.id);
  }

  private facts(k: KeyState, s: Streak, state: 'Start' | 'End'): AnomalyFacts {
    const anomalyMinutes = s.buckets * this.bucketMinutes;
    const contributors: ContributorAverages[] = ATTRIBUTES.filter(
      (a) => !(a === 'errorCode' && k.insightType === 'ApiErrorRateInsight'),
    ).map((attribute) => ({
      attribute,
      insight: hhTop(s.contributors[attribute], this.config.topN).map((v) => ({ value: v.value, average: v.count / anomalyMinutes })),
      baseline: (s.baselineTop?.[attribute] ?? this.baselineTop(k, attribute, s.baselineMean))
        .filter((v) => v.count > 1e-9)
        .map((v) => ({ value: v.value, average: v.count / this.bucketMinutes })),
    }));
    return {
      state,
      keyId: k.id,
      ...subjectOf(k),
      startTimeMs: s.startMs,
      endTimeMs: state === 'End' ? s.lastEndMs : null,
      bucketMs: this.config.bucketMs,
      baselinePerMinute: s.baselineMean / this.bucketMinutes,
      insightPerMinute: s.count / anomalyMinutes,
      baselineWindowMinutes: this.windowBuckets * this.bucketMinutes,
      historyMinutes: s.baselineMinutes,
      score: state === 'Start' ? s.startScore : s.peakScore,
      threshold: this.config.scoreThreshold,
      contributors,
    };
  }

  /** The attribution baselines at Start, kept on the streak so the End reports what the Start did. */
  private baselineSnapshot(k: KeyState, baselineMean: number): NonNullable<Streak['baselineTop']> {
    const out: NonNullable<Streak['baselineTop']> = {};
    for (const attribute of ATTRIBUTES) out[attribute] = this.baselineTop(k, attribute, baselineMean);
    return out;
  }

  private baselineTop(k: KeyState, attribute: AttributionAttribute, baselineMean: number): Array<{ value: string; count: number }> {
    if (attribute === 'userIdentityArn' && k.scope === 'principalAction' && k.principal !== null) {
      return [{ value: k.principal, count: baselineMean }];
    }
    return this.sketches.top(k, SKETCH_ATTRIBUTES.indexOf(attribute), this.config.topN);
  }

  /**
   * One copy of each identity string however many keys name it: a decoded event brings fresh
   * copies of its account, service, action and principal, and a million keys would keep them all.
   */
  private intern(value: string): string {
    const known = this.strings.get(value);
    if (known !== undefined) return known;
    if (this.strings.size >= MAX_INTERNED) this.strings.clear();
    this.strings.set(value, value);
    return value;
  }

  private evictIfFull(): void {
    while (this.keys.size >= this.config.maxKeys) {
      if (this.oldest === null) return;
      this.dropKey(this.oldest.id);
      this.metrics.keysEvicted++;
    }
  }

  private lruAppend(k: KeyState): void {
    k.older = this.newest;
    k.newer = null;
    if (this.newest === null) this.oldest = k;
    else this.newest.newer = k;
    this.newest = k;
  }

  private lruRemove(k: KeyState): void {
    if (k.older === null) this.oldest = k.newer;
    else k.older.newer = k.newer;
    if (k.newer === null) this.newest = k.older;
    else k.newer.older = k.older;
    k.older = null;
    k.newer = null;
  }

  private lruOrder(): KeyState[] {
    const out: KeyState[] = [];
    for (let k = this.oldest; k !== null; k = k.newer) out.push(k);
    return out;
  }

  private dropKey(id: string): void {
    const k = this.keys.get(id);
    if (!k) return;
    if (k.pending) for (const p of k.pending) this.pendingIndex.get(p.startMs)?.delete(id);
    this.streaking.delete(id);
    this.watchingDown.delete(id);
    this.keys.delete(id);
    k.dropped = true;
    this.lruRemove(k);
    this.poolOf(k.scope).release(k.slot);
    this.changes?.keys.add(k);
  }

  /** Drops idle keys and dedupe entries the watermark has passed. Both maps are in arrival order, so scans stop early. */
  private expire(): void {
    const idleBefore = this.watermark - this.config.keyIdleTtlMs;
    for (let k = this.oldest, next: KeyState | null; k !== null; k = next) {
      next = k.newer;
      if (k.lastEventMs >= idleBefore) break;
      if (k.streak || k.pending) continue;
      this.dropKey(k.id);
      this.metrics.keysExpired++;
    }
    for (const [id, t] of this.seen) {
      if (t + this.config.bucketMs > this.closedThroughMs) break;
      this.seen.delete(id);
    }
  }
}

/** Removes the key's open bucket starting at `b` and returns it; the key's list is null once empty. */
function takeOpen(k: KeyState, b: number): OpenBucket | undefined {
  const pending = k.pending;
  if (pending === null) return undefined;
  for (let i = 0; i < pending.length; i++) {
    const open = pending[i] as OpenBucket;
    if (open.startMs !== b) continue;
    if (pending.length === 1) k.pending = null;
    else pending.splice(i, 1);
    return open;
  }
  return undefined;
}

function toPartial(k: KeyState, bucketStartMs: number, acc: BucketAcc): BucketPartial {
  const contributors = {} as BucketPartial['contributors'];
  for (const attr of ATTRIBUTES) {
    const sketch = acc.contributors[attr];
    contributors[attr] = sketch.values.map((v, i) => [v, (sketch.counts[i] as number) * sketch.scale]);
  }
  return {
    key: { id: k.id, ...subjectOf(k) },
    bucketStartMs,
    count: acc.count,
    contributors,
  };
}
