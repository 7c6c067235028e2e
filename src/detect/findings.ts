import type { FindingsConfig, RulesConfig } from '../config/schema.ts';
import type { AuditEvent, Finding } from '../contracts/types.ts';
import { buildFinding, type FindingSeverity, MAX_EVIDENCES, techniquesFromSigmaTags } from '../emit/finding.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import { type FindingHeld, FindingOverrides, type FindingTuning } from './finding-overrides.ts';
import { BreadthDetector, type BreadthFinding } from './rules/breadth.ts';
import { type CatalogOverrides, DEFAULT_CATALOG, mergeCatalog, type SensitivityCatalog, severityRank } from './rules/catalog.ts';
import { CorrelationEngine, type CorrelationHit } from './rules/correlation.ts';
import { normalizedRecord, type RuleSet, ruleFinding, ruleSetFromConfig } from './rules/evaluate.ts';
import { FirstSeenDetector, type FirstSeenFinding, type FirstSeenOptions } from './rules/first-seen.ts';
import type { LoadedCorrelation, Rule } from './rules/load.ts';
import { RuleIndex, sigmaRuleKeys } from './rules/rule-index.ts';
import type { SigmaRule } from './rules/sigma.ts';

/**
 * Everything in the first stage that is not a rate: single-event rules (repeats folded), Sigma
 * correlations, first-seen behaviour and breadth, each a Finding. Pure like the rate engine:
 * `process` a batch of events (repeats already dropped by the engine's dedupe), `advance` with the
 * stage's watermark, `drainChanges` for the changelog, `fromRecords` to restore. The live runtime
 * and the backtest both run it inside PrincipalStage, so both emit the same findings.
 *
 * Folding: the first match of a rule by a principal in a `foldMs` window (aligned to the epoch)
 * is a Create at once, so an alert is never held back; further matches in that window are counted
 * and, once the watermark passes the window's end, one Update with the count carries them (same
 * `finding_info.uid`). A match arriving after its window closed is a finding of its own. A rule
 * with a `minCount` (an alarm threshold, as CIS pairs its metric filters with alarms) is a Create
 * at its minCount-th match in the window, and nothing when the window closes short of it.
 *
 * Tuning: every finding made passes `findings.overrides` and `findings.suppressions` on its way
 * out (src/detect/finding-overrides.ts), so state (folds, first-seen, breadth) is the same whatever
 * the tuning and a retune applies from the next finding on.
 */

/** What a stage needs, loaded once per process (rule files, catalog): shared by every partition. */
export interface FindingSetup {
  rules: RuleSet;
  correlations: readonly LoadedCorrelation[];
  config: FindingsConfig;
  catalog: SensitivityCatalog;
  /** Topic name the findings go to (OCSF metadata.log_name). */
  logName: string;
  /** Hears of each finding the tuning held back (the runtime's metrics). */
  onHeld?: (kind: string, held: FindingHeld) => void;
}

/** Rules from rules.paths and the default pack (refused whole on a problem), the catalog with its overrides. */
export async function findingSetupFromConfig(
  rulesConfig: RulesConfig,
  findingsConfig: FindingsConfig,
  logName: string,
): Promise<FindingSetup & { ruleFiles: number }> {
  const { set, loaded } = await ruleSetFromConfig(rulesConfig);
  return {
    rules: set,
    correlations: loaded.correlations,
    config: findingsConfig,
    catalog: catalogOf(findingsConfig),
    logName,
    ruleFiles: loaded.files.length,
  };
}

export function catalogOf(config: FindingsConfig): SensitivityCatalog {
  const { add, severity, remove } = config.catalog;
  if (add === undefined && severity === undefined && remove === undefined) return DEFAULT_CATALOG;
  return mergeCatalog(DEFAULT_CATALOG, config.catalog as CatalogOverrides);
}

/** A setup with no rules and the defaults: first-seen and breadth only. */
export function findingSetupOf(
  rules: RuleSet,
  config: FindingsConfig,
  logName: string,
  correlations: readonly LoadedCorrelation[] = [],
): FindingSetup {
  return { rules, correlations, config, catalog: catalogOf(config), logName };
}

const FOLD = 'fold|';
const FIRST_SEEN = 'fs|';
const BREADTH = 'br|';
const CORRELATION = 'corr';
const META = 'meta';

