/**
 * Security-detection harness: the quality harness's benign population (generator.ts) with
 * labelled attack shapes injected (security-scenarios.ts) → the backtest core with rules,
 * first-seen and breadth as `trailwatch run` has them by default → recall per scenario class and
 * detector family, and false findings per day per 1,000 principals per family, against
 * bench/quality/security-targets.json. Writes its section of BENCHMARKS.md.
 *
 *   npm run bench:security -- [--principals N] [--days N] [--seed N] [--instances N] [--config FILE] [--findings FILE] [--no-write]
 *
 * Definitions are in docs/quality.md ("Security detections"); they are not to be bent to make a
 * target pass.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median } from 'simple-statistics';
import { Backtest } from '../../src/backtest/backtest.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import type { Finding } from '../../src/contracts/types.ts';
import { findingSetupFromConfig } from '../../src/detect/findings.ts';
import { buildPopulation, DAY_MS, DEFAULT_START_MS, MINUTE_MS, type PrincipalProfile, TrafficGenerator } from './generator.ts';
import { BENCHMARKS_FILE } from './harness.ts';
import { planSecurityScenarios, SECURITY_CLASSES, type SecurityClass, type SecurityLabel, withInjected } from './security-scenarios.ts';

export const SECURITY_TARGETS_FILE = join(import.meta.dirname, 'security-targets.json');
export const SECURITY_SECTION_START = '<!-- security:start -->';
export const SECURITY_SECTION_END = '<!-- security:end -->';

/** A finding counts for a scenario when its events overlap [scenario start, scenario end + this]. */
export const SECURITY_MATCH_TAIL_MS = 30 * MINUTE_MS;

/** Rules (single-event and correlations), first-seen, breadth: what the report keeps apart. */
export const FAMILIES = ['rules', 'first-seen', 'breadth'] as const;
export type DetectorFamily = (typeof FAMILIES)[number];

export function familyOf(kind: string | undefined): DetectorFamily {
  switch (kind) {
    case 'first-seen':
      return 'first-seen';
    case 'breadth':
      return 'breadth';
    case 'rule':
    case 'correlation':
      return 'rules';
    default:
      throw new Error(`unknown finding kind ${JSON.stringify(kind)}`);
  }
}

export interface SecurityTargets {
  recallPerClass: { min: number };
  falseFindingsPerDayPer1kPrincipals: { max: number };
}

/** The facts of a finding the scorer needs. */
export interface FindingRecord {
  /** finding_info.uid: a Create and its Updates share it. */
  uid: string;
  activity: 'Create' | 'Update';
  /** finding_info.types[0]: rule, correlation, first-seen, breadth. */
  kind: string;
  family: DetectorFamily;
  analytic: string;
  title: string;
  severity: string;
  /** actor.user.uid; null for a finding about no single principal. */
  principal: string | null;
  accountId: string;
  /** The finding's event-time span: its earliest and latest evidence (and `time`). */
  firstMs: number;
  lastMs: number;
  /** The slowest first-stage watermark when it came out. */
  watermarkMs: number;
  evidenceIds: string[];
  /** `service:action` when the finding is about one call. */
  api: string | null;
  /** First-seen: what was new (`action`, `region`, `errorCode`), distinct and sorted; empty for the other kinds. */
  dimensions: string[];
}

export function findingRecord(f: Finding, watermarkMs: number): FindingRecord {
  const info = f.finding_info;
  const first = info.first_seen_time ?? f.time;
  const last = info.last_seen_time ?? f.time;
  return {
    uid: info.uid,
    activity: f.activity_name,
    kind: info.types[0] ?? 'unknown',
    family: familyOf(info.types[0]),
    analytic: info.analytic.uid,
    title: info.title,
    severity: f.severity,
    principal: f.actor?.user.uid ?? null,
    accountId: f.cloud.account.uid,
    firstMs: Math.min(first, f.time),
    lastMs: Math.max(last, f.time),
    watermarkMs,
    evidenceIds: f.evidences.flatMap((e) => (e.uid === null ? [] : [e.uid])),
    api: f.api ? `${f.api.service.name ?? ''}:${f.api.operation}` : null,
    dimensions: dimensionsOf(f),
  };
}

