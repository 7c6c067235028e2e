/**
 * The trailwatch package, as a library: what a service needs to publish its own audit events to
 * the events topic a detector reads (README, "Publishing from a service").
 *
 *   import { createAuditProducer } from 'trailwatch';
 *
 * The CLI (`bin/trailwatch`) is the rest of trailwatch; nothing else here is a public API.
 */

export type { ConfigInput, KafkaConfig, RegistryConfig } from './config/schema.ts';
export type { AuditEvent } from './contracts/types.ts';
export {
  BadRecordError,
  ConfigError,
  type ErrorCode,
  ErrorCodes,
  type Fault,
  isTrailwatchError,
  TrailwatchError,
} from './errors.ts';
export {
  type AuditProducer,
  type AuditProducerOptions,
  type AuditProducerStats,
  COMPRESSIONS,
  type Compression,
  checkAuditEvent,
  createAuditProducer,
} from './runtime/audit-producer.ts';
