import { once } from 'node:events';
import { createWriteStream, existsSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { type BacktestStats, runBacktest, SERIES_HEADER, seriesLine, tapping } from '../../backtest/backtest.ts';
import {
  DEFAULT_VALUE_COLUMN,
  type EventFormat,
  formatOfPath,
  INPUT_FORMATS,
  type InputFormat,
  inputEvents,
  inputRows,
} from '../../backtest/inputs.ts';
import { buildReport, REPORT_DEFAULTS, ReportRecorder, type ReportRunLabel } from '../../backtest/report.ts';
import { runSeriesBacktest, type SeriesStats } from '../../backtest/series.ts';
import { loadConfig } from '../../config/load.ts';
import type { Config, ConfigInput } from '../../config/schema.ts';
import { findingSetupFromConfig } from '../../detect/findings.ts';
import { findingJson } from '../../emit/finding.ts';
import { insightJson } from '../../emit/insight.ts';
import { chartAssets, type ReportData, renderReport } from '../../emit/report.ts';
import { ConfigError, ErrorCodes, errorMessage, TrailwatchError } from '../../errors.ts';
import type { TimeRange } from '../../ingest/inputs.ts';
import { assertPathsExist, COMMON_HELP, intOption, parse, sinceOption, usageError } from '../args.ts';

export const BACKTEST_USAGE = `Usage: trailwatch backtest [options] <file-or-directory>...

Runs the detector offline over history with the given configuration (no Kafka): the same
engine as \`trailwatch run\`, fed in event-time order. Prints the Insights it would have emitted.

Inputs (--format, default by content, else by name):
  cloudtrail  .json / .json.gz CloudTrail deliveries; directories are walked recursively
              (S3 trees: digest files and CloudTrail-Insight deliveries are skipped)
  eventbridge EventBridge events (detail-type "AWS API Call via CloudTrail"), one a line
  cwlogs      CloudWatch Logs subscription payloads (gzip JSON, logEvents[].message = a record)
  k8s-audit   Kubernetes audit events (audit.k8s.io/v1 JSON lines; ResponseComplete counted)
  jsonl       .jsonl / .ndjson AuditEvents, one JSON object a line (optionally gzipped), or a
              service's own log mapped by ingest.jsonl in the config
  counts      .csv pre-aggregated rows with a header: timestamp,key,count (timestamp ISO-8601
              or epoch ms); each row is the count of calls to an action named by the key in
              the row's bucket (rows of one key and bucket add up), handed to the engine as
              that bucket's value: time per row, whatever the counts. Only the per-action
              call-rate path applies: principalAction scope and error rate are off.
              With --value-column the CSV is a metric series instead (see below).
Inputs are read whole and sorted by event time (deliveries overlap in time) unless --presorted.
A record that cannot be read is reported as file:index: reason [code] and the rest go on.

Options:
      --format F       cloudtrail|jsonl|counts (default: by extension; directories: cloudtrail)
      --value-column NAME
                       CSV input is a metric series whose values are in column NAME (matched
                       case-insensitively; without it: count, whole numbers ≥ 0): any real
                       number, fractions allowed, each key judged as a gauge. Values below zero
                       need detector.direction both; otherwise each such row is refused.
                       e.g. trailwatch backtest --value-column latency_ms --series s.csv p99.csv
                       for a CSV timestamp,key,latency_ms
      --insights FILE  Insights as JSON lines, one per line (default: stdout)
      --series FILE    CSV per key per judged bucket: timestamp,key,count,baseline,score,
                       expected,rawScore,veto,direction,sustained (score: after the floors)
      --findings FILE  findings as OCSF JSON lines: rules (rules.paths and the default pack, as
                       \`run\` loads them) with repeats folded, correlations, first-seen and breadth
                       (the findings.* settings); without it they are only counted (--summary).
                       Events input only: CSV rows carry no records for rules
      --report FILE    one self-contained HTML page (charts inlined, no network needed to view
                       it): per key that fired (and per --key) the rate against its expected
                       band with the Insight spans, the score distribution with the threshold,
                       Insights per day and type; at most --report-keys key charts
      --key ID         a key to chart in the report whether it fired or not: a key id as in
                       --series (e.g. 'action|call|123456789012|us-east-1|ec2.amazonaws.com|
                       RunInstances') or a glob (* any run of characters, ? one), e.g.
                       --key '*assumed-role/deploy*'; repeatable; charted first
      --compare FILE   run the same input under a second config file too and show in the
                       report which Insights appear or vanish under it (needs --report)
      --report-keys N  key charts at most (default ${REPORT_DEFAULTS.maxKeys}, highest peak score first); the
                       rest are listed by name
      --since T        only from T (ISO time, or a duration back from now: 2d); CloudTrail files by
                       the delivery time in their names (never opened outside), others by event time
      --until T        only before T (same forms)
      --summary        print totals to stderr: events (rows for CSV), rejected, late,
                       duplicates, keys, Insights, open at end, time taken
      --presorted      inputs are already in event-time order: stream them, do not sort in
                       memory (events out of order by more than allowedLatenessMs are late)
      --batch-size N   events (rows for CSV) per engine batch (default 500)
      --partitions N   partitions of the events topic to reproduce (default: topics.partitions,
                       3); per-principal state lives per partition as in the live detector.
                       Events input only: CSV keys are all judged by one engine
${COMMON_HELP}

At the end of the input the watermark moves to the last event time + one bucket so the last
buckets are judged; Insights still open then are left open (reported as open at end).

Exit status: 0 every record used; 2 some records were rejected (the rest were used);
1 nothing could be done (bad arguments or configuration, an input that is not there, every
record or row refused, or a CSV input with no rows at all).`;

/** Batches output lines and honours backpressure: a backtest can write millions of series rows. */
class LineSink {
  private readonly stream: Writable;
  private readonly owned: boolean;
  private buffer: string[] = [];
  private size = 0;
  private broken: Error | null = null;

  constructor(stream: Writable, owned: boolean) {
    this.stream = stream;
    this.owned = owned;
    // A closed pipe (`| head`) must not crash the process: the run notices and stops.
    stream.on('error', (err) => {
      this.broken = err;
    });
  }

  write(line: string): void {
    if (this.broken) return;
    this.buffer.push(line, '\n');
    this.size += line.length + 1;
  }

  /** The reader went away (EPIPE on `| head`): nothing more can be written. */
  get closed(): boolean {
    return this.broken !== null;
  }

  get full(): boolean {
    return this.size >= 1 << 16;
  }

  async flush(): Promise<void> {
    if (this.buffer.length === 0 || this.broken) return;
    const chunk = this.buffer.join('');
    this.buffer = [];
    this.size = 0;
    // events.once rejects when the stream errors while we wait, and leaves no listener behind.
    if (!this.stream.write(chunk)) await once(this.stream, 'drain').catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.flush();
    if (this.owned && !this.broken) {
      this.stream.end();
      await once(this.stream, 'finish');
    }
    if (this.owned && this.broken) throw this.broken;
  }
}

/** Thrown out of the run when the Insights' reader has gone away. */
class OutputClosed extends Error {}

async function openSink(file: string | undefined, option: string): Promise<LineSink> {
  if (file === undefined || file === '-') return new LineSink(process.stdout, false);
  const stream = createWriteStream(file);
  try {
    await once(stream, 'open');
  } catch (err) {
    throw new TrailwatchError(ErrorCodes.USAGE, `cannot write ${option} ${file}: ${errorMessage(err)}`, { fault: 'user' });
  }
  return new LineSink(stream, true);
}

async function resolveFormat(paths: string[], given: string | undefined): Promise<InputFormat> {
  if (given !== undefined) {
    if (!(INPUT_FORMATS as readonly string[]).includes(given)) {
      throw usageError(`unknown --format "${given}" (supported: ${INPUT_FORMATS.join(', ')})`, BACKTEST_USAGE);
    }
    return given as InputFormat;
  }
  const formats = new Map<InputFormat, string>();
  for (const path of paths) {
    const format = await formatOfPath(path);
    if (format === null) throw usageError(`cannot tell the format of "${path}" from its name: pass --format`, BACKTEST_USAGE);
    if (!formats.has(format)) formats.set(format, path);
  }
  if (formats.size > 1) {
    const list = [...formats].map(([f, p]) => `${f} (${p})`).join(', ');
    throw usageError(`inputs of different formats: ${list}; back-test one format at a time`, BACKTEST_USAGE);
  }
  return [...formats.keys()][0] ?? 'cloudtrail';
}

const n = (x: number): string => x.toLocaleString('en-US');

/** Progress on stderr about once a second: rewritten in place on a terminal, one line each otherwise. */
function progressLine(): { progress: (text: string) => void; done: () => void; started: number } {
  const started = performance.now();
  const tty = process.stderr.isTTY === true;
  let last = started;
  return {
    started,
    progress: (text) => {
      const now = performance.now();
      if (now - last < 1000) return;
      last = now;
      process.stderr.write(`backtest: ${text}${tty ? '\x1b[K\r' : '\n'}`);
    },
    done: () => {
      if (tty && performance.now() - started >= 1000) process.stderr.write('\x1b[K');
    },
  };
}

function spanText(firstMs: number | null, lastMs: number | null, none: string): string {
  return firstMs === null || lastMs === null ? none : `${new Date(firstMs).toISOString()} → ${new Date(lastMs).toISOString()}`;
}

const summaryText = (lines: string[]): string => lines.map((line) => `${line}\n`).join('');

/** What a CSV run reports for a refusal when nothing was usable: the first few reasons. */
const FIRST_REASONS = 3;

export async function backtestCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      format: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      'value-column': { type: 'string' },
      insights: { type: 'string' },
      series: { type: 'string' },
      findings: { type: 'string' },
      summary: { type: 'boolean' },
      presorted: { type: 'boolean' },
      'batch-size': { type: 'string' },
      partitions: { type: 'string' },
      report: { type: 'string' },
      key: { type: 'string', multiple: true },
      compare: { type: 'string' },
      'report-keys': { type: 'string' },
    },
    BACKTEST_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${BACKTEST_USAGE}\n`);
    return 0;
  }
  if (positionals.length === 0) throw usageError('no inputs given', BACKTEST_USAGE);
  assertPathsExist(positionals);
  const batchSize = intOption(values['batch-size'], 'batch-size', BACKTEST_USAGE) ?? 500;
  if (batchSize === 0) throw usageError('--batch-size must be at least 1', BACKTEST_USAGE);
  const partitions = intOption(values.partitions, 'partitions', BACKTEST_USAGE);
  if (partitions === 0) throw usageError('--partitions must be at least 1', BACKTEST_USAGE);
  const format = await resolveFormat(positionals, values.format);
  const valueColumn = values['value-column'];
  if (valueColumn !== undefined) {
    if (format !== 'counts') throw usageError(`--value-column reads CSV input (--format counts), not ${format}`, BACKTEST_USAGE);
    const name = valueColumn.trim().toLowerCase();
    if (name === '' || name === 'timestamp' || name === 'key') {
      throw usageError(`--value-column must name a column other than timestamp and key, got "${valueColumn}"`, BACKTEST_USAGE);
    }
  }
  if (format === 'counts' && values.findings !== undefined) {
    throw usageError('--findings needs events (cloudtrail or jsonl input): CSV rows carry no records for rules', BACKTEST_USAGE);
  }

  const overrides: ConfigInput = {};
  if (values['log-level']) overrides.log = { level: values['log-level'] as Config['log']['level'] };
  if (format === 'counts') {
    // Counts carry no principal and no error code: only the per-action call rate means anything.
    overrides.detector = { scopes: { principalAction: false }, insightTypes: { apiErrorRate: false } };
  }
  const config = loadConfig({ file: values.config, overrides });
  const report = await reportPlan(values, config, overrides, format);
  const nowMs = Date.now();
  const range: TimeRange = {
    sinceMs: sinceOption(values.since, nowMs, BACKTEST_USAGE, 'since') ?? null,
    untilMs: sinceOption(values.until, nowMs, BACKTEST_USAGE, 'until') ?? null,
  };
  if (format === 'counts' && (range.sinceMs !== null || range.untilMs !== null)) {
    throw usageError('--since/--until read audit records, not CSV rows', BACKTEST_USAGE);
  }
  const common = { positionals, batchSize, summary: values.summary ?? false, presorted: values.presorted ?? false, report, range };
  if (format === 'counts') {
    return backtestRows(config, { ...common, insights: values.insights, series: values.series, valueColumn });
  }
  return backtestEventInputs(config, format, {
    ...common,
    insights: values.insights,
    series: values.series,
    findings: values.findings,
    partitions: partitions ?? config.topics.partitions,
  });
}

interface RunArgs {
  positionals: string[];
  range: TimeRange;
  batchSize: number;
  summary: boolean;
  presorted: boolean;
  insights: string | undefined;
  series: string | undefined;
  report: ReportPlan | undefined;
}

/** `--report` and what goes with it, checked before the run so a typo does not cost a whole backtest. */
interface ReportPlan {
  file: string;
  /** Opened for writing up front: an unwritable path fails now, not after the run. */
  handle: FileHandle;
  keys: string[];
  maxKeys: number;
  format: InputFormat;
  base: ReportRunLabel;
  /** The second configuration, with its label. */
  compare: { label: ReportRunLabel; config: Config } | undefined;
}

type BacktestValues = { report?: string; key?: string[]; compare?: string; 'report-keys'?: string; config?: string };

async function reportPlan(
  values: BacktestValues,
  config: Config,
  overrides: ConfigInput,
  format: InputFormat,
): Promise<ReportPlan | undefined> {
  const file = values.report;
  if (file === undefined) {
    for (const flag of ['key', 'compare', 'report-keys'] as const) {
      if (values[flag] !== undefined) throw usageError(`--${flag} shapes the HTML report: give --report FILE too`, BACKTEST_USAGE);
    }
    return undefined;
  }
  const maxKeys = intOption(values['report-keys'], 'report-keys', BACKTEST_USAGE) ?? REPORT_DEFAULTS.maxKeys;
  let compare: ReportPlan['compare'];
  if (values.compare !== undefined) {
    const path = values.compare;
    if (!existsSync(path)) {
      throw usageError(
        `--compare: config file not found: ${path} (give the path of a second trailwatch config file, as for --config)`,
        BACKTEST_USAGE,
      );
    }
    let other: Config;
    try {
      other = loadConfig({ file: path, overrides });
    } catch (err) {
      if (err instanceof ConfigError) throw new ConfigError(err.problems.map((p) => `--compare ${path}: ${p}`));
      throw err;
    }
    compare = { label: { label: path, threshold: other.detector.scoreThreshold }, config: other };
  }
  let handle: FileHandle;
  try {
    handle = await open(file, 'w');
  } catch (err) {
    throw new TrailwatchError(ErrorCodes.USAGE, `cannot write --report ${file}: ${errorMessage(err)}`, { fault: 'user' });
  }
  return {
    file,
    handle,
    keys: values.key ?? [],
    maxKeys,
    format,
    base: { label: values.config ?? 'defaults', threshold: config.detector.scoreThreshold },
    compare,
  };
}

/** What the page's totals table shows of a run. */
type SummaryFacts = { read: number; rejected: number; keysCreated: number; starts: number; ends: number; openAtEnd: number };

/**
 * After the run: the compare run when asked for (`again` reruns the inputs under its detector
 * settings, into its recorder), then the page, written to the file opened before the run.
 */
async function finishReport(
  plan: ReportPlan,
  positionals: string[],
  config: Config,
  recorder: ReportRecorder,
  base: SummaryFacts,
  what: { unit: string; valueModel: 'counts' | 'gauge' },
  again: (detector: Config['detector'], recorder: ReportRecorder) => Promise<SummaryFacts>,
): Promise<void> {
  let compare: { recorder: ReportRecorder; facts: SummaryFacts } | null = null;
  if (plan.compare) {
    const other = new ReportRecorder();
    compare = { recorder: other, facts: await again(plan.compare.config.detector, other) };
  }
  const row = (label: string, f: (s: SummaryFacts) => number): ReportData['summary'][number] =>
    compare ? [label, n(f(base)), n(f(compare.facts))] : [label, n(f(base))];
  const data = buildReport(
    recorder,
    compare?.recorder ?? null,
    {
      generatedAt: new Date().toISOString(),
      inputs: positionals,
      format: plan.format,
      bucketMs: config.detector.bucketMs,
      valueModel: what.valueModel,
      base: plan.base,
      ...(plan.compare ? { compare: plan.compare.label } : {}),
      summary: [
        row(`${what.unit} read`, (s) => s.read),
        row('rejected', (s) => s.rejected),
        row('keys', (s) => s.keysCreated),
        row('Insights started', (s) => s.starts),
        row('Insights ended', (s) => s.ends),
        row('open at end', (s) => s.openAtEnd),
      ],
    },
    { keys: plan.keys, maxKeys: plan.maxKeys },
  );
  const html = renderReport(data, chartAssets());
  try {
    await plan.handle.writeFile(html, 'utf8');
  } finally {
    await plan.handle.close();
  }
  const left = data.leftOutTotal > 0 ? `, ${n(data.leftOutTotal)} more over --report-keys ${n(data.maxKeys)}` : '';
  const unmatched = data.unmatched.length > 0 ? `; --key matched nothing: ${data.unmatched.join(', ')}` : '';
  process.stderr.write(
    `backtest: report ${plan.file} (${n(Math.round(Buffer.byteLength(html) / 1024))} KiB, ${n(data.keys.length)} key chart${data.keys.length === 1 ? '' : 's'}${left}${unmatched})\n`,
  );
}

/** CloudTrail deliveries or AuditEvent lines through the whole topology, findings included. */
async function backtestEventInputs(
  config: Config,
  format: EventFormat,
  args: RunArgs & { findings: string | undefined; partitions: number },
): Promise<number> {
  const { positionals } = args;
  // The rules `run` would load; a rule with a problem stops the backtest as it would stop `run`.
  const setup = await findingSetupFromConfig(config.rules, config.findings, 'backtest');
  const findingsOut = args.findings === undefined ? undefined : await openSink(args.findings, '--findings');
  const findingKinds: Record<string, number> = {};
  const insightsOut = await openSink(args.insights, '--insights');
  const seriesOut = args.series === undefined ? undefined : await openSink(args.series, '--series');
  seriesOut?.write(SERIES_HEADER);

  const recorder = args.report ? new ReportRecorder() : undefined;
  const { progress, done, started } = progressLine();
  let read = 0;
  let rejected = 0;
  const skipped = new Map<string, number>();
  let stats: BacktestStats | undefined;
  try {
    const events = inputEvents(positionals, {
      format,
      presorted: args.presorted,
      range: args.range,
      jsonl: config.ingest.jsonl,
      k8sAudit: config.ingest.k8sAudit,
      onSkipped: (reason, count) => skipped.set(reason, (skipped.get(reason) ?? 0) + count),
      onRead: () => {
        if (++read % 1000 === 0) progress(`reading: ${n(read)} records`);
      },
      onRejected: (item) => {
        rejected++;
        process.stderr.write(`rejected ${item.error.message} [${item.error.code}]\n`);
      },
      // Rules on request fields need the record; the rest run on the normalized event.
      keepRaw: setup.rules.needsRaw || setup.correlations.length > 0,
    });
    const hooks = tapping(
      {
        onInsight: (insight) => insightsOut.write(JSON.stringify(insightJson(insight))),
        onBucket: seriesOut ? (o) => seriesOut.write(seriesLine(o)) : undefined,
      },
      recorder ?? {},
    );
    stats = await runBacktest(events, config.detector, {
      ...hooks,
      batchSize: args.batchSize,
      partitions: args.partitions,
      findings: setup,
      onFinding: (finding) => {
        const kind = finding.finding_info.types[0] ?? 'unknown';
        findingKinds[kind] = (findingKinds[kind] ?? 0) + 1;
        findingsOut?.write(JSON.stringify(findingJson(finding)));
      },
      onProgress: async (s) => {
        if (insightsOut.closed) throw new OutputClosed('the Insights output was closed');
        // Insights are few: hand them on every batch so a reader sees them as they come.
        await insightsOut.flush();
        if (seriesOut?.full) await seriesOut.flush();
        const at = s.lastEventMs === null ? '' : `, event time ${new Date(s.lastEventMs).toISOString()}`;
        progress(`${n(s.eventsIn)} events${at}, ${n(s.starts)} Insights started`);
      },
    });
  } catch (err) {
    if (!(err instanceof OutputClosed)) throw err;
  } finally {
    await insightsOut.close();
    await seriesOut?.close();
    await findingsOut?.close();
    if (stats === undefined) await args.report?.handle.close();
  }
  done();
  for (const [reason, count] of skipped) process.stderr.write(`skipped ${n(count)}: ${reason}\n`);

  if (stats === undefined) return rejected > 0 ? 2 : 0; // stopped early: the reader of the Insights went away
  // Every record refused: nothing was back-tested, so not the "the rest were used" of status 2.
  const nothingUsed = rejected > 0 && stats.eventsIn === 0;
  if (nothingUsed) await args.report?.handle.close();
  else if (args.report && recorder) {
    const facts = (s: BacktestStats, rejectedRecords: number): SummaryFacts => ({
      read: s.eventsIn,
      rejected: rejectedRecords,
      keysCreated: s.keysCreated,
      starts: s.starts,
      ends: s.ends,
      openAtEnd: s.openAtEnd,
    });
    await finishReport(
      args.report,
      positionals,
      config,
      recorder,
      facts(stats, rejected),
      { unit: 'events', valueModel: 'counts' },
      async (detector, other) => {
        let otherRejected = 0;
        const otherStats = await runBacktest(
          inputEvents(positionals, {
            format,
            presorted: args.presorted,
            range: args.range,
            jsonl: config.ingest.jsonl,
            k8sAudit: config.ingest.k8sAudit,
            onRejected: () => otherRejected++,
            keepRaw: false,
          }),
          detector,
          {
            ...tapping({}, other),
            batchSize: args.batchSize,
            partitions: args.partitions,
            onProgress: (s) => progress(`compare run: ${n(s.eventsIn)} events`),
          },
        );
        return facts(otherStats, otherRejected);
      },
    );
  }
  if (args.summary) {
    const seconds = (performance.now() - started) / 1000;
    process.stderr.write(
      summaryText([
        `backtest summary (${format}, ${positionals.length} input${positionals.length === 1 ? '' : 's'}, ${spanText(stats.firstEventMs, stats.lastEventMs, 'no events')})`,
        `  events read      ${n(stats.eventsIn)}`,
        `  rejected         ${n(rejected)}`,
        `  processed        ${n(stats.eventsProcessed)}`,
        `  late             ${n(stats.lateEvents)}`,
        `  duplicates       ${n(stats.duplicates)}`,
        `  keys             ${n(stats.keysCreated)} created, ${n(stats.activeKeys)} active at end`,
        `  Insights         ${n(stats.starts)} Start, ${n(stats.ends)} End`,
        `  open at end      ${n(stats.openAtEnd)}`,
        `  findings         ${n(stats.findings)} (${
          Object.entries(findingKinds)
            .map(([k, c]) => `${k} ${n(c)}`)
            .join(', ') || 'none'
        }) from ${n(setup.rules.size)} rules, ${n(setup.correlations.length)} correlation${setup.correlations.length === 1 ? '' : 's'}`,
        `  time             ${seconds.toFixed(2)} s, ${n(Math.round(stats.eventsIn / Math.max(seconds, 1e-3)))} events/s`,
      ]),
    );
  }
  if (nothingUsed) {
    process.stderr.write(`backtest: nothing could be used in ${positionals.join(', ')}: every record was refused (${n(rejected)})\n`);
    return 1;
  }
  return rejected > 0 ? 2 : 0;
}

/**
 * Counts CSVs and metric series: one engine, each row one key's value in one bucket (series.ts),
 * no events. Nothing usable (every row refused, or no rows) is status 1, not 2: there was no run.
 */
async function backtestRows(config: Config, args: RunArgs & { valueColumn: string | undefined }): Promise<number> {
  const { positionals, valueColumn } = args;
  const metric = valueColumn !== undefined;
  // detector.direction is new in the schema; a configuration from before it judges rises only.
  const direction = (config.detector as { direction?: string }).direction ?? 'up';
  process.stderr.write(
    metric
      ? `backtest: metric series input (values in column "${valueColumn}", detector.direction ${direction}): each key is judged as a gauge on the per-action path only\n`
      : 'backtest: counts input uses the per-action call-rate path only: detector.scopes.principalAction and detector.insightTypes.apiErrorRate are off for this run\n',
  );
  const insightsOut = await openSink(args.insights, '--insights');
  const seriesOut = args.series === undefined ? undefined : await openSink(args.series, '--series');
  seriesOut?.write(SERIES_HEADER);

  const recorder = args.report ? new ReportRecorder() : undefined;
  const { progress, done, started } = progressLine();
  let read = 0;
  let rejected = 0;
  const firstReasons: string[] = [];
  let stats: SeriesStats | undefined;
  const rowOptions = {
    valueColumn: valueColumn ?? DEFAULT_VALUE_COLUMN,
    metric,
    allowNegative: metric && direction === 'both',
    presorted: args.presorted,
  };
  try {
    const rows = inputRows(positionals, {
      ...rowOptions,
      onRead: () => {
        if (++read % 10_000 === 0) progress(`reading: ${n(read)} rows`);
      },
      onRejected: (item) => {
        rejected++;
        if (firstReasons.length < FIRST_REASONS) firstReasons.push(item.error.message);
        process.stderr.write(`rejected ${item.error.message} [${item.error.code}]\n`);
      },
    });
    const hooks = tapping(
      {
        onInsight: (insight) => insightsOut.write(JSON.stringify(insightJson(insight))),
        onBucket: seriesOut ? (o) => seriesOut.write(seriesLine(o)) : undefined,
      },
      recorder ?? {},
    );
    stats = await runSeriesBacktest(rows, config.detector, {
      ...hooks,
      valueModel: metric ? 'gauge' : 'counts',
      batchSize: args.batchSize,
      onProgress: async (s) => {
        if (insightsOut.closed) throw new OutputClosed('the Insights output was closed');
        await insightsOut.flush();
        if (seriesOut?.full) await seriesOut.flush();
        const at = s.lastRowMs === null ? '' : `, time ${new Date(s.lastRowMs).toISOString()}`;
        progress(`${n(s.rowsIn)} rows${at}, ${n(s.starts)} Insights started`);
      },
    });
  } catch (err) {
    if (!(err instanceof OutputClosed)) throw err;
  } finally {
    await insightsOut.close();
    await seriesOut?.close();
    if (stats === undefined || stats.rowsIn === 0) await args.report?.handle.close();
  }
  done();

  if (stats === undefined) return rejected > 0 ? 2 : 0; // stopped early: the reader of the Insights went away
  if (args.summary) {
    const seconds = (performance.now() - started) / 1000;
    const what = metric ? `metric series "${valueColumn}"` : 'counts';
    process.stderr.write(
      summaryText([
        `backtest summary (${what}, ${positionals.length} input${positionals.length === 1 ? '' : 's'}, ${spanText(stats.firstRowMs, stats.lastRowMs, 'no rows')})`,
        `  rows read        ${n(stats.rowsIn)}`,
        `  rejected         ${n(rejected)}`,
        `  used             ${n(stats.rowsUsed)}`,
        `  late             ${n(stats.rowsLate)}`,
        `  ${metric ? 'value sum        ' : 'counts summed    '}${metric ? stats.valueSum.toLocaleString('en-US', { maximumFractionDigits: 6 }) : n(stats.valueSum)}`,
        `  keys             ${n(stats.keysCreated)} created, ${n(stats.activeKeys)} active at end`,
        `  Insights         ${n(stats.starts)} Start, ${n(stats.ends)} End`,
        `  open at end      ${n(stats.openAtEnd)}`,
        `  time             ${seconds.toFixed(2)} s, ${n(Math.round(stats.rowsIn / Math.max(seconds, 1e-3)))} rows/s`,
      ]),
    );
  }
  if (stats.rowsIn === 0) {
    const why =
      rejected === 0
        ? 'the inputs hold no rows (a header at most)'
        : `every row was refused (${n(rejected)} refused; first: ${firstReasons.join('; ')}${rejected > firstReasons.length ? '; …' : ''})`;
    process.stderr.write(`backtest: nothing usable in ${positionals.join(', ')}: ${why}\n`);
    return 1;
  }
  if (args.report && recorder) {
    const facts = (s: SeriesStats, rejectedRows: number): SummaryFacts => ({
      read: s.rowsIn,
      rejected: rejectedRows,
      keysCreated: s.keysCreated,
      starts: s.starts,
      ends: s.ends,
      openAtEnd: s.openAtEnd,
    });
    const valueModel = metric ? 'gauge' : 'counts';
    await finishReport(
      args.report,
      positionals,
      config,
      recorder,
      facts(stats, rejected),
      { unit: 'rows', valueModel },
      async (detector, other) => {
        let otherRejected = 0;
        const otherStats = await runSeriesBacktest(inputRows(positionals, { ...rowOptions, onRejected: () => otherRejected++ }), detector, {
          ...tapping({}, other),
          valueModel,
          batchSize: args.batchSize,
          onProgress: (s) => progress(`compare run: ${n(s.rowsIn)} rows`),
        });
        return facts(otherStats, otherRejected);
      },
    );
  }
  return rejected > 0 ? 2 : 0;
}
