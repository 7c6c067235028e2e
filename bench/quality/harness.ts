/**
 * Detection-quality harness: seeded realistic traffic with labelled anomalies (generator.ts,
 * scenarios.ts) → the backtest core (the live engine) → recall, precision, time to detect and
 * false Insights a day, against bench/quality/targets.json. Writes its section of BENCHMARKS.md.
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
import type { DetectorConfig } from '../../src/config/schema.ts';
import type { Insight, InsightScope, InsightType } from '../../src/contracts/types.ts';
import {
  type BenignBurst,
  buildPopulation,
  DAY_MS,
  DEFAULT_START_MS,
  MINUTE_MS,
  type PrincipalKind,
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

/** What the harness must set, whatever the config says: the enumeration scenario is reads. */
export const HARNESS_OVERRIDES = { detector: { includeReadOnly: true } } as const;

export interface Targets {
  recall: { min: number };
  medianTimeToDetectBuckets: { max: number };
  falseInsightsPerDayPer1kPrincipals: { max: number };
}

export interface QualityOptions {
  principals: number;
  days: number;
  seed: number;
  instancesPerKind: number;
  detector: DetectorConfig;
  startMs?: number;
  injectAfterDays?: number;
  /** Days at the start whose unmatched Starts are reported apart from the false-Insight rate (cold start; default 1). */
  warmupDays?: number;
  /** Event time per engine batch (default 10 s), so the watermark moves as it would live. */
  batchSpanMs?: number;
  onProgress?: (p: { day: number; days: number; events: number; starts: number }) => void;
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
}

export function startRecord(insight: Insight, watermarkMs: number): StartRecord {
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
  /** Benign bursts and principal kinds, to say what the false Starts were (diagnostics only). */
  benign?: BenignBurst[];
  kindOf?: (principal: string) => PrincipalKind | undefined;
}

export interface AnomalyOutcome {
  label: AnomalyLabel;
  detected: boolean;
  /** Buckets from the anomaly start to the watermark that released its first matching Start; null if missed. */
  timeToDetectBuckets: number | null;
  matchedStarts: number;
}

export interface KindScore {
  kind: AnomalyKind;
  injected: number;
  detected: number;
  recall: number;
  medianTimeToDetectBuckets: number | null;
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

export interface QualityResult {
  options: Omit<QualityOptions, 'detector' | 'onProgress'>;
  detector: DetectorConfig;
  scores: QualityScores;
  events: number;
  injectedEvents: Record<string, number>;
  starts: number;
  ends: number;
  openAtEnd: number;
  lateEvents: number;
  runtimeMs: number;
}

/** Generates the traffic, runs it through the backtest core and scores it. */
export function runQuality(o: QualityOptions): QualityResult {
  const started = performance.now();
  const startMs = o.startMs ?? DEFAULT_START_MS;
  const injectAfterDays = o.injectAfterDays ?? 8;
  const warmupDays = o.warmupDays ?? 1;
  const population = buildPopulation({ seed: o.seed, principals: o.principals, days: o.days, startMs });
  const scenarios = planScenarios({ population, seed: o.seed, instancesPerKind: o.instancesPerKind, injectAfterDays });
  const traffic = new TrafficGenerator({ population, injections: scenarios.map((s) => s.injection) });

  const starts: StartRecord[] = [];
  const backtest = new Backtest(o.detector, {
    batchSpanMs: o.batchSpanMs ?? 10_000,
    onInsight: (insight, watermarkMs) => {
      if (insight.insightDetails.state === 'Start') starts.push(startRecord(insight, watermarkMs));
    },
  });
  let events = 0;
  let minute = 0;
  for (const batch of traffic.byMinute()) {
    for (const e of batch) backtest.push(e);
    events += batch.length;
    if (++minute % 1_440 === 0) o.onProgress?.({ day: minute / 1_440, days: o.days, events, starts: starts.length });
  }
  const stats = backtest.finish();

  const kinds = new Map(population.profiles.map((p) => [p.principal, p.kind]));
  const scores = scoreRun({
    anomalies: scenarios.map((s) => s.label),
    starts,
    principals: o.principals,
    startMs,
    days: o.days,
    injectAfterDays,
    warmupDays,
    bucketMs: o.detector.bucketMs,
    benign: population.benign,
    kindOf: (p) => kinds.get(p),
  });
  const { detector: _d, onProgress: _p, ...options } = o;
  return {
    options: { ...options, startMs, injectAfterDays, warmupDays, batchSpanMs: o.batchSpanMs ?? 10_000 },
    detector: o.detector,
    scores,
    events,
    injectedEvents: Object.fromEntries(traffic.injectedEvents),
    starts: stats.starts,
    ends: stats.ends,
    openAtEnd: stats.openAtEnd,
    lateEvents: stats.lateEvents,
    runtimeMs: performance.now() - started,
  };
}

// ── targets and report ──────────────────────────────────────────────────

export function loadTargets(file: string = TARGETS_FILE): Targets {
  return JSON.parse(readFileSync(file, 'utf8')) as Targets;
}

export interface TargetCheck {
  metric: string;
  value: number | null;
  target: string;
  ok: boolean;
}

export function checkTargets(s: QualityScores, t: Targets): TargetCheck[] {
  const ttd = s.medianTimeToDetectBuckets;
  return [
    { metric: 'recall', value: s.recall, target: `≥ ${t.recall.min}`, ok: s.recall >= t.recall.min },
    {
      metric: 'median time to detect (buckets)',
      value: ttd,
      target: `≤ ${t.medianTimeToDetectBuckets.max}`,
      ok: ttd !== null && ttd <= t.medianTimeToDetectBuckets.max,
    },
    {
      metric: 'false Insights / day / 1k principals',
      value: s.falseInsightsPerDayPer1kPrincipals,
      target: `≤ ${t.falseInsightsPerDayPer1kPrincipals.max}`,
      ok: s.falseInsightsPerDayPer1kPrincipals <= t.falseInsightsPerDayPer1kPrincipals.max,
    },
  ];
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
      if (typeof v === 'object' && v !== null && typeof d === 'object' && d !== null)
        walk(v as Record<string, unknown>, d as Record<string, unknown>, `${path}${k}.`);
      else if (JSON.stringify(v) !== JSON.stringify(d)) out.push(`detector.${path}${k} = ${JSON.stringify(v)}`);
    }
  };
  walk(detector as unknown as Record<string, unknown>, defaults, '');
  return out;
}

