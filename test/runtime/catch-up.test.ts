import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import type { AuditEvent, Insight } from '../../src/contracts/types.ts';
import { type Actor, generateTraffic } from '../../src/demo/traffic.ts';
import { Topology } from '../../src/detect/topology.ts';
import { actionsTopic, changelogTopics } from '../../src/runtime/topics.ts';
import type { ClientName } from '../../src/transport/types.ts';
import { detectorTestConfig, publishEvents, startDetector, waitCommittedToEnd } from '../helpers/detector.ts';
import { consumeUntil, testKafka } from '../helpers/kafka.ts';

/**
 * A detector that comes back to days of backlog catches up: more than 200,000 events over three
 * and a half days of event time, read with both stages, through internal and output topics that
 * accept no record batch over 128 KiB, so a backlog's transactions must be cut into many
 * requests. The Insights must be those of the pure topology on the same input, record for record.
 */

const MIN = 60_000;
const DAYS = 3.5;
const ACCOUNT = '123456789012';
const SMALL_BATCH_BYTES = 128 * 1024;

function actor(i: number, action: string, rate: number, errorCode?: string): Actor {
  return {
    principal: `arn:aws:iam::${ACCOUNT}:user/u${i}`,
    principalType: 'IAMUser',
    userAgent: `agent/${i % 5}`,
    service: 'ec2.amazonaws.com',
    action,
    readOnly: false,
    ratePerMinute: rate,
    ...(errorCode ? { errorCode } : {}),
  };
}

const ACTIONS = ['RunInstances', 'CreateTags', 'StopInstances', 'AttachVolume', 'DescribeInstances', 'ModifyInstanceAttribute'];
const ACTORS = Array.from({ length: 36 }, (_, i) => actor(i, ACTIONS[i % ACTIONS.length] as string, 0.5 + (i % 5) * 0.5));

for (const client of ['kafkajs', 'platformatic'] satisfies ClientName[]) {
  describe(`catching up on a backlog (${client})`, { timeout: 600_000 }, () => {
    test('200k events over days, both stages, small max.message.bytes: the Insights of the pure topology', async (t) => {
      const config = await detectorTestConfig(`tw-catchup-${client}`, {
        kafka: { client },
        detector: { idleAdvanceMs: 3_000, allowedLatenessMs: 2 * MIN },
      });
      const minutes = Math.round(DAYS * 24 * 60);
      const startMs = Math.floor((Date.now() - minutes * MIN - 2 * 3_600_000) / MIN) * MIN;
      const day = 24 * 60;
      const spikes = [
        { actor: actor(3, 'CreateTags', 40), startMinute: day + 600, minutes: 5 },
        { actor: actor(8, 'TerminateInstances', 30), startMinute: 2 * day + 120, minutes: 4 },
        { actor: actor(15, 'StopInstances', 35, 'AccessDenied'), startMinute: 2 * day + 900, minutes: 5 },
        { actor: actor(22, 'RunInstances', 50), startMinute: 3 * day + 60, minutes: 3 },
      ];
      const events: AuditEvent[] = generateTraffic({ seed: 808, startMs, minutes, actors: ACTORS, spikes });
      assert.ok(events.length >= 200_000, `a backlog of ${events.length} events`);

      const golden = new Topology(config.detector, { partitions: 3, actionPartitions: 3 });
      const lastEventMs = events.reduce((max, e) => Math.max(max, e.eventTimeMs), Number.NEGATIVE_INFINITY);
      const expected = [...golden.process(events), ...golden.advanceWatermark(lastEventMs + config.detector.bucketMs)];
      assert.deepEqual(golden.advanceWatermark(lastEventMs + 6 * 3_600_000), [], 'no Insight is still open at the end of the input');
      assert.ok(expected.some((i) => i.trailwatch.scope === 'action') && expected.some((i) => i.trailwatch.scope === 'principalAction'));

      // The detector's internal and output topics, made before it starts, with a small batch limit.
      const admin = testKafka(config.kafka.brokers, 'trailwatch-test-admin').admin();
      await admin.connect();
      const changelogs = changelogTopics(config.detector.groupId);
      const limit = [{ name: 'max.message.bytes', value: String(SMALL_BATCH_BYTES) }];
      await admin.createTopics({
        waitForLeaders: true,
        topics: [
          { topic: actionsTopic(config), numPartitions: 3, replicationFactor: 1, configEntries: limit },
          { topic: config.topics.alerts, numPartitions: 3, replicationFactor: 1, configEntries: limit },
          ...[changelogs.principal, changelogs.action].map((topic) => ({
            topic,
            numPartitions: 3,
            replicationFactor: 1,
            configEntries: [...limit, { name: 'cleanup.policy', value: 'compact' }],
          })),
        ],
      });
      await admin.disconnect();

      await publishEvents(config, events, 5_000);
      const started = Date.now();
      const { runtime } = await startDetector(config);
      await waitCommittedToEnd(config, config.topics.events, 400_000);
      const caughtUpMs = Date.now() - started;

      const registry = new SchemaRegistry({ host: config.registry.url });
      const live: Insight[] = [];
      await consumeUntil(
        testKafka(config.kafka.brokers),
        config.topics.alerts,
        async (m) => {
          live.push(JSON.parse(JSON.stringify(await registry.decode(m.value as Buffer))) as Insight);
          return live.length >= expected.length;
        },
        120_000,
        { settleMs: 3_000 },
      ).catch((err: unknown) => {
        const scopes = (xs: Insight[]) =>
          JSON.stringify(
            Object.groupBy(xs, (i) => `${i.trailwatch.scope}/${i.insightDetails.state}`),
            (k, v) => (k === '' ? v : Array.isArray(v) ? v.length : v),
          );
        throw new Error(
          `${live.length} of ${expected.length} Insights (live ${scopes(live)}, expected ${scopes(expected)}; metrics ${JSON.stringify(runtime.metrics)}): ${String(err)}`,
        );
      });
      const byId = (xs: Insight[]) => [...xs].sort((x, y) => (x.eventID < y.eventID ? -1 : x.eventID > y.eventID ? 1 : 0));
      assert.deepEqual(
        byId(live).map((i) => i.eventID),
        byId(expected).map((i) => i.eventID),
        'the same Insights',
      );
      const want = byId(expected);
      for (const [n, insight] of byId(live).entries()) assert.deepEqual(insight, want[n], `Insight ${insight.eventID}`);

      const m = runtime.metrics;
      assert.equal(m.transactionsAborted, 0, 'no transaction was refused or retried');
      assert.ok(m.produceRounds > m.transactionsCommitted, 'the 128 KiB limit cut transactions into several requests');
      t.diagnostic(
        `${events.length} events, ${expected.length} Insights; caught up in ${caughtUpMs} ms (${Math.round(events.length / (caughtUpMs / 1000))} events/s); ` +
          `${m.batches} batches, ${m.transactionsCommitted} transactions in ${m.produceRounds} produce rounds`,
      );
    });
  });
}
