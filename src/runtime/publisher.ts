import type { Kafka, Producer } from 'kafkajs';
import type { TopicsConfig } from '../config/schema.ts';
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError, ErrorCodes } from '../errors.ts';
import { EventCodec } from './codec.ts';
import { idempotentProducer } from './kafka.ts';
import { registerContracts, type SchemaRegistry } from './registry.ts';

/**
 * Publishes AuditEvents to the events topic in the Confluent wire format. Events are keyed by
 * account and principal, so one principal's calls stay in one partition and per-principal state
 * stays local to it.
 */
export class EventPublisher {
  private readonly producer: Producer;
  private readonly codec: EventCodec;
  private readonly registry: SchemaRegistry;
  private readonly topics: TopicsConfig;
  private schemaId = -1;

  constructor(kafka: Kafka, registry: SchemaRegistry, topics: TopicsConfig) {
    this.producer = idempotentProducer(kafka);
    this.codec = new EventCodec(registry);
    this.registry = registry;
    this.topics = topics;
  }

  async start(): Promise<void> {
    this.schemaId = (await registerContracts(this.registry, this.topics)).auditEvent;
    await this.producer.connect();
  }

  /** Encodes then sends; an event the schema refuses fails the whole call before anything is sent. */
  async publish(events: AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    const messages = await Promise.all(
      events.map(async (e) => ({
        key: eventKey(e),
        value: await this.encode(e),
        timestamp: String(e.eventTimeMs),
      })),
    );
    await this.producer.send({ topic: this.topics.events, messages });
  }

  async encode(e: AuditEvent): Promise<Buffer> {
    try {
      return await this.codec.encodeEvent(this.schemaId, e);
    } catch (err) {
      throw new BadRecordError(ErrorCodes.DESERIALIZE, `event ${e.eventId} does not fit the AuditEvent schema: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async stop(): Promise<void> {
    await this.producer.disconnect();
  }
}

export function eventKey(e: Pick<AuditEvent, 'accountId' | 'principal'>): string {
  return `${e.accountId}|${e.principal}`;
}
