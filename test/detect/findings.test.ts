import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type Config, configSchema, type DetectorConfig, type FindingsConfig } from '../../src/config/schema.ts';
import type { AuditEvent, Finding } from '../../src/contracts/types.ts';
import { type FindingSetup, findingSetupOf } from '../../src/detect/findings.ts';
import { RuleSet } from '../../src/detect/rules/evaluate.ts';
import { loadRules } from '../../src/detect/rules/load.ts';
import { PrincipalStage, Topology } from '../../src/detect/topology.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 10, 2); // a Monday

function config(over: Partial<{ findings: unknown; detector: unknown }> = {}): Config {
  return configSchema.parse(over);
}

let seq = 0;
function event(at: number, action: string, over: Partial<AuditEvent> & { service?: string } = {}): AuditEvent {
  return {
    eventId: `e-${seq++}`,
    eventTimeMs: at,
    source: 'aws.cloudtrail',
    accountId: '111122223333',
    region: 'eu-west-1',
    principal: 'arn:aws:sts::111122223333:assumed-role/deployer',
    principalType: 'AssumedRole',
    service: 'ec2.amazonaws.com',
    action,
    readOnly: false,
    errorCode: null,
    sourceIp: '198.51.100.7',
    userAgent: 'aws-cli/2',
    attributes: {},
    raw: null,
    ...over,
  };
}

/** A StopLogging rule and a correlation fixture, as `run` loads them. */
async function setupWith(findings: FindingsConfig, withCorrelation = false): Promise<FindingSetup> {
  const paths = [join(import.meta.dirname, '../fixtures/rules/stop-logging.json')];
  if (withCorrelation) paths.push(join(import.meta.dirname, '../fixtures/sigma/correlation-console-brute-force.yml'));
  const loaded = await loadRules(paths);
  assert.deepEqual(loaded.problems, []);
  return findingSetupOf(new RuleSet(loaded.rules), findings, 'trailwatch.findings', loaded.correlations);
}

function stopLogging(at: number, principal = 'arn:aws:sts::111122223333:assumed-role/deployer'): AuditEvent {
  return event(at, 'StopLogging', { service: 'cloudtrail.amazonaws.com', principal });
}

const kinds = (fs: Finding[]) => fs.map((f) => `${f.finding_info.types[0]}:${f.activity_name}:${f.count}`);

/** Seeded traffic: 3 workload roles over 4 days, with StopLogging repeats, new actions and a burst of enumeration, in batches of 7 minutes. */
function seededTraffic(): AuditEvent[][] {
  let state = 7;
  const rand = () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const principals = ['a', 'b', 'c'].map((n) => `arn:aws:sts::111122223333:assumed-role/app-${n}`);
  const batches: AuditEvent[][] = [];
  for (let m = 0; m < 4 * 24 * 60; m += 7) {
    const batch: AuditEvent[] = [];
    for (const principal of principals) {
      if (rand() < 0.3)
        batch.push(
          event(T0 + m * MINUTE + Math.floor(rand() * 60_000), `Describe${Math.floor(rand() * 4)}`, {
            principal,
            principalType: 'AssumedRole',
          }),
        );
      if (m > 3 * 24 * 60 && rand() < 0.1) batch.push(stopLogging(T0 + m * MINUTE, principal));
      if (m > 3 * 24 * 60 && rand() < 0.01)
        batch.push(event(T0 + m * MINUTE, `New${Math.floor(rand() * 50)}`, { principal, principalType: 'AssumedRole' }));
    }
    if (m === 660 * 7)
      // day 3, 05:00
      for (let i = 0; i < 25; i++)
        batch.push(event(T0 + m * MINUTE + i * 1000, `List${i}`, { principal: principals[0] as string, principalType: 'AssumedRole' }));
    batch.sort((x, y) => x.eventTimeMs - y.eventTimeMs);
    batches.push(batch);
  }
  return batches;
}

const findingConfig = () => config({ findings: { firstSeen: { learningMs: 2 * DAY, groupMs: 5 * MINUTE }, breadth: { learningMs: DAY } } });