/** The report as Markdown: the same text goes to stdout and into BENCHMARKS.md. */
export function renderReport(r: QualityResult, checks: TargetCheck[], command: string): string {
  const s = r.scores;
  const o = r.options;
  const cpu = cpus();
  const lines: string[] = [];
  lines.push('## Detection quality');
  lines.push('');
  lines.push(
    `Seeded synthetic traffic with labelled anomalies through the live engine (\`bench/quality/\`; definitions in [docs/quality.md](docs/quality.md)).`,
  );
  lines.push('');
  lines.push(`- command: \`${command}\``);
  lines.push(
    `- run: ${int(o.principals)} principals, ${o.days} days from ${new Date(o.startMs ?? 0).toISOString().slice(0, 10)}, seed ${o.seed}, ${s.anomalies.length} injected anomalies (${o.instancesPerKind} per kind, after day ${o.injectAfterDays}), warm-up ${o.warmupDays} day`,
  );
  lines.push(
    `- ${int(r.events)} events (${int(Object.values(r.injectedEvents).reduce((a, b) => a + b, 0))} injected), ${int(r.starts)} Insight Starts, ${int(r.ends)} Ends, ${int(r.openAtEnd)} open at end, ${int(r.lateEvents)} late`,
  );
  lines.push(
    `- runtime ${(r.runtimeMs / 1000).toFixed(1)} s (${int(Math.round(r.events / (r.runtimeMs / 1000)))} events/s, generation included)`,
  );
  lines.push(
    `- machine: ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}/${process.arch}`,
  );
  const diff = configDiff(r.detector);
  lines.push(
    `- config: defaults${diff.length ? ` except ${diff.map((d) => `\`${d}\``).join(', ')}` : ''}; \`includeReadOnly\` is set by the harness`,
  );
  lines.push('');
  lines.push('| metric | value | target | |');
  lines.push('|---|---:|---|---|');
  for (const c of checks) lines.push(`| ${c.metric} | ${fmt(c.value)} | ${c.target} | ${c.ok ? 'ok' : '**missed**'} |`);
  lines.push(`| p90 time to detect (buckets) | ${fmt(s.p90TimeToDetectBuckets)} | — | |`);
  lines.push(`| precision | ${fmt(s.precision)} | — | ${int(s.matchedStarts)} of ${int(s.startsCounted)} Starts after the warm-up |`);
  lines.push('');
  lines.push('| kind | detected | recall | median time to detect |');
  lines.push('|---|---:|---:|---:|');
  for (const k of s.perKind)
    lines.push(`| ${k.kind} | ${k.detected}/${k.injected} | ${fmt(k.recall)} | ${fmt(k.medianTimeToDetectBuckets)} |`);
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
  --principals N   principals in the population (default 1000)
  --days N         days of event time (default 14; anomalies start after day 8)
  --seed N         seed of traffic and anomalies (default 1)
  --instances N    injected anomalies of each kind (default 6)
  --config FILE    trailwatch JSON config (env TRAILWATCH_* applies too); the harness sets
                   detector.includeReadOnly = true
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
  } catch (err) {
    process.stderr.write(`bench:quality: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const config = loadConfig({ file: values.config as string | undefined, overrides: HARNESS_OVERRIDES });
  const progressStarted = performance.now();
  const result = runQuality({
    principals,
    days,
    seed,
    instancesPerKind: instances,
    detector: config.detector,
    onProgress: (p) =>
      process.stderr.write(
        `bench:quality: day ${p.day}/${p.days}, ${int(p.events)} events, ${int(p.starts)} Starts, ${((performance.now() - progressStarted) / 1000).toFixed(0)} s\n`,
      ),
  });
  const checks = checkTargets(result.scores, loadTargets());
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
