import { cloudTrailEnvelope, compileEventPattern } from './eventbridge.ts';
import type { Condition } from './sigma/condition.ts';
import type { Detection, SearchIdentifier } from './sigma/detection.ts';
import type { FieldTest } from './sigma/values.ts';
import { type SigmaRule, sigmaDetection } from './sigma.ts';

/**
 * Rules indexed by the two fields every event carries normalized: eventName (`AuditEvent.action`)
 * and eventSource (`AuditEvent.service`). Most detections name the calls they are about, so most
 * events have no rule worth trying, and the rules stage should not build a record for them.
 *
 * A rule's keys are derived from its definition and are sound, not exact: a rule can only match a
 * record whose eventName and eventSource satisfy its keys, and may still not match one that does.
 * Each key is the rule's own test for one field, applied to a record holding that field alone:
 * an EventBridge leaf at `detail.eventName`, `detail.eventSource` or the envelope's `source`
 * recompiled as a pattern of its own, or a Sigma detection item that reads only eventName or
 * only eventSource. Since the test reads nothing else, its verdict on that lone field is its
 * verdict on the whole record, whatever operator or modifier it uses (prefix, wildcard,
 * anything-but, case-insensitive matching with its Unicode folding). Keys combine as the rule
 * does: AND across the fields of a pattern and the items of a selection, OR across `$or`
 * alternatives, a selection's list entries and `1 of`; a negated part, a keyword search or a
 * field of any other name gives no key (`any`), and an OR with an `any` branch is `any`.
 *
 * Keys are asked of the event's action and service, so they hold for the record a rule is tested
 * on only when that record's eventName and eventSource are the event's: true of the record
 * rebuilt from the normalized event, and of `raw`, which normalizeCloudTrail (the only producer
 * of `raw`) takes the two from.
 */

/** What a rule asks of an event's eventName and eventSource before anything else. */
export type RuleKeys =
  | { readonly kind: 'any' }
  | {
      readonly kind: 'eventName' | 'eventSource';
      /** The part of the rule the key comes from, for explanations: `eventName: "ConsoleLogin"`. */
      readonly label: string;
      holds(value: string): boolean;
    }
  | { readonly kind: 'and' | 'or'; readonly args: readonly RuleKeys[] };

export const ANY_KEYS: RuleKeys = { kind: 'any' };

/** Whether the keys narrow the events a rule is tried on at all. */
export function isIndexed(keys: RuleKeys | undefined): boolean {
  return keys !== undefined && keys.kind !== 'any';
}

export function keysHold(keys: RuleKeys, action: string, service: string): boolean {
  switch (keys.kind) {
    case 'any':
      return true;
    case 'eventName':
      return keys.holds(action);
    case 'eventSource':
      return keys.holds(service);
    case 'and':
      return keys.args.every((k) => keysHold(k, action, service));
    case 'or':
      return keys.args.some((k) => keysHold(k, action, service));
  }
}

/** The keys as text, for tests and diagnostics. */
export function describeKeys(keys: RuleKeys): string {
  switch (keys.kind) {
    case 'any':
      return 'any';
    case 'eventName':
    case 'eventSource':
      return keys.label;
    case 'and':
    case 'or':
      return `(${keys.args.map(describeKeys).join(` ${keys.kind} `)})`;
  }
}

function allOf(args: readonly RuleKeys[]): RuleKeys {
  const narrowing = args.flatMap((k) => (k.kind === 'any' ? [] : k.kind === 'and' ? k.args : [k]));
  if (narrowing.length <= 1) return narrowing[0] ?? ANY_KEYS;
  return { kind: 'and', args: narrowing };
}

function anyOf(args: readonly RuleKeys[]): RuleKeys {
  // An empty OR would match nothing; no rule compiles to one, and `any` is the safe answer.
  if (args.length === 0 || args.some((k) => k.kind === 'any')) return ANY_KEYS;
  const flat = args.flatMap((k) => (k.kind === 'or' ? k.args : [k]));
  return flat.length === 1 ? (flat[0] as RuleKeys) : { kind: 'or', args: flat };
}

// ---------------------------------------------------------------------------------------------
// EventBridge

/** Envelope paths whose value comes from one record field alone, by that field. */
const PATTERN_KEYS: ReadonlyMap<string, 'eventName' | 'eventSource'> = new Map([
  ['detail.eventName', 'eventName'],
  ['detail.eventSource', 'eventSource'],
  // cloudTrailEnvelope makes `source` of the eventSource: `aws.iam` of `iam.amazonaws.com`.
  ['source', 'eventSource'],
]);

/** The keys of an event pattern that compileEventPattern accepted (any other value: `any`). */
export function eventPatternKeys(pattern: unknown): RuleKeys {
  try {
    return isObject(pattern) ? patternObjectKeys(pattern, []) : ANY_KEYS;
  } catch {
    // Not a pattern the compiler accepts after all: no key, so the rule is tried on every event.
    return ANY_KEYS;
  }
}

function patternObjectKeys(node: Record<string, unknown>, path: readonly string[]): RuleKeys {
  const parts: RuleKeys[] = [];
  for (const key of Object.keys(node)) {
    const value = node[key];
    if (key === '$or') {
      // Each alternative is read at the same event path; the compiler checked there are at least two.
      parts.push(Array.isArray(value) ? anyOf(value.map((b) => (isObject(b) ? patternObjectKeys(b, path) : ANY_KEYS))) : ANY_KEYS);
    } else if (Array.isArray(value)) {
      parts.push(patternLeafKeys(value, [...path, key]));
    } else if (isObject(value)) {
      parts.push(patternObjectKeys(value, [...path, key]));
    }
  }
  return allOf(parts);
}

