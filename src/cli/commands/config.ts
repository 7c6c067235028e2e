import { userInfo } from 'node:os';
import { basename } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { type ConfigFile, readConfigFile } from '../../config/file.ts';
import { type ConfigProblem, checkConfig, expiredSuppressions, formatPath, loadConfig, redactConfig } from '../../config/load.ts';
import { type ConfigRecord, documentOf, documentYaml, sha256 } from '../../config/record.ts';
import { type Config, FINDING_KINDS } from '../../config/schema.ts';
import type { InsightScope, InsightType } from '../../contracts/types.ts';
import { FINDING_TUNING_FIELDS, FindingOverrides, type FindingSubject } from '../../detect/finding-overrides.ts';
import { Overrides, TUNING_FIELDS } from '../../detect/overrides.ts';
import { SIGNALS } from '../../detect/signals.ts';
import type { InsightSubject } from '../../emit/insight.ts';
import { ErrorCodes, TrailwatchError } from '../../errors.ts';
import { CONFIG_READ_TIMEOUT_MS, readConfigHistory, writeConfigVersion } from '../../runtime/config-topic.ts';
import { createTransport } from '../../transport/index.ts';
import { COMMON_HELP, intOption, parse, unknownAction, usageError } from '../args.ts';
import { openSession } from '../connect.ts';

export const CONFIG_USAGE = `Usage: trailwatch config [options]
       trailwatch config check FILE
       trailwatch config explain --key KEY | --scope S --account A ... [--config FILE]
       trailwatch config explain --finding-rule ID [--principal P ...] [--config FILE]
       trailwatch config apply FILE [--author NAME] [--message TEXT]
       trailwatch config history [--limit N] [--json]
       trailwatch config show [VERSION]

Validates the configuration (defaults ← --config file ← environment) and prints the effective
result as JSON, secrets shown as ****. Every problem is listed at once; exit 1 if any.
A config file is YAML (.yaml, .yml) or JSON.

  check     every problem of FILE with its path (and line, for YAML); warns about suppressions
            already expired; exit 1 on any problem
  explain   which override and suppressions apply to a key (or a finding), and its effective settings
  apply     FILE's detector and findings tuning as a new version on the config topic (topics.config): running
            detectors take it at their next batch boundary, without a restart
  history   the versions on the config topic: who applied what, when and why
  show      one version's settings, as YAML (the latest without VERSION)

${COMMON_HELP}`;

export const APPLY_USAGE = `Usage: trailwatch config apply FILE [--author NAME] [--message TEXT]

Validates FILE exactly as \`config check\` does (every problem with its path and line; exit 1, and
nothing written, if any), then writes its detector tuning (scoreThreshold, minEventsPerBucket,
minRatio, burstMargin, minHistoryMs, direction, overrides, suppressions) and its findings tuning
(findings.overrides, findings.suppressions), defaults where FILE says nothing, as a new version to the config topic (topics.config, "trailwatch.config"; created
compacted with one partition if missing). Every running detector member (\`trailwatch run\`
without --watch) takes the latest version at its next batch boundary; its Insights and findings
name the version (trailwatch.configVersion, unmapped.configVersion). Other settings in FILE
(kafka, topics, the rest of detector and findings, …) are not versioned and take a restart.

The version is the highest one + 1; two applies at once both land, one version apart. A FILE
whose tuning equals the latest version's writes nothing.

The cluster and topics.config come from --config when given, else from FILE (and the environment).

Options:
      --author NAME       who applies it (default: $USER)
      --message TEXT      why, shown by \`config history\`
      --timeout-ms N      give up reading the config topic after N ms (default ${CONFIG_READ_TIMEOUT_MS})
${COMMON_HELP}`;

export const HISTORY_USAGE = `Usage: trailwatch config history [--limit N] [--json]

Lists the versions on the config topic (topics.config), newest first: version, when it was
applied, by whom, the message, the file and its sha256 (short). Versions the feedback policy wrote
(\`trailwatch feedback\`) have the author feedback-policy and its reason as message.

Options:
      --limit N           the newest N versions (default 20; 0: all)
      --json              the version records as JSON ({"versions": [...]}), documents included
      --timeout-ms N      give up reading the config topic after N ms (default ${CONFIG_READ_TIMEOUT_MS})
${COMMON_HELP}`;

