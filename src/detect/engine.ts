import type { DetectorConfig } from '../config/schema.ts';
import type { AttributionAttribute, AuditEvent, Insight, InsightScope } from '../contracts/types.ts';
import { type AnomalyFacts, buildInsight, type InsightSubject } from '../emit/insight.ts';
import { Expectation, type ExpectationSettings, expectationSettings } from './baseline/expectation.ts';
import { BurstMemory } from './baseline/memory.ts';
import { decadesOf, type ValueModel, watchesDown } from './baseline/score.ts';
import { boundEvent } from './bounds.ts';
import {
  activityOrder,
  checkVersion,
  type EngineChanges,
  type EngineMeta,
  type EngineMetrics,
  type EngineSnapshot,
  emptyEngineMetrics,
  finiteOrNull,
  orNegInf,
  SNAPSHOT_VERSION,
} from './checkpoint.ts';
import { type BucketObservation, Decider } from './decide.ts';
import { type CachedKey, Interner, KeyTable, type ScopedKeys, SignalKeys, type TupleKeys } from './keys.ts';
import { Overrides, placementChanged, type Tuning } from './overrides.ts';
import { DEFAULT_CATALOG, type SensitivityCatalog } from './rules/catalog.ts';
import { enabledSignals, qualifierOf, type ReadFilter, type SignalType, signalOf } from './signals.ts';
import { hhAdd, hhTop, newHeavyHitters } from './sketch.ts';
import {
  BaselineSketches,
  type BucketAcc,
  decodeKey,
  encodeKey,
  fromRecord,
  type KeyRecord,
  KeyState,
  newContributors,
  type OpenBucket,
  SKETCH_ATTRIBUTES,
  SlotPool,
  subjectOf,
  toRecord,
} from './state.ts';
import { MINUTE_MS } from './time.ts';

export {
  type EngineChanges,
  type EngineMeta,
  type EngineMetrics,
  type EngineSnapshot,
  emptyEngineMetrics,
} from './checkpoint.ts';
export type { BucketObservation } from './decide.ts';
export { decodeKey, encodeKey, type KeyRecord, KeyState } from './state.ts';
export { modFloor, remainder } from './time.ts';

/**
 * The detection engine: pure, synchronous, no Kafka inside. The live consumer, `trailwatch
 * backtest` and the benchmarks all drive this one class, so they agree by construction.
 *
 * Lifecycle: `process(batch)` folds events into event-time buckets; `advanceWatermark(ms)`
 * closes buckets (the runtime calls it when the source goes idle); `snapshot()`/`restore()`
 * checkpoint the whole state as JSON-safe data.
 *
 * This file is the orchestration: dedupe, buckets, the watermark, the keys' lifecycle (creation,
 * LRU eviction, expiry) and assembling checkpoints (their shapes: checkpoint.ts; a key's
 * encodings: state.ts). What an event counts towards is the signal table (signals.ts, looked up
 * per tuple in keys.ts); what a closed bucket means is decided in decide.ts, against the
 * expectation and memories in baseline/; decide.ts reports facts and this file makes them Insights.
 */

const ATTRIBUTES: AttributionAttribute[] = ['userIdentityArn', 'userAgent', 'errorCode'];
/** Capacity of a bucket's sketches while partials add up in it: in effect unbounded (a few per upstream partition). */
const EXACT_CAPACITY = 1_000_000;
/** `observed` of a key whose first bucket is not judged yet. */
const UNBORN = -1;

/** What names a key: the scope, the signal and where it is measured. */
export type KeyIdentity = InsightSubject & { id: string };

export interface EngineHooks {
  /** Called for every judged bucket; keep it cheap, it is on the hot path. */
  onBucket?: (observation: BucketObservation) => void;
  /** Called for every Start and End kept back by detector.suppressions. */
  onSuppressed?: (facts: AnomalyFacts) => void;
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
   * What a bucket's value is, for every key: `counts` (events, non-negative: a count model with
   * Poisson noise), or `gauge` (a real-valued metric series, fractions and negatives allowed: a
   * location-scale model). Default: each signal type's own (signals.ts; counts for the rates).
   */
  valueModel?: ValueModel;
}

