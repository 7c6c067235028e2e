import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { loadConfig } from '../../config/load.ts';
import { CorrelationEngine, type CorrelationHit } from '../../detect/rules/correlation.ts';
import { configuredRulePaths, formatRuleProblem, type LoadedRules, loadRules, type Rule } from '../../detect/rules/load.ts';
import type { SigmaRule } from '../../detect/rules/sigma.ts';
import { ErrorCodes, errorMessage } from '../../errors.ts';
import { CLOUDTRAIL_EXTENSIONS, expandInputPaths, locateJsonError } from '../../ingest/files.ts';
import { COMMON_HELP, parse, unknownAction, usageError } from '../args.ts';

const gunzipAsync = promisify(gunzip);

export const RULES_USAGE = `Usage: trailwatch rules <check|test> [options]      (trailwatch rules <check|test> --help for each)

Detection rules: EventBridge event patterns (*.json) and Sigma rules (*.yml, *.yaml), in files or
directories (README "Rules").

  check    load rules and list every problem with its file and line
  test     run rules over CloudTrail records and show which match, and why`;

export const RULES_CHECK_USAGE = `Usage: trailwatch rules check [options] [PATH ...]

Loads every rule under the PATHs (files, or directories walked recursively; other files in a
directory are passed over) and prints each problem as <file>:<line>: <message> [code], then
N rules loaded (E eventbridge, S sigma) from F files, P problems. With no PATH: rules.paths
from the configuration, plus the default pack when rules.defaultPack is on.

${COMMON_HELP}

Exit status: 0 no problem; 2 some problems; 1 bad arguments or configuration.`;

export const RULES_TEST_USAGE = `Usage: trailwatch rules test [options] RULE_FILE_OR_DIR EVENTS...

Runs the rules of RULE_FILE_OR_DIR over every CloudTrail record in EVENTS — delivery files
({"Records": [...]}, .json or .json.gz) or JSON-lines files of records (.jsonl, .ndjson, or any
file named explicitly); directories are walked — and prints, per record, the rules it matches,
then how many records each rule matched. Sigma correlation rules run over the records in
event-time order (eventTime), as the detector runs them on the stream, and each hit is printed
with its group, count and events. Needs no Kafka.

Options:
      --explain   per record, every rule's verdict and its reasons
${COMMON_HELP}

Exit status: 0 some rule matched; 1 nothing matched, or bad arguments; 2 a rule or an EVENTS
file that cannot be used (named with its file).`;

export async function rulesCommand(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === 'check') return rulesCheck(rest);
  if (action === 'test') return rulesTest(rest);
  if (action === '--help' || action === '-h' || action === 'help') {
    process.stdout.write(`${RULES_USAGE}\n`);
    return 0;
  }
  throw unknownAction('rules', action, ['check', 'test'], RULES_USAGE);
}

async function rulesCheck(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {}, RULES_CHECK_USAGE);
  if (values.help) {
    process.stdout.write(`${RULES_CHECK_USAGE}\n`);
    return 0;
  }
  const paths = positionals.length > 0 ? positionals : configuredRulePaths(loadConfig({ file: values.config }).rules);
  const loaded = await loadRules(paths);
  for (const problem of loaded.problems) process.stdout.write(`${formatRuleProblem(problem)}\n`);
  process.stdout.write(`${summary(loaded)}\n`);
  return loaded.problems.length === 0 ? 0 : 2;
}

async function rulesTest(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { explain: { type: 'boolean' } }, RULES_TEST_USAGE);
  if (values.help) {
    process.stdout.write(`${RULES_TEST_USAGE}\n`);
    return 0;
  }
  const [rulePath, ...eventPaths] = positionals;
  if (rulePath === undefined) throw usageError('no rule file or directory given', RULES_TEST_USAGE);
  if (eventPaths.length === 0) throw usageError('no EVENTS files given', RULES_TEST_USAGE);

  const loaded = await loadRules([rulePath]);
  if (loaded.problems.length > 0 || (loaded.rules.length === 0 && loaded.correlations.length === 0)) {
    for (const problem of loaded.problems) process.stderr.write(`${formatRuleProblem(problem)}\n`);
    if (loaded.problems.length === 0) process.stderr.write(`${rulePath}: no rule files (*.json, *.yml, *.yaml)\n`);
    process.stderr.write(`${summary(loaded)}\n`);
    return 2;
  }
  // Every input is read before any rule runs, so a bad file is reported before, not amid, the results.
  const { records, problems } = await readRecords(eventPaths);
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(`${p} [${ErrorCodes.INPUT_FILE}]\n`);
    return 2;
  }

  const counts = new Map<Rule, number>(loaded.rules.map((r) => [r, 0]));
  let matchedRecords = 0;
  for (const { where, record } of records) {
    const action = `${String(record.eventSource ?? '?')} ${String(record.eventName ?? '?')}`;
    const hits = loaded.rules.filter((r) => r.matches(record));
    for (const r of hits) counts.set(r, (counts.get(r) ?? 0) + 1);
    if (hits.length > 0) matchedRecords++;
    const verdict = hits.length > 0 ? `matches ${hits.map((r) => r.id).join(', ')}` : 'no rule matches';
    process.stdout.write(`${where}  ${action}  ${verdict}\n`);
    if (!values.explain) continue;
    for (const r of loaded.rules) {
      const { matched, reasons } = r.explain(record);
      process.stdout.write(`  ${matched ? '✓' : '✗'} ${r.id} (${r.kind}, ${r.severity})\n`);
      for (const reason of reasons) process.stdout.write(`      ${reason}\n`);
    }
  }
  process.stdout.write(`\n${matchedRecords} of ${records.length} records matched a rule\n`);
  const width = Math.max(0, ...loaded.rules.map((r) => r.id.length));
  for (const [r, n] of counts) process.stdout.write(`  ${r.id.padEnd(width)}  ${String(n).padStart(5)}  ${r.title}\n`);
  const hits = correlationHits(loaded, records);
  if (loaded.correlations.length > 0) {
    process.stdout.write(
      `\n${hits.length} correlation ${hits.length === 1 ? 'hit' : 'hits'} from ${loaded.correlations.length} correlation rules\n`,
    );
    for (const h of hits) {
      process.stdout.write(
        `  ${h.ruleId} (${h.type}) ${h.title}: count ${h.count}, group ${JSON.stringify(h.group)}, ${new Date(h.windowStartMs).toISOString()} → ${new Date(h.windowEndMs).toISOString()}, events ${h.eventIds.join(', ')}\n`,
      );
    }
  }
  return matchedRecords > 0 || hits.length > 0 ? 0 : 1;
}

