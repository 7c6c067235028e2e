/**
 * Seeded, realistic audit traffic for the quality harness: a population of principals with
 * Zipf-skewed activity over a catalogue of ~45 actions, each principal calling a small habitual
 * subset. Humans follow their timezone's working day and week, service roles call around the
 * clock, nightly batch jobs run at a fixed hour, CI roles deploy a few times a working day
 * (5–10× their rate for 10–20 min; labelled benign). On request (the quality harness asks), a few
 * steady worker roles (busiest habit ≥ 2 calls/min) and very busy service roles (tens to hundreds of
 * calls a minute) on top. Injected anomalies (scenarios.ts) are mixed in, and may silence a
 * principal or thin one of its habits. Generated lazily minute by minute, in event-time order; the
 * same seed gives the same events, ids included.
 */
import type { AuditEvent } from '../../src/contracts/types.ts';
import { mulberry32 } from '../../src/demo/traffic.ts';

export const MINUTE_MS = 60_000;
export const DAY_MS = 1_440 * MINUTE_MS;
const WEEK_MINUTES = 7 * 1_440;

/** Monday 2026-01-05 00:00 UTC: day 0 of every run, so weekdays line up. */
export const DEFAULT_START_MS = Date.UTC(2026, 0, 5);

export interface ActionDef {
  service: string;
  action: string;
  readOnly: boolean;
}

/** `service:action`, how labels name an action. */
export function actionName(a: Pick<ActionDef, 'service' | 'action'>): string {
  return `${a.service}:${a.action}`;
}

const A = (service: string, action: string, readOnly: boolean): ActionDef => ({ service: `${service}.amazonaws.com`, action, readOnly });

export const CATALOGUE: readonly ActionDef[] = [
  A('ec2', 'RunInstances', false),
  A('ec2', 'TerminateInstances', false),
  A('ec2', 'StartInstances', false),
  A('ec2', 'StopInstances', false),
  A('ec2', 'CreateTags', false),
  A('ec2', 'DescribeInstances', true),
  A('ec2', 'DescribeSecurityGroups', true),
  A('ec2', 'DescribeVpcs', true),
  A('ec2', 'DescribeSnapshots', true),
  A('ec2', 'AuthorizeSecurityGroupIngress', false),
  A('ec2', 'CreateSnapshot', false),
  A('s3', 'GetObject', true),
  A('s3', 'PutObject', false),
  A('s3', 'DeleteObject', false),
  A('s3', 'ListBuckets', true),
  A('s3', 'ListObjects', true),
  A('s3', 'CreateBucket', false),
  A('s3', 'PutBucketPolicy', false),
  A('iam', 'ListRoles', true),
  A('iam', 'ListUsers', true),
  A('iam', 'ListPolicies', true),
  A('iam', 'GetUser', true),
  A('iam', 'CreateUser', false),
  A('iam', 'CreateAccessKey', false),
  A('iam', 'AttachRolePolicy', false),
  A('sts', 'AssumeRole', false),
  A('sts', 'GetCallerIdentity', true),
  A('lambda', 'Invoke', false),
  A('lambda', 'UpdateFunctionCode', false),
  A('lambda', 'ListFunctions', true),
  A('kms', 'Decrypt', true),
  A('kms', 'GenerateDataKey', true),
  A('kms', 'ListKeys', true),
  A('dynamodb', 'PutItem', false),
  A('dynamodb', 'Query', true),
  A('dynamodb', 'DescribeTable', true),
  A('dynamodb', 'ListTables', true),
  A('cloudformation', 'DescribeStacks', true),
  A('cloudformation', 'UpdateStack', false),
  A('secretsmanager', 'GetSecretValue', true),
  A('secretsmanager', 'ListSecrets', true),
  A('ssm', 'GetParameter', true),
  A('ssm', 'DescribeParameters', true),
  A('logs', 'PutLogEvents', false),
  A('sqs', 'SendMessage', false),
];

