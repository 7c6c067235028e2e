import type { KafkaConfig } from '../config/schema.ts';
import type { Logger } from '../logger.ts';
import { firstContact } from '../runtime/kafka.ts';
import { createKafkajsTransport } from './kafkajs/index.ts';
import { createPlatformaticTransport } from './platformatic/index.ts';
import type { Transport } from './types.ts';

export type * from './types.ts';

/** The transport for `config.client`: every Kafka call trailwatch makes goes through it. */
export function createTransport(config: KafkaConfig, logger: Logger): Transport {
  // kafkajs's clients check first contact themselves (createKafka).
  if (config.client === 'kafkajs') return createKafkajsTransport(config, logger);
  return withFirstContact(createPlatformaticTransport(config, logger), firstContact(config, logger));
}

/**
 * Every client of `inner` waits for one first contact before it connects: a broker that was never
 * reached fails within kafka.initialConnectTimeoutMs with TW_KAFKA_UNREACHABLE naming the brokers,
 * instead of being retried without a word; one lost later is the client's to wait for.
 */
function withFirstContact(inner: Transport, contact: () => Promise<void>): Transport {
  const gated = <T extends { connect(): Promise<void> }>(client: T): T => {
    const connect = client.connect.bind(client);
    client.connect = async () => {
      await contact();
      await connect();
    };
    return client;
  };
  return {
    client: inner.client,
    admin: async () => {
      await contact();
      return inner.admin();
    },
    producer: () => gated(inner.producer()),
    txnProducer: (options) => gated(inner.txnProducer(options)),
    groupConsumer: (options) => {
      const consumer = inner.groupConsumer(options);
      const run = consumer.run.bind(consumer);
      consumer.run = async (handlers) => {
        await contact();
        await run(handlers);
      };
      return consumer;
    },
  };
}
