import { ErrorCodes, TrailwatchError } from '../../errors.ts';

/**
 * Amazon EventBridge event patterns, compiled once into plain closures and matched against parsed
 * JSON events. A pattern is an object whose leaves are arrays of match values (OR within a leaf,
 * AND across fields); `$or` ORs whole field sets. Compilation refuses malformed patterns as
 * EventBridge does, naming the file and the JSON path of the problem, so a rule means here what it
 * would mean on an event bus.
 */

/** A compiled event pattern: pure, reusable, safe to share across partitions. */
export interface EventPattern {
  /** Where the pattern came from (a file name), as named in errors. */
  readonly source: string;
  /** Every event field path the pattern reads, in pattern order, e.g. `['detail', 'eventName']`. */
  readonly fields: readonly (readonly string[])[];
  matches(event: unknown): boolean;
  /** The verdict and, per field the pattern read, what the event held and whether it matched. */
  explain(event: unknown): PatternExplanation;
}

export interface PatternExplanation {
  matched: boolean;
  reasons: string[];
}

/**
 * EventBridge compares numbers as fixed-point values of at most 15 significant digits, 6 after the
 * point, within ±5.0e9: numeric bounds outside it are rejected and event numbers outside it never
 * satisfy a numeric range.
 */
export const NUMERIC_LIMIT = 5e9;
const MICROS = 1e6;
/** Deeper patterns are a generator bug, not a rule; the bound keeps compilation off the stack limit. */
const MAX_DEPTH = 64;
const DEFAULT_SOURCE = '<event pattern>';

type Scalar = string | number | boolean | null;
type Test = (value: Scalar) => boolean;
type Segment = string | number;

interface Leaf {
  tests: Test[];
  existsTrue: boolean;
  existsFalse: boolean;
  /** Every alternative is `exists: false`: the leaf asks only that the field be absent. */
  absenceOnly: boolean;
  text: string;
}

interface Field {
  key: string;
  leaf?: Leaf;
  object?: PatternObject;
}

interface PatternObject {
  fields: Field[];
  /** Each entry is one `$or`: a list of alternative field sets, any one of which must match. */
  ors: PatternObject[][];
  absenceOnly: boolean;
}

/** Names that are operators, which EventBridge refuses as field names inside `$or`. */
const OPERATORS = ['prefix', 'suffix', 'equals-ignore-case', 'wildcard', 'anything-but', 'numeric', 'exists', 'cidr'] as const;
const OPERATOR_SET: ReadonlySet<string> = new Set(OPERATORS);
const ANYTHING_BUT_INNER: ReadonlySet<string> = new Set(['prefix', 'suffix', 'equals-ignore-case', 'wildcard']);

/** Compiles an already-parsed pattern; throws TW_RULE_INVALID naming `source` and the JSON path of the problem. */
export function compileEventPattern(pattern: unknown, source: string = DEFAULT_SOURCE): EventPattern {
  const compiler: Compiler = new Compiler(source);
  if (!isObject(pattern)) compiler.fail([], `an event pattern must be a JSON object, got ${typeName(pattern)}`);
  const root = compiler.object(pattern, [], [], false);
  const fields = compiler.fields;
  return {
    source,
    fields,
    matches: (event) => matchFields(root, asObject(event), undefined, ''),
    explain: (event) => {
      const reasons: string[] = [];
      const matched = matchFields(root, asObject(event), reasons, '');
      return { matched, reasons };
    },
  };
}

/** Parses and compiles pattern text; a JSON syntax error becomes TW_RULE_INVALID naming `source`, line and column. */
export function parseEventPattern(json: string, source: string = DEFAULT_SOURCE): EventPattern {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const offset = jsonErrorOffset(json);
    const at = offset === undefined ? undefined : lineColumn(json, offset);
    const where = at === undefined ? '' : ` at line ${at.line}, column ${at.column}`;
    throw new TrailwatchError(ErrorCodes.RULE_INVALID, `${source}: event pattern is not valid JSON${where}: ${message}`, {
      fault: 'user',
      cause: err,
      details: { source, ...at },
    });
  }
  return compileEventPattern(parsed, source);
}

