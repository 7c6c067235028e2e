import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { ErrorCodes, TrailwatchError } from '../../src/errors.ts';
import { createLogger } from '../../src/logger.ts';
import { createKafka } from '../../src/runtime/kafka.ts';
import { Forwarder } from '../helpers/forwarder.ts';
import { testStack } from '../helpers/stack.ts';

const logger = createLogger({ level: process.env.TRAILWATCH_TEST_LOG ?? 'silent' });

/**
 * The first contact with the brokers has a budget (kafka.initialConnectTimeoutMs); a broker lost
 * after it does not: kafkajs waits for it as before. Brokers are made unreachable with a TCP
 * forwarder to the real broker that stops listening.
 */
describe('createKafka first contact', { timeout: 120_000 }, () => {
  test('brokers never reached: TW_KAFKA_UNREACHABLE with each broker and its cause, not retriable', async () => {
    const config = loadConfig({
      env: { KAFKA_BROKERS: '127.0.0.1:1,kafka.invalid:9092', TRAILWATCH_KAFKA__INITIAL_CONNECT_TIMEOUT_MS: '1500' },
    });
    const admin = createKafka(config.kafka, logger).admin();
    await assert.rejects(admin.connect(), (err: unknown) => {
      assert.ok(err instanceof TrailwatchError);
      assert.equal(err.code, ErrorCodes.KAFKA_UNREACHABLE);
      assert.equal(err.canRetry, false, 'the detector start-up loop must not wait on it');
      const causes = err.details.causes as Record<string, string>;
      assert.match(causes['127.0.0.1:1'] ?? '', /ECONNREFUSED/);
      assert.match(causes['kafka.invalid:9092'] ?? '', /DNS/);
      return true;
    });
    await admin.disconnect();
  });

  test('a broker first reached, then away for longer than the budget, is waited for', async (t) => {
    const stack = await testStack();
    const [host, port] = (stack.brokers[0] as string).split(':');
    const forwarder = await Forwarder.onFreePort({ host: host as string, port: Number(port) });
    t.after(() => forwarder.close());
    await forwarder.open();
    const config = loadConfig({ env: { KAFKA_BROKERS: forwarder.address, TRAILWATCH_KAFKA__INITIAL_CONNECT_TIMEOUT_MS: '1000' } });
    const kafka = createKafka(config.kafka, logger);
    const admin = kafka.admin();
    await admin.connect();
    await admin.disconnect();

    // The only bootstrap address goes away for three budgets, then comes back.
    await forwarder.close();
    const producer = kafka.producer();
    const connected = producer.connect();
    await new Promise((r) => setTimeout(r, 3_000));
    await forwarder.open();
    await connected;
    await producer.disconnect();
  });

  test('a failed first contact is tried afresh by the next connect', async (t) => {
    const stack = await testStack();
    const [host, port] = (stack.brokers[0] as string).split(':');
    const forwarder = await Forwarder.onFreePort({ host: host as string, port: Number(port) });
    t.after(() => forwarder.close());
    const config = loadConfig({ env: { KAFKA_BROKERS: forwarder.address, TRAILWATCH_KAFKA__INITIAL_CONNECT_TIMEOUT_MS: '1000' } });
    const kafka = createKafka(config.kafka, logger);
    const admin = kafka.admin();
    await assert.rejects(admin.connect(), { code: ErrorCodes.KAFKA_UNREACHABLE });
    await forwarder.open();
    await admin.connect();
    await admin.disconnect();
  });
});