export const SHOW_USAGE = `Usage: trailwatch config show [VERSION]

Prints a version's settings (the latest without VERSION) as YAML: a file \`config apply\` takes
back as it is, e.g. to return to an earlier version:
  trailwatch config show 3 > v3.yaml && trailwatch config apply v3.yaml --message "back to 3"

Options:
      --json              the whole version record as JSON
      --timeout-ms N      give up reading the config topic after N ms (default ${CONFIG_READ_TIMEOUT_MS})
${COMMON_HELP}`;

export const CHECK_USAGE = `Usage: trailwatch config check FILE

Validates FILE (YAML or JSON) against the config schema on top of the defaults (the environment
is not read): every problem is printed as FILE:LINE: PATH: MESSAGE (the line for YAML only), e.g.
  trailwatch.yaml:12: detector.overrides[2].match.region: unknown key
Suppressions whose expiry is already past are warned about. Exit 0 when valid, 1 otherwise.

Options:
  -h, --help          this help`;

export const EXPLAIN_USAGE = `Usage: trailwatch config explain --key KEY [--config FILE]
       trailwatch config explain --scope action|principalAction --account A --service S --action X
                                 [--region R] [--principal ARN] [--insight-type T] [--config FILE]
       trailwatch config explain --finding-rule ID [--kind K] [--principal ARN] [--account A]
                                 [--region R] [--service S] [--action X] [--config FILE]

Prints which detector.overrides entry (the most specific match) and which detector.suppressions
apply to one key, and the settings it is judged with. KEY is a key id as Insights and
\`backtest --series\` name it, e.g. action|call|123456789012|us-east-1|ec2.amazonaws.com|RunInstances.
With --finding-rule: which findings.overrides entry and findings.suppressions apply to a finding of
that rule (finding_info.analytic.uid, e.g. tw-ami-shared, trailwatch-first-seen), and what is
emitted; fields not given are empty, as on a finding that has none.

Options:
      --key KEY            the key id
      --scope S            action (default) or principalAction
      --insight-type T     ApiCallRateInsight (default) or ApiErrorRateInsight
      --account A, --region R, --principal ARN, --service S, --action X
      --at TIME            judge suppressions' expiry at this ISO time (default: now; for a
                           finding, its event time)
      --finding-rule ID    a finding's rule id or name
      --kind K             its kind: rule, correlation, first-seen or breadth (default: first-seen
                           for trailwatch-first-seen, breadth for trailwatch-breadth*, else rule)
${COMMON_HELP}`;

export async function configCommand(argv: string[]): Promise<number> {
  if (argv[0] === 'check') return checkCommand(argv.slice(1));
  if (argv[0] === 'explain') return explainCommand(argv.slice(1));
  if (argv[0] === 'apply') return applyCommand(argv.slice(1));
  if (argv[0] === 'history') return historyCommand(argv.slice(1));
  if (argv[0] === 'show') return showCommand(argv.slice(1));
  const { values, positionals } = parse(argv, {}, CONFIG_USAGE);
  if (values.help) {
    process.stdout.write(`${CONFIG_USAGE}\n`);
    return 0;
  }
  if (positionals.length > 0) throw unknownAction('config', positionals[0], ['check', 'explain', 'apply', 'history', 'show'], CONFIG_USAGE);
  const config = loadConfig({ file: values.config });
  process.stdout.write(`${JSON.stringify(redactConfig(config), null, 2)}\n`);
  return 0;
}

async function checkCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {}, CHECK_USAGE);
  if (values.help) {
    process.stdout.write(`${CHECK_USAGE}\n`);
    return 0;
  }
  const [file, ...extra] = positionals;
  if (!file || extra.length > 0) throw usageError('config check takes one FILE', CHECK_USAGE);
  const checked = checkFile(file);
  for (const line of checked.lines) process.stdout.write(`${line}\n`);
  if (!checked.config) return 1;
  process.stdout.write(`${file}: valid${checked.warnings > 0 ? `, ${plural(checked.warnings, 'warning')}` : ''}\n`);
  return 0;
}

/**
 * What `config check` says of FILE: problems and warnings as `FILE:LINE: PATH: MESSAGE` lines
 * (with a closing count when there are problems), and the config when it is valid.
 */
