/**
 * `npm run bench:series`: `trailwatch backtest FILE --value-column value` end to end, spawned as
 * a user runs it, over a generated metric series of `--rows` one-minute rows (10,000: about a
 * week): one key, daily-seasonal, real-valued, around 30,000 per minute with noise, and a few
 * labelled anomalies. Rows go to the engine as bucket values (src/backtest/series.ts), so the run
 * costs time per row; expanded into one event per unit, as counts were before, the same rows
 * would be ~300 million events.
 *
 *   npm run bench:series -- [--rows 10000] [--runs 5] [--old-rows 40] [--seed 7] [--write]
 *
 * Reports the median wall time of `--runs` runs (spawn to exit), the CLI's own start-up (the
 * median of as many `backtest --help` runs), and the in-process time the summary prints. The old
 * expansion is no longer on any command's path; for the ratio, `--old-rows` rows of the same
 * series (rounded to whole counts) are expanded with `countsEvents` and run through the topology
 * as `backtest` ran them (3 partitions), in process, and the full run's time is extrapolated
 * from that events/s (0 skips it). `--write` updates the "Series backtest" section of BENCHMARKS.md.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runBacktest } from '../src/backtest/backtest.ts';
import { countsEvents } from '../src/backtest/inputs.ts';
import { loadConfig } from '../src/config/load.ts';
import type { Insight } from '../src/contracts/types.ts';
import { mulberry32 } from '../src/demo/traffic.ts';
import { fmt, median, sectionText, writeSection } from './lib/common.ts';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '5' },
    'old-rows': { type: 'string', default: '40' },
    seed: { type: 'string', default: '7' },
    write: { type: 'boolean', default: false },
  },
});
const ROWS = Number(values.rows);
const RUNS = Number(values.runs);
const OLD_ROWS = Math.min(Number(values['old-rows']), ROWS);
const SEED = Number(values.seed);

const MAIN = join(import.meta.dirname, '../src/cli/main.ts');
const MINUTE_MS = 60_000;
const DAY_MINUTES = 1_440;
/** Monday 2026-01-05 00:00 UTC. */
const T0 = Date.UTC(2026, 0, 5);
const KEY = 'rides';
const BASE = 30_000;
const DAILY_SWING = 12_000;
const NOISE = 600;

/** The planted anomalies, in minutes from T0: rises the default detector (direction up) should report, and one dip it should not. */
interface Planted {
  label: string;
  startMinute: number;
  minutes: number;
  /** Multiplies the seasonal level. */
  factor: number;
}
const PLANTED: Planted[] = [
  { label: 'rise ×1.8, 20 min, afternoon of day 3', startMinute: 2 * DAY_MINUTES + 14 * 60, minutes: 20, factor: 1.8 },
  { label: 'rise ×2.5, 15 min, night of day 4', startMinute: 3 * DAY_MINUTES + 3 * 60, minutes: 15, factor: 2.5 },
  { label: 'rise ×1.6, 60 min, morning of day 6', startMinute: 5 * DAY_MINUTES + 9 * 60, minutes: 60, factor: 1.6 },
  { label: 'dip ×0.3, 30 min, evening of day 5', startMinute: 4 * DAY_MINUTES + 19 * 60, minutes: 30, factor: 0.3 },
];
const plantedAt = (m: number): Planted | undefined => PLANTED.find((p) => m >= p.startMinute && m < p.startMinute + p.minutes);

/** The series: a daily sine (low at 04:00 UTC, high at 16:00) with about-normal noise, two decimals. */
function generate(rows: number, seed: number): Array<{ timestampMs: number; value: number }> {
  const rand = mulberry32(seed);
  const noise = (): number => (rand() + rand() + rand() + rand() - 2) * Math.sqrt(3);
  const out: Array<{ timestampMs: number; value: number }> = [];
  for (let m = 0; m < rows; m++) {
    const level = BASE + DAILY_SWING * Math.sin((2 * Math.PI * (m - 10 * 60)) / DAY_MINUTES);
    const value = level * (plantedAt(m)?.factor ?? 1) + NOISE * noise();
    out.push({ timestampMs: T0 + m * MINUTE_MS, value: Math.round(value * 100) / 100 });
  }
  return out;
}

interface CliRun {
  wallMs: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `trailwatch <args>` as a user runs it, with the defaults (no TRAILWATCH_* from this environment). */
function runCli(args: string[]): Promise<CliRun> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRAILWATCH_')));
  const started = performance.now();
  const child = spawn(process.execPath, [MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ wallMs: performance.now() - started, code, stdout, stderr }));
  });
}

