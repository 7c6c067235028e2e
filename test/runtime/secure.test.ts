import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { loadConfig } from '../../src/config/load.ts';
import { type Config, topicsSchema } from '../../src/config/schema.ts';
import { ErrorCodes, isTrailwatchError, type TrailwatchError } from '../../src/errors.ts';
import { createLogger, type Logger } from '../../src/logger.ts';
import { createKafka } from '../../src/runtime/kafka.ts';
import { createRegistry, registerContracts } from '../../src/runtime/registry.ts';
import { consumeUntil, createTopics, uniqueName } from '../helpers/kafka.ts';
import { type AuthRegistry, startAuthRegistry } from '../helpers/registry-auth.ts';
import { REPO_ROOT } from '../helpers/shared.ts';
import { type SecureTestStack, secureTestStack, testStack } from '../helpers/stack.ts';

/**
 * Secure connections through trailwatch's own path (loadConfig → createKafka / createRegistry)
 * against the real broker's SASL_PLAINTEXT and SSL listeners (the local stack has both) and a real
 * Apicurio Registry enforcing HTTP basic auth. Secrets come from a password file or the
 * environment, and the captured log lines (trace level, kafkajs included) never contain them.
 */

/** Log lines written through trailwatch's logger (same redaction as the CLI), kept in memory. */
function capturedLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger({ level: 'trace', destination: { write: (line: string) => void lines.push(line) } }), lines };
}

function assertRefused(err: unknown, code: string, ...mentions: string[]): true {
  assert.ok(isTrailwatchError(err), `a TrailwatchError, got ${String(err)}`);
  const e = err as TrailwatchError;
  assert.equal(e.code, code, e.message);
  assert.equal(e.fault, 'user');
  assert.equal(e.canRetry, false);
  for (const m of mentions) assert.ok(e.message.includes(m), `"${e.message}" should mention ${m}`);
  return true;
}

describe('secure Kafka connections', { timeout: 120_000 }, () => {
  let secure: SecureTestStack | string;
  let plainBrokers: string[];
  let password: string;
  const logs: string[][] = [];

  before(async () => {
    secure = secureTestStack();
    if (typeof secure === 'string') return;
    ({ brokers: plainBrokers } = await testStack());
    password = (await readFile(secure.passwordFile, 'utf8')).trim();
  });

  after(() => {
    if (typeof password !== 'string') return;
    const all = logs.flat().join('');
    assert.ok(all.length > 0, 'something was logged');
    assert.ok(!all.includes(password), 'no log line contains the password');
  });

  /** Produces three records through `config` and reads them back through it, in a fresh group. */
  async function roundTrip(config: Config, t: { after: (fn: () => Promise<void>) => void }): Promise<void> {
    const topic = uniqueName('tw-secure');
    await createTopics(plainBrokers, [topic], 1, t);
    const { logger, lines } = capturedLogger();
    logs.push(lines);
    const kafka = createKafka(config.kafka, logger);
    const producer = kafka.producer();
    await producer.connect();
    try {
      await producer.send({ topic, messages: ['a', 'b', 'c'].map((value) => ({ value })) });
    } finally {
      await producer.disconnect();
    }
    const seen: string[] = [];
    await consumeUntil(kafka, topic, (m) => seen.push(m.value?.toString() ?? '') >= 3);
    assert.deepEqual(seen, ['a', 'b', 'c']);
  }

  const saslEnv = (s: SecureTestStack, mechanism: string): NodeJS.ProcessEnv => ({
    KAFKA_BROKERS: s.saslBrokers.join(','),
    TRAILWATCH_KAFKA__SASL__MECHANISM: mechanism,
    TRAILWATCH_KAFKA__SASL__USERNAME: s.username,
  });

  test('SASL/SCRAM-SHA-256, password from kafka.sasl.passwordFile', async (t) => {
    if (typeof secure === 'string') return t.skip(secure);
    const config = loadConfig({ env: { ...saslEnv(secure, 'scram-sha-256'), TRAILWATCH_KAFKA__SASL__PASSWORD_FILE: secure.passwordFile } });
    assert.equal(config.kafka.sasl?.password, password, 'the file was read');
    await roundTrip(config, t);
  });

  test('SASL/SCRAM-SHA-512, password from TRAILWATCH_KAFKA__SASL__PASSWORD', async (t) => {
    if (typeof secure === 'string') return t.skip(secure);
    await roundTrip(loadConfig({ env: { ...saslEnv(secure, 'scram-sha-512'), TRAILWATCH_KAFKA__SASL__PASSWORD: password } }), t);
  });

  test('SASL/PLAIN, password from TRAILWATCH_KAFKA__SASL__PASSWORD', async (t) => {
    if (typeof secure === 'string') return t.skip(secure);
    await roundTrip(loadConfig({ env: { ...saslEnv(secure, 'plain'), TRAILWATCH_KAFKA__SASL__PASSWORD: password } }), t);
  });

  test('TLS with the generated CA and rejectUnauthorized', async (t) => {
    if (typeof secure === 'string') return t.skip(secure);
    const config = loadConfig({
      env: {
        KAFKA_BROKERS: secure.tlsBrokers.join(','),
        TRAILWATCH_KAFKA__TLS__ENABLED: 'true',
        TRAILWATCH_KAFKA__TLS__CA_FILE: secure.caFile,
      },
    });
    assert.equal(config.kafka.tls.rejectUnauthorized, true);
    await roundTrip(config, t);
  });

  test('a wrong SCRAM password is refused with TW_KAFKA_AUTH naming the fix, and is not logged', async (t) => {
    if (typeof secure === 'string') return t.skip(secure);
    const { username } = secure;
    const wrong = `${password}-wrong`;
    const { logger, lines } = capturedLogger();
    logs.push(lines);
    const config = loadConfig({ env: { ...saslEnv(secure, 'scram-sha-256'), TRAILWATCH_KAFKA__SASL__PASSWORD: wrong } });
    const admin = createKafka(config.kafka, logger).admin();
    const started = performance.now();
    await assert.rejects(admin.connect(), (err) =>
      assertRefused(err, ErrorCodes.KAFKA_AUTH, 'SCRAM-SHA-256', username, 'TRAILWATCH_KAFKA__SASL__PASSWORD', 'passwordFile'),
    );
    await admin.disconnect();
    assert.ok(performance.now() - started < 10_000, 'an authentication failure is not retried');
    assert.ok(!lines.join('').includes(wrong), 'the wrong password is not logged either');
  });

  test('TLS without the CA is refused with TW_KAFKA_AUTH naming kafka.tls.caFile', async (t) => {
    if (typeof secure === 'string') return t.skip(secure);
    const { logger } = capturedLogger();
    const config = loadConfig({ env: { KAFKA_BROKERS: secure.tlsBrokers.join(','), TRAILWATCH_KAFKA__TLS__ENABLED: 'true' } });
    const admin = createKafka(config.kafka, logger, { retries: 0 }).admin();
    await assert.rejects(admin.connect(), (err) => assertRefused(err, ErrorCodes.KAFKA_AUTH, 'kafka.tls.caFile'));
    await admin.disconnect();
  });

  test('`trailwatch config` shows the password as ****', async (t) => {
    if (typeof secure === 'string') return t.skip(secure);
    const { stdout } = await promisify(execFile)(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'config'], {
      env: { PATH: process.env.PATH, ...saslEnv(secure, 'scram-sha-512'), TRAILWATCH_KAFKA__SASL__PASSWORD: password },
    });
    assert.ok(!stdout.includes(password));
    assert.equal((JSON.parse(stdout) as Config).kafka.sasl?.password, '****');
  });
});

