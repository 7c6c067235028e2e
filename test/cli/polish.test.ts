import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { cli } from '../helpers/cli.ts';
import { REPO_ROOT } from '../helpers/shared.ts';

/** No configuration from the caller's environment: each test sets what it means to. */
const CLEAN: NodeJS.ProcessEnv = Object.fromEntries(
  Object.keys(process.env)
    .filter((k) => k.startsWith('TRAILWATCH_') || k === 'KAFKA_BROKERS' || k === 'SCHEMA_REGISTRY_URL')
    .map((k) => [k, undefined]),
);

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => cli(args, { ...CLEAN, ...env });

/** The commands `trailwatch --help` lists, so a command added there is checked too. */
async function listedCommands(): Promise<string[]> {
  const { stdout } = await run(['--help']);
  const section = stdout.split('\nCommands:\n')[1] ?? '';
  const names = [...section.matchAll(/^ {2}([a-z][a-z-]*) {2,}/gm)].map((m) => m[1] as string);
  assert.ok(names.length >= 10, `commands listed in:\n${stdout}`);
  return names;
}

/**
 * Subcommands a command's usage names: `Usage: trailwatch dlq <show|replay>` or a further usage
 * line `       trailwatch config check FILE`.
 */
function subcommands(command: string, usage: string): string[] {
  const subs = new Set<string>();
  const first = new RegExp(`^Usage: trailwatch ${command} <([a-z|-]+)>`).exec(usage)?.[1];
  if (first?.includes('|')) for (const s of first.split('|')) subs.add(s);
  for (const m of usage.matchAll(new RegExp(`^ {7}trailwatch ${command} ([a-z][a-z-]*)\\b`, 'gm'))) subs.add(m[1] as string);
  return [...subs];
}

describe('trailwatch --version', () => {
  test('--version, -V and version print package.json version', async () => {
    const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const args of [['--version'], ['-V'], ['version']]) {
      const r = await run(args);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `trailwatch ${version}\n`);
    }
  });
});

