import type { AuditEvent } from '../contracts/types.ts';
import { type SignalType, signalKeyId } from './signals.ts';
import type { KeyState } from './state.ts';

/**
 * Key identity on the hot path: the keys an event counts towards, looked up once per event tuple
 * rather than built per event; the key table in least-recently-active order (what eviction and
 * expiry follow); and one copy of each identity string however many keys name it.
 */

/** Interned identity strings kept at most; past it the pool starts over (correctness never depends on it). */
const MAX_INTERNED = 1_000_000;
/**
 * Event tuples whose key ids are cached at most; past it the cache starts over. Small next to the
 * keys themselves (a few hundred bytes a tuple), so a million keys still fit in a KiB each.
 */
const MAX_CACHED_TUPLES = 32_768;

/**
 * One copy of each identity string however many keys name it: a decoded event brings fresh
 * copies of its account, service, action and principal, and a million keys would keep them all.
 */
export class Interner {
  private readonly strings = new Map<string, string>();
  private readonly max: number;

  constructor(max = MAX_INTERNED) {
    this.max = max;
  }

  get size(): number {
    return this.strings.size;
  }

  intern(value: string): string {
    const known = this.strings.get(value);
    if (known !== undefined) return known;
    if (this.strings.size >= this.max) this.strings.clear();
    this.strings.set(value, value);
    return value;
  }
}

/** A key id and, once looked up, its state (until the key is dropped): no map lookup per event. */
export class CachedKey {
  readonly id: string;
  key: KeyState | null = null;

  constructor(id: string) {
    this.id = id;
  }
}

/**
 * A signal's keys for one tuple (and qualifier), by scope: per action and per principal. Carries
 * what creating either key needs, so counting an event passes one object, not a signal and a
 * qualifier beside it.
 */
export class ScopedKeys {
  readonly signal: SignalType;
  readonly qualifier: string | null;
  readonly action: CachedKey;
  readonly principal: CachedKey;

  constructor(signal: SignalType, qualifier: string | null, action: CachedKey, principal: CachedKey) {
    this.signal = signal;
    this.qualifier = qualifier;
    this.action = action;
    this.principal = principal;
  }
}

/**
 * The key ids an event tuple (account, region, principal, service, action) counts towards, built
 * once rather than per event. Chained when one principal calls one action in several places.
 */
export interface TupleKeys {
  accountId: string;
  region: string;
  service: string;
  /** By signal (the engine's table order): an unqualified signal's keys, or a qualified one's by qualifier; null until counted. */
  bySignal: Array<ScopedKeys | Map<string, ScopedKeys> | null>;
  next: TupleKeys | null;
}

/** The cache of event tuples' key ids (see TupleKeys). */
export class SignalKeys {
  private readonly signals: readonly SignalType[];
  private readonly scopeAction: boolean;
  private readonly scopePrincipal: boolean;
  private readonly strings: Interner;
  private readonly maxTuples: number;
  /** A new tuple's bySignal: a packed array of nulls, copied. */
  private readonly noKeys: null[];
  /** principal → action → the key ids of its tuples. */
  private readonly cache = new Map<string, Map<string, TupleKeys>>();
  private cached = 0;

  constructor(
    signals: readonly SignalType[],
    scopes: { action: boolean; principalAction: boolean },
    strings: Interner,
    maxTuples = MAX_CACHED_TUPLES,
  ) {
    this.signals = signals;
    this.scopeAction = scopes.action;
    this.scopePrincipal = scopes.principalAction;
    this.strings = strings;
    this.maxTuples = maxTuples;
    this.noKeys = signals.map(() => null);
  }

  /** Entries (tuples and qualified key pairs) cached now. */
  get size(): number {
    return this.cached;
  }

