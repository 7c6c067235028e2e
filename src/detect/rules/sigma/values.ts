import { BlockList, isIP } from 'node:net';

/**
 * One Sigma detection item — a field, its modifiers and its values — compiled once at load into a
 * test on a CloudTrail record. Every combination trailwatch cannot evaluate exactly is refused here
 * through `fail`, so a loaded rule never means less than it says.
 *
 * CloudTrail nests maps where Sigma thinks in flat fields: `requestParameters`, `responseElements`
 * and the like. A value test on a field holding a map tests every scalar inside it, as a test on
 * an array tests its elements; rules written for SIEMs that keep such a field as one string
 * (`requestParameters|contains: 'Suspended'`) then mean here what they mean there. `null` and
 * `exists` still look at the field itself.
 */

export type RuleScalar = string | number | boolean | null;

/** A value as the rule wrote it: `text` keeps the source spelling of numbers (`0x17`, `1.0`). */
export interface RuleValue {
  value: RuleScalar;
  text: string;
  line: number;
}

export type Fail = (line: number, what: string) => never;

export type CloudTrailRecord = Record<string, unknown>;

export interface FieldTest {
  /** The item as the rule spelled it, for explanations: `eventName: ["StopLogging","DeleteTrail"]`. */
  label: string;
  /** Record paths the item reads (its field and any `fieldref` target). */
  fields: string[];
  test(record: CloudTrailRecord): boolean;
}

type Position = 'contains' | 'startswith' | 'endswith';
type Comparison = 'gt' | 'gte' | 'lt' | 'lte';
type ValueType = 're' | 'cidr' | 'exists' | 'fieldref' | Comparison;

interface Modifiers {
  position: Position | null;
  type: ValueType | null;
  encoding: 'base64' | 'base64offset' | null;
  all: boolean;
  cased: boolean;
  windash: boolean;
  reFlags: string;
}

const POSITIONS: ReadonlySet<string> = new Set<Position>(['contains', 'startswith', 'endswith']);
const COMPARISONS: ReadonlySet<string> = new Set<Comparison>(['gt', 'gte', 'lt', 'lte']);
const TYPES: ReadonlySet<string> = new Set<ValueType>(['re', 'cidr', 'exists', 'fieldref', 'gt', 'gte', 'lt', 'lte']);
const RE_FLAGS: ReadonlySet<string> = new Set(['i', 'm', 's']);
/** Modifiers of the Sigma specification that trailwatch knows but does not evaluate (yet). */
const NOT_SUPPORTED: ReadonlySet<string> = new Set([
  'expand',
  'neq',
  'utf16',
  'utf16le',
  'utf16be',
  'wide',
  'minute',
  'hour',
  'day',
  'week',
  'month',
  'year',
]);

/** The characters `windash` makes interchangeable: hyphen, slash, en dash, em dash, horizontal bar. */
const DASHES = '-/\u2013\u2014\u2015';
const DASH_CLASS = '[\\-/\\u2013\\u2014\\u2015]';
const ANY = '[\\s\\S]*';
const ONE = '[\\s\\S]';

