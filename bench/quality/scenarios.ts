/**
 * Labelled anomalies injected into the quality harness's traffic, each kind a thing a
 * CloudTrail-Insights-style detector should catch: rises (spikes, a sustained step, a ramp), new
 * behaviour, and drops (a habit falling to a tenth, a service role going silent). All of them start
 * after the first `injectAfterDays` days (8 by default), so the baselines have a week of history;
 * they are spread over the rest of the run in separate time slots (3 h for the 1.5–2 h anomalies,
 * 1.5 h for the ≤ 20 min ones) so that one anomaly's Insights cannot be credited to another, each
 * on a principal no other anomaly uses.
 *
 * The enumeration scenario is made of reads (List*, Describe*), as a real one is: the harness
 * therefore runs with `detector.includeReadOnly: true` (CloudTrail Insights counts writes only).
 * Drops are only visible on keys watched downwards: the harness watches service roles both ways.
 */
import { mulberry32 } from '../../src/demo/traffic.ts';
import {
  type ActionDef,
  actionName,
  busiestHabit,
  CATALOGUE,
  DAY_MS,
  ENUMERATION_ACTIONS,
  habitRates,
  type InjectedStream,
  type Injection,
  MINUTE_MS,
  type Population,
  type PrincipalProfile,
  serviceActivity,
} from './generator.ts';

export const ANOMALY_KINDS = [
  'compromised-credential',
  'access-denied-storm',
  'slow-ramp',
  'dormant-wakeup',
  'new-principal-enumeration',
  'sustained-shift',
  'drop',
  'service-silent',
  'busy-spike',
  'sparse-spike',
] as const;

export type AnomalyKind = (typeof ANOMALY_KINDS)[number];

/** What the scorer knows about an injected anomaly. */
export interface AnomalyLabel {
  id: string;
  kind: AnomalyKind;
  principal: string;
  accountId: string;
  region: string;
  /** `service:action` of every action the anomaly calls. */
  actions: string[];
  startMs: number;
  endMs: number;
  /**
   * Kinds that act on one habit of the principal (slow-ramp, sustained-shift, drop, busy-spike,
   * sparse-spike): that habit's rate at full activity, calls per minute, before the anomaly.
   */
  habitPerMinute?: number;
}

export interface Scenario {
  label: AnomalyLabel;
  injection: Injection;
}

export interface PlanOptions {
  population: Population;
  seed: number;
  /** Instances of each kind, each with its own seed (default 6). */
  instancesPerKind?: number;
  /** No anomaly before this many days of event time (default 8). */
  injectAfterDays?: number;
}

/**
 * The time an anomaly has to itself: up to 30 min of random offset, the anomaly, and the 30 min
 * scoring tail. 3 h for the kinds that last 1.5–2 h (slow ramp, sustained shift, drop, silence),
 * 1.5 h for the others (≤ 20 min).
 */
export const SLOT_MS = 3 * 60 * MINUTE_MS;
export const SHORT_SLOT_MS = 90 * MINUTE_MS;
const LONG_KINDS: ReadonlySet<AnomalyKind> = new Set(['slow-ramp', 'sustained-shift', 'drop', 'service-silent']);

export function slotMsOf(kind: AnomalyKind): number {
  return LONG_KINDS.has(kind) ? SLOT_MS : SHORT_SLOT_MS;
}
/** Room left at the end of the run so the last anomaly is judged and has its tail. */
const END_MARGIN_MS = 6 * 60 * MINUTE_MS;

