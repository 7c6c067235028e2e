import type { AuditEvent } from '../../contracts/types.ts';
import { ConfigError, ErrorCodes, TrailwatchError } from '../../errors.ts';

/**
 * Breadth: a principal touching many distinct API actions in a short time, compared with its own
 * history. Enumeration calls each action only a few times (19 actions, 35 calls in 40 s, never
 * more than 3 calls of one action a minute), so per-action rate baselines miss it; the number of
 * distinct actions in a sliding window does not. A second dimension counts distinct actions that
 * were denied (see `isDenied`), where a handful already means someone is probing permissions.
 *
 * Per principal (account + normalized principal) and dimension the detector keeps each action
 * seen in the window with the event time of its presence: distinct(t) is the number of actions
 * with a call in (t − windowMs, t]. It fires as soon as distinct reaches
 * max(floor, ceil(factor × baselinePeak)), where baselinePeak is the highest distinct count the
 * principal reached on any of its last `historyDays` completed UTC days. A principal watched for
 * less than `learningMs` is not judged, but its peaks are recorded.
 *
 * One burst, one finding: after firing, a dimension stays quiet until an event finds its count
 * below the threshold again, so a ten-minute enumeration is one finding, not twenty.
 *
 * Pure and synchronous like the other detectors: `observe` events in (roughly) event time,
 * `advance(watermarkMs)` as event time moves on, `drainChanges()`/`fromRecords()` for a compacted
 * changelog written once per batch.
 *
 * Out of order events: an event older than watermark − windowMs is late, ignored and counted. An
 * earlier event within that bound counts where it belongs: every count it raises, from its time up
 * to the principal's latest event, is judged, so a window that it completes fires (once, and not
 * within a window of the dimension's previous finding, whose burst it most likely belongs to).
 *
 * Bounded state: at most `maxPrincipals` principals (least recently observed evicted; one that
 * comes back learns again) and `maxActionsPerPrincipal` actions per dimension (least recently
 * observed evicted, so a principal cannot count past it). A principal silent for `historyDays` has
 * no baseline left: it is dropped, and starts over, learning, if it comes back.
 */

export type BreadthKind = 'actions' | 'denied';

export interface BreadthOptions {
  /** Sliding window the distinct actions are counted in. */
  windowMs?: number;
  /** Floor of the threshold for `actions`: fewer distinct actions in the window never fire. */
  minDistinct?: number;
  /** Floor of the threshold for `denied`. */
  minDeniedDistinct?: number;
  /** threshold = max(floor, ceil(factor × baselinePeak)). */
  factor?: number;
  /** Completed UTC days whose peaks make the baseline; a principal idle this long is dropped. */
  historyDays?: number;
  /** No judgement before the principal has been watched this long since its first event. */
  learningMs?: number;
  maxPrincipals?: number;
  /** Actions kept per principal and dimension; the window cannot count more. */
  maxActionsPerPrincipal?: number;
  /** Evidences a finding carries at most (the earliest). */
  maxEvidences?: number;
}

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
/** Actions a finding lists at most (the earliest). */
const MAX_ACTIONS_LISTED = 50;
/** First element of every changelog record (principal and meta). */
const RECORD_VERSION = 1;
/** The changelog key of the detector-wide record; principal keys all hold a NUL, so never collide with it. */
const META_KEY = 'meta';

export const BREADTH_DEFAULTS = {
  windowMs: 5 * MINUTE_MS, // an enumeration script runs in seconds to minutes; a human session browses slower
  minDistinct: 10, // fewer distinct actions in 5 min is everyday console use
  minDeniedDistinct: 5, // denials are rare: five different ones in 5 min is probing
  factor: 2, // twice the busiest window of two weeks
  historyDays: 14, // two working weeks: weekly jobs are in the baseline
  learningMs: 3 * DAY_MS, // a new principal's first days are its setup, not its habit
  maxPrincipals: 100_000,
  maxActionsPerPrincipal: 500, // more than any workload touches in 5 min; thresholds above it cannot fire
  maxEvidences: 10, // as many as a finding record keeps (MAX_EVIDENCES in emit/finding.ts)
} satisfies Required<BreadthOptions>;

/** Error codes of a call refused for lack of permission, whatever the service spells them. */
export const DENIED_ERROR = /AccessDenied|Unauthorized|Forbidden/i;

