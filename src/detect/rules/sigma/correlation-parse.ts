import { isMap, isScalar, isSeq, type YAMLMap } from 'yaml';
import type { CorrelationCondition, CorrelationType } from '../correlation.ts';
import type { LineOf } from './detection.ts';
import { type Fail, isFieldPath } from './values.ts';

/**
 * The `correlation:` section of a Sigma correlation document, read from its YAML nodes so every
 * refusal names its line. Rule references stay unresolved here: the file as a whole resolves them,
 * since a correlation may name a rule written after it.
 */

export interface CorrelationSection {
  type: CorrelationType;
  refs: { ref: string; line: number }[];
  groupBy: string[];
  /** Alias name → rule reference (id or name, unresolved) → record path. */
  aliases: Map<string, Map<string, { path: string; line: number }>>;
  aliasLine: number;
  timespanMs: number;
  condition: CorrelationCondition | null;
  field: string | null;
  generate: boolean | null;
}

const TYPES: ReadonlySet<string> = new Set<CorrelationType>(['event_count', 'value_count', 'temporal', 'temporal_ordered']);
const SECTION_KEYS: ReadonlySet<string> = new Set(['type', 'rules', 'group-by', 'timespan', 'condition', 'aliases', 'generate']);
const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseTimespan(text: string): number | null {
  const m = /^([1-9]\d*)([smhd])$/.exec(text);
  const unit = m?.[2] === undefined ? undefined : UNIT_MS[m[2]];
  if (m?.[1] === undefined || unit === undefined) return null;
  const ms = Number(m[1]) * unit;
  return Number.isSafeInteger(ms) ? ms : null;
}

function stringList(node: unknown, what: string, line: number, lineOf: LineOf, fail: Fail): { value: string; line: number }[] {
  if (!isSeq(node)) fail(line, `'${what}' must be a list of strings`);
  return node.items.map((item) => {
    if (!isScalar(item) || typeof item.value !== 'string' || item.value.trim() === '')
      fail(lineOf(item) || line, `'${what}' must be a list of non-empty strings`);
    return { value: item.value, line: lineOf(item) || line };
  });
}

function readCondition(node: unknown, type: CorrelationType, line: number, lineOf: LineOf, fail: Fail) {
  if (!isMap(node)) fail(line, "correlation 'condition' must be a map such as 'gte: 5'");
  const condition: CorrelationCondition = {};
  let field: string | null = null;
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    const at = lineOf(pair.key) || line;
    const value = isScalar(pair.value) ? pair.value.value : undefined;
    if (key === 'field') {
      if (type !== 'value_count') fail(at, `'condition.field' belongs to value_count correlations, not ${type}`);
      if (typeof value !== 'string' || !isFieldPath(value)) fail(at, "'condition.field' must be a dotted field path");
      field = value;
      continue;
    }
    if (key !== 'gt' && key !== 'gte' && key !== 'lt' && key !== 'lte' && key !== 'eq')
      fail(at, `correlation condition '${key}' is not supported; use gt, gte, lt, lte or eq`);
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
      fail(at, `correlation condition '${key}' must be a non-negative integer`);
    condition[key] = value;
  }
  const { gt, gte, lt, lte, eq } = condition;
  if (eq !== undefined && Object.keys(condition).length > 1) fail(line, "correlation condition 'eq' cannot be combined with a range");
  if (gt !== undefined && gte !== undefined) fail(line, "correlation condition has both 'gt' and 'gte'");
  if (lt !== undefined && lte !== undefined) fail(line, "correlation condition has both 'lt' and 'lte'");
  if (Object.keys(condition).length === 0) fail(line, 'correlation condition needs one of gt, gte, lt, lte or eq');
  const low = gt !== undefined ? gt + 1 : (gte ?? 0);
  const high = lt !== undefined ? lt - 1 : (lte ?? Number.POSITIVE_INFINITY);
  if (low > high) fail(line, 'correlation condition is a range no count can satisfy');
  if (type === 'value_count' && field === null)
    fail(line, "value_count needs 'condition.field', the field whose distinct values it counts");
  if (type === 'temporal' && (lt !== undefined || lte !== undefined || eq !== undefined))
    fail(line, "a temporal condition counts the referenced rules seen and takes only 'gt' or 'gte'");
  return { condition, field };
}

