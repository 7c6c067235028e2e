import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { PartitionState } from '../../src/observe/health.ts';
import {
  configHash,
  decodeStatus,
  encodeStatus,
  isStale,
  type MemberStatus,
  partitionList,
  statusTable,
} from '../../src/observe/status.ts';

const p = (stage: PartitionState['stage'], partition: number, over: Partial<PartitionState> = {}): PartitionState => ({
  topic: stage === 'principal' ? 'ev' : 'ac',
  partition,
  stage,
  lag: 0,
  restored: true,
  keys: 0,
  openInsights: 0,
  watermarkMs: null,
  ...over,
});

function member(over: Partial<MemberStatus> = {}): MemberStatus {
  return {
    v: 1,
    groupId: 'g',
    memberId: 'host-a:17',
    host: 'host-a',
    pid: 17,
    version: '0.1.0',
    configHash: '0123456789ab',
    configVersion: null,
    startedAtMs: 0,
    publishedAtMs: 100_000,
    intervalMs: 5_000,
    ready: true,
    reasons: [],
    partitions: [p('principal', 0), p('principal', 1), p('principal', 2), p('action', 0), p('action', 2)],
    totals: { lag: 12, keys: 345, openInsights: 2, eventsIn: 1000, lateEvents: 0, deadLetters: 0, insights: 4, findings: 0 },
    ...over,
  };
}

describe('the status record', () => {
  test('round-trips; anything else decodes to null', () => {
    const m = member();
    assert.deepEqual(decodeStatus(Buffer.from(encodeStatus(m))), m);
    assert.equal(decodeStatus(null), null);
    assert.equal(decodeStatus('not json'), null);
    assert.equal(decodeStatus(JSON.stringify({ ...m, v: 2 })), null);
  });

  test('stale after three intervals without a record', () => {
    assert.equal(isStale(member(), 115_000), false);
    assert.equal(isStale(member(), 115_001), true);
  });

  test('partition lists collapse runs', () => {
    assert.equal(partitionList(member().partitions), 'e0-2 a0,2');
    assert.equal(partitionList([]), '-');
  });

  test('the table: a row per member, stale and not-ready marked, reasons below', () => {
    const table = statusTable(
      [
        member(),
        member({ memberId: 'host-b:9', ready: false, reasons: ['ev:1: 20000 records behind'], totals: { ...member().totals, lag: null } }),
        member({ memberId: 'host-c:3', publishedAtMs: 0 }),
      ],
      101_000,
    );
    const lines = table.split('\n');
    assert.match(lines[0] ?? '', /^GROUP\s+MEMBER\s+STATE\s+PARTITIONS\s+LAG\s+KEYS\s+OPEN\s+CONFIG\s+SEEN$/);
    assert.match(lines[1] ?? '', /^g\s+host-a:17\s+ready\s+e0-2 a0,2\s+12\s+345\s+2\s+0123456789ab\s+1s ago$/);
    assert.match(lines[2] ?? '', /^g\s+host-b:9\s+not ready\s+.*\s+\?\s+345/);
    assert.match(lines[3] ?? '', /^g\s+host-c:3\s+stale\s+.*2m ago$/);
    assert.match(table, /not ready:\n {2}host-b:9: ev:1: 20000 records behind/);
  });

  test('the config hash follows the detection settings only, whatever the key order', () => {
    const a = loadConfig({ env: {}, overrides: { detector: { scoreThreshold: 0.7, bucketMs: 60_000 } } });
    const b = loadConfig({
      env: {},
      overrides: { kafka: { brokers: ['elsewhere:9092'] }, detector: { bucketMs: 60_000, scoreThreshold: 0.7 } },
    });
    const c = loadConfig({ env: {}, overrides: { detector: { scoreThreshold: 0.8 } } });
    assert.match(configHash(a), /^[0-9a-f]{12}$/);
    assert.equal(configHash(a), configHash(b));
    assert.notEqual(configHash(a), configHash(c));
  });
});
