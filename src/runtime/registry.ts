import { COMPATIBILITY, SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import type { RegistryConfig, TopicsConfig } from '../config/schema.ts';
import { type AvroRecordSchema, auditEventSchema, findingSchema, insightSchema, valueSubject } from '../contracts/schemas.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';

export type { SchemaRegistry };

type RegistryMiddleware = NonNullable<ConstructorParameters<typeof SchemaRegistry>[0]['middlewares']>[number];

/**
 * Bounds every registry request: the client sets no timeout of its own, so a registry that accepts
 * connections and never answers would hold a batch until detector.stallTimeoutMs.
 */
const REQUEST_TIMEOUT_MS = 10_000; // ten seconds

const requestTimeout: RegistryMiddleware = () => ({
  prepareRequest: (next) => next().then((request) => request.enhance({ timeout: REQUEST_TIMEOUT_MS })),
});

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
    middlewares: [requestTimeout],
    ...(config.username ? { auth: { username: config.username, password: config.password ?? '' } } : {}),
  });
}

export interface ContractIds {
  auditEvent: number;
  insight: number;
  finding: number;
}

/** Registers one contract under its topic's TopicNameStrategy subject with BACKWARD compatibility; its id. */
export async function registerContract(registry: SchemaRegistry, schema: AvroRecordSchema, topic: string): Promise<number> {
  try {
    const { id } = await registry.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(schema) },
      { subject: valueSubject(topic), compatibility: COMPATIBILITY.BACKWARD },
    );
    return id;
  } catch (err) {
    throw registryError(err, `registering ${schema.name} under ${valueSubject(topic)}`);
  }
}

/** Registers every contract (what the detector reads and writes). */
export async function registerContracts(registry: SchemaRegistry, topics: TopicsConfig): Promise<ContractIds> {
  return {
    auditEvent: await registerContract(registry, auditEventSchema, topics.events),
    insight: await registerContract(registry, insightSchema, topics.alerts),
    finding: await registerContract(registry, findingSchema, topics.findings),
  };
}

/** Socket failures, by errno or by the text Node gives them; mappersmith's own timeout reads "Timeout (10000ms)". */
const NETWORK_FAILURE =
  /\b(ECONNREFUSED|ECONNRESET|ECONNABORTED|ETIMEDOUT|ESOCKETTIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|UND_ERR_\w+)\b|socket hang up|fetch failed|\bTimeout \(\d+ms\)/i;

/**
 * The cause when a registry call got no HTTP answer at all (refused, reset, DNS, timeout), else
 * null. The client reports those as an HTTP 400 and drops the socket error, keeping only its text:
 * "Confluent_Schema_Registry - Error, status 400: connect ECONNREFUSED 127.0.0.1:8080". A 400
 * the registry really sent carries its JSON body's message instead of "Error, status 400: ".
 */
export function registryUnreachable(err: unknown): string | null {
  const e = err as { status?: number; code?: unknown; message?: unknown; cause?: unknown };
  const message = typeof e?.message === 'string' ? e.message : '';
  if (e?.status === 400) {
    const marker = 'Error, status 400: ';
    const at = message.indexOf(marker);
    if (at < 0) return null;
    const cause = message.slice(at + marker.length);
    return NETWORK_FAILURE.test(cause) ? cause : null;
  }
  if (e?.status !== undefined) return null;
  // Not the client's wrapping (another client, or a fetch failure): the errno, here or on a cause.
  for (let c: unknown = err, depth = 0; c && depth < 4; c = (c as { cause?: unknown }).cause, depth++) {
    const { code, message: m } = c as { code?: unknown; message?: unknown };
    const text = `${typeof code === 'string' ? code : ''} ${typeof m === 'string' ? m : ''}`;
    if (NETWORK_FAILURE.test(text)) return message || text.trim();
  }
  return null;
}

/**
 * A registry failure: unreachable, 5xx or 429 can be retried (the registry restarting or busy);
 * any other 4xx is a request the registry refuses.
 */
export function registryError(err: unknown, doing: string): TrailwatchError {
  const unreachable = registryUnreachable(err);
  if (unreachable !== null) {
    return new TrailwatchError(
      ErrorCodes.REGISTRY,
      `schema registry unreachable while ${doing} (${unreachable}): is registry.url (SCHEMA_REGISTRY_URL) right and the registry up?`,
      {
        fault: 'external',
        canRetry: true,
        cause: err,
        details: { unreachable: true },
      },
    );
  }
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