function byName(name: string): ActionDef {
  const a = CATALOGUE.find((x) => x.action === name);
  if (!a) throw new Error(`no action ${name} in the catalogue`);
  return a;
}

/** Read-only enumeration calls (List*, Describe*): what a principal exploring an account makes. */
export const ENUMERATION_ACTIONS: readonly ActionDef[] = CATALOGUE.filter((a) => a.readOnly && /^(List|Describe)/.test(a.action));

export type PrincipalKind = 'human' | 'service' | 'batch' | 'ci';

/** Which actions each kind of principal draws its habits from, most popular first. */
const HABIT_POOLS: Record<PrincipalKind, ActionDef[]> = {
  human: [
    'DescribeInstances',
    'GetObject',
    'ListObjects',
    'ListBuckets',
    'DescribeSecurityGroups',
    'PutObject',
    'GetCallerIdentity',
    'DescribeStacks',
    'StartInstances',
    'StopInstances',
    'Query',
    'GetParameter',
    'ListFunctions',
    'DescribeVpcs',
    'ListRoles',
    'GetUser',
    'CreateTags',
    'GetSecretValue',
    'Invoke',
    'DescribeTable',
    'DescribeSnapshots',
    'ListPolicies',
  ].map(byName),
  service: [
    'GetObject',
    'PutObject',
    'Decrypt',
    'AssumeRole',
    'SendMessage',
    'PutItem',
    'Query',
    'PutLogEvents',
    'GetSecretValue',
    'GenerateDataKey',
    'Invoke',
    'GetParameter',
    'DeleteObject',
    'DescribeInstances',
  ].map(byName),
  batch: ['GetObject', 'PutObject', 'Query', 'PutItem', 'Invoke', 'Decrypt', 'DeleteObject', 'SendMessage', 'CreateSnapshot'].map(byName),
  ci: [
    'DescribeStacks',
    'UpdateStack',
    'RunInstances',
    'TerminateInstances',
    'CreateTags',
    'UpdateFunctionCode',
    'PutObject',
    'AssumeRole',
    'DescribeInstances',
  ].map(byName),
};

const HABIT_COUNT: Record<PrincipalKind, [number, number]> = { human: [3, 8], service: [1, 4], batch: [2, 5], ci: [3, 6] };

/** Mean calls per minute at full activity, per kind, before the Zipf skew. */
const KIND_MEAN_RATE: Record<PrincipalKind, number> = { human: 0.8, service: 0.6, batch: 15, ci: 1.5 };
const KIND_MAX_RATE: Record<PrincipalKind, number> = { human: 15, service: 40, batch: 80, ci: 6 };
const ZIPF_EXPONENT = 0.7;

/** Share of each kind in the population (humans take the rest). */
const KIND_SHARE = { service: 0.28, batch: 0.04, ci: 0.01 };

/** UTC offsets of the human workforce, in hours, with weights (mostly US and EU). */
const TIMEZONES: ReadonlyArray<[number, number]> = [
  [-8, 3],
  [-5, 4],
  [0, 2],
  [1, 4],
  [2, 1],
  [5.5, 2],
  [8, 1],
  [9, 1],
];

const ACCOUNTS = ['111111111111', '222222222222', '333333333333'];
const REGIONS = ['us-east-1', 'eu-west-1'];

/** Share of calls that fail for ordinary reasons, and how they fail. */
const BENIGN_ERROR_SHARE: Record<PrincipalKind, number> = { human: 0.02, service: 0.005, batch: 0.005, ci: 0.01 };
const BENIGN_ERRORS: ReadonlyArray<[string, number]> = [
  ['AccessDenied', 0.6],
  ['ThrottlingException', 0.3],
  ['ValidationException', 0.1],
];
/** A human now and then calls something outside their habits. */
const HUMAN_EXPLORE_SHARE = 0.002;

