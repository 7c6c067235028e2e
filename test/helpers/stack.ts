/**
 * Where the integration tests find Kafka and the schema registry: KAFKA_BROKERS (comma-separated)
 * and SCHEMA_REGISTRY_URL, which `npm test` (scripts/test.ts) sets after starting or finding a stack.
 */

export interface TestStackEndpoints {
  brokers: string[];
  /** Confluent-compatible API root, without a trailing slash. */
  registryUrl: string;
}

export async function testStack(): Promise<TestStackEndpoints> {
  const brokers = (process.env.KAFKA_BROKERS ?? '')
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b !== '');
  const registryUrl = (process.env.SCHEMA_REGISTRY_URL ?? '').trim().replace(/\/+$/, '');
  if (brokers.length === 0 || registryUrl === '') {
    throw new Error(
      'integration tests need KAFKA_BROKERS and SCHEMA_REGISTRY_URL: run them through `npm test` (which starts a stack), ' +
        'or start one with `npm run stack -- up` and export the two variables it prints',
    );
  }
  return { brokers, registryUrl };
}

/** The broker's SASL and TLS listeners and the user allowed on them (the local stack's, or any cluster's). */
export interface SecureTestStack {
  saslBrokers: string[];
  tlsBrokers: string[];
  caFile: string;
  username: string;
  passwordFile: string;
}

const SECURE_ENV = {
  saslBrokers: 'TRAILWATCH_TEST_SASL_BROKERS',
  tlsBrokers: 'TRAILWATCH_TEST_TLS_BROKERS',
  caFile: 'TRAILWATCH_TEST_CA_FILE',
  username: 'TRAILWATCH_TEST_SASL_USERNAME',
  passwordFile: 'TRAILWATCH_TEST_SASL_PASSWORD_FILE',
} as const;

/**
 * The secure listeners from TRAILWATCH_TEST_* (which `npm test` sets from the local stack), or the
 * reason they are missing, for `t.skip()`.
 */
export function secureTestStack(): SecureTestStack | string {
  const value = (name: string) => (process.env[name] ?? '').trim();
  const missing = Object.values(SECURE_ENV).filter((name) => value(name) === '');
  if (missing.length > 0) {
    return (
      `no secure listeners to test against (${missing.join(', ')} unset): \`npm test\` sets them from the local stack ` +
      '(restart it with `trailwatch stack down && trailwatch stack up` if it predates them); for another cluster set them yourself'
    );
  }
  const list = (name: string) =>
    value(name)
      .split(',')
      .map((b) => b.trim())
      .filter(Boolean);
  return {
    saslBrokers: list(SECURE_ENV.saslBrokers),
    tlsBrokers: list(SECURE_ENV.tlsBrokers),
    caFile: value(SECURE_ENV.caFile),
    username: value(SECURE_ENV.username),
    passwordFile: value(SECURE_ENV.passwordFile),
  };
}
