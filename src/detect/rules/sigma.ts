import { isMap, isScalar, isSeq, LineCounter, parseAllDocuments, type YAMLMap } from 'yaml';
import { ErrorCodes, TrailwatchError } from '../../errors.ts';
import { compileDetection, explainDetection, matchDetection } from './sigma/detection.ts';
import type { CloudTrailRecord, Fail } from './sigma/values.ts';

/**
 * Sigma detection rules for CloudTrail (`logsource: product: aws, service: cloudtrail`), compiled
 * once into plain predicates on a CloudTrail record. Single-event rules only: correlation rules,
 * rule collections and legacy aggregations are refused at load, as is every modifier or construct
 * trailwatch cannot evaluate exactly — a rule that loads means what it says.
 *
 * Matching follows the Sigma specification: strings case-insensitive unless `cased`, `*`/`?`
 * wildcards with backslash escapes, maps AND, lists OR, `null` for an absent or null field. Field
 * names are dotted paths into the record; an array anywhere on a path stands for any element.
 */

export type SigmaLevel = 'informational' | 'low' | 'medium' | 'high' | 'critical';
export type SigmaStatus = 'stable' | 'test' | 'experimental' | 'deprecated' | 'unsupported';

const LEVELS: ReadonlySet<string> = new Set<SigmaLevel>(['informational', 'low', 'medium', 'high', 'critical']);
const STATUSES: ReadonlySet<string> = new Set<SigmaStatus>(['stable', 'test', 'experimental', 'deprecated', 'unsupported']);

export interface SigmaExplanation {
  matched: boolean;
  reasons: string[];
}

export interface SigmaRule {
  id: string;
  title: string;
  /** Null when the rule gives none: the rules stage decides, not a silent default here. */
  level: SigmaLevel | null;
  status: SigmaStatus | null;
  tags: string[];
  /** ATT&CK technique ids from `attack.tNNNN[.NNN]` tags, upper-cased: `T1562.008`. */
  techniques: string[];
  /** The file the rule came from, and the line its document starts on. */
  source: string;
  line: number;
  /** Record paths the detection reads, sorted. */
  fields: string[];
  matches(record: CloudTrailRecord): boolean;
  explain(record: CloudTrailRecord): SigmaExplanation;
}

function invalid(source: string, line: number, what: string): never {
  throw new TrailwatchError(ErrorCodes.RULE_INVALID, `${source}:${line}: ${what}`, { fault: 'user', details: { source, line } });
}

/** A YAML parser message without its own position and snippet, which the `<file>:<line>:` prefix replaces. */
function yamlWhat(message: string): string {
  return (message.split('\n')[0] ?? message).replace(/ at line \d+, column \d+:?$/, '');
}

function stringField(map: YAMLMap, key: string, line: number, fail: Fail): string | undefined {
  const node = map.get(key, true);
  if (node === undefined) return undefined;
  if (!isScalar(node) || typeof node.value !== 'string' || node.value.trim() === '') fail(line, `'${key}' must be a non-empty string`);
  return node.value;
}

/**
 * Parses every YAML document of `text` as one Sigma rule. `source` names the file in errors, which
 * are TrailwatchError(RULE_INVALID) with the message `<source>:<line>: <what>`.
 */
