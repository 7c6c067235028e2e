import { Partitioners } from 'kafkajs';
import type { DetectorConfig } from '../config/schema.ts';
import type { AuditEvent, Finding, Insight } from '../contracts/types.ts';
import { type BucketPartial, DetectionEngine, type EngineMeta, type EngineOptions } from './engine.ts';
import { type FindingSetup, FindingStage } from './findings.ts';

/**
 * The detector's topology, pure. Two stages, each partitioned like the Kafka topic it reads:
 *
 *   events (key account|principal) ─▶ PrincipalStage[p] ─┬─▶ Insights (per principal × action)
 *                                                        └─▶ partials + watermarks (key: action key)
 *                                                              ─▶ ActionStage[q] ─▶ Insights (per action)
 *
 * A PrincipalStage judges the keys whose events all land in its partition (one principal's)
 * and only aggregates the per-action keys, handing each closed bucket's count on as a
 * BucketPartial. An ActionStage adds up the partials of every upstream partition and judges
 * the per-action keys once every upstream partition's watermark has passed a bucket.
 *
 * The live runtime runs each stage partition as a task on its own Kafka partition; `Topology`
 * runs them all in one process for the backtest and the tests, so both give the same Insights.
 */

/** What an upstream partition tells every downstream partition with each of its commits. */
export interface WatermarkMarker {
  source: number;
  /** The upstream partition's watermark; null before it has one. */
  watermarkMs: number | null;
  /** Caught up with nothing new for a while: it no longer holds downstream time back. */
  idle: boolean;
  /** Accounts whose first bucket upstream is new or earlier since the previous marker. */
  accountStarts: Array<[string, number]>;
}

export interface StageOutput {
  insights: Insight[];
  /** Rule, correlation, first-seen and breadth findings (first stage only). */
  findings: Finding[];
  partials: BucketPartial[];
  marker: WatermarkMarker;
}

export type ActionRecord = { kind: 'partial'; partial: BucketPartial } | { kind: 'marker'; marker: WatermarkMarker };

const partitioner = Partitioners.DefaultPartitioner();
const metadataFor = new Map<number, Array<{ partitionId: number; leader: number }>>();

/** The partition Kafka's default (murmur2) partitioner gives `key`: where the runtime's producers put it. */
export function partitionFor(key: string, partitions: number): number {
  let metadata = metadataFor.get(partitions);
  if (!metadata) {
    metadata = Array.from({ length: partitions }, (_, i) => ({ partitionId: i, leader: 0 }));
    metadataFor.set(partitions, metadata);
  }
  // The topic name only seeds round-robin for keyless messages; every message here has a key.
  return partitioner({ topic: 'trailwatch', partitionMetadata: metadata as never, message: { key, value: null } });
}

/** The events topic's key: one principal's events stay in one partition, in order. */
export function eventKey(e: Pick<AuditEvent, 'accountId' | 'principal'>): string {
  return `${e.accountId}|${e.principal}`;
}

function principalEngineOptions(config: DetectorConfig, options: EngineOptions): EngineOptions {
  return { ...options, forwardScopes: config.scopes.action ? ['action'] : [] };
}

/** Engine options plus, for the first stage, what its findings need (absent: no findings). */
export interface StageOptions extends EngineOptions {
  findings?: FindingSetup;
}

/** The first stage, one per events partition. */
export class PrincipalStage {
  readonly partition: number;
  readonly engine: DetectionEngine;
  /** Rules, correlations, first-seen and breadth; null when the stage makes no findings. */
  readonly findings: FindingStage | null;
  private readonly sentAccounts = new Map<string, number>();
  private idle = false;

  constructor(partition: number, engine: DetectionEngine, findings: FindingStage | null = null) {
    this.partition = partition;
    this.engine = engine;
    this.findings = findings;
  }

  static create(config: DetectorConfig, partition: number, options: StageOptions = {}): PrincipalStage {
    const { findings, ...engineOptions } = options;
    return new PrincipalStage(
      partition,
      new DetectionEngine(config, principalEngineOptions(config, { ...engineOptions, ...(findings ? { catalog: findings.catalog } : {}) })),
      findings ? FindingStage.create(findings) : null,
    );
  }

