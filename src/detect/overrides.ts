import type { DetectorConfig, DetectorOverride, DetectorSuppression } from '../config/schema.ts';
import type { InsightSubject } from '../emit/insight.ts';
import type { JudgeSettings } from './baseline/judge.ts';
import { type Direction, decadesOf, type ValueModel } from './baseline/score.ts';

/**
 * Per-key settings from `detector.overrides` and `detector.suppressions`: each matches keys by
 * globs on their identity. Of the overrides the most specific match (the most fields that are not
 * a bare `*`) wins, the first listed among equals; every matching suppression applies. Resolved
 * once per key (when it is created or restored, or the tuning changes) into one of a few shared
 * `KeySettings` objects, so the hot path reads a field, never a pattern.
 */

export const MATCH_FIELDS = ['scope', 'insightType', 'accountId', 'region', 'service', 'action', 'principal'] as const;
type Field = (typeof MATCH_FIELDS)[number];
type Match = DetectorOverride['match'];

/** What can change while the detector runs (`run --watch`): the per-key settings and what sets them. */
export type Tuning = Pick<
  DetectorConfig,
  'scoreThreshold' | 'minEventsPerBucket' | 'minRatio' | 'burstMargin' | 'minHistoryMs' | 'direction' | 'overrides' | 'suppressions'
>;
export const TUNING_FIELDS = [
  'scoreThreshold',
  'minEventsPerBucket',
  'minRatio',
  'burstMargin',
  'minHistoryMs',
  'direction',
  'overrides',
  'suppressions',
] as const satisfies ReadonlyArray<keyof Tuning>;

/** One key's resolved settings: shared by every key with the same override and suppressions. */
export interface KeySettings {
  scoreThreshold: number;
  /** Surprise (decades) of scoreThreshold. */
  thresholdDecades: number;
  minEventsPerBucket: number;
  minRatio: number;
  burstMargin: number;
  minHistoryMs: number;
  direction: Direction;
  /** false: never judged, never reported. */
  enabled: boolean;
  /** Index of the override that applies in detector.overrides, −1 for none. */
  override: number;
  /** Indexes of the suppressions that match in detector.suppressions. */
  suppressions: readonly number[];
  /** An Insight starting in a bucket before this time (event time, ms) is suppressed; −∞ when none applies. */
  suppressedUntilMs: number;
  /** What the judge reads, by value model. */
  judge: Record<ValueModel, JudgeSettings>;
}

/** A match's globs, compiled: one whole-string test per field that is not a bare `*`. */
export interface CompiledMatch<F extends string> {
  tests: Array<[F, RegExp]>;
  /** How many fields it names (not counting bare `*`): the more, the more specific. */
  specificity: number;
}
type Compiled = CompiledMatch<Field>;

