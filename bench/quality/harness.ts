/**
 * Detection-quality harness: seeded realistic traffic with labelled anomalies (generator.ts,
 * scenarios.ts) → the backtest core (the live engine) → recall and time to detect per kind,
 * precision and false Insights a day, against bench/quality/targets.json (a target per kind).
 * Writes its section of BENCHMARKS.md.
 *
 *   npm run bench:quality -- [--principals N] [--days N] [--seed N] [--instances N] [--config FILE] [--no-write]
 *
 * Definitions are in bench/quality/README.md and docs/quality.md; they are not to be bent to
 * make a target pass.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median, quantile } from 'simple-statistics';
import { Backtest } from '../../src/backtest/backtest.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config, ConfigInput, DetectorConfig } from '../../src/config/schema.ts';
import type { AuditEvent, Insight, InsightScope, InsightType } from '../../src/contracts/types.ts';
import type { BucketObservation } from '../../src/detect/engine.ts';
import {
  type BenignBurst,
  buildPopulation,
  busyRates,
  DAY_MS,
  DEFAULT_START_MS,
  MINUTE_MS,
  type PrincipalProfile,
  TrafficGenerator,
} from './generator.ts';
import { ANOMALY_KINDS, type AnomalyKind, type AnomalyLabel, planScenarios } from './scenarios.ts';

const ROOT = resolve(import.meta.dirname, '../..');
export const TARGETS_FILE = join(import.meta.dirname, 'targets.json');
export const BENCHMARKS_FILE = join(ROOT, 'BENCHMARKS.md');
export const SECTION_START = '<!-- quality:start -->';
export const SECTION_END = '<!-- quality:end -->';

/** An Insight Start counts for an anomaly it starts within [anomaly start − 1 bucket, anomaly end + this]. */
export const MATCH_TAIL_MS = 30 * MINUTE_MS;

/** Every service role of the population (Zipf, worker and busy ones): `svc-…` assumed roles. */
export const SERVICE_ROLES = 'arn:aws:sts::*:assumed-role/svc-*';

/**
 * The override the harness puts first in `detector.overrides`: service roles watched both ways, as
 * an SRE would set for services that must not go quiet. Drops are only looked for on keys watched
 * `down` or `both` (the default direction is `up`), and three kinds are drops.
 */
export const SERVICE_ROLES_BOTH_WAYS = { match: { principal: SERVICE_ROLES }, direction: 'both' } as const;

/**
 * What the harness sets, whatever the config says: the enumeration scenario is reads, and service
 * roles are watched both ways. `harnessConfig` keeps overrides the config has after this one.
 */
export const HARNESS_OVERRIDES: ConfigInput = {
  detector: { includeReadOnly: true, overrides: [{ match: { ...SERVICE_ROLES_BOTH_WAYS.match }, direction: 'both' }] },
};

/**
 * The run's config: defaults ← `file` ← env ← HARNESS_OVERRIDES, except that the overrides the file
 * or env has are kept after the harness's own (a more specific one of theirs still wins on the keys
 * it matches; among equally specific ones the first listed, the harness's, does).
 */
export function harnessConfig(o: { file?: string | undefined; env?: NodeJS.ProcessEnv } = {}): Config {
  const own = loadConfig({ file: o.file, env: o.env ?? process.env });
  const forced = (HARNESS_OVERRIDES.detector?.overrides ?? []) as unknown as DetectorConfig['overrides'];
  const theirs = own.detector.overrides ?? [];
  return loadConfig({
    file: o.file,
    env: o.env ?? process.env,
    overrides: { detector: { ...HARNESS_OVERRIDES.detector, overrides: [...forced, ...theirs] } } as ConfigInput,
  });
}

/** Targets of one anomaly kind: recall, and (not for every kind) the median time to detect. */
export interface KindTargets {
  recall: { min: number };
  medianTimeToDetectBuckets?: { max: number };
}

export interface Targets {
  /** One entry per anomaly kind: a kind without a target is an error, not a pass. */
  kinds: Record<AnomalyKind, KindTargets>;
  falseInsightsPerDayPer1kPrincipals: { max: number };
}

/** Worker service roles the harness adds to the population, per principal of it (1%, at least one). */
export const WORKER_SHARE = 0.01;
/** Busy service roles the harness adds (one busy-spike each at most), and the busiest one's rate, calls a minute. */
export const BUSY_ROLES = 3;
export const BUSY_TOP_RATE = 400;