/**
 * Service roles outside the Zipf population, added on request: `worker` roles call 4–10 times a
 * minute on 1–2 habits (so the population has habits of several calls a minute to shift or drop),
 * `busy` roles call one action tens to hundreds of times a minute (the volume end of the key spread).
 */
export type ServiceTier = 'worker' | 'busy';

export interface PrincipalProfile {
  index: number;
  principal: string;
  principalType: string;
  kind: PrincipalKind;
  accountId: string;
  region: string;
  userAgent: string;
  sourceIp: string;
  /** Calls per minute at full activity (activity 1). */
  ratePerMinute: number;
  habits: ActionDef[];
  /** Share of the principal's calls per habit, summing to 1. */
  habitWeights: number[];
  /** Humans and CI: offset of their working day from UTC, hours. */
  tzOffsetHours: number;
  /** Batch: the nightly run, UTC minute of day and length. */
  batchStartMinute: number;
  batchMinutes: number;
  /** Service roles added outside the Zipf population (absent for the others). */
  tier?: ServiceTier;
}

/** The habit a principal calls most, and its rate at full activity (calls per minute). */
export function busiestHabit(p: PrincipalProfile): { action: ActionDef; index: number; ratePerMinute: number } {
  let index = 0;
  for (let i = 1; i < p.habitWeights.length; i++) if ((p.habitWeights[i] as number) > (p.habitWeights[index] as number)) index = i;
  return { action: p.habits[index] as ActionDef, index, ratePerMinute: p.ratePerMinute * (p.habitWeights[index] ?? 1) };
}

/** Calls per minute of each habit at full activity, in habit order. */
export function habitRates(p: PrincipalProfile): number[] {
  return p.habitWeights.map((w) => p.ratePerMinute * w);
}

/** A service role's activity (its rate multiplier) `minute` minutes into the run: ±10% over the UTC day, lowest at midnight. */
export function serviceActivity(minute: number): number {
  return 1 + 0.1 * Math.sin((2 * Math.PI * (((minute % 1_440) + 1_440) % 1_440)) / 1_440 - Math.PI / 2);
}

/** Worker roles' rate at full activity: log-uniform between these, calls per minute. */
const WORKER_RATE: [number, number] = [4, 10];

/**
 * Rates of `n` busy service roles, busiest first, calls a minute on their single action: `top`
 * (default 400), then a fifth of the one before, never below `top` / 20 (400, 80, 20, 20, …).
 */
export function busyRates(n: number, top = 400): number[] {
  return Array.from({ length: n }, (_, i) => Math.max(top / 5 ** i, top / 20));
}

/** A labelled burst of legitimate activity. */
export interface BenignBurst {
  id: string;
  kind: 'deployment' | 'nightly-batch';
  principal: string;
  accountId: string;
  region: string;
  actions: string[];
  startMs: number;
  endMs: number;
  /** Deployments: the rate multiplier. */
  multiplier: number;
}

export interface Population {
  seed: number;
  startMs: number;
  days: number;
  profiles: PrincipalProfile[];
  benign: BenignBurst[];
}

export interface PopulationOptions {
  seed: number;
  /** Principals of the Zipf population (humans, service roles, batch jobs, CI roles). */
  principals: number;
  days: number;
  startMs?: number;
  /** Worker service roles added on top (default 0). */
  workers?: number;
  /** Busy service roles added on top, one per rate (calls per minute at full activity; default none). */
  busyRates?: readonly number[];
}

function weightedPick<T>(rand: () => number, items: ReadonlyArray<[T, number]>): T {
  const total = items.reduce((s, [, w]) => s + w, 0);
  let x = rand() * total;
  for (const [item, w] of items) {
    x -= w;
    if (x < 0) return item;
  }
  return (items[items.length - 1] as [T, number])[0];
}

function intBetween(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

function shuffle<T>(rand: () => number, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
  }
  return xs;
}

