import type { AuditEvent } from '../../contracts/types.ts';
import { deterministicUuid } from '../../emit/ids.ts';
import { ConfigError, ErrorCodes, TrailwatchError } from '../../errors.ts';
import {
  DEFAULT_CATALOG,
  maxSeverity,
  SEVERITIES,
  type SensitivityCatalog,
  type SensitivityCategory,
  type Severity,
  severityRank,
  shiftSeverity,
} from './catalog.ts';

/**
 * First-seen detection ("new value" in SIEM terms): a principal doing what it never did before.
 * Per principal (account + normalized principal) the detector remembers every action
 * (`service:action`), region and error code it has shown, each with the latest event time it was
 * seen. Once the principal has been watched for `learningMs`, a value it has not shown within
 * `forgetMs` is a first-seen hit; hits of one principal within `groupMs` fold into one finding.
 *
 * Pure and synchronous like the rate engine: `observe` events in (roughly) event time,
 * `advance(watermarkMs)` to close windows, `snapshot()`/`restore()` for the whole state, and
 * `drainChanges()`/`fromRecords()` for a compacted changelog written once per batch: one record
 * per principal changed since the last drain, plus `meta` for the detector-wide state.
 *
 * Out of order events: a value counts as known when it was seen anywhere in
 * [t - forgetMs, ∞) — an observation at a *later* event time that arrived first counts too, so a
 * late event never raises a false first-seen. When a late event shows a value that an open window
 * already holds as a hit at a later time, the hit moves to the earlier event (or is dropped, if
 * the principal was still learning then). Hits already emitted are never revised.
 *
 * Dormancy: a principal silent for its `forgetMs` has forgotten everything, so it starts over,
 * learning again, rather than flooding one finding with everything it used to do.
 *
 * Bounded state: at most `maxPrincipals` principals and `maxValuesPerPrincipal` values each, both
 * evicted least recently observed first. An evicted value shows up as first-seen if it comes back
 * (a false positive, grouped into one finding); an evicted principal learns again (silence).
 * Open windows of an evicted principal are still emitted.
 */

export type FirstSeenDimension = 'action' | 'region' | 'errorCode';

/** How a kind of principal is judged. */
export interface PrincipalProfile {
  /** No judgement until the principal has been watched this long since its first event. */
  learningMs: number;
  /** A value not seen for this long is forgotten: seen again, it is first-seen again. */
  forgetMs: number;
  /** Severity of a first-seen value the catalog does not list: a new region, error code, or ordinary action. */
  baseSeverity: Severity;
  /** Levels the catalog's severity of a first-seen sensitive action moves for this kind of principal. */
  catalogShift: number;
}

export interface FirstSeenOptions extends Partial<PrincipalProfile> {
  /**
   * Profiles by principalType (`IAMUser`, `AssumedRole`, `Root`, `AWSService`, …), merged over
   * DEFAULT_PROFILES key by key, then over the top-level fields. The pseudo type `Human` applies
   * on top to principals that look like people (see `looksHuman`).
   */
  profiles?: Record<string, Partial<PrincipalProfile>>;
  /** First-seen hits of one principal within this long of the window's first hit make one finding. */
  groupMs?: number;
  maxPrincipals?: number;
  maxValuesPerPrincipal?: number;
  /** Items a finding lists at most (the most severe first); `total` counts them all. */
  maxItemsPerFinding?: number;
  catalog?: SensitivityCatalog;
}

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
/** Forgotten values are swept from memory at most once per this much watermark progress. */
const SWEEP_EVERY_MS = 60 * MINUTE_MS;
const SNAPSHOT_VERSION = 1;
/** First element of every changelog record (principal and meta). */
const RECORD_VERSION = 1;
/** The changelog key of the detector-wide record; principal keys all hold a NUL, so never collide with it. */
const META_KEY = 'meta';
/** Action value keys kept for sharing at most: more than AWS has actions, so only odd input fills it, and then it starts over. */
const MAX_ACTION_KEYS = 50_000;

export const FIRST_SEEN_DEFAULTS = {
  learningMs: 7 * DAY_MS, // a week: a whole working cycle, weekend included
  forgetMs: 30 * DAY_MS, // a month: monthly jobs stay known
  baseSeverity: 'low',
  catalogShift: 0,
  groupMs: 10 * MINUTE_MS,
  maxPrincipals: 100_000,
  maxValuesPerPrincipal: 1_000, // a busy deploy role shows a few hundred actions
  maxItemsPerFinding: 50,
} satisfies Required<Omit<FirstSeenOptions, 'profiles' | 'catalog'>>;

/**
 * People explore, so their new behaviour is ranked lower; workload roles run fixed code, so new
 * behaviour means a change or a compromise. Root should barely act at all.
 */
export const DEFAULT_PROFILES: Readonly<Record<string, Partial<PrincipalProfile>>> = Object.freeze({
  AssumedRole: { baseSeverity: 'medium', catalogShift: 1 },
  // IAM users are mostly people with keys (or a person's old script): judged as people are.
  IAMUser: { baseSeverity: 'informational', catalogShift: -2 },
  Root: { baseSeverity: 'high', catalogShift: 1 },
  AWSService: { baseSeverity: 'informational', catalogShift: -1 },
  // An administrator trying a sensitive action is routine; only what blinds the audit trail or
  // leaves the organization (critical in the catalog) stands out of a person's exploring.
  Human: { baseSeverity: 'informational', catalogShift: -2 },
});

const HUMAN = 'Human';
const SSO_ROLE = /:assumed-role\/AWSReservedSSO_/;
const CONSOLE_AGENT = /(?:console|signin)\.amazonaws\.com|^Mozilla\//;
const DIMENSION_ORDER: readonly FirstSeenDimension[] = ['action', 'region', 'errorCode'];
const DIMENSION_CODE: Record<FirstSeenDimension, string> = { action: 'a:', region: 'r:', errorCode: 'e:' };
const CODE_DIMENSION: Readonly<Record<string, FirstSeenDimension>> = { 'a:': 'action', 'r:': 'region', 'e:': 'errorCode' };