export interface QualityOptions {
  /** Principals of the Zipf population; the worker and busy service roles come on top. */
  principals: number;
  days: number;
  seed: number;
  instancesPerKind: number;
  detector: DetectorConfig;
  /** Worker service roles (default: 1% of `principals`, at least one). */
  workers?: number;
  /** Busy service roles (default 3) and the busiest one's rate (default 400 calls/min): `busyRates(busyRoles, busyTopRate)`. */
  busyRoles?: number;
  busyTopRate?: number;
  /** The busy roles' rates outright (over `busyRoles` and `busyTopRate`). */
  busyRates?: number[];
  startMs?: number;
  injectAfterDays?: number;
  /** Days at the start whose unmatched Starts are reported apart from the false-Insight rate (cold start; default 1). */
  warmupDays?: number;
  /** Event time per engine batch (default 10 s), so the watermark moves as it would live. */
  batchSpanMs?: number;
  onProgress?: (p: { day: number; days: number; events: number; starts: number }) => void;
  /** Every judged bucket of every key (diagnostics: follow a key's score through the run). */
  onBucket?: (observation: BucketObservation) => void;
}

/** The facts of an Insight Start the scorer needs. */
export interface StartRecord {
  sharedEventID: string;
  scope: InsightScope;
  insightType: InsightType;
  accountId: string;
  region: string;
  principal: string | null;
  /** `service:action`. */
  action: string;
  startTimeMs: number;
  /** The engine's watermark when the Start came out. */
  watermarkMs: number;
  /** `down` when the Start's rate is below its baseline (a drop), else `up`. */
  direction: 'up' | 'down';
}

export function startRecord(insight: Insight, watermarkMs: number): StartRecord {
  const stats = insight.insightDetails.insightContext.statistics;
  return {
    sharedEventID: insight.sharedEventID,
    scope: insight.trailwatch.scope,
    insightType: insight.insightDetails.insightType,
    accountId: insight.recipientAccountId,
    region: insight.awsRegion,
    principal: insight.trailwatch.principal,
    action: `${insight.insightDetails.eventSource}:${insight.insightDetails.eventName}`,
    startTimeMs: insight.trailwatch.startTimeMs,
    watermarkMs,
    direction: stats.insight.average < stats.baseline.average ? 'down' : 'up',
  };
}

/**
 * Does this Start count for this anomaly? Its time must fall in [start − 1 bucket, end + 30 min];
 * its key must be the anomaly's: on a per-principal key the principal is the anomaly's; on a
 * per-action key (all principals) the action is one the anomaly called, in its account and region.
 * A per-principal key of another principal does not count just because it shares an action.
 */
export function matches(s: StartRecord, a: AnomalyLabel, bucketMs: number): boolean {
  if (s.startTimeMs < a.startMs - bucketMs || s.startTimeMs > a.endMs + MATCH_TAIL_MS) return false;
  if (s.principal !== null) return s.principal === a.principal;
  return s.accountId === a.accountId && s.region === a.region && a.actions.includes(s.action);
}

export interface ScoreInput {
  anomalies: AnomalyLabel[];
  starts: StartRecord[];
  principals: number;
  startMs: number;
  days: number;
  injectAfterDays: number;
  warmupDays: number;
  bucketMs: number;
  /** Benign bursts and principal kinds (`human`, `busy service`, …), to say what the false Starts were (diagnostics only). */
  benign?: BenignBurst[];
  kindOf?: (principal: string) => string | undefined;
}

export interface AnomalyOutcome {
  label: AnomalyLabel;
  detected: boolean;
  /** Buckets from the anomaly start to the watermark that released its first matching Start; null if missed. */
  timeToDetectBuckets: number | null;
  matchedStarts: number;
  /** Matching Starts that were drops (rate below baseline). */
  matchedDownStarts: number;
}

export interface KindScore {
  kind: AnomalyKind;
  injected: number;
  detected: number;
  recall: number;
  medianTimeToDetectBuckets: number | null;
  p90TimeToDetectBuckets: number | null;
  /** Detected anomalies with at least one matching drop Start. */
  detectedByDown: number;
}

export interface QualityScores {
  anomalies: AnomalyOutcome[];
  recall: number;
  perKind: KindScore[];
  /** Starts after the warm-up that match an injected anomaly / all Starts after the warm-up. */
  precision: number;
  startsCounted: number;
  matchedStarts: number;
  medianTimeToDetectBuckets: number | null;
  p90TimeToDetectBuckets: number | null;
  /** Unmatched Starts over the benign days after the warm-up, per day per 1,000 principals. */
  falseInsightsPerDayPer1kPrincipals: number;
  benignDays: number;
  falseStartsBenign: number;
  /** Unmatched Starts in the warm-up (cold start), not in the rate above. */
  falseStartsWarmup: number;
  /** Unmatched Starts during the injection days (they count against precision). */
  falseStartsInjectionDays: number;
  /** Unmatched Starts after the warm-up, by what caused them. */
  falseByCause: Record<string, number>;
  /** Unmatched Starts per day of the run (day 0 first). */
  falseByDay: number[];
  /** Every Start with the anomalies it matched, or (when none) what caused it: for tuning. */
  startsDetail: Array<{ start: StartRecord; anomalies: string[]; cause: string | null }>;
}

