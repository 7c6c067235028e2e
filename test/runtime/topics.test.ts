import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import {
  createdTopicConfig,
  MIN_SAFE_RETENTION_MS,
  retentionRisks,
  retentionWarning,
  type TopicRetention,
} from '../../src/runtime/topics.ts';

const safe: TopicRetention = {
  topic: 'audit',
  partitions: 3,
  retentionMs: 7 * 86_400_000,
  retentionBytes: -1,
  cleanupPolicy: 'delete',
  timestampType: 'CreateTime',
};

describe('topic retention', () => {
  test('topics trailwatch creates carry their retention from the config', () => {
    const { topics } = loadConfig({ env: {}, overrides: { topics: { eventsRetentionMs: 123_000_000, alertsRetentionMs: -1 } } });
    assert.deepEqual(createdTopicConfig(topics, topics.events), [{ name: 'retention.ms', value: '123000000' }]);
    assert.deepEqual(createdTopicConfig(topics, topics.alerts), [{ name: 'retention.ms', value: '-1' }]);
    assert.deepEqual(createdTopicConfig(topics, topics.deadLetter), [{ name: 'retention.ms', value: String(30 * 86_400_000) }]);
    assert.deepEqual(createdTopicConfig(topics, 'something-else'), []);
  });

  test('the events retention defaults to a week and refuses 0', () => {
    assert.equal(loadConfig({ env: {} }).topics.eventsRetentionMs, 7 * 86_400_000);
    assert.throws(() => loadConfig({ env: {}, overrides: { topics: { eventsRetentionMs: 0 } } }), /eventsRetentionMs/);
  });

  test('a week, no size limit, delete policy: nothing to warn about, whatever the timestamp type', () => {
    assert.deepEqual(retentionRisks(safe, 10 ** 9), []);
    assert.deepEqual(retentionRisks({ ...safe, retentionMs: -1, timestampType: 'LogAppendTime' }, 10 ** 9), []);
    assert.deepEqual(retentionRisks({ ...safe, retentionMs: MIN_SAFE_RETENTION_MS }), []);
  });

  test('retention under a day, compaction and a size limit below this run are risks', () => {
    assert.match(retentionRisks({ ...safe, retentionMs: 3_600_000 }).join(), /retention\.ms=3600000 \(1 h\)/);
    assert.match(retentionRisks({ ...safe, cleanupPolicy: 'compact,delete' }).join(), /cleanup\.policy=compact,delete/);
    assert.deepEqual(retentionRisks({ ...safe, retentionBytes: 1000 }), [], 'bytes unknown yet: no guess');
    assert.deepEqual(retentionRisks({ ...safe, retentionBytes: 1000 }, 999), []);
    assert.match(retentionRisks({ ...safe, retentionBytes: 1000 }, 1001).join(), /retention\.bytes=1000 per partition/);
  });

  test('the warning names the topic, its settings and both fixes', () => {
    const r = { ...safe, retentionMs: 60_000, cleanupPolicy: 'compact' };
    const line = retentionWarning(r, retentionRisks(r), ['broker:9092']);
    assert.match(line, /^warning: topic audit /);
    assert.match(line, /retention\.ms=60000, retention\.bytes=-1/);
    assert.match(
      line,
      /kafka-configs --bootstrap-server broker:9092 --alter --entity-type topics --entity-name audit --add-config retention\.ms=\d+/,
    );
    assert.match(line, /cleanup\.policy=delete/);
    assert.match(line, /new topic/);
    assert.doesNotMatch(line, /\n/);
  });
});