/**
 * A CloudTrail record as EventBridge delivers it: the envelope EventBridge patterns are written
 * against, with the record itself as `detail`. Fields the record lacks are left out of the envelope.
 */
export function cloudTrailEnvelope(record: Record<string, unknown>): Record<string, unknown> {
  const envelope: Record<string, unknown> = { version: '0' };
  const put = (key: string, value: unknown) => {
    if (typeof value === 'string') envelope[key] = value;
  };
  put('id', record.eventID);
  envelope['detail-type'] = DETAIL_TYPES.get(String(record.eventType)) ?? 'AWS API Call via CloudTrail';
  if (typeof record.eventSource === 'string') put('source', `aws.${record.eventSource.split('.')[0]}`);
  put('account', record.recipientAccountId);
  put('time', record.eventTime);
  put('region', record.awsRegion);
  envelope.resources = [];
  envelope.detail = record;
  return envelope;
}

/** CloudTrail `eventType` to the `detail-type` EventBridge gives it; anything else is delivered as an API call. */
const DETAIL_TYPES: ReadonlyMap<string, string> = new Map([
  ['AwsApiCall', 'AWS API Call via CloudTrail'],
  ['AwsConsoleSignIn', 'AWS Console Sign In via CloudTrail'],
  ['AwsConsoleAction', 'AWS Console Action via CloudTrail'],
  ['AwsServiceEvent', 'AWS Service Event via CloudTrail'],
  ['AwsCloudTrailInsight', 'AWS Insight via CloudTrail'],
]);

// ---------------------------------------------------------------------------------------------
// Compilation

class Compiler {
  readonly fields: string[][] = [];
  readonly #seen = new Set<string>();
  readonly #source: string;

  constructor(source: string) {
    this.#source = source;
  }