function checkFile(file: string): { config: Config | null; parsed: ConfigFile | null; lines: string[]; warnings: number } {
  const lines: string[] = [];
  let parsed: ConfigFile;
  try {
    parsed = readConfigFile(file);
  } catch (err) {
    return { config: null, parsed: null, lines: [`${file}: cannot read: ${(err as Error).message}`], warnings: 0 };
  }
  if (parsed.data === null) {
    lines.push(...parsed.errors, `${file}: ${plural(parsed.errors.length, 'problem')}`);
    return { config: null, parsed, lines, warnings: 0 };
  }
  const { config, problems } = checkConfig(parsed.data);
  const where = (p: ConfigProblem) => {
    const line = parsed.lineOf(p.path);
    const at = line === null ? file : `${file}:${line}`;
    return p.path.length > 0 ? `${at}: ${formatPath(p.path)}: ${p.message}` : `${at}: ${p.message}`;
  };
  for (const p of problems) lines.push(where(p));
  const warnings = config ? [...expiredSuppressions(config, Date.now()), ...expiredFindingSuppressions(config, Date.now())] : [];
  for (const w of warnings) lines.push(`warning: ${where(w)}`);
  if (problems.length > 0) {
    lines.push(`${file}: ${plural(problems.length, 'problem')}`);
    return { config: null, parsed, lines, warnings: warnings.length };
  }
  return { config, parsed, lines, warnings: warnings.length };
}

/** findings.suppressions already past their expiry, as `config check` warns of them. */
function expiredFindingSuppressions(c: Config, nowMs: number): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  c.findings.suppressions.forEach((s, i) => {
    if (Date.parse(s.expires) <= nowMs) {
      out.push({ path: ['findings', 'suppressions', i, 'expires'], message: `expired at ${s.expires}: it no longer applies` });
    }
  });
  return out;
}

/** Who applies a version when --author does not say: the login name. */
export function defaultAuthor(): string {
  const fromEnv = process.env.USER ?? process.env.LOGNAME ?? process.env.USERNAME;
  if (fromEnv) return fromEnv;
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

/** Paths set in a config file that a version does not carry (they take a restart). */
function unversionedPaths(data: Record<string, unknown>): string[] {
  const tuning: Record<string, Set<string>> = { detector: new Set(TUNING_FIELDS), findings: new Set(FINDING_TUNING_FIELDS) };
  const out: string[] = [];
  for (const [key, value] of Object.entries(data)) {
    const fields = tuning[key];
    if (!fields) out.push(key);
    else if (typeof value === 'object' && value !== null) {
      for (const d of Object.keys(value)) if (!fields.has(d)) out.push(`${key}.${d}`);
    }
  }
  return out;
}

async function applyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { author: { type: 'string' }, message: { type: 'string', short: 'm' }, 'timeout-ms': { type: 'string' } },
    APPLY_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${APPLY_USAGE}\n`);
    return 0;
  }
  const [file, ...extra] = positionals;
  if (!file || extra.length > 0) throw usageError('config apply takes one FILE', APPLY_USAGE);
  const author = (values.author ?? defaultAuthor()).trim();
  if (author === '') throw usageError('--author must name someone', APPLY_USAGE);
  const timeoutMs = intOption(values['timeout-ms'], 'timeout-ms', APPLY_USAGE) ?? CONFIG_READ_TIMEOUT_MS;
  const checked = checkFile(file);
  for (const line of checked.lines) process.stdout.write(`${line}\n`);
  if (!checked.config || !checked.parsed?.data) {
    process.stdout.write(`${file}: not applied\n`);
    return 1;
  }
  const document = documentOf(checked.config);
  const session = await openSession({ config: values.config ?? file, 'log-level': values['log-level'] }, { autoStart: false });
  const transport = createTransport(session.config.kafka, session.logger);
  const topic = session.config.topics.config;
  const result = await writeConfigVersion(
    transport,
    session.config,
    (latest) =>
      latest && isDeepStrictEqual(latest.document, document)
        ? null
        : { author, message: values.message ?? '', source: basename(file), sha256: sha256(checked.parsed?.text ?? ''), document },
    { timeoutMs },
  );
  for (const lost of result.lostRaces) {
    process.stdout.write(`version ${lost.version} was taken meanwhile by ${lost.author}${lost.message ? ` ("${lost.message}")` : ''}\n`);
  }
  const unversioned = unversionedPaths(checked.parsed.data);
  if (result.written === null) {
    const latest = result.previous as ConfigRecord;
    process.stdout.write(
      `${file}: no change: version ${latest.version} (${latest.appliedAt}, ${latest.author}) has the same settings; nothing written\n`,
    );
    return 0;
  }
  const v = result.written;
  process.stdout.write(
    `applied ${file} as config version ${v.version} on ${topic} (sha256 ${v.sha256.slice(0, 12)}, author ${v.author}): ` +
      'running detectors take it at their next batch boundary\n',
  );
  if (unversioned.length > 0) {
    process.stdout.write(`note: not part of a version (they take a restart): ${unversioned.join(', ')}\n`);
  }
  return 0;
}

async function historyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { limit: { type: 'string' }, json: { type: 'boolean' }, 'timeout-ms': { type: 'string' } },
    HISTORY_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${HISTORY_USAGE}\n`);
    return 0;
  }
  if (positionals.length > 0) throw usageError('config history takes no FILE or VERSION', HISTORY_USAGE);
  const limit = intOption(values.limit, 'limit', HISTORY_USAGE) ?? 20;
  const timeoutMs = intOption(values['timeout-ms'], 'timeout-ms', HISTORY_USAGE) ?? CONFIG_READ_TIMEOUT_MS;
  const session = await openSession(values, { autoStart: false });
  const topic = session.config.topics.config;
  const { exists, history } = await readConfigHistory(createTransport(session.config.kafka, session.logger), topic, timeoutMs);
  const versions = history.list().slice(0, limit === 0 ? undefined : limit);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ topic, versions }, null, 2)}\n`);
    return 0;
  }
  if (versions.length === 0) {
    process.stdout.write(
      `no config versions on ${topic}${exists ? '' : ' (no such topic yet)'}: \`trailwatch config apply FILE\` writes the first\n`,
    );
    return 0;
  }
  process.stdout.write(`${historyTable(versions)}\n`);
  for (const bad of history.invalid) process.stderr.write(`warning: ${bad.problem}\n`);
  return 0;
}

