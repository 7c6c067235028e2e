import type { BaseOptions } from '@platformatic/kafka';
import type { KafkaConfig } from '../../config/schema.ts';
import type { Logger } from '../../logger.ts';
import { readPem, requireBrokers } from '../../runtime/kafka.ts';
import type { Admin, GroupConsumer, GroupConsumerOptions, Producer, Transport, TxnProducer, TxnProducerOptions } from '../types.ts';
import { PlatformaticAdmin } from './admin.ts';
import { PlatformaticGroupConsumer } from './consumer.ts';
import { PlatformaticProducer, PlatformaticTxnProducer } from './producer.ts';

const MECHANISMS = { plain: 'PLAIN', 'scram-sha-256': 'SCRAM-SHA-256', 'scram-sha-512': 'SCRAM-SHA-512' } as const;

/** @platformatic/kafka's connection options for trailwatch's kafka config (brokers, timeouts, TLS, SASL). */
export function clientOptions(config: KafkaConfig): BaseOptions {
  requireBrokers(config);
  const options: BaseOptions = {
    clientId: config.clientId,
    bootstrapBrokers: config.brokers,
    connectTimeout: config.connectionTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    timeout: config.requestTimeoutMs,
    // About the same patience as the kafkajs client's (8 retries with backoff): a broker restarting.
    retries: 8,
    retryDelay: 1_000,
  };
  if (config.tls.enabled) {
    const { caFile, certFile, keyFile } = config.tls;
    options.tls = {
      rejectUnauthorized: config.tls.rejectUnauthorized,
      ...(caFile ? { ca: [readPem(caFile, 'kafka.tls.caFile')] } : {}),
      ...(certFile ? { cert: readPem(certFile, 'kafka.tls.certFile') } : {}),
      ...(keyFile ? { key: readPem(keyFile, 'kafka.tls.keyFile') } : {}),
    };
  }
  if (config.sasl) {
    options.sasl = { mechanism: MECHANISMS[config.sasl.mechanism], username: config.sasl.username, password: config.sasl.password ?? '' };
  }
  return options;
}

/** The seam over @platformatic/kafka. */
export class PlatformaticTransport implements Transport {
  readonly client = 'platformatic' as const;
  private readonly options: BaseOptions;
  private readonly logger: Logger;

  constructor(config: KafkaConfig, logger: Logger) {
    this.options = clientOptions(config);
    this.logger = logger.child({ component: 'platformatic-kafka' });
  }

  async admin(): Promise<Admin> {
    return new PlatformaticAdmin(this.options);
  }

  producer(): Producer {
    return new PlatformaticProducer(this.options);
  }

  txnProducer(options: TxnProducerOptions): TxnProducer {
    return new PlatformaticTxnProducer(this.options, options);
  }

  groupConsumer(options: GroupConsumerOptions): GroupConsumer {
    return new PlatformaticGroupConsumer(this.options, options, this.logger);
  }
}

export function createPlatformaticTransport(config: KafkaConfig, logger: Logger): Transport {
  return new PlatformaticTransport(config, logger);
}