/** Whether a call was denied: AccessDenied(Exception), (Client.)UnauthorizedOperation, UnauthorizedAccess, Forbidden, …. */
export function isDenied(errorCode: string | null): boolean {
  return errorCode !== null && DENIED_ERROR.test(errorCode);
}

export interface BreadthFinding {
  kind: BreadthKind;
  accountId: string;
  principal: string;
  principalType: string;
  /** `attributes.sessionName` of the event that crossed the threshold, or null. */
  sessionName: string | null;
  /** Region of the event that crossed the threshold. */
  region: string;
  /** Event time of the earliest evidence: the first call kept of the earliest action in the window. */
  windowStartMs: number;
  /** Event time of the event that crossed the threshold. */
  timeMs: number;
  /** Distinct actions in the window when it fired. */
  distinct: number;
  threshold: number;
  /** The principal's highest daily peak of its last historyDays completed days. */
  baselinePeak: number;
  /** `service:action` in the window, earliest first, at most 50. */
  actions: string[];
  /** The first call kept of each action in the window, earliest first, at most maxEvidences; without `raw`. */
  evidences: AuditEvent[];
}

export interface BreadthStateSize {
  principals: number;
  /** Actions kept in the windows, both dimensions. */
  actions: number;
}

const KINDS: readonly BreadthKind[] = ['actions', 'denied'];
const ACTIONS = 0;
const DENIED = 1;

/** One action's presence in a window: it had a call in every window ending in [startMs, lastMs + windowMs). */
interface Entry {
  startMs: number;
  lastMs: number;
  /** The earliest call kept: replaced once it has left the window (see `#see`), so a finding shows recent calls. */
  evidence: AuditEvent;
}

interface Dimension {
  /** `service:action` → presence, least recently observed first. */
  entries: Map<string, Entry>;
  /** Whether a crossing fires: false from a finding until an event finds the count below the threshold. */
  armed: boolean;
  /** Where the latest finding was judged; −∞ if none. */
  firedMs: number;
}

interface DayPeak {
  /** UTC day number (ms / DAY_MS). */
  day: number;
  /** By dimension: the highest distinct count that day (a fired burst counts as threshold − 1). */
  peaks: [number, number];
}

interface PrincipalState {
  accountId: string;
  principal: string;
  principalType: string;
  firstMs: number;
  lastMs: number;
  /** When it was last observed, in observations of this detector: the LRU order, which records do not carry. */
  seq: number;
  /** Oldest day first. */
  days: DayPeak[];
  dims: [Dimension, Dimension];
}

export class BreadthDetector {
  readonly #windowMs: number;
  readonly #floors: readonly [number, number];
  readonly #factor: number;
  readonly #historyDays: number;
  readonly #learningMs: number;
  readonly #maxPrincipals: number;
  readonly #maxActions: number;
  readonly #maxEvidences: number;
  /** Least recently observed first. */
  readonly #principals = new Map<string, PrincipalState>();
  /**
   * Principal keys with actions kept, least recently observed first, so `advance` walks only the
   * principals whose windows have passed (an observed principal trims its own, see `#trim`).
   */
  readonly #withWindows = new Set<string>();
  #entryCount = 0;
  #watermarkMs = Number.NEGATIVE_INFINITY;
  #lateEvents = 0;
  /** Observations so far; the next one's `seq`. */
  #tick = 0;
  /** Principals changed (or gone) since the last `drainChanges`. */
  readonly #dirty = new Set<string>();
  #metaDirty = false;

  constructor(options: BreadthOptions = {}) {
    validate(options);
    const o = { ...BREADTH_DEFAULTS, ...dropUndefined(options) };
    this.#windowMs = o.windowMs;
    this.#floors = [o.minDistinct, o.minDeniedDistinct];
    this.#factor = o.factor;
    this.#historyDays = o.historyDays;
    this.#learningMs = o.learningMs;
    this.#maxPrincipals = o.maxPrincipals;
    this.#maxActions = o.maxActionsPerPrincipal;
    this.#maxEvidences = o.maxEvidences;
  }

  get watermarkMs(): number {
    return this.#watermarkMs;
  }

