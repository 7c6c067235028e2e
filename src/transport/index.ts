import type { KafkaConfig } from '../config/schema.ts';
import type { Logger } from '../logger.ts';
import { createKafkajsTransport } from './kafkajs/index.ts';
import { createPlatformaticTransport } from './platformatic/index.ts';
import type { Transport } from './types.ts';

export type * from './types.ts';

/** The transport for `config.client`: every Kafka call trailwatch makes goes through it. */
export function createTransport(config: KafkaConfig, logger: Logger): Transport {
  return config.client === 'platformatic' ? createPlatformaticTransport(config, logger) : createKafkajsTransport(config, logger);
}