/** The versions as an aligned table, one line each, newest first as given. */
export function historyTable(versions: readonly ConfigRecord[]): string {
  // The message last and whole: it is the why (a feedback-policy version's lists the verdicts).
  const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim() || '-';
  const rows = [
    ['VERSION', 'APPLIED', 'AUTHOR', 'FILE', 'SHA256', 'MESSAGE'],
    ...versions.map((v) => [
      String(v.version),
      v.appliedAt.replace(/\.\d{3}Z$/, 'Z'),
      v.author,
      v.source,
      v.sha256.slice(0, 12),
      oneLine(v.message),
    ]),
  ];
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c] ?? 0))).join('  ')).join('\n');
}

async function showCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' }, 'timeout-ms': { type: 'string' } }, SHOW_USAGE);
  if (values.help) {
    process.stdout.write(`${SHOW_USAGE}\n`);
    return 0;
  }
  const [wanted, ...extra] = positionals;
  if (extra.length > 0) throw usageError('config show takes at most one VERSION', SHOW_USAGE);
  if (wanted !== undefined && !/^[1-9]\d*$/.test(wanted)) {
    throw usageError(`VERSION is a version number as \`config history\` lists them, got "${wanted}"`, SHOW_USAGE);
  }
  const version = wanted === undefined ? null : Number(wanted);
  const timeoutMs = intOption(values['timeout-ms'], 'timeout-ms', SHOW_USAGE) ?? CONFIG_READ_TIMEOUT_MS;
  const session = await openSession(values, { autoStart: false });
  const topic = session.config.topics.config;
  const { history } = await readConfigHistory(createTransport(session.config.kafka, session.logger), topic, timeoutMs);
  const record = version === null ? history.latest() : history.get(version);
  if (!record) {
    const known = history.list();
    const range = known.length === 0 ? 'none yet' : `${known.at(-1)?.version}–${known[0]?.version}`;
    throw new TrailwatchError(
      ErrorCodes.USAGE,
      `${version === null ? 'no config version' : `no config version ${version}`} on ${topic} (versions: ${range}); \`trailwatch config history\` lists them`,
      { fault: 'user' },
    );
  }
  process.stdout.write(values.json ? `${JSON.stringify(record, null, 2)}\n` : documentYaml(record.document));
  return 0;
}

