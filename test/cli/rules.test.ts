import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cli } from '../helpers/cli.ts';
import { FIXTURES_DIR } from '../helpers/shared.ts';

// No Kafka: neither command connects to anything.
const RULES_DIR = join(FIXTURES_DIR, 'rules');
const EVENTBRIDGE_RULE = join(RULES_DIR, 'stop-logging.json');
const SIGMA_RULE = join(RULES_DIR, 'cloudtrail_logging_disabled.yml');
const DELIVERY = join(FIXTURES_DIR, 'cloudtrail/rules/stoplogging.json');
const SIGMA_ID = '6b7d3b9a-1f0e-4c57-9a55-2b1e0f7d9c01';

describe('trailwatch rules', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'tw-rules-cli-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('--help on rules, rules check and rules test; rules is in the main usage', async () => {
    const top = await cli(['rules', '--help']);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Usage: trailwatch rules <check\|test>/);
    const check = await cli(['rules', 'check', '--help']);
    assert.equal(check.code, 0);
    assert.match(check.stdout, /Usage: trailwatch rules check \[options\] \[PATH \.\.\.\]/);
    const run = await cli(['rules', 'test', '--help']);
    assert.equal(run.code, 0);
    assert.match(run.stdout, /Usage: trailwatch rules test \[options\] RULE_FILE_OR_DIR EVENTS\.\.\./);
    assert.match(run.stdout, /--explain/);
    const main = await cli(['--help']);
    assert.match(main.stdout, /\n {2}rules {7}check \| test/);
    const bad = await cli(['rules', 'lint']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unknown rules action "lint"/);
  });

  test('check on a good directory: the summary, exit 0; the README beside the rules is no problem', async () => {
    const r = await cli(['rules', 'check', RULES_DIR]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '2 rules loaded (1 eventbridge, 1 sigma) from 2 files, 0 problems\n');
  });

  test('check on a bad directory: every problem as file:line: message [code], exit 2', async () => {
    const dir = await mkdtemp(join(tmp, 'bad-'));
    await writeFile(join(dir, 'trailing-comma.json'), '{\n  "detail": {\n    "eventName": ["StopLogging",]\n  }\n}\n');
    await writeFile(join(dir, 'level.yml'), (await readFile(SIGMA_RULE, 'utf8')).replace('level: medium', 'level: severe'));
    await writeFile(join(dir, 'ok.json'), '{"source": ["aws.iam"]}');
    const r = await cli(['rules', 'check', dir]);
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.deepEqual(lines.slice(0, 2), [
      `${join(dir, 'level.yml')}:23: level 'severe' is not one of informational, low, medium, high, critical [TW_RULE_INVALID]`,
      `${join(dir, 'trailing-comma.json')}:3: not valid JSON at column 33: unexpected "]" where a value was expected [TW_RULE_INVALID]`,
    ]);
    assert.equal(lines[2], '1 rule loaded (1 eventbridge, 0 sigma) from 3 files, 2 problems');
  });

  test('check with no path: the configured rules.paths plus the default pack', async () => {
    const pack = await cli(['rules', 'check']);
    const r = await cli(['rules', 'check'], { TRAILWATCH_RULES__PATHS: JSON.stringify([SIGMA_RULE]) });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // The pack's own counts, and the user's Sigma rule on top of them.
    const counts = /^(\d+) rules? loaded \((\d+) eventbridge, (\d+) sigma, 1 sigma correlation\) from (\d+) files?, 0 problems\n$/;
    const [, packRules, packEb, packSigma, packFiles] = (counts.exec(pack.stdout) ?? []).map(Number);
    assert.ok(packRules, `the default pack's summary: ${pack.stdout}`);
    assert.equal(
      r.stdout,
      `${packRules + 1} rules loaded (${packEb} eventbridge, ${(packSigma ?? 0) + 1} sigma, 1 sigma correlation) from ${(packFiles ?? 0) + 1} files, 0 problems\n`,
    );
    const only = await cli(['rules', 'check'], {
      TRAILWATCH_RULES__PATHS: JSON.stringify([EVENTBRIDGE_RULE]),
      TRAILWATCH_RULES__DEFAULT_PACK: 'false',
    });
    assert.equal(only.stdout, '1 rule loaded (1 eventbridge, 0 sigma) from 1 file, 0 problems\n');
  });

  test('test: which rules each record matches, a count per rule, exit 0', async () => {
    const r = await cli(['rules', 'test', RULES_DIR, DELIVERY]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(`stoplogging\\.json\\[0\\]  cloudtrail\\.amazonaws\\.com StopLogging  matches ${SIGMA_ID}, tw-stop-logging\\n`),
    );
    assert.match(r.stdout, /stoplogging\.json\[1\] {2}s3\.amazonaws\.com ListBuckets {2}no rule matches\n/);
    assert.match(r.stdout, /1 of 2 records matched a rule\n/);
    assert.match(r.stdout, /\n {2}tw-stop-logging +1 {2}CloudTrail logging stopped\n/);
    assert.match(r.stdout, new RegExp(`\\n  ${SIGMA_ID} +1  CloudTrail Logging Disabled or Tampered With\\n`));
    assert.doesNotMatch(r.stdout, /✓|✗/);
  });

  test('test --explain: every rule verdict with its reasons', async () => {
    const r = await cli(['rules', 'test', '--explain', EVENTBRIDGE_RULE, DELIVERY]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /✓ tw-stop-logging \(eventbridge, high\)\n {6}source = "aws\.cloudtrail": matches \["aws\.cloudtrail"\]\n/);
    assert.match(r.stdout, /detail\.eventName = "StopLogging": matches/);
    assert.match(r.stdout, /✗ tw-stop-logging \(eventbridge, high\)\n {6}source = "aws\.s3": does not match/);
    const sigma = await cli(['rules', 'test', '--explain', SIGMA_RULE, DELIVERY]);
    assert.equal(sigma.code, 0, sigma.stderr);
    assert.match(sigma.stdout, new RegExp(`✓ ${SIGMA_ID} \\(sigma, medium\\)\\n {6}selection matched`));
  });

  test('test on JSON lines of records that nothing matches: exit 1', async () => {
    const lines = join(tmp, 'benign.jsonl');
    await writeFile(
      lines,
      `${JSON.stringify({ eventSource: 's3.amazonaws.com', eventName: 'ListBuckets' })}\n\n${JSON.stringify({ eventSource: 'ec2.amazonaws.com', eventName: 'DescribeInstances' })}\n`,
    );
    const r = await cli(['rules', 'test', RULES_DIR, lines]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /benign\.jsonl\[1\] {2}ec2\.amazonaws\.com DescribeInstances {2}no rule matches\n/);
    assert.match(r.stdout, /0 of 2 records matched a rule\n/);
  });

  test('test on bad input: exit 2 naming the file', async () => {
    const broken = join(tmp, 'broken.json');
    await writeFile(broken, '{\n  "Records": [\n    {"eventName": "StopLogging"},\n  ]\n}\n');
    const r = await cli(['rules', 'test', RULES_DIR, DELIVERY, broken]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`${broken.replace(/[.]/g, '\\.')}: malformed JSON at line 4 column 3: .* \\[TW_INPUT_FILE\\]`));
    const missing = await cli(['rules', 'test', RULES_DIR, join(tmp, 'nope.json')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.json: no such file or directory/);
    const badRule = join(tmp, 'bad-rule.json');
    await writeFile(badRule, '{"detail": {"eventName": "StopLogging"}}');
    const rule = await cli(['rules', 'test', badRule, DELIVERY]);
    assert.equal(rule.code, 2);
    assert.match(rule.stderr, /bad-rule\.json:1: \$\.detail\.eventName: must be an array .* \[TW_RULE_INVALID\]/);
    const usage = await cli(['rules', 'test', RULES_DIR]);
    assert.equal(usage.code, 1);
    assert.match(usage.stderr, /no EVENTS files given/);
  });

  test('test runs Sigma correlations over the records in event time: the hit with its group, count and events', async () => {
    const correlation = join(FIXTURES_DIR, 'sigma/correlation-console-brute-force.yml');
    const failure = (i: number, user: string) =>
      JSON.stringify({
        eventTime: `2026-12-01T10:0${i}:00Z`,
        eventSource: 'signin.amazonaws.com',
        eventName: 'ConsoleLogin',
        eventID: `${user}-${i}`,
        userIdentity: { type: 'IAMUser', userName: user },
        responseElements: { ConsoleLogin: 'Failure' },
      });
    const lines = join(tmp, 'logins.jsonl');
    // Out of order in the file, and a second user with only four failures.
    const records = [4, 0, 3, 1, 2].map((i) => failure(i, 'carol')).concat([0, 1, 2, 3].map((i) => failure(i, 'dave')));
    await writeFile(lines, `${records.join('\n')}\n`);
    const r = await cli(['rules', 'test', correlation, lines]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /1 correlation hit from 1 correlation rules\n/);
    assert.match(
      r.stdout,
      /\(event_count\) Console Brute Force Against One User: count 5, group \{"userIdentity\.userName":"carol"\}, .* events carol-0, carol-1, carol-2, carol-3, carol-4\n/,
    );
    const four = join(tmp, 'four.jsonl');
    await writeFile(four, `${[0, 1, 2, 3].map((i) => failure(i, 'dave')).join('\n')}\n`);
    const none = await cli(['rules', 'test', correlation, four]);
    assert.equal(none.code, 1, 'no rule matched and no correlation fired');
    assert.match(none.stdout, /0 correlation hits from 1 correlation rules/);
  });
});
