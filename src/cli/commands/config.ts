import { readConfigFile } from '../../config/file.ts';
import { type ConfigProblem, checkConfig, expiredSuppressions, formatPath, loadConfig, redactConfig } from '../../config/load.ts';
import type { Config } from '../../config/schema.ts';
import type { InsightScope, InsightType } from '../../contracts/types.ts';
import { Overrides } from '../../detect/overrides.ts';
import { SIGNALS } from '../../detect/signals.ts';
import type { InsightSubject } from '../../emit/insight.ts';
import { COMMON_HELP, parse, usageError } from '../args.ts';

export const CONFIG_USAGE = `Usage: trailwatch config [options]
       trailwatch config check FILE
       trailwatch config explain --key KEY | --scope S --account A ... [--config FILE]

Validates the configuration (defaults ← --config file ← environment) and prints the effective
result as JSON, secrets shown as ****. Every problem is listed at once; exit 1 if any.
A config file is YAML (.yaml, .yml) or JSON.

  check     every problem of FILE with its path (and line, for YAML); warns about suppressions
            already expired; exit 1 on any problem
  explain   which override and suppressions apply to a key, and its effective settings

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

Prints which detector.overrides entry (the most specific match) and which detector.suppressions
apply to one key, and the settings it is judged with. KEY is a key id as Insights and
\`backtest --series\` name it, e.g. action|call|123456789012|us-east-1|ec2.amazonaws.com|RunInstances.

Options:
      --key KEY            the key id
      --scope S            action (default) or principalAction
      --insight-type T     ApiCallRateInsight (default) or ApiErrorRateInsight
      --account A, --region R, --principal ARN, --service S, --action X
      --at TIME            judge suppressions' expiry at this ISO time (default: now)
${COMMON_HELP}`;

export async function configCommand(argv: string[]): Promise<number> {
  if (argv[0] === 'check') return checkCommand(argv.slice(1));
  if (argv[0] === 'explain') return explainCommand(argv.slice(1));
  const { values } = parse(argv, {}, CONFIG_USAGE);
  if (values.help) {
    process.stdout.write(`${CONFIG_USAGE}\n`);
    return 0;
  }
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
  let parsed: ReturnType<typeof readConfigFile>;
  try {
    parsed = readConfigFile(file);
  } catch (err) {
    process.stdout.write(`${file}: cannot read: ${(err as Error).message}\n`);
    return 1;
  }
  if (parsed.data === null) {
    for (const e of parsed.errors) process.stdout.write(`${e}\n`);
    process.stdout.write(`${file}: ${plural(parsed.errors.length, 'problem')}\n`);
    return 1;
  }
  const { config, problems } = checkConfig(parsed.data);
  const where = (p: ConfigProblem) => {
    const line = parsed.lineOf(p.path);
    const at = line === null ? file : `${file}:${line}`;
    return p.path.length > 0 ? `${at}: ${formatPath(p.path)}: ${p.message}` : `${at}: ${p.message}`;
  };
  for (const p of problems) process.stdout.write(`${where(p)}\n`);
  const warnings = config ? expiredSuppressions(config, Date.now()) : [];
  for (const w of warnings) process.stdout.write(`warning: ${where(w)}\n`);
  if (problems.length > 0) {
    process.stdout.write(`${file}: ${plural(problems.length, 'problem')}\n`);
    return 1;
  }
  process.stdout.write(`${file}: valid${warnings.length > 0 ? `, ${plural(warnings.length, 'warning')}` : ''}\n`);
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
    },
    EXPLAIN_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${EXPLAIN_USAGE}\n`);
    return 0;
  }
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