/**
 * Whether the event's principal is a person: Identity Center and SAML users, SSO permission-set
 * sessions (`AWSReservedSSO_…` roles), IAM users on the console. Sticky per principal.
 */
export function looksHuman(event: AuditEvent): boolean {
  switch (event.principalType) {
    case 'IdentityCenterUser':
    case 'SAMLUser':
      return true;
    case 'AssumedRole':
      return SSO_ROLE.test(event.principal);
    case 'IAMUser':
      return event.userAgent !== null && CONSOLE_AGENT.test(event.userAgent);
    default:
      return false;
  }
}

export interface FirstSeenItem {
  dimension: FirstSeenDimension;
  value: string;
  /** The call that showed the value first. */
  eventId: string;
  eventTimeMs: number;
  severity: Severity;
  /** Catalog category of a sensitive action; null otherwise. */
  category: SensitivityCategory | null;
}

export interface FirstSeenFinding {
  /** Same principal and window start, same id: a replay emits the same finding. */
  id: string;
  accountId: string;
  principal: string;
  principalType: string;
  human: boolean;
  /** Event time of the window's first hit. */
  windowStartMs: number;
  /** windowStartMs + groupMs (exclusive). */
  windowEndMs: number;
  /** The highest item severity. */
  severity: Severity;
  /** Catalog categories among all hits, not only the listed ones. */
  categories: SensitivityCategory[];
  /** At most maxItemsPerFinding items, the most severe, in event time order. */
  items: FirstSeenItem[];
  total: number;
}

interface Hit {
  dimension: FirstSeenDimension;
  value: string;
  eventId: string;
  eventTimeMs: number;
  category: SensitivityCategory | null;
  /** The catalog's severity before the principal's profile shifts it; null when not listed. */
  catalogSeverity: Severity | null;
}

interface Group {
  startMs: number;
  /** By value key; at most one hit per value. */
  hits: Map<string, Hit>;
}

interface Identity {
  accountId: string;
  principal: string;
  principalType: string;
  human: boolean;
}

interface Detached {
  identity: Identity;
  group: Group;
}

interface PrincipalState extends Identity, Linked<PrincipalState>, ObserveMemo {
  /** `${accountId}\u0000${principal}`, built once: its key in the principal map, the dirty set and the changelog. */
  readonly key: string;
  firstMs: number;
  lastMs: number;
  /** When it was last observed, in observations of this detector: the principals' LRU order, which changelog records do not carry. */
  seq: number;
  /** Value key → its entry. */
  values: Map<string, Seen>;
  /** The same entries, least recently observed first. */
  valueOrder: Recency<Seen>;
  /** Open windows, by start. */
  groups: Group[];
}

/** A value the principal has shown, with the latest event time it was seen; updated in place. */
interface Seen extends Linked<Seen> {
  readonly key: string;
  lastMs: number;
}

/**
 * What `observe` remembers of a principal's last event so that a repeat costs little: all of it
 * derived from the state and the events, never snapshotted or recorded.
 */
interface ObserveMemo {
  /** profileOf(principalType, human); null once either changes. */
  profile: PrincipalProfile | null;
  /** The principalType and userAgent `looksHuman` last judged not human; the principal is the state's own. */
  notHumanType: string | null;
  notHumanAgent: string | null;
  /**
   * The last action, region and error code seen, each with its value key (consistent with the
   * empty strings from the start) and the entry it had then, which may since have gone.
   */
  service: string;
  action: string;
  actionKey: string;
  actionSeen: Seen | null;
  region: string;
  regionKey: string;
  regionSeen: Seen | null;
  errorCode: string;
  errorKey: string;
  errorSeen: Seen | null;
  /** The `drainChanges` count when `observe` last put the key in the dirty set: if it is the current one, the key is there. */
  drainMarked: number;
}

function principalState(key: string, identity: Identity, firstMs: number, lastMs: number, seq: number): PrincipalState {
  return {
    accountId: identity.accountId,
    principal: identity.principal,
    principalType: identity.principalType,
    human: identity.human,
    older: null,
    newer: null,
    key,
    firstMs,
    lastMs,
    seq,
    values: new Map(),
    valueOrder: new Recency(),
    groups: [],
    profile: null,
    notHumanType: null,
    notHumanAgent: null,
    service: '',
    action: '',
    actionKey: valueKey('action', ':'),
    actionSeen: null,
    region: '',
    regionKey: valueKey('region', ''),
    regionSeen: null,
    errorCode: '',
    errorKey: valueKey('errorCode', ''),
    errorSeen: null,
    drainMarked: -1,
  };
}

/** Restores one value; a key listed twice keeps its first place and its last time, as a Map would. */
function restoreValue(p: PrincipalState, key: string, lastMs: number): void {
  const seen = p.values.get(key);
  if (seen !== undefined) {
    seen.lastMs = lastMs;
    return;
  }
  const added: Seen = { older: null, newer: null, key, lastMs };
  p.values.set(key, added);
  p.valueOrder.push(added);
}

/** The value key of one service's action; the next is another service's action of the same name. */
interface ActionKey {
  service: string;
  key: string;
  next: ActionKey | undefined;
}

interface Linked<T> {
  older: T | null;
  newer: T | null;
}

/**
 * Entries in least recently used order, as a doubly linked list: moving one to the newest end is a
 * few pointer writes, where a Map's delete and set would hash twice and leave holes to compact.
 */
class Recency<T extends Linked<T>> {
  oldest: T | null = null;
  newest: T | null = null;

  push(x: T): void {
    x.older = this.newest;
    x.newer = null;
    if (this.newest === null) this.oldest = x;
    else this.newest.newer = x;
    this.newest = x;
  }

  remove(x: T): void {
    if (x.older === null) this.oldest = x.newer;
    else x.older.newer = x.newer;
    if (x.newer === null) this.newest = x.older;
    else x.newer.older = x.older;
    x.older = null;
    x.newer = null;
  }

  /** Makes x, already listed, the newest. */
  touch(x: T): void {
    if (x === this.newest) return;
    this.remove(x);
    this.push(x);
  }