/** Scores Insight Starts against the injected anomalies. Pure. */
export function scoreRun(input: ScoreInput): QualityScores {
  const { anomalies, starts, bucketMs } = input;
  const warmupEndMs = input.startMs + input.warmupDays * DAY_MS;
  const injectFromMs = input.startMs + input.injectAfterDays * DAY_MS;

  const matched = new Map<StartRecord, string[]>();
  const outcomes: AnomalyOutcome[] = anomalies.map((label) => {
    const hits = starts.filter((s) => matches(s, label, bucketMs));
    for (const s of hits) matched.set(s, [...(matched.get(s) ?? []), label.id]);
    const first = hits.length === 0 ? null : Math.min(...hits.map((s) => s.watermarkMs));
    return {
      label,
      detected: hits.length > 0,
      timeToDetectBuckets: first === null ? null : (first - label.startMs) / bucketMs,
      matchedStarts: hits.length,
      matchedDownStarts: hits.filter((h) => h.direction === 'down').length,
    };
  });

  const ttd = outcomes.flatMap((o) => (o.timeToDetectBuckets === null ? [] : [o.timeToDetectBuckets]));
  const counted = starts.filter((s) => s.startTimeMs >= warmupEndMs);
  const unmatched = starts.filter((s) => !matched.has(s));
  const falseByDay = Array.from({ length: input.days }, () => 0);
  for (const s of unmatched) {
    const day = Math.floor((s.startTimeMs - input.startMs) / DAY_MS);
    if (day >= 0 && day < falseByDay.length) falseByDay[day] = (falseByDay[day] ?? 0) + 1;
  }
  const benignDays = Math.max(0, input.injectAfterDays - input.warmupDays);
  const falseBenign = unmatched.filter((s) => s.startTimeMs >= warmupEndMs && s.startTimeMs < injectFromMs).length;

  const falseByCause: Record<string, number> = {};
  for (const s of unmatched) {
    if (s.startTimeMs < warmupEndMs) continue;
    const cause = causeOf(s, input);
    falseByCause[cause] = (falseByCause[cause] ?? 0) + 1;
  }

  const perKind = ANOMALY_KINDS.map((kind): KindScore => {
    const of = outcomes.filter((o) => o.label.kind === kind);
    const detected = of.filter((o) => o.detected);
    const times = detected.map((o) => o.timeToDetectBuckets as number);
    return {
      kind,
      injected: of.length,
      detected: detected.length,
      recall: of.length === 0 ? Number.NaN : detected.length / of.length,
      medianTimeToDetectBuckets: times.length === 0 ? null : median(times),
      p90TimeToDetectBuckets: times.length === 0 ? null : quantile(times, 0.9),
      detectedByDown: detected.filter((o) => o.matchedDownStarts > 0).length,
    };
  });

  return {
    anomalies: outcomes,
    recall: anomalies.length === 0 ? Number.NaN : outcomes.filter((o) => o.detected).length / anomalies.length,
    perKind,
    precision: counted.length === 0 ? Number.NaN : counted.filter((s) => matched.has(s)).length / counted.length,
    startsCounted: counted.length,
    matchedStarts: counted.filter((s) => matched.has(s)).length,
    medianTimeToDetectBuckets: ttd.length === 0 ? null : median(ttd),
    p90TimeToDetectBuckets: ttd.length === 0 ? null : quantile(ttd, 0.9),
    falseInsightsPerDayPer1kPrincipals: benignDays === 0 ? Number.NaN : falseBenign / benignDays / (input.principals / 1_000),
    benignDays,
    falseStartsBenign: falseBenign,
    falseStartsWarmup: unmatched.filter((s) => s.startTimeMs < warmupEndMs).length,
    falseStartsInjectionDays: unmatched.filter((s) => s.startTimeMs >= injectFromMs).length,
    falseByCause,
    falseByDay,
    startsDetail: starts.map((start) => ({
      start,
      anomalies: matched.get(start) ?? [],
      cause: matched.has(start) ? null : causeOf(start, input),
    })),
  };
}

function causeOf(s: StartRecord, input: ScoreInput): string {
  const type = s.insightType === 'ApiErrorRateInsight' ? ', error rate' : '';
  const near = (b: BenignBurst): boolean => s.startTimeMs >= b.startMs - input.bucketMs && s.startTimeMs <= b.endMs + MATCH_TAIL_MS;
  if (s.principal === null) {
    // A per-action key sums every principal: credit a benign burst on that action in that account and region.
    const burst = input.benign?.find(
      (b) => near(b) && b.accountId === s.accountId && b.region === s.region && b.actions.includes(s.action),
    );
    return burst ? `${burst.kind} (per-action key${type})` : `per-action key${type ? ` (${type.slice(2)})` : ''}`;
  }
  const burst = input.benign?.find((b) => b.principal === s.principal && near(b));
  if (burst) return `${burst.kind}${type ? ` (${type.slice(2)})` : ''}`;
  return `${input.kindOf?.(s.principal) ?? 'unknown'} principal${type ? ` (${type.slice(2)})` : ''}`;
}