  static fromCheckpoint(
    config: DetectorConfig,
    partition: number,
    checkpoint: StageCheckpoint,
    options: StageOptions = {},
  ): PrincipalStage {
    const { findings, ...engineOptions } = options;
    const engine = DetectionEngine.fromCheckpoint(
      config,
      checkpoint.meta,
      checkpoint.keys,
      checkpoint.seen,
      principalEngineOptions(config, { ...engineOptions, ...(findings ? { catalog: findings.catalog } : {}) }),
    );
    return new PrincipalStage(partition, engine, findings ? FindingStage.fromRecords(findings, checkpoint.findings ?? []) : null);
  }

  /** Folds events in; the watermark is this partition's own (latest event time − allowed lateness). */
  process(events: Iterable<AuditEvent>): StageOutput {
    this.idle = false;
    if (!this.findings) return this.output(this.engine.process(events), []);
    const fresh: AuditEvent[] = [];
    const insights = this.engine.process(events, undefined, fresh);
    const findings = this.findings.process(fresh);
    for (const f of this.findings.advance(this.engine.watermarkMs)) findings.push(f);
    return this.output(insights, findings);
  }

  /** Moves event time on with no new events (the partition is idle), or to the end of a backtest. */
  advanceWatermark(watermarkMs: number, idle: boolean): StageOutput {
    this.idle = idle;
    const insights = this.engine.advanceWatermark(watermarkMs);
    return this.output(insights, this.findings?.advance(this.engine.watermarkMs) ?? []);
  }

  private output(insights: Insight[], findings: Finding[]): StageOutput {
    const accountStarts: Array<[string, number]> = [];
    for (const [account, start] of this.engine.accountStarts()) {
      if (this.sentAccounts.get(account) === start) continue;
      this.sentAccounts.set(account, start);
      accountStarts.push([account, start]);
    }
    const watermark = this.engine.watermarkMs;
    return {
      insights,
      findings,
      partials: this.engine.drainPartials(),
      marker: {
        source: this.partition,
        watermarkMs: Number.isFinite(watermark) ? watermark : null,
        idle: this.idle,
        accountStarts,
      },
    };
  }
}

/** What a stage task writes to its changelog and reads back on restore. */
export interface StageCheckpoint {
  meta: EngineMeta | null;
  keys: Iterable<string>;
  seen: Iterable<[string, number]>;
  /** ActionStage only: the upstream partitions' latest markers. */
  upstream?: Array<[number, UpstreamClock]>;
  /** PrincipalStage only: the FindingStage's records (latest value per key). */
  findings?: Iterable<[string, string]>;
}

export interface UpstreamClock {
  watermarkMs: number | null;
  idle: boolean;
}

/** The second stage, one per partition of the action-keyed repartition topic. */
export class ActionStage {
  readonly partition: number;
  readonly engine: DetectionEngine;
  /** Upstream (events) partitions, each of which holds time back until it has spoken or gone idle. */
  readonly sources: number;
  private readonly upstream = new Map<number, UpstreamClock>();
  private upstreamChanged = false;

  constructor(partition: number, sources: number, engine: DetectionEngine, upstream: Iterable<[number, UpstreamClock]> = []) {
    this.partition = partition;
    this.sources = sources;
    this.engine = engine;
    for (const [p, clock] of upstream) this.upstream.set(p, clock);
  }

  static create(config: DetectorConfig, partition: number, sources: number, options: EngineOptions = {}): ActionStage {
    return new ActionStage(partition, sources, new DetectionEngine(config, options));
  }

  static fromCheckpoint(
    config: DetectorConfig,
    partition: number,
    sources: number,
    checkpoint: StageCheckpoint,
    options: EngineOptions = {},
  ): ActionStage {
    const engine = DetectionEngine.fromCheckpoint(config, checkpoint.meta, checkpoint.keys, checkpoint.seen, options);
    return new ActionStage(partition, sources, engine, checkpoint.upstream ?? []);
  }

  ingest(records: Iterable<ActionRecord>): Insight[] {
    const partials: BucketPartial[] = [];
    for (const r of records) {
      if (r.kind === 'partial') {
        partials.push(r.partial);
        continue;
      }
      const { marker } = r;
      for (const [account, start] of marker.accountStarts) this.engine.noteAccountStart(account, start);
      const prev = this.upstream.get(marker.source);
      if (!prev || prev.watermarkMs !== marker.watermarkMs || prev.idle !== marker.idle) {
        this.upstream.set(marker.source, { watermarkMs: marker.watermarkMs, idle: marker.idle });
        this.upstreamChanged = true;
      }
    }
    // Partials first: a marker follows the partials of the buckets it closes.
    this.engine.ingestPartials(partials);
    const watermark = this.watermark();
    return watermark === null ? [] : this.engine.advanceWatermark(watermark);
  }

