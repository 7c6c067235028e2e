import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isMap, isScalar, parseAllDocuments } from 'yaml';
import { ErrorCodes, errorMessage, isTrailwatchError } from '../../errors.ts';
import { expandInputPaths, locateJsonError } from '../../ingest/files.ts';
import type { CorrelationRule } from './correlation.ts';
import { cloudTrailEnvelope, compileEventPattern } from './eventbridge.ts';
import { eventPatternKeys, type RuleKeys, sigmaRuleKeys } from './rule-index.ts';
import { parseSigmaFile, type SigmaRule } from './sigma.ts';

/**
 * Detection rules from disk, in either syntax, behind one interface: EventBridge event patterns
 * (`*.json`, bare or in a wrapper giving id, title and severity) and Sigma rules (`*.yml`,
 * `*.yaml`). Loading never stops at the first bad file: every problem is collected with its file
 * and line, so one `trailwatch rules check` lists everything to fix.
 */

export type RuleSeverity = 'informational' | 'low' | 'medium' | 'high' | 'critical';

const SEVERITIES: ReadonlySet<string> = new Set<RuleSeverity>(['informational', 'low', 'medium', 'high', 'critical']);
const DEFAULT_SEVERITY: RuleSeverity = 'medium';

export interface RuleExplanation {
  matched: boolean;
  reasons: string[];
}

export interface Rule {
  id: string;
  title: string;
  severity: RuleSeverity;
  kind: 'eventbridge' | 'sigma';
  /** The file the rule came from. */
  source: string;
  tags: string[];
  /** ATT&CK technique ids from `attack.tNNNN[.NNN]` tags, upper-cased: `T1562.008`. */
  techniques: string[];
  description?: string;
  /**
   * Dotted CloudTrail record paths the rule reads, sorted (`eventName`, `requestParameters.name`).
   * EventBridge envelope fields are given as the record fields they come from (`source` as
   * `eventSource`, `region` as `awsRegion`, …), so one index over record fields serves both syntaxes.
   */
  fields: string[];
  /**
   * What the record's eventName and eventSource must satisfy for the rule to match, derived from
   * its definition (rule-index.ts); left out, the rule is tried on every event.
   */
  keys?: RuleKeys;
  /**
   * Matches by one principal within one findings.foldMs window before the rule is a finding (an
   * alarm threshold on a metric filter, as the CIS benchmark pairs them); absent: 1, every match.
   */
  minCount?: number;
  /** Tested on the CloudTrail record itself; EventBridge patterns see it through its EventBridge envelope. */
  matches(record: Record<string, unknown>): boolean;
  explain(record: Record<string, unknown>): RuleExplanation;
}

export interface RuleProblem {
  source: string;
  line?: number;
  message: string;
  code: string;
}

/** A Sigma correlation rule with the single-event rules of its file it may refer to. */
export interface LoadedCorrelation {
  rule: CorrelationRule;
  base: SigmaRule[];
  source: string;
}

export interface LoadedRules {
  /** Rules whose own matches are findings (Sigma rules that only feed a correlation are not). */
  rules: Rule[];
  /** Sigma correlation rules (event_count, value_count, temporal, temporal_ordered). */
  correlations: LoadedCorrelation[];
  problems: RuleProblem[];
  /** Every rule file read, in load order (including files that had problems). */
  files: string[];
}

/**
 * The EventBridge envelope of a record, built once for all the patterns that test one record in a
 * row (the rules stage tries every rule on an event before the next).
 */
let lastRecord: Record<string, unknown> | null = null;
let lastEnvelope: Record<string, unknown> = {};
function envelopeOf(record: Record<string, unknown>): Record<string, unknown> {
  if (record !== lastRecord) {
    lastEnvelope = cloudTrailEnvelope(record);
    lastRecord = record;
  }
  return lastEnvelope;
}

/** A problem as `trailwatch rules check` prints it: `<file>:<line>: <message> [<code>]`. */
export function formatRuleProblem(p: RuleProblem): string {
  return `${p.source}${p.line === undefined ? '' : `:${p.line}`}: ${p.message} [${p.code}]`;
}

/** trailwatch's own rule pack, shipped beside this file. */
export const DEFAULT_PACK_DIR: string = join(import.meta.dirname, 'pack');

