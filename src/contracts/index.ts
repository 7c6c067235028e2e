export {
  type AvroRecordSchema,
  assertAuditEvent,
  auditEventSchema,
  auditEventType,
  avroProblems,
  insightSchema,
  insightType,
  SCHEMAS_DIR,
  valueSubject,
} from './schemas.ts';
export type * from './types.ts';