  /** The slowest upstream partition that is not idle; all idle: the most advanced. Null while one has not spoken. */
  watermark(): number | null {
    let slowest = Number.POSITIVE_INFINITY;
    let fastest = Number.NEGATIVE_INFINITY;
    let active = 0;
    for (let p = 0; p < this.sources; p++) {
      const clock = this.upstream.get(p);
      if (!clock) return null;
      const w = clock.watermarkMs ?? Number.NEGATIVE_INFINITY;
      if (w > fastest) fastest = w;
      if (clock.idle) continue;
      active++;
      if (w < slowest) slowest = w;
    }
    const watermark = active > 0 ? slowest : fastest;
    return Number.isFinite(watermark) ? watermark : null;
  }

  /** The upstream clocks when they changed since the last call (for the changelog), else null. */
  drainUpstream(): Array<[number, UpstreamClock]> | null {
    if (!this.upstreamChanged) return null;
    this.upstreamChanged = false;
    return [...this.upstream.entries()];
  }
}

export interface TopologyOptions extends StageOptions {
  /** Partitions of the events topic. */
  partitions: number;
  /** Partitions of the action-keyed repartition topic. */
  actionPartitions: number;
}

/** Every stage partition in one process: the backtest's and the tests' detector. */
export class Topology {
  readonly principal: PrincipalStage[];
  readonly action: ActionStage[];
  private readonly config: DetectorConfig;
  private findings: Finding[] = [];

  constructor(config: DetectorConfig, options: TopologyOptions) {
    this.config = config;
    const { partitions, actionPartitions, findings, ...engineOptions } = options;
    this.principal = Array.from({ length: partitions }, (_, p) =>
      PrincipalStage.create(config, p, { ...engineOptions, ...(findings ? { findings } : {}) }),
    );
    this.action = Array.from({ length: actionPartitions }, (_, q) => ActionStage.create(config, q, partitions, engineOptions));
  }

  /** The findings of the first stage since the last call, in stage order. */
  drainFindings(): Finding[] {
    const out = this.findings;
    this.findings = [];
    return out;
  }

  /** Routes each event to its partition as the producer would, runs both stages, returns the Insights in stage order. */
  process(events: Iterable<AuditEvent>): Insight[] {
    const byPartition = new Map<number, AuditEvent[]>();
    for (const e of events) {
      const p = partitionFor(eventKey(e), this.principal.length);
      let list = byPartition.get(p);
      if (!list) {
        list = [];
        byPartition.set(p, list);
      }
      list.push(e);
    }
    const outputs: StageOutput[] = [];
    for (const stage of this.principal) {
      const list = byPartition.get(stage.partition);
      if (list) outputs.push(stage.process(list));
      // A partition that never had an event is idle, as the live runtime judges one after idleAdvanceMs.
      else if (!Number.isFinite(stage.engine.latestEventTimeMs)) outputs.push(stage.advanceWatermark(Number.NEGATIVE_INFINITY, true));
    }
    return this.downstream(outputs);
  }

  /** Moves every first-stage partition's event time to `watermarkMs` (the end of a backtest). */
  advanceWatermark(watermarkMs: number, idle = false): Insight[] {
    return this.downstream(this.principal.map((stage) => stage.advanceWatermark(watermarkMs, idle)));
  }

  get watermarkMs(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const s of this.principal) min = Math.min(min, s.engine.watermarkMs);
    return min;
  }

  /** Engines of both stages, for metrics. */
  engines(): DetectionEngine[] {
    return [...this.principal.map((s) => s.engine), ...this.action.map((s) => s.engine)];
  }

  private downstream(outputs: StageOutput[]): Insight[] {
    const insights: Insight[] = [];
    const records = this.action.map(() => [] as ActionRecord[]);
    for (const out of outputs) {
      insights.push(...out.insights);
      for (const f of out.findings) this.findings.push(f);
      for (const partial of out.partials) {
        records[partitionFor(partial.key.id, this.action.length)]?.push({ kind: 'partial', partial });
      }
      for (const list of records) list.push({ kind: 'marker', marker: out.marker });
    }
    if (!this.config.scopes.action) return insights;
    for (const [q, stage] of this.action.entries()) insights.push(...stage.ingest(records[q] as ActionRecord[]));
    return insights;
  }
}