/** A rule's open fold window: the first match went out as a Create; repeats wait for the Update. */
interface Fold {
  ruleId: string;
  startMs: number;
  count: number;
  /** The earliest matches (raw left out: they are evidence, not input), at most MAX_EVIDENCES. */
  evidences: AuditEvent[];
}

export interface FindingStageCounters {
  ruleMatches: number;
  /** Matches folded into an open finding instead of a record of their own. */
  folded: number;
  /** Windows that closed short of their rule's minCount: no finding. */
  belowMinCount: number;
  correlationHits: number;
  firstSeen: number;
  /** First-seen findings below findings.firstSeen.minSeverity, not emitted. */
  firstSeenBelowSeverity: number;
  breadth: number;
  /** Raw records that were not JSON objects (matched as the normalized record). */
  rawUnparsed: number;
  /** Findings dropped by a findings.overrides entry with enabled: false. */
  disabled: number;
  /** Findings held back by findings.suppressions (their event time before the expiry). */
  suppressed: number;
}

export class FindingStage {
  readonly counters: FindingStageCounters = {
    ruleMatches: 0,
    folded: 0,
    belowMinCount: 0,
    correlationHits: 0,
    firstSeen: 0,
    firstSeenBelowSeverity: 0,
    breadth: 0,
    rawUnparsed: 0,
    disabled: 0,
    suppressed: 0,
  };
  private readonly setup: FindingSetup;
  /** findings.overrides and suppressions; replaced by `retune`. */
  private tuning: FindingOverrides;
  private readonly rulesById: Map<string, Rule>;
  private readonly folds = new Map<string, Fold>();
  private readonly correlation: CorrelationEngine | null;
  /** The correlations' base rules by eventName/eventSource: an event none can match skips them (and its raw stays unparsed). */
  private readonly correlationBases: RuleIndex;
  private readonly firstSeen: FirstSeenDetector | null;
  private readonly breadth: BreadthDetector | null;
  private watermarkMs = Number.NEGATIVE_INFINITY;
  private readonly changedFolds = new Set<string>();
  private lastCorrelation = '';
  private metaChanged = false;

  private constructor(
    setup: FindingSetup,
    parts: { correlation: CorrelationEngine | null; firstSeen: FirstSeenDetector | null; breadth: BreadthDetector | null },
  ) {
    this.setup = setup;
    this.tuning = new FindingOverrides(setup.config);
    this.rulesById = new Map(setup.rules.rules.map((r) => [r.id, r]));
    this.correlation = parts.correlation;
    this.correlationBases = new RuleIndex(correlationRules(setup.correlations).bases.map((b) => sigmaRuleKeys(b)));
    this.firstSeen = parts.firstSeen;
    this.breadth = parts.breadth;
    if (this.correlation) this.lastCorrelation = JSON.stringify(this.correlation.snapshot());
  }

  static create(setup: FindingSetup): FindingStage {
    const { rules, bases } = correlationRules(setup.correlations);
    const c = setup.config;
    return new FindingStage(setup, {
      correlation: rules.length > 0 ? new CorrelationEngine(rules, bases) : null,
      firstSeen: c.firstSeen.enabled ? new FirstSeenDetector(firstSeenOptions(setup)) : null,
      breadth: c.breadth.enabled ? new BreadthDetector(breadthOptions(c)) : null,
    });
  }