/** Events per key, as the detector keys them (reads included, as the harness has it): for the "keys by volume" figures. */
export class KeyVolumes {
  /** principal → service → action → [events, events before `beforeMs`]. */
  private readonly principalKeys = new Map<string, Map<string, Map<string, [number, number]>>>();
  /** account → region → service → action → events. */
  private readonly actionKeys = new Map<string, Map<string, Map<string, Map<string, number>>>>();

  private readonly beforeMs: number;

  /** `beforeMs`: the end of the period `before` counts (the start of the injection days). */
  constructor(beforeMs: number) {
    this.beforeMs = beforeMs;
  }

  add(e: AuditEvent): void {
    const bySvc = child(this.principalKeys, e.principal);
    const byAction = child(bySvc, e.service);
    const leaf = byAction.get(e.action);
    const before = e.eventTimeMs < this.beforeMs ? 1 : 0;
    if (leaf) {
      leaf[0]++;
      leaf[1] += before;
    } else byAction.set(e.action, [1, before]);
    const a = child(child(child(this.actionKeys, e.accountId), e.region), e.service);
    a.set(e.action, (a.get(e.action) ?? 0) + 1);
  }

  /** Events of every per-principal key, and of every per-action key. */
  counts(): { principalAction: number[]; action: number[] } {
    const principalAction: number[] = [];
    for (const bySvc of this.principalKeys.values())
      for (const byAction of bySvc.values()) for (const [n] of byAction.values()) principalAction.push(n);
    const action: number[] = [];
    for (const byRegion of this.actionKeys.values())
      for (const bySvc of byRegion.values()) for (const byAction of bySvc.values()) for (const n of byAction.values()) action.push(n);
    return { principalAction, action };
  }

  /** Events of one per-principal key (`service:action`) before `beforeMs`. */
  before(principal: string, action: string): number {
    const i = action.lastIndexOf(':');
    return (
      this.principalKeys
        .get(principal)
        ?.get(action.slice(0, i))
        ?.get(action.slice(i + 1))?.[1] ?? 0
    );
  }
}

function child<K, V extends Map<unknown, unknown>>(m: Map<K, V>, k: K): V {
  let c = m.get(k);
  if (c === undefined) {
    c = new Map() as V;
    m.set(k, c);
  }
  return c;
}

/** Mean calls per minute of the keys of one scope: how many, their range, and how many per decade. */
export interface VolumeSummary {
  keys: number;
  min: number;
  median: number;
  max: number;
  /** Keys per decade of mean rate: `from` ≤ rate < 10·`from` (the first from 0, the last to ∞). */
  byDecade: Array<{ from: number; keys: number }>;
}

/** Decades the key rates are counted in: < 0.001, 0.001–0.01, …, 100–1,000, ≥ 1,000 calls a minute. */
const DECADES = [0, 0.001, 0.01, 0.1, 1, 10, 100, 1_000];

export function summarizeVolumes(events: number[], minutes: number): VolumeSummary {
  const rates = events.map((n) => n / minutes).sort((a, b) => a - b);
  const byDecade = DECADES.map((from) => ({ from, keys: 0 }));
  for (const r of rates) {
    let k = DECADES.length - 1;
    while (k > 0 && r < (DECADES[k] as number)) k--;
    (byDecade[k] as { keys: number }).keys++;
  }
  return {
    keys: rates.length,
    min: rates[0] ?? Number.NaN,
    median: rates.length === 0 ? Number.NaN : median(rates),
    max: rates[rates.length - 1] ?? Number.NaN,
    byDecade,
  };
}

/** The key an anomaly acts on (kinds that act on one habit) and its mean rate before the injection days. */
export interface AnomalyKeyRate {
  id: string;
  kind: AnomalyKind;
  principal: string;
  action: string;
  /** Measured: the key's calls per minute over the days before the injections. */
  perMinute: number;
}

export interface QualityResult {
  options: Omit<QualityOptions, 'detector' | 'onProgress' | 'onBucket'>;
  detector: DetectorConfig;
  /** The population: its Zipf principals, the worker roles and the busy roles' rates, and everyone. */
  population: { zipf: number; workers: number; busyRates: number[]; principals: number };
  scores: QualityScores;
  events: number;
  injectedEvents: Record<string, number>;
  /** The principals' own calls a silence or a drop took out, per anomaly. */
  suppressedEvents: Record<string, number>;
  volumes: { principalAction: VolumeSummary; action: VolumeSummary; anomalyKeys: AnomalyKeyRate[] };
  starts: number;
  ends: number;
  openAtEnd: number;
  lateEvents: number;
  keysCreated: number;
  runtimeMs: number;
}

/** Kinds whose anomaly acts on one habit of its principal, the key the volume figures follow. */
const ONE_KEY_KINDS: readonly AnomalyKind[] = ['busy-spike', 'sparse-spike', 'sustained-shift', 'drop', 'slow-ramp'];