const EVENTBRIDGE_EXTENSIONS = ['.json'];
const SIGMA_EXTENSIONS = ['.yml', '.yaml'];
const RULE_EXTENSIONS: readonly string[] = [...EVENTBRIDGE_EXTENSIONS, ...SIGMA_EXTENSIONS];

/**
 * The rule paths a configuration names: `rules.paths`, then the default pack when
 * `rules.defaultPack` is on. The pack is left out while it is not there (a checkout or build
 * without it), rather than reported as a missing path the user never named.
 */
export function configuredRulePaths(rules: { paths: readonly string[]; defaultPack: boolean }): string[] {
  const paths = [...rules.paths];
  if (rules.defaultPack && existsSync(DEFAULT_PACK_DIR)) paths.push(DEFAULT_PACK_DIR);
  return paths;
}

/**
 * Loads every rule under `paths` (files, or directories walked recursively, where only rule files
 * count: a README beside the rules is not a problem). A file named explicitly must be a rule file.
 * Rule ids are unique across everything loaded; a second rule with a taken id is a problem and is
 * left out.
 */
export async function loadRules(paths: readonly string[]): Promise<LoadedRules> {
  const rules: Rule[] = [];
  const problems: RuleProblem[] = [];
  const files: string[] = [];
  const correlations: LoadedCorrelation[] = [];
  const byId = new Map<string, { source: string; line: number | undefined }>();

  for (const entry of await expandInputPaths(paths, RULE_EXTENSIONS)) {
    if (entry.kind === 'error') {
      problems.push({ source: entry.file, message: String(entry.error.details.reason ?? entry.error.message), code: entry.error.code });
      continue;
    }
    const file = entry.file;
    const kind = EVENTBRIDGE_EXTENSIONS.some((e) => file.endsWith(e))
      ? 'eventbridge'
      : SIGMA_EXTENSIONS.some((e) => file.endsWith(e))
        ? 'sigma'
        : null;
    if (kind === null) {
      problems.push(invalid(file, undefined, `not a rule file: expected ${RULE_EXTENSIONS.join(', ')}`));
      continue;
    }
    let text: string;
    try {
      text = (await readFile(file, 'utf8')).replace(/^\uFEFF/, '');
    } catch (err) {
      problems.push({ source: file, message: `cannot read: ${errorMessage(err)}`, code: ErrorCodes.INPUT_FILE });
      continue;
    }
    files.push(file);
    const loaded = kind === 'eventbridge' ? loadEventBridge(text, file) : loadSigma(text, file);
    problems.push(...loaded.problems);
    if (loaded.correlations) correlations.push(...loaded.correlations);
    for (const { rule, line } of loaded.rules) {
      const first = byId.get(rule.id);
      if (first !== undefined) {
        const at = first.line === undefined ? first.source : `${first.source}:${first.line}`;
        problems.push(invalid(file, line, `rule id '${rule.id}' is already defined in ${at}`));
        continue;
      }
      byId.set(rule.id, { source: file, line });
      rules.push(rule);
    }
  }
  return { rules, correlations, problems, files };
}

interface FileRules {
  rules: { rule: Rule; line: number | undefined }[];
  problems: RuleProblem[];
  correlations?: LoadedCorrelation[];
}

function invalid(source: string, line: number | undefined, message: string): RuleProblem {
  return line === undefined ? { source, message, code: ErrorCodes.RULE_INVALID } : { source, line, message, code: ErrorCodes.RULE_INVALID };
}

// ---------------------------------------------------------------------------------------------
// EventBridge

const WRAPPER_KEYS: ReadonlySet<string> = new Set(['id', 'title', 'severity', 'description', 'tags', 'references', 'minCount', 'pattern']);

/** Envelope fields cloudTrailEnvelope fills from the record, by the record field they come from. */
const ENVELOPE_FIELDS: ReadonlyMap<string, string> = new Map([
  ['id', 'eventID'],
  ['detail-type', 'eventType'],
  ['source', 'eventSource'],
  ['account', 'recipientAccountId'],
  ['time', 'eventTime'],
  ['region', 'awsRegion'],
]);