function intBetween(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

function shuffled<T>(rand: () => number, xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

const constant =
  (rate: number): InjectedStream['ratePerMinute'] =>
  () =>
    rate;

/** Habit-rate bounds of the principals each kind takes (calls per minute at full activity). */
export const CANDIDATE_RATES = {
  /** A service role's busiest habit, for a 3× step. */
  sustainedShift: 2,
  /** A service role's busiest habit, for a fall to 0–10%. */
  drop: 3,
  /** A service role's busiest habit, for two hours of silence: enough calls missing within 15 buckets to tell. */
  serviceSilent: 1,
  /** A service role's busiest habit, for an 8× ramp (as before the drop kinds existed). */
  slowRamp: [1, 10] as const,
  /**
   * One habit of a service role, for a 1–2 calls/min burst (25–80× its rate). At most 0.04, so the
   * busiest busy role (400 calls/min) is 10⁴ times the sparsest spiked key at least.
   */
  sparseSpike: [0.025, 0.04] as const,
};

/** The order principals are handed out in: the kinds that need scarce principals first. */
const PICK_ORDER: readonly AnomalyKind[] = [
  'busy-spike',
  'drop',
  'sustained-shift',
  'service-silent',
  'slow-ramp',
  'sparse-spike',
  'compromised-credential',
  'access-denied-storm',
  'dormant-wakeup',
  'new-principal-enumeration',
];

/** A principal an anomaly is planted on, and the habit it acts on (for the kinds that act on one). */
interface Target {
  p: PrincipalProfile;
  habit?: { action: ActionDef; ratePerMinute: number };
}

/**
 * The anomalies for a run: `instancesPerKind` of each kind (busy-spike: as many as the population
 * has busy roles, if fewer), on distinct principals, in distinct slots.
 */
export function planScenarios(o: PlanOptions): Scenario[] {
  const { population } = o;
  const perKind = o.instancesPerKind ?? 6;
  const injectAfterDays = o.injectAfterDays ?? 8;
  const rand = mulberry32(o.seed ^ 0x5eed_0003);
  const windowStart = population.startMs + injectAfterDays * DAY_MS;
  const windowEnd = population.startMs + population.days * DAY_MS - END_MARGIN_MS;
  // The anomalies in a random order, each in its slot, with the time left over spread between them at random.
  // One busy-spike per busy role at most: a busy role is millions of events.
  const busyRoles = population.profiles.filter((p) => p.tier === 'busy').length;
  const kinds = shuffled(
    rand,
    ANOMALY_KINDS.flatMap((k) => Array<AnomalyKind>(k === 'busy-spike' ? Math.min(perKind, busyRoles) : perKind).fill(k)),
  );
  const total = kinds.length;
  const needed = kinds.reduce((sum, k) => sum + slotMsOf(k), 0);
  const spare = windowEnd - windowStart - needed;
  if (spare < 0) {
    const h = (ms: number): string => `${+(ms / 3_600_000).toFixed(1)} h`;
    throw new Error(
      `${total} anomalies need ${h(needed)} after day ${injectAfterDays} (${h(SLOT_MS)} for each long one, ${h(SHORT_SLOT_MS)} for each short one), but ${population.days} days leave ${h(Math.max(0, windowEnd - windowStart))}: run more days or fewer instances`,
    );
  }
  const weights = Array.from({ length: total + 1 }, () => rand());
  const weightSum = weights.reduce((a, b) => a + b, 0);
  const slotStarts: number[] = [];
  let at = windowStart;
  kinds.forEach((k, i) => {
    at += Math.floor((spare * (weights[i] as number)) / weightSum / MINUTE_MS) * MINUTE_MS;
    slotStarts.push(at);
    at += slotMsOf(k);
  });
  // Each instance has its own seed, so instances differ in principal, actions and rates.
  const rngs = kinds.map((_, i) => mulberry32(o.seed * 1_000 + i + 1));
  const starts = kinds.map((_, i) => (slotStarts[i] as number) + intBetween(rngs[i] as () => number, 0, 30) * MINUTE_MS);

  // Principals first, the scarce kinds before the others, so that a kind needing a busy habit
  // does not find it taken by one that could have used anybody.
  const pickers = principalPickers(population);
  const targets = new Map<number, Target | null>();
  for (const kind of PICK_ORDER) {
    kinds.forEach((k, i) => {
      if (k === kind) targets.set(i, pickers[kind](rngs[i] as () => number));
    });
  }

  const count = new Map<AnomalyKind, number>();
  return kinds.map((kind, i): Scenario => {
    const n = (count.get(kind) ?? 0) + 1;
    count.set(kind, n);
    return build(kind, `${kind}-${n}`, targets.get(i) ?? null, starts[i] as number, rngs[i] as () => number, population);
  });
}

/** One anomaly of `kind` on its target (none for the new principal), from `startMs`. */
function build(kind: AnomalyKind, id: string, t: Target | null, startMs: number, r: () => number, population: Population): Scenario {
  const need = (): Target => {
    if (!t) throw new Error(`unreachable: no principal for ${id}`);
    return t;
  };
  const runMinute = Math.round((startMs - population.startMs) / MINUTE_MS);
  switch (kind) {
    case 'compromised-credential':
      return compromisedCredential(id, need().p, startMs, r);
    case 'access-denied-storm':
      return accessDeniedStorm(id, need().p, startMs, r);
    case 'slow-ramp':
      return slowRamp(id, need(), startMs);
    case 'dormant-wakeup':
      return dormantWakeup(id, need().p, startMs, r);
    case 'new-principal-enumeration':
      return newPrincipalEnumeration(id, population, startMs, r);
    case 'sustained-shift':
      return sustainedShift(id, need(), startMs, runMinute);
    case 'drop':
      return drop(id, need(), startMs, r);
    case 'service-silent':
      return serviceSilent(id, need().p, startMs);
    case 'busy-spike':
      return busySpike(id, need(), startMs, runMinute);
    case 'sparse-spike':
      return sparseSpike(id, need(), startMs, r);
  }
}

/** For each kind, how an instance picks its principal (and habit) among those still free. */
function principalPickers(population: Population): Record<AnomalyKind, (r: () => number) => Target | null> {
  const used = new Set<string>();
  const take = (t: Target): Target => {
    used.add(t.p.principal);
    return t;
  };
  const free = (ps: PrincipalProfile[]): PrincipalProfile[] => ps.filter((p) => !used.has(p.principal));
  const tooSmall = (): never => {
    throw new Error('the population is too small for this many anomalies');
  };
  // The Zipf population's established principals, and its service roles with the workers (not the busy roles).
  const established = population.profiles.filter(
    (p) => p.tier === undefined && (p.kind === 'human' || p.kind === 'service') && p.ratePerMinute >= 0.1,
  );
  const services = population.profiles.filter((p) => p.kind === 'service' && p.tier !== 'busy');
  const busy = population.profiles.filter((p) => p.tier === 'busy').sort((a, b) => b.ratePerMinute - a.ratePerMinute);
  const anyOf = (ps: PrincipalProfile[], r: () => number): Target => {
    const options = free(ps);
    if (options.length === 0) tooSmall();
    return take({ p: options[Math.floor(r() * options.length)] as PrincipalProfile });
  };
  /** A service role whose busiest habit is within [lo, hi] when there is one free, else the busiest free one. */
  const busiest = (lo: number, hi: number, r: () => number): Target => {
    const options = free(services).map((p) => {
      const h = busiestHabit(p);
      return { p, habit: { action: h.action, ratePerMinute: h.ratePerMinute } };
    });
    if (options.length === 0) tooSmall();
    const good = options.filter((x) => x.habit.ratePerMinute >= lo && x.habit.ratePerMinute <= hi);
    const chosen =
      good.length > 0
        ? good[Math.floor(r() * good.length)]
        : options.sort((a, b) => b.habit.ratePerMinute - a.habit.ratePerMinute || a.p.index - b.p.index)[0];
    return take(chosen as Target);
  };
  const c = CANDIDATE_RATES;
  return {
    'compromised-credential': (r) => anyOf(established, r),
    'access-denied-storm': (r) => anyOf(established, r),
    'dormant-wakeup': (r) => anyOf(established, r),
    'new-principal-enumeration': () => null,
    'slow-ramp': (r) => busiest(c.slowRamp[0], c.slowRamp[1], r),
    'sustained-shift': (r) => busiest(c.sustainedShift, Number.POSITIVE_INFINITY, r),
    drop: (r) => busiest(c.drop, Number.POSITIVE_INFINITY, r),
    'service-silent': (r) => busiest(c.serviceSilent, Number.POSITIVE_INFINITY, r),
    'busy-spike': () => {
      const p = free(busy)[0];
      if (!p) throw new Error('unreachable: busy-spike has one instance per busy role at most');
      const h = busiestHabit(p);
      return take({ p, habit: { action: h.action, ratePerMinute: h.ratePerMinute } });
    },
    'sparse-spike': (r) => {
      const [lo, hi] = c.sparseSpike;
      const options = free(services).flatMap((p) =>
        habitRates(p).map((rate, k) => ({ p, habit: { action: p.habits[k] as ActionDef, ratePerMinute: rate } })),
      );
      if (options.length === 0) tooSmall();
      const good = options.filter((x) => x.habit.ratePerMinute >= lo && x.habit.ratePerMinute <= hi);
      // Else the busiest habit at or under the upper bound, else the sparsest there is.
      const under = options.filter((x) => x.habit.ratePerMinute <= hi).sort((a, b) => b.habit.ratePerMinute - a.habit.ratePerMinute);
      const chosen =
        good.length > 0
          ? good[Math.floor(r() * good.length)]
          : (under[0] ?? options.sort((a, b) => a.habit.ratePerMinute - b.habit.ratePerMinute)[0]);
      return take(chosen as Target);
    },
  };
}

function scenario(
  id: string,
  kind: AnomalyKind,
  identity: Injection['identity'],
  startMs: number,
  minutes: number,
  streams: InjectedStream[],
  extra: Pick<Injection, 'silence' | 'thin'> & { actions?: string[]; habitPerMinute?: number } = {},
): Scenario {
  const label: AnomalyLabel = {
    id,
    kind,
    principal: identity.principal,
    accountId: identity.accountId,
    region: identity.region,
    actions: extra.actions ?? [...new Set(streams.map((s) => actionName(s.action)))],
    startMs,
    endMs: startMs + minutes * MINUTE_MS,
  };
  if (extra.habitPerMinute !== undefined) label.habitPerMinute = extra.habitPerMinute;
  const injection: Injection = { id, identity, startMs, minutes, streams };
  if (extra.silence) injection.silence = extra.silence;
  if (extra.thin) injection.thin = extra.thin;
  return { label, injection };
}

/** A stolen key used by someone else: 15 actions the principal never called, 3–10 calls a minute each, for 20 minutes. */
function compromisedCredential(id: string, p: PrincipalProfile, startMs: number, r: () => number): Scenario {
  const habits = new Set(p.habits.map(actionName));
  const fresh = shuffled(
    r,
    CATALOGUE.filter((a) => !habits.has(actionName(a))),
  ).slice(0, 15);
  const streams = fresh.map((action) => ({ action, errorCode: null, ratePerMinute: constant(3 + r() * 7) }));
  return scenario(
    id,
    'compromised-credential',
    { ...p, userAgent: 'python-requests/2.31.0', sourceIp: '203.0.113.66' },
    startMs,
    20,
    streams,
  );
}

/** One principal hammering what it may not do: 30–45 AccessDenied a minute over 1–3 actions, for 10 minutes. */
function accessDeniedStorm(id: string, p: PrincipalProfile, startMs: number, r: () => number): Scenario {
  const total = 30 + r() * 15;
  const actions = shuffled(r, CATALOGUE).slice(0, intBetween(r, 1, 3));
  const streams = actions.map((action) => ({ action, errorCode: 'AccessDenied', ratePerMinute: constant(total / actions.length) }));
  return scenario(id, 'access-denied-storm', p, startMs, 10, streams);
}

/** One action's rate rising linearly from 1× to 8× its habit over 2 hours (the extra calls on top of the habit). */
function slowRamp(id: string, t: Target, startMs: number): Scenario {
  const habit = t.habit as NonNullable<Target['habit']>;
  const minutes = 120;
  const streams = [{ action: habit.action, errorCode: null, ratePerMinute: (m: number) => habit.ratePerMinute * 7 * ((m + 1) / minutes) }];
  return scenario(id, 'slow-ramp', t.p, startMs, minutes, streams, { habitPerMinute: habit.ratePerMinute });
}

/** A principal silent for 7.5 days (until the end of the run, but for this) waking up at 20 calls a minute on its habits, for 15 minutes. */
function dormantWakeup(id: string, p: PrincipalProfile, startMs: number, r: () => number): Scenario {
  const actions = p.habits.slice(0, intBetween(r, 1, 2));
  const streams = actions.map((action) => ({ action, errorCode: null, ratePerMinute: constant(20 / actions.length) }));
  const silence = { principal: p.principal, fromMs: startMs - 7.5 * DAY_MS, untilMs: Number.POSITIVE_INFINITY };
  return scenario(id, 'dormant-wakeup', p, startMs, 15, streams, { silence });
}

/** A principal never seen before listing and describing: 6–10 read actions, 20–40 calls a minute in all, for 15 minutes. */
function newPrincipalEnumeration(id: string, population: Population, startMs: number, r: () => number): Scenario {
  const template = population.profiles[Math.floor(r() * population.profiles.length)] as PrincipalProfile;
  const identity = {
    principal: `arn:aws:iam::${template.accountId}:user/recon-${id}`,
    principalType: 'IAMUser',
    accountId: template.accountId,
    region: template.region,
    userAgent: 'aws-cli/2.17.0',
    sourceIp: '198.51.100.23',
  };
  const actions = shuffled(r, ENUMERATION_ACTIONS).slice(0, intBetween(r, 6, 10));
  const total = 20 + r() * 20;
  const streams = actions.map((action) => ({ action, errorCode: null, ratePerMinute: constant(total / actions.length) }));
  return scenario(id, 'new-principal-enumeration', identity, startMs, 15, streams);
}

/** A service role's busiest habit (≥ 2 calls a minute) stepping to 3× its rate, daily swing included, for 2 hours. */
function sustainedShift(id: string, t: Target, startMs: number, runMinute: number): Scenario {
  return habitAtMultiple(id, 'sustained-shift', t, startMs, runMinute, 3, 120);
}

/** The target's habit at `times` its rate (the habit's own calls go on: `times − 1` more are added), daily swing included. */
function habitAtMultiple(
  id: string,
  kind: AnomalyKind,
  t: Target,
  startMs: number,
  runMinute: number,
  times: number,
  minutes: number,
): Scenario {
  const habit = t.habit as NonNullable<Target['habit']>;
  const streams = [
    {
      action: habit.action,
      errorCode: null,
      ratePerMinute: (m: number) => (times - 1) * habit.ratePerMinute * serviceActivity(runMinute + m),
    },
  ];
  return scenario(id, kind, t.p, startMs, minutes, streams, { habitPerMinute: habit.ratePerMinute });
}

/** A service role's busiest habit (≥ 3 calls a minute) falling to 0–10% of its rate for 90 minutes: its calls thinned, nothing added. */
function drop(id: string, t: Target, startMs: number, r: () => number): Scenario {
  const habit = t.habit as NonNullable<Target['habit']>;
  const minutes = 90;
  const action = actionName(habit.action);
  const thin = { principal: t.p.principal, action, fromMs: startMs, untilMs: startMs + minutes * MINUTE_MS, keep: 0.1 * r() };
  return scenario(id, 'drop', t.p, startMs, minutes, [], { thin, actions: [action], habitPerMinute: habit.ratePerMinute });
}

/** A service role (busiest habit ≥ 1 call a minute) making no call at all for 2 hours: it stopped, or its logging did. */
function serviceSilent(id: string, p: PrincipalProfile, startMs: number): Scenario {
  const minutes = 120;
  const silence = { principal: p.principal, fromMs: startMs, untilMs: startMs + minutes * MINUTE_MS };
  return scenario(id, 'service-silent', p, startMs, minutes, [], { silence, actions: p.habits.map(actionName) });
}

/** A busy service role's single action (by default 400, 80 and 20 calls a minute) at 4× its rate, daily swing included, for 10 minutes. */
function busySpike(id: string, t: Target, startMs: number, runMinute: number): Scenario {
  return habitAtMultiple(id, 'busy-spike', t, startMs, runMinute, 4, 10);
}

/** A sparse habit of a service role (0.025–0.04 calls a minute) called 1–2 times a minute for 10 minutes. */
function sparseSpike(id: string, t: Target, startMs: number, r: () => number): Scenario {
  const habit = t.habit as NonNullable<Target['habit']>;
  const streams = [{ action: habit.action, errorCode: null, ratePerMinute: constant(1 + r()) }];
  return scenario(id, 'sparse-spike', t.p, startMs, 10, streams, { habitPerMinute: habit.ratePerMinute });
}