export function parseSigma(text: string, source: string): SigmaRule[] {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines });
  const lineOf = (node: unknown): number => {
    const range = (node as { range?: readonly number[] | null } | null)?.range;
    return range?.[0] === undefined ? 0 : lines.linePos(range[0]).line;
  };
  const fail: Fail = (line, what) => invalid(source, line, what);
  const rules: SigmaRule[] = [];
  const ids = new Set<string>();

  for (const doc of docs) {
    const problem = doc.errors[0];
    if (problem !== undefined) fail(problem.linePos?.[0].line ?? 0, `invalid YAML: ${yamlWhat(problem.message)}`);
    const root = doc.contents;
    if (root === null) continue;
    const line = lineOf(root);
    if (!isMap(root)) fail(line, 'a Sigma rule must be a YAML map');
    const at = (key: string): number => lineOf(root.items.find((p) => isScalar(p.key) && p.key.value === key)?.key) || line;

    if (root.has('action'))
      fail(at('action'), "rule collections ('action: global/reset/repeat') are not supported; write each rule in full");
    if (root.has('correlation')) fail(at('correlation'), 'correlation rules are not supported yet');
    if (root.has('filter')) fail(at('filter'), 'Sigma filters are not supported');

    const title = stringField(root, 'title', at('title'), fail);
    if (title === undefined) fail(line, "rule has no 'title'");
    const id = stringField(root, 'id', at('id'), fail);
    if (id === undefined) fail(line, `rule '${title}' has no 'id'; trailwatch names its findings by rule id`);
    if (ids.has(id)) fail(at('id'), `rule id '${id}' appears twice in this file`);
    ids.add(id);

    const level = stringField(root, 'level', at('level'), fail) ?? null;
    if (level !== null && !LEVELS.has(level)) fail(at('level'), `level '${level}' is not one of ${[...LEVELS].join(', ')}`);
    const status = stringField(root, 'status', at('status'), fail) ?? null;
    if (status !== null && !STATUSES.has(status)) fail(at('status'), `status '${status}' is not one of ${[...STATUSES].join(', ')}`);

    const tagsNode = root.get('tags', true);
    const tags: string[] = [];
    if (tagsNode !== undefined) {
      if (!isSeq(tagsNode)) fail(at('tags'), "'tags' must be a list of strings");
      for (const t of tagsNode.items) {
        if (!isScalar(t) || typeof t.value !== 'string') fail(lineOf(t) || at('tags'), "'tags' must be a list of strings");
        tags.push(t.value);
      }
    }
    const techniques = tags.filter((t) => /^attack\.t\d{4}(\.\d{3})?$/i.test(t)).map((t) => t.slice('attack.'.length).toUpperCase());

    checkLogsource(root.get('logsource', true), at('logsource'), line, lineOf, fail);

    const detectionNode = root.get('detection', true);
    if (detectionNode === undefined) fail(line, `rule '${title}' has no 'detection'`);
    const detection = compileDetection(detectionNode, at('detection'), lineOf, fail);

    rules.push({
      id,
      title,
      level: level as SigmaLevel | null,
      status: status as SigmaStatus | null,
      tags,
      techniques,
      source,
      line,
      fields: detection.fields,
      matches: (record) => matchDetection(detection, record),
      explain: (record) => explainDetection(detection, record),
    });
  }
  if (rules.length === 0) fail(1, 'no Sigma rule in this file');
  return rules;
}

function checkLogsource(node: unknown, line: number, ruleLine: number, lineOf: (n: unknown) => number, fail: Fail): void {
  if (node === undefined) fail(ruleLine, "rule has no 'logsource'; trailwatch takes 'product: aws, service: cloudtrail'");
  if (!isMap(node)) fail(line, "'logsource' must be a map");
  const got: Record<string, string> = {};
  const lineOfKey: Record<string, number> = {};
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    const value = isScalar(pair.value) ? String(pair.value.value) : '';
    const at = lineOf(pair.key) || line;
    if (key === 'definition') continue;
    if (key !== 'product' && key !== 'service')
      fail(at, `logsource '${key}' is not supported; trailwatch takes 'product: aws, service: cloudtrail'`);
    got[key] = value;
    lineOfKey[key] = at;
  }
  const wrong = got.product?.toLowerCase() !== 'aws' ? 'product' : got.service?.toLowerCase() !== 'cloudtrail' ? 'service' : null;
  if (wrong !== null) {
    const seen = Object.entries(got)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ');
    const at = lineOfKey[wrong] ?? line;
    fail(at, `logsource (${seen || 'empty'}) is not 'product: aws, service: cloudtrail', the only one trailwatch evaluates`);
  }
}
