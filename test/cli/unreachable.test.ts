import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { cli } from '../helpers/cli.ts';
import { createTopics, uniqueName } from '../helpers/kafka.ts';
import { FIXTURES_DIR } from '../helpers/shared.ts';
import { testStack } from '../helpers/stack.ts';

/** A line of a JavaScript stack trace: what a user must never be shown for a bad address. */
const STACK_LINE = /^\s+at .+[(:]/m;

/**
 * Every command that connects, pointed at brokers nothing answers on, ends with one
 * TW_KAFKA_UNREACHABLE line naming the brokers, why, and the fix. The registry is the real one:
 * only Kafka is missing.
 */
describe('commands with no reachable broker', { timeout: 120_000 }, () => {
  const commands: Array<{ name: string; args: string[] }> = [
    { name: 'run', args: ['run'] },
    {
      name: 'publish',
      args: ['publish', 'cloudtrail', '--topic', uniqueName('tw-unreachable'), join(FIXTURES_DIR, 'cloudtrail/deliveries/identities.json')],
    },
    { name: 'tail', args: ['tail', '--max', '1'] },
    { name: 'dlq show', args: ['dlq', 'show'] },
  ];

  for (const { name, args } of commands) {
    test(`${name} fails with TW_KAFKA_UNREACHABLE naming KAFKA_BROKERS and the refusal, no stack trace`, async () => {
      const stack = await testStack();
      // `run` keeps the default wait; the others a short one, which also shows the key is read.
      const budget = name === 'run' ? {} : { TRAILWATCH_KAFKA__INITIAL_CONNECT_TIMEOUT_MS: '3000' };
      const r = await cli(args, { KAFKA_BROKERS: '127.0.0.1:1', SCHEMA_REGISTRY_URL: stack.registryUrl, ...budget });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /TW_KAFKA_UNREACHABLE/);
      assert.match(r.stderr, /cannot reach any Kafka broker at 127\.0\.0\.1:1/);
      assert.match(r.stderr, /ECONNREFUSED/);
      assert.match(r.stderr, /KAFKA_BROKERS/);
      assert.match(r.stderr, /trailwatch stack up/);
      assert.doesNotMatch(r.stderr, STACK_LINE);
      assert.doesNotMatch(r.stderr, /KafkaJS/);
    });
  }

  test('a broker name that does not resolve is reported as DNS', async () => {
    const stack = await testStack();
    const r = await cli(['tail', '--max', '1'], {
      KAFKA_BROKERS: 'kafka.invalid:9092',
      SCHEMA_REGISTRY_URL: stack.registryUrl,
      TRAILWATCH_KAFKA__INITIAL_CONNECT_TIMEOUT_MS: '3000',
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /TW_KAFKA_UNREACHABLE/);
    assert.match(r.stderr, /kafka\.invalid:9092: the host name does not resolve \((ENOTFOUND|EAI_AGAIN|EAI_FAIL): DNS\)/);
    assert.doesNotMatch(r.stderr, STACK_LINE);
  });

  test('a reachable broker among unreachable ones is enough', async () => {
    const stack = await testStack();
    const topic = uniqueName('tw-unreachable-tail');
    await createTopics(stack.brokers, [topic]);
    const r = await cli(['tail', '--max', '1', '--timeout-ms', '1000', '--topic', topic], {
      KAFKA_BROKERS: ['127.0.0.1:1', ...stack.brokers].join(','),
      SCHEMA_REGISTRY_URL: stack.registryUrl,
      TRAILWATCH_KAFKA__INITIAL_CONNECT_TIMEOUT_MS: '3000',
    });
    assert.doesNotMatch(r.stderr, /TW_KAFKA_UNREACHABLE/);
    assert.equal(r.code, 0, r.stderr);
  });
});