const dir = mkdtempSync(join(tmpdir(), 'tw-bench-series-'));
try {
  const rows = generate(ROWS, SEED);
  const file = join(dir, 'series.csv');
  writeFileSync(
    file,
    `timestamp,key,value\n${rows.map((r) => `${new Date(r.timestampMs).toISOString()},${KEY},${r.value.toFixed(2)}`).join('\n')}\n`,
  );
  const total = rows.reduce((n, r) => n + r.value, 0);
  process.stderr.write(
    `${fmt(ROWS)} rows, values ${fmt(Math.min(...rows.map((r) => r.value)))}–${fmt(Math.max(...rows.map((r) => r.value)))}, sum ${fmt(total)}\n`,
  );

  const insightsFile = join(dir, 'insights.jsonl');
  const args = ['backtest', file, '--value-column', 'value', '--summary', '--insights', insightsFile];
  const runs: Array<{ wallMs: number; inProcessMs: number }> = [];
  const startups: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await runCli(args);
    if (r.code !== 0) throw new Error(`trailwatch ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
    const inProcess = /time +([\d.]+) s/.exec(r.stderr);
    runs.push({ wallMs: r.wallMs, inProcessMs: inProcess ? Number(inProcess[1]) * 1000 : Number.NaN });
    const help = await runCli(['backtest', '--help']);
    startups.push(help.wallMs);
    process.stderr.write(
      `run ${i + 1}: ${(r.wallMs / 1000).toFixed(2)} s (in process ${inProcess?.[1] ?? '?'} s); --help ${(help.wallMs / 1000).toFixed(2)} s\n`,
    );
  }
  const wall = median(runs.map((r) => r.wallMs));
  const inProcess = median(runs.map((r) => r.inProcessMs));
  const startup = median(startups);

  // What the last run found, against the labels.
  const insights = readFileSync(insightsFile, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Insight);
  const startMinutes = insights
    .filter((i) => i.insightDetails.state === 'Start')
    .map((i) => Math.round((i.trailwatch.startTimeMs - T0) / MINUTE_MS));
  const found = (p: Planted): number | undefined => startMinutes.find((m) => m >= p.startMinute && m < p.startMinute + p.minutes);
  const unplanted = startMinutes.filter((m) => plantedAt(m) === undefined);

  // The expansion the series path replaced, on a prefix, in process; extrapolated by events.
  let old: { rows: number; events: number; ms: number; fullEvents: number; fullMs: number } | null = null;
  if (OLD_ROWS > 0) {
    const detector = loadConfig({
      env: {},
      overrides: { detector: { scopes: { principalAction: false }, insightTypes: { apiErrorRate: false } } },
    }).detector;
    const prefix = rows.slice(0, OLD_ROWS).map((r) => ({ key: KEY, timestampMs: r.timestampMs, value: Math.round(r.value) }));
    const events = prefix.reduce((n, r) => n + r.value, 0);
    const started = performance.now();
    await runBacktest(
      (function* () {
        for (const r of prefix) yield* countsEvents(r);
      })(),
      detector,
      { partitions: 3 },
    );
    const ms = performance.now() - started;
    const fullEvents = rows.reduce((n, r) => n + Math.round(r.value), 0);
    old = { rows: OLD_ROWS, events, ms, fullEvents, fullMs: (ms / events) * fullEvents };
    process.stderr.write(`expansion: ${fmt(OLD_ROWS)} rows, ${fmt(events)} events in ${(ms / 1000).toFixed(1)} s\n`);
  }

  const [load] = loadavg();
  const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  const lines = [
    '## Series backtest',
    '',
    `\`trailwatch backtest FILE --value-column value\` end to end, spawned as a user runs it, defaults otherwise (\`bench/series.ts\`): a generated metric series of ${fmt(ROWS)} one-minute rows (one key, a daily sine of ${fmt(BASE)} ± ${fmt(DAILY_SWING)} with noise σ ${fmt(NOISE)}, two decimals: ${fmt(total)} in all), rows handed to the engine as bucket values.`,
    '',
    `- command: \`npm run bench:series -- --runs ${RUNS}\` (defaults: \`--rows 10000 --old-rows 40 --seed 7\`)`,
    `- machine: ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}/${process.arch}; load average ${(load ?? 0).toFixed(1)} when the benchmark started`,
    '',
    `| median of ${RUNS} | seconds |`,
    '|---|---:|',
    `| whole run (spawn to exit) | **${seconds(wall)}** |`,
    `| of which the CLI's start-up (\`backtest --help\`, same runs) | ${seconds(startup)} |`,
    `| in process (the summary's time: read, sort, judge, write) | ${seconds(inProcess)} (${fmt(ROWS / (inProcess / 1000))} rows/s) |`,
    '',
    `Target: under 2 s a run. ${wall < 2000 ? 'Met' : 'Not met'}: ${seconds(wall)}.`,
    '',
    old
      ? `The expansion it replaced (each unit an event through the topology, 3 partitions, in process): ${fmt(old.rows)} rows (rounded) = ${fmt(old.events)} events in ${seconds(old.ms)}, ${fmt(old.events / (old.ms / 1000))} events/s; the whole series (${fmt(old.fullEvents)} events) extrapolates to ~${fmt(old.fullMs / 60_000)} min, **~${fmt(old.fullMs / wall)}×** the whole run above.`
      : 'The expansion it replaced was not measured (`--old-rows 0`).',
    '',
    `Labelled anomalies, against the last run's Insights (the scoring is the engine's; these move with it): ${PLANTED.map((p) => {
      const at = found(p);
      return `${p.label}: ${at === undefined ? 'not reported' : `Start at +${at - p.startMinute} min`}`;
    }).join('; ')}. Starts outside them: ${unplanted.length}.`,
  ];
  process.stdout.write(sectionText(lines));
  if (values.write) writeSection('series', lines);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