  fail(at: readonly Segment[], problem: string): never {
    const path = jsonPath(at);
    throw new TrailwatchError(ErrorCodes.RULE_INVALID, `${this.#source}: ${path}: ${problem}`, {
      fault: 'user',
      details: { source: this.#source, path },
    });
  }

  /** `at` is the position in the pattern (for errors); `fieldPath` the event field it addresses. */
  object(raw: Record<string, unknown>, at: Segment[], fieldPath: string[], inOr: boolean): PatternObject {
    if (at.length > MAX_DEPTH) this.fail(at, `the pattern nests deeper than ${MAX_DEPTH} levels`);
    const keys = Object.keys(raw);
    if (keys.length === 0) this.fail(at, 'an empty object matches nothing; name at least one field');
    const node: PatternObject = { fields: [], ors: [], absenceOnly: true };
    for (const key of keys) {
      const value = raw[key];
      const here = [...at, key];
      if (key === '$or') {
        const branches = this.or(value, here, fieldPath);
        node.ors.push(branches);
        node.absenceOnly &&= branches.every((b) => b.absenceOnly);
        continue;
      }
      if (inOr && OPERATOR_SET.has(key)) this.fail(here, `"${key}" is an operator and cannot be a field name inside $or`);
      if (Array.isArray(value)) {
        const leaf = this.leaf(value, here);
        this.noteField([...fieldPath, key]);
        node.fields.push({ key, leaf });
        node.absenceOnly &&= leaf.absenceOnly;
      } else if (isObject(value)) {
        const object = this.object(value, here, [...fieldPath, key], inOr);
        node.fields.push({ key, object });
        node.absenceOnly &&= object.absenceOnly;
      } else {
        this.fail(here, `must be an array of match values or a nested object, got ${typeName(value)}`);
      }
    }
    return node;
  }

  or(value: unknown, at: Segment[], fieldPath: string[]): PatternObject[] {
    if (!Array.isArray(value)) this.fail(at, `$or must be an array of at least two objects, got ${typeName(value)}`);
    if (value.length < 2) this.fail(at, `$or must list at least two alternatives, got ${value.length}`);
    return value.map((branch, i) => {
      if (!isObject(branch)) this.fail([...at, i], `each $or alternative must be an object, got ${typeName(branch)}`);
      return this.object(branch, [...at, i], fieldPath, true);
    });
  }

  leaf(values: unknown[], at: Segment[]): Leaf {
    if (values.length === 0) this.fail(at, 'an empty array matches nothing; list at least one match value');
    const leaf: Leaf = { tests: [], existsTrue: false, existsFalse: false, absenceOnly: true, text: JSON.stringify(values) };
    values.forEach((value, i) => {
      const here = [...at, i];
      if (isObject(value)) {
        const op = this.operator(value, here);
        if (op === true) leaf.existsTrue = true;
        else if (op === false) leaf.existsFalse = true;
        else leaf.tests.push(op);
        leaf.absenceOnly &&= op === false;
        return;
      }
      leaf.absenceOnly = false;
      if (typeof value === 'string') leaf.tests.push(exactString(value));
      else if (typeof value === 'number' && Number.isFinite(value)) leaf.tests.push((v) => typeof v === 'number' && numbersEqual(v, value));
      else if (typeof value === 'boolean' || value === null) leaf.tests.push((v) => v === value);
      else this.fail(here, `a match value must be a string, number, true, false, null or an operator object, got ${typeName(value)}`);
    });
    return leaf;
  }

  /** A value test, or `true`/`false` for `exists`. */
  operator(raw: Record<string, unknown>, at: Segment[]): Test | boolean {
    const keys = Object.keys(raw);
    if (keys.length !== 1) {
      this.fail(
        at,
        keys.length === 0 ? 'an empty match expression' : `a match expression takes exactly one operator, got ${keys.join(', ')}`,
      );
    }
    const op = keys[0]!;
    const operand = raw[op];
    const here = [...at, op];
    switch (op) {
      case 'prefix':
      case 'suffix': {
        const ends = op === 'prefix' ? startsWith : endsWith;
        if (typeof operand === 'string') return (v) => typeof v === 'string' && ends(v, operand);
        const folded = this.ignoreCaseOperand(operand, here, `${op} takes a string or {"equals-ignore-case": string}`);
        return (v) => typeof v === 'string' && ends(v.toLowerCase(), folded);
      }
      case 'equals-ignore-case': {
        const folded = this.string(operand, here, 'equals-ignore-case takes a string').toLowerCase();
        return (v) => typeof v === 'string' && v.toLowerCase() === folded;
      }
      case 'wildcard': {
        const glob = this.wildcard(operand, here);
        return (v) => typeof v === 'string' && globMatches(glob, v);
      }
      case 'anything-but':
        return this.anythingBut(operand, here);
      case 'numeric':
        return this.numeric(operand, here);
      case 'exists':
        if (typeof operand !== 'boolean') this.fail(here, `exists takes true or false, got ${typeName(operand)}`);
        return operand;
      case 'cidr': {
        const block = parseCidr(this.string(operand, here, 'cidr takes a string such as "10.0.0.0/24" or "2001:db8::/32"'));
        if (block === undefined) this.fail(here, `${JSON.stringify(operand)} is not an IPv4 or IPv6 CIDR block`);
        return (v) => typeof v === 'string' && inCidr(block, v);
      }
      default:
        this.fail(here, `unknown operator "${op}"; expected one of ${OPERATORS.join(', ')}`);
    }
  }

  anythingBut(operand: unknown, at: Segment[]): Test {
    const expected =
      'anything-but takes a string, a number, a list of strings or of numbers, or an object with prefix, suffix, equals-ignore-case or wildcard';
    if (typeof operand === 'string') return (v) => v !== operand;
    if (typeof operand === 'number') {
      const n = this.limited(operand, at);
      return (v) => !(typeof v === 'number' && numbersEqual(v, n));
    }
    if (Array.isArray(operand)) {
      if (operand.length === 0) this.fail(at, 'anything-but needs at least one value');
      if (operand.every((x) => typeof x === 'string')) {
        const excluded = new Set<Scalar>(operand);
        return (v) => !excluded.has(v);
      }
      if (operand.every((x) => typeof x === 'number')) {
        const excluded = operand.map((x, i) => this.limited(x, [...at, i]));
        return (v) => !(typeof v === 'number' && excluded.some((n) => numbersEqual(v, n)));
      }
      this.fail(at, 'anything-but lists must hold only strings or only numbers');
    }
    if (!isObject(operand)) this.fail(at, `${expected}, got ${typeName(operand)}`);
    const keys = Object.keys(operand);
    const inner = keys[0];
    if (keys.length !== 1 || inner === undefined) this.fail(at, `${expected}, got an object with keys: ${keys.join(', ') || 'none'}`);
    const here = [...at, inner];
    if (!ANYTHING_BUT_INNER.has(inner)) {
      this.fail(here, `anything-but does not take "${inner}"; expected prefix, suffix, equals-ignore-case or wildcard`);
    }
    const raw = operand[inner];
    const itemAt = (i: number) => (Array.isArray(raw) ? [...here, i] : here);
    const list = Array.isArray(raw) ? raw : [raw];
    if (list.length === 0) this.fail(here, `anything-but ${inner} needs at least one string`);
    const strings = list.map((x, i) =>
      this.string(x, Array.isArray(raw) ? [...here, i] : here, `anything-but ${inner} takes a string or a list of strings`),
    );
    let tests: Test[];
    if (inner === 'prefix' || inner === 'suffix') {
      const ends = inner === 'prefix' ? startsWith : endsWith;
      if (strings.some((s) => s === '')) this.fail(here, `anything-but ${inner} cannot be empty`);
      tests = strings.map((s) => (v) => typeof v === 'string' && ends(v, s));
    } else if (inner === 'equals-ignore-case') {
      const folded = new Set(strings.map((s) => s.toLowerCase()));
      tests = [(v) => typeof v === 'string' && folded.has(v.toLowerCase())];
    } else {
      tests = strings.map((s, i) => {
        const glob = this.wildcard(s, itemAt(i));
        return (v) => typeof v === 'string' && globMatches(glob, v);
      });
    }
    return (v) => !tests.some((t) => t(v));
  }

  numeric(operand: unknown, at: Segment[]): Test {
    const shape = 'numeric takes ["op", n] with op one of =, <, <=, >, >=, or a range [">" or ">=", n, "<" or "<=", m]';
    if (!Array.isArray(operand)) this.fail(at, `${shape}, got ${typeName(operand)}`);
    if (operand.length !== 2 && operand.length !== 4) this.fail(at, `${shape}, got ${operand.length} elements`);
    const bound = (i: number, ops: readonly string[]): { op: string; micros: number } => {
      const op = operand[i];
      if (typeof op !== 'string' || !ops.includes(op)) {
        this.fail([...at, i], `expected one of ${ops.join(', ')} here, got ${typeName(op)}`);
      }
      const n = operand[i + 1];
      if (typeof n !== 'number') this.fail([...at, i + 1], `the value of ${op} must be a number, got ${typeName(n)}`);
      return { op, micros: toMicros(this.limited(n, [...at, i + 1])) };
    };
    if (operand.length === 2) {
      const { op, micros } = bound(0, ['=', '<', '<=', '>', '>=']);
      return numericTest(op, micros);
    }
    const lower = bound(0, ['>', '>=']);
    const upper = bound(2, ['<', '<=']);
    if (lower.micros >= upper.micros) this.fail(at, 'the lower bound of a numeric range must be below its upper bound');
    const above = numericTest(lower.op, lower.micros);
    const below = numericTest(upper.op, upper.micros);
    return (v) => above(v) && below(v);
  }

  wildcard(operand: unknown, at: Segment[]): string[] {
    const text = this.string(operand, at, 'wildcard takes a string');
    const glob = parseWildcard(text);
    if (typeof glob === 'string') this.fail(at, glob);
    return glob;
  }

  ignoreCaseOperand(operand: unknown, at: Segment[], expected: string): string {
    if (!isObject(operand)) this.fail(at, `${expected}, got ${typeName(operand)}`);
    const keys = Object.keys(operand);
    if (keys.length !== 1 || keys[0] !== 'equals-ignore-case')
      this.fail(at, `${expected}, got an object with keys: ${keys.join(', ') || 'none'}`);
    return this.string(operand['equals-ignore-case'], [...at, 'equals-ignore-case'], 'equals-ignore-case takes a string').toLowerCase();
  }

  string(value: unknown, at: Segment[], expected: string): string {
    if (typeof value !== 'string') this.fail(at, `${expected}, got ${typeName(value)}`);
    return value;
  }

  limited(n: number, at: Segment[]): number {
    if (!Number.isFinite(n) || Math.abs(n) > NUMERIC_LIMIT)
      this.fail(at, `numbers compared numerically must lie within ±${NUMERIC_LIMIT.toExponential()}, got ${n}`);
    return n;
  }

  noteField(path: string[]): void {
    const key = JSON.stringify(path);
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.fields.push(path);
  }
}

// ---------------------------------------------------------------------------------------------
// Matching

/**
 * `reasons` is set only by explain: then every field is evaluated (no short-circuit) so the
 * reasons name every failing field, and `label` is the event path so far.
 */
function matchFields(
  node: PatternObject,
  event: Record<string, unknown> | undefined,
  reasons: string[] | undefined,
  label: string,
): boolean {
  let matched = true;
  for (const field of node.fields) {
    const value = event !== undefined && Object.hasOwn(event, field.key) ? event[field.key] : undefined;
    const here = reasons === undefined ? '' : label === '' ? field.key : `${label}.${field.key}`;
    const ok = field.leaf !== undefined ? matchLeaf(field.leaf, value, reasons, here) : matchObject(field.object!, value, reasons, here);
    if (!ok) {
      matched = false;
      if (reasons === undefined) return false;
    }
  }
  for (const alternatives of node.ors) {
    let any = false;
    alternatives.forEach((branch, i) => {
      if (any && reasons === undefined) return;
      const ok = matchFields(branch, event, reasons, label);
      if (ok && !any) reasons?.push(`$or${label === '' ? '' : ` at ${label}`}: alternative ${i + 1} of ${alternatives.length} matched`);
      any ||= ok;
    });
    if (!any) {
      reasons?.push(`$or${label === '' ? '' : ` at ${label}`}: none of ${alternatives.length} alternatives matched`);
      matched = false;
      if (reasons === undefined) return false;
    }
  }
  return matched;
}

/**
 * A nested pattern object read against an event value. An array of objects matches when one
 * element matches the whole nested pattern (fields are never drawn from different elements),
 * except that a nested pattern asking only for absent fields needs them absent from every element.
 * Anything that is not an object reads as an object without fields.
 */
function matchObject(node: PatternObject, value: unknown, reasons: string[] | undefined, label: string): boolean {
  if (!Array.isArray(value)) return matchFields(node, asObject(value), reasons, label);
  const elements = objectElements(value);
  if (elements.length === 0) return matchFields(node, undefined, reasons, label);
  let any = false;
  let all = true;
  for (const [index, element] of elements) {
    const ok = matchFields(node, element, reasons, reasons === undefined ? '' : `${label}[${index}]`);
    any ||= ok;
    all &&= ok;
    if (reasons === undefined && (node.absenceOnly ? !all : any)) break;
  }
  return node.absenceOnly ? all : any;
}

function matchLeaf(leaf: Leaf, value: unknown, reasons: string[] | undefined, label: string): boolean {
  const values = leafValues(value);
  const matched = values.length === 0 ? leaf.existsFalse : leaf.existsTrue || values.some((v) => leaf.tests.some((t) => t(v)));
  if (reasons !== undefined) {
    const held = values.length === 0 ? 'is absent' : `= ${JSON.stringify(values.length === 1 ? values[0] : values)}`;
    reasons.push(`${label} ${held}: ${matched ? 'matches' : 'does not match'} ${leaf.text}`);
  }
  return matched;
}

/** The scalar values at a field: an array contributes its scalar elements at any depth; objects are not values. */
function leafValues(value: unknown): Scalar[] {
  if (isScalar(value)) return [value];
  if (!Array.isArray(value)) return [];
  const out: Scalar[] = [];
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const next = stack.pop();
    if (Array.isArray(next)) for (let i = next.length - 1; i >= 0; i--) stack.push(next[i]);
    else if (isScalar(next)) out.push(next);
  }
  return out;
}