function loadEventBridge(text: string, file: string): FileRules {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const at = locateJsonError(text);
    const message = at === null ? `not valid JSON: ${errorMessage(err)}` : `not valid JSON at column ${at.column}: ${at.reason}`;
    return { rules: [], problems: [invalid(file, at?.line, message)] };
  }
  const offsets = jsonOffsets(text);
  const lineOf = (path: string): number => lineAt(text, nearestOffset(offsets, path));
  const isWrapper = isObject(parsed) && 'id' in parsed && isObject(parsed.pattern);
  const problems: RuleProblem[] = [];
  const fail = (path: string, message: string): void => void problems.push(invalid(file, lineOf(path), message));

  let id = baseName(file);
  let title = id;
  let severity: RuleSeverity = DEFAULT_SEVERITY;
  let description: string | undefined;
  let tags: string[] = [];
  let minCount = 1;
  let pattern: unknown = parsed;
  if (isWrapper && isObject(parsed)) {
    pattern = parsed.pattern;
    for (const key of Object.keys(parsed)) {
      if (!WRAPPER_KEYS.has(key)) fail(`$${segment(key)}`, `unknown key '${key}' in a rule; expected ${[...WRAPPER_KEYS].join(', ')}`);
    }
    const stringKey = (key: string, required: boolean): string | undefined => {
      const value = parsed[key];
      if (value === undefined && !required) return undefined;
      if (typeof value === 'string' && value.trim() !== '') return value;
      fail(value === undefined ? '$' : `$${segment(key)}`, `'${key}' must be a non-empty string`);
      return undefined;
    };
    id = stringKey('id', true) ?? id;
    title = stringKey('title', true) ?? title;
    description = stringKey('description', false);
    const level = stringKey('severity', true);
    if (level !== undefined) {
      if (SEVERITIES.has(level)) severity = level as RuleSeverity;
      else fail('$.severity', `severity '${level}' is not one of ${[...SEVERITIES].join(', ')}`);
    }
    for (const key of ['tags', 'references'] as const) {
      const value = parsed[key];
      if (value !== undefined && !(Array.isArray(value) && value.every((v) => typeof v === 'string'))) {
        fail(`$${segment(key)}`, `'${key}' must be a list of strings`);
      }
    }
    if (Array.isArray(parsed.tags)) tags = parsed.tags.filter((t): t is string => typeof t === 'string');
    if (parsed.minCount !== undefined) {
      if (Number.isInteger(parsed.minCount) && (parsed.minCount as number) >= 1) minCount = parsed.minCount as number;
      else
        fail(
          '$.minCount',
          `'minCount' must be a whole number ≥ 1 (matches by one principal within findings.foldMs), got ${JSON.stringify(parsed.minCount)}`,
        );
    }
  }

  let compiled: ReturnType<typeof compileEventPattern> | undefined;
  try {
    compiled = compileEventPattern(pattern, file);
  } catch (err) {
    if (!isTrailwatchError(err) || err.code !== ErrorCodes.RULE_INVALID) throw err;
    // The compiler's paths are relative to the pattern; in a wrapper the pattern sits under `pattern`.
    const path = String(err.details.path ?? '$');
    const inFile = isWrapper ? path.replace(/^\$/, '$.pattern') : path;
    const what = err.message.startsWith(`${file}: ${path}: `) ? err.message.slice(`${file}: ${path}: `.length) : err.message;
    fail(inFile, `${inFile}: ${what}`);
  }
  if (compiled === undefined || problems.length > 0) return { rules: [], problems: problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0)) };

  const pat = compiled;
  const fields = [
    ...new Set(
      pat.fields.flatMap((f) => {
        if (f[0] === 'detail') return f.length > 1 ? [f.slice(1).join('.')] : [];
        const from = f.length === 1 && f[0] !== undefined ? ENVELOPE_FIELDS.get(f[0]) : undefined;
        return from === undefined ? [] : [from];
      }),
    ),
  ].sort();
  const rule: Rule = {
    id,
    title,
    severity,
    kind: 'eventbridge',
    source: file,
    tags,
    techniques: techniquesOf(tags),
    fields,
    keys: eventPatternKeys(pattern),
    matches: (record) => pat.matches(envelopeOf(record)),
    explain: (record) => pat.explain(envelopeOf(record)),
  };
  if (description !== undefined) rule.description = description;
  if (minCount > 1) rule.minCount = minCount;
  return { rules: [{ rule, line: isWrapper ? lineOf('$.id') : undefined }], problems };
}

