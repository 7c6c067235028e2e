import { readFileSync } from 'node:fs';
import { Kafka, type KafkaConfig as KafkaJsConfig, logLevel, Partitioners, type Producer, type SASLOptions } from 'kafkajs';
import type { KafkaConfig } from '../config/schema.ts';
import { causeChain, ErrorCodes, TrailwatchError } from '../errors.ts';
import type { Logger } from '../logger.ts';

/** kafkajs levels → pino methods; kafkajs logs go through our logger so secrets are redacted in one place. */
function logCreator(logger: Logger, ceiling?: 'debug') {
  return () =>
    ({ level, log }: { level: number; log: { message: string } & Record<string, unknown> }) => {
      const { message, ...rest } = log;
      const fields = { ...rest, component: 'kafkajs' };
      if (ceiling === 'debug') {
        logger.debug(fields, message);
        return;
      }
      // An error response the client retries by itself (a leader moving, a transaction still
      // completing) is not ours to report: if the retries run out, the call throws and we log it.
      const retried = rest.retryCount !== undefined || message.startsWith('Response ');
      if (level === logLevel.ERROR && retried) logger.debug(fields, message);
      else if (level === logLevel.ERROR) logger.error(fields, message);
      else if (level === logLevel.WARN) logger.warn(fields, message);
      else if (level === logLevel.INFO) logger.debug(fields, message);
      else logger.trace(fields, message);
    };
}

const TLS_TRUST = /certificate|self[- ]signed|UNABLE_TO_VERIFY|CERT_|ERR_TLS|unable to get (local )?issuer/i;

/**
 * A failed connect as a TrailwatchError that names the fix, or null when it is not about
 * credentials or trust: a refused SASL login (wrong user, password or mechanism) and a broker
 * certificate the client does not trust. Never includes the password.
 */
export function kafkaConnectError(err: unknown, config: KafkaConfig): TrailwatchError | null {
  const chain = causeChain(err);
  const text = (e: unknown) => `${(e as Error)?.name ?? ''}: ${(e as Error)?.message ?? String(e)} ${(e as { code?: string })?.code ?? ''}`;
  const brokers = config.brokers.join(',');
  const sasl = chain.find((e) => (e as Error)?.name === 'KafkaJSSASLAuthenticationError');
  if (sasl && config.sasl) {
    return new TrailwatchError(
      ErrorCodes.KAFKA_AUTH,
      `Kafka at ${brokers} refused the SASL ${config.sasl.mechanism.toUpperCase()} login of user "${config.sasl.username}" ` +
        `(${(sasl as Error).message}). Check kafka.sasl.username and the password ` +
        '(TRAILWATCH_KAFKA__SASL__PASSWORD or kafka.sasl.passwordFile), and that the listener enables kafka.sasl.mechanism.',
      { fault: 'user', canRetry: false, cause: err, details: { brokers: config.brokers, mechanism: config.sasl.mechanism } },
    );
  }
  const tls = chain.find((e) => TLS_TRUST.test(text(e)));
  if (tls && config.tls.enabled) {
    return new TrailwatchError(
      ErrorCodes.KAFKA_AUTH,
      `the TLS certificate of Kafka at ${brokers} is not trusted (${(tls as Error).message ?? String(tls)}). ` +
        'Set kafka.tls.caFile (TRAILWATCH_KAFKA__TLS__CA_FILE) to the PEM of the CA that signed it; ' +
        'the broker address must match a name in the certificate.',
      { fault: 'user', canRetry: false, cause: err, details: { brokers: config.brokers } },
    );
  }
  return null;
}

/**
 * Makes `connect()` first wait for `firstContact` (a broker reached at all, see reachBrokers), then
 * reject with kafkaConnectError's message when it applies.
 */
function explainConnect<T extends { connect: () => Promise<void> }>(client: T, config: KafkaConfig, firstContact: () => Promise<void>): T {
  const connect = client.connect.bind(client);
  client.connect = async () => {
    await firstContact();
    try {
      await connect();
    } catch (err) {
      throw kafkaConnectError(err, config) ?? err;
    }
  };
  return client;
}

/** The shortest time one round of handshakes is given. */
const MIN_ATTEMPT_MS = 250;

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
]);

