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
import { REPO_ROOT } from '../helpers/shared.ts';
import { BAD_LINES_JSONL, COUNTS_CSV, ensureFixtures, SPIKE_JSONL } from './fixtures.ts';

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
    const expected = backtestEvents(events, loadConfig({ env: {} }).detector).insights;
    assert.ok(expected.length > 0);
    assert.deepEqual(jsonLines<Insight>(stdout), expected);
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
    assert.equal(rows[0], 'timestamp,key,count,baseline,score');
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

  test('exit 2 for a missing input', async () => {
    const missing = join(dir, 'missing.json');
    const { code, stderr } = await backtest([missing]);
    assert.equal(code, 2);
    assert.match(stderr, /missing\.json: no such file or directory \[TW_INPUT_FILE\]/);
  });

  test('exit 1 on bad usage', async () => {
    for (const args of [[], ['--format', 'xml', SPIKE_JSONL], ['--bogus', SPIKE_JSONL], ['notes.txt'], [SPIKE_JSONL, COUNTS_CSV]]) {
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
