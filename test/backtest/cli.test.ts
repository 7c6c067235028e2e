import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { backtestEvents } from '../../src/backtest/backtest.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { AuditEvent, Insight } from '../../src/contracts/types.ts';
import { insightJson } from '../../src/emit/insight.ts';
import { REPO_ROOT } from '../helpers/shared.ts';
import {
  BACKTEST_FIXTURES,
  BAD_LINES_JSONL,
  COUNTS_CSV,
  ensureFixtures,
  FIXTURE_T0,
  METRIC_CSV,
  METRIC_LEVEL_CHANGE,
  SPIKE_JSONL,
} from './fixtures.ts';

const run = promisify(execFile);
const MAIN = join(REPO_ROOT, 'src/cli/main.ts');

/** `node src/cli/main.ts backtest …` with no TRAILWATCH_* configuration from the caller's environment. */
async function backtest(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRAILWATCH_')));
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, 'backtest', ...args], {
      cwd: REPO_ROOT,
      env: { ...clean, ...env },
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function jsonLines<T>(text: string): T[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as T);
}

let dir = '';
before(async () => {
  ensureFixtures();
  dir = await mkdtemp(join(tmpdir(), 'tw-backtest-cli-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('trailwatch backtest', () => {
  test('exit 0: the Insights on stdout are those of the pure backtest', async () => {
    const { code, stdout, stderr } = await backtest(['--summary', SPIKE_JSONL]);
    assert.equal(code, 0, stderr);
    const events = jsonLines<AuditEvent>(await readFile(SPIKE_JSONL, 'utf8'));
    const expected = backtestEvents(events, loadConfig({ env: {} }).detector).insights.map(insightJson);
    assert.ok(expected.length > 0);
    assert.deepEqual(jsonLines(stdout), expected);
    assert.match(stderr, /events read +589\n/);
    assert.match(stderr, /rejected +0\n/);
    assert.match(stderr, new RegExp(`Insights +${expected.length / 2} Start, ${expected.length / 2} End`));
    assert.match(stderr, /open at end +0\n/);
    assert.match(stderr, /events\/s/);
  });

  test('--insights and --series files; the config file and environment apply', async () => {
    const insights = join(dir, 'insights.jsonl');
    const series = join(dir, 'series.csv');
    const cfg = join(dir, 'config.json');
    await writeFile(cfg, JSON.stringify({ detector: { insightTypes: { apiErrorRate: false } } }));
    const { code, stdout, stderr } = await backtest(['--config', cfg, '--insights', insights, '--series', series, SPIKE_JSONL], {
      TRAILWATCH_DETECTOR__SCOPES__PRINCIPAL_ACTION: 'false',
    });
    assert.equal(code, 0, stderr);
    assert.equal(stdout, '');
    const out = jsonLines<Insight>(await readFile(insights, 'utf8'));
    assert.ok(out.length > 0);
    assert.ok(out.every((i) => i.insightDetails.insightType === 'ApiCallRateInsight' && i.trailwatch.scope === 'action'));
    const rows = (await readFile(series, 'utf8')).trimEnd().split('\n');
    assert.equal(rows[0], 'timestamp,key,count,baseline,score,expected,rawScore,veto,direction,sustained');
    assert.ok(rows.length > 1, 'series rows (empty when the engine lacks the onBucket hook)');
    assert.ok(rows.slice(1).every((r) => r.split(',')[1]?.startsWith('action|call|')));
  });

  test('counts: Start and End, and the per-action-only notice', async () => {
    const { code, stdout, stderr } = await backtest([COUNTS_CSV]);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /counts input uses the per-action call-rate path only/);
    assert.deepEqual(
      jsonLines<Insight>(stdout).map((i) => i.insightDetails.state),
      ['Start', 'End'],
    );
  });

  test('exit 2 when records were rejected; each is reported with file and line; the rest is used', async () => {
    const { code, stderr } = await backtest(['--summary', BAD_LINES_JSONL]);
    assert.equal(code, 2);
    for (const line of [3, 6, 7, 8]) assert.match(stderr, new RegExp(`${BAD_LINES_JSONL}:${line}: .+ \\[TW_DESERIALIZE\\]`));
    assert.match(stderr, /events read +4\n/);
    assert.match(stderr, /rejected +4\n/);
  });

  test('exit 1 for a missing input, named before anything is read, whatever its format', async () => {
    const missing = join(dir, 'missing.json');
    for (const args of [[missing], ['--format', 'cloudtrail', SPIKE_JSONL, join(dir, 'no-such-dir')]]) {
      const { code, stderr } = await backtest(args);
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`^trailwatch: no such file or directory: ${args.at(-1)}\n$`));
    }
  });

  test('exit 1 when every record was refused: nothing could be used', async () => {
    const bad = join(dir, 'all-bad.jsonl');
    await writeFile(bad, 'not json\n{"eventId": 1}\n');
    const { code, stdout, stderr } = await backtest([bad]);
    assert.equal(code, 1, stderr);
    assert.equal(stdout, '');
    assert.match(stderr, /all-bad\.jsonl:1: .+ \[TW_DESERIALIZE\]/);
    assert.match(stderr, /nothing could be used in .*all-bad\.jsonl: every record was refused \(2\)/);
  });

  test('exit 1 on bad usage', async () => {
    for (const args of [[], ['--format', 'xml', SPIKE_JSONL], ['--bogus', SPIKE_JSONL], ['Dockerfile'], [SPIKE_JSONL, COUNTS_CSV]]) {
      const { code, stderr } = await backtest(args);
      assert.equal(code, 1, `${args.join(' ')}: ${stderr}`);
      assert.match(stderr, /Usage: trailwatch backtest/);
    }
    const { code, stderr } = await backtest([SPIKE_JSONL], { TRAILWATCH_DETECTOR__SCORE_THRESHOLD: '7' });
    assert.equal(code, 1);
    assert.match(stderr, /detector\.scoreThreshold/);
    const unwritable = await backtest(['--insights', join(dir, 'no-such-dir', 'out.jsonl'), SPIKE_JSONL]);
    assert.equal(unwritable.code, 1);
    assert.match(unwritable.stderr, /cannot write --insights .*no-such-dir.*ENOENT/);
  });

  test('--help', async () => {
    const { code, stdout } = await backtest(['--help']);
    assert.equal(code, 0);
    assert.match(stdout, /^Usage: trailwatch backtest/);
    assert.match(stdout, /--value-column NAME\n/);
    assert.match(stdout, /e\.g\. trailwatch backtest --value-column \S+ .*\.csv/);
  });

  test('--findings: the findings stage runs over history, its OCSF findings written with the record; a bad rule stops it', async () => {
    const out = await mkdtemp(join(tmpdir(), 'tw-backtest-findings-'));
    try {
      const input = join(REPO_ROOT, 'test/fixtures/cloudtrail/rules/stoplogging.json');
      const file = join(out, 'findings.jsonl');
      const r = await backtest(['--summary', '--findings', file, input]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /findings +1 \(rule 1\) from 22 rules, 1 correlation\n/);
      const [finding] = jsonLines<{
        class_uid: number;
        finding_info: { analytic: { uid: string } };
        evidences: Array<{ data: { raw: string } }>;
      }>(await readFile(file, 'utf8'));
      assert.equal(finding?.class_uid, 2004);
      assert.equal(finding?.finding_info.analytic.uid, 'cis-aws-4.5-cloudtrail-configuration-changes');
      assert.match(finding?.evidences[0]?.data.raw ?? '', /"eventName":"StopLogging"/);

      await writeFile(join(out, 'bad.yml'), 'title: broken\nid: x\ndetection: {}\n');
      const bad = await backtest(['--findings', file, input], { TRAILWATCH_RULES__PATHS: JSON.stringify([join(out, 'bad.yml')]) });
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /bad\.yml:\d+: .*trailwatch rules check/);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});

/** detector.direction is being added to the schema: a skip reason until it is there. */
function directionMissing(): string | false {
  try {
    loadConfig({ env: {}, overrides: { detector: { direction: 'both' } as never } });
    return false;
  } catch {
    return 'detector.direction is not in the config schema yet';
  }
}

describe('trailwatch backtest: CSV rows', () => {
  const csv = async (name: string, lines: string[]): Promise<string> => {
    const file = join(dir, name);
    await writeFile(file, `${lines.join('\n')}\n`);
    return file;
  };

  test('--value-column: a metric series with fractions; the Insight of its level change and its series rows', async () => {
    const series = join(dir, 'metric-series.csv');
    const { code, stdout, stderr } = await backtest(['--summary', '--value-column', 'value', '--series', series, METRIC_CSV]);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /metric series input \(values in column "value", detector\.direction up\)/);
    assert.match(stderr, /rows read +720\n/);
    assert.match(stderr, /rejected +0\n/);
    assert.match(stderr, /value sum +[\d,]+\.\d+\n/);
    assert.match(stderr, /rows\/s/);
    const changeMs = FIXTURE_T0 + METRIC_LEVEL_CHANGE.startMinute * 60_000;
    const starts = jsonLines<Insight>(stdout).filter((i) => i.insightDetails.state === 'Start');
    assert.deepEqual(
      starts.map((i) => [i.insightDetails.eventName, i.trailwatch.startTimeMs]),
      [[METRIC_LEVEL_CHANGE.key, changeMs]],
    );
    const rows = (await readFile(series, 'utf8')).trimEnd().split('\n');
    assert.equal(rows[0], 'timestamp,key,count,baseline,score,expected,rawScore,veto,direction,sustained');
    assert.equal(rows.length, 721);
    const at = rows.find((r) => r.startsWith(`${new Date(changeMs).toISOString()},action|call|000000000000|counts|counts|queue.depth,`));
    assert.match(at ?? '', /,\d+\.\d+,[\d.]+,[\d.]+,[\d.]+,[\d.]+,[a-zA-Z]*,(up|down),(true|false)$/);
  });

  test('a negative value is refused with its file:line unless detector.direction is both', async () => {
    const file = await csv('balance.csv', [
      'timestamp,key,delta',
      '2026-01-05T10:00:00Z,balance,1.5',
      '2026-01-05T10:01:00Z,balance,-2.5',
      '2026-01-05T10:02:00Z,balance,0.25',
    ]);
    const up = await backtest(['--summary', '--value-column', 'delta', file]);
    assert.equal(up.code, 2, up.stderr);
    assert.match(
      up.stderr,
      new RegExp(
        `rejected ${file}:3: delta -2\\.5 is negative: a series that goes below zero needs detector\\.direction both \\[TW_NORMALIZE\\]`,
      ),
    );
    assert.match(up.stderr, /rows read +2\n/);
    // Counts are never negative, whatever the direction.
    const counts = await csv('negative-counts.csv', ['timestamp,key,count', '2026-01-05T10:00:00Z,a,3', '2026-01-05T10:01:00Z,a,-1']);
    assert.equal((await backtest([counts])).code, 2);
  });

  test('negative values are used when detector.direction is both', { skip: directionMissing() }, async () => {
    const file = await csv('balance-both.csv', [
      'timestamp,key,delta',
      '2026-01-05T10:00:00Z,balance,1.5',
      '2026-01-05T10:01:00Z,balance,-2.5',
    ]);
    const both = await backtest(['--summary', '--value-column', 'delta', file], { TRAILWATCH_DETECTOR__DIRECTION: 'both' });
    assert.equal(both.code, 0, both.stderr);
    assert.match(both.stderr, /detector\.direction both/);
    assert.match(both.stderr, /rows read +2\n/);
    assert.match(both.stderr, /value sum +-1\n/);
  });

  test('exit 1 when nothing is usable: every row refused, no rows, or no readable input', async () => {
    const refused = await csv('all-negative.csv', ['timestamp,key,value', '2026-01-05T10:00:00Z,a,-1', '2026-01-05T10:01:00Z,a,-2']);
    const r = await backtest(['--value-column', 'value', refused]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `nothing usable in ${refused}: every row was refused \\(2 refused; first: ${refused}:2: value -1 is negative: .+; ${refused}:3: value -2 is negative`,
      ),
    );
    const headerOnly = await csv('header-only.csv', ['timestamp,key,count']);
    const h = await backtest([headerOnly]);
    assert.equal(h.code, 1, h.stderr);
    assert.match(h.stderr, /nothing usable in .*header-only\.csv: the inputs hold no rows \(a header at most\)/);
    const noHeader = await csv('no-header.csv', ['2026-01-05T10:00:00Z,a,1']);
    const noHeader2 = await csv('no-header-2.csv', ['2026-01-05T10:01:00Z,a,1']);
    const n = await backtest([noHeader, noHeader2]);
    assert.equal(n.code, 1, n.stderr);
    assert.match(
      n.stderr,
      /every row was refused \(2 refused; first: .*no-header\.csv:1: the header must name .*; .*no-header-2\.csv:1: the header must name/,
    );
    // Some rows refused, the rest used: 2 as before.
    const some = await csv('some.csv', ['timestamp,key,count', '2026-01-05T10:00:00Z,a,1', '2026-01-05T10:01:00Z,a,x']);
    assert.equal((await backtest([some])).code, 2);
  });

  test('a count of 50,000,000 in one row is one row: no expansion into events', async () => {
    const lines = ['timestamp,key,count'];
    for (let m = 0; m < 120; m++) lines.push(`${new Date(FIXTURE_T0 + m * 60_000).toISOString()},orders,${1_000 + (m % 7)}`);
    lines.push(`${new Date(FIXTURE_T0 + 120 * 60_000).toISOString()},orders,50000000`);
    const file = await csv('huge.csv', lines);
    const { code, stdout, stderr } = await backtest(['--summary', file]);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /rows read +121\n/);
    assert.match(stderr, /used +121\n/);
    assert.match(stderr, /counts summed +50,120,3\d\d\n/);
    assert.ok(jsonLines<Insight>(stdout).some((i) => i.trailwatch.startTimeMs === FIXTURE_T0 + 120 * 60_000));
  });

  test('usage: --value-column needs CSV input and a column of its own; --findings needs events', async () => {
    for (const args of [
      ['--value-column', 'value', SPIKE_JSONL],
      ['--value-column', 'timestamp', METRIC_CSV],
      ['--value-column', ' ', METRIC_CSV],
      ['--findings', join(dir, 'f.jsonl'), COUNTS_CSV],
    ]) {
      const { code, stderr } = await backtest(args);
      assert.equal(code, 1, `${args.join(' ')}: ${stderr}`);
      assert.match(stderr, /Usage: trailwatch backtest/);
    }
  });
});

