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
 * `advance(watermarkMs)` to close windows, `snapshot()`/`restore()` for the changelog.
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
  IAMUser: { baseSeverity: 'medium' },
  Root: { baseSeverity: 'high', catalogShift: 1 },
  AWSService: { baseSeverity: 'informational', catalogShift: -1 },
  Human: { baseSeverity: 'informational', catalogShift: -1 },
});

const HUMAN = 'Human';
const SSO_ROLE = /:assumed-role\/AWSReservedSSO_/;
const CONSOLE_AGENT = /(?:console|signin)\.amazonaws\.com|^Mozilla\//;
const DIMENSION_ORDER: readonly FirstSeenDimension[] = ['action', 'region', 'errorCode'];
const DIMENSION_CODE: Record<FirstSeenDimension, string> = { action: 'a:', region: 'r:', errorCode: 'e:' };

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

interface PrincipalState extends Identity {
  firstMs: number;
  lastMs: number;
  /** Value key → latest event time seen, least recently observed first. */
  values: Map<string, number>;
  /** Open windows, by start. */
  groups: Group[];
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
  readonly #principals = new Map<string, PrincipalState>();
  /** Principal keys with open windows, so `advance` does not walk every principal. */
  readonly #withGroups = new Set<string>();
  #detached: Detached[] = [];
  #valueCount = 0;
  #watermarkMs = Number.NEGATIVE_INFINITY;
  #sweptAtMs = Number.NEGATIVE_INFINITY;

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