/** Picks `n` of `pool` without replacement, biased to the front (popular actions). */
function pickHabits(rand: () => number, pool: ActionDef[], n: number): ActionDef[] {
  const weighted: Array<[ActionDef, number]> = pool.map((a, i) => [a, 1 / (i + 1) ** 0.8]);
  const out: ActionDef[] = [];
  while (out.length < Math.min(n, pool.length)) {
    const a = weightedPick(rand, weighted);
    out.push(a);
    weighted.splice(
      weighted.findIndex(([x]) => x === a),
      1,
    );
  }
  return out;
}

/** The principals and their benign bursts. Independent of the injected anomalies, which pick principals from it. */
export function buildPopulation(o: PopulationOptions): Population {
  const rand = mulberry32(o.seed ^ 0x5eed_0001);
  const startMs = o.startMs ?? DEFAULT_START_MS;
  const n = o.principals;
  const counts: Record<PrincipalKind, number> = {
    service: Math.max(1, Math.round(n * KIND_SHARE.service)),
    batch: Math.max(1, Math.round(n * KIND_SHARE.batch)),
    ci: Math.max(1, Math.round(n * KIND_SHARE.ci)),
    human: 0,
  };
  counts.human = Math.max(1, n - counts.service - counts.batch - counts.ci);
  const kinds: PrincipalKind[] = shuffle(rand, [
    ...Array<PrincipalKind>(counts.human).fill('human'),
    ...Array<PrincipalKind>(counts.service).fill('service'),
    ...Array<PrincipalKind>(counts.batch).fill('batch'),
    ...Array<PrincipalKind>(counts.ci).fill('ci'),
  ]);
  // Zipf ranks within each kind, in a random order.
  const ranks = new Map<PrincipalKind, number[]>();
  const zipfNorm = new Map<PrincipalKind, number>();
  for (const k of ['human', 'service', 'batch', 'ci'] as const) {
    ranks.set(
      k,
      shuffle(
        rand,
        Array.from({ length: counts[k] }, (_, i) => i + 1),
      ),
    );
    let sum = 0;
    for (let r = 1; r <= counts[k]; r++) sum += r ** -ZIPF_EXPONENT;
    zipfNorm.set(k, sum / counts[k]);
  }

  const profiles: PrincipalProfile[] = kinds.map((kind, index) => {
    const account = ACCOUNTS[intBetween(rand, 0, ACCOUNTS.length - 1)] as string;
    const region = rand() < 0.75 ? (REGIONS[0] as string) : (REGIONS[1] as string);
    const rank = ranks.get(kind)?.pop() ?? 1;
    const rate = Math.min(KIND_MAX_RATE[kind], (KIND_MEAN_RATE[kind] * rank ** -ZIPF_EXPONENT) / (zipfNorm.get(kind) ?? 1));
    const [lo, hi] = HABIT_COUNT[kind];
    const habits = pickHabits(rand, HABIT_POOLS[kind], intBetween(rand, lo, hi));
    const raw = habits.map((_, i) => (1 / (i + 1)) * (0.5 + rand()));
    const total = raw.reduce((s, x) => s + x, 0);
    const id = String(index).padStart(4, '0');
    const principal =
      kind === 'human'
        ? `arn:aws:iam::${account}:user/human-${id}`
        : kind === 'service'
          ? `arn:aws:sts::${account}:assumed-role/svc-${id}`
          : kind === 'batch'
            ? `arn:aws:sts::${account}:assumed-role/batch-${id}`
            : `arn:aws:sts::${account}:assumed-role/ci-deploy-${id}`;
    return {
      index,
      principal,
      principalType: kind === 'human' ? 'IAMUser' : 'AssumedRole',
      kind,
      accountId: account,
      region,
      userAgent:
        kind === 'human'
          ? rand() < 0.5
            ? 'console.amazonaws.com'
            : 'aws-cli/2.17.0'
          : kind === 'ci'
            ? 'aws-sdk-go-v2/1.30.0 terraform/1.9'
            : 'aws-sdk-java/2.25.0',
      sourceIp: `10.${index >> 8}.${index & 255}.${intBetween(rand, 1, 254)}`,
      ratePerMinute: rate,
      habits,
      habitWeights: raw.map((x) => x / total),
      tzOffsetHours: kind === 'human' || kind === 'ci' ? weightedPick(rand, TIMEZONES) : 0,
      batchStartMinute: kind === 'batch' ? intBetween(rand, 0, 5) * 60 + intBetween(rand, 0, 3) * 15 : 0,
      batchMinutes: kind === 'batch' ? intBetween(rand, 20, 40) : 0,
    };
  });

  profiles.push(...extraServiceRoles(o, profiles.length));

  const benign: BenignBurst[] = [];
  for (const p of profiles) {
    const actions = p.habits.map(actionName);
    for (let day = 0; day < o.days; day++) {
      if (p.kind === 'batch') {
        const s = startMs + day * DAY_MS + p.batchStartMinute * MINUTE_MS;
        benign.push({
          id: `batch-${p.index}-${day}`,
          kind: 'nightly-batch',
          principal: p.principal,
          accountId: p.accountId,
          region: p.region,
          actions,
          startMs: s,
          endMs: s + p.batchMinutes * MINUTE_MS,
          multiplier: 1,
        });
      }
      if (p.kind === 'ci') {
        // Deployments on the team's working days, within its working hours.
        const localDay = new Date(startMs + day * DAY_MS).getUTCDay();
        if (localDay === 0 || localDay === 6) continue;
        const deployments = intBetween(rand, 2, 4);
        const slots = shuffle(
          rand,
          Array.from({ length: 8 }, (_, i) => 9.5 + i),
        ).slice(0, deployments);
        for (const localHour of slots.sort((a, b) => a - b)) {
          const minutes = intBetween(rand, 10, 20);
          const s = startMs + day * DAY_MS + Math.round((localHour - p.tzOffsetHours) * 60 + intBetween(rand, 0, 20)) * MINUTE_MS;
          benign.push({
            id: `deploy-${p.index}-${day}-${localHour}`,
            kind: 'deployment',
            principal: p.principal,
            accountId: p.accountId,
            region: p.region,
            actions,
            startMs: s,
            endMs: s + minutes * MINUTE_MS,
            multiplier: 5 + rand() * 5,
          });
        }
      }
    }
  }
  benign.sort((a, b) => a.startMs - b.startMs);
  return { seed: o.seed, startMs, days: o.days, profiles, benign };
}

