import { ErrorCodes, TrailwatchError } from '../../errors.ts';
import { type CloudTrailRecord, resolvePath } from './sigma/values.ts';
import type { SigmaHeader, SigmaLevel, SigmaRule } from './sigma.ts';

/**
 * Sigma correlation rules evaluated in event time on a stream: pure state, no Kafka. Every
 * correlation keeps, per group (its `group-by` values), the matching events of the last `timespan`
 * sorted by event time, so events arriving out of order count where they belong.
 *
 * When a hit fires:
 * - gt/gte conditions and the temporal types fire from `observe` as soon as some window of
 *   `timespan` holding the new event satisfies them. Windows start at an event and span
 *   `timespan`, both ends inclusive.
 * - lt/lte/eq (and ranges with an upper bound) can only be decided once no more events can join
 *   the window, so they fire from `advance`: the window starts at the group's first event and is
 *   judged when the watermark passes its end; the next window starts at the next event after it.
 *
 * Re-firing: a hit consumes its window. The group's events up to the window's last event are
 * dropped, and later arrivals at or before that time are ignored for the group, so the next hit
 * needs a fresh set of events (5 failures fire once; the 10th fires again, not the 6th to 9th).
 *
 * Bounds: events older than the watermark minus the correlation's timespan are dropped by
 * `advance` and ignored by `observe`. A group keeps at most `maxEventsPerGroup` events (oldest
 * dropped first), a correlation at most `maxGroupsPerCorrelation` groups (least recently touched
 * dropped first); both are counted in `counters`. A record whose group-by field is absent or null
 * does not count, as in a SIEM's `stats … by`.
 *
 * Chaining: a correlation may refer to another. The record that completes the inner hit then
 * counts as a match of the inner rule for the outer one, at the record's event time. Only
 * correlations not referred to by others report hits, unless a referrer says `generate: true`.
 */

export type CorrelationType = 'event_count' | 'value_count' | 'temporal' | 'temporal_ordered';

export interface CorrelationCondition {
  gt?: number;
  gte?: number;
  lt?: number;
  lte?: number;
  eq?: number;
}

export interface CorrelationRule extends SigmaHeader {
  name: string | null;
  type: CorrelationType;
  /** Referenced rule ids (single-event rules or other correlations), names already resolved. */
  rules: string[];
  /** Dotted record paths, or alias names from `aliases`. */
  groupBy: string[];
  /** Alias (a group-by name) → referenced rule id → the record path it stands for in that rule's events. */
  aliases: Record<string, Record<string, string>>;
  timespanMs: number;
  /** Null for the temporal types without one: every referenced rule must be seen. */
  condition: CorrelationCondition | null;
  /** value_count: the dotted path whose distinct values are counted. */
  field: string | null;
  generate: boolean;
}

export interface CorrelationHit {
  ruleId: string;
  title: string;
  level: SigmaLevel | null;
  type: CorrelationType;
  /** Group-by name → the value the window's events share. */
  group: Record<string, unknown>;
  /** Event times of the first and last event of the window. */
  windowStartMs: number;
  windowEndMs: number;
  /** Events (event_count), distinct values (value_count) or distinct rules seen (temporal types). */
  count: number;
  /** value_count: the distinct values; temporal types: the rule ids seen. Bounded like `eventIds`. */
  values: string[];
  /** `eventID` of the window's events in event-time order, the first `maxEvidence`. */
  eventIds: string[];
}

export interface CorrelationLimits {
  maxEventsPerGroup: number;
  maxGroupsPerCorrelation: number;
  maxEvidence: number;
  /** Record path of the event id given as evidence. */
  eventIdPath: string;
}

export const CORRELATION_DEFAULTS = {
  maxEventsPerGroup: 1_000,
  maxGroupsPerCorrelation: 10_000,
  maxEvidence: 20,
  eventIdPath: 'eventID',
} satisfies CorrelationLimits;