  /** Records the event's values and, once its principal has learned, collects first-seen hits. */
  observe(event: AuditEvent): void {
    const key = `${event.accountId}\u0000${event.principal}`;
    const t = event.eventTimeMs;
    let p = this.#principals.get(key);
    if (p === undefined) {
      p = {
        accountId: event.accountId,
        principal: event.principal,
        principalType: event.principalType,
        human: false,
        firstMs: t,
        lastMs: t,
        values: new Map(),
        groups: [],
      };
      this.#principals.set(key, p);
      if (this.#principals.size > this.#maxPrincipals) this.#evictPrincipal();
    } else {
      this.#principals.delete(key);
      this.#principals.set(key, p);
      if (t - p.lastMs >= this.profileOf(p.principalType, p.human).forgetMs) {
        this.#valueCount -= p.values.size;
        p.values.clear();
        p.human = false;
        p.firstMs = t;
      }
    }
    p.principalType = event.principalType;
    if (!p.human && looksHuman(event)) p.human = true;
    if (t < p.firstMs) p.firstMs = t;
    if (t > p.lastMs) p.lastMs = t;

    const profile = this.profileOf(p.principalType, p.human);
    const judging = t - p.firstMs >= profile.learningMs;
    this.#see(key, p, 'action', `${event.service}:${event.action}`, event, judging, profile.forgetMs);
    this.#see(key, p, 'region', event.region, event, judging, profile.forgetMs);
    if (event.errorCode !== null) this.#see(key, p, 'errorCode', event.errorCode, event, judging, profile.forgetMs);
  }

  /** Closes the windows the watermark has passed and returns their findings, ordered by window end then principal. */
  advance(watermarkMs: number): FirstSeenFinding[] {
    if (watermarkMs > this.#watermarkMs) this.#watermarkMs = watermarkMs;
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
      }
      if (p.groups.length === 0) this.#withGroups.delete(key);
    }
    if (this.#detached.length > 0) {
      const still: Detached[] = [];
      for (const d of this.#detached) {
        if (d.group.startMs + this.#groupMs <= wm) out.push(this.#finding(d.identity, d.group));
        else still.push(d);
      }
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
      principals: [...this.#principals.values()].map((p) => ({
        accountId: p.accountId,
        principal: p.principal,
        principalType: p.principalType,
        human: p.human,
        firstMs: p.firstMs,
        lastMs: p.lastMs,
        values: [...p.values],
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
      const p: PrincipalState = {
        accountId: r.accountId,
        principal: r.principal,
        principalType: r.principalType,
        human: r.human,
        firstMs: r.firstMs,
        lastMs: r.lastMs,
        values: new Map(r.values),
        groups: r.groups.map(toGroup),
      };
      d.#principals.set(key, p);
      d.#valueCount += p.values.size;
      if (p.groups.length > 0) d.#withGroups.add(key);
    }
    for (const r of snapshot.detached) {
      const { startMs, hits, ...identity } = r;
      d.#detached.push({ identity, group: toGroup({ startMs, hits }) });
    }
    // Tighter bounds than the snapshotting detector had take effect now.
    while (d.#principals.size > d.#maxPrincipals) d.#evictPrincipal();
    for (const p of d.#principals.values()) while (p.values.size > d.#maxValues) d.#evictValue(p);
    return d;
  }

  #see(
    pkey: string,
    p: PrincipalState,
    dimension: FirstSeenDimension,
    value: string,
    event: AuditEvent,
    judging: boolean,
    forgetMs: number,
  ): void {
    const key = valueKey(dimension, value);
    const t = event.eventTimeMs;
    const last = p.values.get(key);
    const forgotten = last === undefined || last < t - forgetMs;
    if (forgotten || last > t) {
      const pending = findHit(p, key);
      if (pending !== undefined) {
        // The value is already a hit of an open window: a later one moves to this earlier event.
        if (pending.hit.eventTimeMs > t) {
          removeHit(p, pending.group, key);
          if (judging) this.#addHit(pkey, p, key, this.#hit(dimension, value, event));
        }
      } else if (forgotten && judging) {
        this.#addHit(pkey, p, key, this.#hit(dimension, value, event));
      }
    }
    if (last === undefined) {
      this.#valueCount++;
    } else {
      p.values.delete(key);
    }
    p.values.set(key, last === undefined || t > last ? t : last);
    if (p.values.size > this.#maxValues) this.#evictValue(p);
  }

  #hit(dimension: FirstSeenDimension, value: string, event: AuditEvent): Hit {
    const s = dimension === 'action' ? this.#catalog.sensitivityOf(event.service, event.action) : null;
    return {
      dimension,
      value,
      eventId: event.eventId,
      eventTimeMs: event.eventTimeMs,
      category: s?.category ?? null,
      catalogSeverity: s?.severity ?? null,
    };
  }

  #addHit(pkey: string, p: PrincipalState, key: string, hit: Hit): void {
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
    this.#withGroups.add(pkey);
  }

  #evictPrincipal(): void {
    const oldest = this.#principals.keys().next();
    if (oldest.done === true) return;
    const p = this.#principals.get(oldest.value) as PrincipalState;
    this.#principals.delete(oldest.value);
    this.#withGroups.delete(oldest.value);
    this.#valueCount -= p.values.size;
    const identity: Identity = { accountId: p.accountId, principal: p.principal, principalType: p.principalType, human: p.human };
    for (const group of p.groups) this.#detached.push({ identity, group });
  }

  #evictValue(p: PrincipalState): void {
    const oldest = p.values.keys().next();
    if (oldest.done === true) return;
    p.values.delete(oldest.value);
    this.#valueCount--;
  }

  /** Drops what judging would treat as forgotten anyway: memory only, findings do not change. */
  #sweep(wm: number): void {
    this.#sweptAtMs = wm;
    for (const [key, p] of this.#principals) {
      const cutoff = wm - this.profileOf(p.principalType, p.human).forgetMs;
      if (p.lastMs < cutoff && p.groups.length === 0) {
        this.#principals.delete(key);
        this.#valueCount -= p.values.size;
        continue;
      }
      for (const [vkey, lastSeenMs] of p.values) {
        if (lastSeenMs < cutoff) {
          p.values.delete(vkey);
          this.#valueCount--;
        }
      }
    }
  }

  #finding(identity: Identity, group: Group): FirstSeenFinding {
    const profile = this.profileOf(identity.principalType, identity.human);
    const categories = new Set<SensitivityCategory>();
    const items: FirstSeenItem[] = [];
    for (const h of group.hits.values()) {
      if (h.category !== null) categories.add(h.category);
      const base = profile.baseSeverity;
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
