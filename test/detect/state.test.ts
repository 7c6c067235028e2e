import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { DetectorConfig } from '../../src/config/schema.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { DEMO_SPIKE_ACTOR, generateTraffic } from '../../src/demo/traffic.ts';
import { DetectionEngine, modFloor, remainder } from '../../src/detect/engine.ts';
import { decodeKey, type KeyRecord, keyId } from '../../src/detect/state.ts';
import { ActionStage, PrincipalStage } from '../../src/detect/topology.ts';

const T0 = Date.UTC(2026, 0, 5);

function detector(over: Partial<DetectorConfig> = {}): DetectorConfig {
  return loadConfig({ env: {}, overrides: { detector: { allowedLatenessMs: 60_000, minHistoryMs: 30 * 60_000, ...over } } }).detector;
}

/** Demo traffic with a spike and an error storm, so keys carry streaks, pending buckets and every sketch. */
function traffic(): AuditEvent[] {
  return generateTraffic({
    seed: 7,
    startMs: T0,
    minutes: 180,
    spikes: [
      { actor: DEMO_SPIKE_ACTOR, startMinute: 120, minutes: 6 },
      {
        actor: { ...DEMO_SPIKE_ACTOR, action: 'TerminateInstances', errorCode: 'UnauthorizedOperation', ratePerMinute: 25 },
        startMinute: 150,
        minutes: 3,
      },
    ],
  });
}

const byId = (records: KeyRecord[]) => [...records].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

describe('key encoding', () => {
  for (const [name, over] of [
    ['defaults', {}],
    ['no hourly profile', { seasonality: 'none' }],
    ['top 2', { topN: 2 }],
  ] as Array<[string, Partial<DetectorConfig>]>) {
    test(`every drained key decodes to the record a snapshot holds (${name})`, () => {
      const cfg = detector(over);
      const stage = PrincipalStage.create(cfg, 0, { trackChanges: true });
      const action = ActionStage.create(cfg, 0, 1, { trackChanges: true });
      const events = traffic();
      let streaks = 0;
      let pending = 0;
      let forward = 0;
      for (let i = 0; i < events.length; i += 500) {
        const out = stage.process(events.slice(i, i + 500));
        action.ingest([...out.partials.map((partial) => ({ kind: 'partial' as const, partial })), { kind: 'marker', marker: out.marker }]);
        for (const engine of [stage.engine, action.engine]) {
          const changes = engine.drainChanges();
          const live = new Map(engine.snapshot().keys.map((k) => [k.id, k]));
          // In order, as a compacted changelog keeps them: the latest value of a key wins.
          for (const [id, encoded] of new Map(changes.keys)) {
            if (encoded === null) {
              assert.equal(live.has(id), false);
              continue;
            }
            const decoded = decodeKey(encoded);
            assert.deepEqual(decoded, live.get(id), id);
            if (decoded.streak) streaks++;
            if (decoded.pending) pending++;
            if (decoded.forward) forward++;
          }
        }
      }
      assert.ok(streaks > 0 && pending > 0 && forward > 0, `${streaks} streaks, ${pending} pending, ${forward} forwarded`);
    });
  }

  test('a checkpoint written as JSON records (the format before) restores the same engine', () => {
    const cfg = detector();
    const engine = new DetectionEngine(cfg);
    const events = traffic();
    engine.process(events.slice(0, 20_000));
    const snapshot = engine.snapshot();
    const restored = DetectionEngine.fromCheckpoint(
      cfg,
      engine.meta(),
      snapshot.keys.map((k) => JSON.stringify(k)),
      snapshot.seen,
    );
    assert.deepEqual(byId(restored.snapshot().keys), byId(snapshot.keys));
    assert.deepEqual(restored.process(events.slice(20_000)), engine.process(events.slice(20_000)));
  });

  test('keyId: what a key measures and where', () => {
    assert.equal(
      keyId('action', 'ApiCallRateInsight', '1', 'eu-west-1', 'arn:p', 's3.amazonaws.com', 'GetObject', null),
      'action|call|1|eu-west-1|s3.amazonaws.com|GetObject',
    );
    assert.equal(
      keyId('principalAction', 'ApiErrorRateInsight', '1', 'eu-west-1', 'arn:p', 's3.amazonaws.com', 'GetObject', 'AccessDenied'),
      'principalAction|error|1|arn:p|s3.amazonaws.com|GetObject|AccessDenied',
    );
  });
});

describe('checkpoints written before the rate detector v2', () => {
  test('a k2 value (variances, no sustained-shift runs) decodes, and restores with its variance as a dispersion', () => {
    const cfg = detector({});
    const stage = PrincipalStage.create(cfg, 0, { trackChanges: true });
    stage.process(traffic().slice(0, 3_000));
    const [id, encoded] = stage.engine.drainChanges().keys.find(([, v]) => v !== null) as [string, string];
    // The same key as the k2 format wrote it: 12 fixed numbers, a variance where the dispersion is now.
    const split = encoded.indexOf(':', 3);
    const doubles = Buffer.from(encoded.slice(3, split), 'base64');
    const variance = 6;
    doubles.writeDoubleLE(variance, 3 * 8);
    doubles.writeDoubleLE(variance, 4 * 8);
    const k2 = `k2:${Buffer.concat([doubles.subarray(0, 12 * 8), doubles.subarray(23 * 8)]).toString('base64')}${encoded.slice(split)}`;
    const legacy = decodeKey(k2);
    const current = decodeKey(encoded);
    assert.equal(legacy.id, id);
    assert.equal(legacy.variance, variance);
    assert.equal(legacy.dispersion, undefined);
    assert.deepEqual(legacy.hourly, current.hourly);
    assert.deepEqual(legacy.baselineContributors, current.baselineContributors);
    const restored = DetectionEngine.restore(cfg, { ...stage.engine.snapshot(), keys: [legacy] });
    const back = restored.snapshot().keys[0] as KeyRecord;
    assert.equal(back.dispersion, variance / Math.max(legacy.mean, 0.05));
    assert.deepEqual(back.cusum?.slice(0, 10), new Array(10).fill(0));
  });
});

describe('modFloor and remainder', () => {
  test('equal the % they replace, for event times, negatives and fractions', () => {
    let x = 12345;
    const next = () => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x / 2 ** 31;
    };
    const cases = [0, -1, 1, 86_400_000, -86_400_000, 2 ** 53 - 1, -(2 ** 53) + 1, 0.5, -0.5, 1.5e12 + 0.25];
    for (let i = 0; i < 20_000; i++) {
      const t = Math.floor((next() - 0.3) * 4e12);
      cases.push(t, Math.floor(t / 60_000) * 60_000, t + next());
    }
    for (const b of [60_000, 3_600_000, 86_400_000, 7]) {
      for (const a of cases) {
        assert.equal(modFloor(a, b), ((a % b) + b) % b, `${a} mod ${b}`);
        assert.equal(remainder(a, b), a % b, `${a} % ${b}`);
      }
    }
  });
});
