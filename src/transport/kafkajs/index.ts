import type { Kafka } from 'kafkajs';
import type { KafkaConfig } from '../../config/schema.ts';
import type { Logger } from '../../logger.ts';
import { createKafka } from '../../runtime/kafka.ts';
import type { Admin, GroupConsumer, GroupConsumerOptions, Producer, Transport, TxnProducer, TxnProducerOptions } from '../types.ts';
import { KafkajsAdmin } from './admin.ts';
import { KafkajsGroupConsumer } from './consumer.ts';
import { KafkajsProducer, KafkajsTxnProducer } from './producer.ts';

/** The seam over kafkajs, configured as the rest of trailwatch configures it (src/runtime/kafka.ts). */
export class KafkajsTransport implements Transport {
  readonly client = 'kafkajs' as const;
  readonly kafka: Kafka;

  constructor(config: KafkaConfig, logger: Logger) {
    this.kafka = createKafka(config, logger);
  }

  async admin(): Promise<Admin> {
    const admin = new KafkajsAdmin(this.kafka);
    await admin.connect();
    return admin;
  }

  producer(): Producer {
    return new KafkajsProducer(this.kafka);
  }

  txnProducer(options: TxnProducerOptions): TxnProducer {
    return new KafkajsTxnProducer(this.kafka, options);
  }

  groupConsumer(options: GroupConsumerOptions): GroupConsumer {
    return new KafkajsGroupConsumer(this.kafka, options);
  }
}

export function createKafkajsTransport(config: KafkaConfig, logger: Logger): Transport {
  return new KafkajsTransport(config, logger);
}
