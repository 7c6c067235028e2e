import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { configSchema, type FindingsConfig } from '../../src/config/schema.ts';
import type { AuditEvent, Finding } from '../../src/contracts/types.ts';
import { FindingOverrides, type FindingTuning, findingSubjectOf, findingTuningOf } from '../../src/detect/finding-overrides.ts';
import { type FindingSetup, FindingStage, findingSetupOf } from '../../src/detect/findings.ts';
import { RuleSet } from '../../src/detect/rules/evaluate.ts';
import { loadRules } from '../../src/detect/rules/load.ts';
import { auditEvent } from '../helpers/events.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const T0 = Date.UTC(2026, 10, 2);
const DEPLOYER = 'arn:aws:sts::111122223333:assumed-role/deployer';
const BOB = 'arn:aws:iam::111122223333:user/bob';

/** Rules only (first-seen and breadth off), with the given findings tuning. */
function findingsConfig(tuning: Partial<FindingTuning> = {}): FindingsConfig {
  return configSchema.parse({ findings: { firstSeen: { enabled: false }, breadth: { enabled: false }, ...tuning } }).findings;
}

const held: Array<[string, string]> = [];

/** The StopLogging rule (tw-stop-logging, "CloudTrail logging stopped", high) as `run` loads it. */
async function setupWith(findings: FindingsConfig): Promise<FindingSetup> {
  const loaded = await loadRules([join(import.meta.dirname, '../fixtures/rules/stop-logging.json')]);
  assert.deepEqual(loaded.problems, []);
  return { ...findingSetupOf(new RuleSet(loaded.rules), findings, 'trailwatch.findings'), onHeld: (kind, why) => held.push([kind, why]) };
}

let seq = 0;
function stopLogging(at: number, principal = DEPLOYER): AuditEvent {
  return auditEvent({ eventId: `sl-${seq++}`, eventTimeMs: at, service: 'cloudtrail.amazonaws.com', action: 'StopLogging', principal });
}

const iso = (ms: number) => new Date(ms).toISOString();
const principals = (fs: Finding[]) => fs.map((f) => f.actor?.user.uid);

describe('FindingOverrides', () => {
  test('the most specific override wins; `rule` globs the analytic id or its name', async () => {
    const stage = FindingStage.create(await setupWith(findingsConfig()));
    const [f] = stage.process([stopLogging(T0)]);
    assert.ok(f);
    const subject = findingSubjectOf(f);
    assert.deepEqual(subject.rule, ['tw-stop-logging', 'CloudTrail logging stopped']);
    assert.equal(subject.kind, 'rule');
    assert.equal(subject.service, 'cloudtrail.amazonaws.com');
    const tuning = new FindingOverrides(
      findingsConfig({
        overrides: [
          { match: { rule: 'tw-*' }, severity: 'medium' },
          { match: { rule: 'CloudTrail logging*', principal: '*:assumed-role/deployer' }, severity: 'low' },
          { match: { kind: 'first-seen' }, enabled: false },
          { match: { rule: 'tw-stop-logging', principal: '*user/bob' }, enabled: false },
        ],
      }),
    );
    assert.equal(tuning.matchIndex(subject), 1, 'two fields beat one');
    assert.equal(tuning.matchIndex({ ...subject, principal: BOB }), 3);
    assert.equal(tuning.matchIndex({ ...subject, principal: 'someone-else' }), 0);
    assert.equal(tuning.matchIndex({ ...subject, rule: ['other'], kind: 'breadth' }), -1);
  });

  test('severity replaces severity_id and severity together; the rest of the finding is unchanged', async () => {
    const stage = FindingStage.create(await setupWith(findingsConfig()));
    const [f] = stage.process([stopLogging(T0)]);
    assert.ok(f);
    assert.equal(f.severity_id, 4);
    const j = new FindingOverrides(findingsConfig({ overrides: [{ match: { rule: 'tw-stop-logging' }, severity: 'critical' }] })).judge(f);
    assert.equal(j.held, null);
    assert.equal(j.finding?.severity_id, 5);
    assert.equal(j.finding?.severity, 'Critical');
    assert.deepEqual({ ...j.finding, severity_id: 4, severity: 'High' }, f);
  });
});

