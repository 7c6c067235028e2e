import { COMPATIBILITY, SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import type { RegistryConfig, TopicsConfig } from '../config/schema.ts';
import { type AvroRecordSchema, auditEventSchema, insightSchema, valueSubject } from '../contracts/schemas.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';

export type { SchemaRegistry };

export function createRegistry(config: RegistryConfig): SchemaRegistry {
  if (!config.url) {
    throw new TrailwatchError(
      ErrorCodes.CONFIG_INVALID,
      'no schema registry configured: set SCHEMA_REGISTRY_URL (e.g. http://host:8080/apis/ccompat/v7) or run `trailwatch stack up`',
      { fault: 'user' },
    );
  }
  return new SchemaRegistry({
    host: config.url,
    clientId: 'trailwatch',
    retry: { retries: 5, initialRetryTimeInSecs: 0.2, maxRetryTimeInSecs: 5 },
    ...(config.username ? { auth: { username: config.username, password: config.password ?? '' } } : {}),
  });
}

export interface ContractIds {
  auditEvent: number;
  insight: number;
}

/** Registers both contracts under TopicNameStrategy subjects with BACKWARD compatibility. */
export async function registerContracts(registry: SchemaRegistry, topics: TopicsConfig): Promise<ContractIds> {
  const register = async (schema: AvroRecordSchema, topic: string): Promise<number> => {
    try {
      const { id } = await registry.register(
        { type: SchemaType.AVRO, schema: JSON.stringify(schema) },
        { subject: valueSubject(topic), compatibility: COMPATIBILITY.BACKWARD },
      );
      return id;
    } catch (err) {
      throw registryError(err, `registering ${schema.name} under ${valueSubject(topic)}`);
    }
  };
  return { auditEvent: await register(auditEventSchema, topics.events), insight: await register(insightSchema, topics.alerts) };
}

/** A registry failure: unreachable or 5xx can be retried; 4xx is a request the registry refuses. */
export function registryError(err: unknown, doing: string): TrailwatchError {
  const status = (err as { status?: number }).status;
  if (status === 401 || status === 403) {
    return new TrailwatchError(
      ErrorCodes.REGISTRY_AUTH,
      `schema registry refused the request (HTTP ${status}) while ${doing}: ` +
        (status === 401
          ? 'set registry.username and the password (TRAILWATCH_REGISTRY__PASSWORD or registry.passwordFile), or check them'
          : 'the user lacks the registry role this needs (reading needs read access, registering needs developer or admin)'),
      { fault: 'user', canRetry: false, cause: err, details: { status } },
    );
  }
  const retryable = status === undefined || status >= 500 || status === 429;
  return new TrailwatchError(ErrorCodes.REGISTRY, `schema registry failed while ${doing}: ${(err as Error).message}`, {
    fault: retryable ? 'external' : 'user',
    canRetry: retryable,
    cause: err,
    details: status === undefined ? {} : { status },
  });
}