/** Why one broker did not answer, in words that point at the fix. */
function contactFailure(err: unknown, timeoutMs: number): string {
  const chain = causeChain(err);
  const code = chain.map((e) => (e as { code?: unknown })?.code).find((c): c is string => typeof c === 'string' && NETWORK_CODES.has(c));
  if (code === 'ECONNREFUSED') return 'connection refused (ECONNREFUSED: nothing listens there)';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_FAIL') return `the host name does not resolve (${code}: DNS)`;
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return `no route to the host (${code})`;
  if (code === 'ECONNRESET') return 'the connection was reset (ECONNRESET)';
  const messages = chain.map((e) => (e as Error)?.message ?? String(e));
  if (code === 'ETIMEDOUT' || messages.some((m) => /timeout|timed out/i.test(m))) {
    return `no answer within ${timeoutMs} ms (timeout: a firewall, or an address not reachable from here)`;
  }
  if (messages.some((m) => /closed/i.test(m))) {
    return 'the connection was accepted, then closed without a Kafka answer (a TLS listener while kafka.tls is off, a proxy, or not Kafka)';
  }
  return messages[messages.length - 1] ?? 'unknown error';
}

/**
 * Connects a throwaway admin to `broker` alone, with no retries, and disconnects it: the Kafka
 * handshake (and TLS and SASL when configured), not just a TCP connect, since a proxy or a TLS
 * listener accepts TCP connections too.
 */
async function handshake(options: KafkaJsConfig, broker: string, timeoutMs: number): Promise<void> {
  const admin = new Kafka({
    ...options,
    brokers: [broker],
    connectionTimeout: Math.min(options.connectionTimeout ?? timeoutMs, timeoutMs),
    retry: { retries: 0 },
  }).admin();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([admin.connect(), expired]);
  } finally {
    clearTimeout(timer);
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * Resolves once any of `config.brokers` completes a Kafka handshake, trying again with backoff for
 * up to kafka.initialConnectTimeoutMs; then rejects with TW_KAFKA_UNREACHABLE naming each broker
 * and why it failed. A refused login or an untrusted certificate rejects at once with
 * kafkaConnectError's TW_KAFKA_AUTH. This is the first contact only: kafkajs retries a broker it
 * cannot reach for over a minute with no word of why, right for a broker restarting and wrong for an
 * address that was never right.
 */
export async function reachBrokers(config: KafkaConfig, options: KafkaJsConfig): Promise<void> {
  const budgetMs = config.initialConnectTimeoutMs;
  const deadline = Date.now() + budgetMs;
  const failures = new Map<string, string>();
  for (let attempt = 0; ; attempt++) {
    const attemptMs = Math.max(MIN_ATTEMPT_MS, deadline - Date.now());
    const results = await Promise.allSettled(config.brokers.map((b) => handshake(options, b, attemptMs)));
    if (results.some((r) => r.status === 'fulfilled')) return;
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') continue;
      const refused = kafkaConnectError(r.reason, config);
      if (refused) throw refused;
      failures.set(config.brokers[i] as string, contactFailure(r.reason, attemptMs));
    }
    // The last round keeps at least MIN_ATTEMPT_MS, too short a wait to tell a slow broker from none.
    const left = deadline - Date.now();
    if (left <= MIN_ATTEMPT_MS) break;
    await new Promise((r) => setTimeout(r, Math.min(2_000, 250 * 2 ** attempt, left - MIN_ATTEMPT_MS)));
  }
  const why = [...failures].map(([broker, reason]) => `${broker}: ${reason}`).join('; ');
  throw new TrailwatchError(
    ErrorCodes.KAFKA_UNREACHABLE,
    `cannot reach any Kafka broker at ${config.brokers.join(',')} within ${budgetMs} ms (${why}). ` +
      'Set KAFKA_BROKERS (or kafka.brokers) to the host:port of brokers this machine can reach, ' +
      'or run `trailwatch stack up` and leave KAFKA_BROKERS unset to use the local stack; ' +
      'kafka.initialConnectTimeoutMs sets how long to wait.',
    {
      // Nothing was ever reached, so nothing is restarting to wait for: an address that is wrong stays wrong.
      fault: 'external',
      canRetry: false,
      details: { brokers: config.brokers, causes: Object.fromEntries(failures) },
    },
  );
}

/**
 * One first contact per client: every producer, consumer and admin of it waits for the same
 * reachBrokers; once it succeeded it is never asked again (later outages are kafkajs's to retry).
 * A failed one is forgotten, so a later connect tries afresh.
 */
