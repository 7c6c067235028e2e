import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { configuredRulePaths, DEFAULT_PACK_DIR, loadRules } from '../../../src/detect/rules/load.ts';
import { FIXTURES_DIR } from '../../helpers/shared.ts';

const SIGMA_DIR = join(FIXTURES_DIR, 'sigma');
/** The single-event Sigma fixtures, named one by one: the directory also holds correlation rules. */
const SIGMA_FIXTURES = [
  'cloudtrail_logging_disabled.yml',
  'ec2_snapshot_shared_public.yml',
  'iam_collection.yml',
  'lambda_backdoor.yml',
  'root_console_login.yml',
].map((f) => join(SIGMA_DIR, f));

const STOP_LOGGING = {
  eventSource: 'cloudtrail.amazonaws.com',
  eventName: 'StopLogging',
  eventType: 'AwsApiCall',
  awsRegion: 'us-east-1',
  recipientAccountId: '123456789012',
  eventTime: '2026-03-02T10:15:00Z',
};
const LIST_BUCKETS = { ...STOP_LOGGING, eventSource: 's3.amazonaws.com', eventName: 'ListBuckets' };

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** A fresh temp directory holding `files` (relative path → text). */
async function ruleDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tw-rules-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  return dir;
}

const WRAPPED = JSON.stringify(
  {
    id: 'tw-stop-logging',
    title: 'CloudTrail logging stopped',
    severity: 'high',
    description: 'A trail stopped recording.',
    tags: ['attack.defense-evasion', 'attack.t1562.008'],
    references: ['https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_StopLogging.html'],
    pattern: { source: ['aws.cloudtrail'], detail: { eventName: ['StopLogging'], requestParameters: { name: [{ exists: true }] } } },
  },
  null,
  2,
);

