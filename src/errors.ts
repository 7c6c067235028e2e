/**
 * One error family for trailwatch. Every error carries a stable string code (checked by code,
 * not by class, so it survives process and Kafka-header boundaries), whose fault it is, and
 * whether retrying the same operation can succeed.
 */

export type Fault = 'user' | 'external' | 'internal';

export const ErrorCodes = {
  CONFIG_INVALID: 'TW_CONFIG_INVALID',
  DESERIALIZE: 'TW_DESERIALIZE',
  SCHEMA_UNKNOWN: 'TW_SCHEMA_UNKNOWN',
  /** The record's writer schema cannot be read as trailwatch's own (a change that is not BACKWARD compatible). */
  SCHEMA_INCOMPATIBLE: 'TW_SCHEMA_INCOMPATIBLE',
  NORMALIZE: 'TW_NORMALIZE',
  INPUT_FILE: 'TW_INPUT_FILE',
  TIMESTAMP_OUT_OF_BOUNDS: 'TW_TIMESTAMP_OUT_OF_BOUNDS',
  RECORD_TOO_LARGE: 'TW_RECORD_TOO_LARGE',
  /** A stage's state in its changelog topic cannot be read back. */
  STATE_CORRUPT: 'TW_STATE_CORRUPT',
  /** A stage task failed in a way retrying does not mend, or kept failing past its bound: the process exits for its supervisor. */
  TASK_FAILED: 'TW_TASK_FAILED',
  STACK: 'TW_STACK',
  STACK_PREREQUISITE: 'TW_STACK_PREREQUISITE',
  KAFKA: 'TW_KAFKA',
  /** The broker refused the SASL login, or its TLS certificate is not trusted. */
  KAFKA_AUTH: 'TW_KAFKA_AUTH',
  /** No configured broker could be reached at all (refused, DNS, timeout) within kafka.initialConnectTimeoutMs. */
  KAFKA_UNREACHABLE: 'TW_KAFKA_UNREACHABLE',
  /** A newer producer with the same transactional id took over: this one must stop, never retry. */
  KAFKA_FENCED: 'TW_KAFKA_FENCED',
  /** The broker's ACLs refuse the operation (topic, group, transactional id or cluster). */
  KAFKA_NOT_AUTHORIZED: 'TW_KAFKA_NOT_AUTHORIZED',
  REGISTRY: 'TW_REGISTRY',
  /** The schema registry answered 401/403 to the configured credentials (or their absence). */
  REGISTRY_AUTH: 'TW_REGISTRY_AUTH',
  /** A detection rule (EventBridge pattern, Sigma rule) that does not parse or uses what trailwatch does not support. */
  RULE_INVALID: 'TW_RULE_INVALID',
  USAGE: 'TW_USAGE',
  INTERNAL: 'TW_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface TrailwatchErrorOptions {
  fault?: Fault;
  canRetry?: boolean;
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class TrailwatchError extends Error {
  readonly code: ErrorCode;
  readonly fault: Fault;
  readonly canRetry: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: TrailwatchErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TrailwatchError';
    this.code = code;
    this.fault = options.fault ?? 'internal';
    this.canRetry = options.canRetry ?? false;
    this.details = options.details ?? {};
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, fault: this.fault, canRetry: this.canRetry, message: this.message, ...this.details };
  }
}

/** A configuration that cannot be used; lists every problem at once. */
export class ConfigError extends TrailwatchError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(ErrorCodes.CONFIG_INVALID, `invalid configuration:\n  - ${problems.join('\n  - ')}`, { fault: 'user' });
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** A record that cannot become an AuditEvent: never retried, dead-lettered with its reason. */
export class BadRecordError extends TrailwatchError {
  constructor(code: ErrorCode, message: string, options: Omit<TrailwatchErrorOptions, 'canRetry' | 'fault'> = {}) {
    super(code, message, { ...options, fault: 'user', canRetry: false });
    this.name = 'BadRecordError';
  }
}

export function isTrailwatchError(err: unknown): err is TrailwatchError {
  return (
    err instanceof TrailwatchError ||
    (typeof err === 'object' &&
      err !== null &&
      typeof (err as { code?: unknown }).code === 'string' &&
      String((err as { code: string }).code).startsWith('TW_'))
  );
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** An error and its causes, outermost first (clients wrap: retries exceeded → protocol error → socket error). */
export function causeChain(err: unknown, max = 8): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && e !== null && chain.length < max; ) {
    chain.push(e);
    const o = e as { cause?: unknown; originalError?: unknown };
    e = o.cause ?? o.originalError;
  }
  return chain;
}