/** The correlations' hits over the records in event-time order, every window judged at the end. */
function correlationHits(loaded: LoadedRules, records: readonly TestRecord[]): CorrelationHit[] {
  if (loaded.correlations.length === 0) return [];
  const bases = new Map<string, SigmaRule>();
  for (const c of loaded.correlations) for (const b of c.base) bases.set(b.id, b);
  const engine = new CorrelationEngine(
    loaded.correlations.map((c) => c.rule),
    [...bases.values()],
  );
  const timed = records
    .map((r) => ({ record: r.record, t: Date.parse(String(r.record.eventTime ?? '')) }))
    .filter((r) => Number.isFinite(r.t))
    .sort((a, b) => a.t - b.t);
  const hits: CorrelationHit[] = [];
  for (const { record, t } of timed) hits.push(...engine.observe(record, t));
  const last = timed.at(-1)?.t ?? 0;
  const longest = Math.max(...loaded.correlations.map((c) => c.rule.timespanMs));
  hits.push(...engine.advance(last + longest + 1));
  return hits;
}

function summary(loaded: LoadedRules): string {
  const by = (kind: Rule['kind']) => loaded.rules.filter((r) => r.kind === kind).length;
  const n = loaded.rules.length;
  const f = loaded.files.length;
  const p = loaded.problems.length;
  const c = loaded.correlations.length;
  const correlations = c === 0 ? '' : `, ${c} sigma ${c === 1 ? 'correlation' : 'correlations'}`;
  return `${n} ${n === 1 ? 'rule' : 'rules'} loaded (${by('eventbridge')} eventbridge, ${by('sigma')} sigma${correlations}) from ${f} ${f === 1 ? 'file' : 'files'}, ${p} ${p === 1 ? 'problem' : 'problems'}`;
}

interface TestRecord {
  /** `file[index]`: the record's index in its file, from 0. */
  where: string;
  record: Record<string, unknown>;
}

const JSON_LINES_EXTENSIONS = ['.jsonl', '.ndjson', '.jsonl.gz', '.ndjson.gz'];

/** The records of every EVENTS file, or what is wrong with each file that cannot be used. */
async function readRecords(paths: string[]): Promise<{ records: TestRecord[]; problems: string[] }> {
  const records: TestRecord[] = [];
  const problems: string[] = [];
  for (const entry of await expandInputPaths(paths, [...CLOUDTRAIL_EXTENSIONS, ...JSON_LINES_EXTENSIONS])) {
    if (entry.kind === 'error') {
      problems.push(entry.error.message);
      continue;
    }
    const file = entry.file;
    let text: string;
    try {
      const raw = await readFile(file);
      // By content, as for publish: downloads often keep gzip under a plain .json name.
      const bytes = raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b ? await gunzipAsync(raw) : raw;
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch (err) {
      problems.push(`${file}: cannot read: ${errorMessage(err)}`);
      continue;
    }
    const add = (record: unknown, index: number, line?: number): void => {
      if (typeof record === 'object' && record !== null && !Array.isArray(record)) {
        records.push({ where: `${file}[${index}]`, record: record as Record<string, unknown> });
      } else {
        problems.push(`${file}${line === undefined ? `[${index}]` : `:${line}`}: a record must be a JSON object`);
      }
    };
    let doc: unknown;
    let whole = true;
    try {
      doc = JSON.parse(text);
    } catch {
      whole = false;
    }
    if (whole) {
      const delivery = typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as { Records?: unknown }).Records : undefined;
      if (Array.isArray(delivery)) {
        for (const [i, r] of delivery.entries()) add(r, i);
      } else if (typeof doc === 'object' && doc !== null && !Array.isArray(doc)) {
        add(doc, 0, 1); // JSON lines holding one record
      } else {
        problems.push(`${file}: neither a CloudTrail delivery ({"Records": [...]}) nor JSON lines of records`);
      }
      continue;
    }
    const lines = text.split('\n');
    let index = 0;
    let bad = 0;
    for (const [n, line] of lines.entries()) {
      if (line.trim() === '') continue;
      try {
        add(JSON.parse(line), index++, n + 1);
      } catch {
        if (index === 0 && bad === 0) {
          // The first record does not parse: the file is more likely one broken document than JSON lines.
          const at = locateJsonError(text);
          problems.push(`${file}: malformed JSON${at === null ? '' : ` at line ${at.line} column ${at.column}: ${at.reason}`}`);
          break;
        }
        const at = locateJsonError(line);
        problems.push(
          `${file}:${n + 1}: not a CloudTrail delivery, and not a JSON line${at === null ? '' : ` (column ${at.column}: ${at.reason})`}`,
        );
        // One bad line in a file that is not JSON lines at all would report every line.
        if (++bad >= 3) break;
      }
    }
  }
  return { records, problems };
}