  /** Puts x, not listed, where `listed` is. */
  replace(listed: T, x: T): void {
    x.older = listed.older;
    x.newer = listed.newer;
    if (x.older === null) this.oldest = x;
    else x.older.newer = x;
    if (x.newer === null) this.newest = x;
    else x.newer.older = x;
    listed.older = null;
    listed.newer = null;
  }

  clear(): void {
    for (let x = this.oldest; x !== null; ) {
      const next: T | null = x.newer;
      x.older = null;
      x.newer = null;
      x = next;
    }
    this.oldest = null;
    this.newest = null;
  }
}

export interface FirstSeenSnapshot {
  version: typeof SNAPSHOT_VERSION;
  watermarkMs: number | null;
  sweptAtMs: number | null;
  /** Least recently observed first. */
  principals: {
    accountId: string;
    principal: string;
    principalType: string;
    human: boolean;
    firstMs: number;
    lastMs: number;
    values: [key: string, lastSeenMs: number][];
    groups: { startMs: number; hits: Hit[] }[];
  }[];
  /** Open windows of evicted principals. */
  detached: (Identity & { startMs: number; hits: Hit[] })[];
}

export interface FirstSeenStateSize {
  principals: number;
  values: number;
  openWindows: number;
}

export class FirstSeenDetector {
  readonly #catalog: SensitivityCatalog;
  readonly #top: Partial<PrincipalProfile>;
  readonly #profiles: Record<string, Partial<PrincipalProfile>>;
  readonly #profileCache = new Map<string, PrincipalProfile>();
  readonly #groupMs: number;
  readonly #maxPrincipals: number;
  readonly #maxValues: number;
  readonly #maxItems: number;
  /** By key; their LRU order is `#order`. */
  readonly #principals = new Map<string, PrincipalState>();
  readonly #order = new Recency<PrincipalState>();
  /**
   * The principals again, by account id then principal, so `observe` finds one without building
   * its key. Holds each state under its own accountId and principal only: an event whose pair
   * differs but joins to the same key (an account id holding a NUL) finds it by key instead.
   */
  readonly #index = new Map<string, Map<string, PrincipalState>>();
  /** Principal keys with open windows, so `advance` does not walk every principal. */
  readonly #withGroups = new Set<string>();
  #detached: Detached[] = [];
  #valueCount = 0;
  #watermarkMs = Number.NEGATIVE_INFINITY;
  #sweptAtMs = Number.NEGATIVE_INFINITY;
  /** Observations so far; the next one's `seq`. */
  #tick = 0;
  /** Principals changed (or gone) since the last `drainChanges`. */
  readonly #dirty = new Set<string>();
  /** `drainChanges` calls so far. */
  #drains = 0;
  /**
   * Action value keys by action name (then service): built once and shared by every principal, so
   * the values maps compare them by pointer and hold one copy.
   */
  readonly #actionKeys = new Map<string, ActionKey>();
  #actionKeyCount = 0;
  /** Whether watermark, sweep time, tick or detached windows changed since the last `drainChanges`. */
  #metaDirty = false;

  constructor(options: FirstSeenOptions = {}) {
    validate(options);
    this.#catalog = options.catalog ?? DEFAULT_CATALOG;
    const { learningMs, forgetMs, baseSeverity, catalogShift } = options;
    this.#top = dropUndefined({ learningMs, forgetMs, baseSeverity, catalogShift });
    this.#profiles = { ...DEFAULT_PROFILES };
    for (const [type, p] of Object.entries(options.profiles ?? {})) {
      this.#profiles[type] = { ...DEFAULT_PROFILES[type], ...dropUndefined(p) };
    }
    this.#groupMs = options.groupMs ?? FIRST_SEEN_DEFAULTS.groupMs;
    this.#maxPrincipals = options.maxPrincipals ?? FIRST_SEEN_DEFAULTS.maxPrincipals;
    this.#maxValues = options.maxValuesPerPrincipal ?? FIRST_SEEN_DEFAULTS.maxValuesPerPrincipal;
    this.#maxItems = options.maxItemsPerFinding ?? FIRST_SEEN_DEFAULTS.maxItemsPerFinding;
  }

