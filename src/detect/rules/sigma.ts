import { isMap, isScalar, isSeq, LineCounter, parseAllDocuments, type YAMLMap } from 'yaml';
import { ErrorCodes, TrailwatchError } from '../../errors.ts';
import { type CorrelationRule, decidedAtWindowClose } from './correlation.ts';
import { type CorrelationSection, readCorrelationSection } from './sigma/correlation-parse.ts';
import { compileDetection, type Detection, explainDetection, matchDetection, TIMEFRAME_REFUSAL } from './sigma/detection.ts';
import type { CloudTrailRecord, Fail } from './sigma/values.ts';

/**
 * Sigma detection rules for CloudTrail (`logsource: product: aws, service: cloudtrail`), compiled
 * once into plain predicates on a CloudTrail record. `parseSigma` takes single-event rules only;
 * `parseSigmaFile` also takes correlation rules (evaluated by `CorrelationEngine` in
 * correlation.ts). Rule collections and legacy aggregations are refused at load, as is every
 * modifier or construct trailwatch cannot evaluate exactly — a rule that loads means what it says.
 *
 * Matching follows the Sigma specification: strings case-insensitive unless `cased`, `*`/`?`
 * wildcards with backslash escapes, maps AND, lists OR, `null` for an absent or null field. Field
 * names are dotted paths into the record; an array anywhere on a path stands for any element, and a
 * map where the path ends for every scalar inside it (values.ts says why).
 */

export type SigmaLevel = 'informational' | 'low' | 'medium' | 'high' | 'critical';
export type SigmaStatus = 'stable' | 'test' | 'experimental' | 'deprecated' | 'unsupported';

const LEVELS: ReadonlySet<string> = new Set<SigmaLevel>(['informational', 'low', 'medium', 'high', 'critical']);
const STATUSES: ReadonlySet<string> = new Set<SigmaStatus>(['stable', 'test', 'experimental', 'deprecated', 'unsupported']);

export interface SigmaExplanation {
  matched: boolean;
  reasons: string[];
}

/** What every Sigma document carries, a single-event rule or a correlation. */
export interface SigmaHeader {
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
}

export interface SigmaRule extends SigmaHeader {
  /** The rule's optional `name`, by which correlation rules may refer to it. */
  name?: string;
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
  const { rules } = parseDocuments(text, source, false);
  if (rules.length === 0) invalid(source, 1, 'no Sigma rule in this file');
  return rules;
}

export interface SigmaFile {
  /** Every single-event rule of the file, correlated or not. */
  rules: SigmaRule[];
  correlations: CorrelationRule[];
  /**
   * The rules whose own matches are findings: those no correlation refers to, and those referred
   * to by a correlation with `generate: true`. The rest only feed their correlations.
   */
  standalone: SigmaRule[];
}

/**
 * Like `parseSigma`, but a document with `correlation:` is a Sigma correlation rule. Its `rules`
 * name rules of this file or of `known` (rules loaded from other files) by id or `name`; a name is
 * resolved to its id here, so `CorrelationRule.rules` holds ids only.
 */
export function parseSigmaFile(text: string, source: string, known: readonly SigmaRule[] = []): SigmaFile {
  const { rules, pending } = parseDocuments(text, source, true);
  if (rules.length === 0 && pending.length === 0) invalid(source, 1, 'no Sigma rule in this file');
  const correlations = resolveCorrelations(pending, rules, known, source);
  const fed = new Set<string>();
  const generated = new Set<string>();
  for (const c of correlations) for (const r of c.rules) (c.generate ? generated : fed).add(r);
  const standalone = rules.filter((r) => generated.has(r.id) || !fed.has(r.id));
  return { rules, correlations, standalone };
}

/** A correlation document read, its section not yet resolved against the file's rules. */
interface PendingCorrelation extends Omit<SigmaHeader, 'source'> {
  name: string | null;
  section: CorrelationSection;
  /** `generate` given beside `correlation:` rather than inside it. */
  generate: boolean | null;
}