export class DetectionEngine {
  readonly config: DetectorConfig;
  /** The live keys, by id and least recently active first. */
  private readonly keys = new KeyTable();
  /** eventId → event time, for the dedupe horizon (the lateness window). */
  private readonly seen = new Map<string, number>();
  /** Bucket start → keys with pending counts in it. */
  private readonly pendingIndex = new Map<number, Set<string>>();
  /** Keys with a streak: evaluated every bucket, even at zero count, so Ends are not held back (the Decider keeps it). */
  private readonly streaking = new Set<string>();
  /** Keys watched for drops: judged every bucket, data or not (a silent key is what a drop looks like). */
  private readonly watchingDown = new Set<string>();
  private readonly strings = new Interner();
  /** The signal types counted (detector.insightTypes), in table order, and the key ids of event tuples. */
  private readonly signals: readonly SignalType[];
  private readonly signalKeys: SignalKeys;
  private readonly reads: ReadFilter;
  /** Per event: the keys it counts towards, in table order (reused; only the first few entries are the event's). */
  private readonly counted: ScopedKeys[] = [];
  private readonly scopeAction: boolean;
  private readonly scopePrincipal: boolean;
  /** First bucket seen per account: a key born later has watched zeros since then, not nothing. */
  private readonly streamStartMs = new Map<string, number>();
  private maxEventTimeMs = Number.NEGATIVE_INFINITY;
  private watermark = Number.NEGATIVE_INFINITY;
  /** All buckets ending at or before this are closed. */
  private closedThroughMs = Number.NEGATIVE_INFINITY;
  private readonly baseline: ExpectationSettings;
  private readonly capacity: number;
  private readonly bucketMinutes: number;
  private readonly valueModel: ValueModel | undefined;
  private readonly onSuppressed: ((facts: AnomalyFacts) => void) | undefined;
  /** Per-key settings (overrides, suppressions); replaced by `retune`, keys re-resolved by generation. */
  private overrides: Overrides;
  private generation = 0;
  /** Insights (Starts and Ends) kept back by detector.suppressions: not emitted, not in `metrics` (checkpoint shapes stay as they were). */
  insightsSuppressed = 0;
  /** Where every key's numbers live (see state.ts): principal keys need no sketch of who called. */
  private readonly principalPool: SlotPool;
  private readonly actionPool: SlotPool;
  private readonly sketches: BaselineSketches;
  private readonly decider: Decider;
  /** What the Decider reported while a bucket closed, before it becomes Insights (reused). */
  private readonly facts: AnomalyFacts[] = [];
  readonly metrics: EngineMetrics = emptyEngineMetrics();

  private readonly forwardScopes: ReadonlySet<InsightScope>;
  private partials: BucketPartial[] = [];
  /** Change tracking for incremental checkpoints; null unless `trackChanges`. */
  private readonly changes: { keys: Set<KeyState>; seen: Array<[string, number]> } | null;