/** Reads a correlation document's `correlation` map; `line` is where its key is. */
export function readCorrelationSection(node: unknown, line: number, lineOf: LineOf, fail: Fail): CorrelationSection {
  if (!isMap(node)) fail(line, "'correlation' must be a map");
  const section = node as YAMLMap;
  const at = (key: string): number => lineOf(section.items.find((p) => isScalar(p.key) && p.key.value === key)?.key) || line;
  for (const pair of section.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!SECTION_KEYS.has(key)) fail(lineOf(pair.key) || line, `correlation key '${key}' is not part of Sigma correlations`);
  }

  const typeNode = section.get('type', true);
  if (typeNode === undefined) fail(line, "correlation has no 'type'");
  const type = isScalar(typeNode) ? String(typeNode.value) : '';
  if (!TYPES.has(type)) fail(at('type'), `correlation type '${type}' is not supported; use ${[...TYPES].join(', ')}`);
  const ctype = type as CorrelationType;

  const rulesNode = section.get('rules', true);
  if (rulesNode === undefined) fail(line, "correlation has no 'rules'");
  const refs = stringList(rulesNode, 'rules', at('rules'), lineOf, fail).map((r) => ({ ref: r.value, line: r.line }));
  if (refs.length === 0) fail(at('rules'), "correlation 'rules' is empty");
  const seen = new Set<string>();
  for (const r of refs) {
    if (seen.has(r.ref)) fail(r.line, `rule '${r.ref}' is listed twice in correlation 'rules'`);
    seen.add(r.ref);
  }
  if ((ctype === 'temporal' || ctype === 'temporal_ordered') && refs.length < 2)
    fail(at('rules'), `a ${ctype} correlation needs at least two rules`);

  const groupNode = section.get('group-by', true);
  const groupBy = groupNode === undefined ? [] : stringList(groupNode, 'group-by', at('group-by'), lineOf, fail);
  for (const g of groupBy) if (!isFieldPath(g.value)) fail(g.line, `group-by field '${g.value}' has an empty path segment`);

  const spanNode = section.get('timespan', true);
  if (spanNode === undefined) fail(line, "correlation has no 'timespan'");
  const spanText = isScalar(spanNode) ? String(spanNode.value) : '';
  const timespanMs = parseTimespan(spanText);
  if (timespanMs === null) fail(at('timespan'), `timespan '${spanText}' must be a positive number and s, m, h or d, e.g. 5m`);

  const condNode = section.get('condition', true);
  let condition: CorrelationCondition | null = null;
  let field: string | null = null;
  if (condNode !== undefined) {
    if (ctype === 'temporal_ordered') fail(at('condition'), 'a temporal_ordered correlation takes no condition: every rule, in order');
    ({ condition, field } = readCondition(condNode, ctype, at('condition'), lineOf, fail));
  } else if (ctype === 'event_count' || ctype === 'value_count')
    fail(line, `${ctype === 'event_count' ? 'an' : 'a'} ${ctype} correlation needs a 'condition'`);

  const aliases: CorrelationSection['aliases'] = new Map();
  const aliasNode = section.get('aliases', true);
  if (aliasNode !== undefined) {
    if (!isMap(aliasNode)) fail(at('aliases'), "'aliases' must map alias names to { rule name: field }");
    for (const pair of aliasNode.items) {
      const name = isScalar(pair.key) ? String(pair.key.value) : '';
      const aline = lineOf(pair.key) || at('aliases');
      if (!isMap(pair.value)) fail(aline, `alias '${name}' must map rule names to fields`);
      const perRule = new Map<string, { path: string; line: number }>();
      for (const p of pair.value.items) {
        const rule = isScalar(p.key) ? String(p.key.value) : '';
        const path = isScalar(p.value) ? p.value.value : undefined;
        const pline = lineOf(p.key) || aline;
        if (typeof path !== 'string' || !isFieldPath(path)) fail(pline, `alias '${name}' for rule '${rule}' must be a dotted field path`);
        perRule.set(rule, { path, line: pline });
      }
      aliases.set(name, perRule);
    }
  }

  const genNode = section.get('generate', true);
  let generate: boolean | null = null;
  if (genNode !== undefined) {
    if (!isScalar(genNode) || typeof genNode.value !== 'boolean') fail(at('generate'), "'generate' must be true or false");
    generate = genNode.value;
  }

  return {
    type: ctype,
    refs,
    groupBy: groupBy.map((g) => g.value),
    aliases,
    aliasLine: at('aliases'),
    timespanMs,
    condition,
    field,
    generate,
  };
}