/** What a principal is, for the false-Start causes: its kind, or its tier for the added service roles. */
export function principalLabel(p: Pick<PrincipalProfile, 'kind' | 'tier'>): string {
  return p.tier ? `${p.tier} service` : p.kind;
}

/** Generates the traffic, runs it through the backtest core and scores it. */
export function runQuality(o: QualityOptions): QualityResult {
  const started = performance.now();
  const startMs = o.startMs ?? DEFAULT_START_MS;
  const injectAfterDays = o.injectAfterDays ?? 8;
  const warmupDays = o.warmupDays ?? 1;
  const workers = o.workers ?? Math.max(1, Math.round(o.principals * WORKER_SHARE));
  const busy = o.busyRates ?? busyRates(o.busyRoles ?? BUSY_ROLES, o.busyTopRate ?? BUSY_TOP_RATE);
  const population = buildPopulation({ seed: o.seed, principals: o.principals, days: o.days, startMs, workers, busyRates: busy });
  const scenarios = planScenarios({ population, seed: o.seed, instancesPerKind: o.instancesPerKind, injectAfterDays });
  const traffic = new TrafficGenerator({ population, injections: scenarios.map((s) => s.injection) });
  const injectFromMs = startMs + injectAfterDays * DAY_MS;

  const starts: StartRecord[] = [];
  const backtest = new Backtest(o.detector, {
    batchSpanMs: o.batchSpanMs ?? 10_000,
    ...(o.onBucket ? { onBucket: o.onBucket } : {}),
    onInsight: (insight, watermarkMs) => {
      if (insight.insightDetails.state === 'Start') starts.push(startRecord(insight, watermarkMs));
    },
  });
  const volumes = new KeyVolumes(injectFromMs);
  let events = 0;
  let minute = 0;
  for (const batch of traffic.byMinute()) {
    for (const e of batch) {
      backtest.push(e);
      volumes.add(e);
    }
    events += batch.length;
    if (++minute % 1_440 === 0) o.onProgress?.({ day: minute / 1_440, days: o.days, events, starts: starts.length });
  }
  const stats = backtest.finish();

  const kinds = new Map(population.profiles.map((p) => [p.principal, principalLabel(p)]));
  const principals = population.profiles.length;
  const scores = scoreRun({
    anomalies: scenarios.map((s) => s.label),
    starts,
    principals,
    startMs,
    days: o.days,
    injectAfterDays,
    warmupDays,
    bucketMs: o.detector.bucketMs,
    benign: population.benign,
    kindOf: (p) => kinds.get(p),
  });
  const counts = volumes.counts();
  const minutes = o.days * 1_440;
  const anomalyKeys = scenarios
    .filter((s) => ONE_KEY_KINDS.includes(s.label.kind))
    .map(({ label }): AnomalyKeyRate => {
      const action = label.actions[0] as string;
      return {
        id: label.id,
        kind: label.kind,
        principal: label.principal,
        action,
        perMinute: volumes.before(label.principal, action) / (injectAfterDays * 1_440),
      };
    });
  const { detector: _d, onProgress: _p, onBucket: _b, ...options } = o;
  return {
    options: { ...options, startMs, injectAfterDays, warmupDays, batchSpanMs: o.batchSpanMs ?? 10_000 },
    detector: o.detector,
    population: { zipf: o.principals, workers, busyRates: busy, principals },
    scores,
    events,
    injectedEvents: Object.fromEntries(traffic.injectedEvents),
    suppressedEvents: Object.fromEntries(traffic.suppressedEvents),
    volumes: {
      principalAction: summarizeVolumes(counts.principalAction, minutes),
      action: summarizeVolumes(counts.action, minutes),
      anomalyKeys,
    },
    starts: stats.starts,
    ends: stats.ends,
    openAtEnd: stats.openAtEnd,
    lateEvents: stats.lateEvents,
    keysCreated: stats.keysCreated,
    runtimeMs: performance.now() - started,
  };
}

// ── targets and report ──────────────────────────────────────────────────

/** Reads the targets, refusing a file that leaves a kind without a target or names one that does not exist. */
export function loadTargets(file: string = TARGETS_FILE): Targets {
  const t = JSON.parse(readFileSync(file, 'utf8')) as Partial<Targets>;
  const kinds = (t.kinds ?? {}) as Partial<Record<string, KindTargets>>;
  const missing = ANOMALY_KINDS.filter((k) => typeof kinds[k]?.recall?.min !== 'number');
  const unknown = Object.keys(kinds).filter((k) => !(ANOMALY_KINDS as readonly string[]).includes(k));
  const problems = [
    ...(missing.length ? [`no recall target for ${missing.join(', ')}`] : []),
    ...(unknown.length ? [`targets for unknown kinds ${unknown.join(', ')}`] : []),
    ...(typeof t.falseInsightsPerDayPer1kPrincipals?.max === 'number' ? [] : ['no falseInsightsPerDayPer1kPrincipals.max']),
  ];
  if (problems.length > 0) throw new Error(`${file}: ${problems.join('; ')}`);
  return t as Targets;
}