describe('FindingStage', () => {
  test('repeats of one rule by one principal fold: a Create at once, one Update with the count when the window closes', async () => {
    const c = config({ findings: { firstSeen: { enabled: false }, breadth: { enabled: false } } });
    const stage = PrincipalStage.create(c.detector, 0, { findings: await setupWith(c.findings) });
    const start = T0 + 10 * MINUTE;
    const first = stage.process([stopLogging(start)]);
    assert.deepEqual(kinds(first.findings), ['rule:Create:1']);
    const uid = first.findings[0]?.finding_info.uid;
    // Two repeats and another principal's call in the same hour.
    const more = stage.process([
      stopLogging(start + MINUTE),
      stopLogging(start + 2 * MINUTE),
      stopLogging(start + 3 * MINUTE, 'arn:aws:iam::111122223333:user/bob'),
    ]);
    assert.deepEqual(kinds(more.findings), ['rule:Create:1'], 'only the other principal is new');
    assert.notEqual(more.findings[0]?.finding_info.uid, uid);
    // The hour closes once the watermark (latest − allowed lateness) passes it.
    const closed = stage.advanceWatermark(T0 + HOUR + MINUTE, false);
    assert.deepEqual(kinds(closed.findings), ['rule:Update:3']);
    const update = closed.findings[0] as Finding;
    assert.equal(update.finding_info.uid, uid, 'the Update carries the Create’s id');
    assert.equal(update.evidences.length, 3);
    assert.equal(update.time, start + 2 * MINUTE);
    // A call of the closed hour arriving late is a finding of its own, not a second Create of that id.
    const late = stage.process([stopLogging(start + 30 * MINUTE)]);
    assert.deepEqual(kinds(late.findings), ['rule:Create:1']);
    assert.notEqual(late.findings[0]?.finding_info.uid, uid);
  });

  test('a rule with a minCount is a finding at its minCount-th match in the window, and nothing when the window closes short of it', async () => {
    const c = config({ findings: { firstSeen: { enabled: false }, breadth: { enabled: false } } });
    const loaded = await loadRules([
      join(import.meta.dirname, '../../src/detect/rules/pack/cis-aws-foundations/01-unauthorized-api-calls.json'),
    ]);
    const rule = loaded.rules[0];
    assert.equal(rule?.minCount, 20);
    const stage = PrincipalStage.create(c.detector, 0, {
      findings: findingSetupOf(new RuleSet(loaded.rules), c.findings, 'trailwatch.findings'),
    });
    const denied = (at: number, principal = 'arn:aws:iam::111122223333:user/bob') =>
      event(at, 'ListUsers', { service: 'iam.amazonaws.com', errorCode: 'AccessDenied', principal, principalType: 'IAMUser' });
    const quiet = stage.process(Array.from({ length: 19 }, (_, i) => denied(T0 + i * MINUTE)));
    assert.deepEqual(quiet.findings, [], '19 refusals: below the alarm');
    const fired = stage.process([
      denied(T0 + 30 * MINUTE),
      denied(T0 + 31 * MINUTE),
      denied(T0 + 32 * MINUTE, 'arn:aws:iam::111122223333:user/eve'),
    ]);
    assert.deepEqual(
      kinds(fired.findings),
      ['rule:Create:20'],
      'the 20th is the Create, counting its threshold; eve’s one refusal is nothing',
    );
    assert.equal(fired.findings[0]?.evidences.length, 10);
    const closed = stage.advanceWatermark(T0 + HOUR + MINUTE, false);
    assert.deepEqual(kinds(closed.findings), ['rule:Update:21'], 'the window closes with every refusal counted');
    assert.equal(stage.findings?.counters.belowMinCount, 1, 'eve’s window closed short');
  });

  test('a repeated delivery is not a repeat: the engine drops it before the rules', async () => {
    const c = config({ findings: { firstSeen: { enabled: false }, breadth: { enabled: false } } });
    const stage = PrincipalStage.create(c.detector, 0, { findings: await setupWith(c.findings) });
    const e = stopLogging(T0);
    assert.equal(stage.process([e, { ...e }]).findings.length, 1);
    assert.deepEqual(kinds(stage.advanceWatermark(T0 + 2 * HOUR, false).findings), [], 'count 1: no Update');
  });

  test('a principal past its learning window that does something new is one first-seen finding listing it all', async () => {
    const c = config({ findings: { breadth: { enabled: false } } });
    const topology = new Topology(c.detector, { partitions: 1, actionPartitions: 1, findings: await setupWith(c.findings) });
    for (let h = 0; h < 8 * 24; h++) topology.process([event(T0 + h * HOUR, 'DescribeInstances', { readOnly: true })]);
    assert.deepEqual(topology.drainFindings(), [], 'learning: silent');
    const at = T0 + 8 * DAY + 30 * MINUTE;
    topology.process([
      event(at, 'CreateUser', { service: 'iam.amazonaws.com' }),
      event(at + MINUTE, 'AttachUserPolicy', { service: 'iam.amazonaws.com' }),
      event(at + 2 * MINUTE, 'CreateAccessKey', { service: 'iam.amazonaws.com' }),
    ]);
    topology.advanceWatermark(at + 20 * MINUTE);
    const findings = topology.drainFindings().filter((f) => f.finding_info.types[0] === 'first-seen');
    assert.equal(findings.length, 1);
    const f = findings[0] as Finding;
    assert.deepEqual(
      JSON.parse(f.unmapped?.first_seen_items ?? '[]').map((i: { value: string }) => i.value),
      ['iam.amazonaws.com:CreateUser', 'iam.amazonaws.com:AttachUserPolicy', 'iam.amazonaws.com:CreateAccessKey'],
    );
    assert.ok(f.severity_id >= 3, `a workload role's new IAM writes are at least medium: ${f.severity}`);
    assert.equal(f.actor?.user?.uid, 'arn:aws:sts::111122223333:assumed-role/deployer');
    assert.deepEqual(
      f.evidences.map((e) => e.api?.operation),
      ['CreateUser', 'AttachUserPolicy', 'CreateAccessKey'],
    );
  });

  test('a person’s new ordinary action is below findings.firstSeen.minSeverity and counted, not emitted', async () => {
    const c = config({ findings: { breadth: { enabled: false } } });
    const human = { principal: 'arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0123/alice', principalType: 'AssumedRole' };
    const stage = PrincipalStage.create(c.detector, 0, { findings: await setupWith(c.findings) });
    for (let h = 0; h < 8 * 24; h++) stage.process([event(T0 + h * HOUR, 'DescribeInstances', { readOnly: true, ...human })]);
    const at = T0 + 8 * DAY;
    stage.process([event(at, 'DescribeVolumes', { readOnly: true, ...human })]);
    const out = stage.advanceWatermark(at + HOUR, false);
    assert.deepEqual(out.findings, []);
    assert.equal(stage.findings?.counters.firstSeenBelowSeverity, 1);
  });

  test('sensitive reads are counted in call rates while includeReadOnly is off', () => {
    const detector: DetectorConfig = config().detector;
    const stage = PrincipalStage.create(detector, 0, {});
    stage.process([
      event(T0, 'GetSecretValue', { service: 'secretsmanager.amazonaws.com', readOnly: true }),
      event(T0, 'DescribeInstances', { readOnly: true }),
    ]);
    const keys = stage.engine.keyIds();
    assert.ok(
      keys.some((k) => k.includes('GetSecretValue')),
      `a key for the secret read: ${keys.join(' ')}`,
    );
    assert.ok(!keys.some((k) => k.includes('DescribeInstances')), 'an ordinary read is not counted');
    const off = PrincipalStage.create(config({ detector: { sensitiveReads: false } }).detector, 0, {});
    off.process([event(T0, 'GetSecretValue', { service: 'secretsmanager.amazonaws.com', readOnly: true })]);
    assert.deepEqual(off.engine.keyIds(), []);
  });

  test('a Sigma correlation fires on the stream', async () => {
    const c = config({ findings: { firstSeen: { enabled: false }, breadth: { enabled: false } } });
    const stage = PrincipalStage.create(c.detector, 0, { findings: await setupWith(c.findings, true) });
    const failures = Array.from({ length: 5 }, (_, i) =>
      event(T0 + i * MINUTE, 'ConsoleLogin', {
        service: 'signin.amazonaws.com',
        principal: 'arn:aws:iam::111122223333:user/carol',
        principalType: 'IAMUser',
        raw: JSON.stringify({
          eventName: 'ConsoleLogin',
          eventID: `login-${i}`,
          userIdentity: { type: 'IAMUser', userName: 'carol', arn: 'arn:aws:iam::111122223333:user/carol' },
          responseElements: { ConsoleLogin: 'Failure' },
        }),
      }),
    );
    const out = stage.process(failures.slice(0, 4));
    assert.deepEqual(out.findings, [], 'four failures: below gte 5');
    const fifth = stage.process(failures.slice(4));
    assert.deepEqual(kinds(fifth.findings), ['correlation:Create:1']);
    assert.equal(fifth.findings[0]?.finding_info.analytic.uid, '0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d02');
    assert.equal(fifth.findings[0]?.unmapped?.correlation_count, '5');
  });

  test('restored from its changelog records at any batch, the stage emits exactly what an uninterrupted one does', async () => {
    const c = findingConfig();
    const setup = await setupWith(c.findings, true);
    const batches = seededTraffic();
    const run = (restoreAt: Set<number>): string[] => {
      const out: string[] = [];
      const log = new Map<string, string>();
      let stage = PrincipalStage.create(c.detector, 0, { findings: setup, trackChanges: true });
      batches.forEach((batch, i) => {
        if (restoreAt.has(i)) {
          const keys = [...log.entries()].filter(([k]) => k.startsWith('k|')).map(([, v]) => v);
          const findings = [...log.entries()].filter(([k]) => k.startsWith('d|')).map(([k, v]): [string, string] => [k.slice(2), v]);
          stage = PrincipalStage.fromCheckpoint(
            c.detector,
            0,
            { meta: JSON.parse(log.get('meta') ?? 'null'), keys, seen: [], findings },
            { findings: setup, trackChanges: true },
          );
        }
        for (const f of stage.process(batch).findings) out.push(`${f.finding_info.uid}:${f.activity_name}:${f.count}:${f.time}`);
        const changes = stage.engine.drainChanges();
        for (const [id, v] of changes.keys) v === null ? log.delete(`k|${id}`) : log.set(`k|${id}`, v);
        log.set('meta', JSON.stringify(changes.meta));
        for (const [id, v] of stage.findings?.drainChanges() ?? []) v === null ? log.delete(`d|${id}`) : log.set(`d|${id}`, v);
      });
      return out;
    };
    const straight = run(new Set());
    const kindsSeen = new Set(straight.map((s) => s.split(':')[1]));
    assert.ok(straight.length >= 5, `the traffic makes findings: ${straight.length}`);
    assert.ok(kindsSeen.has('Update'), 'folded repeats among them');
    const restored = run(new Set([40, 300, 500, 611, 700, 777]));
    assert.deepEqual(restored, straight);
  });

  test('the same findings however the events are cut into batches and partitions', async () => {
    const c = findingConfig();
    const setup = await setupWith(c.findings, true);
    const batches = seededTraffic();
    const events = batches.flat();
    const lastMs = events[events.length - 1]?.eventTimeMs ?? T0;
    const run = (partitions: number, cut: AuditEvent[][]): string[] => {
      const topology = new Topology(c.detector, { partitions, actionPartitions: 1, findings: setup });
      for (const b of cut) topology.process(b);
      topology.advanceWatermark(lastMs + 2 * HOUR);
      return topology
        .drainFindings()
        .map(
          (f) =>
            `${f.finding_info.types[0]}|${f.finding_info.uid}:${f.activity_name}:${f.count}:${f.time}:${f.evidences.map((e) => e.uid).join(',')}`,
        )
        .sort();
    };
    const byBatch = run(1, batches);
    const kindsSeen = new Set(byBatch.map((s) => s.split('|')[0]));
    assert.deepEqual([...kindsSeen].sort(), ['breadth', 'first-seen', 'rule'], `findings of every kind the traffic has: ${byBatch.length}`);
    assert.deepEqual(run(1, [events]), byBatch, 'one batch');
    const singles: AuditEvent[][] = [];
    for (let i = 0; i < events.length; i += 3) singles.push(events.slice(i, i + 3));
    assert.deepEqual(run(1, singles), byBatch, 'batches of three');
    // Per-principal state lives per partition; these three principals' findings do not depend on the others'.
    assert.deepEqual(run(3, batches), byBatch, 'three partitions');
  });
});