  constructor(config: DetectorConfig, options: EngineOptions = {}) {
    this.config = config;
    this.forwardScopes = new Set(options.forwardScopes ?? []);
    this.changes = options.trackChanges ? { keys: new Set(), seen: [] } : null;
    this.scopeAction = config.scopes.action;
    this.scopePrincipal = config.scopes.principalAction;
    this.signals = enabledSignals(config.insightTypes);
    this.reads = {
      includeReadOnly: config.includeReadOnly,
      sensitiveReads: config.sensitiveReads && !config.includeReadOnly ? (options.catalog ?? DEFAULT_CATALOG) : null,
    };
    this.signalKeys = new SignalKeys(this.signals, config.scopes, this.strings);
    this.baseline = expectationSettings(config);
    this.capacity = config.topN * 2;
    this.bucketMinutes = config.bucketMs / MINUTE_MS;
    this.valueModel = options.valueModel;
    this.onSuppressed = options.onSuppressed;
    this.overrides = new Overrides(config);
    this.principalPool = new SlotPool(config.topN, SKETCH_ATTRIBUTES.length - 1, this.baseline.seasonal);
    this.actionPool = new SlotPool(config.topN, SKETCH_ATTRIBUTES.length, this.baseline.seasonal);
    this.sketches = new BaselineSketches(this.actionPool, (v) => this.strings.intern(v));
    const thresholdDecades = decadesOf(config.scoreThreshold);
    this.decider = new Decider(
      config,
      new Expectation(this.baseline, this.actionPool, this.sketches),
      new BurstMemory(config.bucketMs, thresholdDecades, this.baseline.seasonalAfterBuckets),
      this.sketches,
      this.streaking,
      options.onBucket,
    );
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
      learning: k.observed * this.config.bucketMs < (k.settings?.minHistoryMs ?? this.config.minHistoryMs),
      coldStart: k.observed < this.baseline.seasonalAfterBuckets,
      historyMinutes: Math.max(0, k.observed) * this.bucketMinutes,
      baselinePerMinute: k.mean / this.bucketMinutes,
      inInsight: k.streak?.started ?? false,
    };
  }

  keyIds(): string[] {
    return this.keys.order().map((k) => k.id);
  }

  snapshot(): EngineSnapshot {
    return structuredClone({
      version: SNAPSHOT_VERSION,
      maxEventTimeMs: this.maxEventTimeMs,
      watermarkMs: this.watermark,
      closedThroughMs: this.closedThroughMs,
      keys: this.keys.order().map((k) => this.record(k)),
      seen: [...this.seen.entries()],
      streamStartMs: [...this.streamStartMs.entries()],
      metrics: { ...this.metrics },
    });
  }

  static restore(config: DetectorConfig, snapshot: EngineSnapshot, options: EngineOptions = {}): DetectionEngine {
    checkVersion(snapshot.version, 'snapshot');
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
      checkVersion(meta.version, 'checkpoint');
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
    for (const i of activityOrder(lastEventMs)) engine.adopt(restored[i] as KeyState);
    for (const [id, t] of seen) if (t + config.bucketMs > engine.closedThroughMs) engine.seen.set(id, t);
    return engine;
  }

  // ── internals ────────────────────────────────────────────────────────────

  private poolOf(scope: InsightScope): SlotPool {
    return scope === 'principalAction' ? this.principalPool : this.actionPool;
  }

  private record(k: KeyState): KeyRecord {
    return toRecord(k, this.actionPool, this.sketches, this.baseline.seasonal, this.config.topN);
  }

  private adopt(k: KeyState): void {
    this.place(k);
    this.keys.add(k);
    if (k.pending) for (const p of k.pending) this.indexPending(p.startMs, k.id);
    if (k.streak) this.streaking.add(k.id);
  }

  /**
   * The keys an event counts towards, in a fixed order (per action, then per principal; in the
   * signal table's order within each): the order keys are created and touched in is the LRU order
   * eviction and expiry follow, so it must not change.
   */
  private countSignals(e: AuditEvent, bucket: number): void {
    const { signals, reads, counted, signalKeys } = this;
    // The tuple is looked up only when the event counts at all (most reads do not).
    let tuple: TupleKeys | null = null;
    let n = 0;
    for (let s = 0; s < signals.length; s++) {
      const signal = signals[s] as SignalType;
      const q = qualifierOf(signal, e, reads);
      if (q === undefined) continue;
      tuple ??= signalKeys.tuple(e);
      counted[n++] = q === null ? signalKeys.keysOf(tuple, e, s) : signalKeys.qualifiedKeysOf(tuple, e, s, q);
    }
    if (n === 0) return;
    if (this.scopeAction)
      for (let i = 0; i < n; i++) this.count((counted[i] as ScopedKeys).action, 'action', counted[i] as ScopedKeys, e, bucket);
    if (this.scopePrincipal) {
      for (let i = 0; i < n; i++) this.count((counted[i] as ScopedKeys).principal, 'principalAction', counted[i] as ScopedKeys, e, bucket);
    }
  }

  private count(cached: CachedKey, scope: InsightScope, keys: ScopedKeys, e: AuditEvent, bucket: number): void {
    let k = cached.key;
    if (k === null || k.dropped) {
      k =
        this.keys.get(cached.id) ??
        this.create(
          cached.id,
          scope,
          keys.signal,
          e.accountId,
          e.region,
          e.service,
          e.action,
          scope === 'principalAction' ? e.principal : null,
          keys.qualifier,
          bucket,
          e.eventTimeMs,
        );
      cached.key = k;
    }
    this.touched(k, bucket, e.eventTimeMs, e.region);
    const acc = this.accumulator(k, bucket);
    acc.count++;
    hhAdd(acc.contributors.userIdentityArn, e.principal);
    hhAdd(acc.contributors.userAgent, e.userAgent ?? 'null');
    hhAdd(acc.contributors.errorCode, e.errorCode ?? 'null');
  }

  /** The key's state, created when new, moved to the most recently active end of the LRU order. */
  private touch(proto: KeyIdentity, bucket: number, eventTimeMs: number, region: string): KeyState {
    const k =
      this.keys.get(proto.id) ??
      this.create(
        proto.id,
        proto.scope,
        signalOf(proto.insightType),
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
    signal: SignalType,
    accountId: string,
    region: string,
    service: string,
    action: string,
    principal: string | null,
    errorCode: string | null,
    bucket: number,
    eventTimeMs: number,
  ): KeyState {
    const { strings } = this;
    const k = new KeyState(
      {
        id,
        scope,
        insightType: signal.insightType,
        accountId: strings.intern(accountId),
        region: strings.intern(region),
        service: strings.intern(service),
        action: strings.intern(action),
        principal: principal === null ? null : strings.intern(principal),
        errorCode: errorCode === null ? null : strings.intern(errorCode),
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
    this.keys.add(k);
    return k;
  }

  /**
   * The key's settings (overrides, suppressions), direction and value model (its signal's, or the
   * engine's); a key watched for drops is judged every bucket.
   */
  private place(k: KeyState): void {
    const settings = this.overrides.resolve(k);
    k.settings = settings;
    k.generation = this.generation;
    k.direction = settings.direction;
    k.model = this.valueModel ?? signalOf(k.insightType).valueModel;
    if (!k.forward && settings.enabled && watchesDown(k.direction)) this.watchingDown.add(k.id);
    else this.watchingDown.delete(k.id);
  }

  /**
   * New per-key settings (a config applied while running), from the next bucket closed on. Keys
   * take them lazily, when next judged; all at once only when a key's direction or on/off could
   * change, as those decide which keys are judged at all.
   */
  retune(tuning: Tuning): void {
    const eager = placementChanged(this.overrides.tuning, tuning);
    this.overrides = new Overrides(tuning);
    this.generation++;
    if (eager) for (const k of this.keys.order()) this.place(k);
  }

  /** Bookkeeping of a key that an event (or a partial) just reached. */
  private touched(k: KeyState, bucket: number, eventTimeMs: number, region: string): void {
    // Least recently active first: moved to the end once per key and bucket rather than per
    // event (the order only has to be right to the bucket).
    if (k.lastEventMs < bucket) this.keys.renew(k);
    if (k.scope === 'principalAction' && k.region !== region) k.region = this.strings.intern(region);
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
    const facts = this.facts;
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
      if (k.generation !== this.generation) this.place(k);
      const settings = k.settings;
      if (!settings.enabled) {
        // Switched off while in a streak (a config applied live): an open Insight ends where it
        // stood (subscribers must not be left with a Start and no End), a candidate is forgotten.
        if (k.streak) this.decider.switchedOff(k, facts);
        continue;
      }
      if (k.observed === UNBORN) this.born(k, b);
      if (settings.suppressions.length === 0 && k.streak?.suppressed === undefined) {
        this.decider.decide(k, b, acc, facts);
        continue;
      }
      const from = facts.length;
      const wasSuppressed = k.streak?.suppressed === true;
      this.decider.decide(k, b, acc, facts);
      this.suppress(k, b, facts, from, wasSuppressed);
    }
    if (facts.length === 0) return;
    for (const f of facts) {
      if (f.state === 'Start') this.metrics.insightsStarted++;
      else this.metrics.insightsEnded++;
      out.push(buildInsight(f));
    }
    facts.length = 0;
  }

  /**
   * Takes the key's Insights suppressed at bucket `b` out of `facts` (from `from` on): a Start is
   * suppressed when its bucket is before a matching suppression's expiry (event time, so a replay
   * is exact), and its End goes with it, whatever the config says by then.
   */
  private suppress(k: KeyState, b: number, facts: AnomalyFacts[], from: number, wasSuppressed: boolean): void {
    let suppressed = wasSuppressed;
    let to = from;
    for (let i = from; i < facts.length; i++) {
      const f = facts[i] as AnomalyFacts;
      if (f.state === 'Start') suppressed = b < k.settings.suppressedUntilMs;
      if (suppressed) {
        this.insightsSuppressed++;
        this.onSuppressed?.(f);
      } else facts[to++] = f;
    }
    facts.length = to;
    const s = k.streak;
    if (s?.started) {
      if (suppressed) s.suppressed = true;
      else delete s.suppressed;
    }
  }

  /**
   * The account has been watched since its first bucket with this key at zero: that is history
   * too, so a principal calling an API it never used is judged, not learned. Set when the key's
   * first bucket closes, not when the key appears, so arrival order cannot change it.
   */
  private born(k: KeyState, b: number): void {
    const watched = Math.floor((b - (this.streamStartMs.get(k.accountId) ?? b)) / this.config.bucketMs);
    k.observed = Math.min(Math.max(0, watched), this.baseline.windowBuckets);
  }

  private evictIfFull(): void {
    while (this.keys.size >= this.config.maxKeys) {
      if (this.keys.oldest === null) return;
      this.dropKey(this.keys.oldest);
      this.metrics.keysEvicted++;
    }
  }

  private dropKey(k: KeyState): void {
    const id = k.id;
    if (k.pending) for (const p of k.pending) this.pendingIndex.get(p.startMs)?.delete(id);
    this.streaking.delete(id);
    this.watchingDown.delete(id);
    this.keys.remove(k);
    this.poolOf(k.scope).release(k.slot);
    this.changes?.keys.add(k);
  }

  /** Drops idle keys and dedupe entries the watermark has passed. Both are in arrival order, so scans stop early. */
  private expire(): void {
    const idleBefore = this.watermark - this.config.keyIdleTtlMs;
    for (let k = this.keys.oldest, next: KeyState | null; k !== null; k = next) {
      next = k.newer;
      if (k.lastEventMs >= idleBefore) break;
      if (k.streak || k.pending) continue;
      this.dropKey(k);
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