async function explainCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      key: { type: 'string' },
      scope: { type: 'string' },
      'insight-type': { type: 'string' },
      account: { type: 'string' },
      region: { type: 'string' },
      principal: { type: 'string' },
      service: { type: 'string' },
      action: { type: 'string' },
      at: { type: 'string' },
      'finding-rule': { type: 'string' },
      kind: { type: 'string' },
    },
    EXPLAIN_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${EXPLAIN_USAGE}\n`);
    return 0;
  }
  if (values['finding-rule'] !== undefined) {
    const atMs = values.at === undefined ? Date.now() : Date.parse(values.at);
    if (Number.isNaN(atMs)) throw usageError(`--at takes an ISO time, got "${values.at}"`, EXPLAIN_USAGE);
    const config = loadConfig({ file: values.config });
    process.stdout.write(explainFinding(config, findingSubjectOfFlags(values), atMs));
    return 0;
  }
  if (values.kind !== undefined) throw usageError('--kind goes with --finding-rule', EXPLAIN_USAGE);
  const subject = values.key ? subjectOfKey(values.key) : subjectOfFlags(values);
  const atMs = values.at === undefined ? Date.now() : Date.parse(values.at);
  if (Number.isNaN(atMs)) throw usageError(`--at takes an ISO time, got "${values.at}"`, EXPLAIN_USAGE);
  const config = loadConfig({ file: values.config });
  process.stdout.write(explain(config, subject, atMs));
  return 0;
}

/** The explanation `config explain` prints. */
export function explain(config: Config, subject: InsightSubject, atMs: number): string {
  const d = config.detector;
  const overrides = new Overrides(d);
  const s = overrides.resolve(subject);
  const lines: string[] = [];
  const id = (['scope', 'insightType', 'accountId', 'region', 'service', 'action', 'principal'] as const)
    .filter((f) => subject[f] !== null && subject[f] !== '')
    .map((f) => `${f}=${subject[f]}`)
    .join(' ');
  lines.push(`key: ${id}`);
  const o = d.overrides[s.override];
  lines.push(o ? `override: detector.overrides[${s.override}] ${JSON.stringify(o)}` : 'override: none (detector-wide settings)');
  if (s.suppressions.length === 0) lines.push('suppressions: none');
  for (const i of s.suppressions) {
    const sup = d.suppressions[i];
    if (!sup) continue;
    const state = Date.parse(sup.expires) > atMs ? 'active' : 'expired';
    lines.push(`suppression: detector.suppressions[${i}] ${state} until ${sup.expires} (${sup.reason}; ${sup.author})`);
  }
  lines.push('effective:');
  lines.push(`  enabled: ${s.enabled}`);
  lines.push(`  suppressed: ${s.suppressedUntilMs > atMs}`);
  for (const f of ['scoreThreshold', 'minEventsPerBucket', 'minRatio', 'burstMargin', 'minHistoryMs', 'direction'] as const) {
    const from = o?.[f] !== undefined ? `override [${s.override}]` : 'detector';
    lines.push(`  ${f}: ${s[f]}  (${from})`);
  }
  return `${lines.join('\n')}\n`;
}

/** What `config explain --finding-rule` prints: the findings override and suppressions a finding gets. */
export function explainFinding(config: Config, subject: FindingSubject, atMs: number): string {
  const f = config.findings;
  const tuning = new FindingOverrides(f);
  const lines: string[] = [];
  const id = [
    `rule=${subject.rule.join(' ')}`,
    ...(['kind', 'accountId', 'region', 'service', 'action', 'principal'] as const)
      .filter((k) => subject[k] !== '')
      .map((k) => `${k}=${subject[k]}`),
  ].join(' ');
  lines.push(`finding: ${id}`);
  const index = tuning.matchIndex(subject);
  const o = f.overrides[index];
  lines.push(o ? `override: findings.overrides[${index}] ${JSON.stringify(o)}` : 'override: none (the finding as its detector makes it)');
  const sup = tuning.suppressionsOf(subject);
  if (sup.length === 0) lines.push('suppressions: none');
  for (const i of sup) {
    const s = f.suppressions[i];
    if (!s) continue;
    lines.push(
      `suppression: findings.suppressions[${i}] ${tuning.holds(i, atMs) ? 'active' : 'expired'} until ${s.expires} (${s.reason}; ${s.author})`,
    );
  }
  lines.push('effective:');
  lines.push(`  enabled: ${o?.enabled ?? true}`);
  lines.push(`  suppressed: ${sup.some((i) => tuning.holds(i, atMs))}`);
  lines.push(`  severity: ${o?.severity === undefined ? "the detector's" : `${o.severity}  (override [${index}])`}`);
  return `${lines.join('\n')}\n`;
}

function findingSubjectOfFlags(v: Record<string, string | boolean | undefined>): FindingSubject {
  const str = (name: string) => (typeof v[name] === 'string' ? (v[name] as string) : '');
  const rule = str('finding-rule');
  if (rule === '') throw usageError('--finding-rule takes a rule id, e.g. tw-ami-shared', EXPLAIN_USAGE);
  if (v.key !== undefined || v.scope !== undefined || v['insight-type'] !== undefined) {
    throw usageError('--finding-rule explains a finding: --key, --scope and --insight-type are for Insight keys', EXPLAIN_USAGE);
  }
  const kind =
    str('kind') || (rule === 'trailwatch-first-seen' ? 'first-seen' : rule.startsWith('trailwatch-breadth') ? 'breadth' : 'rule');
  if (!(FINDING_KINDS as readonly string[]).includes(kind)) {
    throw usageError(`--kind takes ${FINDING_KINDS.join(', ')}, got "${kind}"`, EXPLAIN_USAGE);
  }
  return {
    rule: [rule],
    kind,
    accountId: str('account'),
    region: str('region'),
    service: str('service'),
    action: str('action'),
    principal: str('principal'),
  };
}

const SCOPES: readonly InsightScope[] = ['action', 'principalAction'];

function insightTypeOf(value: string): InsightType {
  const signal = SIGNALS.find((s) => s.insightType === value || s.tag === value);
  if (!signal) throw usageError(`unknown insight type "${value}" (one of ${SIGNALS.map((s) => s.insightType).join(', ')})`, EXPLAIN_USAGE);
  return signal.insightType;
}

function scopeOf(value: string): InsightScope {
  if (!(SCOPES as readonly string[]).includes(value))
    throw usageError(`--scope takes action or principalAction, got "${value}"`, EXPLAIN_USAGE);
  return value as InsightScope;
}

/** A key id: `scope|signal|account|region or principal|service|action[|errorCode]`. */
export function subjectOfKey(key: string): InsightSubject {
  const parts = key.split('|');
  const [scope, tag, accountId, where, service, action, ...rest] = parts;
  if (
    scope === undefined ||
    tag === undefined ||
    accountId === undefined ||
    where === undefined ||
    service === undefined ||
    action === undefined
  ) {
    throw usageError(`--key: "${key}" is not a key id (scope|signal|account|region or principal|service|action)`, EXPLAIN_USAGE);
  }
  const s = scopeOf(scope);
  // A principal's ARN has no `|`, but an error code may come last.
  const errorCode = rest.length > 0 ? rest.join('|') : null;
  return {
    scope: s,
    insightType: insightTypeOf(tag),
    accountId,
    region: s === 'action' ? where : '',
    service,
    action,
    principal: s === 'principalAction' ? where : null,
    errorCode,
  };
}

function subjectOfFlags(v: Record<string, string | boolean | undefined>): InsightSubject {
  const str = (name: string) => (typeof v[name] === 'string' ? (v[name] as string) : undefined);
  const scope = scopeOf(str('scope') ?? (str('principal') ? 'principalAction' : 'action'));
  const account = str('account');
  const service = str('service');
  const action = str('action');
  if (!account || !service || !action) throw usageError('explain needs --key, or --account, --service and --action', EXPLAIN_USAGE);
  return {
    scope,
    insightType: insightTypeOf(str('insight-type') ?? 'ApiCallRateInsight'),
    accountId: account,
    region: str('region') ?? '',
    service,
    action,
    principal: scope === 'principalAction' ? (str('principal') ?? '') : null,
    errorCode: null,
  };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