describe('schema registry basic auth', { timeout: 180_000 }, () => {
  let registry: AuthRegistry | string;
  let dir: string;
  const topics = topicsSchema.parse({
    events: 'tw-secure.events',
    alerts: 'tw-secure.insights',
    deadLetter: 'tw-secure.dlq',
    actions: 'tw-secure.actions',
    partitions: 1,
  });

  before(async () => {
    registry = await startAuthRegistry();
    dir = await mkdtemp(join(tmpdir(), 'trailwatch-secure-'));
  });

  after(async () => {
    if (typeof registry !== 'string') await registry?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('registers the contracts with the password from registry.passwordFile, and from TRAILWATCH_REGISTRY__PASSWORD', async (t) => {
    if (typeof registry === 'string') return t.skip(registry);
    const file = join(dir, 'registry-password');
    await writeFile(file, `${registry.password}\n`, { mode: 0o600 });
    const fromFile = loadConfig({
      env: {
        SCHEMA_REGISTRY_URL: registry.url,
        TRAILWATCH_REGISTRY__USERNAME: registry.username,
        TRAILWATCH_REGISTRY__PASSWORD_FILE: file,
      },
    });
    const ids = await registerContracts(createRegistry(fromFile.registry), topics);
    const fromEnv = loadConfig({
      env: {
        SCHEMA_REGISTRY_URL: registry.url,
        TRAILWATCH_REGISTRY__USERNAME: registry.username,
        TRAILWATCH_REGISTRY__PASSWORD: registry.password,
      },
    });
    assert.deepEqual(await registerContracts(createRegistry(fromEnv.registry), topics), ids);
  });

  test('a wrong password, or none, is refused with TW_REGISTRY_AUTH naming the fix; the password is not in the message', async (t) => {
    if (typeof registry === 'string') return t.skip(registry);
    const wrong = `${registry.password}-wrong`;
    const config = loadConfig({
      env: { SCHEMA_REGISTRY_URL: registry.url, TRAILWATCH_REGISTRY__USERNAME: registry.username, TRAILWATCH_REGISTRY__PASSWORD: wrong },
    });
    await assert.rejects(registerContracts(createRegistry(config.registry), topics), (err) => {
      assertRefused(err, ErrorCodes.REGISTRY_AUTH, '401', 'TRAILWATCH_REGISTRY__PASSWORD', 'registry.passwordFile');
      assert.ok(!(err as Error).message.includes(wrong));
      return true;
    });
    const anonymous = loadConfig({ env: { SCHEMA_REGISTRY_URL: registry.url } });
    await assert.rejects(registerContracts(createRegistry(anonymous.registry), topics), (err) =>
      assertRefused(err, ErrorCodes.REGISTRY_AUTH, 'registry.username'),
    );
  });
});