function firstContactOnce(config: KafkaConfig, options: KafkaJsConfig): () => Promise<void> {
  let contact: Promise<void> | null = null;
  return () => {
    contact ??= reachBrokers(config, options).catch((err: unknown) => {
      contact = null;
      throw err;
    });
    return contact;
  };
}

/** Every client needs a broker to start from. */
export function requireBrokers(config: KafkaConfig): void {
  if (config.brokers.length > 0) return;
  throw new TrailwatchError(
    ErrorCodes.CONFIG_INVALID,
    'no Kafka brokers configured: set KAFKA_BROKERS (host:port,…) or run `trailwatch stack up`',
    {
      fault: 'user',
    },
  );
}

/** A PEM file named by the config, or a TW_CONFIG_INVALID error naming the key. */
export function readPem(file: string, key: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new TrailwatchError(ErrorCodes.CONFIG_INVALID, `cannot read ${key} ${file}: ${(err as Error).message}`, {
      fault: 'user',
      cause: err,
    });
  }
}

/** kafkajs's options for trailwatch's kafka config (brokers, timeouts, TLS, SASL), logging through `logger`. */
function kafkajsOptions(config: KafkaConfig, logger: Logger, tuning: { retries?: number } = {}): KafkaJsConfig {
  requireBrokers(config);
  const options: KafkaJsConfig = {
    clientId: config.clientId,
    brokers: config.brokers,
    connectionTimeout: config.connectionTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    logLevel: logLevel.INFO,
    logCreator: logCreator(logger.child({ component: 'kafkajs' })),
    retry: { initialRetryTime: 300, retries: tuning.retries ?? 8 },
  };
  if (config.tls.enabled) {
    const { caFile, certFile, keyFile } = config.tls;
    options.ssl = {
      rejectUnauthorized: config.tls.rejectUnauthorized,
      ...(caFile ? { ca: [readPem(caFile, 'kafka.tls.caFile')] } : {}),
      ...(certFile ? { cert: readPem(certFile, 'kafka.tls.certFile') } : {}),
      ...(keyFile ? { key: readPem(keyFile, 'kafka.tls.keyFile') } : {}),
    };
  }
  if (config.sasl) {
    options.sasl = {
      mechanism: config.sasl.mechanism,
      username: config.sasl.username,
      password: config.sasl.password ?? '',
    } as SASLOptions;
  }
  return options;
}

/**
 * A first-contact check for clients other than kafkajs (the seam's platformatic transport): the same
 * handshake and TW_KAFKA_UNREACHABLE error, once per transport.
 */
export function firstContact(config: KafkaConfig, logger: Logger): () => Promise<void> {
  const options = kafkajsOptions(config, logger);
  return firstContactOnce(config, { ...options, logCreator: logCreator(logger.child({ component: 'kafkajs' }), 'debug') });
}

/**
 * The kafkajs client for `config`. Its clients' `connect()` rejects with TW_KAFKA_UNREACHABLE
 * when no broker was reachable within kafka.initialConnectTimeoutMs the first time (see
 * reachBrokers), and with kafkaConnectError's message when the login or the broker's certificate
 * is refused. `retries` bounds how often a
 * connection failure is retried (default 8, about 80 s of backoff: a broker restarting); a
 * refused SASL login is never retried, an untrusted certificate is (kafkajs cannot tell it from
 * a broker that is down).
 */
export function createKafka(config: KafkaConfig, logger: Logger, tuning: { retries?: number } = {}): Kafka {
  const options = kafkajsOptions(config, logger, tuning);
  const kafka = new Kafka(options);
  const { producer, consumer, admin } = kafka;
  // The handshakes log nothing of their own: each failure is in the error they end with.
  const firstContact = firstContactOnce(config, { ...options, logCreator: logCreator(logger.child({ component: 'kafkajs' }), 'debug') });
  kafka.producer = (c) => explainConnect(producer.call(kafka, c), config, firstContact);
  kafka.consumer = (c) => explainConnect(consumer.call(kafka, c), config, firstContact);
  kafka.admin = (c) => explainConnect(admin.call(kafka, c), config, firstContact);
  return kafka;
}

/**
 * An idempotent producer as kafkajs wants one: unlimited retries (bounded in time by the
 * backoff), one request in flight, the Java client's partitioner (murmur2, so keys land where
 * Kafka Streams and the Java clients would put them).
 */
export function idempotentProducer(kafka: Kafka): Producer {
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 30_000 },
  });
}
