import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import type { EngineMetrics } from '../../src/detect/engine.ts';
import { createLogger } from '../../src/logger.ts';
import { DetectorRuntime } from '../../src/runtime/detector.ts';
import { createKafka } from '../../src/runtime/kafka.ts';
import { EventPublisher } from '../../src/runtime/publisher.ts';
import { createRegistry } from '../../src/runtime/registry.ts';
import { ensureTopics } from '../../src/runtime/topics.ts';
import { createTransport } from '../../src/transport/index.ts';
import { deleteTopicsWithPrefix, testKafka, uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

async function waitUntil(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Whether the group has committed every record of the events topic: the members are done with it. */
async function eventsCommitted(config: Config): Promise<boolean> {
  const admin = testKafka(config.kafka.brokers, 'trailwatch-test-offsets').admin();
  await admin.connect();
  try {
    const topic = config.topics.events;
    const [ends, [committed]] = await Promise.all([
      admin.fetchTopicOffsets(topic),
      admin.fetchOffsets({ groupId: config.detector.groupId, topics: [topic] }),
    ]);
    return ends.every((end) => {
      const c = committed?.partitions.find((p) => p.partition === end.partition)?.offset ?? '-1';
      return BigInt(end.high) === BigInt(end.low) || BigInt(c) >= BigInt(end.high);
    });
  } finally {
    await admin.disconnect();
  }
}

async function waitForCommitted(config: Config, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await eventsCommitted(config))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for the group to commit the events topic`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A detector member whose log lines are kept, to read its "detector stopped" summary. */
function member(config: Config): { runtime: DetectorRuntime; summary: () => { engine: EngineMetrics } } {
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(line) } });
  const runtime = new DetectorRuntime({
    config,
    transport: createTransport(config.kafka, logger),
    registry: createRegistry(config.registry),
    logger,
    onFatal: (err) => assert.fail(`the detector gave up: ${err.message}`),
  });
  const summary = () => {
    const stopped = lines.map((l) => JSON.parse(l) as { msg?: string }).filter((l) => l.msg === 'detector stopped');
    assert.equal(stopped.length, 1, 'one "detector stopped" line');
    return stopped[0] as unknown as { engine: EngineMetrics };
  };
  return { runtime, summary };
}

/**
 * The "detector stopped" summary reports the engine counters of the work this member did: every
 * task it ran, the ones closed on a rebalance included, and not the history it restored.
 */
describe('detector stop summary', { timeout: 240_000 }, () => {
  let config: Config;
  let publisher: EventPublisher;
  const run = uniqueName('tw-summary');
  const now = Date.now();
  let sequence = 0;
  /** Events of several principals, so both events partitions get some. */
  const events = (count: number): AuditEvent[] =>
    Array.from({ length: count }, () => {
      const i = sequence++;
      return {
        eventId: `${run}-${i}`,
        eventTimeMs: now - 30 * 60_000 + i * 1_000,
        source: 'aws.cloudtrail',
        accountId: '111122223333',
        region: 'eu-west-1',
        principal: `arn:aws:iam::111122223333:user/user-${i % 7}`,
        principalType: 'IAMUser',
        service: 's3.amazonaws.com',
        action: 'GetObject',
        readOnly: true,
        errorCode: null,
        sourceIp: '198.51.100.7',
        userAgent: null,
        attributes: {},
      };
    });

  before(async () => {
    const stack = await testStack();
    config = loadConfig({
      env: {},
      overrides: {
        kafka: { brokers: stack.brokers },
        registry: { url: stack.registryUrl },
        topics: { events: `${run}.events`, alerts: `${run}.insights`, deadLetter: `${run}.dlq`, partitions: 2 },
        detector: { groupId: run, idleAdvanceMs: 1_000, sessionTimeoutMs: 10_000 },
      },
    });
    const kafka = createKafka(config.kafka, createLogger({ level: 'warn' }));
    await ensureTopics(kafka, config.topics);
    publisher = new EventPublisher(kafka, createRegistry(config.registry), config.topics);
    await publisher.start();
  });

  after(async () => {
    await publisher?.stop();
    await deleteTopicsWithPrefix(config.kafka.brokers, run);
  });

  test('counts every event it processed, the tasks it lost in a rebalance included', async () => {
    const first = events(40);
    await publisher.publish(first);
    await publisher.flush();
    const a = member(config);
    await a.runtime.start();
    await waitForCommitted(config, 90_000);

    // Member B joins: A hands partitions over and closes their tasks.
    const b = member(config);
    await b.runtime.start();
    await waitUntil('member B to take a partition over', () => b.runtime.metrics.partitionsRestored >= 1, 90_000);
    await a.runtime.stop();
    await b.runtime.stop();

    assert.equal(a.summary().engine.eventsProcessed, first.length, 'A processed every event, also those of the partitions B took');
    assert.equal(b.summary().engine.eventsProcessed, 0, 'B restored those partitions; it processed nothing new');
  });

  test('after a restart, counts what this member processed, not the state it restored', async () => {
    const more = events(10);
    await publisher.publish(more);
    await publisher.flush();
    const c = member(config);
    await c.runtime.start();
    await waitForCommitted(config, 90_000);
    await c.runtime.stop();
    assert.equal(c.summary().engine.eventsProcessed, more.length);
  });
});
