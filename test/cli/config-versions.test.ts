/**
 * `trailwatch config apply | history | show` against the real broker: a file validated like
 * `config check` and refused with its problems, versions written with author, message, file and
 * sha256, listed newest first, and printed back as YAML that `config apply` takes again.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parse } from 'yaml';
import type { ConfigRecord } from '../../src/config/record.ts';
import { cli } from '../helpers/cli.ts';
import { testKafka, uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

const dir = mkdtempSync(join(tmpdir(), 'tw-config-versions-'));
const write = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

const V1 = `detector:
  scoreThreshold: 0.65
  overrides:
    - match: { service: "s3.amazonaws.com", action: "Get*" }
      scoreThreshold: 0.8
  suppressions:
    - match: { principal: "arn:aws:iam::123456789012:role/ci-deployer" }
      reason: "release week"
      author: "alice"
      expires: "2999-01-01T00:00:00Z"
`;

describe('trailwatch config apply, history and show', { timeout: 240_000 }, () => {
  const topic = uniqueName('tw-cli-config');
  const env = { TRAILWATCH_TOPICS__CONFIG: topic };
  after(async () => {
    const admin = testKafka((await testStack()).brokers, 'trailwatch-test-cleanup').admin();
    try {
      await admin.connect();
      if ((await admin.listTopics()).includes(topic)) await admin.deleteTopics({ topics: [topic], timeout: 10_000 });
    } catch {
      // best effort: the name is unique
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  });

  test('an invalid file is refused with every problem and its line; nothing is written', async () => {
    const bad = write('bad.yaml', 'detector:\n  scoreThreshold: 2\n  suppressions:\n    - match: { action: "Run*" }\n      reason: ""\n');
    const r = await cli(['config', 'apply', bad, '--author', 'alice'], env);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`${bad}:2: detector\\.scoreThreshold: `));
    assert.match(r.stdout, new RegExp(`${bad}:5: detector\\.suppressions\\[0\\]\\.reason: `));
    assert.match(r.stdout, new RegExp(`${bad}:4: detector\\.suppressions\\[0\\]\\.author: `));
    assert.match(r.stdout, /not applied\n$/);
    const history = await cli(['config', 'history'], env);
    assert.equal(history.code, 0, history.stderr);
    assert.match(history.stdout, /no config versions on .* \(no such topic yet\)/);
  });

  test('apply → history → show, and show’s YAML applies back as it is', async () => {
    const v1 = write('trailwatch.yaml', V1);
    const first = await cli(['config', 'apply', v1, '--author', 'alice', '--message', 'quieter S3 reads'], env);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const sha = createHash('sha256').update(readFileSync(v1)).digest('hex');
    assert.equal(
      first.stdout,
      `applied ${v1} as config version 1 on ${topic} (sha256 ${sha.slice(0, 12)}, author alice): running detectors take it at their next batch boundary\n`,
    );
    const same = await cli(['config', 'apply', v1, '--author', 'bob'], env);
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /no change: version 1 \(.*, alice\) has the same settings; nothing written/);

    const v2 = write('raise.yaml', `${V1.replace('0.65', '0.7')}kafka:\n  clientId: other\n`);
    const second = await cli(['config', 'apply', v2, '--author', 'bob', '-m', 'threshold 0.7'], env);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /as config version 2 /);
    assert.match(second.stdout, /note: not part of a version \(they take a restart\): kafka\n/);

    const history = await cli(['config', 'history'], env);
    assert.equal(history.code, 0, history.stderr);
    const lines = history.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^VERSION\s+APPLIED\s+AUTHOR\s+FILE\s+SHA256\s+MESSAGE$/);
    assert.match(lines[1] ?? '', /^2\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+bob\s+raise\.yaml\s+[0-9a-f]{12}\s+threshold 0\.7$/);
    assert.match(lines[2] ?? '', new RegExp(`^1\\s+\\S+\\s+alice\\s+trailwatch\\.yaml\\s+${sha.slice(0, 12)}\\s+quieter S3 reads$`));
    assert.equal(lines.length, 3);
    const limited = await cli(['config', 'history', '--limit', '1', '--json'], env);
    const json = JSON.parse(limited.stdout) as { topic: string; versions: ConfigRecord[] };
    assert.equal(json.topic, topic);
    assert.deepEqual(
      json.versions.map((v) => v.version),
      [2],
    );
    assert.equal(json.versions[0]?.sha256, createHash('sha256').update(readFileSync(v2)).digest('hex'));

    const shown = await cli(['config', 'show', '1'], env);
    assert.equal(shown.code, 0, shown.stderr);
    const doc = parse(shown.stdout) as { detector: Record<string, unknown> };
    assert.equal(doc.detector.scoreThreshold, 0.65);
    assert.deepEqual(doc.detector.suppressions, [
      {
        match: { principal: 'arn:aws:iam::123456789012:role/ci-deployer' },
        reason: 'release week',
        author: 'alice',
        expires: '2999-01-01T00:00:00Z',
      },
    ]);
    assert.equal(doc.detector.minEventsPerBucket, 5, 'the tuning in full, defaults included');
    const latest = await cli(['config', 'show'], env);
    assert.equal((parse(latest.stdout) as { detector: { scoreThreshold: number } }).detector.scoreThreshold, 0.7);

    // Back to version 1: its YAML is a file apply takes.
    const back = await cli(['config', 'apply', write('v1.yaml', shown.stdout), '--author', 'carol', '-m', 'back to 1'], env);
    assert.equal(back.code, 0, back.stdout + back.stderr);
    assert.match(back.stdout, /as config version 3 /);
    const v3 = await cli(['config', 'show', '3', '--json'], env);
    const v1Json = await cli(['config', 'show', '1', '--json'], env);
    assert.deepEqual((JSON.parse(v3.stdout) as ConfigRecord).document, (JSON.parse(v1Json.stdout) as ConfigRecord).document);

    const missing = await cli(['config', 'show', '9'], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no config version 9 on .* \(versions: 1–3\); `trailwatch config history` lists them/);
  });
});