  get stateSize(): BreadthStateSize {
    return { principals: this.#principals.size, actions: this.#entryCount };
  }

  /** Events ignored for being older than watermark − windowMs. */
  get lateEvents(): number {
    return this.#lateEvents;
  }

  /** Counts the event's action (and, when denied, its denied action); returns the findings it triggers, `actions` first. */
  observe(event: AuditEvent): BreadthFinding[] {
    const t = event.eventTimeMs;
    if (t < this.#watermarkMs - this.#windowMs) {
      this.#lateEvents++;
      this.#metaDirty = true;
      return [];
    }
    const key = principalKey(event.accountId, event.principal);
    let p = this.#principals.get(key);
    // Silent past its history, a principal has no baseline left: it starts over, as a sweep would have made it.
    if (p !== undefined && t - p.lastMs > this.#historyDays * DAY_MS) {
      this.#drop(key, p);
      p = undefined;
    }
    if (p === undefined) {
      p = {
        accountId: event.accountId,
        principal: event.principal,
        principalType: event.principalType,
        firstMs: t,
        lastMs: t,
        seq: 0,
        days: [],
        dims: [newDimension(), newDimension()],
      };
      this.#principals.set(key, p);
      if (this.#principals.size > this.#maxPrincipals) this.#evictPrincipal();
    } else {
      this.#principals.delete(key);
      this.#principals.set(key, p);
      this.#trim(p);
    }
    const previousMs = p.lastMs;
    p.seq = this.#tick++;
    p.principalType = event.principalType;
    if (t < p.firstMs) p.firstMs = t;
    if (t > p.lastMs) {
      p.lastMs = t;
      pruneDays(p, this.#historyDays);
    }
    this.#dirty.add(key);
    this.#metaDirty = true;

    const out: BreadthFinding[] = [];
    const action = `${event.service}:${event.action}`;
    // Copied only when kept, and once for both dimensions, which lets a record write it once.
    let copy: AuditEvent | undefined;
    const evidence = (): AuditEvent => {
      copy ??= withoutRaw(event);
      return copy;
    };
    this.#see(key, p, ACTIONS, action, event, evidence, previousMs, out);
    if (isDenied(event.errorCode)) this.#see(key, p, DENIED, action, event, evidence, previousMs, out);
    this.#withWindows.delete(key);
    this.#withWindows.add(key);
    return out;
  }

  /** Event time has reached `watermarkMs`: drops window entries no event can count any more, and principals idle past their history. */
  advance(watermarkMs: number): void {
    if (!(watermarkMs > this.#watermarkMs)) return;
    this.#watermarkMs = watermarkMs;
    this.#metaDirty = true;
    // Least recently observed first: stop at the first principal with a call still needed (memory
    // only: counts skip expired actions wherever they are kept).
    const expiredBy = this.#expiredByMs();
    for (const key of this.#withWindows) {
      const p = this.#principals.get(key) as PrincipalState;
      if (p.lastMs > expiredBy) break;
      for (const dim of p.dims) {
        this.#entryCount -= dim.entries.size;
        dim.entries.clear();
      }
      this.#withWindows.delete(key);
      this.#dirty.add(key);
    }
    // Daily peaks are pruned as each principal's days roll (observe); idle principals go here.
    const idleBefore = watermarkMs - this.#historyDays * DAY_MS;
    for (const [key, p] of this.#principals) {
      if (p.lastMs >= idleBefore) break;
      this.#drop(key, p);
    }
  }

  /**
   * State changed since the last drain: `[key, JSON]` per changed principal, `[key, null]` for one
   * evicted, idle or otherwise gone, and `['meta', JSON]` for the detector-wide state (watermark,
   * late events, observation count) when it changed. Written to a compacted changelog, the latest
   * value of each key is what `fromRecords` needs. O(changed principals).
   */
  drainChanges(): Array<[string, string | null]> {
    const out: Array<[string, string | null]> = [];
    for (const key of this.#dirty) {
      const p = this.#principals.get(key);
      out.push([key, p === undefined ? null : encodePrincipal(key, p)]);
    }
    this.#dirty.clear();
    if (this.#metaDirty) {
      out.push([META_KEY, encodeMeta(this.#watermarkMs, this.#lateEvents, this.#tick)]);
      this.#metaDirty = false;
    }
    return out;
  }

  /**
   * A detector in the state given by the latest value of each key `drainChanges` produced
   * (tombstoned keys already removed by the caller), in any order. Options are config, not state,
   * and may differ from the writer's: what tighter bounds drop shows in the next drain.
   */
  static fromRecords(records: Iterable<[string, string]>, options: BreadthOptions = {}): BreadthDetector {
    const d = new BreadthDetector(options);
    const restored: [string, PrincipalState][] = [];
    let tick = 0;
    for (const [key, value] of records) {
      if (key === META_KEY) {
        const meta = decodeMeta(value);
        d.#watermarkMs = meta.watermarkMs;
        d.#lateEvents = meta.lateEvents;
        tick = Math.max(tick, meta.tick);
        continue;
      }
      const p = decodePrincipal(key, value);
      restored.push([key, p]);
      tick = Math.max(tick, p.seq + 1);
    }
    d.#tick = tick;
    // Map order is the LRU order eviction and the idle sweep follow: least recently observed first.
    restored.sort(([ka, a], [kb, b]) => a.seq - b.seq || cmp(ka, kb));
    for (const [key, p] of restored) {
      d.#principals.set(key, p);
      for (const dim of p.dims) d.#entryCount += dim.entries.size;
      if (p.dims.some((dim) => dim.entries.size > 0)) d.#withWindows.add(key);
    }
    while (d.#principals.size > d.#maxPrincipals) d.#evictPrincipal();
    for (const [key, p] of d.#principals) {
      for (const dim of p.dims) while (dim.entries.size > d.#maxActions) d.#evictAction(key, dim);
    }
    return d;
  }

  /** Events from watermark − windowMs on are accepted, and count actions called a window before them. */
  #expiredByMs(): number {
    return this.#watermarkMs - 2 * this.#windowMs;
  }

  /** Drops the actions of a principal being observed that no event can count any more, least recently observed first, up to the first still needed. */
  #trim(p: PrincipalState): void {
    const expiredBy = this.#expiredByMs();
    for (const dim of p.dims) {
      for (const [action, e] of dim.entries) {
        if (e.lastMs > expiredBy) break;
        dim.entries.delete(action);
        this.#entryCount--;
      }
    }
  }

  #see(
    key: string,
    p: PrincipalState,
    d: number,
    action: string,
    event: AuditEvent,
    evidence: () => AuditEvent,
    previousMs: number,
    out: BreadthFinding[],
  ): void {
    const dim = p.dims[d] as Dimension;
    const t = event.eventTimeMs;
    const w = this.#windowMs;
    const e = dim.entries.get(action);
    // The action's presence before this call, where it counted already.
    const wasFromMs = e === undefined ? Number.POSITIVE_INFINITY : e.startMs;
    const wasUntilMs = e === undefined ? Number.NEGATIVE_INFINITY : e.lastMs + w;
    if (e === undefined || t >= e.lastMs + w) {
      // Absent for a whole window before this call (or never seen): a new presence.
      if (e === undefined) this.#entryCount++;
      else dim.entries.delete(action);
      dim.entries.set(action, { startMs: t, lastMs: t, evidence: evidence() });
      if (dim.entries.size > this.#maxActions) this.#evictAction(key, dim);
    } else if (t <= e.startMs - w) {
      // A presence a whole window before the one kept: one presence per action is kept, so this
      // late call is not counted (too late to matter unless the watermark lags by a window).
      return;
    } else {
      if (t < e.startMs) e.startMs = t;
      if (t > e.lastMs) e.lastMs = t;
      // The evidence is the earliest call in the principal's current window that was seen since
      // the last one left it: a finding shows calls of its burst, not of hours ago.
      const windowStartMs = p.lastMs - w;
      if (t > windowStartMs && (e.evidence.eventTimeMs <= windowStartMs || t < e.evidence.eventTimeMs)) e.evidence = evidence();
      dim.entries.delete(action);
      dim.entries.set(action, e);
    }
    this.#judge(p, d, event, previousMs, (atMs) => atMs < wasFromMs || atMs >= wasUntilMs, out);
  }

  /**
   * Judges the count at the event's time. An out of order event changed the past: it is judged at
   * every point up to the principal's latest event where an action's presence began (the count
   * only rises there) and that its own call newly covers (elsewhere nothing changed).
   */
  #judge(
    p: PrincipalState,
    d: number,
    event: AuditEvent,
    previousMs: number,
    isNew: (atMs: number) => boolean,
    out: BreadthFinding[],
  ): void {
    const dim = p.dims[d] as Dimension;
    const t = event.eventTimeMs;
    const inOrder = t >= previousMs;
    let points: number[] = [t];
    if (!inOrder) {
      const later = new Set<number>();
      for (const e of dim.entries.values()) if (e.startMs > t && e.startMs <= previousMs) later.add(e.startMs);
      points = points.concat([...later].sort((a, b) => a - b)).filter(isNew);
    }
    for (const atMs of points) {
      const distinct = countAt(dim, atMs, this.#windowMs);
      const day = Math.floor(atMs / DAY_MS);
      const baselinePeak = baselineOf(p, d, day, this.#historyDays);
      const threshold = Math.max(this.#floors[d] as number, Math.ceil(this.#factor * baselinePeak));
      const over = atMs - p.firstMs >= this.#learningMs && distinct >= threshold;
      // A judged burst adds at most threshold − 1 to the day's peak, the most this principal may
      // do unremarked today. Counted whole, one attack would double the bar for historyDays and
      // hide the next one of its size; capped, a repeat fires again tomorrow, while a new
      // legitimate habit still raises the bar by `factor` a day until it stops firing.
      recordPeak(p, day, d, over ? threshold - 1 : distinct);
      if (over && dim.armed && (inOrder || atMs - dim.firedMs >= this.#windowMs)) {
        out.push(this.#finding(p, d, event, atMs, distinct, threshold, baselinePeak));
        dim.armed = false;
        dim.firedMs = atMs;
      }
      // Only the present re-arms: a late event's past says nothing about whether the burst is over.
      if (inOrder && distinct < threshold) dim.armed = true;
    }
  }

  #finding(
    p: PrincipalState,
    d: number,
    event: AuditEvent,
    atMs: number,
    distinct: number,
    threshold: number,
    baselinePeak: number,
  ): BreadthFinding {
    const w = this.#windowMs;
    const inWindow: [string, Entry][] = [];
    for (const kv of (p.dims[d] as Dimension).entries) if (present(kv[1], atMs, w)) inWindow.push(kv);
    inWindow.sort(([ka, a], [kb, b]) => a.evidence.eventTimeMs - b.evidence.eventTimeMs || cmp(ka, kb));
    return {
      kind: KINDS[d] as BreadthKind,
      accountId: p.accountId,
      principal: p.principal,
      principalType: p.principalType,
      sessionName: event.attributes.sessionName ?? null,
      region: event.region,
      windowStartMs: (inWindow[0] as [string, Entry])[1].evidence.eventTimeMs,
      timeMs: event.eventTimeMs,
      distinct,
      threshold,
      baselinePeak,
      actions: inWindow.slice(0, MAX_ACTIONS_LISTED).map(([action]) => action),
      evidences: inWindow.slice(0, this.#maxEvidences).map(([, e]) => e.evidence),
    };
  }

  #drop(key: string, p: PrincipalState): void {
    this.#principals.delete(key);
    this.#withWindows.delete(key);
    for (const dim of p.dims) this.#entryCount -= dim.entries.size;
    this.#dirty.add(key);
  }

  #evictPrincipal(): void {
    const oldest = this.#principals.entries().next();
    if (oldest.done !== true) this.#drop(...oldest.value);
  }

  #evictAction(key: string, dim: Dimension): void {
    const oldest = dim.entries.keys().next();
    if (oldest.done === true) return;
    dim.entries.delete(oldest.value);
    this.#entryCount--;
    this.#dirty.add(key);
  }
}

function principalKey(accountId: string, principal: string): string {
  return `${accountId}\u0000${principal}`;
}

function newDimension(): Dimension {
  return { entries: new Map(), armed: true, firedMs: Number.NEGATIVE_INFINITY };
}

function withoutRaw(event: AuditEvent): AuditEvent {
  const { raw: _raw, ...rest } = event;
  return rest;
}

function present(e: Entry, atMs: number, windowMs: number): boolean {
  return e.startMs <= atMs && e.lastMs + windowMs > atMs;
}

/** O(actions kept): a few for most principals, and never more than maxActionsPerPrincipal. */
function countAt(dim: Dimension, atMs: number, windowMs: number): number {
  let n = 0;
  for (const e of dim.entries.values()) if (present(e, atMs, windowMs)) n++;
  return n;
}

/** The highest peak of the historyDays completed days before `day`; days without activity are absent, i.e. 0. */
function baselineOf(p: PrincipalState, d: number, day: number, historyDays: number): number {
  let peak = 0;
  for (const dp of p.days) {
    if (dp.day >= day) break;
    if (dp.day >= day - historyDays && (dp.peaks[d] as number) > peak) peak = dp.peaks[d] as number;
  }
  return peak;
}

function recordPeak(p: PrincipalState, day: number, d: number, value: number): void {
  if (value <= 0) return;
  let i = p.days.length - 1;
  while (i >= 0 && (p.days[i] as DayPeak).day > day) i--;
  let dp = p.days[i];
  if (dp === undefined || dp.day !== day) {
    dp = { day, peaks: [0, 0] };
    p.days.splice(i + 1, 0, dp);
  }
  if (value > (dp.peaks[d] as number)) dp.peaks[d] = value;
}

/** Keeps the days a baseline can still use: an event a day behind the principal's latest one included. */
function pruneDays(p: PrincipalState, historyDays: number): void {
  const keepFrom = Math.floor(p.lastMs / DAY_MS) - historyDays - 1;
  let n = 0;
  while (n < p.days.length && (p.days[n] as DayPeak).day < keepFrom) n++;
  if (n > 0) p.days.splice(0, n);
}

// ── changelog records ─────────────────────────────────────────────────────
//
// A principal's record is rewritten whenever it is observed, so it is an array, and every time in
// it is an age before the principal's lastMs (short, non-negative numbers; event times are whole
// ms, so the subtraction is exact):
//
//   [version, principalType, seq, lastMs, lastMs − firstMs, days, actions, denied, accountId?, principal?]
//   days      [dayOf(lastMs) − day, actionsPeak, deniedPeak, …]           oldest day first
//   actions   [armed 0|1, lastMs − firedMs | null, entry…, entry…]          entries least recently observed first,
//   denied    the same                                                     four elements each:
//   entry     action, lastMs − startMs, lastMs − entry.lastMs, evidence
//   evidence  [eventId, lastMs − eventTimeMs, source, region, principalType | null (the principal's),
//              service, readOnly 1|0|null, errorCode, sourceIp, userAgent, attributes]
//             or 0 in `denied` when it is the same call as the action's evidence in `actions`
//
// An evidence's source, region, service, sourceIp, userAgent and attributes are 0 when they are
// the previous evidence's in the record (`actions` then `denied`, a shared one included): one
// principal's calls mostly come from one client, and its user agent and session attributes are
// most of an event's bytes. The action of an evidence is its entry's `service:action` after
// `service:`. The key `${accountId}\u0000${principal}` carries the identity; the record repeats it
// only when the account id holds a NUL itself and the key cannot be split. The meta record:
//
//   [version, watermarkMs | null, lateEvents, tick]

/** The evidence before, while a record is written or read. */
interface EvidenceContext {
  previous: AuditEvent | null;
}

function encodeEvidence(ev: AuditEvent, p: PrincipalState, context: EvidenceContext): unknown[] {
  const prev = context.previous;
  context.previous = ev;
  const same = <T>(v: T, before: T | undefined): T | 0 => (prev !== null && v === before ? 0 : v);
  return [
    ev.eventId,
    p.lastMs - ev.eventTimeMs,
    same(ev.source, prev?.source),
    same(ev.region, prev?.region),
    ev.principalType === p.principalType ? null : ev.principalType,
    same(ev.service, prev?.service),
    ev.readOnly === null ? null : ev.readOnly ? 1 : 0,
    ev.errorCode,
    same(ev.sourceIp, prev?.sourceIp),
    same(ev.userAgent, prev?.userAgent),
    prev !== null && sameAttributes(ev.attributes, prev.attributes) ? 0 : ev.attributes,
  ];
}

function sameAttributes(a: Record<string, string>, b: Record<string, string>): boolean {
  if (a === b) return true;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

function encodeDimension(p: PrincipalState, d: number, context: EvidenceContext): unknown[] {
  const dim = p.dims[d] as Dimension;
  const base = p.lastMs;
  const out: unknown[] = [dim.armed ? 1 : 0, Number.isFinite(dim.firedMs) ? base - dim.firedMs : null];
  const actions = d === DENIED ? p.dims[ACTIONS].entries : null;
  for (const [action, e] of dim.entries) {
    const shared = actions?.get(action)?.evidence === e.evidence;
    if (shared) context.previous = e.evidence;
    out.push(action, base - e.startMs, base - e.lastMs, shared ? 0 : encodeEvidence(e.evidence, p, context));
  }
  return out;
}

function encodePrincipal(key: string, p: PrincipalState): string {
  const today = Math.floor(p.lastMs / DAY_MS);
  const days: number[] = [];
  for (const dp of p.days) days.push(today - dp.day, dp.peaks[ACTIONS], dp.peaks[DENIED]);
  const context: EvidenceContext = { previous: null };
  const record: unknown[] = [
    RECORD_VERSION,
    p.principalType,
    p.seq,
    p.lastMs,
    p.lastMs - p.firstMs,
    days,
    encodeDimension(p, ACTIONS, context),
    encodeDimension(p, DENIED, context),
  ];
  if (key.indexOf('\u0000') !== p.accountId.length) record.push(p.accountId, p.principal);
  return JSON.stringify(record);
}

function encodeMeta(watermarkMs: number, lateEvents: number, tick: number): string {
  return JSON.stringify([RECORD_VERSION, Number.isFinite(watermarkMs) ? watermarkMs : null, lateEvents, tick]);
}

function stateCorrupt(key: string, what: string, cause?: unknown): TrailwatchError {
  return new TrailwatchError(ErrorCodes.STATE_CORRUPT, `breadth changelog record ${JSON.stringify(key)}: ${what}`, {
    cause,
    details: { key },
  });
}

/** The record as an array of this version; anything else is corrupt. */
function parseRecord(key: string, json: string): unknown[] {
  let record: unknown;
  try {
    record = JSON.parse(json);
  } catch (err) {
    throw stateCorrupt(key, `not JSON (${(err as Error).message})`, err);
  }
  if (!Array.isArray(record) || record[0] !== RECORD_VERSION) {
    throw stateCorrupt(key, `expected version ${RECORD_VERSION}, got ${JSON.stringify(Array.isArray(record) ? record[0] : record)}`);
  }
  return record;
}

const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isNullableString = (v: unknown): v is string | null => v === null || typeof v === 'string';

function decodeEvidence(key: string, r: unknown, action: string, p: PrincipalState, context: EvidenceContext): AuditEvent {
  if (!Array.isArray(r) || r.length !== 11) throw stateCorrupt(key, `an evidence of ${action} is not an 11-element array`);
  const prev = context.previous;
  // 0: the previous evidence's value (absent without one, which makes the record corrupt).
  const field = <K extends keyof AuditEvent>(v: unknown, name: K): unknown => (v === 0 ? prev?.[name] : v);
  const [eventId, age, , , principalType, , readOnly, errorCode] = r as unknown[];
  const source = field(r[2], 'source');
  const region = field(r[3], 'region');
  const service = field(r[5], 'service');
  const sourceIp = field(r[8], 'sourceIp');
  const userAgent = field(r[9], 'userAgent');
  const attributes = field(r[10], 'attributes');
  if (
    typeof eventId !== 'string' ||
    !isTime(age) ||
    typeof source !== 'string' ||
    typeof region !== 'string' ||
    !isNullableString(principalType) ||
    typeof service !== 'string' ||
    !action.startsWith(`${service}:`) ||
    !(readOnly === null || readOnly === 0 || readOnly === 1) ||
    !isNullableString(errorCode) ||
    !isNullableString(sourceIp) ||
    !isNullableString(userAgent) ||
    attributes === null ||
    typeof attributes !== 'object' ||
    Array.isArray(attributes)
  ) {
    throw stateCorrupt(key, `bad evidence of ${action}`);
  }
  const ev: AuditEvent = {
    eventId,
    eventTimeMs: p.lastMs - age,
    source,
    accountId: p.accountId,
    region,
    principal: p.principal,
    principalType: principalType ?? p.principalType,
    service,
    action: action.slice(service.length + 1),
    readOnly: readOnly === null ? null : readOnly === 1,
    errorCode,
    sourceIp,
    userAgent,
    attributes: attributes as Record<string, string>,
  };
  context.previous = ev;
  return ev;
}

function decodeDimension(key: string, r: unknown, p: PrincipalState, d: number, context: EvidenceContext): Dimension {
  if (!Array.isArray(r) || r.length < 2 || (r.length - 2) % 4 !== 0 || !(r[0] === 0 || r[0] === 1) || !(r[1] === null || isTime(r[1]))) {
    throw stateCorrupt(key, `${KINDS[d]} is not [armed, fired, entry…]`);
  }
  const base = p.lastMs;
  const dim: Dimension = { entries: new Map(), armed: r[0] === 1, firedMs: r[1] === null ? Number.NEGATIVE_INFINITY : base - r[1] };
  for (let i = 2; i < r.length; i += 4) {
    const [action, startAge, lastAge, ev] = r.slice(i, i + 4) as unknown[];
    if (typeof action !== 'string' || !isTime(startAge) || !isTime(lastAge)) throw stateCorrupt(key, `bad ${KINDS[d]} entry at ${i}`);
    const evidence = ev === 0 && d === DENIED ? p.dims[ACTIONS].entries.get(action)?.evidence : decodeEvidence(key, ev, action, p, context);
    if (evidence === undefined) throw stateCorrupt(key, `denied ${action} shares an evidence its actions entry lacks`);
    context.previous = evidence;
    dim.entries.set(action, { startMs: base - startAge, lastMs: base - lastAge, evidence });
  }
  return dim;
}

function decodePrincipal(key: string, json: string): PrincipalState {
  const r = parseRecord(key, json);
  const [, principalType, seq, lastMs, span, days, actions, denied, ...identity] = r;
  const nul = key.indexOf('\u0000');
  if (
    typeof principalType !== 'string' ||
    !isCount(seq) ||
    !isTime(lastMs) ||
    !isTime(span) ||
    !Array.isArray(days) ||
    days.length % 3 !== 0 ||
    !days.every(isCount) ||
    nul < 0 ||
    (identity.length !== 0 && (identity.length !== 2 || typeof identity[0] !== 'string' || typeof identity[1] !== 'string'))
  ) {
    throw stateCorrupt(key, 'not a principal record');
  }
  const p: PrincipalState = {
    accountId: identity.length === 2 ? (identity[0] as string) : key.slice(0, nul),
    principal: identity.length === 2 ? (identity[1] as string) : key.slice(nul + 1),
    principalType,
    firstMs: lastMs - span,
    lastMs,
    seq,
    days: [],
    dims: [newDimension(), newDimension()],
  };
  const today = Math.floor(lastMs / DAY_MS);
  for (let i = 0; i < days.length; i += 3) {
    p.days.push({ day: today - (days[i] as number), peaks: [days[i + 1] as number, days[i + 2] as number] });
  }
  const context: EvidenceContext = { previous: null };
  p.dims[ACTIONS] = decodeDimension(key, actions, p, ACTIONS, context);
  p.dims[DENIED] = decodeDimension(key, denied, p, DENIED, context);
  return p;
}

function decodeMeta(json: string): { watermarkMs: number; lateEvents: number; tick: number } {
  const [, watermarkMs, lateEvents, tick] = parseRecord(META_KEY, json);
  if ((watermarkMs !== null && !isTime(watermarkMs)) || !isCount(lateEvents) || !isCount(tick)) {
    throw stateCorrupt(META_KEY, 'not a meta record');
  }
  return { watermarkMs: watermarkMs ?? Number.NEGATIVE_INFINITY, lateEvents, tick };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function validate(options: BreadthOptions): void {
  const problems: string[] = [];
  const check = (name: keyof BreadthOptions, ok: (v: number) => boolean, expected: string): void => {
    const v: unknown = options[name];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || !ok(v))) {
      problems.push(`breadth.${name}: expected ${expected}, got ${JSON.stringify(v)}`);
    }
  };
  const positiveInteger = (v: number): boolean => Number.isInteger(v) && v > 0;
  check('windowMs', positiveInteger, 'a positive integer (ms)');
  check('minDistinct', positiveInteger, 'a positive integer');
  check('minDeniedDistinct', positiveInteger, 'a positive integer');
  check('factor', (v) => v >= 1, 'a number ≥ 1');
  check('historyDays', positiveInteger, 'a positive integer');
  check('learningMs', (v) => v >= 0, 'a number ≥ 0 (ms)');
  check('maxPrincipals', positiveInteger, 'a positive integer');
  check('maxActionsPerPrincipal', positiveInteger, 'a positive integer');
  check('maxEvidences', positiveInteger, 'a positive integer');
  for (const name of Object.keys(options)) {
    if (!(name in BREADTH_DEFAULTS)) problems.push(`breadth.${name}: unknown option`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