function dimensionsOf(f: Finding): string[] {
  const items = f.unmapped.first_seen_items;
  if (items === undefined) return [];
  try {
    const parsed = JSON.parse(items) as Array<{ dimension?: unknown }>;
    return [...new Set(parsed.map((i) => String(i.dimension)))].sort();
  } catch {
    return ['unreadable'];
  }
}

/** Does this finding count for this scenario? Same principal; event-time span overlapping [start, end + 30 min]. */
export function matchesScenario(f: FindingRecord, l: SecurityLabel): boolean {
  return f.principal === l.principal && f.firstMs <= l.endMs + SECURITY_MATCH_TAIL_MS && f.lastMs >= l.startMs;
}

export interface SecurityScoreInput {
  labels: SecurityLabel[];
  findings: FindingRecord[];
  principals: number;
  startMs: number;
  days: number;
  /** findings.firstSeen.learningMs: false findings count from startMs + this. */
  learningMs: number;
  /**
   * detector.allowedLatenessMs: the watermark trails the latest event time by this. Time to
   * detect is measured in stream time (watermark + this), so a rule that fires on the event
   * itself scores ~0, not minus the lateness.
   */
  allowedLatenessMs: number;
  /** Principal → its kind as the report names it (`human (console)`, `service`, …). */
  kindOf?: (principal: string) => string | undefined;
}

export interface ScenarioOutcome {
  label: SecurityLabel;
  detected: boolean;
  /** Per family: stream time (watermark + allowed lateness) at its first matching finding − scenario start (ms); null when missed. */
  byFamily: Record<DetectorFamily, number | null>;
  /** The earliest of byFamily; null when missed. */
  timeToDetectMs: number | null;
  /** Matching findings (Creates and Updates). */
  matched: number;
  /** The analytics that matched. */
  analytics: string[];
  /** Whether some matching finding cites one of the injected calls as evidence (a diagnostic: a benign finding can match by time). */
  citesInjected: boolean;
  /** The families whose matching findings all cite none of the injected calls: detected by coincidence. */
  benignOnly: DetectorFamily[];
}

export interface FamilyRecall {
  detected: number;
  recall: number;
  medianTimeToDetectMs: number | null;
}

export interface ClassScore {
  cls: SecurityClass;
  injected: number;
  detected: number;
  recall: number;
  medianTimeToDetectMs: number | null;
  byFamily: Record<DetectorFamily, FamilyRecall>;
}

export interface FalseSummary {
  /** False Creates with event time after the learning period. */
  count: number;
  perDayPer1kPrincipals: number;
  /** False Creates within the learning period (not in the rate). */
  inLearning: number;
}

export interface FalseGroup {
  family: DetectorFamily;
  title: string;
  kind: string;
  count: number;
  principals: number;
}

export interface SecurityScores {
  scenarios: ScenarioOutcome[];
  perClass: ClassScore[];
  /** Days after the learning period the false rates are over. */
  judgedDays: number;
  falseByFamily: Record<DetectorFamily, FalseSummary>;
  falseTotal: FalseSummary;
  /** False Creates after the learning period, by principal kind and family. */
  falseByKind: Record<string, Record<DetectorFamily, number>>;
  /** By analytic uid, most first. */
  falseByAnalytic: Array<{ family: DetectorFamily; analytic: string; count: number }>;
  /** By family and severity (OCSF label: Low, Medium, …). */
  falseBySeverity: Record<DetectorFamily, Record<string, number>>;
  /** First-seen: by what was new (`action`, `errorCode`, `action+errorCode`, …). */
  falseFirstSeenByDimension: Record<string, number>;
  /** The 10 largest groups of false Creates after the learning period, by family, title and principal kind. */
  topFalse: FalseGroup[];
  /** False Creates per day of the run (day 0 first), all families. */
  falseByDay: number[];
  creates: number;
  updates: number;
  /** Every finding with the scenarios it matched or, when none, what it was: for tuning. */
  detail: Array<{ finding: FindingRecord; scenarios: string[]; cause: string | null; learning: boolean }>;
}

const emptyByFamily = <T>(make: () => T): Record<DetectorFamily, T> => ({ rules: make(), 'first-seen': make(), breadth: make() });