function baseName(file: string): string {
  const name = file.split(/[\\/]/).pop() ?? file;
  return name.replace(/\.json$/, '');
}

function techniquesOf(tags: readonly string[]): string[] {
  return tags.filter((t) => /^attack\.t\d{4}(\.\d{3})?$/i.test(t)).map((t) => t.slice('attack.'.length).toUpperCase());
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One step of a JSON path, spelled as the EventBridge compiler spells it in its errors. */
function segment(key: string | number): string {
  if (typeof key === 'number') return `[${key}]`;
  return /^[A-Za-z_$][\w$-]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/**
 * Where each value of valid JSON text starts, by JSON path: for an object member, its key (the
 * line a person looks at), for an array element, the element. Only called on text JSON.parse took.
 */
function jsonOffsets(text: string): Map<string, number> {
  const out = new Map<string, number>();
  let i = 0;
  const space = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const string = (): string => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string, at?: number): void => {
    space();
    out.set(path, at ?? i);
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      space();
      for (let n = 0; i < text.length && text[i] !== close; n++) {
        if (c === '{') {
          const keyAt = i;
          const key = string();
          space();
          i++; // the colon
          value(path + segment(key), keyAt);
        } else {
          value(path + segment(n));
        }
        space();
        if (text[i] === ',') i++;
        space();
      }
      i++;
    } else if (c === '"') {
      string();
    } else {
      while (i < text.length && !',]} \t\n\r'.includes(text[i]!)) i++;
    }
  };
  value('$');
  return out;
}

/** The offset of `path`, or of the nearest enclosing value the text has. */
function nearestOffset(offsets: ReadonlyMap<string, number>, path: string): number {
  for (let p = path; ; ) {
    const at = offsets.get(p);
    if (at !== undefined) return at;
    const shorter = p.replace(/(\.[^.[\]]+|\[[^\]]*\])$/, '');
    if (shorter === p) return 0;
    p = shorter;
  }
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let k = text.indexOf('\n'); k !== -1 && k < offset; k = text.indexOf('\n', k + 1)) line++;
  return line;
}

// ---------------------------------------------------------------------------------------------
// Sigma

function loadSigma(text: string, file: string): FileRules {
  let parsed: ReturnType<typeof parseSigmaFile>;
  try {
    parsed = parseSigmaFile(text, file);
  } catch (err) {
    if (!isTrailwatchError(err) || err.code !== ErrorCodes.RULE_INVALID) throw err;
    const line = typeof err.details.line === 'number' && err.details.line > 0 ? err.details.line : undefined;
    const prefix = `${file}:${String(err.details.line)}: `;
    const what = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    return { rules: [], problems: [invalid(file, line, what)] };
  }
  const descriptions = sigmaDescriptions(text);
  return {
    problems: [],
    correlations: parsed.correlations.map((rule) => ({ rule, base: parsed.rules, source: file })),
    rules: parsed.standalone.map((s) => {
      const rule: Rule = {
        id: s.id,
        title: s.title,
        severity: s.level ?? DEFAULT_SEVERITY,
        kind: 'sigma',
        source: file,
        tags: s.tags,
        techniques: s.techniques,
        fields: s.fields,
        keys: sigmaRuleKeys(s),
        matches: (record) => s.matches(record),
        explain: (record) => s.explain(record),
      };
      const description = descriptions.get(s.id);
      if (description !== undefined) rule.description = description;
      return { rule, line: s.line };
    }),
  };
}

/** `description` by rule id: parseSigma does not carry it, and findings want it. */
function sigmaDescriptions(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const doc of parseAllDocuments(text)) {
    const root = doc.contents;
    if (!isMap(root)) continue;
    const id = root.get('id', true);
    const description = root.get('description', true);
    if (isScalar(id) && isScalar(description) && typeof description.value === 'string') out.set(String(id.value), description.value);
  }
  return out;
}