/** A glob as a whole-string regular expression: `*` any run of characters, `?` one, everything else literal. */
export function globToRegExp(glob: string): RegExp {
  let out = '';
  for (const ch of glob) {
    if (ch === '*') out += '.*';
    else if (ch === '?') out += '.';
    else out += ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return new RegExp(`^${out}$`, 's');
}

/** `match`'s globs on `fields`; shared by detector and findings overrides and suppressions. */
export function compileMatch<F extends string>(match: Partial<Record<F, string>>, fields: readonly F[]): CompiledMatch<F> {
  const tests: Array<[F, RegExp]> = [];
  for (const field of fields) {
    const glob = match[field];
    if (glob !== undefined && glob !== '*') tests.push([field, globToRegExp(glob)]);
  }
  return { tests, specificity: tests.length };
}

/** Whether every glob matches its field; a field with several values (an id and a name) matches when any does. */
export function matchesSubject<F extends string>(
  c: CompiledMatch<F>,
  subject: Readonly<Record<F, string | readonly string[] | null | undefined>>,
): boolean {
  return c.tests.every(([field, re]) => {
    const v = subject[field];
    return typeof v === 'string' || v === null || v === undefined ? re.test(v ?? '') : v.some((x) => re.test(x));
  });
}

/** Index of the most specific match (the first listed among equals), or −1. */
export function mostSpecific<F extends string>(
  compiled: readonly CompiledMatch<F>[],
  subject: Readonly<Record<F, string | readonly string[] | null | undefined>>,
): number {
  let best = -1;
  let bestSpecificity = -1;
  compiled.forEach((c, i) => {
    if (c.specificity > bestSpecificity && matchesSubject(c, subject)) {
      best = i;
      bestSpecificity = c.specificity;
    }
  });
  return best;
}

function compile(match: Match): Compiled {
  return compileMatch(match, MATCH_FIELDS);
}

function matches(c: Compiled, subject: InsightSubject): boolean {
  return matchesSubject(c, subject);
}

export class Overrides {
  readonly tuning: Tuning;
  private readonly overrides: Compiled[];
  private readonly suppressions: Compiled[];
  private readonly expiresMs: number[];
  /** The resolved settings, by override index and matching suppressions: a handful of objects. */
  private readonly table = new Map<string, KeySettings>();

  constructor(tuning: Tuning) {
    this.tuning = tuning;
    this.overrides = tuning.overrides.map((o) => compile(o.match));
    this.suppressions = tuning.suppressions.map((s) => compile(s.match));
    this.expiresMs = tuning.suppressions.map((s) => Date.parse(s.expires));
  }

  get empty(): boolean {
    return this.overrides.length === 0 && this.suppressions.length === 0;
  }

  /** Index of the most specific override matching the key, or −1. */
  matchIndex(subject: InsightSubject): number {
    return mostSpecific(this.overrides, subject);
  }

  /** The most specific override matching the key, or null. */
  match(subject: InsightSubject): DetectorOverride | null {
    return this.tuning.overrides[this.matchIndex(subject)] ?? null;
  }

  /** Indexes of every suppression matching the key (expired or not). */
  suppressionsOf(subject: InsightSubject): number[] {
    const out: number[] = [];
    this.suppressions.forEach((c, i) => {
      if (matches(c, subject)) out.push(i);
    });
    return out;
  }

  directionOf(subject: InsightSubject): Direction {
    return this.resolve(subject).direction;
  }

  /** The key's settings: one shared object per distinct override and set of suppressions. */
  resolve(subject: InsightSubject): KeySettings {
    const o = this.overrides.length === 0 ? -1 : this.matchIndex(subject);
    const sup = this.suppressions.length === 0 ? [] : this.suppressionsOf(subject);
    const id = sup.length === 0 ? `${o}` : `${o}|${sup.join(',')}`;
    let s = this.table.get(id);
    if (s === undefined) {
      s = this.build(o, sup);
      this.table.set(id, s);
    }
    return s;
  }

  private build(o: number, sup: number[]): KeySettings {
    const t = this.tuning;
    const over: Partial<DetectorOverride> = t.overrides[o] ?? {};
    const scoreThreshold = over.scoreThreshold ?? t.scoreThreshold;
    const base = {
      direction: over.direction ?? t.direction,
      thresholdDecades: decadesOf(scoreThreshold),
      minEventsPerBucket: over.minEventsPerBucket ?? t.minEventsPerBucket,
      minRatio: over.minRatio ?? t.minRatio,
      burstMargin: over.burstMargin ?? t.burstMargin,
    };
    return {
      ...base,
      scoreThreshold,
      minHistoryMs: over.minHistoryMs ?? t.minHistoryMs,
      enabled: over.enabled ?? true,
      override: o,
      suppressions: sup,
      suppressedUntilMs: sup.reduce((max, i) => Math.max(max, this.expiresMs[i] as number), Number.NEGATIVE_INFINITY),
      judge: { counts: { model: 'counts', ...base }, gauge: { model: 'gauge', ...base } },
    };
  }
}

/** Whether two tunings could place a key differently in the engine's per-bucket sets (direction, on/off). */
export function placementChanged(a: Tuning, b: Tuning): boolean {
  const of = (t: Tuning) => JSON.stringify([t.direction, t.overrides.map((o) => [o.match, o.direction, o.enabled])]);
  return of(a) !== of(b);
}

export type { DetectorSuppression };
