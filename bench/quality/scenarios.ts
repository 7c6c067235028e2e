/**
 * Labelled anomalies injected into the quality harness's traffic, each kind a thing a
 * CloudTrail-Insights-style detector should catch. All of them start after the first
 * `injectAfterDays` days (8 by default), so the baselines have a week of history; they are
 * spread over the rest of the run in separate time slots (3 h apart at least) so that one
 * anomaly's Insights cannot be credited to another.
 *
 * The enumeration scenario is made of reads (List*, Describe*), as a real one is: the harness
 * therefore runs with `detector.includeReadOnly: true` (CloudTrail Insights counts writes only).
 */
import { mulberry32 } from '../../src/demo/traffic.ts';
import {
  type ActionDef,
  actionName,
  CATALOGUE,
  DAY_MS,
  ENUMERATION_ACTIONS,
  type InjectedStream,
  type Injection,
  MINUTE_MS,
  type Population,
  type PrincipalProfile,
} from './generator.ts';

export const ANOMALY_KINDS = [
  'compromised-credential',
  'access-denied-storm',
  'slow-ramp',
  'dormant-wakeup',
  'new-principal-enumeration',
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

/** Minimum distance between anomaly starts: the longest (slow ramp, 2 h) plus the 30 min scoring tail and a margin. */
export const SLOT_MS = 3 * 60 * MINUTE_MS;
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

/** The anomalies for a run: `instancesPerKind` of each kind, on distinct principals, in distinct slots. */
export function planScenarios(o: PlanOptions): Scenario[] {
  const { population } = o;
  const perKind = o.instancesPerKind ?? 6;
  const injectAfterDays = o.injectAfterDays ?? 8;
  const rand = mulberry32(o.seed ^ 0x5eed_0003);
  const windowStart = population.startMs + injectAfterDays * DAY_MS;
  const windowEnd = population.startMs + population.days * DAY_MS - END_MARGIN_MS;
  const slots = Math.floor((windowEnd - windowStart) / SLOT_MS);
  const total = perKind * ANOMALY_KINDS.length;
  if (slots < total) {
    throw new Error(
      `${total} anomalies need ${total} slots of ${SLOT_MS / 3_600_000} h after day ${injectAfterDays}, but ${population.days} days leave ${Math.max(0, slots)}: run more days or fewer instances`,
    );
  }
  const slotStarts = shuffled(
    rand,
    Array.from({ length: slots }, (_, i) => windowStart + i * SLOT_MS),
  ).slice(0, total);
  const kinds = shuffled(
    rand,
    ANOMALY_KINDS.flatMap((k) => Array<AnomalyKind>(perKind).fill(k)),
  );

  const used = new Set<string>();
  const pick = (candidates: PrincipalProfile[], r: () => number): PrincipalProfile => {
    const free = candidates.filter((p) => !used.has(p.principal));
    if (free.length === 0) throw new Error('the population is too small for this many anomalies');
    const p = free[Math.floor(r() * free.length)] as PrincipalProfile;
    used.add(p.principal);
    return p;
  };
  const established = population.profiles.filter((p) => (p.kind === 'human' || p.kind === 'service') && p.ratePerMinute >= 0.1);
  const count = new Map<AnomalyKind, number>();
  const makeScenario = (kind: AnomalyKind, id: string, startMs: number, r: () => number): Scenario => {
    switch (kind) {
      case 'compromised-credential':
        return compromisedCredential(id, pick(established, r), startMs, r);
      case 'access-denied-storm':
        return accessDeniedStorm(id, pick(established, r), startMs, r);
      case 'slow-ramp':
        return slowRamp(id, rampCandidate(population.profiles, used, r), startMs);
      case 'dormant-wakeup':
        return dormantWakeup(id, pick(established, r), startMs, r);
      case 'new-principal-enumeration':
        return newPrincipalEnumeration(id, population, startMs, r);
    }
  };

  return kinds.map((kind, i): Scenario => {
    const n = (count.get(kind) ?? 0) + 1;
    count.set(kind, n);
    const id = `${kind}-${n}`;
    // Each instance has its own seed, so instances differ in principal, actions and rates.
    const r = mulberry32(o.seed * 1_000 + i + 1);
    const startMs = (slotStarts[i] as number) + intBetween(r, 0, 30) * MINUTE_MS;
    return makeScenario(kind, id, startMs, r);
  });
}

function scenario(
  id: string,
  kind: AnomalyKind,
  identity: Injection['identity'],
  startMs: number,
  minutes: number,
  streams: InjectedStream[],
  silence?: Injection['silence'],
): Scenario {
  const label: AnomalyLabel = {
    id,
    kind,
    principal: identity.principal,
    accountId: identity.accountId,
    region: identity.region,
    actions: [...new Set(streams.map((s) => actionName(s.action)))],
    startMs,
    endMs: startMs + minutes * MINUTE_MS,
  };
  const injection: Injection = { id, identity, startMs, minutes, streams };
  if (silence) injection.silence = silence;
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

/** A service role whose busiest habit is between 1 and 10 calls a minute (so 8× is visible above the floors), else the busiest free one. */
function rampCandidate(
  profiles: PrincipalProfile[],
  used: Set<string>,
  r: () => number,
): { p: PrincipalProfile; action: ActionDef; rate: number } {
  const options = profiles
    .filter((p) => p.kind === 'service' && !used.has(p.principal))
    .map((p) => ({ p, action: p.habits[0] as ActionDef, rate: p.ratePerMinute * (p.habitWeights[0] ?? 1) }));
  if (options.length === 0) throw new Error('the population is too small for this many anomalies');
  const good = options.filter((o) => o.rate >= 1 && o.rate <= 10);
  const chosen =
    good.length > 0 ? (good[Math.floor(r() * good.length)] as (typeof good)[number]) : options.sort((a, b) => b.rate - a.rate)[0];
  if (!chosen) throw new Error('unreachable');
  used.add(chosen.p.principal);
  return chosen;
}

/** One action's rate rising linearly from 1× to 8× its habit over 2 hours (the extra calls on top of the habit). */
function slowRamp(id: string, c: { p: PrincipalProfile; action: ActionDef; rate: number }, startMs: number): Scenario {
  const minutes = 120;
  const streams = [{ action: c.action, errorCode: null, ratePerMinute: (m: number) => c.rate * 7 * ((m + 1) / minutes) }];
  return scenario(id, 'slow-ramp', c.p, startMs, minutes, streams);
}

/** A principal silent for 7.5 days (until the end of the run, but for this) waking up at 20 calls a minute on its habits, for 15 minutes. */
function dormantWakeup(id: string, p: PrincipalProfile, startMs: number, r: () => number): Scenario {
  const actions = p.habits.slice(0, intBetween(r, 1, 2));
  const streams = actions.map((action) => ({ action, errorCode: null, ratePerMinute: constant(20 / actions.length) }));
  const silence = { principal: p.principal, fromMs: startMs - 7.5 * DAY_MS, untilMs: Number.POSITIVE_INFINITY };
  return scenario(id, 'dormant-wakeup', p, startMs, 15, streams, silence);
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