export interface TargetCheck {
  metric: string;
  /** The kind a per-kind target is for. */
  kind?: AnomalyKind;
  value: number | null;
  target: string;
  ok: boolean;
}

/** Every target: recall and (where set) median time to detect of each kind, then the false-Insight rate. */
export function checkTargets(s: QualityScores, t: Targets): TargetCheck[] {
  const out: TargetCheck[] = [];
  for (const k of s.perKind) {
    const kt = t.kinds[k.kind];
    out.push({ metric: `recall, ${k.kind}`, kind: k.kind, value: k.recall, target: `≥ ${kt.recall.min}`, ok: k.recall >= kt.recall.min });
    const ttdMax = kt.medianTimeToDetectBuckets?.max;
    if (ttdMax !== undefined) {
      const ttd = k.medianTimeToDetectBuckets;
      out.push({
        metric: `median time to detect (buckets), ${k.kind}`,
        kind: k.kind,
        value: ttd,
        target: `≤ ${ttdMax}`,
        ok: ttd !== null && ttd <= ttdMax,
      });
    }
  }
  out.push({
    metric: 'false Insights / day / 1k principals',
    value: s.falseInsightsPerDayPer1kPrincipals,
    target: `≤ ${t.falseInsightsPerDayPer1kPrincipals.max}`,
    ok: s.falseInsightsPerDayPer1kPrincipals <= t.falseInsightsPerDayPer1kPrincipals.max,
  });
  return out;
}

const fmt = (x: number | null, digits = 2): string => (x === null || Number.isNaN(x) ? '—' : x.toFixed(digits));
const int = (x: number): string => x.toLocaleString('en-US');

/** Non-default detector keys, as `a.b = value` lines. */
export function configDiff(detector: DetectorConfig): string[] {
  const defaults = loadConfig({ env: {} }).detector as unknown as Record<string, unknown>;
  const out: string[] = [];
  const walk = (a: Record<string, unknown>, b: Record<string, unknown>, path: string): void => {
    for (const [k, v] of Object.entries(a)) {
      const d = b[k];
      if (typeof v === 'object' && v !== null && !Array.isArray(v) && typeof d === 'object' && d !== null && !Array.isArray(d))
        walk(v as Record<string, unknown>, d as Record<string, unknown>, `${path}${k}.`);
      else if (JSON.stringify(v) !== JSON.stringify(d)) out.push(`detector.${path}${k} = ${JSON.stringify(v)}`);
    }
  };
  walk(detector as unknown as Record<string, unknown>, defaults, '');
  return out;
}

/** A rate in calls per minute, to 2 significant digits or whole numbers. */
function rate(x: number): string {
  if (!Number.isFinite(x)) return '—';
  if (x >= 100) return int(Math.round(x));
  return x === 0 ? '0' : Number(x.toPrecision(2)).toString();
}

function decadeLabel(from: number, next: number | undefined): string {
  if (from === 0) return `< ${rate(next ?? 0)}`;
  if (next === undefined) return `≥ ${rate(from)}`;
  return `${rate(from)}–${rate(next)}`;
}

