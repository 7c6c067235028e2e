import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { cli } from '../helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'tw-config-cli-'));
const write = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

const GOOD = `detector:
  overrides:
    - match: { service: "s3.amazonaws.com" }
      scoreThreshold: 0.9
    - match: { service: "s3.amazonaws.com", action: "Get*" }
      enabled: false
  suppressions:
    - match: { action: "RunInstances" }
      reason: "migration"
      author: "alice"
      expires: "2020-01-01T00:00:00Z"
    - match: { principal: "*ci-deployer" }
      reason: "release week"
      author: "bob"
      expires: "2999-01-01T00:00:00Z"
`;

describe('trailwatch config check', () => {
  test('lists every problem with its file, line and path; exit 1', async () => {
    const file = write(
      'bad.yaml',
      `detector:
  overrides:
    - match: { service: "s3.amazonaws.com" }
      minRatio: -1
    - match: { regoin: "eu-*" }
  suppressions:
    - match: { action: "Run*" }
      reason: ""
      author: alice
      expires: "2026-13-01"
`,
    );
    const r = await cli(['config', 'check', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, new RegExp(`${file}:4: detector\\.overrides\\[0\\]\\.minRatio: `));
    assert.match(r.stdout, new RegExp(`${file}:5: detector\\.overrides\\[1\\]\\.match\\.regoin: unknown key`));
    assert.match(r.stdout, new RegExp(`${file}:8: detector\\.suppressions\\[0\\]\\.reason: `));
    assert.match(r.stdout, new RegExp(`${file}:10: detector\\.suppressions\\[0\\]\\.expires: `));
    assert.match(r.stdout, /problems\n$/);
  });

  test('a valid file passes and warns about a suppression already expired', async () => {
    const file = write('good.yaml', GOOD);
    const r = await cli(['config', 'check', file]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`warning: ${file}:11: detector\\.suppressions\\[0\\]\\.expires: expired`));
    assert.doesNotMatch(r.stdout, /suppressions\[1\]/);
    assert.match(r.stdout, /valid, 1 warning/);
  });

  test('findings overrides and suppressions: a bad match field or kind is refused with its path and line', async () => {
    const file = write(
      'findings-bad.yaml',
      `findings:
  overrides:
    - match: { rule: "tw-*", ruleId: "x" }
      severity: severe
  suppressions:
    - match: { kind: firstseen }
      reason: "drill"
      author: alice
      expires: "2999-01-01T00:00:00Z"
    - match: {}
      reason: "drill"
      author: alice
      expires: "2999-01-01T00:00:00Z"
`,
    );
    const r = await cli(['config', 'check', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, new RegExp(`${file}:3: findings\\.overrides\\[0\\]\\.match\\.ruleId: unknown key`));
    assert.match(r.stdout, new RegExp(`${file}:4: findings\\.overrides\\[0\\]\\.severity: `));
    assert.match(r.stdout, new RegExp(`${file}:6: findings\\.suppressions\\[0\\]\\.match\\.kind: .*first-seen`));
    assert.match(r.stdout, /findings\.suppressions\[1\]\.match: name at least one field/);
  });

  test('a syntax error names the line and column', async () => {
    const r = await cli(['config', 'check', write('syntax.yaml', 'detector:\n  overrides: [\n')]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /syntax\.yaml:3:1: /);
  });
});

describe('trailwatch config explain', () => {
  test('names the override and suppressions that apply, and the effective settings', async () => {
    const file = write('explain.yaml', GOOD);
    const put = await cli(['config', 'explain', '--config', file, '--key', 'action|call|123|us-east-1|s3.amazonaws.com|PutObject']);
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stdout, /override: detector\.overrides\[0\]/);
    assert.match(put.stdout, /scoreThreshold: 0\.9 {2}\(override \[0\]\)/);
    assert.match(put.stdout, /minRatio: 3 {2}\(detector\)/);
    assert.match(put.stdout, /suppressions: none/);
    const get = await cli(['config', 'explain', '--config', file, '--key', 'action|call|123|us-east-1|s3.amazonaws.com|GetObject']);
    assert.match(get.stdout, /override: detector\.overrides\[1\]/);
    assert.match(get.stdout, /enabled: false/);
    const ci = await cli([
      'config',
      'explain',
      '--config',
      file,
      '--principal',
      'arn:aws:iam::123:role/ci-deployer',
      '--account',
      '123',
      '--service',
      'ec2.amazonaws.com',
      '--action',
      'RunInstances',
    ]);
    assert.equal(ci.code, 0, ci.stderr);
    assert.match(ci.stdout, /suppression: detector\.suppressions\[0\] expired until 2020/);
    assert.match(ci.stdout, /suppression: detector\.suppressions\[1\] active until 2999.*release week; bob/);
    assert.match(ci.stdout, /suppressed: true/);
    assert.match(ci.stdout, /override: none/);
  });

  test('--finding-rule: the findings override and suppressions a finding gets', async () => {
    const file = write(
      'findings.yaml',
      `findings:
  overrides:
    - match: { rule: "tw-*" }
      severity: medium
    - match: { rule: "tw-ami-shared", principal: "*:role/image-builder" }
      enabled: false
  suppressions:
    - match: { kind: first-seen, principal: "*:assumed-role/migration-*" }
      reason: "account migration"
      author: alice
      expires: "2999-01-01T00:00:00Z"
    - match: { kind: first-seen }
      reason: "old"
      author: bob
      expires: "2020-01-01T00:00:00Z"
`,
    );
    const ami = await cli([
      'config',
      'explain',
      '--config',
      file,
      '--finding-rule',
      'tw-ami-shared',
      '--principal',
      'arn:aws:iam::1:role/image-builder',
    ]);
    assert.equal(ami.code, 0, ami.stderr);
    assert.match(ami.stdout, /override: findings\.overrides\[1\] /);
    assert.match(ami.stdout, /enabled: false/);
    const other = await cli([
      'config',
      'explain',
      '--config',
      file,
      '--finding-rule',
      'tw-ami-shared',
      '--principal',
      'arn:aws:iam::1:role/admin',
    ]);
    assert.match(other.stdout, /override: findings\.overrides\[0\] /);
    assert.match(other.stdout, /severity: medium {2}\(override \[0\]\)/);
    const fs = await cli([
      'config',
      'explain',
      '--config',
      file,
      '--finding-rule',
      'trailwatch-first-seen',
      '--principal',
      'arn:aws:sts::1:assumed-role/migration-7',
    ]);
    assert.equal(fs.code, 0, fs.stderr);
    assert.match(fs.stdout, /kind=first-seen/);
    assert.match(fs.stdout, /findings\.suppressions\[0\] active until 2999/);
    assert.match(fs.stdout, /findings\.suppressions\[1\] expired until 2020/);
    assert.match(fs.stdout, /suppressed: true/);
    const bad = await cli(['config', 'explain', '--config', file, '--finding-rule', 'x', '--kind', 'rules']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--kind takes rule, correlation, first-seen, breadth/);
  });

  test('--help on each subcommand; plain `config` still prints the effective config', async () => {
    for (const sub of ['check', 'explain']) {
      const r = await cli(['config', sub, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`Usage: trailwatch config ${sub}`));
    }
    const r = await cli(['config', '--config', write('plain.yaml', GOOD)]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).detector.overrides[0].scoreThreshold, 0.9);
  });
});