/**
 * The worker and busy service roles, after the Zipf population, from their own random stream: the
 * rest of the population (and its benign bursts) is the same with them or without them.
 */
function extraServiceRoles(o: PopulationOptions, firstIndex: number): PrincipalProfile[] {
  const rand = mulberry32(o.seed ^ 0x5eed_0004);
  const tiers: Array<[ServiceTier, number]> = [
    ...Array.from({ length: o.workers ?? 0 }, (): [ServiceTier, number] => ['worker', 0]),
    ...(o.busyRates ?? []).map((rate): [ServiceTier, number] => ['busy', rate]),
  ];
  return tiers.map(([tier, busyRate], i) => {
    const index = firstIndex + i;
    const account = ACCOUNTS[intBetween(rand, 0, ACCOUNTS.length - 1)] as string;
    const region = rand() < 0.75 ? (REGIONS[0] as string) : (REGIONS[1] as string);
    // A busy role calls a single action, so one key carries its whole rate.
    const habitCount = tier === 'busy' ? 1 : intBetween(rand, 1, 2);
    const habits = pickHabits(rand, HABIT_POOLS.service, habitCount);
    const raw = habits.map((_, k) => (1 / (k + 1)) * (0.5 + rand()));
    const total = raw.reduce((s, x) => s + x, 0);
    const rate = tier === 'busy' ? busyRate : WORKER_RATE[0] * (WORKER_RATE[1] / WORKER_RATE[0]) ** rand();
    const id = String(index).padStart(4, '0');
    return {
      index,
      principal: `arn:aws:sts::${account}:assumed-role/svc-${tier}-${id}`,
      principalType: 'AssumedRole',
      kind: 'service' as const,
      accountId: account,
      region,
      userAgent: 'aws-sdk-java/2.25.0',
      sourceIp: `10.${index >> 8}.${index & 255}.${intBetween(rand, 1, 254)}`,
      ratePerMinute: rate,
      habits,
      habitWeights: raw.map((x) => x / total),
      tzOffsetHours: 0,
      batchStartMinute: 0,
      batchMinutes: 0,
      tier,
    };
  });
}

