import { isAlias, isMap, isScalar, isSeq, type Scalar, type YAMLMap } from 'yaml';
import { type Condition, evaluate, parseCondition, referenced } from './condition.ts';
import { type CloudTrailRecord, compileItem, type Fail, type FieldTest, isFieldPath, type RuleValue } from './values.ts';

/**
 * A rule's `detection` section compiled from its YAML nodes (not from plain JS values), so every
 * refusal can name the line it is about.
 */

/** A search identifier: OR over alternatives, each an AND of detection items. */
export interface SearchIdentifier {
  name: string;
  alternatives: FieldTest[][];
}

export interface Detection {
  identifiers: Map<string, SearchIdentifier>;
  condition: Condition;
  conditionText: string;
  fields: string[];
}

export type LineOf = (node: unknown) => number;

/**
 * `timeframe` (in `detection` or beside it) windowed the aggregations and `near` of Sigma 1. A
 * single-event rule has no window, so honouring it is impossible and ignoring it changes what the
 * author meant, often a join of two events that no single record satisfies.
 */
export const TIMEFRAME_REFUSAL =
  "'timeframe' is not supported: it windows the aggregations Sigma 2.0 dropped; write a correlation rule with a timespan instead";

function checkNode(node: unknown, lineOf: LineOf, fail: Fail): void {
  if (isAlias(node)) fail(lineOf(node), 'YAML aliases are not supported in rules');
}

function ruleValue(node: unknown, lineOf: LineOf, fail: Fail): RuleValue {
  checkNode(node, lineOf, fail);
  const line = lineOf(node);
  if (!isScalar(node)) fail(line, 'expected a plain value here, not a list or map');
  const v = node.value;
  if (typeof v === 'string') return { value: v, text: v, line };
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return { value: v, text: (node as Scalar).source ?? String(v), line };
  fail(line, `unsupported value ${JSON.stringify(String(v))}`);
}

function compileMap(map: YAMLMap, lineOf: LineOf, fail: Fail): FieldTest[] {
  if (map.items.length === 0) fail(lineOf(map), 'empty map in a search identifier');
  return map.items.map((pair) => {
    checkNode(pair.key, lineOf, fail);
    const line = lineOf(pair.key);
    if (!isScalar(pair.key)) fail(line, 'a detection field name must be a plain string');
    const [field = '', ...modifiers] = String(pair.key.value).split('|');
    if (field !== '' && !isFieldPath(field)) fail(line, `field name '${field}' has an empty path segment`);
    checkNode(pair.value, lineOf, fail);
    const valueNodes = isSeq(pair.value) ? pair.value.items : [pair.value];
    if (valueNodes.length === 0) fail(line, `'${String(pair.key.value)}' has an empty list of values`);
    const values = valueNodes.map((n) => (n === null ? { value: null, text: 'null', line } : ruleValue(n, lineOf, fail)));
    return compileItem(field === '' ? null : field, modifiers, values, line, fail);
  });
}

function compileIdentifier(name: string, node: unknown, lineOf: LineOf, fail: Fail): SearchIdentifier {
  checkNode(node, lineOf, fail);
  if (isMap(node)) return { name, alternatives: [compileMap(node, lineOf, fail)] };
  const items = isSeq(node) ? node.items : [node];
  if (items.length === 0) fail(lineOf(node), `search identifier '${name}' is an empty list`);
  const alternatives = items.map((item) => {
    checkNode(item, lineOf, fail);
    if (isMap(item)) return compileMap(item, lineOf, fail);
    if (isSeq(item)) fail(lineOf(item), `search identifier '${name}' nests a list in a list`);
    const line = lineOf(item) || lineOf(node);
    return [compileItem(null, [], [ruleValue(item, lineOf, fail)], line, fail)];
  });
  return { name, alternatives };
}

export function compileDetection(node: unknown, line: number, lineOf: LineOf, fail: Fail): Detection {
  checkNode(node, lineOf, fail);
  if (!isMap(node)) fail(line, "'detection' must be a map of search identifiers and a condition");
  const identifiers = new Map<string, SearchIdentifier>();
  let conditionNode: unknown;
  for (const pair of node.items) {
    const keyLine = lineOf(pair.key);
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (key === 'condition') conditionNode = pair.value;
    else if (key === 'timeframe') fail(keyLine, TIMEFRAME_REFUSAL);
    else if (!/^[A-Za-z0-9_.-]+$/.test(key))
      fail(keyLine, `search identifier ${JSON.stringify(key)} must be letters, digits, '_', '.' or '-'`);
    else identifiers.set(key, compileIdentifier(key, pair.value, lineOf, fail));
  }
  if (conditionNode === undefined) fail(line, "'detection' has no 'condition'");
  checkNode(conditionNode, lineOf, fail);
  const conditionNodes = isSeq(conditionNode) ? conditionNode.items : [conditionNode];
  const names = [...identifiers.keys()];
  const conditions = conditionNodes.map((n) => {
    const at = lineOf(n) || line;
    if (!isScalar(n) || typeof n.value !== 'string' || n.value.trim() === '')
      fail(at, "'condition' must be a non-empty string or a list of them");
    const text = n.value;
    return { text, condition: parseCondition(text, names, (what) => fail(at, `condition ${JSON.stringify(text)}: ${what}`)) };
  });
  if (conditions.length === 0) fail(line, "'condition' is an empty list");
  // A list of conditions is their OR (Sigma specification, "Condition").
  const condition: Condition =
    conditions.length === 1 ? (conditions[0]?.condition as Condition) : { kind: 'or', args: conditions.map((c) => c.condition) };
  const conditionText = conditions.map((c) => c.text).join(' | or | ');
  const used = referenced(condition);
  const fields = new Set<string>();
  for (const name of used)
    for (const alt of identifiers.get(name)?.alternatives ?? []) for (const t of alt) for (const f of t.fields) fields.add(f);
  return { identifiers, condition, conditionText, fields: [...fields].sort() };
}

export function identifierMatches(id: SearchIdentifier, record: CloudTrailRecord): boolean {
  return id.alternatives.some((alt) => alt.every((t) => t.test(record)));
}

export function matchDetection(d: Detection, record: CloudTrailRecord): boolean {
  return evaluate(d.condition, (name) => identifierMatches(d.identifiers.get(name) as SearchIdentifier, record));
}

/** Why a record does or does not match: one line per search identifier the condition reads, then the verdict. */
export function explainDetection(d: Detection, record: CloudTrailRecord): { matched: boolean; reasons: string[] } {
  const reasons: string[] = [];
  for (const name of referenced(d.condition)) {
    const id = d.identifiers.get(name) as SearchIdentifier;
    const hit = id.alternatives.find((alt) => alt.every((t) => t.test(record)));
    if (hit !== undefined) reasons.push(`${name} matched: ${hit.map((t) => t.label).join(' and ')}`);
    else if (id.alternatives.length === 1) {
      const failed = (id.alternatives[0] ?? []).filter((t) => !t.test(record));
      reasons.push(`${name} did not match: ${failed.map((t) => t.label).join(' and ')} failed`);
    } else reasons.push(`${name} did not match: none of its ${id.alternatives.length} alternatives holds`);
  }
  const matched = matchDetection(d, record);
  reasons.push(`condition ${JSON.stringify(d.conditionText)} is ${matched}`);
  return { matched, reasons };
}