/** The objects in an array (nested arrays flattened), each with its index path for explanations. */
function objectElements(value: unknown[]): [string, Record<string, unknown>][] {
  const out: [string, Record<string, unknown>][] = [];
  const walk = (items: unknown[], prefix: string, depth: number) => {
    items.forEach((item, i) => {
      const index = prefix === '' ? String(i) : `${prefix}][${i}`;
      if (isObject(item)) out.push([index, item]);
      else if (Array.isArray(item) && depth < MAX_DEPTH) walk(item, index, depth + 1);
    });
  };
  walk(value, '', 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Operators

function exactString(expected: string): Test {
  const ip = parseIp(expected);
  if (ip === undefined) return (v) => v === expected;
  // An address matches any spelling of itself (IPv6 zero compression, hex case).
  return (v) => {
    if (v === expected) return true;
    if (typeof v !== 'string') return false;
    const other = parseIp(v);
    return other !== undefined && other.v6 === ip.v6 && other.value === ip.value;
  };
}

function startsWith(value: string, prefix: string): boolean {
  return value.startsWith(prefix);
}

function endsWith(value: string, suffix: string): boolean {
  return value.endsWith(suffix);
}

function toMicros(n: number): number {
  return Math.round(n * MICROS);
}

function inNumericRange(n: number): boolean {
  return Number.isFinite(n) && Math.abs(n) <= NUMERIC_LIMIT;
}

function numbersEqual(a: number, b: number): boolean {
  return a === b || (inNumericRange(a) && inNumericRange(b) && toMicros(a) === toMicros(b));
}

/** Only JSON numbers within the numeric range are compared: a string "5" never satisfies a numeric test. */
function numericTest(op: string, micros: number): Test {
  const holds = NUMERIC_OPS.get(op)!;
  return (v) => typeof v === 'number' && inNumericRange(v) && holds(toMicros(v), micros);
}

const NUMERIC_OPS: ReadonlyMap<string, (value: number, bound: number) => boolean> = new Map([
  ['=', (v, b) => v === b],
  ['<', (v, b) => v < b],
  ['<=', (v, b) => v <= b],
  ['>', (v, b) => v > b],
  ['>=', (v, b) => v >= b],
]);

/**
 * A wildcard as its literal pieces between `*`s (one piece: no wildcard), or the reason it is
 * malformed. `\*` is a literal star and `\\` a literal backslash; any other escape, and two
 * wildcards in a row, are refused as EventBridge refuses them.
 */
export function parseWildcard(text: string): string[] | string {
  const pieces: string[] = [];
  let piece = '';
  let lastWasStar = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\') {
      const next = text[i + 1];
      if (next !== '*' && next !== '\\') return `wildcard ${JSON.stringify(text)}: a backslash may only escape * or \\`;
      piece += next;
      i++;
      lastWasStar = false;
    } else if (c === '*') {
      if (lastWasStar) return `wildcard ${JSON.stringify(text)}: consecutive * are not allowed`;
      pieces.push(piece);
      piece = '';
      lastWasStar = true;
    } else {
      piece += c;
      lastWasStar = false;
    }
  }
  pieces.push(piece);
  return pieces;
}