describe('did you mean', () => {
  test('a mistyped command: the nearest ones, exit 1', async () => {
    const r = await run(['bactest', 'x.json']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'trailwatch: unknown command "bactest": did you mean "backtest"?\n(trailwatch --help lists every command)\n');
    assert.match((await run(['strat'])).stderr, /did you mean "start"\?/);
    assert.match((await run(['versoin'])).stderr, /did you mean "version"\?/);
    assert.match((await run(['sta'])).stderr, /did you mean "stack", "status" or "start"\?/);
    const far = await run(['frobnicate']);
    assert.equal(far.code, 1);
    assert.match(far.stderr, /^trailwatch: unknown command "frobnicate"\n\n.*\n\nUsage: trailwatch <command>/);
  });

  test('a mistyped long option, in every command and subcommand', async () => {
    const backtest = await run(['backtest', '--form', 'jsonl', 'x.jsonl']);
    assert.equal(backtest.code, 1);
    assert.equal(
      backtest.stderr,
      'trailwatch: unknown option --form: did you mean --format?\n(trailwatch backtest --help lists every option)\n',
    );
    assert.match((await run(['tail', '--no-folow'])).stderr, /unknown option --no-folow: did you mean --no-follow\?/);
    assert.match((await run(['dlq', 'show', '--limt', '3'])).stderr, /did you mean --limit\?\n\(trailwatch dlq show --help/);
    for (const command of await listedCommands()) {
      const usage = (await run([command, '--help'])).stdout;
      const subs = subcommands(command, usage);
      for (const argv of subs.length > 0 ? subs.map((s) => [command, s]) : [[command]]) {
        const r = await run([...argv, '--hepl']);
        assert.equal(r.code, 1, `${argv.join(' ')} --hepl: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, /unknown option --hepl: did you mean --help\?/, `${argv.join(' ')} --hepl`);
      }
    }
  });

  test('a mistyped action of a command with actions: the nearest ones, or the list; exit 1', async () => {
    for (const [argv, hint] of [
      [['dlq', 'shwo'], 'did you mean "show"?'],
      [['rules', 'chek'], 'did you mean "check"?'],
      [['stack', 'stauts'], 'did you mean "status"?'],
      [['config', 'aply', 'x.yaml'], 'did you mean "apply"?'],
      [['stack', 'zzz'], '(one of up, down or status)'],
      [['dlq'], 'missing dlq action (one of show or replay)'],
    ] as const) {
      const r = await run([...argv]);
      assert.equal(r.code, 1, argv.join(' '));
      assert.ok(r.stderr.split('\n')[0]?.endsWith(hint), `${argv.join(' ')}: ${r.stderr}`);
    }
  });

  test('an unknown option nothing is near keeps the usage after it', async () => {
    const r = await run(['backtest', '--zzzzzz', 'x.jsonl']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^trailwatch: unknown option --zzzzzz\n\nUsage: trailwatch backtest/);
  });
});

describe('--help names its own command', () => {
  test('every command and subcommand', async () => {
    const seen: string[] = [];
    for (const command of await listedCommands()) {
      const r = await run([command, '--help']);
      assert.equal(r.code, 0, `${command} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage: trailwatch ${command}\\b`), `${command} --help`);
      for (const sub of subcommands(command, r.stdout)) {
        const s = await run([command, sub, '--help']);
        assert.equal(s.code, 0, `${command} ${sub} --help: ${s.stderr}`);
        const first = s.stdout.split('\n')[0] ?? '';
        // Its own usage, or one usage for all whose alternatives name it (`stack <up|down|status>`).
        assert.match(first, new RegExp(`^Usage: trailwatch ${command} (${sub}\\b|<[a-z|-]*\\b${sub}\\b)`), `${command} ${sub} --help`);
        seen.push(`${command} ${sub}`);
      }
    }
    for (const expected of ['dlq show', 'dlq replay', 'config check', 'config explain', 'rules check', 'rules test', 'stack up']) {
      assert.ok(seen.includes(expected), `${expected} in ${seen.join(', ')}`);
    }
  });

  test('start --help and -h: "Usage: trailwatch start", with run options', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await run(['start', flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^Usage: trailwatch start \[options\]\n/);
      assert.doesNotMatch(r.stdout, /Usage: trailwatch run/);
      assert.match(r.stdout, /--watch/);
    }
  });
});

describe('missing files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-polish-'));
  const missing = join(dir, 'no', 'such', 'dir');

  test('inputs of backtest and publish, and --config of any command: "no such file or directory", exit 1', async () => {
    for (const args of [
      ['backtest', missing],
      ['backtest', '--format', 'cloudtrail', missing],
      ['publish', 'cloudtrail', '--dry-run', missing],
      ['publish', 'cloudtrail', missing],
      ['run', '--config', missing],
      ['config', '--config', missing],
      ['tail', '-c', missing],
    ]) {
      const r = await run(args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr, `trailwatch: no such file or directory: ${missing}\n`, args.join(' '));
    }
  });
});

describe('config errors name their source', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-polish-config-'));

  test('KAFKA_BROKERS that is not host:port fails at start, naming the variable and the form', async () => {
    const r = await run(['start'], { KAFKA_BROKERS: 'nonsense' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /KAFKA_BROKERS=nonsense: kafka\.brokers\[0\]: "nonsense" is not host:port \(e\.g\. localhost:9092\)/);
    const ok = await run(['config'], { KAFKA_BROKERS: '[::1]:9092, kafka-1.example.com:9093' });
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(JSON.parse(ok.stdout).kafka.brokers, ['[::1]:9092', 'kafka-1.example.com:9093']);
  });

  test('the environment variable with its value, the file with its line, the flag', async () => {
    const env = await run(['config'], { TRAILWATCH_DETECTOR__SCORE_THRESHOLD: 'abc' });
    assert.equal(env.code, 1);
    assert.match(env.stderr, /- TRAILWATCH_DETECTOR__SCORE_THRESHOLD=abc: detector\.scoreThreshold: /);
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'kafka:\n  brokers:\n    - "localhost"\ndetector:\n  minRatio: 1\n');
    const both = await run(['config', '--config', file], { TRAILWATCH_DETECTOR__MIN_RATIO: '-1' });
    assert.equal(both.code, 1);
    assert.match(both.stderr, new RegExp(`- ${file}:3: kafka\\.brokers\\[0\\]: "localhost" is not host:port`));
    // The file's minRatio is overridden: the problem is the variable's, not line 5's.
    assert.match(both.stderr, /- TRAILWATCH_DETECTOR__MIN_RATIO=-1: detector\.minRatio: /);
    const flag = await run(['status', '--log-level', 'loud']);
    assert.equal(flag.code, 1);
    assert.match(flag.stderr, /--log-level takes one of fatal, error, warn, info, debug, trace, silent, got "loud"/);
  });

  test('a secret in a variable is never printed', async () => {
    const r = await run(['config'], { TRAILWATCH_KAFKA__SASL__PASSWORD: 's3cret-value', TRAILWATCH_KAFKA__SASL__MECHANISM: 'nope' });
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.stderr, /s3cret-value/);
  });
});
