/**
 * Running the live detector in a test: a config with topics and a group of its own, the runtime
 * started against the test stack, and waiting until it has committed its way to the end of the
 * events topic.
 */
import { after } from 'node:test';
import type { Admin } from 'kafkajs';
import { loadConfig } from '../../src/config/load.ts';
import type { Config, ConfigInput } from '../../src/config/schema.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { createLogger } from '../../src/logger.ts';
import { DetectorRuntime } from '../../src/runtime/detector.ts';
import { createKafka } from '../../src/runtime/kafka.ts';
import { EventPublisher } from '../../src/runtime/publisher.ts';
import { createRegistry } from '../../src/runtime/registry.ts';
import { ensureTopics } from '../../src/runtime/topics.ts';
import { createTransport } from '../../src/transport/index.ts';
import { testKafka, uniqueName } from './kafka.ts';
import { testStack } from './stack.ts';

export const testLogger = createLogger({ level: process.env.TRAILWATCH_TEST_LOG ?? 'warn' });

/** A config whose topics and group no other test uses; `overrides` may add or replace any part. */
export async function detectorTestConfig(prefix: string, overrides: ConfigInput = {}): Promise<Config> {
  const stack = await testStack();
  const name = uniqueName(prefix);
  return loadConfig({
    env: {},
    overrides: {
      ...overrides,
      kafka: { brokers: stack.brokers, ...overrides.kafka },
      registry: { url: stack.registryUrl, ...overrides.registry },
      topics: {
        events: `${name}.events`,
        alerts: `${name}.insights`,
        findings: `${name}.findings`,
        deadLetter: `${name}.dlq`,
        // Config versions of its own: one applied on the default topic by another test must not retune this one.
        config: `${name}.config`,
        feedback: `${name}.feedback`,
        partitions: 3,
        ...overrides.topics,
      },
      detector: { groupId: name, ...overrides.detector },
    },
  });
}

/** Publishes events with trailwatch's own publisher (topics created first, as `publish` does). */
export async function publishEvents(config: Config, events: AuditEvent[], batch = 1_000): Promise<void> {
  const kafka = createKafka(config.kafka, testLogger);
  await ensureTopics(kafka, config.topics);
  const publisher = new EventPublisher(kafka, createRegistry(config.registry), config.topics);
  await publisher.start();
  try {
    for (let i = 0; i < events.length; i += batch) await publisher.publish(events.slice(i, i + batch));
  } finally {
    await publisher.stop();
  }
}

export interface StartedDetector {
  runtime: DetectorRuntime;
  /** Settles with the error the runtime gave up with (it would have exited the process). */
  fatal: Promise<Error>;
}

/** Starts a detector; it is stopped after the test file. */
export async function startDetector(config: Config): Promise<StartedDetector> {
  let onFatal: (err: Error) => void = () => {};
  const fatal = new Promise<Error>((resolve) => {
    onFatal = resolve;
  });
  const runtime = new DetectorRuntime({
    config,
    transport: createTransport(config.kafka, testLogger),
    registry: createRegistry(config.registry),
    logger: testLogger,
    onFatal: (err) => onFatal(err),
  });
  after(() => runtime.stop());
  await runtime.start();
  return { runtime, fatal };
}

/** Records on a topic written without transactions: high − low over its partitions. */
export async function topicRecordCount(admin: Admin, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
}

/**
 * Waits until the group's committed offsets reach the end of every partition of `topic`, or
 * rejects after `timeoutMs` naming where each partition stood.
 */
export async function waitCommittedToEnd(config: Config, topic: string, timeoutMs: number): Promise<void> {
  const admin = testKafka(config.kafka.brokers, 'trailwatch-test-admin').admin();
  await admin.connect();
  const deadline = Date.now() + timeoutMs;
  let last = '';
  try {
    for (;;) {
      const [ends, [committed]] = await Promise.all([
        admin.fetchTopicOffsets(topic),
        admin.fetchOffsets({ groupId: config.detector.groupId, topics: [topic] }),
      ]);
      const behind = ends.filter((e) => {
        const c = committed?.partitions.find((p) => p.partition === e.partition)?.offset ?? '-1';
        // An empty partition has nothing to commit.
        return BigInt(e.high) > BigInt(e.low) && BigInt(c) < BigInt(e.high);
      });
      if (behind.length === 0) return;
      last = behind
        .map((e) => `${e.partition}: ${committed?.partitions.find((p) => p.partition === e.partition)?.offset}/${e.high}`)
        .join(', ');
      if (Date.now() > deadline) throw new Error(`the detector did not commit to the end of ${topic} within ${timeoutMs} ms (${last})`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await admin.disconnect();
  }
}
