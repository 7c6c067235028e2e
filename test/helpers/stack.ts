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