describe('loadRules', () => {
  test('a bare EventBridge pattern: id from the file name, title = id, severity medium', async () => {
    const dir = await ruleDir({ 'no-s3-listing.json': '{"source": ["aws.s3"], "detail": {"eventName": ["ListBuckets"]}}' });
    const { rules, problems, files } = await loadRules([dir]);
    assert.deepEqual(problems, []);
    assert.equal(files.length, 1);
    const [rule] = rules;
    assert.ok(rule);
    assert.equal(rule.id, 'no-s3-listing');
    assert.equal(rule.title, 'no-s3-listing');
    assert.equal(rule.severity, 'medium');
    assert.equal(rule.kind, 'eventbridge');
    assert.equal(rule.source, join(dir, 'no-s3-listing.json'));
    assert.deepEqual(rule.tags, []);
    assert.equal(rule.description, undefined);
    // `source` is read from the record's eventSource through the envelope.
    assert.deepEqual(rule.fields, ['eventName', 'eventSource']);
    assert.equal(rule.matches(LIST_BUCKETS), true);
    assert.equal(rule.matches(STOP_LOGGING), false);
  });

  test('an EventBridge wrapper: id, title, severity, description, tags and techniques; matched on the CloudTrail record', async () => {
    const dir = await ruleDir({ 'x.json': WRAPPED });
    const { rules, problems } = await loadRules([join(dir, 'x.json')]);
    assert.deepEqual(problems, []);
    const [rule] = rules;
    assert.ok(rule);
    assert.equal(rule.id, 'tw-stop-logging');
    assert.equal(rule.title, 'CloudTrail logging stopped');
    assert.equal(rule.severity, 'high');
    assert.equal(rule.description, 'A trail stopped recording.');
    assert.deepEqual(rule.tags, ['attack.defense-evasion', 'attack.t1562.008']);
    assert.deepEqual(rule.techniques, ['T1562.008']);
    assert.deepEqual(rule.fields, ['eventName', 'eventSource', 'requestParameters.name']);
    const hit = { ...STOP_LOGGING, requestParameters: { name: 'main' } };
    assert.equal(rule.matches(hit), true);
    assert.equal(rule.matches(STOP_LOGGING), false);
    const why = rule.explain(hit);
    assert.equal(why.matched, true);
    assert.ok(why.reasons.some((r) => r.includes('StopLogging')));
    assert.equal(rule.explain(LIST_BUCKETS).matched, false);
  });

  test('an EventBridge wrapper may carry an alarm threshold (minCount); a bad one is a problem naming the file', async () => {
    const wrapped = (minCount: unknown) => JSON.stringify({ ...JSON.parse(WRAPPED), minCount });
    const dir = await ruleDir({
      'ok.json': wrapped(5),
      'one.json': wrapped(1).replace('tw-stop-logging', 'tw-one'),
      'bad.json': wrapped(0).replace('tw-stop-logging', 'tw-bad'),
    });
    const { rules, problems } = await loadRules([dir]);
    assert.equal(rules.find((r) => r.id === 'tw-stop-logging')?.minCount, 5);
    assert.equal(rules.find((r) => r.id === 'tw-one')?.minCount, undefined, '1 is every match, the default');
    assert.equal(problems.length, 1);
    assert.match(problems[0]?.source ?? '', /bad\.json$/);
    assert.match(problems[0]?.message ?? '', /'minCount' must be a whole number ≥ 1/);
  });

  test('a Sigma file with a correlation loads it, and the rules that only feed it are not findings of their own', async () => {
    const { rules, correlations, problems } = await loadRules([SIGMA_DIR]);
    assert.deepEqual(problems, []);
    const brute = correlations.find((c) => c.rule.id === '0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d02');
    assert.ok(brute, 'the event_count correlation is loaded');
    assert.equal(brute.source, join(SIGMA_DIR, 'correlation-console-brute-force.yml'));
    assert.deepEqual(brute.rule.rules, ['0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d01']);
    assert.ok(brute.base.some((r) => r.id === '0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d01'));
    assert.ok(
      !rules.some((r) => r.id === '0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d01'),
      'a rule that only feeds a correlation is not standalone',
    );
    assert.ok(rules.some((r) => r.id === '6b7d3b9a-1f0e-4c57-9a55-2b1e0f7d9c01'));
  });

  test('Sigma fixtures: severity from level, tags, techniques, description, the same verdicts', async () => {
    const { rules, problems, files } = await loadRules(SIGMA_FIXTURES);
    assert.deepEqual(problems, []);
    assert.equal(files.length, 5);
    assert.ok(rules.length >= 5);
    assert.ok(rules.every((r) => r.kind === 'sigma' && r.source.startsWith(SIGMA_DIR)));
    const rule = rules.find((r) => r.id === '6b7d3b9a-1f0e-4c57-9a55-2b1e0f7d9c01');
    assert.ok(rule);
    assert.equal(rule.title, 'CloudTrail Logging Disabled or Tampered With');
    assert.equal(rule.severity, 'medium');
    assert.deepEqual(rule.techniques, ['T1562.008']);
    assert.match(rule.description ?? '', /blinds audit logging/);
    assert.deepEqual(rule.fields, ['eventName', 'eventSource']);
    assert.equal(rule.matches(STOP_LOGGING), true);
    assert.equal(rule.matches(LIST_BUCKETS), false);
    assert.equal(rule.explain(STOP_LOGGING).matched, true);
  });

  test('a Sigma rule without a level is medium; the level is taken when given', async () => {
    const sigma = (id: string, level: string) =>
      `title: t ${id}\nid: ${id}\n${level}logsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventName: StopLogging\n  condition: sel\n`;
    const dir = await ruleDir({ 'a.yml': sigma('a', ''), 'b.yaml': sigma('b', 'level: critical\n') });
    const { rules, problems } = await loadRules([dir]);
    assert.deepEqual(problems, []);
    assert.deepEqual(
      rules.map((r) => [r.id, r.severity]),
      [
        ['a', 'medium'],
        ['b', 'critical'],
      ],
    );
  });

  test('every problem of every bad file, each with its file and line; the good rules still load', async () => {
    const dir = await ruleDir({
      'good.json': WRAPPED,
      'syntax.json': '{\n  "detail": {\n    "eventName": ["A",]\n  }\n}\n',
      'nested/wrapper.json':
        '{\n  "id": "w",\n  "title": "t",\n  "severity": "urgent",\n  "pattern": {\n    "detail": {\n      "eventName": [{ "prefixx": "Stop" }]\n    }\n  },\n  "sevrity": "low"\n}\n',
      'bare.json': '{\n  "detail": {\n    "eventName": []\n  }\n}\n',
      'bad.yml':
        'title: x\nid: s1\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventName: A\n  condition: nope\n',
      'okta.yml':
        'title: x\nid: s2\nlogsource:\n  product: okta\n  service: okta\ndetection:\n  sel:\n    eventName: A\n  condition: sel\n',
    });
    const { rules, problems, files } = await loadRules([dir]);
    assert.deepEqual(
      rules.map((r) => r.id),
      ['tw-stop-logging'],
    );
    assert.equal(files.length, 6);
    const at = problems.map((p) => `${p.source.slice(dir.length + 1)}:${p.line}`);
    assert.deepEqual(at, [
      'bad.yml:9',
      'bare.json:3',
      'nested/wrapper.json:4',
      'nested/wrapper.json:7',
      'nested/wrapper.json:10',
      'okta.yml:4',
      'syntax.json:3',
    ]);
    assert.ok(problems.every((p) => p.code === 'TW_RULE_INVALID'));
    const message = (file: string, line: number) => problems.find((p) => p.source === join(dir, file) && p.line === line)?.message ?? '';
    assert.match(message('bad.yml', 9), /nope/);
    assert.match(message('bare.json', 3), /^\$\.detail\.eventName: an empty array/);
    assert.match(message('nested/wrapper.json', 4), /severity 'urgent'/);
    assert.match(message('nested/wrapper.json', 7), /^\$\.pattern\.detail\.eventName\[0\]\.prefixx: unknown operator "prefixx"/);
    assert.match(message('nested/wrapper.json', 10), /unknown key 'sevrity'/);
    assert.match(message('syntax.json', 3), /not valid JSON at column 23/);
    // The file name is the problem's source, not repeated in its message.
    assert.ok(problems.every((p) => !p.message.includes(dir)));
  });

  test('a rule id taken by an earlier file is a problem naming both files, and is left out', async () => {
    const dir = await ruleDir({
      'a/first.json': WRAPPED,
      'b/second.json': WRAPPED.replace('CloudTrail logging stopped', 'the same id again'),
      'b/tw-stop-logging.json': '{"source": ["aws.cloudtrail"]}',
    });
    const { rules, problems } = await loadRules([dir]);
    assert.deepEqual(
      rules.map((r) => r.title),
      ['CloudTrail logging stopped'],
    );
    assert.equal(problems.length, 2);
    const [second, bare] = problems;
    assert.equal(second?.source, join(dir, 'b/second.json'));
    assert.equal(second?.line, 2);
    assert.equal(second?.message, `rule id 'tw-stop-logging' is already defined in ${join(dir, 'a/first.json')}:2`);
    assert.equal(bare?.source, join(dir, 'b/tw-stop-logging.json'));
    assert.equal(bare?.line, undefined);
    assert.match(bare?.message ?? '', /already defined in .*first\.json:2/);
  });

  test('a README and other files in a rule directory are passed over; an empty directory loads nothing', async () => {
    const dir = await ruleDir({
      'README.md': '# my rules\n',
      'notes.txt': 'x',
      'pack/README.md': 'x',
      'pack/r.json': '{"source": ["aws.iam"]}',
    });
    const loaded = await loadRules([dir]);
    assert.deepEqual(loaded.problems, []);
    assert.deepEqual(
      loaded.rules.map((r) => r.id),
      ['r'],
    );
    const empty = await ruleDir({});
    assert.deepEqual(await loadRules([empty]), { rules: [], correlations: [], problems: [], files: [] });
    assert.deepEqual(await loadRules([]), { rules: [], correlations: [], problems: [], files: [] });
  });

  test('a missing path, and a non-rule file named explicitly, are problems', async () => {
    const dir = await ruleDir({ 'README.md': 'x' });
    const { problems } = await loadRules([join(dir, 'missing'), join(dir, 'README.md')]);
    assert.deepEqual(
      problems.map((p) => [p.source.slice(dir.length + 1), p.code]),
      [
        ['missing', 'TW_INPUT_FILE'],
        ['README.md', 'TW_RULE_INVALID'],
      ],
    );
    assert.match(problems[0]?.message ?? '', /no such file or directory/);
  });

  test('configured paths: rules.paths, then the default pack when it is on and present', () => {
    assert.deepEqual(configuredRulePaths({ paths: ['a', 'b'], defaultPack: false }), ['a', 'b']);
    const withPack = configuredRulePaths({ paths: ['a'], defaultPack: true });
    assert.equal(withPack[0], 'a');
    assert.ok(withPack.length === 1 || withPack[1] === DEFAULT_PACK_DIR);
  });

  test('the default pack, whatever it holds yet, loads without problems', async (t) => {
    const paths = configuredRulePaths({ paths: [], defaultPack: true });
    if (paths.length === 0) {
      t.skip(`no default pack at ${DEFAULT_PACK_DIR} yet`);
      return;
    }
    const { problems } = await loadRules(paths);
    assert.deepEqual(problems, []);
  });
});
