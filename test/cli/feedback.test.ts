/**
 * `trailwatch feedback` against the real broker and registry: Insights and a finding on their
 * topics as the detector writes them (Avro, keyed by id); an unknown id refused; verdicts recorded
 * on the feedback topic; the third false positive on one key becomes a suppression, written as a
 * config version by feedback-policy that `config history` and `config show` name; on a finding's
 * key, a findings suppression, the detector's carried forward.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { decodeFeedbackRecord, type FeedbackRecord } from '../../src/config/feedback.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { ConfigRecord } from '../../src/config/record.ts';
import type { Config, DetectorSuppression, FindingSuppression } from '../../src/config/schema.ts';
import { findingSchema, insightSchema } from '../../src/contracts/schemas.ts';
import type { Insight } from '../../src/contracts/types.ts';
import { partitionFor } from '../../src/detect/topology.ts';
import { buildFinding } from '../../src/emit/finding.ts';
import { buildInsight } from '../../src/emit/insight.ts';
import { EventCodec } from '../../src/runtime/codec.ts';
import { createRegistry, registerContract } from '../../src/runtime/registry.ts';
import { createTransport } from '../../src/transport/index.ts';
import { readToEnd } from '../../src/transport/read-to-end.ts';
import { cli } from '../helpers/cli.ts';
import { testLogger } from '../helpers/detector.ts';
import { uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

const MIN = 60_000;
const PRINCIPAL = 'arn:aws:sts::111122223333:assumed-role/svc-nightly';

function insight(startMs: number, action = 'PutItem'): Insight {
  return buildInsight({
    scope: 'principalAction',
    insightType: 'ApiCallRateInsight',
    accountId: '111122223333',
    region: 'us-east-1',
    service: 'dynamodb.amazonaws.com',
    action,
    principal: PRINCIPAL,
    errorCode: null,
    state: 'Start',
    keyId: `principalAction|call|111122223333|${PRINCIPAL}|dynamodb.amazonaws.com|${action}`,
    startTimeMs: startMs,
    endTimeMs: null,
    bucketMs: MIN,
    baselinePerMinute: 2,
    insightPerMinute: 80,
    baselineWindowMinutes: 10_080,
    historyMinutes: 2_000,
    score: 0.7,
    threshold: 0.6,
    contributors: [],
  });
}

describe('trailwatch feedback', { timeout: 240_000 }, () => {
  const name = uniqueName('tw-feedback');
  const env = {
    TRAILWATCH_TOPICS__ALERTS: `${name}.insights`,
    TRAILWATCH_TOPICS__FINDINGS: `${name}.findings`,
    TRAILWATCH_TOPICS__FEEDBACK: `${name}.feedback`,
    TRAILWATCH_TOPICS__CONFIG: `${name}.config`,
  };
  let config: Config;
  const dayAgo = Math.floor((Date.now() - 86_400_000) / MIN) * MIN;
  const nightly = [0, 1, 2].map((n) => insight(dayAgo + n * 60 * MIN));
  const other = insight(dayAgo, 'DeleteItem');
  const finding = buildFinding({
    kind: 'rule',
    analyticId: 'cloudtrail-stop-logging',
    analyticName: 'CloudTrail stopped',
    title: 'CloudTrail logging stopped',
    severity: 'high',
    timeMs: dayAgo,
    windowStartMs: dayAgo,
    accountId: '111122223333',
    region: 'us-east-1',
    principal: PRINCIPAL,
    evidences: [],
  });

  before(async () => {
    const stack = await testStack();
    config = loadConfig({
      env: {},
      overrides: {
        kafka: { brokers: stack.brokers },
        registry: { url: stack.registryUrl },
        topics: { alerts: env.TRAILWATCH_TOPICS__ALERTS, findings: env.TRAILWATCH_TOPICS__FINDINGS },
      },
    });
    const admin = await createTransport(config.kafka, testLogger).admin();
    try {
      await admin.createTopics([config.topics.alerts, config.topics.findings].map((topic) => ({ topic, partitions: 3 })));
    } finally {
      await admin.close();
    }
    const registry = createRegistry(config.registry);
    const codec = new EventCodec(registry);
    const insightId = await registerContract(registry, insightSchema, config.topics.alerts);
    const findingId = await registerContract(registry, findingSchema, config.topics.findings);
    const producer = createTransport(config.kafka, testLogger).producer();
    await producer.connect();
    try {
      // As the detector places them: keyed by id, on the partition the id hashes to.
      for (const i of [...nightly, other]) {
        await producer.send([
          {
            topic: config.topics.alerts,
            partition: partitionFor(i.sharedEventID, 3),
            key: i.sharedEventID,
            value: await codec.encodeInsight(insightId, i),
          },
        ]);
      }
      const uid = finding.finding_info.uid;
      await producer.send([
        { topic: config.topics.findings, partition: partitionFor(uid, 3), key: uid, value: await codec.encodeFinding(findingId, finding) },
      ]);
    } finally {
      await producer.close();
    }
  });

  after(async () => {
    // The feedback and config topics are the command's own; all four go.
    const admin = await createTransport(config.kafka, testLogger).admin();
    try {
      const existing = new Set(await admin.listTopics());
      await admin.deleteTopics(
        [config.topics.alerts, config.topics.findings, env.TRAILWATCH_TOPICS__FEEDBACK, env.TRAILWATCH_TOPICS__CONFIG].filter((t) =>
          existing.has(t),
        ),
      );
    } catch {
      // best effort: the names are unique
    } finally {
      await admin.close().catch(() => undefined);
    }
  });

  const feedback = (id: string, verdict: '--false-positive' | '--true-positive', reason: string, author: string) =>
    cli(['feedback', id, verdict, '--reason', reason, '--author', author], env);

  test('an id on neither topic is refused, naming both; a verdict needs a reason', async () => {
    const r = await feedback('00000000-0000-5000-8000-000000000000', '--false-positive', 'noise', 'alice');
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /no Insight with sharedEventID 00000000-0000-5000-8000-000000000000 on .*\.insights and no finding with id .* on .*\.findings/,
    );
    const noReason = await cli(['feedback', nightly[0]?.sharedEventID ?? '', '--false-positive'], env);
    assert.equal(noReason.code, 1);
    assert.match(noReason.stderr, /--reason "…" is required/);
  });

  test('three false positives on one key become a suppression, as a config version by feedback-policy', async () => {
    const [a, b, c] = nightly.map((i) => i.sharedEventID) as [string, string, string];
    const first = await feedback(a, '--false-positive', 'nightly batch job', 'alice');
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.match(
      first.stdout,
      new RegExp(
        `^recorded false-positive on Insight ${a} \\(ApiCallRateInsight Start, .*\\), key principalAction\\|call\\|111122223333\\|${PRINCIPAL.replace(/[/:]/g, '.')}\\|dynamodb.amazonaws.com\\|PutItem, on `,
      ),
    );
    assert.match(first.stdout, /feedback policy: 1 of 3 false positives on this key within 14 days: no suppression yet\n$/);
    // The same person again on the same Insight counts once.
    assert.match((await feedback(a, '--false-positive', 'still the batch', 'alice')).stdout, /1 of 3 false positives/);
    assert.match((await feedback(b, '--false-positive', 'batch again', 'bob')).stdout, /2 of 3 false positives/);
    // A true positive on another key is recorded, and changes nothing here.
    const tp = await feedback(other.sharedEventID, '--true-positive', 'real deletion spree', 'carol');
    assert.equal(tp.code, 0, tp.stderr);
    assert.match(tp.stdout, /^recorded true-positive on Insight /);
    const third = await feedback(c, '--false-positive', 'the batch, every night', 'carol');
    assert.equal(third.code, 0, third.stdout + third.stderr);
    assert.match(
      third.stdout,
      /feedback policy: 3 false positives on this key within 14 days .*: suppressed until \S+ as config version 1 on /,
    );

    const history = await cli(['config', 'history', '--json'], env);
    const versions = (JSON.parse(history.stdout) as { versions: ConfigRecord[] }).versions;
    assert.equal(versions.length, 1);
    const v = versions[0] as ConfigRecord;
    assert.equal(v.author, 'feedback-policy');
    assert.equal(v.source, 'feedback-policy');
    assert.match(
      v.message,
      /^3 false positives within 14 days: "nightly batch job" \(alice\); "batch again" \(bob\); "the batch, every night" \(carol\): suppress principalAction\|call\|.*\|PutItem until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
    );
    const table = await cli(['config', 'history'], env);
    assert.match(
      table.stdout,
      /\n1\s+\S+\s+feedback-policy\s+feedback-policy\s+[0-9a-f]{12}\s+3 false positives within 14 days: "nightly batch job" \(alice\); .*: suppress principalAction/,
    );

    const shown = parse((await cli(['config', 'show'], env)).stdout) as { detector: { suppressions: DetectorSuppression[] } };
    assert.deepEqual(
      shown.detector.suppressions.map((s) => [s.match, s.author]),
      [
        [
          {
            scope: 'principalAction',
            insightType: 'ApiCallRateInsight',
            accountId: '111122223333',
            principal: PRINCIPAL,
            service: 'dynamodb.amazonaws.com',
            action: 'PutItem',
          },
          'feedback-policy',
        ],
      ],
    );
    const expires = Date.parse(shown.detector.suppressions[0]?.expires ?? '');
    assert.ok(Math.abs(expires - (Date.now() + 7 * 86_400_000)) < 3_600_000, 'suppressed for feedback.suppressForDays (7)');

    // A fourth verdict while the suppression is in force writes nothing more.
    const fourth = await feedback(c, '--false-positive', 'once more', 'dave');
    assert.match(fourth.stdout, /feedback policy: already suppressed until .* \(feedback-policy\)/);
    assert.equal((JSON.parse((await cli(['config', 'history', '--json'], env)).stdout) as { versions: unknown[] }).versions.length, 1);
  });

  test('three false positives on a finding’s key become a findings suppression; the detector’s suppression carries on', async () => {
    const uid = finding.finding_info.uid;
    const r = await feedback(uid, '--false-positive', 'maintenance window', 'erin');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /^recorded false-positive on finding .* \(CloudTrail logging stopped\), key finding\|cloudtrail-stop-logging\|111122223333\|/,
    );
    assert.match(r.stdout, /feedback policy: 1 of 3 false positives on this key within 14 days: no suppression yet/);
    assert.match((await feedback(uid, '--false-positive', 'maintenance again', 'frank')).stdout, /2 of 3 false positives/);
    const third = await feedback(uid, '--false-positive', 'planned trail rotation', 'gina');
    assert.equal(third.code, 0, third.stdout + third.stderr);
    assert.match(
      third.stdout,
      /feedback policy: 3 false positives on this key within 14 days .*: suppressed until \S+ as config version 2 on /,
    );

    const shown = parse((await cli(['config', 'show'], env)).stdout) as {
      detector: { suppressions: DetectorSuppression[] };
      findings: { suppressions: FindingSuppression[] };
    };
    assert.deepEqual(
      shown.findings.suppressions.map((s) => [s.match, s.author]),
      [[{ rule: 'cloudtrail-stop-logging', accountId: '111122223333', principal: PRINCIPAL }, 'feedback-policy']],
    );
    assert.match(
      shown.findings.suppressions[0]?.reason ?? '',
      /"maintenance window" \(erin\); "maintenance again" \(frank\); "planned trail rotation" \(gina\)$/,
    );
    assert.deepEqual(
      shown.detector.suppressions.map((s) => s.match.action),
      ['PutItem'],
    );
    const records: FeedbackRecord[] = [];
    await readToEnd(createTransport(config.kafka, testLogger), {
      topic: env.TRAILWATCH_TOPICS__FEEDBACK,
      timeoutMs: 30_000,
      groupPrefix: 'tw-test-feedback',
      onRecord: (m) => {
        if (m.value) records.push(decodeFeedbackRecord(m.value));
      },
    });
    assert.deepEqual(
      records.map((f) => [f.kind, f.verdict, f.author]),
      [
        ['insight', 'false-positive', 'alice'],
        ['insight', 'false-positive', 'alice'],
        ['insight', 'false-positive', 'bob'],
        ['insight', 'true-positive', 'carol'],
        ['insight', 'false-positive', 'carol'],
        ['insight', 'false-positive', 'dave'],
        ['finding', 'false-positive', 'erin'],
        ['finding', 'false-positive', 'frank'],
        ['finding', 'false-positive', 'gina'],
      ],
    );
    assert.equal(records.at(-1)?.target, finding.finding_info.uid);
  });
});
