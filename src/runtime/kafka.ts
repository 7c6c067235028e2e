import { readFileSync } from 'node:fs';
import { Kafka, type KafkaConfig as KafkaJsConfig, logLevel, Partitioners, type Producer, type SASLOptions } from 'kafkajs';
import type { KafkaConfig } from '../config/schema.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import type { Logger } from '../logger.ts';

/** kafkajs levels → pino methods; kafkajs logs go through our logger so secrets are redacted in one place. */
function logCreator(logger: Logger) {
  return () =>
    ({ level, log }: { level: number; log: { message: string } & Record<string, unknown> }) => {
      const { message, ...rest } = log;
      const fields = { ...rest, component: 'kafkajs' };
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

/** The first error in a chain of causes (kafkajs wraps: retries exceeded → connection error → socket error). */
function causes(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && e !== null && chain.length < 8; ) {
    chain.push(e);
    const o = e as { cause?: unknown; originalError?: unknown };
    e = o.cause ?? o.originalError;
  }
  return chain;
}

const TLS_TRUST = /certificate|self[- ]signed|UNABLE_TO_VERIFY|CERT_|ERR_TLS|unable to get (local )?issuer/i;

/**
 * A failed connect as a TrailwatchError that names the fix, or null when it is not about
 * credentials or trust: a refused SASL login (wrong user, password or mechanism) and a broker
 * certificate the client does not trust. Never includes the password.
 */
export function kafkaConnectError(err: unknown, config: KafkaConfig): TrailwatchError | null {
  const chain = causes(err);
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

/** Makes `connect()` reject with kafkaConnectError's message when it applies. */
function explainConnect<T extends { connect: () => Promise<void> }>(client: T, config: KafkaConfig): T {
  const connect = client.connect.bind(client);
  client.connect = async () => {
    try {
      await connect();
    } catch (err) {
      throw kafkaConnectError(err, config) ?? err;
    }
  };
  return client;
}

function readPem(file: string, key: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new TrailwatchError(ErrorCodes.CONFIG_INVALID, `cannot read ${key} ${file}: ${(err as Error).message}`, {
      fault: 'user',
      cause: err,
    });
  }
}

/**
 * The kafkajs client for `config`. Its clients' `connect()` rejects with kafkaConnectError's
 * message when the login or the broker's certificate is refused. `retries` bounds how often a
 * connection failure is retried (default 8, about 80 s of backoff: a broker restarting); a
 * refused SASL login is never retried, an untrusted certificate is (kafkajs cannot tell it from
 * a broker that is down).
 */
export function createKafka(config: KafkaConfig, logger: Logger, tuning: { retries?: number } = {}): Kafka {
  if (config.brokers.length === 0) {
    throw new TrailwatchError(
      ErrorCodes.CONFIG_INVALID,
      'no Kafka brokers configured: set KAFKA_BROKERS (host:port,…) or run `trailwatch stack up`',
      {
        fault: 'user',
      },
    );
  }
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
  const kafka = new Kafka(options);
  const { producer, consumer, admin } = kafka;
  kafka.producer = (c) => explainConnect(producer.call(kafka, c), config);
  kafka.consumer = (c) => explainConnect(consumer.call(kafka, c), config);
  kafka.admin = (c) => explainConnect(admin.call(kafka, c), config);
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
