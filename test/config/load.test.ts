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

  test('kafka.brokers: each host:port, IPv6 in brackets; anything else names the form', () => {
    const brokers = ['localhost:9092', '10.0.0.7:19092', '[::1]:9092', '[fe80::1%eth0]:9093', 'b-1.msk.eu-west-1.amazonaws.com:9098'];
    assert.deepEqual(loadConfig({ env: { KAFKA_BROKERS: brokers.join(',') } }).kafka.brokers, brokers);
    for (const bad of ['nonsense', 'host:0', 'host:65536', ':9092', 'PLAINTEXT://host:9092', 'a b:9092', '::1:9092']) {
      assert.throws(
        () => loadConfig({ env: {}, overrides: { kafka: { brokers: [bad] } } }),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.problems[0] === `kafka.brokers[0]: ${JSON.stringify(bad)} is not host:port (e.g. localhost:9092)`,
        bad,
      );
    }
  });

  test('each problem names where its value came from: the variable, the file and line, or nothing for a flag', () => {
    const problems = (options: Parameters<typeof loadConfig>[0]): string[] => {
      try {
        loadConfig(options);
      } catch (err) {
        if (err instanceof ConfigError) return err.problems;
        throw err;
      }
      assert.fail('the config was accepted');
    };
    assert.deepEqual(problems({ env: { KAFKA_BROKERS: 'nonsense' } }), [
      'KAFKA_BROKERS=nonsense: kafka.brokers[0]: "nonsense" is not host:port (e.g. localhost:9092)',
    ]);
    assert.deepEqual(problems({ env: { KAFKA_BROKERS: 'a:1', TRAILWATCH_KAFKA__BROKERS: 'b:2,nope' } }), [
      'TRAILWATCH_KAFKA__BROKERS=b:2,nope: kafka.brokers[1]: "nope" is not host:port (e.g. localhost:9092)',
    ]);
    const [threshold] = problems({ env: { TRAILWATCH_DETECTOR__SCORE_THRESHOLD: 'abc' } });
    assert.match(threshold ?? '', /^TRAILWATCH_DETECTOR__SCORE_THRESHOLD=abc: detector\.scoreThreshold: /);
    const [spaced] = problems({ env: { TRAILWATCH_DETECTOR__SEASONALITY: 'hour of day' } });
    assert.match(spaced ?? '', /^TRAILWATCH_DETECTOR__SEASONALITY='hour of day': detector\.seasonality: /);

    const dir = mkdtempSync(join(tmpdir(), 'tw-config-'));
    const yaml = join(dir, 'c.yaml');
    writeFileSync(
      yaml,
      [
        'detector:',
        '  scoreThreshold: 3',
        '  minRatio: 1',
        '  suppressions:',
        '    - match: { action: "Run*" }',
        '      reason: r',
        'kafka:',
        '  sasl:',
        '    mechanism: plain',
      ].join('\n'),
    );
    const fromFile = problems({ file: yaml, env: { TRAILWATCH_DETECTOR__MIN_RATIO: '-1' }, overrides: { detector: { topN: 0 } } });
    assert.ok(fromFile.includes(`${yaml}:2: detector.scoreThreshold: Too big: expected number to be <1`), fromFile.join('\n'));
    // Set in the file and again in the environment: the variable's value is the one judged.
    assert.ok(
      fromFile.some((p) => p.startsWith('TRAILWATCH_DETECTOR__MIN_RATIO=-1: detector.minRatio: ')),
      fromFile.join('\n'),
    );
    // A key missing from an object in the file: the line of what should hold it.
    assert.ok(
      fromFile.some((p) => p.startsWith(`${yaml}:5: detector.suppressions[0].author: `)),
      fromFile.join('\n'),
    );
    assert.ok(
      fromFile.some((p) => p.startsWith(`${yaml}:9: kafka.sasl.username: `)),
      fromFile.join('\n'),
    );
    // Overrides are the caller's own (flags, which the CLI checks itself): no source to name.
    assert.ok(
      fromFile.some((p) => p.startsWith('detector.topN: ')),
      fromFile.join('\n'),
    );

    const json = join(dir, 'c.json');
    writeFileSync(json, JSON.stringify({ detector: { bogus: 1 } }));
    assert.deepEqual(problems({ file: json, env: {} }), [`${json}: detector.bogus: unknown key`]);
  });

  test('a secret or a URL password is not printed with its variable', () => {
    const shown = [
      ...(() => {
        try {
          loadConfig({
            env: {
              TRAILWATCH_KAFKA__SASL__PASSWORD: 'hunter2',
              TRAILWATCH_KAFKA__SASL__MECHANISM: 'x',
              SCHEMA_REGISTRY_URL: 'http://u:pw@r',
            },
            overrides: { registry: { username: 'u' } },
          });
        } catch (err) {
          return (err as ConfigError).problems;
        }
        return [];
      })(),
    ].join('\n');
    assert.match(shown, /kafka\.sasl\.mechanism/);
    assert.doesNotMatch(shown, /hunter2/);
    const url = (() => {
      try {
        loadConfig({ env: { TRAILWATCH_DETECTOR__SEASONALITY: 'http://u:pw@r' } });
      } catch (err) {
        return (err as ConfigError).problems.join('\n');
      }
      return '';
    })();
    assert.match(url, /^TRAILWATCH_DETECTOR__SEASONALITY=http:\/\/\*\*\*\*@r: detector\.seasonality: /);
  });

  test('a password file is read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tw-config-'));
    const file = join(dir, 'pw');
    writeFileSync(file, 'from-file\n');
    const c = loadConfig({ env: {}, overrides: { registry: { url: 'http://r', username: 'u', passwordFile: file } } });
    assert.equal(c.registry.password, 'from-file');
  });
});