  /** The profile a principal of this type (and humanity) is judged by. */
  profileOf(principalType: string, human: boolean): PrincipalProfile {
    const cacheKey = `${human ? 'h' : 'm'}${principalType}`;
    let profile = this.#profileCache.get(cacheKey);
    if (profile === undefined) {
      profile = {
        learningMs: FIRST_SEEN_DEFAULTS.learningMs,
        forgetMs: FIRST_SEEN_DEFAULTS.forgetMs,
        baseSeverity: FIRST_SEEN_DEFAULTS.baseSeverity,
        catalogShift: FIRST_SEEN_DEFAULTS.catalogShift,
        ...this.#top,
        ...dropUndefined(this.#profiles[principalType] ?? {}),
        ...(human ? dropUndefined(this.#profiles[HUMAN] ?? {}) : {}),
      };
      this.#profileCache.set(cacheKey, profile);
    }
    return profile;
  }

  get watermarkMs(): number {
    return this.#watermarkMs;
  }

  get stateSize(): FirstSeenStateSize {
    let openWindows = this.#detached.length;
    for (const key of this.#withGroups) openWindows += this.#principals.get(key)?.groups.length ?? 0;
    return { principals: this.#principals.size, values: this.#valueCount, openWindows };
  }

  /**
   * Records the event's values and, once its principal has learned, collects first-seen hits.
   * It runs on every event, so what repeats from the principal's previous event (its key, profile,
   * humanity, value keys and their LRU order) is remembered rather than redone; see ObserveMemo.
   */
  observe(event: AuditEvent): void {
    const t = event.eventTimeMs;
    let p = this.#index.get(event.accountId)?.get(event.principal);
    let own = p !== undefined;
    if (p === undefined) {
      const key = `${event.accountId}\u0000${event.principal}`;
      p = this.#principals.get(key);
      if (p === undefined) {
        const identity = { accountId: event.accountId, principal: event.principal, principalType: event.principalType, human: false };
        p = principalState(key, identity, t, t, 0);
        own = true;
        this.#principals.set(key, p);
        this.#order.push(p);
        this.#indexAdd(p);
        if (this.#principals.size > this.#maxPrincipals) this.#evictPrincipal();
      }
    }
    this.#order.touch(p);
    // A principal just created passes too: forgetMs is positive.
    if (t - p.lastMs >= this.#profileOfState(p).forgetMs) {
      this.#valueCount -= p.values.size;
      p.values.clear();
      p.valueOrder.clear();
      p.human = false;
      p.profile = null;
      p.firstMs = t;
    }
    p.seq = this.#tick++;
    if (p.drainMarked !== this.#drains) {
      p.drainMarked = this.#drains;
      this.#dirty.add(p.key);
    }
    this.#metaDirty = true;
    if (event.principalType !== p.principalType) {
      p.principalType = event.principalType;
      p.profile = null;
    }
    // The memo of looksHuman assumes the state's own principal; a NUL-joined twin is judged afresh.
    if (!p.human && (own ? this.#looksHuman(p, event) : looksHuman(event))) {
      p.human = true;
      p.profile = null;
    }
    if (t < p.firstMs) p.firstMs = t;
    if (t > p.lastMs) p.lastMs = t;

    const { learningMs, forgetMs } = this.#profileOfState(p);
    const judging = t - p.firstMs >= learningMs;
    const { service, action, region, errorCode } = event;
    const sameAction = service === p.service && action === p.action;
    const sameRegion = region === p.region;
    if (sameAction && sameRegion && (errorCode === null || errorCode === p.errorCode)) {
      // The same values as the principal's last event: if they are still its newest, in this
      // order, touching them again would leave them there, and their entries are at hand.
      const a = p.actionSeen;
      const r = p.regionSeen;
      const e = p.errorSeen;
      const newest = p.valueOrder.newest;
      if (a !== null && r !== null && r.older === a && (errorCode === null ? newest === r : e !== null && e.older === r && newest === e)) {
        this.#see(p, 'action', a.key, a, event, judging, forgetMs, false);
        this.#see(p, 'region', r.key, r, event, judging, forgetMs, false);
        if (errorCode !== null) this.#see(p, 'errorCode', (e as Seen).key, e as Seen, event, judging, forgetMs, false);
        return;
      }
    }
    if (!sameAction) {
      p.service = service;
      p.action = action;
      p.actionKey = this.#actionKey(service, action);
    }
    p.actionSeen = this.#see(p, 'action', p.actionKey, p.values.get(p.actionKey), event, judging, forgetMs, true);
    if (!sameRegion) {
      p.region = region;
      p.regionKey = valueKey('region', region);
    }
    p.regionSeen = this.#see(p, 'region', p.regionKey, p.values.get(p.regionKey), event, judging, forgetMs, true);
    if (errorCode !== null) {
      if (errorCode !== p.errorCode) {
        p.errorCode = errorCode;
        p.errorKey = valueKey('errorCode', errorCode);
      }
      p.errorSeen = this.#see(p, 'errorCode', p.errorKey, p.values.get(p.errorKey), event, judging, forgetMs, true);
    }
  }

  /** Closes the windows the watermark has passed and returns their findings, ordered by window end then principal. */
  advance(watermarkMs: number): FirstSeenFinding[] {
    if (watermarkMs > this.#watermarkMs) {
      this.#watermarkMs = watermarkMs;
      this.#metaDirty = true;
    }
    const wm = this.#watermarkMs;
    const out: FirstSeenFinding[] = [];
    for (const key of this.#withGroups) {
      const p = this.#principals.get(key);
      if (p === undefined) {
        this.#withGroups.delete(key);
        continue;
      }
      while (p.groups.length > 0 && (p.groups[0] as Group).startMs + this.#groupMs <= wm) {
        out.push(this.#finding(p, p.groups.shift() as Group));
        this.#dirty.add(key);
      }
      if (p.groups.length === 0) this.#withGroups.delete(key);
    }
    if (this.#detached.length > 0) {
      const still: Detached[] = [];
      for (const d of this.#detached) {
        if (d.group.startMs + this.#groupMs <= wm) out.push(this.#finding(d.identity, d.group));
        else still.push(d);
      }
      if (still.length < this.#detached.length) this.#metaDirty = true;
      this.#detached = still;
    }
    if (wm - this.#sweptAtMs >= SWEEP_EVERY_MS) this.#sweep(wm);
    return out.sort(
      (a, b) =>
        a.windowEndMs - b.windowEndMs ||
        cmp(a.accountId, b.accountId) ||
        cmp(a.principal, b.principal) ||
        a.windowStartMs - b.windowStartMs,
    );
  }

  snapshot(): FirstSeenSnapshot {
    const finite = (ms: number): number | null => (Number.isFinite(ms) ? ms : null);
    return {
      version: SNAPSHOT_VERSION,
      watermarkMs: finite(this.#watermarkMs),
      sweptAtMs: finite(this.#sweptAtMs),
      principals: listed(this.#order).map((p) => ({
        accountId: p.accountId,
        principal: p.principal,
        principalType: p.principalType,
        human: p.human,
        firstMs: p.firstMs,
        lastMs: p.lastMs,
        values: listed(p.valueOrder).map((seen): [string, number] => [seen.key, seen.lastMs]),
        groups: p.groups.map((g) => ({ startMs: g.startMs, hits: [...g.hits.values()].map((h) => ({ ...h })) })),
      })),
      detached: this.#detached.map((d) => ({
        ...d.identity,
        startMs: d.group.startMs,
        hits: [...d.group.hits.values()].map((h) => ({ ...h })),
      })),
    };
  }

  /** A detector in the state `snapshot` recorded; options are config, not state, and may differ from the snapshotting one. */
  static restore(snapshot: FirstSeenSnapshot, options: FirstSeenOptions = {}): FirstSeenDetector {
    if (snapshot === null || typeof snapshot !== 'object' || snapshot.version !== SNAPSHOT_VERSION || !Array.isArray(snapshot.principals)) {
      throw new TrailwatchError(ErrorCodes.STATE_CORRUPT, `first-seen snapshot: expected version ${SNAPSHOT_VERSION}`, {
        details: { version: (snapshot as { version?: unknown } | null)?.version ?? null },
      });
    }
    const d = new FirstSeenDetector(options);
    d.#watermarkMs = snapshot.watermarkMs ?? Number.NEGATIVE_INFINITY;
    d.#sweptAtMs = snapshot.sweptAtMs ?? Number.NEGATIVE_INFINITY;
    const toGroup = (g: { startMs: number; hits: Hit[] }): Group => ({
      startMs: g.startMs,
      hits: new Map(g.hits.map((h) => [valueKey(h.dimension, h.value), { ...h }])),
    });
    for (const r of snapshot.principals) {
      const key = `${r.accountId}\u0000${r.principal}`;
      const identity = { accountId: r.accountId, principal: r.principal, principalType: r.principalType, human: r.human };
      const p = principalState(key, identity, r.firstMs, r.lastMs, d.#tick++);
      for (const [vkey, lastMs] of r.values) restoreValue(p, vkey, lastMs);
      p.groups = r.groups.map(toGroup);
      // A key listed twice keeps its first place and its last state, as a Map would.
      const replaced = d.#principals.get(key);
      if (replaced === undefined) {
        d.#order.push(p);
      } else {
        d.#unindex(replaced);
        d.#order.replace(replaced, p);
      }
      d.#principals.set(key, p);
      d.#indexAdd(p);
      d.#valueCount += p.values.size;
      if (p.groups.length > 0) d.#withGroups.add(key);
      // None of it is in the changelog this detector will write: its first drain is everything,
      // including a tombstone for each principal the bounds below drop.
      d.#dirty.add(key);
    }
    for (const r of snapshot.detached) {
      const { startMs, hits, ...identity } = r;
      d.#detached.push({ identity, group: toGroup({ startMs, hits }) });
    }
    d.#metaDirty = true;
    d.#applyBounds();
    return d;
  }

  /**
   * State changed since the last drain: `[key, JSON]` per changed principal, `[key, null]` for one
   * evicted, swept or otherwise gone, and `['meta', JSON]` for the detector-wide state (watermark,
   * sweep time, observation count, open windows of evicted principals) when it changed. Written to
   * a compacted changelog, the latest value of each key is what `fromRecords` needs. O(changed
   * principals) (plus the open windows of evicted principals, when meta changed).
   */
  drainChanges(): Array<[string, string | null]> {
    const out: Array<[string, string | null]> = [];
    for (const key of this.#dirty) {
      const p = this.#principals.get(key);
      out.push([key, p === undefined ? null : encodePrincipal(key, p)]);
    }
    this.#dirty.clear();
    this.#drains++;
    if (this.#metaDirty) {
      out.push([META_KEY, this.#encodeMeta()]);
      this.#metaDirty = false;
    }
    return out;
  }

  /**
   * A detector in the state given by the latest value of each key `drainChanges` produced
   * (tombstoned keys already removed by the caller), in any order. Options are config, not state,
   * and may differ from the writer's: what tighter bounds drop shows in the next drain.
   */
  static fromRecords(records: Iterable<[string, string]>, options: FirstSeenOptions = {}): FirstSeenDetector {
    const d = new FirstSeenDetector(options);
    // By key, so that a later record of a key replaces an earlier one.
    const restored = new Map<string, PrincipalState>();
    let tick = 0;
    for (const [key, value] of records) {
      if (key === META_KEY) {
        const meta = decodeMeta(value);
        d.#watermarkMs = meta.watermarkMs;
        d.#sweptAtMs = meta.sweptAtMs;
        d.#detached = meta.detached;
        tick = Math.max(tick, meta.tick);
        continue;
      }
      const p = decodePrincipal(key, value);
      restored.set(key, p);
      tick = Math.max(tick, p.seq + 1);
    }
    d.#tick = tick;
    // Map order is the LRU order eviction follows: least recently observed first.
    const order = [...restored].sort(([ka, a], [kb, b]) => a.seq - b.seq || cmp(ka, kb));
    for (const [key, p] of order) {
      d.#principals.set(key, p);
      d.#order.push(p);
      d.#indexAdd(p);
      d.#valueCount += p.values.size;
      if (p.groups.length > 0) d.#withGroups.add(key);
    }
    d.#applyBounds();
    return d;
  }

  /** Tighter bounds than the writing detector had take effect on restore; what they drop is a change. */
  #applyBounds(): void {
    while (this.#principals.size > this.#maxPrincipals) this.#evictPrincipal();
    for (let p = this.#order.oldest; p !== null; p = p.newer) while (p.values.size > this.#maxValues) this.#evictValue(p);
  }

  /** The profile the principal is judged by now, remembered until its type or humanity changes. */
  #profileOfState(p: PrincipalState): PrincipalProfile {
    if (p.profile === null) p.profile = this.profileOf(p.principalType, p.human);
    return p.profile;
  }

  /** looksHuman(event) for an event of the principal itself, remembering the type and agent that were not. */
  #looksHuman(p: PrincipalState, event: AuditEvent): boolean {
    if (event.principalType === p.notHumanType && event.userAgent === p.notHumanAgent) return false;
    if (looksHuman(event)) return true;
    p.notHumanType = event.principalType;
    p.notHumanAgent = event.userAgent;
    return false;
  }

  #actionKey(service: string, action: string): string {
    const head = this.#actionKeys.get(action);
    for (let k = head; k !== undefined; k = k.next) if (k.service === service) return k.key;
    const key = valueKey('action', `${service}:${action}`);
    if (this.#actionKeyCount >= MAX_ACTION_KEYS) {
      this.#actionKeys.clear();
      this.#actionKeyCount = 0;
      this.#actionKeys.set(action, { service, key, next: undefined });
    } else {
      this.#actionKeys.set(action, { service, key, next: head });
    }
    this.#actionKeyCount++;
    return key;
  }

  /** Puts the principal in the index under its own pair, if its key is that pair's (a decoded record's may not be). */
  #indexAdd(p: PrincipalState): void {
    if (p.key !== `${p.accountId}\u0000${p.principal}`) return;
    let byPrincipal = this.#index.get(p.accountId);
    if (byPrincipal === undefined) {
      byPrincipal = new Map();
      this.#index.set(p.accountId, byPrincipal);
    }
    byPrincipal.set(p.principal, p);
  }

  /** Takes the principal out of the index, once it has left the principal map. */
  #unindex(p: PrincipalState): void {
    const byPrincipal = this.#index.get(p.accountId);
    if (byPrincipal?.get(p.principal) === p) {
      byPrincipal.delete(p.principal);
      if (byPrincipal.size === 0) this.#index.delete(p.accountId);
    }
  }

  #encodeMeta(): string {
    const detached = this.#detached.map(({ identity, group }) => {
      const out: unknown[] = [identity.accountId, identity.principal, identity.principalType, identity.human ? 1 : 0, group.startMs];
      for (const h of group.hits.values()) out.push(encodeHit(h, h.eventTimeMs - group.startMs));
      return out;
    });
    const finite = (ms: number): number | null => (Number.isFinite(ms) ? ms : null);
    return JSON.stringify([RECORD_VERSION, finite(this.#watermarkMs), finite(this.#sweptAtMs), this.#tick, detached]);
  }

  /**
   * Records one value of the event (by its value key and its entry, if it has one) and collects it
   * as a hit if it is new; returns its entry. `reorder` false promises the value is among the
   * newest ones in the order this observation touches them, so moving it to the end would change
   * nothing.
   */
  #see(
    p: PrincipalState,
    dimension: FirstSeenDimension,
    key: string,
    seen: Seen | undefined,
    event: AuditEvent,
    judging: boolean,
    forgetMs: number,
    reorder: boolean,
  ): Seen {
    const t = event.eventTimeMs;
    const last = seen?.lastMs;
    const forgotten = last === undefined || last < t - forgetMs;
    if (forgotten || last > t) {
      const pending = findHit(p, key);
      if (pending !== undefined) {
        // The value is already a hit of an open window: a later one moves to this earlier event.
        if (pending.hit.eventTimeMs > t) {
          removeHit(p, pending.group, key);
          if (judging) this.#addHit(p, key, this.#hit(dimension, key, event));
        }
      } else if (forgotten && judging) {
        this.#addHit(p, key, this.#hit(dimension, key, event));
      }
    }
    if (seen === undefined) {
      const added: Seen = { older: null, newer: null, key, lastMs: t };
      this.#valueCount++;
      p.values.set(key, added);
      p.valueOrder.push(added);
      // The oldest goes, never this newest one.
      if (p.values.size > this.#maxValues) this.#evictValue(p);
      return added;
    }
    if (reorder) p.valueOrder.touch(seen);
    if (t > seen.lastMs) seen.lastMs = t;
    // Known values never grow the map past maxValues: it was within it already.
    return seen;
  }

  #hit(dimension: FirstSeenDimension, key: string, event: AuditEvent): Hit {
    const s = dimension === 'action' ? this.#catalog.sensitivityOf(event.service, event.action) : null;
    return {
      dimension,
      value: valueOfKey(key),
      eventId: event.eventId,
      eventTimeMs: event.eventTimeMs,
      category: s?.category ?? null,
      catalogSeverity: s?.severity ?? null,
    };
  }

  #addHit(p: PrincipalState, key: string, hit: Hit): void {
    const t = hit.eventTimeMs;
    let i = 0;
    for (; i < p.groups.length; i++) {
      const g = p.groups[i] as Group;
      if (t < g.startMs) {
        // A late hit just before this window: it opens the window if every hit still fits.
        if (lastHitMs(g) < t + this.#groupMs) {
          g.startMs = t;
          g.hits.set(key, hit);
          return;
        }
        break;
      }
      if (t < g.startMs + this.#groupMs) {
        g.hits.set(key, hit);
        return;
      }
    }
    p.groups.splice(i, 0, { startMs: t, hits: new Map([[key, hit]]) });
    this.#withGroups.add(p.key);
  }

  #evictPrincipal(): void {
    const p = this.#order.oldest;
    if (p === null) return;
    this.#principals.delete(p.key);
    this.#order.remove(p);
    this.#unindex(p);
    this.#withGroups.delete(p.key);
    this.#dirty.add(p.key);
    this.#valueCount -= p.values.size;
    const identity: Identity = { accountId: p.accountId, principal: p.principal, principalType: p.principalType, human: p.human };
    for (const group of p.groups) this.#detached.push({ identity, group });
    if (p.groups.length > 0) this.#metaDirty = true;
  }

  #evictValue(p: PrincipalState): void {
    const oldest = p.valueOrder.oldest;
    if (oldest === null) return;
    p.values.delete(oldest.key);
    p.valueOrder.remove(oldest);
    this.#valueCount--;
    this.#dirty.add(p.key);
  }

  /** Drops what judging would treat as forgotten anyway: memory only, findings do not change. */
  #sweep(wm: number): void {
    this.#sweptAtMs = wm;
    this.#metaDirty = true;
    for (let p = this.#order.oldest; p !== null; ) {
      const next: PrincipalState | null = p.newer;
      const cutoff = wm - this.#profileOfState(p).forgetMs;
      if (p.lastMs < cutoff && p.groups.length === 0) {
        this.#principals.delete(p.key);
        this.#order.remove(p);
        this.#unindex(p);
        this.#valueCount -= p.values.size;
        this.#dirty.add(p.key);
      } else {
        for (let seen = p.valueOrder.oldest; seen !== null; ) {
          const newer: Seen | null = seen.newer;
          if (seen.lastMs < cutoff) {
            p.values.delete(seen.key);
            p.valueOrder.remove(seen);
            this.#valueCount--;
            this.#dirty.add(p.key);
          }
          seen = newer;
        }
      }
      p = next;
    }
  }

  #finding(identity: Identity, group: Group): FirstSeenFinding {
    const profile = this.profileOf(identity.principalType, identity.human);
    const categories = new Set<SensitivityCategory>();
    const items: FirstSeenItem[] = [];
    for (const h of group.hits.values()) {
      if (h.category !== null) categories.add(h.category);
      // A new error code is weaker evidence than a new action or region: one level below them.
      const base = h.dimension === 'errorCode' ? shiftSeverity(profile.baseSeverity, -1) : profile.baseSeverity;
      const severity = h.catalogSeverity === null ? base : maxSeverity(base, shiftSeverity(h.catalogSeverity, profile.catalogShift));
      items.push({
        dimension: h.dimension,
        value: h.value,
        eventId: h.eventId,
        eventTimeMs: h.eventTimeMs,
        severity,
        category: h.category,
      });
    }
    const byTime = (a: FirstSeenItem, b: FirstSeenItem): number =>
      a.eventTimeMs - b.eventTimeMs ||
      cmp(a.eventId, b.eventId) ||
      DIMENSION_ORDER.indexOf(a.dimension) - DIMENSION_ORDER.indexOf(b.dimension) ||
      cmp(a.value, b.value);
    items.sort((a, b) => severityRank(b.severity) - severityRank(a.severity) || byTime(a, b));
    const severity = items[0]?.severity ?? profile.baseSeverity;
    const listed = items.slice(0, this.#maxItems).sort(byTime);
    return {
      id: deterministicUuid('first-seen', identity.accountId, identity.principal, String(group.startMs)),
      accountId: identity.accountId,
      principal: identity.principal,
      principalType: identity.principalType,
      human: identity.human,
      windowStartMs: group.startMs,
      windowEndMs: group.startMs + this.#groupMs,
      severity,
      categories: [...categories].sort(),
      items: listed,
      total: items.length,
    };
  }
}

function valueKey(dimension: FirstSeenDimension, value: string): string {
  return DIMENSION_CODE[dimension] + value;
}

/** The value a value key stands for. */
function valueOfKey(key: string): string {
  return key.slice(2);
}

function listed<T extends Linked<T>>(order: Recency<T>): T[] {
  const out: T[] = [];
  for (let x = order.oldest; x !== null; x = x.newer) out.push(x);
  return out;
}

// ── changelog records ─────────────────────────────────────────────────────
//
// A principal's record is rewritten whenever it is observed, so it is an array, and every time in
// it is an age before the principal's lastMs (short, non-negative numbers; event times are whole
// ms, so the subtraction is exact):
//
//   [version, principalType, human 0|1, seq, lastMs, lastMs − firstMs, values, groups, accountId?, principal?]
//   values  [valueKey, lastMs − lastSeenMs, valueKey, …]          least recently observed first
//   groups  [[lastMs − startMs, hit, hit, …], …]                    open windows by start
//   hit     [valueKey, eventId, lastMs − eventTimeMs, category?, catalogSeverity?]  (both absent when not in the catalog)
//
// The key `${accountId}\u0000${principal}` carries the identity; the record repeats it only when
// the account id holds a NUL itself and the key cannot be split. The meta record:
//
//   [version, watermarkMs|null, sweptAtMs|null, tick, detached]
//   detached [[accountId, principal, principalType, human 0|1, startMs, hit, …], …]  hit times as eventTimeMs − startMs

type HitRecord = [string, string, number] | [string, string, number, SensitivityCategory | null, Severity | null];

function encodeHit(h: Hit, offset: number): HitRecord {
  const key = valueKey(h.dimension, h.value);
  return h.category === null && h.catalogSeverity === null
    ? [key, h.eventId, offset]
    : [key, h.eventId, offset, h.category, h.catalogSeverity];
}

function encodePrincipal(key: string, p: PrincipalState): string {
  const base = p.lastMs;
  const values: (string | number)[] = [];
  for (let seen = p.valueOrder.oldest; seen !== null; seen = seen.newer) values.push(seen.key, base - seen.lastMs);
  const groups = p.groups.map((g) => {
    const out: (number | HitRecord)[] = [base - g.startMs];
    for (const h of g.hits.values()) out.push(encodeHit(h, base - h.eventTimeMs));
    return out;
  });
  const record: unknown[] = [RECORD_VERSION, p.principalType, p.human ? 1 : 0, p.seq, base, base - p.firstMs, values, groups];
  if (key.indexOf('\u0000') !== p.accountId.length) record.push(p.accountId, p.principal);
  return JSON.stringify(record);
}

function stateCorrupt(key: string, what: string, cause?: unknown): TrailwatchError {
  return new TrailwatchError(ErrorCodes.STATE_CORRUPT, `first-seen changelog record ${JSON.stringify(key)}: ${what}`, {
    cause,
    details: { key },
  });
}

/** The record's fields after its version; anything but a JSON array of this version is corrupt. */
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
const isFlag = (v: unknown): v is 0 | 1 => v === 0 || v === 1;

function decodeHit(key: string, r: unknown, base: number, sign: 1 | -1): [string, Hit] {
  if (!Array.isArray(r) || (r.length !== 3 && r.length !== 5)) throw stateCorrupt(key, 'a hit is not [valueKey, eventId, time, …]');
  const [vkey, eventId, offset, category = null, catalogSeverity = null] = r as unknown[];
  const dimension = typeof vkey === 'string' ? CODE_DIMENSION[vkey.slice(0, 2)] : undefined;
  if (
    dimension === undefined ||
    typeof eventId !== 'string' ||
    !isTime(offset) ||
    (category !== null && typeof category !== 'string') ||
    (catalogSeverity !== null && !(SEVERITIES as readonly unknown[]).includes(catalogSeverity))
  ) {
    throw stateCorrupt(key, `bad hit ${JSON.stringify(r)}`);
  }
  const hit: Hit = {
    dimension,
    value: (vkey as string).slice(2),
    eventId,
    eventTimeMs: base + sign * offset,
    category: category as SensitivityCategory | null,
    catalogSeverity: catalogSeverity as Severity | null,
  };
  return [vkey as string, hit];
}

function decodePrincipal(key: string, json: string): PrincipalState {
  const r = parseRecord(key, json);
  const [, principalType, human, seq, lastMs, span, values, groups, ...identity] = r;
  const nul = key.indexOf('\u0000');
  if (
    typeof principalType !== 'string' ||
    !isFlag(human) ||
    !Number.isSafeInteger(seq) ||
    !isTime(lastMs) ||
    !isTime(span) ||
    !Array.isArray(values) ||
    !Array.isArray(groups) ||
    nul < 0 ||
    (identity.length !== 0 && (identity.length !== 2 || typeof identity[0] !== 'string' || typeof identity[1] !== 'string'))
  ) {
    throw stateCorrupt(key, 'not a principal record');
  }
  const p = principalState(
    key,
    {
      accountId: identity.length === 2 ? (identity[0] as string) : key.slice(0, nul),
      principal: identity.length === 2 ? (identity[1] as string) : key.slice(nul + 1),
      principalType,
      human: human === 1,
    },
    lastMs - span,
    lastMs,
    seq as number,
  );
  for (let i = 0; i < values.length; i += 2) {
    const vkey: unknown = values[i];
    const age: unknown = values[i + 1];
    if (typeof vkey !== 'string' || !isTime(age)) throw stateCorrupt(key, `bad value at ${i}`);
    restoreValue(p, vkey, lastMs - age);
  }
  for (const g of groups) {
    if (!Array.isArray(g) || !isTime(g[0])) throw stateCorrupt(key, 'an open window is not [start, hit, …]');
    const hits = new Map<string, Hit>();
    for (let i = 1; i < g.length; i++) hits.set(...decodeHit(key, g[i], lastMs, -1));
    p.groups.push({ startMs: lastMs - g[0], hits });
  }
  return p;
}

function decodeMeta(json: string): { watermarkMs: number; sweptAtMs: number; tick: number; detached: Detached[] } {
  const [, watermarkMs, sweptAtMs, tick, detached] = parseRecord(META_KEY, json);
  if (
    (watermarkMs !== null && !isTime(watermarkMs)) ||
    (sweptAtMs !== null && !isTime(sweptAtMs)) ||
    !Number.isSafeInteger(tick) ||
    !Array.isArray(detached)
  ) {
    throw stateCorrupt(META_KEY, 'not a meta record');
  }
  return {
    watermarkMs: watermarkMs ?? Number.NEGATIVE_INFINITY,
    sweptAtMs: sweptAtMs ?? Number.NEGATIVE_INFINITY,
    tick: tick as number,
    detached: detached.map((r: unknown): Detached => {
      if (!Array.isArray(r) || r.length < 5) throw stateCorrupt(META_KEY, 'a detached window is not [accountId, principal, …]');
      const [accountId, principal, principalType, human, startMs, ...hits] = r as unknown[];
      if (
        typeof accountId !== 'string' ||
        typeof principal !== 'string' ||
        typeof principalType !== 'string' ||
        !isFlag(human) ||
        !isTime(startMs)
      ) {
        throw stateCorrupt(META_KEY, `bad detached window ${JSON.stringify([accountId, principal])}`);
      }
      return {
        identity: { accountId, principal, principalType, human: human === 1 },
        group: { startMs, hits: new Map(hits.map((h) => decodeHit(META_KEY, h, startMs, 1))) },
      };
    }),
  };
}

function findHit(p: PrincipalState, key: string): { group: Group; hit: Hit } | undefined {
  for (const group of p.groups) {
    const hit = group.hits.get(key);
    if (hit !== undefined) return { group, hit };
  }
  return undefined;
}

function removeHit(p: PrincipalState, group: Group, key: string): void {
  group.hits.delete(key);
  if (group.hits.size === 0) {
    p.groups.splice(p.groups.indexOf(group), 1);
    return;
  }
  let start = Number.POSITIVE_INFINITY;
  for (const h of group.hits.values()) if (h.eventTimeMs < start) start = h.eventTimeMs;
  group.startMs = start;
}

function lastHitMs(group: Group): number {
  let last = Number.NEGATIVE_INFINITY;
  for (const h of group.hits.values()) if (h.eventTimeMs > last) last = h.eventTimeMs;
  return last;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function validate(options: FirstSeenOptions): void {
  const problems: string[] = [];
  const positive = (where: string, v: unknown, integer: boolean): void => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
      problems.push(`${where}: expected a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(v)}`);
    }
  };
  const profile = (where: string, p: Partial<PrincipalProfile>): void => {
    if (p.learningMs !== undefined && (typeof p.learningMs !== 'number' || !Number.isFinite(p.learningMs) || p.learningMs < 0)) {
      problems.push(`${where}learningMs: expected a number ≥ 0, got ${JSON.stringify(p.learningMs)}`);
    }
    positive(`${where}forgetMs`, p.forgetMs, false);
    if (p.baseSeverity !== undefined && !(SEVERITIES as readonly unknown[]).includes(p.baseSeverity)) {
      problems.push(`${where}baseSeverity: ${JSON.stringify(p.baseSeverity)} is not one of ${SEVERITIES.join(', ')}`);
    }
    if (p.catalogShift !== undefined && !Number.isInteger(p.catalogShift)) {
      problems.push(`${where}catalogShift: expected an integer, got ${JSON.stringify(p.catalogShift)}`);
    }
  };
  profile('firstSeen.', options);
  for (const [type, p] of Object.entries(options.profiles ?? {})) profile(`firstSeen.profiles.${type}.`, p);
  positive('firstSeen.groupMs', options.groupMs, false);
  positive('firstSeen.maxPrincipals', options.maxPrincipals, true);
  positive('firstSeen.maxValuesPerPrincipal', options.maxValuesPerPrincipal, true);
  positive('firstSeen.maxItemsPerFinding', options.maxItemsPerFinding, true);
  if (problems.length > 0) throw new ConfigError(problems);
}