  /** The stage as its changelog records left it (the latest value of each key, deletions applied). */
  static fromRecords(setup: FindingSetup, records: Iterable<[string, string]>): FindingStage {
    const firstSeen: Array<[string, string]> = [];
    const breadth: Array<[string, string]> = [];
    const folds: Array<[string, string]> = [];
    let correlation: string | null = null;
    let meta: string | null = null;
    for (const [key, value] of records) {
      if (key.startsWith(FIRST_SEEN)) firstSeen.push([key.slice(FIRST_SEEN.length), value]);
      else if (key.startsWith(BREADTH)) breadth.push([key.slice(BREADTH.length), value]);
      else if (key.startsWith(FOLD)) folds.push([key.slice(FOLD.length), value]);
      else if (key === CORRELATION) correlation = value;
      else if (key === META) meta = value;
    }
    const c = setup.config;
    const { rules, bases } = correlationRules(setup.correlations);
    const stage = new FindingStage(setup, {
      correlation:
        rules.length === 0
          ? null
          : correlation === null
            ? new CorrelationEngine(rules, bases)
            : CorrelationEngine.restore(rules, bases, parse(correlation, 'correlation state')),
      firstSeen: c.firstSeen.enabled ? FirstSeenDetector.fromRecords(firstSeen, firstSeenOptions(setup)) : null,
      breadth: c.breadth.enabled ? BreadthDetector.fromRecords(breadth, breadthOptions(c)) : null,
    });
    for (const [key, value] of folds) stage.folds.set(key, parse(value, 'fold state') as Fold);
    if (meta !== null) {
      const m = parse(meta, 'findings meta') as { watermarkMs: number | null };
      stage.watermarkMs = m.watermarkMs ?? Number.NEGATIVE_INFINITY;
    }
    return stage;
  }

  /** New findings overrides and suppressions (a config applied while running): from the next finding on. */
  retune(tuning: FindingTuning): void {
    this.tuning = new FindingOverrides(tuning);
  }

  /** Findings of a batch: rule Creates, correlation hits and breadth at once; first-seen waits for `advance`. */
  process(events: readonly AuditEvent[]): Finding[] {
    return this.tuned(this.made(events));
  }

  /** Event time moved on: first-seen windows, correlations judged at close, fold Updates. */
  advance(watermarkMs: number): Finding[] {
    return this.tuned(this.advanced(watermarkMs));
  }

  /** What the tuning lets out of `made`, held-back ones counted. */
  private tuned(made: Finding[]): Finding[] {
    if (made.length === 0 || this.tuning.empty) return made;
    const out: Finding[] = [];
    for (const f of made) {
      const j = this.tuning.judge(f);
      if (j.finding) {
        out.push(j.finding);
        continue;
      }
      this.counters[j.held]++;
      this.setup.onHeld?.(f.finding_info.types[0] ?? '', j.held);
    }
    return out;
  }

  private made(events: readonly AuditEvent[]): Finding[] {
    const out: Finding[] = [];
    const correlation = this.correlation;
    for (const e of events) {
      for (const rule of this.setup.rules.match(e)) {
        const f = this.ruleMatch(rule, e);
        if (f) out.push(f);
      }
      if (correlation && this.correlationBases.candidates(e.action, e.service).length > 0) {
        for (const hit of correlation.observe(this.recordOf(e), e.eventTimeMs)) out.push(this.correlationFinding(hit, e));
      }
      this.firstSeen?.observe(e);
      if (this.breadth) for (const b of this.breadth.observe(e)) out.push(this.breadthFinding(b));
    }
    return out;
  }

  private advanced(watermarkMs: number): Finding[] {
    if (!(watermarkMs > this.watermarkMs)) return [];
    this.watermarkMs = watermarkMs;
    this.metaChanged = true;
    const out: Finding[] = [];
    if (this.firstSeen) {
      const min = severityRank(this.setup.config.firstSeen.minSeverity);
      for (const f of this.firstSeen.advance(watermarkMs)) {
        if (severityRank(f.severity) < min) {
          this.counters.firstSeenBelowSeverity++;
          continue;
        }
        this.counters.firstSeen++;
        out.push(this.firstSeenFinding(f));
      }
    }
    if (this.correlation) for (const hit of this.correlation.advance(watermarkMs)) out.push(this.correlationFinding(hit, null));
    this.breadth?.advance(watermarkMs);
    const { foldMs } = this.setup.config;
    for (const [key, fold] of this.folds) {
      if (fold.startMs + foldMs > watermarkMs) continue;
      this.folds.delete(key);
      this.changedFolds.add(key);
      const rule = this.rulesById.get(fold.ruleId);
      if (!rule) continue;
      const min = rule.minCount ?? 1;
      if (fold.count < min) this.counters.belowMinCount++;
      else if (fold.count > min) out.push(this.foldUpdate(rule, fold));
    }
    return out;
  }

