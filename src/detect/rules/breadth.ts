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

/** An AuditEvent's keys in declaration order, `raw` aside: the shape of nearly every event, which `withoutRaw` copies by name. */
const EVENT_KEYS: readonly string[] = [
  'eventId',
  'eventTimeMs',
  'source',
  'accountId',
  'region',
  'principal',
  'principalType',
  'service',
  'action',
  'readOnly',
  'errorCode',
  'sourceIp',
  'userAgent',
  'attributes',
];

interface Linked<N> {
  prev: N | null;
  next: N | null;
}

/** A doubly linked list through its nodes, oldest first: moving a node to the end writes a few pointers. */
class Order<N extends Linked<N>> {
  head: N | null = null;
  tail: N | null = null;

  append(n: N): void {
    n.prev = this.tail;
    n.next = null;
    if (this.tail === null) this.head = n;
    else this.tail.next = n;
    this.tail = n;
  }

  remove(n: N): void {
    if (n.prev === null) this.head = n.next;
    else n.prev.next = n.next;
    if (n.next === null) this.tail = n.prev;
    else n.next.prev = n.prev;
    n.prev = null;
    n.next = null;
  }

  toEnd(n: N): void {
    if (this.tail === n) return;
    this.remove(n);
    this.append(n);
  }

  /** `n` takes the place of `old`, which leaves the list. */
  replace(old: N, n: N): void {
    n.prev = old.prev;
    n.next = old.next;
    if (old.prev === null) this.head = n;
    else old.prev.next = n;
    if (old.next === null) this.tail = n;
    else old.next.prev = n;
    old.prev = null;
    old.next = null;
  }

  clear(): void {
    this.head = null;
    this.tail = null;
  }
}

/** A node found by the two parts of its key, `name` within `scope` (see `splitKey`). */
interface Named<N> {
  scope: string;
  name: string;
  /** The next node of the same name in another scope. */
  alias: N | null;
}

/**
 * Nodes keyed `${scope}${separator}${name}`, least recently used first: what a Map deleted and set
 * again on every use kept, without its cost per event. A lookup hashes the parts, never a key
 * built for it (a cons string, which a Map lookup flattens and hashes anew: several times slower),
 * and a use moves the node to the end of a linked list rather than deleting and setting it. Keys
 * are split at their first separator (`splitKey`), so equal keys find the same node.
 */
class LruMap<N extends Linked<N> & Named<N>> extends Order<N> {
  readonly #byName = new Map<string, N>();
  size = 0;

  get(scope: string, name: string): N | undefined {
    for (let n = this.#byName.get(name) ?? null; n !== null; n = n.alias) if (n.scope === scope) return n;
    return undefined;
  }

  /** Adds `n`, whose key is absent, as the most recently used. */
  add(n: N): void {
    this.#index(n);
    this.append(n);
  }

  delete(n: N): void {
    this.#unindex(n);
    this.remove(n);
  }

  /** `n`, whose key is `old`'s, takes its place, in the order too. */
  override replace(old: N, n: N): void {
    this.#unindex(old);
    this.#index(n);
    super.replace(old, n);
  }

  #index(n: N): void {
    n.alias = this.#byName.get(n.name) ?? null;
    this.#byName.set(n.name, n);
    this.size++;
  }

  #unindex(n: N): void {
    const first = this.#byName.get(n.name);
    if (first === n) {
      if (n.alias === null) this.#byName.delete(n.name);
      else this.#byName.set(n.name, n.alias);
    } else {
      for (let x = first ?? null; x !== null; x = x.alias) {
        if (x.alias === n) {
          x.alias = n.alias;
          break;
        }
      }
    }
    n.alias = null;
    this.size--;
  }

  override clear(): void {
    this.#byName.clear();
    this.size = 0;
    super.clear();
  }
}

/** One action's presence in a window: it had a call in every window ending in [startMs, lastMs + windowMs). */
interface Entry extends Linked<Entry>, Named<Entry> {
  /** `service:action`: `scope` and `name` split it. */
  action: string;
  startMs: number;
  lastMs: number;
  /** The earliest call kept: replaced once it has left the window (see `#see`), so a finding shows recent calls. */
  evidence: AuditEvent;
  /** `evidence.eventTimeMs`, here to spare a look at the evidence on most calls. */
  evidenceMs: number;
}

