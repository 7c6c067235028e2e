import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { contentHash, LiveConfig, tuningOf } from '../../src/config/live.ts';
import { loadConfig } from '../../src/config/load.ts';
import { ConfigHistory, configWithDocument, documentOf, encodeConfigRecord, newConfigRecord, versionKey } from '../../src/config/record.ts';
import type { Config } from '../../src/config/schema.ts';
import type { AuditEvent, Insight } from '../../src/contracts/types.ts';
import { DetectionEngine } from '../../src/detect/engine.ts';
import { auditEvent } from '../helpers/events.ts';

const T0 = Date.UTC(2026, 0, 5, 0, 0, 0);
const MINUTE = 60_000;
const PRINCIPAL = 'arn:aws:sts::111122223333:assumed-role/svc-orders';

function member(over: Record<string, unknown> = {}): Config {
  return loadConfig({ env: {}, overrides: { detector: { scopes: { action: false, principalAction: true }, ...over } } });
}

describe('LiveConfig and config topic versions', () => {
  test('findings overrides and suppressions change live; other findings settings need a restart', () => {
    const live = new LiveConfig(member());
    const suppressions = [{ match: { kind: 'breadth' as const }, reason: 'pen test', author: 'sre', expires: '2999-01-01T00:00:00Z' }];
    const next = loadConfig({
      env: {},
      overrides: {
        detector: { scopes: { action: false, principalAction: true } },
        findings: { foldMs: 600_000, overrides: [{ match: { rule: 'tw-*' }, severity: 'low' }], suppressions },
      },
    });
    const result = live.apply(next, 'b'.repeat(64));
    assert.equal(result.applied, true);
    assert.deepEqual(result.needsRestart, ['findings.foldMs']);
    assert.deepEqual(live.config.findings.suppressions, suppressions);
    assert.equal(live.config.findings.overrides[0]?.severity, 'low');
    assert.equal(live.config.findings.foldMs, member().findings.foldMs, 'kept until a restart');
  });

  test('a version is applied once, with its number; the same content as a new version still changes the version', () => {
    const base = member();
    const live = new LiveConfig(base, contentHash('file'));
    assert.equal(live.version.version, null);
    const seen: Array<number | null> = [];
    live.onChange((_, v) => seen.push(v.version));
    const v1 = member({ scoreThreshold: 0.7 });
    assert.equal(live.apply(v1, 'a'.repeat(64), 1).applied, true);
    assert.equal(live.version.id, `v1-${'a'.repeat(12)}`);
    assert.equal(live.detector.scoreThreshold, 0.7);
    assert.equal(live.apply(v1, 'a'.repeat(64), 1).applied, false, 'the version in force again: nothing');
    assert.equal(live.apply(v1, 'a'.repeat(64), 2).applied, true, 'a new version of the same content: Insights name it');
    assert.deepEqual(seen, [1, 2]);
  });
});

/** One principal's PutItem at 10 a minute, 300 a minute for 3 minutes at each spike minute. */
function traffic(minute: number, spikes: number[]): AuditEvent[] {
  const n = spikes.some((s) => minute >= s && minute < s + 3) ? 300 : 10;
  return Array.from({ length: n }, (_, i) =>
    auditEvent({ eventId: `e${minute}-${i}`, eventTimeMs: T0 + minute * MINUTE + i, principal: PRINCIPAL, action: 'PutItem' }),
  );
}

describe('a suppression applied as a version', () => {
  test('keeps the key back until its expiry in event time, then stops applying by itself', () => {
    // A member on its file config, with burstMargin 0 so a second spike of the key is judged as the first.
    const base = member({ burstMargin: 0 });
    const live = new LiveConfig(base);
    const engine = new DetectionEngine(live.detector);
    live.onChange((config) => engine.retune(tuningOf(config.detector)));

    // Version 1 on the topic: the key suppressed until minute 200 of event time.
    const expires = new Date(T0 + 200 * MINUTE).toISOString();
    const tuned = member({
      burstMargin: 0,
      suppressions: [{ match: { action: 'PutItem', principal: '*svc-orders' }, reason: 'load test', author: 'sre', expires }],
    });
    const history = new ConfigHistory();
    const record = newConfigRecord({
      version: 1,
      appliedAt: new Date(T0).toISOString(),
      author: 'sre',
      message: 'load test',
      source: 'load-test.yaml',
      sha256: 'b'.repeat(64),
      document: documentOf(tuned),
    });
    history.add(versionKey(1), encodeConfigRecord(record));
    const latest = history.latest();
    assert.ok(latest);
    const { config } = configWithDocument(base, latest.document);
    assert.ok(config);

    const insights: Insight[] = [];
    const spikes = [150, 240];
    for (let m = 0; m < 280; m++) {
      // Taken at a batch boundary, as the runtime does, before the first spike.
      if (m === 100) live.apply(config, latest.sha256, latest.version);
      insights.push(...engine.process(traffic(m, spikes), T0 + m * MINUTE));
    }
    const starts = insights.filter((i) => i.insightDetails.state === 'Start').map((i) => i.trailwatch.startTimeMs);
    assert.deepEqual(starts, [T0 + 240 * MINUTE], 'the spike before the expiry is kept back, the one after reported');
    assert.equal(engine.insightsSuppressed, 2, 'the first spike’s Start and End');
  });
});