// ── activity over the week ──────────────────────────────────────────────

/** Weekday activity of a human by local hour (0–23). */
const HUMAN_HOURS = [
  0.004, 0.004, 0.004, 0.004, 0.004, 0.004, 0.01, 0.05, 0.35, 1, 1, 1, 0.55, 1, 1, 1, 1, 0.6, 0.25, 0.06, 0.04, 0.03, 0.02, 0.01,
];
const WEEKEND_FACTOR = 0.04;

/** Activity by minute of the UTC week (Monday 00:00 = 0) for a working day `tzOffsetHours` from UTC. */
function weekCurve(tzOffsetHours: number, floor: number): Float64Array {
  const out = new Float64Array(WEEK_MINUTES);
  for (let m = 0; m < WEEK_MINUTES; m++) {
    const local = (((m + tzOffsetHours * 60) % WEEK_MINUTES) + WEEK_MINUTES) % WEEK_MINUTES;
    const day = Math.floor(local / 1_440); // 0 = Monday
    const hour = Math.floor((local % 1_440) / 60);
    const h = HUMAN_HOURS[hour] ?? 0;
    out[m] = floor + (1 - floor) * (day >= 5 ? h * WEEKEND_FACTOR : h);
  }
  return out;
}

// ── the stream ──────────────────────────────────────────────────────────

/** One source of extra calls of an injected anomaly. */
export interface InjectedStream {
  action: ActionDef;
  errorCode: string | null;
  /** Calls per minute `minute` minutes after the anomaly start. */
  ratePerMinute: (minute: number) => number;
}

/** The identity an injection calls as (an existing principal, or a new one). */
export interface InjectedIdentity {
  principal: string;
  principalType: string;
  accountId: string;
  region: string;
  userAgent: string;
  sourceIp: string;
}

/** What the generator needs to know of an injected anomaly (scenarios.ts builds these). */
export interface Injection {
  id: string;
  identity: InjectedIdentity;
  startMs: number;
  minutes: number;
  streams: InjectedStream[];
  /** The principal's own traffic is suppressed over [fromMs, untilMs). */
  silence?: { principal: string; fromMs: number; untilMs: number };
  /**
   * The principal's own calls of `action` (`service:action`) over [fromMs, untilMs) are thinned to
   * the share `keep`: exactly ⌊n·keep⌋ of the first n such calls get through (every 1/keep-th).
   */
  thin?: { principal: string; action: string; fromMs: number; untilMs: number; keep: number };
}

export interface TrafficOptions {
  population: Population;
  injections?: Injection[];
}

/** Knuth for small means, a rounded normal for large ones: fast enough for millions of draws. */
function poisson(rand: () => number, mean: number): number {
  if (mean <= 0) return 0;
  if (mean > 30) {
    const u = Math.max(rand(), 1e-12);
    const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
    return Math.max(0, Math.round(mean + Math.sqrt(mean) * z));
  }
  const limit = Math.exp(-mean);
  let k = 0;
  let p = rand();
  while (p > limit) {
    k++;
    p *= rand();
  }
  return k;
}