/** The actions of one dimension kept in a principal's window, least recently observed first: the order records keep and trimming and eviction follow. */
class Dimension extends LruMap<Entry> {
  /** Whether a crossing fires: false from a finding until an event finds the count below the threshold again. */
  armed = true;
  /** Where the latest finding was judged; −∞ if none. */
  firedMs = Number.NEGATIVE_INFINITY;
}

/** A principal's place among those with actions kept (see `BreadthDetector.#withWindows`). */
interface WindowLink extends Linked<WindowLink> {
  p: PrincipalState;
  listed: boolean;
}

class PrincipalState implements Linked<PrincipalState>, Named<PrincipalState> {
  /** Its changelog key, `${accountId}\u0000${principal}` of its first event; `scope` and `name` split it. */
  readonly key: string;
  readonly scope: string;
  readonly name: string;
  readonly accountId: string;
  readonly principal: string;
  principalType: string;
  firstMs: number;
  lastMs: number;
  /** When it was last observed, in observations of this detector: the LRU order, which records do not carry. */
  seq: number;
  /**
   * Daily peaks, oldest day first, three numbers a day: the UTC day number (ms / DAY_MS), then by
   * dimension the highest distinct count that day (a fired burst counts as threshold − 1).
   */
  readonly days: number[] = [];
  /** The day `baselines` are for; NaN when a change to `days` may have changed them. */
  baselineDay = Number.NaN;
  /** By dimension, the highest peak of the historyDays days before `baselineDay`: the same for a whole day of events. */
  readonly baselines: [number, number] = [0, 0];
  readonly dims: [Dimension, Dimension] = [new Dimension(), new Dimension()];
  readonly window: WindowLink = { p: this, listed: false, prev: null, next: null };
  /** Whether `BreadthDetector.#dirty` holds it, which then needs no update. */
  dirty = false;
  /** Dropped from the detector: a stale `BreadthDetector.#last`. */
  gone = false;
  prev: PrincipalState | null = null;
  next: PrincipalState | null = null;
  alias: PrincipalState | null = null;

  constructor(
    key: string,
    [scope, name]: [string, string],
    accountId: string,
    principal: string,
    principalType: string,
    firstMs: number,
    lastMs: number,
    seq: number,
  ) {
    this.key = key;
    this.scope = scope;
    this.name = name;
    this.accountId = accountId;
    this.principal = principal;
    this.principalType = principalType;
    this.firstMs = firstMs;
    this.lastMs = lastMs;
    this.seq = seq;
  }
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
  /** Least recently observed first: the order eviction and the idle sweep follow. */
  readonly #principals = new LruMap<PrincipalState>();
  /**
   * Principals with actions kept, least recently observed first, so `advance` walks only the
   * principals whose windows have passed (an observed principal trims its own, see `#trim`).
   */
  readonly #withWindows = new Order<WindowLink>();
  /** The latest principal observed: the events topic is keyed by principal, so the next event is often its too. */
  #last: PrincipalState | null = null;
  /** The evidence copy of the event being observed, once made: both dimensions keep the same one, which lets a record write it once. */
  #copy: AuditEvent | null = null;
  #entryCount = 0;
  #watermarkMs = Number.NEGATIVE_INFINITY;
  #lateEvents = 0;
  /** Observations so far; the next one's `seq`. */
  #tick = 0;
  /** Keys of principals changed (or gone: null) since the last `drainChanges`, in the order they first changed. */
  readonly #dirty = new Map<string, PrincipalState | null>();
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