function parseModifiers(names: readonly string[], line: number, fail: Fail): Modifiers {
  const m: Modifiers = { position: null, type: null, encoding: null, all: false, cased: false, windash: false, reFlags: '' };
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) fail(line, `modifier '${name}' is given twice`);
    seen.add(name);
    if (POSITIONS.has(name)) {
      if (m.position !== null) fail(line, `modifiers '${m.position}' and '${name}' cannot be combined`);
      m.position = name as Position;
    } else if (TYPES.has(name)) {
      if (m.type !== null) fail(line, `modifiers '${m.type}' and '${name}' cannot be combined`);
      m.type = name as ValueType;
    } else if (name === 'base64' || name === 'base64offset') {
      if (m.encoding !== null) fail(line, `modifiers '${m.encoding}' and '${name}' cannot be combined`);
      // Sigma applies modifiers in order: a position first would encode its wildcards.
      if (m.position !== null) fail(line, `'${m.position}' before '${name}' would encode its wildcards; write '${name}|${m.position}'`);
      m.encoding = name;
    } else if (RE_FLAGS.has(name)) {
      if (m.type !== 're') fail(line, `modifier '${name}' is a flag of 're' and must follow it`);
      m.reFlags += name;
    } else if (name === 'all') m.all = true;
    else if (name === 'cased') m.cased = true;
    else if (name === 'windash') m.windash = true;
    else if (NOT_SUPPORTED.has(name)) fail(line, `modifier '${name}' is not supported by trailwatch`);
    else fail(line, `unknown modifier '${name}'`);
  }
  const others = names.filter((n) => n !== m.type && n !== 'all' && !RE_FLAGS.has(n));
  if (m.type === 're' && others.length > 0) fail(line, `'re' cannot be combined with '${others[0]}' (use 're|i' for case-insensitive)`);
  if (m.type === 'fieldref' && others.some((n) => n !== 'cased')) fail(line, `'fieldref' can only be combined with 'cased' and 'all'`);
  if ((m.type === 'cidr' || m.type === 'exists' || COMPARISONS.has(m.type ?? '')) && others.length > 0) {
    fail(line, `'${m.type}' cannot be combined with '${others[0]}'`);
  }
  if (m.encoding !== null && m.windash) fail(line, `'windash' cannot be combined with '${m.encoding}'`);
  return m;
}

/** What a path finds in a record: whether the key is there at all, and its scalar values (arrays flattened). */
interface Found {
  present: boolean;
  values: unknown[];
}

function flattenInto(out: unknown[], v: unknown): void {
  if (Array.isArray(v)) for (const e of v) flattenInto(out, e);
  else out.push(v);
}

/** Follows a dotted path; an array on the way or at the end stands for any of its elements. */
export function resolvePath(record: CloudTrailRecord, path: readonly string[]): Found {
  let current: unknown[] = [record];
  for (const segment of path) {
    const next: unknown[] = [];
    for (const node of current) {
      const items: unknown[] = [];
      flattenInto(items, node);
      for (const item of items) {
        if (typeof item === 'object' && item !== null && Object.hasOwn(item, segment))
          next.push((item as Record<string, unknown>)[segment]);
      }
    }
    current = next;
  }
  const values: unknown[] = [];
  for (const v of current) flattenInto(values, v);
  return { present: current.length > 0, values };
}

/** The found values with each map replaced by the scalars inside it (arrays are already flattened). */
function withMapsOpened(found: Found): Found {
  if (!found.values.some((v) => typeof v === 'object' && v !== null)) return found;
  const values: unknown[] = [];
  for (const v of found.values) {
    if (typeof v === 'object' && v !== null) allScalars(v, values);
    else values.push(v);
  }
  return { present: found.present, values };
}

/** Every scalar anywhere in the record, for keyword searches. */
function allScalars(v: unknown, out: unknown[] = []): unknown[] {
  if (Array.isArray(v)) for (const e of v) allScalars(e, out);
  else if (typeof v === 'object' && v !== null) for (const e of Object.values(v)) allScalars(e, out);
  else if (v !== null && v !== undefined) out.push(v);
  return out;
}

function scalarText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return undefined;
}

function numberOf(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'string' && v.trim() !== '') {
    const n = Number(v);
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}

function escapeRegex(ch: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(ch) ? `\\${ch}` : ch;
}

interface SigmaString {
  /** The value with escapes removed and wildcards kept as written, for encodings. */
  plain: string;
  source: string;
  wildcards: boolean;
}

/**
 * A Sigma string as a regular expression body: `*` any run, `?` one character, a backslash escapes
 * `*`, `?` and itself and is literal before anything else (so `\\` and `\` both mean one backslash).
 */
export function sigmaString(text: string, windash = false): SigmaString {
  const chars = Array.from(text);
  let plain = '';
  let source = '';
  let wildcards = false;
  const literal = (ch: string): void => {
    plain += ch;
    source += windash && DASHES.includes(ch) ? DASH_CLASS : escapeRegex(ch);
  };
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i] as string;
    const next = chars[i + 1];
    if (ch === '\\' && (next === '*' || next === '?' || next === '\\')) {
      literal(next);
      i++;
    } else if (ch === '*' || ch === '?') {
      plain += ch;
      source += ch === '*' ? ANY : ONE;
      wildcards = true;
    } else literal(ch);
  }
  return { plain, source, wildcards };
}