/** The report as Markdown: the same text goes to stdout and into BENCHMARKS.md. */
export function renderReport(r: QualityResult, checks: TargetCheck[], command: string): string {
  const s = r.scores;
  const o = r.options;
  const cpu = cpus();
  const lines: string[] = [];
  const pop = r.population;
  lines.push('## Detection quality');
  lines.push('');
  lines.push(
    `Seeded synthetic traffic with labelled anomalies through the live engine (\`bench/quality/\`; definitions in [docs/quality.md](docs/quality.md)).`,
  );
  lines.push('');
  lines.push(`- command: \`${command}\``);
  lines.push(
    `- run: ${int(pop.principals)} principals (${int(pop.zipf)} in the Zipf population, ${pop.workers} worker and ${pop.busyRates.length} busy service roles at ${pop.busyRates.map(rate).join(', ')} calls/min), ${o.days} days from ${new Date(o.startMs ?? 0).toISOString().slice(0, 10)}, seed ${o.seed}, ${s.anomalies.length} injected anomalies (${o.instancesPerKind} per kind, after day ${o.injectAfterDays}), warm-up ${o.warmupDays} day`,
  );
  const total = (x: Record<string, number>): number => Object.values(x).reduce((a, b) => a + b, 0);
  lines.push(
    `- ${int(r.events)} events (${int(total(r.injectedEvents))} injected, ${int(total(r.suppressedEvents))} of the principals' own taken out by silences and drops), ${int(r.starts)} Insight Starts, ${int(r.ends)} Ends, ${int(r.openAtEnd)} open at end, ${int(r.lateEvents)} late`,
  );
  lines.push(
    `- runtime ${(r.runtimeMs / 1000).toFixed(1)} s (${int(Math.round(r.events / (r.runtimeMs / 1000)))} events/s, generation included)`,
  );
  lines.push(
    `- machine: ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}/${process.arch}`,
  );
  const diff = configDiff(r.detector);
  const forced = JSON.stringify(SERVICE_ROLES_BOTH_WAYS);
  const bothWays = (r.detector.overrides ?? []).some((x) => JSON.stringify(x) === forced);
  lines.push(
    `- config: defaults${diff.length ? ` except ${diff.map((d) => `\`${d}\``).join(', ')}` : ''}; the harness sets \`includeReadOnly\`${bothWays ? ' and puts the `svc-*` override (service roles watched both ways) first in `overrides`' : ' (**without** the `svc-*` override: drops are not looked for)'}`,
  );
  lines.push('');
  lines.push('| kind | detected | recall | target | median time to detect | target | p90 | by a drop Start |');
  lines.push('|---|---:|---:|---|---:|---|---:|---:|');
  const mark = (c: TargetCheck | undefined): string => (c === undefined ? '—' : `${c.target}${c.ok ? '' : ' **missed**'}`);
  for (const k of s.perKind) {
    const recall = checks.find((c) => c.kind === k.kind && c.metric.startsWith('recall'));
    const ttd = checks.find((c) => c.kind === k.kind && c.metric.startsWith('median'));
    lines.push(
      `| ${k.kind} | ${k.detected}/${k.injected} | ${fmt(k.recall)} | ${mark(recall)} | ${fmt(k.medianTimeToDetectBuckets)} | ${mark(ttd)} | ${fmt(k.p90TimeToDetectBuckets)} | ${k.detectedByDown} |`,
    );
  }
  lines.push('');
  lines.push('| metric | value | target | |');
  lines.push('|---|---:|---|---|');
  for (const c of checks.filter((x) => x.kind === undefined))
    lines.push(`| ${c.metric} | ${fmt(c.value)} | ${c.target} | ${c.ok ? 'ok' : '**missed**'} |`);
  lines.push(`| recall, all kinds | ${fmt(s.recall)} | — | |`);
  lines.push(
    `| median / p90 time to detect, all kinds (buckets) | ${fmt(s.medianTimeToDetectBuckets)} / ${fmt(s.p90TimeToDetectBuckets)} | — | |`,
  );
  lines.push(`| precision | ${fmt(s.precision)} | — | ${int(s.matchedStarts)} of ${int(s.startsCounted)} Starts after the warm-up |`);
  lines.push('');
  const v = r.volumes;
  const decades = (x: VolumeSummary): string =>
    x.byDecade
      .map((d, i) => [decadeLabel(d.from, x.byDecade[i + 1]?.from), d.keys] as const)
      .filter(([, n]) => n > 0)
      .map(([label, n]) => `${label}: ${int(n)}`)
      .join(', ');
  const scope = (name: string, x: VolumeSummary): string =>
    `${int(x.keys)} ${name} keys at ${rate(x.min)}–${rate(x.max)} calls/min (median ${rate(x.median)}; ${decades(x)})`;
  const keyRange = (kind: AnomalyKind): { lo: number; hi: number } | null => {
    const xs = v.anomalyKeys.filter((a) => a.kind === kind).map((a) => a.perMinute);
    return xs.length === 0 ? null : { lo: Math.min(...xs), hi: Math.max(...xs) };
  };
  const busyKeys = keyRange('busy-spike');
  const sparseKeys = keyRange('sparse-spike');
  const spread =
    busyKeys && sparseKeys
      ? ` The spiked keys: busy-spike ${rate(busyKeys.lo)}–${rate(busyKeys.hi)} calls/min, sparse-spike ${rate(sparseKeys.lo)}–${rate(sparseKeys.hi)}, the busiest ${int(Math.round(busyKeys.hi / sparseKeys.lo))}× the sparsest (mean rates before the injection days).`
      : '';
  lines.push(
    `Keys by volume (mean calls per minute over the run, reads included): ${scope('per-principal', v.principalAction)}; ${scope('per-action', v.action)}. The engine created ${int(r.keysCreated)} keys (call and error rates, both scopes).${spread}`,
  );
  lines.push('');
  const causes = Object.entries(s.falseByCause).sort((a, b) => b[1] - a[1]);
  lines.push(
    `False Starts: ${int(s.falseStartsBenign)} over ${s.benignDays} benign days after the warm-up, ${int(s.falseStartsWarmup)} in the warm-up, ${int(s.falseStartsInjectionDays)} during the injection days. By cause (after the warm-up): ${causes.map(([c, n]) => `${c} ${int(n)}`).join(', ') || 'none'}. Per day: ${s.falseByDay.join(', ')}.`,
  );
  const missed = s.anomalies.filter((a) => !a.detected).map((a) => a.label.id);
  if (missed.length > 0) lines.push(`\nMissed: ${missed.join(', ')}.`);
  return lines.join('\n');
}