  /** Changelog records of what changed since the last drain: [key, value], null when gone. */
  drainChanges(): Array<[string, string | null]> {
    const out: Array<[string, string | null]> = [];
    for (const key of this.changedFolds) {
      const fold = this.folds.get(key);
      out.push([FOLD + key, fold ? JSON.stringify(fold) : null]);
    }
    this.changedFolds.clear();
    if (this.firstSeen) for (const [k, v] of this.firstSeen.drainChanges()) out.push([FIRST_SEEN + k, v]);
    if (this.breadth) for (const [k, v] of this.breadth.drainChanges()) out.push([BREADTH + k, v]);
    if (this.correlation) {
      const snap = JSON.stringify(this.correlation.snapshot());
      if (snap !== this.lastCorrelation) {
        this.lastCorrelation = snap;
        out.push([CORRELATION, snap]);
      }
    }
    if (this.metaChanged) {
      this.metaChanged = false;
      out.push([META, JSON.stringify({ watermarkMs: Number.isFinite(this.watermarkMs) ? this.watermarkMs : null })]);
    }
    return out;
  }

  /** Open folds, first-seen principals and breadth principals, for logs and metrics. */
  get stateSize(): { folds: number; firstSeenPrincipals: number; breadthPrincipals: number; correlationEvents: number } {
    return {
      folds: this.folds.size,
      firstSeenPrincipals: this.firstSeen?.stateSize.principals ?? 0,
      breadthPrincipals: this.breadth?.stateSize.principals ?? 0,
      correlationEvents: this.correlation?.stateSize ?? 0,
    };
  }

  private ruleMatch(rule: Rule, e: AuditEvent): Finding | null {
    this.counters.ruleMatches++;
    const { foldMs } = this.setup.config;
    const startMs = Math.floor(e.eventTimeMs / foldMs) * foldMs;
    const min = rule.minCount ?? 1;
    // Its window already closed (and maybe updated): a finding of its own, at its own time; a
    // thresholded rule's late match cannot complete a window that was judged already.
    if (startMs + foldMs <= this.watermarkMs) return min > 1 ? null : ruleFinding({ rule, event: e }, this.setup.logName);
    const key = `${rule.id}\u0000${e.accountId}\u0000${e.principal}\u0000${startMs}`;
    const fold = this.folds.get(key);
    this.changedFolds.add(key);
    if (fold) {
      fold.count++;
      if (fold.evidences.length < MAX_EVIDENCES) fold.evidences.push(evidence(e));
      if (fold.count === min) return this.ruleRecord(rule, e, startMs, min, fold.evidences, false);
      this.counters.folded++;
      return null;
    }
    this.folds.set(key, { ruleId: rule.id, startMs, count: 1, evidences: [evidence(e)] });
    return min > 1 ? null : this.ruleRecord(rule, e, startMs, 1, [e], false);
  }

  private foldUpdate(rule: Rule, fold: Fold): Finding {
    const first = fold.evidences[0] as AuditEvent;
    const last = fold.evidences[fold.evidences.length - 1] as AuditEvent;
    const f = this.ruleRecord(rule, first, fold.startMs, fold.count, fold.evidences, true);
    // The Update says how many; its time is the latest evidence kept.
    f.time = Math.max(f.time, last.eventTimeMs);
    return f;
  }

  /** A rule's finding: the window's Create, or its Update carrying every match the window counted. */
  private ruleRecord(
    rule: Rule,
    e: AuditEvent,
    windowStartMs: number,
    count: number,
    evidences: readonly AuditEvent[],
    update: boolean,
  ): Finding {
    return ruleFinding({ rule, event: e }, this.setup.logName, {
      windowStartMs,
      count,
      evidences,
      update,
      foldMs: this.setup.config.foldMs,
    });
  }