function anchored(source: string, position: Position | null, cased: boolean): RegExp {
  const head = position === 'contains' || position === 'endswith' ? '' : '^';
  const tail = position === 'contains' || position === 'startswith' ? '' : '$';
  return new RegExp(`${head}(?:${source})${tail}`, cased ? 'u' : 'iu');
}

/** The three encodings of `value` at byte offsets 0..2 of a longer text, trimmed to the characters that do not depend on its neighbours. */
function base64Offsets(value: string): string[] {
  const starts = [0, 2, 3];
  const ends = [0, -3, -2];
  const bytes = Buffer.from(value, 'utf8');
  return [0, 1, 2].map((i) => {
    const encoded = Buffer.concat([Buffer.alloc(i, 0x20), bytes]).toString('base64');
    const end = ends[(bytes.length + i) % 3] as number;
    return encoded.slice(starts[i] as number, end === 0 ? undefined : end);
  });
}

type Check = (found: Found, record: CloudTrailRecord) => boolean;

function anyValue(test: (v: unknown) => boolean): Check {
  return (found) => found.values.some(test);
}

function stringCheck(v: RuleValue, m: Modifiers, line: number, fail: Fail): Check {
  if (m.encoding !== null) {
    const s = sigmaString(v.text);
    if (s.wildcards)
      fail(line, `'${m.encoding}' of a value with wildcards (${JSON.stringify(v.text)}) is undefined; escape them or drop them`);
    const encoded = m.encoding === 'base64' ? [Buffer.from(s.plain, 'utf8').toString('base64')] : base64Offsets(s.plain);
    // Base64 is case-significant: an encoded value matches as written, never case-folded.
    const patterns = encoded.map((e) => anchored(Array.from(e, escapeRegex).join(''), m.position, true));
    return anyValue((el) => {
      const t = scalarText(el);
      return t !== undefined && patterns.some((p) => p.test(t));
    });
  }
  const pattern = anchored(sigmaString(v.text, m.windash).source, m.position, m.cased);
  const num = typeof v.value === 'number' && m.position === null ? v.value : undefined;
  return anyValue((el) => {
    if (num !== undefined && typeof el === 'number') return el === num;
    const t = scalarText(el);
    return t !== undefined && pattern.test(t);
  });
}

function regexCheck(v: RuleValue, m: Modifiers, line: number, fail: Fail): Check {
  let re: RegExp;
  try {
    re = new RegExp(v.text, m.reFlags);
  } catch (err) {
    fail(line, `'re' value ${JSON.stringify(v.text)} is not a valid regular expression: ${(err as Error).message}`);
  }
  return anyValue((el) => {
    const t = scalarText(el);
    return t !== undefined && re.test(t);
  });
}

function cidrCheck(v: RuleValue, line: number, fail: Fail): Check {
  const [address = '', prefixText, extra] = v.text.split('/');
  const family = isIP(address);
  const bits = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (family === 0 || extra !== undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > bits || prefixText === '') {
    fail(line, `'cidr' value ${JSON.stringify(v.text)} is not an IPv4 or IPv6 network`);
  }
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const list = new BlockList();
  list.addSubnet(address, prefix, type);
  return anyValue((el) => typeof el === 'string' && isIP(el) === family && list.check(el, type));
}

function comparisonCheck(v: RuleValue, op: Comparison, line: number, fail: Fail): Check {
  const bound = numberOf(v.value);
  if (bound === undefined) fail(line, `'${op}' needs a number, not ${JSON.stringify(v.text)}`);
  const compare = {
    gt: (n: number) => n > bound,
    gte: (n: number) => n >= bound,
    lt: (n: number) => n < bound,
    lte: (n: number) => n <= bound,
  }[op];
  return anyValue((el) => {
    const n = numberOf(el);
    return n !== undefined && compare(n);
  });
}

