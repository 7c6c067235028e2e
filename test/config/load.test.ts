import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { configFromEnv, loadConfig, redactConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';

describe('loadConfig', () => {
  test('defaults need no input', () => {
    const c = loadConfig({ env: {} });
    assert.equal(c.detector.bucketMs, 60_000);
    assert.equal(c.detector.allowedLatenessMs, 300_000);
    assert.equal(c.detector.topN, 5);
    assert.deepEqual(c.kafka.brokers, []);
    assert.equal(c.topics.events, 'trailwatch.events');
  });

  test('file ← env ← overrides, in that order', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tw-config-'));
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ detector: { bucketMs: 30_000, topN: 7 }, topics: { events: 'from-file' } }));
    const c = loadConfig({
      file,
      env: { TRAILWATCH_DETECTOR__TOP_N: '9', KAFKA_BROKERS: 'a:9092, b:9092', SCHEMA_REGISTRY_URL: 'http://r/apis/ccompat/v7' },
      overrides: { topics: { alerts: 'over' } },
    });
    assert.equal(c.detector.bucketMs, 30_000);
    assert.equal(c.detector.topN, 9);
    assert.equal(c.topics.events, 'from-file');
    assert.equal(c.topics.alerts, 'over');
    assert.deepEqual(c.kafka.brokers, ['a:9092', 'b:9092']);
    assert.equal(c.registry.url, 'http://r/apis/ccompat/v7');
  });

  test('env values parse as JSON, but secrets stay strings', () => {
    const env = configFromEnv({
      TRAILWATCH_DETECTOR__SCOPES__ACTION: 'false',
      TRAILWATCH_REGISTRY__PASSWORD: '12345',
      TRAILWATCH_CACHE_DIR: '/x',
    });
    assert.deepEqual(env, { detector: { scopes: { action: false } }, registry: { password: '12345' } });
  });

  test('every problem is listed at once, cross-key rules included', () => {
    assert.throws(
      () =>
        loadConfig({
          env: {},
          overrides: { detector: { allowedLatenessMs: -1, startAfterBuckets: 100, maxDurationMs: 60_000, bogus: 1 } as never },
        }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.code, 'TW_CONFIG_INVALID');
        assert.equal(err.problems.length, 3, err.message);
        assert.match(err.message, /allowedLatenessMs/);
        assert.match(err.message, /bogus/);
        assert.match(err.message, /startAfterBuckets × detector.bucketMs/);
        return true;
      },
    );
  });

  test('SASL without a password is refused; the password is masked when printed', () => {
    assert.throws(
      () => loadConfig({ env: {}, overrides: { kafka: { sasl: { mechanism: 'scram-sha-256', username: 'u' } } } }),
      /TRAILWATCH_KAFKA__SASL__PASSWORD/,
    );
    const c = loadConfig({
      env: { TRAILWATCH_KAFKA__SASL__PASSWORD: 's3cret' },
      overrides: { kafka: { sasl: { mechanism: 'plain', username: 'u' } } },
    });
    assert.equal(c.kafka.sasl?.password, 's3cret');
    assert.equal(redactConfig(c).kafka.sasl?.password, '****');
    assert.doesNotMatch(JSON.stringify(redactConfig(c)), /s3cret/);
  });

  test('a password file is read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tw-config-'));
    const file = join(dir, 'pw');
    writeFileSync(file, 'from-file\n');
    const c = loadConfig({ env: {}, overrides: { registry: { url: 'http://r', username: 'u', passwordFile: file } } });
    assert.equal(c.registry.password, 'from-file');
  });
});