function parseDocuments(text: string, source: string, withCorrelations: boolean): { rules: SigmaRule[]; pending: PendingCorrelation[] } {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines });
  const lineOf = (node: unknown): number => {
    const range = (node as { range?: readonly number[] | null } | null)?.range;
    return range?.[0] === undefined ? 0 : lines.linePos(range[0]).line;
  };
  const fail: Fail = (line, what) => invalid(source, line, what);
  const rules: SigmaRule[] = [];
  const pending: PendingCorrelation[] = [];
  const ids = new Set<string>();
  const names = new Set<string>();

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
    if (root.has('correlation') && !withCorrelations) fail(at('correlation'), 'correlation rules are not supported yet');
    if (root.has('filter')) fail(at('filter'), 'Sigma filters are not supported');

    const title = stringField(root, 'title', at('title'), fail);
    if (title === undefined) fail(line, "rule has no 'title'");
    const id = stringField(root, 'id', at('id'), fail);
    if (id === undefined) fail(line, `rule '${title}' has no 'id'; trailwatch names its findings by rule id`);
    if (ids.has(id)) fail(at('id'), `rule id '${id}' appears twice in this file`);
    ids.add(id);
    const name = stringField(root, 'name', at('name'), fail);
    if (name !== undefined) {
      if (names.has(name)) fail(at('name'), `rule name '${name}' appears twice in this file`);
      names.add(name);
    }

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

    if (root.has('correlation')) {
      for (const key of ['detection', 'logsource'])
        if (root.has(key)) fail(at(key), `a correlation rule has no '${key}'; it refers to rules that do`);
      const section = readCorrelationSection(root.get('correlation', true), at('correlation'), lineOf, fail);
      const genNode = root.get('generate', true);
      if (genNode !== undefined && (!isScalar(genNode) || typeof genNode.value !== 'boolean'))
        fail(at('generate'), "'generate' must be true or false");
      const generate = isScalar(genNode) && typeof genNode.value === 'boolean' ? genNode.value : null;
      pending.push({
        id,
        name: name ?? null,
        title,
        level: level as SigmaLevel | null,
        status: status as SigmaStatus | null,
        tags,
        techniques,
        line,
        section,
        generate,
      });
      continue;
    }

    checkLogsource(root.get('logsource', true), at('logsource'), line, lineOf, fail);

    const detectionNode = root.get('detection', true);
    if (detectionNode === undefined) fail(line, `rule '${title}' has no 'detection'`);
    const detection = compileDetection(detectionNode, at('detection'), lineOf, fail);
    // After the detection, so a rule with both reports its aggregation, the root of the problem.
    if (root.has('timeframe')) fail(at('timeframe'), TIMEFRAME_REFUSAL);

    const rule: SigmaRule = {
      id,
      ...(name === undefined ? {} : { name }),
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
    };
    detections.set(rule, detection);
    rules.push(rule);
  }
  return { rules, pending };
}

/** The compiled detection of every rule parsed here, for the rule index (rule-index.ts). */
const detections = new WeakMap<SigmaRule, Detection>();

/** The compiled detection behind a rule parseSigma or parseSigmaFile returned; undefined for a rule made elsewhere. */
export function sigmaDetection(rule: SigmaRule): Detection | undefined {
  return detections.get(rule);
}

/** Resolves references by id or name, checks aliases, and refuses reference cycles. */
function resolveCorrelations(
  pending: readonly PendingCorrelation[],
  rules: readonly SigmaRule[],
  known: readonly SigmaRule[],
  source: string,
): CorrelationRule[] {
  const byRef = new Map<string, string>();
  for (const r of known) {
    byRef.set(r.id, r.id);
    if (r.name !== undefined) byRef.set(r.name, r.id);
  }
  for (const r of [...rules, ...pending]) {
    byRef.set(r.id, r.id);
    if (r.name !== undefined && r.name !== null) byRef.set(r.name, r.id);
  }
  const out = pending.map((p): CorrelationRule => {
    const s = p.section;
    const resolve = (ref: string, line: number, what: string): string => {
      const id = byRef.get(ref);
      if (id === undefined) invalid(source, line, `${what} '${ref}': no rule in this file or already loaded has that id or name`);
      if (id === p.id) invalid(source, line, `correlation '${p.title}' refers to itself`);
      return id;
    };
    const refIds = s.refs.map((r) => resolve(r.ref, r.line, 'correlation refers to rule'));
    const aliases: Record<string, Record<string, string>> = {};
    for (const [alias, perRule] of s.aliases) {
      if (!s.groupBy.includes(alias)) invalid(source, s.aliasLine, `alias '${alias}' is not used in 'group-by'`);
      const resolved: Record<string, string> = {};
      for (const [ref, { path, line }] of perRule) {
        const id = resolve(ref, line, `alias '${alias}' names rule`);
        if (!refIds.includes(id)) invalid(source, line, `alias '${alias}' names rule '${ref}', which this correlation does not refer to`);
        resolved[id] = path;
      }
      const missing = s.refs.find((_, i) => resolved[refIds[i] ?? ''] === undefined);
      if (missing !== undefined) invalid(source, s.aliasLine, `alias '${alias}' gives no field for rule '${missing.ref}'`);
      aliases[alias] = resolved;
    }
    return {
      id: p.id,
      name: p.name,
      title: p.title,
      level: p.level,
      status: p.status,
      tags: p.tags,
      techniques: p.techniques,
      source,
      line: p.line,
      type: s.type,
      rules: refIds,
      groupBy: s.groupBy,
      aliases,
      timespanMs: s.timespanMs,
      condition: s.condition,
      field: s.field,
      generate: s.generate ?? p.generate ?? false,
    };
  });
  const byId = new Map(out.map((c) => [c.id, c]));
  for (const c of out)
    for (const r of c.rules) {
      const inner = byId.get(r);
      if (inner !== undefined && decidedAtWindowClose(inner))
        invalid(
          source,
          c.line,
          `correlation '${c.title}' refers to '${inner.title}', whose lt/lte/eq condition is only decided when its window closes and cannot feed another correlation`,
        );
    }
  const state = new Map<string, 'open' | 'done'>();
  const visit = (c: CorrelationRule): void => {
    if (state.get(c.id) === 'done') return;
    if (state.get(c.id) === 'open') invalid(source, c.line, `correlation '${c.title}' is part of a reference cycle`);
    state.set(c.id, 'open');
    for (const r of c.rules) {
      const inner = byId.get(r);
      if (inner !== undefined) visit(inner);
    }
    state.set(c.id, 'done');
  };
  for (const c of out) visit(c);
  return out;
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