describe('FindingStage with findings overrides and suppressions', () => {
  test('enabled: false drops the finding, counted by kind; others go out', async () => {
    held.length = 0;
    const c = findingsConfig({ overrides: [{ match: { rule: 'tw-stop-logging', principal: '*:user/bob' }, enabled: false }] });
    const stage = FindingStage.create(await setupWith(c));
    const out = stage.process([stopLogging(T0), stopLogging(T0 + MINUTE, BOB)]);
    assert.deepEqual(principals(out), [DEPLOYER]);
    assert.equal(stage.counters.disabled, 1);
    assert.equal(stage.counters.suppressed, 0);
    assert.deepEqual(held, [['rule', 'disabled']]);
  });

  test('an override’s severity is what goes out', async () => {
    const stage = FindingStage.create(await setupWith(findingsConfig({ overrides: [{ match: { kind: 'rule' }, severity: 'low' }] })));
    const [f] = stage.process([stopLogging(T0)]);
    assert.equal(f?.severity_id, 2);
    assert.equal(f?.severity, 'Low');
  });

  test('a suppression holds back findings whose event time is before its expiry, then stops applying by itself', async () => {
    held.length = 0;
    const expires = T0 + 3 * HOUR;
    const c = findingsConfig({
      suppressions: [{ match: { rule: 'tw-stop-logging' }, reason: 'trail migration', author: 'sre', expires: iso(expires) }],
    });
    const stage = FindingStage.create(await setupWith(c));
    // One per hour window (each a Create); the third hour's is still before the expiry.
    const before = [0, 1, 2].flatMap((h) => stage.process([stopLogging(T0 + h * HOUR + 10 * MINUTE)]));
    assert.deepEqual(before, []);
    assert.equal(stage.counters.suppressed, 3);
    assert.deepEqual(held, [
      ['rule', 'suppressed'],
      ['rule', 'suppressed'],
      ['rule', 'suppressed'],
    ]);
    // Event time at or past the expiry: reported, whatever the wall clock says.
    const after = stage.process([stopLogging(expires), stopLogging(expires + 10 * MINUTE, BOB)]);
    assert.deepEqual(principals(after), [DEPLOYER, BOB]);
    assert.equal(stage.counters.suppressed, 3);
  });

  test('a suppression whose expiry is before the events applies no more; a replay of the same events judges alike', async () => {
    const c = findingsConfig({
      suppressions: [{ match: { principal: '*deployer' }, reason: 'done', author: 'sre', expires: iso(T0 - HOUR) }],
    });
    const events = [stopLogging(T0), stopLogging(T0 + HOUR + MINUTE)];
    const run = async () => FindingStage.create(await setupWith(c)).process(events);
    const first = await run();
    assert.deepEqual(principals(first), [DEPLOYER, DEPLOYER]);
    assert.deepEqual(await run(), first);
  });

  test('a retune mid-stream applies from the next finding on; state (folds) is kept whatever the tuning', async () => {
    const stage = FindingStage.create(await setupWith(findingsConfig()));
    assert.equal(stage.process([stopLogging(T0 + 10 * MINUTE)]).length, 1);
    const suppress: FindingTuning = findingTuningOf(
      findingsConfig({
        suppressions: [{ match: { principal: '*deployer' }, reason: 'incident drill', author: 'sre', expires: iso(T0 + 3 * HOUR) }],
      }),
    );
    stage.retune(suppress);
    // Repeats in the open hour fold; its Update when the hour closes is held back, and a new hour's Create too.
    assert.deepEqual(stage.process([stopLogging(T0 + 20 * MINUTE), stopLogging(T0 + 30 * MINUTE)]), []);
    assert.deepEqual(stage.process([stopLogging(T0 + HOUR + 10 * MINUTE)]), []);
    assert.deepEqual(stage.advance(T0 + HOUR + MINUTE), []);
    assert.equal(stage.counters.suppressed, 2, 'the second hour’s Create and the first hour’s Update');
    // Back to no tuning: the second hour's repeats come out as its Update when it closes.
    stage.retune({ overrides: [], suppressions: [] });
    stage.process([stopLogging(T0 + HOUR + 20 * MINUTE)]);
    const closed = stage.advance(T0 + 2 * HOUR + MINUTE);
    assert.deepEqual(
      closed.map((f) => `${f.activity_name}:${f.count}`),
      ['Update:2'],
    );
  });
});