/** Scores findings against the injected scenarios. Pure. */
export function scoreSecurity(input: SecurityScoreInput): SecurityScores {
  const { labels, findings } = input;
  const learningEndMs = input.startMs + input.learningMs;
  const judgedDays = Math.max(0, input.days - input.learningMs / DAY_MS);
  const per1k = input.principals / 1_000;
  const rate = (n: number): number => (judgedDays === 0 ? Number.NaN : n / judgedDays / per1k);

  const matched = new Map<FindingRecord, string[]>();
  const scenarios = labels.map((label): ScenarioOutcome => {
    const hits = findings.filter((f) => matchesScenario(f, label));
    for (const f of hits) matched.set(f, [...(matched.get(f) ?? []), label.id]);
    const byFamily = emptyByFamily<number | null>(() => null);
    for (const f of hits) {
      const ttd = f.watermarkMs + input.allowedLatenessMs - label.startMs;
      const was = byFamily[f.family];
      if (was === null || ttd < was) byFamily[f.family] = ttd;
    }
    const times = FAMILIES.flatMap((k) => (byFamily[k] === null ? [] : [byFamily[k] as number]));
    const injected = new Set(label.eventIds);
    const cites = (f: FindingRecord): boolean => f.evidenceIds.some((id) => injected.has(id));
    return {
      label,
      detected: hits.length > 0,
      byFamily,
      timeToDetectMs: times.length === 0 ? null : Math.min(...times),
      matched: hits.length,
      analytics: [...new Set(hits.map((f) => f.analytic))].sort(),
      citesInjected: hits.some(cites),
      benignOnly: FAMILIES.filter((k) => hits.some((f) => f.family === k) && !hits.some((f) => f.family === k && cites(f))),
    };
  });

  const perClass = SECURITY_CLASSES.map((cls): ClassScore => {
    const of = scenarios.filter((s) => s.label.cls === cls);
    const recallOf = (pred: (s: ScenarioOutcome) => number | null): FamilyRecall => {
      const times = of.flatMap((s) => {
        const t = pred(s);
        return t === null ? [] : [t];
      });
      return {
        detected: times.length,
        recall: of.length === 0 ? Number.NaN : times.length / of.length,
        medianTimeToDetectMs: times.length === 0 ? null : median(times),
      };
    };
    const any = recallOf((s) => s.timeToDetectMs);
    const byFamily = emptyByFamily<FamilyRecall>(() => ({ detected: 0, recall: Number.NaN, medianTimeToDetectMs: null }));
    for (const k of FAMILIES) byFamily[k] = recallOf((s) => s.byFamily[k]);
    return {
      cls,
      injected: of.length,
      detected: any.detected,
      recall: any.recall,
      medianTimeToDetectMs: any.medianTimeToDetectMs,
      byFamily,
    };
  });

  // False findings: Creates only (an Update re-reports its Create), matching no scenario.
  const falseCounts = emptyByFamily(() => ({ count: 0, inLearning: 0 }));
  const falseByKind: Record<string, Record<DetectorFamily, number>> = {};
  const byAnalytic = new Map<string, { family: DetectorFamily; analytic: string; count: number }>();
  const falseBySeverity = emptyByFamily<Record<string, number>>(() => ({}));
  const falseFirstSeenByDimension: Record<string, number> = {};
  const groups = new Map<string, FalseGroup & { principalSet: Set<string> }>();
  const falseByDay = Array.from({ length: input.days }, () => 0);
  const detail: SecurityScores['detail'] = [];
  for (const f of findings) {
    const hit = matched.get(f) ?? [];
    const learning = f.firstMs < learningEndMs;
    const kind = f.principal === null ? 'no principal' : (input.kindOf?.(f.principal) ?? 'unknown');
    const isFalse = hit.length === 0 && f.activity === 'Create';
    detail.push({ finding: f, scenarios: hit, cause: hit.length === 0 ? `${kind}: ${f.title}` : null, learning });
    if (!isFalse) continue;
    const day = Math.floor((f.firstMs - input.startMs) / DAY_MS);
    if (day >= 0 && day < falseByDay.length) falseByDay[day] = (falseByDay[day] ?? 0) + 1;
    if (learning) {
      falseCounts[f.family].inLearning++;
      continue;
    }
    falseCounts[f.family].count++;
    falseByKind[kind] ??= emptyByFamily(() => 0);
    falseByKind[kind][f.family]++;
    const a = byAnalytic.get(f.analytic) ?? { family: f.family, analytic: f.analytic, count: 0 };
    a.count++;
    byAnalytic.set(f.analytic, a);
    falseBySeverity[f.family][f.severity] = (falseBySeverity[f.family][f.severity] ?? 0) + 1;
    if (f.family === 'first-seen') {
      const what = f.dimensions.join('+') || 'unknown';
      falseFirstSeenByDimension[what] = (falseFirstSeenByDimension[what] ?? 0) + 1;
    }
    const key = `${f.family}\u0000${f.title}\u0000${kind}`;
    const g = groups.get(key) ?? { family: f.family, title: f.title, kind, count: 0, principals: 0, principalSet: new Set<string>() };
    g.count++;
    g.principalSet.add(f.principal ?? '');
    g.principals = g.principalSet.size;
    groups.set(key, g);
  }
  const falseByFamily = emptyByFamily<FalseSummary>(() => ({ count: 0, perDayPer1kPrincipals: 0, inLearning: 0 }));
  let total = 0;
  let totalLearning = 0;
  for (const k of FAMILIES) {
    const { count, inLearning } = falseCounts[k];
    falseByFamily[k] = { count, inLearning, perDayPer1kPrincipals: rate(count) };
    total += count;
    totalLearning += inLearning;
  }
  const byCount = <T extends { count: number }>(a: T, b: T): number => b.count - a.count;
  return {
    scenarios,
    perClass,
    judgedDays,
    falseByFamily,
    falseTotal: { count: total, inLearning: totalLearning, perDayPer1kPrincipals: rate(total) },
    falseByKind,
    falseByAnalytic: [...byAnalytic.values()].sort((a, b) => byCount(a, b) || (a.analytic < b.analytic ? -1 : 1)),
    falseBySeverity,
    falseFirstSeenByDimension,
    topFalse: [...groups.values()]
      .sort((a, b) => byCount(a, b) || (`${a.title}\u0000${a.kind}` < `${b.title}\u0000${b.kind}` ? -1 : 1))
      .slice(0, 10)
      .map(({ principalSet: _, ...g }) => g),
    falseByDay,
    creates: findings.filter((f) => f.activity === 'Create').length,
    updates: findings.filter((f) => f.activity === 'Update').length,
    detail,
  };
}

