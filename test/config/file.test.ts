import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseConfigText } from '../../src/config/file.ts';
import { contentHash, LiveConfig } from '../../src/config/live.ts';
import { checkConfig, formatPath, loadConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'tw-config-'));
const write = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('config files', () => {
  test('YAML and JSON give the same config', () => {
    const yaml = loadConfig({
      env: {},
      file: write('a.yaml', 'detector:\n  scoreThreshold: 0.7\n  overrides:\n    - match: { service: "s3.*" }\n      enabled: false\n'),
    });
    const json = loadConfig({
      env: {},
      file: write(
        'a.json',
        JSON.stringify({ detector: { scoreThreshold: 0.7, overrides: [{ match: { service: 's3.*' }, enabled: false }] } }),
      ),
    });
    assert.deepEqual(yaml, json);
    assert.equal(yaml.detector.overrides[0]?.enabled, false);
  });

  test('a YAML syntax error names the file, line and column', () => {
    const file = write('bad.yml', 'detector:\n  scoreThreshold: 0.7\n  overrides: [\n');
    assert.throws(
      () => loadConfig({ env: {}, file }),
      (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.startsWith(`${file}:4:1: `)),
    );
    const dup = parseConfigText('dup.yaml', 'detector:\n  bucketMs: 1\n  bucketMs: 2\n');
    assert.match(dup.errors[0] ?? '', /^dup\.yaml:3:3: .*unique/i);
  });

  test('a JSON syntax error names the file and position', () => {
    const f = parseConfigText('x.json', '{\n  "detector": {,\n}');
    assert.equal(f.data, null);
    assert.match(f.errors[0] ?? '', /^x\.json: not valid JSON: .*line 2/);
  });

  test('validation problems name their path and, in YAML, their line', () => {
    const text = [
      'detector:', //1
      '  overrides:', //2
      '    - match: { service: "s3.*" }', //3
      '      scoreThreshold: 1.5', //4
      '    - match:', //5
      '        regoin: "eu-*"', //6
      '  suppressions:', //7
      '    - match: { action: "Run*" }', //8
      '      reason: "migration"', //9
      '      expires: "next week"', //10
    ].join('\n');
    const file = parseConfigText('t.yaml', text);
    const { config, problems } = checkConfig(file.data);
    assert.equal(config, null);
    const found = problems.map((p) => `${file.lineOf(p.path)} ${formatPath(p.path)}`);
    for (const expected of [
      '4 detector.overrides[0].scoreThreshold',
      '6 detector.overrides[1].match.regoin',
      '10 detector.suppressions[0].expires',
      // author is missing: the line of the suppression it belongs to.
      '8 detector.suppressions[0].author',
    ]) {
      assert.ok(found.includes(expected), `${expected} in ${found.join(', ')}`);
    }
  });

  test('LiveConfig takes the tuning, names what needs a restart, and versions each content', () => {
    const a = loadConfig({ env: {} });
    const live = new LiveConfig(a, contentHash('a'));
    const seen: string[] = [];
    live.onChange((_, v) => seen.push(v.id));
    const b = loadConfig({ env: {}, overrides: { detector: { scoreThreshold: 0.8, bucketMs: 30_000 }, topics: { events: 'other' } } });
    const r = live.apply(b, contentHash('b'));
    assert.equal(r.applied, true);
    assert.deepEqual(r.needsRestart.sort(), ['detector.bucketMs', 'topics']);
    assert.equal(live.config.detector.scoreThreshold, 0.8);
    assert.equal(live.config.detector.bucketMs, 60_000);
    assert.equal(live.config.topics.events, a.topics.events);
    assert.equal(live.version.counter, 2);
    assert.equal(live.version.id, `2-${contentHash('b').slice(0, 12)}`);
    assert.deepEqual(seen, [live.version.id]);
    assert.equal(live.apply(b, contentHash('b')).applied, false);
  });
});
