import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { type BacktestStats, runBacktest, SERIES_HEADER, seriesLine } from '../../backtest/backtest.ts';
import { formatOfPath, INPUT_FORMATS, type InputFormat, inputEvents } from '../../backtest/inputs.ts';
import { loadConfig } from '../../config/load.ts';
import type { Config, ConfigInput } from '../../config/schema.ts';
import { findingSetupFromConfig } from '../../detect/findings.ts';
import { findingJson } from '../../emit/finding.ts';
import { ErrorCodes, errorMessage, TrailwatchError } from '../../errors.ts';
import { COMMON_HELP, intOption, parse, usageError } from '../args.ts';

export const BACKTEST_USAGE = `Usage: trailwatch backtest [options] <file-or-directory>...

Runs the detector offline over history with the given configuration (no Kafka): the same
engine as \`trailwatch run\`, fed in event-time order. Prints the Insights it would have emitted.

Inputs (--format, default by name):
  cloudtrail  .json / .json.gz CloudTrail deliveries; directories are walked recursively
  jsonl       .jsonl / .ndjson AuditEvents, one JSON object a line (optionally gzipped)
  counts      .csv pre-aggregated counts with a header: timestamp,key,count (timestamp ISO-8601
              or epoch ms); each row becomes count calls to an action named by the key. Only the
              per-action call-rate path applies: principalAction scope and error rate are off.
Inputs are read whole and sorted by event time (deliveries overlap in time) unless --presorted.
A record that cannot be read is reported as file:index: reason [code] and the rest go on.

Options:
      --format F       cloudtrail|jsonl|counts (default: by extension; directories: cloudtrail)
      --insights FILE  Insights as JSON lines, one per line (default: stdout)
      --series FILE    CSV timestamp,key,count,baseline,score per key per judged bucket
      --findings FILE  findings as OCSF JSON lines: rules (rules.paths and the default pack, as
                       \`run\` loads them) with repeats folded, correlations, first-seen and breadth
                       (the findings.* settings); without it they are only counted (--summary)
      --summary        print totals to stderr: events, rejected, late, duplicates, keys,
                       Insights, open at end, time taken
      --presorted      inputs are already in event-time order: stream them, do not sort in
                       memory (events out of order by more than allowedLatenessMs are late)
      --batch-size N   events per engine batch (default 500)
      --partitions N   partitions of the events topic to reproduce (default: topics.partitions,
                       3); per-principal state lives per partition as in the live detector
${COMMON_HELP}

At the end of the input the watermark moves to the last event time + one bucket so the last
buckets are judged; Insights still open then are left open (reported as open at end).

Exit status: 0 every record used; 2 some records were rejected (the rest were used);
1 nothing could be done (bad arguments or configuration).`;

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

export async function backtestCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      format: { type: 'string' },
      insights: { type: 'string' },
      series: { type: 'string' },
      findings: { type: 'string' },
      summary: { type: 'boolean' },
      presorted: { type: 'boolean' },
      'batch-size': { type: 'string' },
      partitions: { type: 'string' },
    },
    BACKTEST_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${BACKTEST_USAGE}\n`);
    return 0;
  }
  if (positionals.length === 0) throw usageError('no inputs given', BACKTEST_USAGE);
  const batchSize = intOption(values['batch-size'], 'batch-size', BACKTEST_USAGE) ?? 500;
  if (batchSize === 0) throw usageError('--batch-size must be at least 1', BACKTEST_USAGE);
  const partitions = intOption(values.partitions, 'partitions', BACKTEST_USAGE);
  if (partitions === 0) throw usageError('--partitions must be at least 1', BACKTEST_USAGE);
  const format = await resolveFormat(positionals, values.format);

  const overrides: ConfigInput = {};
  if (values['log-level']) overrides.log = { level: values['log-level'] as Config['log']['level'] };
  if (format === 'counts') {
    // Counts carry no principal and no error code: only the per-action call rate means anything.
    overrides.detector = { scopes: { principalAction: false }, insightTypes: { apiErrorRate: false } };
  }
  const config = loadConfig({ file: values.config, overrides });
  if (format === 'counts') {
    process.stderr.write(
      'backtest: counts input uses the per-action call-rate path only: detector.scopes.principalAction and detector.insightTypes.apiErrorRate are off for this run\n',
    );
  }

  // The rules `run` would load; a rule with a problem stops the backtest as it would stop `run`.
  const setup = await findingSetupFromConfig(config.rules, config.findings, 'backtest');
  const findingsOut = values.findings === undefined ? undefined : await openSink(values.findings, '--findings');
  const findingKinds: Record<string, number> = {};
  const insightsOut = await openSink(values.insights, '--insights');
  const seriesOut = values.series === undefined ? undefined : await openSink(values.series, '--series');
  seriesOut?.write(SERIES_HEADER);

  const started = performance.now();
  const tty = process.stderr.isTTY === true;
  let lastProgress = started;
  let read = 0;
  let rejected = 0;
  const progress = (text: string, force = false): void => {
    const now = performance.now();
    if (!force && now - lastProgress < 1000) return;
    lastProgress = now;
    process.stderr.write(`backtest: ${text}${tty ? '\x1b[K\r' : '\n'}`);
  };

  let stats: BacktestStats | undefined;
  try {
    const events = inputEvents(positionals, {
      format,
      presorted: values.presorted ?? false,
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
    stats = await runBacktest(events, config.detector, {
      batchSize,
      partitions: partitions ?? config.topics.partitions,
      onInsight: (insight) => insightsOut.write(JSON.stringify(insight)),
      findings: setup,
      onFinding: (finding) => {
        const kind = finding.finding_info.types[0] ?? 'unknown';
        findingKinds[kind] = (findingKinds[kind] ?? 0) + 1;
        findingsOut?.write(JSON.stringify(findingJson(finding)));
      },
      onBucket: seriesOut ? (o) => seriesOut.write(seriesLine(o)) : undefined,
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
  }
  if (tty && performance.now() - started >= 1000) process.stderr.write('\x1b[K');

  if (stats === undefined) return rejected > 0 ? 2 : 0; // stopped early: the reader of the Insights went away
  if (values.summary) {
    const seconds = (performance.now() - started) / 1000;
    const span =
      stats.firstEventMs === null || stats.lastEventMs === null
        ? 'no events'
        : `${new Date(stats.firstEventMs).toISOString()} → ${new Date(stats.lastEventMs).toISOString()}`;
    process.stderr.write(
      [
        `backtest summary (${format}, ${positionals.length} input${positionals.length === 1 ? '' : 's'}, ${span})`,
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
      ]
        .map((line) => `${line}\n`)
        .join(''),
    );
  }
  return rejected > 0 ? 2 : 0;
}
