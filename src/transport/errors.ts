import { ErrorCodes, TrailwatchError } from '../errors.ts';
import type { ClientName } from './types.ts';

/**
 * Client errors as TrailwatchErrors. Both clients carry the broker's error name (kafkajs as
 * `type`, @platformatic/kafka as `apiId`, nested in `errors` or `cause`) and their own retriable
 * flag (`retriable`, `canRetry`): the code is chosen from the names, never from the message.
 */

const FENCED = new Set(['PRODUCER_FENCED', 'INVALID_PRODUCER_EPOCH']);
const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);
const SASL = new Set(['SASL_AUTHENTICATION_FAILED', 'KafkaJSSASLAuthenticationError', 'PLT_KFK_AUTHENTICATION']);

interface Facts {
  names: Set<string>;
  retriable: boolean;
}

/** Every error in the chain: causes, wrapped originals and aggregated errors. */
function facts(err: unknown): Facts {
  const names = new Set<string>();
  let retriable = false;
  const seen = new Set<unknown>();
  const walk = (e: unknown, depth: number): void => {
    if (typeof e !== 'object' || e === null || seen.has(e) || depth > 8) return;
    seen.add(e);
    const o = e as { type?: unknown; apiId?: unknown; name?: unknown; code?: unknown; retriable?: unknown; canRetry?: unknown };
    for (const v of [o.type, o.apiId, o.name, o.code]) if (typeof v === 'string') names.add(v);
    if (o.retriable === true || o.canRetry === true) retriable = true;
    const w = e as { cause?: unknown; originalError?: unknown; errors?: unknown };
    walk(w.cause, depth + 1);
    walk(w.originalError, depth + 1);
    if (Array.isArray(w.errors)) for (const x of w.errors) walk(x, depth + 1);
  };
  walk(err, 0);
  return { names, retriable };
}

/** `err` from `client` while `doing` (e.g. "committing the transaction of tw.task.0") as a TrailwatchError. */
export function transportError(err: unknown, client: ClientName, doing: string): TrailwatchError {
  if (err instanceof TrailwatchError) return err;
  const { names, retriable } = facts(err);
  const message = `${doing}: ${err instanceof Error ? err.message : String(err)}`;
  const details = { client, kafkaErrors: [...names].filter((n) => /^[A-Z_]+$/.test(n)) };
  const has = (set: Set<string>) => [...names].some((n) => set.has(n));
  if (has(FENCED)) {
    return new TrailwatchError(ErrorCodes.KAFKA_FENCED, message, { fault: 'external', canRetry: false, cause: err, details });
  }
  if (has(TOO_LARGE)) {
    return new TrailwatchError(ErrorCodes.RECORD_TOO_LARGE, message, { fault: 'user', canRetry: false, cause: err, details });
  }
  if ([...names].some((n) => n.endsWith('_AUTHORIZATION_FAILED'))) {
    return new TrailwatchError(ErrorCodes.KAFKA_NOT_AUTHORIZED, message, { fault: 'user', canRetry: false, cause: err, details });
  }
  if (has(SASL)) {
    return new TrailwatchError(ErrorCodes.KAFKA_AUTH, message, { fault: 'user', canRetry: false, cause: err, details });
  }
  return new TrailwatchError(ErrorCodes.KAFKA, message, { fault: 'external', canRetry: retriable, cause: err, details });
}

/** Runs `fn`, rethrowing its failure as transportError. */
export async function mapped<T>(client: ClientName, doing: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw transportError(err, client, doing);
  }
}