/** How the report names a principal's kind: people on the console and on the CLI are judged differently by first-seen. */
export function kindLabel(p: Pick<PrincipalProfile, 'kind' | 'userAgent'>): string {
  if (p.kind !== 'human') return p.kind;
  return p.userAgent.includes('console') ? 'human (console)' : 'human (cli)';
}

// ── the run ─────────────────────────────────────────────────────────────

export interface SecurityOptions {
  principals: number;
  days: number;
  seed: number;
  instancesPerClass: number;
  /** The whole trailwatch config: detector, rules and findings as `run` would have them. */
  config: Config;
  startMs?: number;
  injectAfterDays?: number;
  /** Event time per engine batch (default 10 s), so the watermark moves as it would live. */
  batchSpanMs?: number;
  onProgress?: (p: { day: number; days: number; events: number; findings: number }) => void;
}

export interface SecurityResult {
  options: Omit<SecurityOptions, 'config' | 'onProgress'>;
  config: Config;
  ruleCount: number;
  correlationCount: number;
  /** Principals of each kind (as kindLabel names them). */
  kindSizes: Record<string, number>;
  scores: SecurityScores;
  events: number;
  injectedEvents: number;
  insights: { starts: number; ends: number; openAtEnd: number; startsOnScenarios: number; scenariosWithStart: number };
  lateEvents: number;
  runtimeMs: number;
}

