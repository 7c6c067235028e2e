import type { AuditEvent } from '../../src/contracts/types.ts';

/**
 * An AuditEvent as the detection tests publish it: a successful DynamoDB write by one assumed
 * role, with every field not given taken from these defaults. Fields keep the contract's order,
 * so the JSON of an event is the same whichever fields were given.
 */
export function auditEvent(over: Partial<AuditEvent> & Pick<AuditEvent, 'eventId' | 'eventTimeMs'>): AuditEvent {
  const { eventId, eventTimeMs, ...rest } = over;
  return {
    eventId,
    eventTimeMs,
    source: 'aws.cloudtrail',
    accountId: '111122223333',
    region: 'us-east-1',
    principal: 'arn:aws:sts::111122223333:assumed-role/svc-orders',
    principalType: 'AssumedRole',
    service: 'dynamodb.amazonaws.com',
    action: 'PutItem',
    readOnly: false,
    errorCode: null,
    sourceIp: null,
    userAgent: 'aws-sdk',
    attributes: {},
    ...rest,
  };
}