/** Linear in the value's length: anchored first and last pieces, the middle ones found leftmost in order. */
function globMatches(pieces: readonly string[], value: string): boolean {
  const first = pieces[0]!;
  if (pieces.length === 1) return value === first;
  const last = pieces[pieces.length - 1]!;
  if (value.length < first.length + last.length || !value.startsWith(first) || !value.endsWith(last)) return false;
  const end = value.length - last.length;
  let at = first.length;
  for (let i = 1; i < pieces.length - 1; i++) {
    const piece = pieces[i]!;
    const found = value.indexOf(piece, at);
    if (found < 0 || found + piece.length > end) return false;
    at = found + piece.length;
  }
  return true;
}

interface Ip {
  v6: boolean;
  value: bigint;
}

interface CidrBlock extends Ip {
  mask: bigint;
}

function parseCidr(text: string): CidrBlock | undefined {
  const slash = text.indexOf('/');
  if (slash < 0 || slash !== text.lastIndexOf('/')) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const bitsText = text.slice(slash + 1);
  if (ip === undefined || !/^\d{1,3}$/.test(bitsText)) return undefined;
  const width = ip.v6 ? 128 : 32;
  const bits = Number(bitsText);
  if (bits > width) return undefined;
  const all = (1n << BigInt(width)) - 1n;
  const mask = all ^ ((1n << BigInt(width - bits)) - 1n);
  return { v6: ip.v6, value: ip.value & mask, mask };
}