/** Generates the traffic with the scenarios in it, runs it through the backtest core with findings on, and scores it. */
export async function runSecurity(o: SecurityOptions): Promise<SecurityResult> {
  const started = performance.now();
  const startMs = o.startMs ?? DEFAULT_START_MS;
  const injectAfterDays = o.injectAfterDays ?? 8;
  const batchSpanMs = o.batchSpanMs ?? 10_000;
  const population = buildPopulation({ seed: o.seed, principals: o.principals, days: o.days, startMs });
  const scenarios = planSecurityScenarios({ population, seed: o.seed, instancesPerClass: o.instancesPerClass, injectAfterDays });
  const injected = scenarios.flatMap((s) => s.events);
  const traffic = new TrafficGenerator({ population });
  const setup = await findingSetupFromConfig(o.config.rules, o.config.findings, 'bench');

  const findings: FindingRecord[] = [];
  const starts: Array<{ principal: string | null; startTimeMs: number }> = [];
  const backtest = new Backtest(o.config.detector, {
    batchSpanMs,
    findings: setup,
    onFinding: (f, watermarkMs) => findings.push(findingRecord(f, watermarkMs)),
    onInsight: (i) => {
      if (i.insightDetails.state === 'Start') starts.push({ principal: i.trailwatch.principal, startTimeMs: i.trailwatch.startTimeMs });
    },
  });
  let events = 0;
  let minute = 0;
  for (const batch of withInjected(traffic.byMinute(), injected, startMs)) {
    for (const e of batch) backtest.push(e);
    events += batch.length;
    if (++minute % 1_440 === 0) o.onProgress?.({ day: minute / 1_440, days: o.days, events, findings: findings.length });
  }
  const stats = backtest.finish();

  const kinds = new Map(population.profiles.map((p) => [p.principal, kindLabel(p)]));
  const kindSizes: Record<string, number> = {};
  for (const k of kinds.values()) kindSizes[k] = (kindSizes[k] ?? 0) + 1;
  const scores = scoreSecurity({
    labels: scenarios.map((s) => s.label),
    findings,
    principals: o.principals,
    startMs,
    days: o.days,
    learningMs: o.config.findings.firstSeen.learningMs,
    allowedLatenessMs: o.config.detector.allowedLatenessMs,
    kindOf: (p) => kinds.get(p),
  });
  const onScenario = (s: { principal: string | null; startTimeMs: number }) => (l: SecurityLabel) =>
    s.principal === l.principal &&
    s.startTimeMs >= l.startMs - o.config.detector.bucketMs &&
    s.startTimeMs <= l.endMs + SECURITY_MATCH_TAIL_MS;
  const { config: _c, onProgress: _p, ...options } = o;
  return {
    options: { ...options, startMs, injectAfterDays, batchSpanMs },
    config: o.config,
    ruleCount: setup.rules.size,
    correlationCount: setup.correlations.length,
    kindSizes,
    scores,
    events,
    injectedEvents: injected.length,
    insights: {
      starts: stats.starts,
      ends: stats.ends,
      openAtEnd: stats.openAtEnd,
      startsOnScenarios: starts.filter((s) => scenarios.some((x) => onScenario(s)(x.label))).length,
      scenariosWithStart: scenarios.filter((x) => starts.some((s) => onScenario(s)(x.label))).length,
    },
    lateEvents: stats.lateEvents,
    runtimeMs: performance.now() - started,
  };
}

// ── targets and report ──────────────────────────────────────────────────

export function loadSecurityTargets(file: string = SECURITY_TARGETS_FILE): SecurityTargets {
  return JSON.parse(readFileSync(file, 'utf8')) as SecurityTargets;
}

export interface SecurityCheck {
  metric: string;
  value: number | null;
  target: string;
  ok: boolean;
}

/** Recall of every class (any family), and the false-finding rate of every family, each against its target. */
export function checkSecurityTargets(s: SecurityScores, t: SecurityTargets): SecurityCheck[] {
  return [
    ...s.perClass.map((c) => ({
      metric: `recall: ${c.cls}`,
      value: c.recall,
      target: `≥ ${t.recallPerClass.min}`,
      ok: c.recall >= t.recallPerClass.min,
    })),
    ...FAMILIES.map((k) => {
      const v = s.falseByFamily[k].perDayPer1kPrincipals;
      return {
        metric: `false findings / day / 1k principals: ${k}`,
        value: v,
        target: `≤ ${t.falseFindingsPerDayPer1kPrincipals.max}`,
        ok: v <= t.falseFindingsPerDayPer1kPrincipals.max,
      };
    }),
  ];
}

const fmt = (x: number | null, digits = 2): string => (x === null || Number.isNaN(x) ? '—' : x.toFixed(digits));
const int = (x: number): string => x.toLocaleString('en-US');
/** A time to detect in minutes, one decimal. */
const minutes = (ms: number | null): string => (ms === null ? '—' : `${(ms / MINUTE_MS).toFixed(1)} min`);

