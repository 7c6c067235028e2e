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
      if (level === logLevel.ERROR) logger.error(fields, message);
      else if (level === logLevel.WARN) logger.warn(fields, message);
      else if (level === logLevel.INFO) logger.debug(fields, message);
      else logger.trace(fields, message);
    };
}

export function createKafka(config: KafkaConfig, logger: Logger): Kafka {
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
    retry: { initialRetryTime: 300, retries: 8 },
  };
  if (config.tls.enabled) {
    const read = (f: string | undefined) => (f ? readFileSync(f, 'utf8') : undefined);
    options.ssl = {
      rejectUnauthorized: config.tls.rejectUnauthorized,
      ...(config.tls.caFile ? { ca: [read(config.tls.caFile) as string] } : {}),
      ...(config.tls.certFile ? { cert: read(config.tls.certFile) } : {}),
      ...(config.tls.keyFile ? { key: read(config.tls.keyFile) } : {}),
    };
  }
  if (config.sasl) {
    options.sasl = {
      mechanism: config.sasl.mechanism,
      username: config.sasl.username,
      password: config.sasl.password ?? '',
    } as SASLOptions;
  }
  return new Kafka(options);
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