export class TrafficGenerator {
  readonly population: Population;
  readonly injections: Injection[];
  /** Events emitted per injection id so far. */
  readonly injectedEvents = new Map<string, number>();
  /** The principal's own calls an injection's silence or thinning took out, per injection id so far. */
  readonly suppressedEvents = new Map<string, number>();
  private readonly curves = new Map<number, Float64Array>();
  private readonly serviceCurve: Float64Array;
  /** Per principal, per day (shifted by one so a negative local day fits): a human's day-to-day variation. */
  private readonly dayFactors: Float64Array[];

  constructor(o: TrafficOptions) {
    this.population = o.population;
    this.injections = [...(o.injections ?? [])].sort((a, b) => a.startMs - b.startMs);
    const rand = mulberry32(o.population.seed ^ 0x5eed_0002);
    for (const p of o.population.profiles) {
      if ((p.kind === 'human' || p.kind === 'ci') && !this.curves.has(p.tzOffsetHours)) {
        this.curves.set(p.tzOffsetHours, weekCurve(p.tzOffsetHours, 0));
      }
    }
    this.serviceCurve = new Float64Array(WEEK_MINUTES);
    for (let m = 0; m < WEEK_MINUTES; m++) this.serviceCurve[m] = serviceActivity(m);
    this.dayFactors = o.population.profiles.map((p) => {
      const f = new Float64Array(o.population.days + 2);
      for (let d = 0; d < f.length; d++) f[d] = p.kind === 'human' ? (rand() < 0.08 ? 0 : 0.6 + 0.8 * rand()) : 1;
      return f;
    });
  }

  get minutes(): number {
    return this.population.days * 1_440;
  }

  /** Every event, in event-time order. */
  *events(): Generator<AuditEvent> {
    for (const minute of this.byMinute()) yield* minute;
  }