  private correlationFinding(hit: CorrelationHit, e: AuditEvent | null): Finding {
    this.counters.correlationHits++;
    const principal = e?.principal ?? principalOfGroup(hit.group);
    const severity: FindingSeverity = hit.level ?? 'medium';
    const loaded = this.setup.correlations.find((c) => c.rule.id === hit.ruleId);
    return buildFinding({
      kind: 'correlation',
      analyticId: hit.ruleId,
      analyticName: hit.title,
      title: hit.title,
      desc: null,
      severity,
      timeMs: hit.windowEndMs,
      windowStartMs: hit.windowStartMs,
      createdMs: hit.windowEndMs,
      accountId: e?.accountId ?? stringOf(hit.group, 'recipientAccountId') ?? stringOf(hit.group, 'userIdentity.accountId') ?? '',
      region: e?.region ?? stringOf(hit.group, 'awsRegion') ?? '',
      principal,
      principalType: e?.principalType ?? null,
      sessionName: e?.attributes.sessionName ?? null,
      api: null,
      sourceIp: e?.sourceIp ?? null,
      evidences: e ? [e] : [],
      techniques: techniquesFromSigmaTags(loaded?.rule.tags ?? []),
      count: 1,
      extras: {
        rule_source: loaded?.source ?? '',
        rule_kind: 'sigma-correlation',
        correlation_type: hit.type,
        correlation_count: String(hit.count),
        correlation_group: JSON.stringify(hit.group),
        correlation_values: JSON.stringify(hit.values),
        event_uids: JSON.stringify(hit.eventIds),
      },
      logName: this.setup.logName,
    });
  }

  private firstSeenFinding(f: FirstSeenFinding): Finding {
    const actions = f.items.filter((i) => i.dimension === 'action');
    const only = actions.length === 1 && f.items.length === 1 ? (actions[0]?.value ?? null) : null;
    const label = (i: FirstSeenFinding['items'][number]): string =>
      i.dimension === 'action'
        ? (i.value.split(':')[1] ?? i.value)
        : `${i.dimension === 'errorCode' ? 'error code' : i.dimension} ${i.value}`;
    const first = f.items[0];
    const title =
      f.total === 1 && first
        ? `First-seen ${first.dimension === 'action' ? 'action' : first.dimension === 'errorCode' ? 'error code' : first.dimension}: ${first.dimension === 'action' ? label(first) : first.value}`
        : `${f.total} first-seen behaviours: ${f.items.slice(0, 5).map(label).join(', ')}${f.total > 5 ? ', …' : ''}`;
    return buildFinding({
      kind: 'first-seen',
      analyticId: 'trailwatch-first-seen',
      analyticName: 'First-seen behaviour per principal',
      title,
      desc: `A ${f.human ? 'person' : f.principalType} showed ${f.total} value${f.total === 1 ? '' : 's'} it had not shown within its learning window${f.categories.length ? ` (sensitive: ${f.categories.join(', ')})` : ''}.`,
      severity: f.severity,
      timeMs: f.items[f.items.length - 1]?.eventTimeMs ?? f.windowStartMs,
      windowStartMs: f.windowStartMs,
      createdMs: f.windowStartMs,
      accountId: f.accountId,
      region: regionOf(f) ?? '',
      principal: f.principal,
      principalType: f.principalType,
      api: only ? { service: only.slice(0, only.indexOf(':')), operation: only.slice(only.indexOf(':') + 1) } : null,
      evidences: f.items.map((i) => itemEvidence(f, i)),
      evidenceData: false,
      count: 1,
      extras: {
        first_seen_items: JSON.stringify(
          f.items.map((i) => ({ dimension: i.dimension, value: i.value, severity: i.severity, category: i.category })),
        ),
        first_seen_total: String(f.total),
        categories: f.categories.join(','),
        human: String(f.human),
      },
      logName: this.setup.logName,
    });
  }

  private breadthFinding(b: BreadthFinding): Finding {
    this.counters.breadth++;
    const denied = b.kind === 'denied';
    return buildFinding({
      kind: 'breadth',
      analyticId: denied ? 'trailwatch-breadth-denied' : 'trailwatch-breadth',
      analyticName: denied ? 'Distinct denied actions per principal' : 'Distinct actions per principal',
      title: `${b.distinct} distinct ${denied ? 'denied ' : ''}actions in ${Math.round(this.setup.config.breadth.windowMs / 60_000)} min (usual peak ${b.baselinePeak})`,
      desc: `The principal called ${b.distinct} distinct actions${denied ? ' that were denied' : ''} within the window; it fires at ${b.threshold}, ${this.setup.config.breadth.factor} × its highest daily peak of the last ${this.setup.config.breadth.historyDays} days (floor ${denied ? this.setup.config.breadth.minDeniedDistinct : this.setup.config.breadth.minDistinct}).`,
      severity: denied ? 'high' : this.setup.config.breadth.severity,
      timeMs: b.timeMs,
      windowStartMs: b.windowStartMs,
      createdMs: b.timeMs,
      accountId: b.accountId,
      region: b.region,
      principal: b.principal,
      principalType: b.principalType,
      sessionName: b.sessionName,
      api: null,
      evidences: b.evidences.map(evidence),
      techniques: [{ uid: 'T1580', name: 'Cloud Infrastructure Discovery', tactic: { uid: 'TA0007', name: 'Discovery' } }],
      count: 1,
      extras: {
        distinct: String(b.distinct),
        threshold: String(b.threshold),
        baseline_peak: String(b.baselinePeak),
        actions: JSON.stringify(b.actions),
      },
      logName: this.setup.logName,
    });
  }