  /** The cached key ids of the event's tuple, built on first sight. */
  tuple(e: AuditEvent): TupleKeys {
    let byAction = this.cache.get(e.principal);
    let head = byAction?.get(e.action) ?? null;
    for (let s = head; s !== null; s = s.next) {
      if (s.service === e.service && s.region === e.region && s.accountId === e.accountId) return s;
    }
    if (this.cached >= this.maxTuples) {
      this.cache.clear();
      this.cached = 0;
      byAction = undefined;
      head = null;
    }
    if (byAction === undefined) {
      byAction = new Map();
      this.cache.set(this.strings.intern(e.principal), byAction);
    }
    const t: TupleKeys = {
      accountId: this.strings.intern(e.accountId),
      region: this.strings.intern(e.region),
      service: this.strings.intern(e.service),
      bySignal: this.noKeys.slice(),
      next: head,
    };
    this.cached++;
    // A key already in the map keeps its string: the event's copy is not retained.
    byAction.set(head === null ? this.strings.intern(e.action) : e.action, t);
    return t;
  }

  /** The keys of the unqualified signal `s` (an index into the table the cache was built with) for the event's tuple. */
  keysOf(t: TupleKeys, e: AuditEvent, s: number): ScopedKeys {
    const held = t.bySignal[s] as ScopedKeys | null;
    if (held !== null) return held;
    const keys = this.build(this.signals[s] as SignalType, e, null);
    t.bySignal[s] = keys;
    return keys;
  }

  /** The keys of the qualified signal `s` for the event's tuple, under `qualifier`. */
  qualifiedKeysOf(t: TupleKeys, e: AuditEvent, s: number, qualifier: string): ScopedKeys {
    let byQualifier = t.bySignal[s] as Map<string, ScopedKeys> | null;
    if (byQualifier === null) {
      byQualifier = new Map();
      t.bySignal[s] = byQualifier;
    }
    let keys = byQualifier.get(qualifier);
    if (keys === undefined) {
      // The pair keeps the pooled copy, not the event's.
      const q = this.strings.intern(qualifier);
      keys = this.build(this.signals[s] as SignalType, e, q);
      this.cached++;
      byQualifier.set(q, keys);
    }
    return keys;
  }

  private build(signal: SignalType, e: AuditEvent, qualifier: string | null): ScopedKeys {
    const { accountId, region, principal, service, action } = e;
    // Only the scopes counted: an id built for nothing would be kept for nothing.
    return new ScopedKeys(
      signal,
      qualifier,
      new CachedKey(this.scopeAction ? signalKeyId('action', signal, accountId, region, null, service, action, qualifier) : ''),
      new CachedKey(
        this.scopePrincipal ? signalKeyId('principalAction', signal, accountId, region, principal, service, action, qualifier) : '',
      ),
    );
  }
}

/**
 * The live keys by id, and in least-recently-active order (oldest first), linked through the keys
 * themselves: moving a key to the newest end is a few pointer writes, not a map delete and insert.
 */
export class KeyTable {
  private readonly byId = new Map<string, KeyState>();
  /** Least recently active. */
  oldest: KeyState | null = null;
  /** Most recently active. */
  newest: KeyState | null = null;

  get size(): number {
    return this.byId.size;
  }

  get(id: string): KeyState | undefined {
    return this.byId.get(id);
  }

  /** Adds a key at the newest end. */
  add(k: KeyState): void {
    this.byId.set(k.id, k);
    this.append(k);
  }

  /** Takes a key out; whoever still holds it sees it `dropped`. */
  remove(k: KeyState): void {
    this.byId.delete(k.id);
    k.dropped = true;
    this.unlink(k);
  }

  /** Moves a key to the newest end. */
  renew(k: KeyState): void {
    if (k === this.newest) return;
    this.unlink(k);
    this.append(k);
  }

  /** The keys, oldest first. */
  order(): KeyState[] {
    const out: KeyState[] = [];
    for (let k = this.oldest; k !== null; k = k.newer) out.push(k);
    return out;
  }

  private append(k: KeyState): void {
    k.older = this.newest;
    k.newer = null;
    if (this.newest === null) this.oldest = k;
    else this.newest.newer = k;
    this.newest = k;
  }

  private unlink(k: KeyState): void {
    if (k.older === null) this.oldest = k.newer;
    else k.older.newer = k.newer;
    if (k.newer === null) this.newest = k.older;
    else k.newer.older = k.older;
    k.older = null;
    k.newer = null;
  }
}