  /**
   * Counts the event's action (and, when denied, its denied action); returns the findings it
   * triggers, `actions` first. Runs on every event: the common one, a principal calling an action
   * already in its window, costs two lookups, a few writes and a count of the window.
   */
  observe(event: AuditEvent): BreadthFinding[] {
    const t = event.eventTimeMs;
    if (t < this.#watermarkMs - this.#windowMs) {
      this.#lateEvents++;
      this.#metaDirty = true;
      return [];
    }
    let p = this.#last;
    // Its key's parts are the event's exactly when the event builds its key (a scope holds no NUL).
    if (p === null || p.gone || p.name !== event.principal || p.scope !== event.accountId) {
      p =
        (event.accountId.includes('\u0000')
          ? this.#principals.get(...splitKey(principalKey(event.accountId, event.principal), '\u0000'))
          : this.#principals.get(event.accountId, event.principal)) ?? null;
    }
    // Silent past its history, a principal has no baseline left: it starts over, as a sweep would have made it.
    if (p !== null && t - p.lastMs > this.#historyDays * DAY_MS) {
      this.#drop(p);
      p = null;
    }
    if (p === null) {
      const key = principalKey(event.accountId, event.principal);
      const parts: [string, string] = event.accountId.includes('\u0000') ? splitKey(key, '\u0000') : [event.accountId, event.principal];
      p = new PrincipalState(key, parts, event.accountId, event.principal, event.principalType, t, t, 0);
      this.#principals.add(p);
      if (this.#principals.size > this.#maxPrincipals) this.#evictPrincipal();
    } else {
      this.#principals.toEnd(p);
      this.#trim(p);
    }
    this.#last = p;
    const previousMs = p.lastMs;
    p.seq = this.#tick++;
    p.principalType = event.principalType;
    if (t < p.firstMs) p.firstMs = t;
    if (t > p.lastMs) {
      p.lastMs = t;
      pruneDays(p, this.#historyDays);
    }
    this.#markDirty(p);
    this.#metaDirty = true;

    const out: BreadthFinding[] = [];
    if (event.service.includes(':')) {
      const [service, action] = splitKey(`${event.service}:${event.action}`, ':');
      this.#see(p, ACTIONS, service, action, event, previousMs, out);
      if (isDenied(event.errorCode)) this.#see(p, DENIED, service, action, event, previousMs, out);
    } else {
      this.#see(p, ACTIONS, event.service, event.action, event, previousMs, out);
      if (isDenied(event.errorCode)) this.#see(p, DENIED, event.service, event.action, event, previousMs, out);
    }
    this.#copy = null;
    if (p.window.listed) {
      this.#withWindows.toEnd(p.window);
    } else {
      this.#withWindows.append(p.window);
      p.window.listed = true;
    }
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
    for (let link = this.#withWindows.head; link !== null; link = this.#withWindows.head) {
      const p = link.p;
      if (p.lastMs > expiredBy) break;
      for (const dim of p.dims) {
        this.#entryCount -= dim.size;
        dim.clear();
      }
      this.#withWindows.remove(link);
      link.listed = false;
      this.#markDirty(p);
    }
    // Daily peaks are pruned as each principal's days roll (observe); idle principals go here.
    const idleBefore = watermarkMs - this.#historyDays * DAY_MS;
    for (let p = this.#principals.head; p !== null && p.lastMs < idleBefore; p = this.#principals.head) this.#drop(p);
  }

  /**
   * State changed since the last drain: `[key, JSON]` per changed principal, `[key, null]` for one
   * evicted, idle or otherwise gone, and `['meta', JSON]` for the detector-wide state (watermark,
   * late events, observation count) when it changed. Written to a compacted changelog, the latest
   * value of each key is what `fromRecords` needs. O(changed principals).
   */
  drainChanges(): Array<[string, string | null]> {
    const out: Array<[string, string | null]> = [];
    for (const [key, p] of this.#dirty) {
      if (p === null) {
        out.push([key, null]);
      } else {
        p.dirty = false;
        out.push([key, encodePrincipal(key, p)]);
      }
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
    // The LRU order eviction and the idle sweep follow: least recently observed first.
    restored.sort(([ka, a], [kb, b]) => a.seq - b.seq || cmp(ka, kb));
    for (const [, p] of restored) {
      // A key given twice keeps its first place with its last value, as a Map set twice would.
      const old = d.#principals.get(p.scope, p.name);
      if (old === undefined) d.#principals.add(p);
      else d.#principals.replace(old, p);
      if (old?.window.listed === true) {
        d.#withWindows.replace(old.window, p.window);
        old.window.listed = false;
        p.window.listed = true;
      } else if (p.dims.some((dim) => dim.size > 0)) {
        d.#withWindows.append(p.window);
        p.window.listed = true;
      }
      for (const dim of p.dims) d.#entryCount += dim.size;
    }
    while (d.#principals.size > d.#maxPrincipals) d.#evictPrincipal();
    for (let p = d.#principals.head; p !== null; p = p.next) {
      for (const dim of p.dims) while (dim.size > d.#maxActions) d.#evictAction(p, dim);
    }
    return d;
  }

  /** Events from watermark − windowMs on are accepted, and count actions called a window before them. */
  #expiredByMs(): number {
    return this.#watermarkMs - 2 * this.#windowMs;
  }

  #markDirty(p: PrincipalState): void {
    if (p.dirty) return;
    p.dirty = true;
    this.#dirty.set(p.key, p);
  }

  /** Drops the actions of a principal being observed that no event can count any more, least recently observed first, up to the first still needed. */
  #trim(p: PrincipalState): void {
    const expiredBy = this.#expiredByMs();
    for (const dim of p.dims) {
      for (let e = dim.head; e !== null && e.lastMs <= expiredBy; e = dim.head) {
        dim.delete(e);
        this.#entryCount--;
      }
    }
  }

  /** The event without `raw`, copied once per observation, and only when an entry keeps it. */
  #evidence(event: AuditEvent): AuditEvent {
    this.#copy ??= withoutRaw(event);
    return this.#copy;
  }

  /** Counts the call of `action` of `service` (as `splitKey` has them) in dimension `d`, and judges what that changed. */
  #see(p: PrincipalState, d: number, service: string, action: string, event: AuditEvent, previousMs: number, out: BreadthFinding[]): void {
    const dim = p.dims[d] as Dimension;
    const t = event.eventTimeMs;
    const w = this.#windowMs;
    const e = dim.get(service, action);
    // The action's presence before this call, where it counted already.
    let wasFromMs = Number.POSITIVE_INFINITY;
    let wasUntilMs = Number.NEGATIVE_INFINITY;
    if (e === undefined) {
      dim.add(newEntry(`${event.service}:${event.action}`, service, action, t, t, this.#evidence(event)));
      this.#entryCount++;
      if (dim.size > this.#maxActions) this.#evictAction(p, dim);
    } else if (t >= e.lastMs + w) {
      // Absent for a whole window before this call: a new presence.
      wasFromMs = e.startMs;
      wasUntilMs = e.lastMs + w;
      e.startMs = t;
      e.lastMs = t;
      e.evidence = this.#evidence(event);
      e.evidenceMs = t;
      dim.toEnd(e);
    } else if (t <= e.startMs - w) {
      // A presence a whole window before the one kept: one presence per action is kept, so this
      // late call is not counted (too late to matter unless the watermark lags by a window).
      return;
    } else {
      wasFromMs = e.startMs;
      wasUntilMs = e.lastMs + w;
      if (t < e.startMs) e.startMs = t;
      if (t > e.lastMs) e.lastMs = t;
      // The evidence is the earliest call in the principal's current window that was seen since
      // the last one left it: a finding shows calls of its burst, not of hours ago.
      const windowStartMs = p.lastMs - w;
      if (t > windowStartMs && (e.evidenceMs <= windowStartMs || t < e.evidenceMs)) {
        e.evidence = this.#evidence(event);
        e.evidenceMs = t;
      }
      dim.toEnd(e);
    }
    if (t >= previousMs) {
      this.#judge(p, d, event, t, true, out);
      return;
    }
    // An out of order event changed the past: it is judged at every point up to the principal's
    // latest event where an action's presence began (the count only rises there) and that its own
    // call newly covers (elsewhere nothing changed).
    const later = new Set<number>();
    for (let x = dim.head; x !== null; x = x.next) if (x.startMs > t && x.startMs <= previousMs) later.add(x.startMs);
    const points = [t, ...[...later].sort((a, b) => a - b)];
    for (const atMs of points) if (atMs < wasFromMs || atMs >= wasUntilMs) this.#judge(p, d, event, atMs, false, out);
  }

  /** Judges the count at `atMs`: the event's time or, out of order, a later point it changed. */
  #judge(p: PrincipalState, d: number, event: AuditEvent, atMs: number, inOrder: boolean, out: BreadthFinding[]): void {
    const dim = p.dims[d] as Dimension;
    const distinct = countAt(dim, atMs, this.#windowMs);
    const day = Math.floor(atMs / DAY_MS);
    if (day !== p.baselineDay) updateBaselines(p, day, this.#historyDays);
    const baselinePeak = p.baselines[d] as number;
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
    const inWindow: Entry[] = [];
    for (let e = (p.dims[d] as Dimension).head; e !== null; e = e.next) if (present(e, atMs, w)) inWindow.push(e);
    inWindow.sort((a, b) => a.evidenceMs - b.evidenceMs || cmp(a.action, b.action));
    return {
      kind: KINDS[d] as BreadthKind,
      accountId: p.accountId,
      principal: p.principal,
      principalType: p.principalType,
      sessionName: event.attributes.sessionName ?? null,
      region: event.region,
      windowStartMs: (inWindow[0] as Entry).evidenceMs,
      timeMs: event.eventTimeMs,
      distinct,
      threshold,
      baselinePeak,
      actions: inWindow.slice(0, MAX_ACTIONS_LISTED).map((e) => e.action),
      evidences: inWindow.slice(0, this.#maxEvidences).map((e) => e.evidence),
    };
  }

  #drop(p: PrincipalState): void {
    this.#principals.delete(p);
    if (p.window.listed) {
      this.#withWindows.remove(p.window);
      p.window.listed = false;
    }
    for (const dim of p.dims) this.#entryCount -= dim.size;
    this.#dirty.set(p.key, null);
    p.gone = true;
  }

  #evictPrincipal(): void {
    if (this.#principals.head !== null) this.#drop(this.#principals.head);
  }

  #evictAction(p: PrincipalState, dim: Dimension): void {
    if (dim.head === null) return;
    dim.delete(dim.head);
    this.#entryCount--;
    this.#markDirty(p);
  }
}

function principalKey(accountId: string, principal: string): string {
  return `${accountId}\u0000${principal}`;
}

/**
 * A key's parts for `LruMap`, split at the first `separator`: for `principalKey` the account and
 * the principal unless the account holds a NUL, for `service:action` the service and the action
 * unless the service holds a colon. Equal keys, equal parts, as when the key itself was looked up.
 */
function splitKey(key: string, separator: string): [string, string] {
  const at = key.indexOf(separator);
  return [key.slice(0, at), key.slice(at + 1)];
}

/**
 * The event without `raw`, as `const { raw, ...rest } = event` makes it (the same keys in the same
 * order, which a finding's evidence JSON shows), but written out for the usual shape: the rest
 * pattern is a runtime call of about a microsecond, and on realistic traffic an entry keeps a new
 * copy for some 40 % of events.
 */
function withoutRaw(event: AuditEvent): AuditEvent {
  let i = 0;
  for (const k in event) {
    if (k === 'raw') continue;
    if (k !== EVENT_KEYS[i++]) return restWithoutRaw(event);
  }
  if (i !== EVENT_KEYS.length || Object.getOwnPropertySymbols(event).length > 0) return restWithoutRaw(event);
  return {
    eventId: event.eventId,
    eventTimeMs: event.eventTimeMs,
    source: event.source,
    accountId: event.accountId,
    region: event.region,
    principal: event.principal,
    principalType: event.principalType,
    service: event.service,
    action: event.action,
    readOnly: event.readOnly,
    errorCode: event.errorCode,
    sourceIp: event.sourceIp,
    userAgent: event.userAgent,
    attributes: event.attributes,
  };
}

function restWithoutRaw(event: AuditEvent): AuditEvent {
  const { raw: _raw, ...rest } = event;
  return rest;
}

function newEntry(action: string, scope: string, name: string, startMs: number, lastMs: number, evidence: AuditEvent): Entry {
  return { action, scope, name, alias: null, startMs, lastMs, evidence, evidenceMs: evidence.eventTimeMs, prev: null, next: null };
}

function present(e: Entry, atMs: number, windowMs: number): boolean {
  return e.startMs <= atMs && e.lastMs + windowMs > atMs;
}

/** O(actions kept): a few for most principals, and never more than maxActionsPerPrincipal. */
function countAt(dim: Dimension, atMs: number, windowMs: number): number {
  let n = 0;
  for (let e = dim.head; e !== null; e = e.next) if (present(e, atMs, windowMs)) n++;
  return n;
}

/** By dimension, the highest peak of the historyDays completed days before `day`; days without activity are absent, i.e. 0. */
function updateBaselines(p: PrincipalState, day: number, historyDays: number): void {
  let actions = 0;
  let denied = 0;
  const days = p.days;
  for (let i = 0; i < days.length; i += 3) {
    const dayOf = days[i] as number;
    if (dayOf >= day) break;
    if (dayOf >= day - historyDays) {
      if ((days[i + 1] as number) > actions) actions = days[i + 1] as number;
      if ((days[i + 2] as number) > denied) denied = days[i + 2] as number;
    }
  }
  p.baselineDay = day;
  p.baselines[ACTIONS] = actions;
  p.baselines[DENIED] = denied;
}

function recordPeak(p: PrincipalState, day: number, d: number, value: number): void {
  if (value <= 0) return;
  const days = p.days;
  let i = days.length - 3;
  while (i >= 0 && (days[i] as number) > day) i -= 3;
  if (i < 0 || days[i] !== day) {
    i += 3;
    days.splice(i, 0, day, 0, 0);
    p.baselineDay = Number.NaN;
  }
  const at = i + 1 + d;
  if (value > (days[at] as number)) {
    days[at] = value;
    if (day < p.baselineDay) p.baselineDay = Number.NaN;
  }
}

/** Keeps the days a baseline can still use: an event a day behind the principal's latest one included. */
function pruneDays(p: PrincipalState, historyDays: number): void {
  const keepFrom = Math.floor(p.lastMs / DAY_MS) - historyDays - 1;
  const days = p.days;
  let n = 0;
  while (n < days.length && (days[n] as number) < keepFrom) n += 3;
  if (n > 0) {
    days.splice(0, n);
    p.baselineDay = Number.NaN;
  }
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
  const actions = d === DENIED ? p.dims[ACTIONS] : null;
  for (let e = dim.head; e !== null; e = e.next) {
    const shared = actions?.get(e.scope, e.name)?.evidence === e.evidence;
    if (shared) context.previous = e.evidence;
    out.push(e.action, base - e.startMs, base - e.lastMs, shared ? 0 : encodeEvidence(e.evidence, p, context));
  }
  return out;
}

function encodePrincipal(key: string, p: PrincipalState): string {
  const today = Math.floor(p.lastMs / DAY_MS);
  const days: number[] = [];
  for (let i = 0; i < p.days.length; i += 3) days.push(today - (p.days[i] as number), p.days[i + 1] as number, p.days[i + 2] as number);
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
  const dim = new Dimension();
  dim.armed = r[0] === 1;
  dim.firedMs = r[1] === null ? Number.NEGATIVE_INFINITY : base - r[1];
  for (let i = 2; i < r.length; i += 4) {
    const [action, startAge, lastAge, ev] = r.slice(i, i + 4) as unknown[];
    if (typeof action !== 'string' || !isTime(startAge) || !isTime(lastAge)) throw stateCorrupt(key, `bad ${KINDS[d]} entry at ${i}`);
    const [service, name] = splitKey(action, ':');
    let evidence: AuditEvent | undefined;
    if (ev !== 0 || d !== DENIED) evidence = decodeEvidence(key, ev, action, p, context);
    else if (action.includes(':')) evidence = p.dims[ACTIONS].get(service, name)?.evidence;
    if (evidence === undefined) throw stateCorrupt(key, `denied ${action} shares an evidence its actions entry lacks`);
    context.previous = evidence;
    const kept = dim.get(service, name);
    // An action given twice keeps its first place with its last value, as a Map set twice would.
    if (kept === undefined) dim.add(newEntry(action, service, name, base - startAge, base - lastAge, evidence));
    else dim.replace(kept, newEntry(action, service, name, base - startAge, base - lastAge, evidence));
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
  const p = new PrincipalState(
    key,
    splitKey(key, '\u0000'),
    identity.length === 2 ? (identity[0] as string) : key.slice(0, nul),
    identity.length === 2 ? (identity[1] as string) : key.slice(nul + 1),
    principalType,
    lastMs - span,
    lastMs,
    seq,
  );
  const today = Math.floor(lastMs / DAY_MS);
  for (let i = 0; i < days.length; i += 3) {
    p.days.push(today - (days[i] as number), days[i + 1] as number, days[i + 2] as number);
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