function fieldrefCheck(v: RuleValue, cased: boolean, line: number, fail: Fail): { check: Check; path: string } {
  if (typeof v.value !== 'string' || !isFieldPath(v.value)) fail(line, `'fieldref' needs a field name, not ${JSON.stringify(v.text)}`);
  const path = v.value.split('.');
  const norm = (x: unknown): string | undefined => {
    const t = scalarText(x);
    return t === undefined || cased ? t : t.toLowerCase();
  };
  const check: Check = (found, record) => {
    const others = new Set(withMapsOpened(resolvePath(record, path)).values.map(norm));
    others.delete(undefined);
    return found.values.some((el) => others.has(norm(el)));
  };
  return { check, path: v.value };
}

/**
 * `expand` stands for values a Sigma processing pipeline substitutes for `%name%` placeholders at
 * conversion time. trailwatch evaluates rules as written, with no pipeline, so there is nothing to
 * substitute; matching the placeholder text, or anything at all, would silently change the rule.
 */
function expandRefusal(values: readonly RuleValue[]): string {
  const names = new Set<string>();
  for (const v of values) for (const p of v.text.match(/%[^%\s]+%/g) ?? []) names.add(p);
  const which = names.size === 0 ? 'its placeholders' : `placeholder ${[...names].join(', ')}`;
  return `modifier 'expand' is not supported: ${which} would take values from a Sigma processing pipeline, which trailwatch does not have; write the values into the rule`;
}

export function isFieldPath(name: string): boolean {
  return name.split('.').every((segment) => segment.length > 0);
}

/**
 * Compiles one detection item. `field` null is a keyword search: its values are looked for in every
 * scalar of the record, as substrings unless a position modifier says otherwise.
 */
export function compileItem(
  field: string | null,
  modifierNames: readonly string[],
  values: readonly RuleValue[],
  line: number,
  fail: Fail,
): FieldTest {
  if (modifierNames.includes('expand')) fail(line, expandRefusal(values));
  const m = parseModifiers(modifierNames, line, fail);
  const key = `${field ?? 'keyword'}${modifierNames.map((n) => `|${n}`).join('')}`;
  const label = `${key}: ${JSON.stringify(values.length === 1 ? values[0]?.value : values.map((v) => v.value))}`;
  if (m.all && values.length < 2) fail(line, `'all' needs a list of two or more values`);
  const fields: string[] = field === null ? [] : [field];

  if (field === null) {
    if (m.type === 'exists' || m.type === 'fieldref' || m.type === 'cidr' || COMPARISONS.has(m.type ?? '')) {
      fail(line, `'${m.type}' needs a field name; keyword searches take strings`);
    }
    m.position ??= 'contains';
  }

  const checks: Check[] = values.map((v) => {
    if (v.value === null) {
      if (modifierNames.length > 0) fail(v.line, `null cannot be combined with modifiers (${key})`);
      if (field === null) fail(v.line, 'a keyword cannot be null');
      return (found) => !found.present || found.values.includes(null);
    }
    switch (m.type) {
      case 'exists':
        if (typeof v.value !== 'boolean' || values.length !== 1) fail(line, `'exists' takes a single true or false`);
        return (
          (expected: boolean) => (found: Found) =>
            found.present === expected
        )(v.value);
      case 're':
        return regexCheck(v, m, v.line, fail);
      case 'cidr':
        return cidrCheck(v, v.line, fail);
      case 'fieldref': {
        const ref = fieldrefCheck(v, m.cased, v.line, fail);
        fields.push(ref.path);
        return ref.check;
      }
      case 'gt':
      case 'gte':
      case 'lt':
      case 'lte':
        return comparisonCheck(v, m.type, v.line, fail);
      default:
        return stringCheck(v, m, v.line, fail);
    }
  });

  const path = field?.split('.') ?? null;
  const find = (record: CloudTrailRecord): Found =>
    path === null ? { present: true, values: allScalars(record) } : withMapsOpened(resolvePath(record, path));
  const test = m.all
    ? (record: CloudTrailRecord) => {
        const found = find(record);
        return checks.every((c) => c(found, record));
      }
    : (record: CloudTrailRecord) => {
        const found = find(record);
        return checks.some((c) => c(found, record));
      };
  return { label, fields, test };
}
