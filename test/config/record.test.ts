import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfigText } from '../../src/config/file.ts';
import { checkConfig, loadConfig } from '../../src/config/load.ts';
import {
  ConfigHistory,
  type ConfigRecord,
  configWithDocument,
  decodeConfigRecord,
  documentOf,
  documentYaml,
  encodeConfigRecord,
  newConfigRecord,
  sha256,
  versionKey,
  versionOfKey,
} from '../../src/config/record.ts';
import { ErrorCodes, isTrailwatchError } from '../../src/errors.ts';

const base = loadConfig({ env: {} });

function record(version: number, over: Partial<ConfigRecord> = {}): ConfigRecord {
  return {
    ...newConfigRecord({
      version,
      appliedAt: new Date(Date.UTC(2026, 4, 1, 12, version)).toISOString(),
      author: 'alice',
      message: `v${version}`,
      source: 'trailwatch.yaml',
      sha256: sha256(`content ${version}`),
      document: documentOf(base),
    }),
    ...over,
  };
}

function add(history: ConfigHistory, r: ConfigRecord): void {
  history.add(versionKey(r.version), encodeConfigRecord(r));
}

describe('config version records', () => {
  test('keys are the version zero-padded, so they sort as numbers; other keys are not versions', () => {
    assert.equal(versionKey(7), '0000000007');
    assert.equal(versionKey(1234), '0000001234');
    assert.ok(versionKey(9) < versionKey(10));
    assert.equal(versionOfKey('0000000042'), 42);
    for (const key of ['latest', '', '0000000000', '-1', '1.5']) assert.equal(versionOfKey(key), null, key);
  });

  test('encode and decode round-trip; the key must name the record’s version', () => {
    const r = record(3);
    assert.deepEqual(decodeConfigRecord(versionKey(3), encodeConfigRecord(r)), r);
    assert.throws(
      () => decodeConfigRecord(versionKey(4), encodeConfigRecord(r)),
      (err: unknown) => isTrailwatchError(err) && err.code === ErrorCodes.DESERIALIZE && /says it is version 3/.test(err.message),
    );
  });

  test('a value that is not a record names what is wrong', () => {
    assert.throws(() => decodeConfigRecord('0000000001', '{nope'), /config record 0000000001 is not JSON/);
    const { sha256: _s, ...noSha } = record(1);
    assert.throws(() => decodeConfigRecord('0000000001', JSON.stringify(noSha)), /sha256: /);
    assert.throws(() => decodeConfigRecord('0000000001', JSON.stringify({ ...record(1), format: 2 })), /format: /);
  });

  test('the document is the tuning in full, and survives YAML: config show → config apply gives the same document', () => {
    const tuned = loadConfig({
      env: {},
      overrides: {
        detector: {
          scoreThreshold: 0.7,
          bucketMs: 120_000,
          overrides: [{ match: { service: 's3.amazonaws.com', action: 'Get*' }, scoreThreshold: 0.8 }],
          suppressions: [
            { match: { principal: 'arn:aws:iam::1:role/ci' }, reason: 'release: "week"', author: 'bob', expires: '2999-01-01T00:00:00Z' },
          ],
        },
      },
    });
    const doc = documentOf(tuned);
    assert.deepEqual(Object.keys(doc.detector).sort(), [
      'burstMargin',
      'direction',
      'minEventsPerBucket',
      'minHistoryMs',
      'minRatio',
      'overrides',
      'scoreThreshold',
      'suppressions',
    ]);
    assert.equal(doc.detector.scoreThreshold, 0.7);
    const file = parseConfigText('v.yaml', documentYaml(doc));
    const { config, problems } = checkConfig(file.data);
    assert.deepEqual(problems, []);
    assert.deepEqual(documentOf(config ?? base), doc);
  });

  test('findings overrides and suppressions are part of a version: config apply → config show → apply again keeps them', () => {
    const suppression = {
      match: { rule: 'tw-ami-shared', principal: '*:role/image-builder' },
      reason: 'golden AMI sharing with the partner account',
      author: 'alice@example.com',
      expires: '2999-01-01T00:00:00Z',
    };
    const applied = loadConfig({
      env: {},
      overrides: {
        findings: {
          foldMs: 600_000,
          overrides: [{ match: { kind: 'first-seen', principal: '*:assumed-role/ci-*' }, severity: 'informational' }],
          suppressions: [suppression],
        },
      },
    });
    const doc = documentOf(applied);
    assert.deepEqual(doc.findings.suppressions, [suppression]);
    assert.equal('foldMs' in doc.findings, false, 'only the tuning is versioned');
    // On the topic and back (config apply writes it, a member or config show reads it).
    const r = record(4, { document: doc });
    const read = decodeConfigRecord(versionKey(4), encodeConfigRecord(r));
    assert.deepEqual(read.document, doc);
    // config show prints YAML that config apply takes back as the same document.
    const shown = documentYaml(read.document);
    assert.match(shown, /^findings:\n/m);
    const { config, problems } = checkConfig(parseConfigText('v4.yaml', shown).data);
    assert.deepEqual(problems, []);
    assert.deepEqual(documentOf(config ?? base), doc);
    // A member takes the version's findings tuning over its own file's; the rest stays its own.
    const member = loadConfig({
      env: {},
      overrides: { findings: { foldMs: 120_000, suppressions: [{ ...suppression, match: { rule: 'x' } }] } },
    });
    const taken = configWithDocument(member, read.document).config;
    assert.deepEqual(taken?.findings.suppressions, [suppression]);
    assert.equal(taken?.findings.foldMs, 120_000);
  });

  test('a record written before versions carried findings tuning reads as empty findings lists', () => {
    const { findings: _f, ...older } = documentOf(base);
    const r = { ...record(2), document: older };
    const read = decodeConfigRecord(versionKey(2), JSON.stringify(r));
    assert.deepEqual(read.document.findings, { overrides: [], suppressions: [] });
    assert.deepEqual(read.document, documentOf(base));
  });

  test('a version’s tuning is judged against the member’s own settings', () => {
    const doc = documentOf(loadConfig({ env: {}, overrides: { detector: { minHistoryMs: 2 * 86_400_000 } } }));
    assert.equal(configWithDocument(base, doc).config?.detector.minHistoryMs, 2 * 86_400_000);
    // A member whose baseline window is one day cannot take two days of minimum history.
    const short = loadConfig({ env: {}, overrides: { detector: { baselineWindowMs: 86_400_000, minHistoryMs: 3_600_000 } } });
    const { config, problems } = configWithDocument(short, doc);
    assert.equal(config, null);
    assert.match(problems.join('\n'), /minHistoryMs must not exceed detector.baselineWindowMs/);
    // The rest of the member's config stays its own.
    const other = loadConfig({ env: {}, overrides: { detector: { bucketMs: 120_000 } } });
    assert.equal(configWithDocument(other, doc).config?.detector.bucketMs, 120_000);
  });
});