/** Replaces (or appends) the quality section of BENCHMARKS.md, keeping every other section. */
export function writeBenchmarksSection(body: string, file: string = BENCHMARKS_FILE): void {
  const section = `${SECTION_START}\n${body}\n${SECTION_END}`;
  const current = existsSync(file)
    ? readFileSync(file, 'utf8')
    : '# Benchmarks\n\nGenerated by the scripts in `bench/`; do not edit the generated sections by hand.\n';
  const a = current.indexOf(SECTION_START);
  const b = current.indexOf(SECTION_END);
  const next =
    a >= 0 && b > a ? `${current.slice(0, a)}${section}${current.slice(b + SECTION_END.length)}` : `${current.trimEnd()}\n\n${section}\n`;
  writeFileSync(file, next);
}

// ── command line ────────────────────────────────────────────────────────

const USAGE = `Usage: npm run bench:quality -- [options]

Options:
  --principals N   principals in the Zipf population (default 1000); 1% worker service roles
                   and the busy roles come on top
  --days N         days of event time (default 14; anomalies start after day 8)
  --seed N         seed of traffic and anomalies (default 1)
  --instances N    injected anomalies of each kind (default 6; busy-spike: one per busy role at most)
  --busy-roles N   busy service roles in the population (default 3)
  --busy-rate R    calls/min of the busiest one (default 400; each next a fifth, none below R/20);
                   they are most of the events: a lower rate makes a quicker, less spread run
  --config FILE    trailwatch JSON config (env TRAILWATCH_* applies too); the harness sets
                   detector.includeReadOnly = true and puts the override
                   { match: { principal: 'arn:aws:sts::*:assumed-role/svc-*' }, direction: 'both' }
                   first in detector.overrides
  --no-write       do not update BENCHMARKS.md
  --starts FILE    write every Insight Start as a JSON line with the anomalies it matched or,
                   when none, what caused it (for tuning)

Exit status: 0 every target met; 1 a target missed; 2 bad arguments.`;

function wholeNumber(value: string | undefined, name: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min) throw new Error(`--${name} takes a whole number ≥ ${min}, got "${value}"`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let principals: number;
  let days: number;
  let seed: number;
  let instances: number;
  let busyRoles: number;
  let busyTopRate: number;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        principals: { type: 'string' },
        days: { type: 'string' },
        seed: { type: 'string' },
        instances: { type: 'string' },
        'busy-roles': { type: 'string' },
        'busy-rate': { type: 'string' },
        config: { type: 'string' },
        'no-write': { type: 'boolean' },
        starts: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    principals = wholeNumber(values.principals as string | undefined, 'principals', 1_000);
    days = wholeNumber(values.days as string | undefined, 'days', 14);
    seed = wholeNumber(values.seed as string | undefined, 'seed', 1, 0);
    instances = wholeNumber(values.instances as string | undefined, 'instances', 6);
    busyRoles = wholeNumber(values['busy-roles'] as string | undefined, 'busy-roles', BUSY_ROLES, 0);
    busyTopRate = wholeNumber(values['busy-rate'] as string | undefined, 'busy-rate', BUSY_TOP_RATE);
  } catch (err) {
    process.stderr.write(`bench:quality: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const config = harnessConfig({ file: values.config as string | undefined });
  const targets = loadTargets();
  const progressStarted = performance.now();
  const result = runQuality({
    principals,
    days,
    seed,
    instancesPerKind: instances,
    busyRoles,
    busyTopRate,
    detector: config.detector,
    onProgress: (p) =>
      process.stderr.write(
        `bench:quality: day ${p.day}/${p.days}, ${int(p.events)} events, ${int(p.starts)} Starts, ${((performance.now() - progressStarted) / 1000).toFixed(0)} s\n`,
      ),
  });
  const checks = checkTargets(result.scores, targets);
  const command = ['npm run bench:quality', argv.length ? `-- ${argv.join(' ')}` : ''].join(' ').trim();
  const report = renderReport(result, checks, command);
  process.stdout.write(`${report}\n`);
  if (typeof values.starts === 'string') {
    writeFileSync(
      values.starts,
      result.scores.startsDetail
        .map(
          (d) =>
            `${JSON.stringify({ ...d.start, startTime: new Date(d.start.startTimeMs).toISOString(), anomalies: d.anomalies, cause: d.cause })}\n`,
        )
        .join(''),
    );
  }
  if (!values['no-write']) {
    writeBenchmarksSection(report);
    process.stderr.write(`bench:quality: wrote the quality section of ${BENCHMARKS_FILE}\n`);
  }
  const missed = checks.filter((c) => !c.ok);
  if (missed.length > 0) process.stderr.write(`bench:quality: missed ${missed.map((c) => c.metric).join(', ')}\n`);
  return missed.length > 0 ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`bench:quality: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 2;
    },
  );
}