/** Config keys (detector, rules, findings) that differ from the defaults, as `a.b = value`. */
export function securityConfigDiff(config: Config): string[] {
  const defaults = loadConfig({ env: {} });
  const out: string[] = [];
  const walk = (a: unknown, b: unknown, path: string): void => {
    if (typeof a === 'object' && a !== null && !Array.isArray(a) && typeof b === 'object' && b !== null && !Array.isArray(b)) {
      const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
      for (const k of keys) walk((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`);
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      out.push(`${path.slice(1)} = ${JSON.stringify(a)}`);
    }
  };
  walk(
    { detector: config.detector, rules: config.rules, findings: config.findings },
    { detector: defaults.detector, rules: defaults.rules, findings: defaults.findings },
    '',
  );
  return out;
}

/** The report as Markdown: the same text goes to stdout and into BENCHMARKS.md. */
export function renderSecurityReport(r: SecurityResult, checks: SecurityCheck[], command: string): string {
  const s = r.scores;
  const o = r.options;
  const c = r.config;
  const cpu = cpus();
  const lines: string[] = [];
  const learningDays = c.findings.firstSeen.learningMs / DAY_MS;
  lines.push('## Security detections');
  lines.push('');
  lines.push(
    'Labelled attack shapes injected into the quality harness’s benign population, through the live engine with rules, first-seen and breadth on (`bench/quality/security*.ts`; definitions in [docs/quality.md](docs/quality.md#security-detections-npm-run-benchsecurity)).',
  );
  lines.push('');
  lines.push(`- command: \`${command}\``);
  lines.push(
    `- run: ${int(o.principals)} principals, ${o.days} days from ${new Date(o.startMs ?? 0).toISOString().slice(0, 10)}, seed ${o.seed}, ${s.scenarios.length} scenarios (${o.instancesPerClass} per class, after day ${o.injectAfterDays}); false findings counted after the ${fmt(learningDays, 0)}-day learning period (${fmt(s.judgedDays, 0)} days)`,
  );
  lines.push(
    `- ${int(r.events)} events (${int(r.injectedEvents)} injected), ${int(s.creates)} findings created, ${int(s.updates)} updates, ${int(r.lateEvents)} late`,
  );
  lines.push(
    `- Insights: ${int(r.insights.starts)} Starts, ${int(r.insights.ends)} Ends, ${int(r.insights.openAtEnd)} open at end; ${int(r.insights.startsOnScenarios)} Starts on a scenario’s principal and time (${r.insights.scenariosWithStart} of ${s.scenarios.length} scenarios). Not comparable with the quality section: that harness sets \`detector.includeReadOnly = true\`, this one runs the defaults (writes only, plus \`sensitiveReads\`).`,
  );
  lines.push(
    `- runtime ${(r.runtimeMs / 1000).toFixed(1)} s (${int(Math.round(r.events / (r.runtimeMs / 1000)))} events/s, generation included)`,
  );
  lines.push(
    `- machine: ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}/${process.arch}`,
  );
  const diff = securityConfigDiff(c);
  const b = c.findings.breadth;
  const fs = c.findings.firstSeen;
  lines.push(
    `- config: ${diff.length ? `defaults except ${diff.map((d) => `\`${d}\``).join(', ')}` : 'defaults'}: \`includeReadOnly\` ${c.detector.includeReadOnly}; ${r.ruleCount} rules${c.rules.defaultPack ? ' (the default pack: CIS and trailwatch)' : ''}, ${r.correlationCount} correlation${r.correlationCount === 1 ? '' : 's'}; first-seen ${fs.enabled ? `on (learning ${fmt(fs.learningMs / DAY_MS, 0)} d, group ${fs.groupMs / MINUTE_MS} min, min severity ${fs.minSeverity})` : 'off'}; breadth ${b.enabled ? `on (${b.windowMs / MINUTE_MS} min window, floor ${b.minDistinct}/${b.minDeniedDistinct} denied, ×${b.factor} the daily peak, learning ${fmt(b.learningMs / DAY_MS, 0)} d)` : 'off'}; fold ${c.findings.foldMs / MINUTE_MS} min`,
  );
  lines.push('');
  lines.push('| metric | value | target | |');
  lines.push('|---|---:|---|---|');
  for (const k of checks) lines.push(`| ${k.metric} | ${fmt(k.value)} | ${k.target} | ${k.ok ? 'ok' : '**missed**'} |`);
  lines.push(`| false findings / day / 1k principals: all families | ${fmt(s.falseTotal.perDayPer1kPrincipals)} | — | |`);
  lines.push('');
  lines.push(
    'Recall by class and detector family: detected/injected (median time to detect: the latest event time the engine had seen when the first matching finding came out, i.e. watermark + allowed lateness, − scenario start):',
  );
  lines.push('');
  lines.push('| class | any | rules | first-seen | breadth |');
  lines.push('|---|---|---|---|---|');
  const cell = (detected: number, injected: number, ttd: number | null): string =>
    detected === 0 ? `0/${injected}` : `${detected}/${injected} (${minutes(ttd)})`;
  for (const k of s.perClass) {
    lines.push(
      `| ${k.cls} | ${cell(k.detected, k.injected, k.medianTimeToDetectMs)} | ${FAMILIES.map((f) => cell(k.byFamily[f].detected, k.injected, k.byFamily[f].medianTimeToDetectMs)).join(' | ')} |`,
    );
  }
  lines.push('');
  lines.push(`False findings (Creates matching no scenario; event time after day ${fmt(learningDays, 0)}; learning period apart):`);
  lines.push('');
  lines.push('| family | false findings | per day per 1k principals | in the learning period |');
  lines.push('|---|---:|---:|---:|');
  for (const k of FAMILIES) {
    const f = s.falseByFamily[k];
    lines.push(`| ${k} | ${int(f.count)} | ${fmt(f.perDayPer1kPrincipals)} | ${int(f.inLearning)} |`);
  }
  lines.push(`| all | ${int(s.falseTotal.count)} | ${fmt(s.falseTotal.perDayPer1kPrincipals)} | ${int(s.falseTotal.inLearning)} |`);
  lines.push('');
  lines.push('By principal kind (false findings after the learning period; per day per 1k principals of that kind in brackets):');
  lines.push('');
  lines.push('| principal kind | principals | rules | first-seen | breadth |');
  lines.push('|---|---:|---:|---:|---:|');
  const sizes = r.kindSizes;
  const kindRows = Object.keys({ ...sizes, ...s.falseByKind }).sort();
  for (const kind of kindRows) {
    const n = sizes[kind] ?? 0;
    const row = s.falseByKind[kind] ?? { rules: 0, 'first-seen': 0, breadth: 0 };
    const rateOf = (x: number): string => (n === 0 || s.judgedDays === 0 ? '' : ` (${fmt(x / s.judgedDays / (n / 1_000), 1)})`);
    lines.push(`| ${kind} | ${int(n)} | ${FAMILIES.map((f) => `${int(row[f])}${rateOf(row[f])}`).join(' | ')} |`);
  }
  lines.push('');
  lines.push(
    `By analytic (false findings after the learning period, per day per 1k principals): ${s.falseByAnalytic.map((a) => `\`${a.analytic}\` ${int(a.count)} (${fmt(s.judgedDays === 0 ? Number.NaN : a.count / s.judgedDays / (o.principals / 1_000))})`).join(', ') || 'none'}. Per day (all families, learning period included): ${s.falseByDay.join(', ')}.`,
  );
  const counts = (r: Record<string, number>): string =>
    Object.entries(r)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${int(n)}`)
      .join(', ') || 'none';
  lines.push('');
  lines.push(
    `By severity: ${FAMILIES.map((k) => `${k}: ${counts(s.falseBySeverity[k])}`).join('; ')}. First-seen by what was new: ${counts(s.falseFirstSeenByDimension)}.`,
  );
  lines.push('');
  lines.push('Top false findings after the learning period:');
  lines.push('');
  lines.push('| # | family | title | principal kind | findings | principals |');
  lines.push('|---:|---|---|---|---:|---:|');
  s.topFalse.forEach((g, i) => {
    lines.push(`| ${i + 1} | ${g.family} | ${g.title.replaceAll('|', '\\|')} | ${g.kind} | ${int(g.count)} | ${int(g.principals)} |`);
  });
  const missed = s.scenarios.filter((x) => !x.detected);
  // Per scenario, the families that caught it; a family whose findings cite none of the injected calls is marked.
  const byClass = [...s.scenarios].sort(
    (a, b) =>
      SECURITY_CLASSES.indexOf(a.label.cls) - SECURITY_CLASSES.indexOf(b.label.cls) ||
      a.label.id.localeCompare(b.label.id, 'en', { numeric: true }),
  );
  const outcomes = byClass.map((x) => {
    const families = FAMILIES.filter((f) => x.byFamily[f] !== null).map((f) => (x.benignOnly.includes(f) ? `${f} (benign finding)` : f));
    const variant = x.label.variant === x.label.cls ? '' : `${x.label.variant}, `;
    return `${x.label.id} (${variant}${x.label.principalKind}: ${families.join(' + ') || 'missed'})`;
  });
  lines.push('');
  lines.push(`Scenarios: ${outcomes.join('; ')}.`);
  if (missed.length > 0) lines.push(`\nMissed: ${missed.map((x) => x.label.id).join(', ')}.`);
  const coincidental = s.scenarios.filter((x) => x.detected && !x.citesInjected);
  if (coincidental.length > 0) {
    lines.push(
      `\nDetected only by findings that cite none of the injected calls (a benign finding of the same principal and time): ${coincidental.map((x) => x.label.id).join(', ')}.`,
    );
  }
  return lines.join('\n');
}

/** Replaces (or appends) the section between `start` and `end` of BENCHMARKS.md, keeping every other section. */
export function writeSection(
  body: string,
  file: string = BENCHMARKS_FILE,
  start = SECURITY_SECTION_START,
  end = SECURITY_SECTION_END,
): void {
  const section = `${start}\n${body}\n${end}`;
  const current = existsSync(file)
    ? readFileSync(file, 'utf8')
    : '# Benchmarks\n\nGenerated by the scripts in `bench/`; do not edit the generated sections by hand.\n';
  const a = current.indexOf(start);
  const b = current.indexOf(end);
  const next =
    a >= 0 && b > a ? `${current.slice(0, a)}${section}${current.slice(b + end.length)}` : `${current.trimEnd()}\n\n${section}\n`;
  writeFileSync(file, next);
}

// ── command line ────────────────────────────────────────────────────────

const USAGE = `Usage: npm run bench:security -- [options]

Options:
  --principals N   principals in the population (default 1000)
  --days N         days of event time (default 14; scenarios start after day 8)
  --seed N         seed of traffic and scenarios (default 1)
  --instances N    injected scenarios of each class (default 6)
  --config FILE    trailwatch JSON config (env TRAILWATCH_* applies too); default: the defaults
  --no-write       do not update BENCHMARKS.md
  --findings FILE  write every finding as a JSON line with the scenarios it matched or, when
                   none, what it was (principal kind and title), for tuning

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
  let config: Config;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        principals: { type: 'string' },
        days: { type: 'string' },
        seed: { type: 'string' },
        instances: { type: 'string' },
        config: { type: 'string' },
        'no-write': { type: 'boolean' },
        findings: { type: 'string' },
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
    config = loadConfig({ file: values.config as string | undefined, overrides: {} });
    // Too few days or principals for the scenarios asked for is a bad argument: planning says so, cheaply.
    planSecurityScenarios({ population: buildPopulation({ seed, principals, days }), seed, instancesPerClass: instances });
  } catch (err) {
    process.stderr.write(`bench:security: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const progressStarted = performance.now();
  const result = await runSecurity({
    principals,
    days,
    seed,
    instancesPerClass: instances,
    config,
    onProgress: (p) =>
      process.stderr.write(
        `bench:security: day ${p.day}/${p.days}, ${int(p.events)} events, ${int(p.findings)} findings, ${((performance.now() - progressStarted) / 1000).toFixed(0)} s\n`,
      ),
  });
  const checks = checkSecurityTargets(result.scores, loadSecurityTargets());
  const command = ['npm run bench:security', argv.length ? `-- ${argv.join(' ')}` : ''].join(' ').trim();
  const report = renderSecurityReport(result, checks, command);
  process.stdout.write(`${report}\n`);
  if (typeof values.findings === 'string') {
    writeFileSync(
      values.findings,
      result.scores.detail
        .map(
          (d) =>
            `${JSON.stringify({ ...d.finding, first: new Date(d.finding.firstMs).toISOString(), scenarios: d.scenarios, cause: d.cause, learning: d.learning })}\n`,
        )
        .join(''),
    );
  }
  if (!values['no-write']) {
    writeSection(report);
    process.stderr.write(`bench:security: wrote the security section of ${BENCHMARKS_FILE}\n`);
  }
  const missed = checks.filter((k) => !k.ok);
  if (missed.length > 0) process.stderr.write(`bench:security: missed ${missed.map((k) => k.metric).join(', ')}\n`);
  return missed.length > 0 ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`bench:security: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 2;
    },
  );
}