export interface CorrelationCounters {
  /** Matches older than the watermark minus the timespan, or inside a window already consumed. */
  late: number;
  evictedEvents: number;
  evictedGroups: number;
}

/** Whether a correlation's condition has an upper bound, so it is judged when its window closes. */
export function decidedAtWindowClose(rule: CorrelationRule): boolean {
  const c = rule.condition;
  return c !== null && (c.lt !== undefined || c.lte !== undefined || c.eq !== undefined);
}

interface Entry {
  t: number;
  /** Arrival order, so equal event times keep a stable order. */
  seq: number;
  id: string | null;
  /** value_count: the field's values; temporal types: the rule ids matched; event_count: none. */
  values: string[];
}

interface Group {
  values: unknown[];
  entries: Entry[];
  /** Event time up to which the group's events have been consumed by a hit or a closed window. */
  consumedThroughMs: number;
}

interface Compiled {
  rule: CorrelationRule;
  low: number;
  high: number;
  atClose: boolean;
  /** Referenced by a later correlation: its hits become matches of its id. */
  feeds: boolean;
  reported: boolean;
  groups: Map<string, Group>;
}

interface Window {
  entries: Entry[];
  count: number;
  values: string[];
}

function bounds(rule: CorrelationRule): { low: number; high: number } {
  const c = rule.condition;
  if (c === null) return { low: rule.rules.length, high: Number.POSITIVE_INFINITY };
  if (c.eq !== undefined) return { low: c.eq, high: c.eq };
  const low = c.gt !== undefined ? c.gt + 1 : (c.gte ?? 0);
  const high = c.lt !== undefined ? c.lt - 1 : (c.lte ?? Number.POSITIVE_INFINITY);
  return { low, high };
}

function scalars(record: CloudTrailRecord, path: string): unknown[] {
  return resolvePath(record, path.split('.')).values.filter((v) => v !== null && v !== undefined && typeof v !== 'object');
}

