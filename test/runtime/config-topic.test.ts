/**
 * The config topic against the real broker: versions written and read back, concurrent writers
 * landing one version apart, a lost race repaired so compaction keeps the winner, and a follower
 * that applies the latest version, and starts without the broker (keeping its own config).
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { LiveConfig } from '../../src/config/live.ts';
import { loadConfig } from '../../src/config/load.ts';
import {
  type ConfigDocument,
  type ConfigRecord,
  documentOf,
  encodeConfigRecord,
  newConfigRecord,
  sha256,
  versionKey,
} from '../../src/config/record.ts';
import type { Config } from '../../src/config/schema.ts';
import { createLogger } from '../../src/logger.ts';
import { ConfigTopicFollower, readConfigHistory, type VersionDraft, writeConfigVersion } from '../../src/runtime/config-topic.ts';
import { createTransport } from '../../src/transport/index.ts';
import { readToEnd } from '../../src/transport/read-to-end.ts';
import { testLogger } from '../helpers/detector.ts';
import { testKafka, uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

const topicsMade: string[] = [];
let brokers: string[] = [];

after(async () => {
  if (topicsMade.length === 0) return;
  const admin = testKafka(brokers, 'trailwatch-test-cleanup').admin();
  try {
    await admin.connect();
    const existing = new Set(await admin.listTopics());
    await admin.deleteTopics({ topics: topicsMade.filter((t) => existing.has(t)), timeout: 10_000 });
  } catch {
    // best effort: the names are unique
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
});

async function testConfig(over: Record<string, unknown> = {}): Promise<Config> {
  const stack = await testStack();
  brokers = stack.brokers;
  const topic = uniqueName('tw-config-topic');
  topicsMade.push(topic);
  return loadConfig({
    env: {},
    overrides: { kafka: { brokers: stack.brokers }, registry: { url: stack.registryUrl }, topics: { config: topic }, ...over },
  });
}

const draftOf = (config: Config, author: string, message: string): VersionDraft => ({
  author,
  message,
  source: 'test.yaml',
  sha256: sha256(`${author}:${message}`),
  document: documentOf(config),
});

describe('the config topic', { timeout: 180_000 }, () => {
  test('versions are written 1, 2, … and read back in full; equal settings can be skipped by the draft', async () => {
    const config = await testConfig();
    const transport = createTransport(config.kafka, testLogger);
    assert.equal((await readConfigHistory(transport, config.topics.config)).exists, false);
    const first = await writeConfigVersion(transport, config, () => draftOf(config, 'alice', 'first'));
    assert.equal(first.written?.version, 1);
    assert.equal(first.previous, null);
    const tuned = loadConfig({ env: {}, overrides: { detector: { scoreThreshold: 0.75 } } });
    const second = await writeConfigVersion(transport, config, () => draftOf(tuned, 'bob', 'raise'));
    assert.equal(second.written?.version, 2);
    assert.equal(second.previous?.version, 1);
    const skipped = await writeConfigVersion(transport, config, (latest) => (latest?.author === 'bob' ? null : draftOf(config, 'x', 'y')));
    assert.equal(skipped.written, null);
    const { exists, history } = await readConfigHistory(transport, config.topics.config);
    assert.equal(exists, true);
    assert.deepEqual(
      history.list().map((r) => [r.version, r.author, r.message]),
      [
        [2, 'bob', 'raise'],
        [1, 'alice', 'first'],
      ],
    );
    assert.equal(history.get(2)?.document.detector.scoreThreshold, 0.75);
    // The topic is one partition, compacted: every version is kept as long as the topic is.
    const admin = await transport.admin();
    try {
      assert.equal((await admin.topicOffsets(config.topics.config)).length, 1);
      assert.equal((await admin.describeTopicConfigs(config.topics.config, ['cleanup.policy']))['cleanup.policy'], 'compact');
    } finally {
      await admin.close();
    }
  });

  test('two writers at once both land, one version apart', async () => {
    const config = await testConfig();
    const transport = createTransport(config.kafka, testLogger);
    const [a, b] = await Promise.all([
      writeConfigVersion(transport, config, () => draftOf(config, 'a', 'from a')),
      writeConfigVersion(transport, config, () => draftOf(config, 'b', 'from b')),
    ]);
    assert.deepEqual([a.written?.version, b.written?.version].sort(), [1, 2]);
    const { history } = await readConfigHistory(transport, config.topics.config);
    assert.deepEqual(
      history
        .list()
        .map((r) => r.author)
        .sort(),
      ['a', 'b'],
    );
  });

  test('a writer that loses a version to another puts the winner back under the key and writes one version up', async () => {
    const config = await testConfig();
    const transport = createTransport(config.kafka, testLogger);
    await writeConfigVersion(transport, config, () => draftOf(config, 'alice', 'v1'));
    let rival: ConfigRecord | null = null;
    const producer = transport.producer();
    await producer.connect();
    const result = await writeConfigVersion(transport, config, async (latest) => {
      if (rival === null) {
        // Another writer takes version 2 between this writer's read and its write.
        rival = newConfigRecord({
          ...draftOf(config, 'rival', 'sneaked in'),
          version: (latest?.version ?? 0) + 1,
          appliedAt: new Date().toISOString(),
        });
        await producer.send([{ topic: config.topics.config, key: versionKey(rival.version), value: encodeConfigRecord(rival) }]);
      }
      return draftOf(config, 'bob', 'mine');
    });
    await producer.close();
    assert.ok(rival);
    const won = rival as ConfigRecord;
    assert.deepEqual(
      result.lostRaces.map((r) => r.writeId),
      [won.writeId],
    );
    assert.equal(result.written?.version, 3);
    const { history } = await readConfigHistory(transport, config.topics.config);
    assert.equal(history.get(2)?.author, 'rival', 'the first record of a version wins');
    assert.equal(history.get(3)?.author, 'bob');
    // The last record under key 2, which compaction keeps, is the winner's again.
    const underKey2: string[] = [];
    await readToEnd(transport, {
      topic: config.topics.config,
      timeoutMs: 30_000,
      groupPrefix: 'tw-test-config',
      onRecord: (r) => {
        if (r.key?.toString() === versionKey(2)) underKey2.push((JSON.parse(String(r.value)) as ConfigRecord).author);
      },
    });
    assert.deepEqual(underKey2, ['rival', 'bob', 'rival']);
  });

  test('a follower applies the latest version, and each new one, to its LiveConfig', async () => {
    const config = await testConfig();
    const transport = createTransport(config.kafka, testLogger);
    const live = new LiveConfig(config);
    const applied: Array<number | null> = [];
    live.onChange((_, v) => applied.push(v.version));
    const tuned = (t: number): ConfigDocument => documentOf(loadConfig({ env: {}, overrides: { detector: { scoreThreshold: t } } }));
    await writeConfigVersion(transport, config, () => ({ ...draftOf(config, 'a', 'one'), document: tuned(0.65) }));
    await writeConfigVersion(transport, config, () => ({ ...draftOf(config, 'a', 'two'), document: tuned(0.7) }));
    const follower = new ConfigTopicFollower({ transport, base: config, live, logger: testLogger, pollMs: 300 });
    await follower.start(30_000);
    after(() => follower.stop());
    assert.equal(live.version.version, 2, 'at start: the latest version, not each one');
    assert.equal(live.detector.scoreThreshold, 0.7);
    // A version this member cannot take (minHistoryMs over its baseline window) is refused; the running one stays.
    const invalid = { ...tuned(0.7), detector: { ...tuned(0.7).detector, minHistoryMs: config.detector.baselineWindowMs + 1 } };
    await writeConfigVersion(transport, config, () => ({ ...draftOf(config, 'a', 'bad'), document: invalid }));
    await writeConfigVersion(transport, config, () => ({ ...draftOf(config, 'a', 'four'), document: tuned(0.8) }));
    const current = () => live.version.version;
    for (let i = 0; i < 200 && current() !== 4; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(live.version.version, 4);
    assert.equal(live.detector.scoreThreshold, 0.8);
    assert.deepEqual(applied, [2, 4]);
  });

  test('a follower whose broker cannot be reached starts on its own config and does not throw', async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'info', destination: { write: (l: string) => lines.push(l) } });
    const config = loadConfig({
      env: {},
      overrides: {
        kafka: { brokers: ['127.0.0.1:1'], initialConnectTimeoutMs: 1_000, connectionTimeoutMs: 500 },
        topics: { config: 'tw-unreachable' },
      },
    });
    const live = new LiveConfig(config);
    const follower = new ConfigTopicFollower({
      transport: createTransport(config.kafka, logger),
      base: config,
      live,
      logger,
      pollMs: 60_000,
    });
    await follower.start(5_000);
    await follower.stop();
    assert.equal(live.version.version, null);
    assert.equal(live.detector.scoreThreshold, config.detector.scoreThreshold);
    assert.ok(
      lines.some((l) => /cannot read the config topic|config topic not read yet/.test(l)),
      `a warning that the config topic is out of reach:\n${lines.join('')}`,
    );
  });
});