/**
 * The leaf's own match values, compiled alone at the same path and tested against the envelope of
 * a record holding only the field the path reads. Only paths through objects are indexed: the
 * envelope and `detail` (the record) are objects, never arrays, so the leaf sees the same value.
 */
function patternLeafKeys(values: unknown[], path: readonly string[]): RuleKeys {
  const field = PATTERN_KEYS.get(path.join('.'));
  if (field === undefined) return ANY_KEYS;
  let alone: Record<string, unknown> = { [path[path.length - 1] as string]: values };
  for (let i = path.length - 2; i >= 0; i--) alone = { [path[i] as string]: alone };
  const leaf = compileEventPattern(alone);
  return {
    kind: field,
    label: `${path.join('.')}: ${JSON.stringify(values)}`,
    holds: (value) => leaf.matches(cloudTrailEnvelope({ [field]: value })),
  };
}

// ---------------------------------------------------------------------------------------------
// Sigma

/** The keys of a rule parseSigma or parseSigmaFile compiled (a rule made elsewhere: `any`). */
export function sigmaRuleKeys(rule: SigmaRule): RuleKeys {
  const detection = sigmaDetection(rule);
  return detection === undefined ? ANY_KEYS : conditionKeys(detection.condition, detection);
}

function conditionKeys(c: Condition, d: Detection): RuleKeys {
  switch (c.kind) {
    case 'id':
      return identifierKeys(d.identifiers.get(c.name));
    case 'and':
      return allOf(c.args.map((a) => conditionKeys(a, d)));
    case 'or':
      return anyOf(c.args.map((a) => conditionKeys(a, d)));
    case 'of': {
      const parts = c.names.map((n) => identifierKeys(d.identifiers.get(n)));
      return c.all ? allOf(parts) : anyOf(parts);
    }
    default:
      // `not`: a rule that matches when a part does not tells nothing about the calls it matches.
      return ANY_KEYS;
  }
}

/** A search identifier: OR over its alternatives, each an AND of items. */
function identifierKeys(id: SearchIdentifier | undefined): RuleKeys {
  if (id === undefined) return ANY_KEYS;
  return anyOf(id.alternatives.map((items) => allOf(items.map(itemKeys))));
}

/** An item reading eventName or eventSource and nothing else (`fields` lists all it reads; a keyword search lists none). */
function itemKeys(item: FieldTest): RuleKeys {
  const field = item.fields[0];
  if ((field !== 'eventName' && field !== 'eventSource') || item.fields.some((f) => f !== field)) return ANY_KEYS;
  return { kind: field, label: item.label, holds: (value) => item.test({ [field]: value }) };
}

// ---------------------------------------------------------------------------------------------
// The index

/**
 * Distinct (eventSource, eventName) pairs remembered: CloudTrail's services have some thousands of
 * calls in use, and a stream of made-up names cannot grow the cache past this.
 */
const MAX_CACHED_PAIRS = 20_000;

/**
 * The candidates of each (eventSource, eventName) pair, worked out from every rule's keys the first
 * time the pair is seen and remembered: after that an event costs two map lookups.
 */
export class RuleIndex {
  /** Indexed rules; the others are candidates for every event. */
  readonly indexed: number;
  private readonly keys: readonly RuleKeys[];
  /** Every rule, when none is indexed. */
  private readonly all: readonly number[] | null;
  private readonly maxCached: number;
  private readonly byService = new Map<string, Map<string, readonly number[]>>();
  /** Candidate lists by their text, so pairs with the same candidates share one array. */
  private readonly lists = new Map<string, readonly number[]>();
  private cached = 0;

  /** `keys[i]` are rule i's (undefined: none); `maxCached` bounds the pairs remembered. */
  constructor(keys: readonly (RuleKeys | undefined)[], maxCached = MAX_CACHED_PAIRS) {
    this.keys = keys.map((k) => k ?? ANY_KEYS);
    this.indexed = this.keys.filter(isIndexed).length;
    this.all = this.indexed === 0 ? this.keys.map((_, i) => i) : null;
    this.maxCached = maxCached;
  }

  /** The rules an event with this eventName and eventSource may match, by index, in rule order. */
  candidates(action: string, service: string): readonly number[] {
    if (this.all !== null) return this.all;
    let byAction = this.byService.get(service);
    const known = byAction?.get(action);
    if (known !== undefined) return known;
    if (this.cached >= this.maxCached) {
      this.byService.clear();
      this.lists.clear();
      this.cached = 0;
      byAction = undefined;
    }
    if (byAction === undefined) {
      byAction = new Map();
      this.byService.set(service, byAction);
    }
    const found: number[] = [];
    for (let i = 0; i < this.keys.length; i++) if (keysHold(this.keys[i] as RuleKeys, action, service)) found.push(i);
    const text = found.join(',');
    let list = this.lists.get(text);
    if (list === undefined) {
      list = found;
      this.lists.set(text, list);
    }
    byAction.set(action, list);
    this.cached++;
    return list;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