/** Index of the first entry sorting after (t, seq). */
function upperIndex(entries: readonly Entry[], t: number, seq: number): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const e = entries[mid] as Entry;
    if (e.t < t || (e.t === t && e.seq <= seq)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function corrupt(what: string): never {
  throw new TrailwatchError(ErrorCodes.STATE_CORRUPT, `correlation state: ${what}`, { fault: 'internal' });
}

const SNAPSHOT_VERSION = 1;

interface GroupSnapshot {
  key: string;
  values: unknown[];
  consumedThroughMs: number | null;
  entries: [number, number, string | null, string[]][];
}

interface EngineSnapshot {
  version: number;
  watermarkMs: number | null;
  seq: number;
  correlations: { id: string; groups: GroupSnapshot[] }[];
}

export class CorrelationEngine {
  readonly counters: CorrelationCounters = { late: 0, evictedEvents: 0, evictedGroups: 0 };
  readonly #limits: CorrelationLimits;
  /** In dependency order: a correlation comes after those it refers to. */
  readonly #order: Compiled[];
  readonly #base: SigmaRule[];
  #watermarkMs = Number.NEGATIVE_INFINITY;
  #seq = 0;

  constructor(rules: readonly CorrelationRule[], baseRules: readonly SigmaRule[], limits: Partial<CorrelationLimits> = {}) {
    this.#limits = { ...CORRELATION_DEFAULTS, ...limits };
    const baseIds = new Set(baseRules.map((r) => r.id));
    const byId = new Map(rules.map((r) => [r.id, r]));
    const referenced = new Set(rules.flatMap((r) => r.rules));
    const generated = new Set(rules.filter((r) => r.generate).flatMap((r) => r.rules));
    const order: Compiled[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (r: CorrelationRule): void => {
      if (state.get(r.id) === 'done') return;
      if (state.get(r.id) === 'open') throw this.#invalid(r, 'is part of a reference cycle');
      state.set(r.id, 'open');
      for (const ref of r.rules) {
        const inner = byId.get(ref);
        if (inner !== undefined) visit(inner);
        else if (!baseIds.has(ref)) throw this.#invalid(r, `refers to rule '${ref}', which is not loaded`);
      }
      state.set(r.id, 'done');
      order.push({
        rule: r,
        ...bounds(r),
        atClose: decidedAtWindowClose(r),
        feeds: referenced.has(r.id),
        reported: !referenced.has(r.id) || generated.has(r.id),
        groups: new Map(),
      });
    };
    for (const r of rules) visit(r);
    this.#order = order;
    this.#base = baseRules.filter((r) => referenced.has(r.id));
  }

  #invalid(rule: CorrelationRule, what: string): TrailwatchError {
    return new TrailwatchError(ErrorCodes.RULE_INVALID, `${rule.source}:${rule.line}: correlation '${rule.title}' ${what}`, {
      fault: 'user',
      details: { source: rule.source, line: rule.line },
    });
  }

  get watermarkMs(): number {
    return this.#watermarkMs;
  }

  /** Events held across every correlation and group. */
  get stateSize(): number {
    let n = 0;
    for (const c of this.#order) for (const g of c.groups.values()) n += g.entries.length;
    return n;
  }

  observe(record: CloudTrailRecord, eventTimeMs: number): CorrelationHit[] {
    const matched = new Set<string>();
    for (const r of this.#base) if (r.matches(record)) matched.add(r.id);
    if (matched.size === 0) return [];
    const hits: CorrelationHit[] = [];
    const rawId = scalars(record, this.#limits.eventIdPath)[0];
    const eventId = rawId === undefined ? null : String(rawId);
    for (const c of this.#order) {
      const refs = c.rule.rules.filter((r) => matched.has(r));
      if (refs.length === 0) continue;
      if (eventTimeMs < this.#watermarkMs - c.rule.timespanMs) {
        this.counters.late++;
        continue;
      }
      let fired = false;
      for (const [key, { values, refs: groupRefs }] of this.#groupsOf(c.rule, record, refs)) {
        const hit = this.#add(c, key, values, groupRefs, record, eventTimeMs, eventId);
        if (hit === null) continue;
        fired = true;
        if (c.reported) hits.push(hit);
      }
      if (fired && c.feeds) matched.add(c.rule.id);
    }
    return hits;
  }

  /** Group key → group values and the matched rules behind it; rules may read different fields through aliases. */
  #groupsOf(rule: CorrelationRule, record: CloudTrailRecord, refs: string[]): Map<string, { values: unknown[]; refs: string[] }> {
    const out = new Map<string, { values: unknown[]; refs: string[] }>();
    next: for (const ref of refs) {
      const values: unknown[] = [];
      for (const g of rule.groupBy) {
        const found = scalars(record, rule.aliases[g]?.[ref] ?? g);
        if (found.length === 0) continue next;
        values.push(found.length === 1 ? found[0] : found);
      }
      const key = JSON.stringify(values);
      const entry = out.get(key);
      if (entry === undefined) out.set(key, { values, refs: [ref] });
      else entry.refs.push(ref);
    }
    return out;
  }

  #add(
    c: Compiled,
    key: string,
    values: unknown[],
    refs: string[],
    record: CloudTrailRecord,
    t: number,
    id: string | null,
  ): CorrelationHit | null {
    let entryValues: string[] = [];
    if (c.rule.type === 'value_count') {
      entryValues = [...new Set(scalars(record, c.rule.field ?? '').map(String))];
      if (entryValues.length === 0) return null;
    } else if (c.rule.type !== 'event_count') entryValues = refs;

    let group = c.groups.get(key);
    if (group === undefined) {
      group = { values, entries: [], consumedThroughMs: Number.NEGATIVE_INFINITY };
      if (c.groups.size >= this.#limits.maxGroupsPerCorrelation) {
        const oldest = c.groups.keys().next().value;
        if (oldest !== undefined) c.groups.delete(oldest);
        this.counters.evictedGroups++;
      }
    } else c.groups.delete(key);
    c.groups.set(key, group);
    if (t <= group.consumedThroughMs) {
      this.counters.late++;
      return null;
    }
    const seq = this.#seq++;
    group.entries.splice(upperIndex(group.entries, t, seq), 0, { t, seq, id, values: entryValues });
    if (group.entries.length > this.#limits.maxEventsPerGroup) {
      group.entries.shift();
      this.counters.evictedEvents++;
    }
    if (c.atClose) return null;
    const window = c.rule.type === 'temporal_ordered' ? this.#ordered(c, group, t) : this.#sliding(c, group, t);
    return window === null ? null : this.#fire(c, group, window);
  }

  /** The earliest window starting at an event within `timespan` before `t` (so holding `t`) that meets the condition. */
  #sliding(c: Compiled, group: Group, t: number): Window | null {
    const span = c.rule.timespanMs;
    const es = group.entries;
    const distinct = c.rule.type !== 'event_count';
    const counts = new Map<string, number>();
    let j = 0;
    for (let i = 0; i < es.length; i++) {
      const start = es[i] as Entry;
      if (start.t > t) break;
      if (j < i) j = i;
      while (j < es.length && (es[j] as Entry).t <= start.t + span) {
        for (const v of (es[j] as Entry).values) counts.set(v, (counts.get(v) ?? 0) + 1);
        j++;
      }
      if (start.t >= t - span) {
        const count = distinct ? counts.size : j - i;
        if (count >= c.low && count <= c.high) return { entries: es.slice(i, j), count, values: [...counts.keys()] };
      }
      for (const v of start.values) {
        const n = (counts.get(v) ?? 0) - 1;
        if (n <= 0) counts.delete(v);
        else counts.set(v, n);
      }
    }
    return null;
  }

  /** The earliest run of the rules in their listed order, within `timespan`, starting before or at `t`. */
  #ordered(c: Compiled, group: Group, t: number): Window | null {
    const span = c.rule.timespanMs;
    const steps = c.rule.rules;
    const es = group.entries;
    for (let i = 0; i < es.length; i++) {
      const start = es[i] as Entry;
      if (start.t > t) break;
      if (start.t < t - span || !start.values.includes(steps[0] ?? '')) continue;
      const run: Entry[] = [start];
      for (let j = i + 1; j < es.length && run.length < steps.length; j++) {
        const e = es[j] as Entry;
        if (e.t > start.t + span) break;
        if (e.values.includes(steps[run.length] ?? '')) run.push(e);
      }
      if (run.length === steps.length) return { entries: run, count: steps.length, values: [...steps] };
    }
    return null;
  }

  #fire(c: Compiled, group: Group, window: Window, endMs?: number): CorrelationHit {
    const first = window.entries[0] as Entry;
    const last = window.entries[window.entries.length - 1] as Entry;
    const through = endMs ?? last.t;
    group.consumedThroughMs = through;
    group.entries = group.entries.filter((e) => e.t > through);
    const max = this.#limits.maxEvidence;
    const group_: Record<string, unknown> = {};
    c.rule.groupBy.forEach((g, i) => {
      group_[g] = group.values[i];
    });
    return {
      ruleId: c.rule.id,
      title: c.rule.title,
      level: c.rule.level,
      type: c.rule.type,
      group: group_,
      windowStartMs: first.t,
      windowEndMs: last.t,
      count: window.count,
      values: window.values.slice(0, max),
      eventIds: window.entries.flatMap((e) => (e.id === null ? [] : [e.id])).slice(0, max),
    };
  }

  /**
   * Moves event time on: judges the windows of lt/lte/eq correlations that end before the
   * watermark (their hits are returned), then drops what no window can use any more.
   */
  advance(watermarkMs: number): CorrelationHit[] {
    if (watermarkMs <= this.#watermarkMs) return [];
    this.#watermarkMs = watermarkMs;
    const hits: CorrelationHit[] = [];
    for (const c of this.#order) {
      const span = c.rule.timespanMs;
      const horizon = watermarkMs - span;
      for (const [key, group] of c.groups) {
        if (c.atClose) {
          for (let start = group.entries[0]; start !== undefined && start.t + span < watermarkMs; start = group.entries[0]) {
            const end = start.t + span;
            const inWindow = group.entries.filter((e) => e.t <= end);
            const values = new Set(inWindow.flatMap((e) => e.values));
            const count = c.rule.type === 'value_count' ? values.size : inWindow.length;
            if (count >= c.low && count <= c.high) {
              const hit = this.#fire(c, group, { entries: inWindow, count, values: [...values] }, end);
              if (c.reported) hits.push(hit);
            } else {
              group.consumedThroughMs = end;
              group.entries = group.entries.filter((e) => e.t > end);
            }
          }
        }
        if (group.entries.length > 0 && (group.entries[0] as Entry).t < horizon)
          group.entries = group.entries.filter((e) => e.t >= horizon);
        if (group.entries.length === 0 && group.consumedThroughMs < horizon) c.groups.delete(key);
      }
    }
    return hits;
  }

  /** Plain JSON state for a checkpoint. */
  snapshot(): unknown {
    const finite = (n: number): number | null => (Number.isFinite(n) ? n : null);
    const snap: EngineSnapshot = {
      version: SNAPSHOT_VERSION,
      watermarkMs: finite(this.#watermarkMs),
      seq: this.#seq,
      correlations: this.#order.map((c) => ({
        id: c.rule.id,
        groups: [...c.groups].map(([key, g]) => ({
          key,
          values: g.values,
          consumedThroughMs: finite(g.consumedThroughMs),
          entries: g.entries.map((e): [number, number, string | null, string[]] => [e.t, e.seq, e.id, [...e.values]]),
        })),
      })),
    };
    return structuredClone(snap);
  }

  /** An engine for `rules` carrying the state of `snapshot`; state of correlations no longer loaded is dropped. */
  static restore(
    rules: readonly CorrelationRule[],
    baseRules: readonly SigmaRule[],
    snapshot: unknown,
    limits: Partial<CorrelationLimits> = {},
  ): CorrelationEngine {
    const engine = new CorrelationEngine(rules, baseRules, limits);
    const snap = snapshot as Partial<EngineSnapshot> | null;
    if (typeof snap !== 'object' || snap === null || snap.version !== SNAPSHOT_VERSION) corrupt('not a version 1 snapshot');
    if (!Array.isArray(snap.correlations) || typeof snap.seq !== 'number') corrupt('correlations or seq missing');
    engine.#watermarkMs = typeof snap.watermarkMs === 'number' ? snap.watermarkMs : Number.NEGATIVE_INFINITY;
    engine.#seq = snap.seq;
    const byId = new Map(engine.#order.map((c) => [c.rule.id, c]));
    for (const cs of snap.correlations) {
      const c = byId.get(cs?.id);
      if (c === undefined) continue;
      if (!Array.isArray(cs.groups)) corrupt(`groups of '${cs.id}' missing`);
      for (const g of cs.groups) {
        if (typeof g?.key !== 'string' || !Array.isArray(g.values) || !Array.isArray(g.entries))
          corrupt(`a group of '${cs.id}' is malformed`);
        const entries = g.entries.map((e) => {
          if (!Array.isArray(e) || typeof e[0] !== 'number' || typeof e[1] !== 'number' || !Array.isArray(e[3]))
            corrupt(`an event of '${cs.id}' is malformed`);
          return { t: e[0], seq: e[1], id: typeof e[2] === 'string' ? e[2] : null, values: e[3].map(String) };
        });
        c.groups.set(g.key, {
          values: g.values,
          entries,
          consumedThroughMs: typeof g.consumedThroughMs === 'number' ? g.consumedThroughMs : Number.NEGATIVE_INFINITY,
        });
      }
    }
    return engine;
  }
}