describe('the config topic folded (ConfigHistory)', () => {
  test('latest, list newest first, next version', () => {
    const h = new ConfigHistory();
    assert.equal(h.latest(), null);
    assert.equal(h.nextVersion(), 1);
    for (const v of [1, 2, 3]) add(h, record(v));
    assert.equal(h.latest()?.version, 3);
    assert.deepEqual(
      h.list().map((r) => r.version),
      [3, 2, 1],
    );
    assert.equal(h.nextVersion(), 4);
    assert.equal(h.get(2)?.message, 'v2');
  });

  test('a race for one version: the first record of the key wins; the loser is superseded, and its repair copy of the winner changes nothing', () => {
    const h = new ConfigHistory();
    add(h, record(1));
    const winner = record(2, { author: 'bob', message: 'first' });
    const loser = record(2, { author: 'carol', message: 'second' });
    add(h, winner);
    add(h, loser);
    // The loser writes the winner's record again, so compaction (last record of a key) keeps the winner.
    add(h, winner);
    assert.equal(h.get(2)?.author, 'bob');
    assert.deepEqual(
      h.superseded.map((r) => r.author),
      ['carol'],
    );
    assert.equal(h.latest()?.writeId, winner.writeId);
    assert.equal(h.nextVersion(), 3);
    // After compaction only the repair copy is left under the key: the same winner.
    const compacted = new ConfigHistory();
    add(compacted, record(1));
    add(compacted, winner);
    assert.equal(compacted.get(2)?.writeId, winner.writeId);
  });

  test('a lost record above every version still moves the next version past it', () => {
    const h = new ConfigHistory();
    add(h, record(1));
    const a = record(2);
    add(h, a);
    add(h, record(2, { author: 'x' }));
    assert.equal(h.nextVersion(), 3);
  });

  test('values that are not records are listed, not fatal; tombstones and other keys are skipped', () => {
    const h = new ConfigHistory();
    add(h, record(1));
    h.add('0000000002', 'not json');
    h.add('latest', '{"version":1}');
    h.add('0000000003', null);
    h.add(null, 'x');
    assert.equal(h.size, 1);
    assert.equal(h.invalid.length, 1);
    assert.equal(h.invalid[0]?.key, '0000000002');
  });
});