  /** The events of each minute, sorted by time (ties in generation order). */
  *byMinute(): Generator<AuditEvent[]> {
    const { profiles, startMs, seed, benign } = this.population;
    const rand = mulberry32(seed);
    let seq = 0;
    const silenced = new Map<string, { id: string; fromMs: number; untilMs: number }>();
    const thinned = new Map<string, { id: string; action: string; fromMs: number; untilMs: number; keep: number; seen: number }>();
    for (const inj of this.injections) {
      if (inj.silence) silenced.set(inj.silence.principal, { ...inj.silence, id: inj.id });
      if (inj.thin) thinned.set(inj.thin.principal, { ...inj.thin, id: inj.id, seen: 0 });
    }
    const suppress = (id: string, n: number): void => {
      this.suppressedEvents.set(id, (this.suppressedEvents.get(id) ?? 0) + n);
    };
    const deployments = benign.filter((b) => b.kind === 'deployment');
    let nextDeployment = 0;
    const activeDeployments = new Map<string, BenignBurst>();
    let nextInjection = 0;
    const activeInjections: Injection[] = [];
    const errorShare = profiles.map((p) => BENIGN_ERROR_SHARE[p.kind]);

    for (let m = 0; m < this.minutes; m++) {
      const t0 = startMs + m * MINUTE_MS;
      const weekMinute = m % WEEK_MINUTES;
      const out: AuditEvent[] = [];
      const emit = (id: InjectedIdentity, action: ActionDef, errorCode: string | null): void => {
        out.push({
          eventId: `q${seed}-${seq++}`,
          eventTimeMs: t0 + Math.floor(rand() * MINUTE_MS),
          source: 'aws.cloudtrail',
          accountId: id.accountId,
          region: id.region,
          principal: id.principal,
          principalType: id.principalType,
          service: action.service,
          action: action.action,
          readOnly: action.readOnly,
          errorCode,
          sourceIp: id.sourceIp,
          userAgent: id.userAgent,
          attributes: {},
        });
      };

      while (nextDeployment < deployments.length && (deployments[nextDeployment] as BenignBurst).startMs <= t0) {
        const d = deployments[nextDeployment++] as BenignBurst;
        activeDeployments.set(d.principal, d);
      }
      for (const [principal, d] of activeDeployments) if (d.endMs <= t0) activeDeployments.delete(principal);

      for (const p of profiles) {
        const quiet = silenced.get(p.principal);
        const muted = quiet !== undefined && t0 >= quiet.fromMs && t0 < quiet.untilMs;
        const thin = thinned.get(p.principal);
        const thinning = thin !== undefined && t0 >= thin.fromMs && t0 < thin.untilMs ? thin : undefined;
        let activity: number;
        if (p.kind === 'service') {
          activity = this.serviceCurve[weekMinute] as number;
        } else if (p.kind === 'batch') {
          const minuteOfDay = m % 1_440;
          activity = minuteOfDay >= p.batchStartMinute && minuteOfDay < p.batchStartMinute + p.batchMinutes ? 1 : 0;
        } else {
          const curve = this.curves.get(p.tzOffsetHours) as Float64Array;
          if (p.kind === 'human') {
            const localDay = Math.floor((m + p.tzOffsetHours * 60) / 1_440) + 1;
            activity = (curve[weekMinute] as number) * ((this.dayFactors[p.index] as Float64Array)[localDay] ?? 1);
          } else {
            // CI: polling around the clock, more in the team's working hours, bursts when deploying.
            activity = 0.3 + 0.7 * (curve[weekMinute] as number);
            const d = activeDeployments.get(p.principal);
            if (d) activity *= d.multiplier;
          }
        }
        if (activity <= 0) continue;
        const n = poisson(rand, p.ratePerMinute * activity);
        if (muted && quiet) {
          // What the principal would have called, for the record; none of it is emitted.
          suppress(quiet.id, n);
          continue;
        }
        for (let i = 0; i < n; i++) {
          let action: ActionDef;
          if (p.kind === 'human' && rand() < HUMAN_EXPLORE_SHARE) {
            action = CATALOGUE[Math.floor(rand() * CATALOGUE.length)] as ActionDef;
          } else {
            let x = rand();
            let k = 0;
            while (k < p.habits.length - 1 && x >= (p.habitWeights[k] as number)) x -= p.habitWeights[k++] as number;
            action = p.habits[k] as ActionDef;
          }
          if (thinning && actionName(action) === thinning.action) {
            thinning.seen++;
            if (Math.floor(thinning.seen * thinning.keep) === Math.floor((thinning.seen - 1) * thinning.keep)) {
              suppress(thinning.id, 1);
              continue;
            }
          }
          const errorCode = rand() < (errorShare[p.index] as number) ? weightedPick(rand, BENIGN_ERRORS) : null;
          emit(p, action, errorCode);
        }
      }

      while (nextInjection < this.injections.length && (this.injections[nextInjection] as Injection).startMs <= t0) {
        activeInjections.push(this.injections[nextInjection++] as Injection);
      }
      for (let i = activeInjections.length - 1; i >= 0; i--) {
        const inj = activeInjections[i] as Injection;
        const k = Math.floor((t0 - inj.startMs) / MINUTE_MS);
        if (k >= inj.minutes) {
          activeInjections.splice(i, 1);
          continue;
        }
        let emitted = 0;
        for (const s of inj.streams) {
          const n = poisson(rand, s.ratePerMinute(k));
          for (let j = 0; j < n; j++) emit(inj.identity, s.action, s.errorCode);
          emitted += n;
        }
        this.injectedEvents.set(inj.id, (this.injectedEvents.get(inj.id) ?? 0) + emitted);
      }

      out.sort((a, b) => a.eventTimeMs - b.eventTimeMs);
      yield out;
    }
  }
}