  /** The CloudTrail record a correlation sees: `raw` when the producer kept it, else the normalized one. */
  private recordOf(e: AuditEvent): Record<string, unknown> {
    if (e.raw) {
      try {
        const parsed: unknown = JSON.parse(e.raw);
        if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
      } catch {
        // counted below
      }
      this.counters.rawUnparsed++;
    }
    return normalizedRecord(e);
  }
}

function correlationRules(correlations: readonly LoadedCorrelation[]): {
  rules: LoadedCorrelation['rule'][];
  bases: SigmaRule[];
} {
  const bases = new Map<string, SigmaRule>();
  for (const c of correlations) for (const b of c.base) bases.set(b.id, b);
  return { rules: correlations.map((c) => c.rule), bases: [...bases.values()] };
}

function firstSeenOptions(setup: FindingSetup): FirstSeenOptions {
  const c = setup.config.firstSeen;
  return {
    learningMs: c.learningMs,
    forgetMs: c.forgetMs,
    groupMs: c.groupMs,
    maxPrincipals: c.maxPrincipals,
    maxValuesPerPrincipal: c.maxValuesPerPrincipal,
    profiles: c.profiles,
    catalog: setup.catalog,
  };
}

function breadthOptions(c: FindingsConfig): ConstructorParameters<typeof BreadthDetector>[0] {
  const b = c.breadth;
  return {
    windowMs: b.windowMs,
    minDistinct: b.minDistinct,
    minDeniedDistinct: b.minDeniedDistinct,
    factor: b.factor,
    historyDays: b.historyDays,
    learningMs: b.learningMs,
    maxPrincipals: b.maxPrincipals,
  };
}

/** An event kept as evidence in state: without the raw record, which can be kilobytes. */
function evidence(e: AuditEvent): AuditEvent {
  return e.raw ? { ...e, raw: null } : e;
}

/** The evidence of a first-seen item: the call that showed the value, as far as the detector kept it. */
function itemEvidence(f: FirstSeenFinding, item: FirstSeenFinding['items'][number]): AuditEvent {
  const action = item.dimension === 'action' ? item.value : null;
  const colon = action?.indexOf(':') ?? -1;
  return {
    eventId: item.eventId,
    eventTimeMs: item.eventTimeMs,
    source: 'aws.cloudtrail',
    accountId: f.accountId,
    region: item.dimension === 'region' ? item.value : '',
    principal: f.principal,
    principalType: f.principalType,
    service: action && colon > 0 ? action.slice(0, colon) : '',
    action: action && colon > 0 ? action.slice(colon + 1) : '',
    readOnly: null,
    errorCode: item.dimension === 'errorCode' ? item.value : null,
    sourceIp: null,
    userAgent: null,
    attributes: {},
  };
}

function regionOf(f: FirstSeenFinding): string | null {
  return f.items.find((i) => i.dimension === 'region')?.value ?? null;
}

function stringOf(group: Record<string, unknown>, name: string): string | null {
  const v = group[name];
  return typeof v === 'string' ? v : null;
}

/** A correlation grouped by identity names its principal. */
function principalOfGroup(group: Record<string, unknown>): string | null {
  for (const name of ['userIdentity.arn', 'userIdentity.principalId', 'userIdentity.userName']) {
    const v = stringOf(group, name);
    if (v !== null) return v;
  }
  return null;
}

function parse(value: string, what: string): unknown {
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new TrailwatchError(ErrorCodes.STATE_CORRUPT, `${what} is not JSON: ${(err as Error).message}`, {
      fault: 'internal',
      cause: err,
    });
  }
}