function inCidr(block: CidrBlock, value: string): boolean {
  const ip = parseIp(value);
  return ip !== undefined && ip.v6 === block.v6 && (ip.value & block.mask) === block.value;
}

/** A dotted-quad IPv4 or an IPv6 address (with `::` and an IPv4 tail allowed), as a number. */
export function parseIp(text: string): Ip | undefined {
  if (text.includes(':')) {
    const value = parseIpv6(text);
    return value === undefined ? undefined : { v6: true, value };
  }
  const value = parseIpv4(text);
  return value === undefined ? undefined : { v6: false, value: BigInt(value) };
}

function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

function parseIpv6(text: string): bigint | undefined {
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const items = part.split(':');
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (i === items.length - 1 && item.includes('.')) {
        const v4 = parseIpv4(item);
        if (v4 === undefined) return undefined;
        out.push(Math.floor(v4 / 65536), v4 % 65536);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(item)) {
        out.push(Number.parseInt(item, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (head === undefined || tail === undefined) return undefined;
  // An IPv4 tail is only allowed at the very end of the address.
  if (halves.length === 2 && halves[0]!.includes('.')) return undefined;
  const count = head.length + tail.length;
  if (halves.length === 1 ? count !== 8 : count > 7) return undefined;
  const all = [...head, ...Array<number>(8 - count).fill(0), ...tail];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

// ---------------------------------------------------------------------------------------------
// Helpers

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asObject(value: unknown): Record<string, unknown> | undefined {
  return isObject(value) ? value : undefined;
}

function isScalar(value: unknown): value is Scalar {
  return value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (isObject(value)) return 'an object';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

/** `$.detail["odd key"][0].prefix`: the JSON path of a position in the pattern. */
function jsonPath(at: readonly Segment[]): string {
  let out = '$';
  for (const s of at) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(s)) out += `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

/**
 * Where JSON text first breaks the grammar. The parser's own message gives no position for some
 * errors (a trailing comma, the commonest slip in a hand-written rule), so the text is rescanned.
 */
function jsonErrorOffset(text: string): number | undefined {
  let i = 0;
  const space = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const string = (): boolean => {
    i++; // the opening quote
    while (i < text.length) {
      const c = text[i]!;
      if (c === '"') {
        i++;
        return true;
      }
      if (c === '\\') {
        const next = text[i + 1] ?? '';
        if ('"\\/bfnrt'.includes(next) && next !== '') i += 2;
        else if (next === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) i += 6;
        else return false;
      } else if (c < ' ') {
        return false;
      } else {
        i++;
      }
    }
    return false;
  };
  const value = (): boolean => {
    space();
    const c = text[i];
    if (c === '"') return string();
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      space();
      if (text[i] === close) {
        i++;
        return true;
      }
      for (;;) {
        if (c === '{') {
          space();
          if (text[i] !== '"' || !string()) return false;
          space();
          if (text[i] !== ':') return false;
          i++;
        }
        if (!value()) return false;
        space();
        if (text[i] === close) {
          i++;
          return true;
        }
        if (text[i] !== ',') return false;
        i++;
      }
    }
    for (const literal of ['true', 'false', 'null']) {
      if (text.startsWith(literal, i)) {
        i += literal.length;
        return true;
      }
    }
    NUMBER.lastIndex = i;
    if (!NUMBER.test(text)) return false;
    i = NUMBER.lastIndex;
    return true;
  };
  try {
    const ok = value();
    space();
    return ok && i === text.length ? undefined : i;
  } catch {
    return undefined; // nested past the stack: no position to give
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

function lineColumn(text: string, position: number): { line: number; column: number } {
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  const column = position - before.lastIndexOf('\n');
  return { line, column };
}