describe('trailwatch backtest --report', () => {
  const STRICT = join(BACKTEST_FIXTURES, 'report-strict.json');
  const ACTION_ONLY = join(BACKTEST_FIXTURES, 'report-action-only.json');

  test('one page with the charts data, the changes under --compare, and the Insights on stdout unchanged', async () => {
    const page = join(dir, 'report.html');
    const plain = await backtest(['--config', STRICT, SPIKE_JSONL]);
    const { code, stdout, stderr } = await backtest(['--config', STRICT, '--report', page, '--compare', ACTION_ONLY, SPIKE_JSONL]);
    assert.equal(code, 0, stderr);
    assert.equal(stdout, plain.stdout, 'the report does not change what is printed');
    assert.match(stderr, /backtest: report .*report\.html \(\d+ KiB, 4 key charts\)\n/);
    const html = await readFile(page, 'utf8');
    assert.match(html, /^<!doctype html>/);
    assert.match(html, /2 Insights appear, 1 vanish; 1 stay/);
    assert.equal(html.match(/data-chart="key"/g)?.length, 4);
    assert.match(html, /<b>compare<\/b> [^<]*report-action-only\.json \(threshold 0\.6\)/);
  });

  test('counts input: --key charts a key that did not fire; an unmatched --key is named on stderr and in the page', async () => {
    const page = join(dir, 'counts.html');
    const { code, stderr } = await backtest(['--report', page, '--key', '*|login,failures', '--key', 'nothing-like-this', COUNTS_CSV]);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /2 key charts; --key matched nothing: nothing-like-this\)/);
    const html = await readFile(page, 'utf8');
    assert.match(
      html,
      /<code>action\|call\|000000000000\|counts\|counts\|login,failures<\/code><\/h3>\n<p class="meta">peak score [0-9.]+ · 0 Insight\(s\) · asked for with --key/,
    );
  });

  test('errors name the fix: a --compare file that is not there, an invalid one, --key without --report, an unwritable page', async () => {
    const missing = await backtest(['--report', join(dir, 'r.html'), '--compare', join(dir, 'nope.yaml'), SPIKE_JSONL]);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /--compare: config file not found: .*nope\.yaml \(give the path of a second trailwatch config file, as for --config\)/,
    );
    const invalid = join(dir, 'invalid.json');
    await writeFile(invalid, JSON.stringify({ detector: { scoreThreshold: 3 } }));
    const bad = await backtest(['--report', join(dir, 'r.html'), '--compare', invalid, SPIKE_JSONL]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--compare .*invalid\.json: detector\.scoreThreshold/);
    const noReport = await backtest(['--key', '*', SPIKE_JSONL]);
    assert.equal(noReport.code, 1);
    assert.match(noReport.stderr, /--key shapes the HTML report: give --report FILE too/);
    const unwritable = await backtest(['--report', join(dir, 'no-such-dir', 'r.html'), SPIKE_JSONL]);
    assert.equal(unwritable.code, 1);
    assert.match(unwritable.stderr, /cannot write --report .*no-such-dir/);
  });

  test('--help describes --report, --key, --compare and --report-keys', async () => {
    const { stdout } = await backtest(['--help']);
    for (const flag of ['--report FILE', '--key ID', '--compare FILE', '--report-keys N']) assert.ok(stdout.includes(flag), flag);
  });
});
