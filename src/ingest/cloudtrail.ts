/**
 * CloudTrail record → AuditEvent. Pure: no I/O, so the publish CLI, replay and tests share it.
 * The principal is normalized the way CloudTrail Insights attributes calls (docs/contracts.md has
 * the table), so trailwatch's per-principal baselines and attributions line up with AWS's.
 */
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError, ErrorCodes } from '../errors.ts';

export const CLOUDTRAIL_SOURCE = 'aws.cloudtrail';

/** errorMessage is free text from the service; keep enough to read, not enough to bloat every event. */
export const MAX_ERROR_MESSAGE_CHARS = 256;

/** The principal of a call and what normalizing it set aside. */
export interface Principal {
  principal: string;
  principalType: string;
  /** The session name split off an assumed-role ARN (or a principalId's `:session` suffix). */
  sessionName: string | null;
}

type Json = Record<string, unknown>;

// arn:<partition>:sts::<account>:assumed-role/<role>/<session>. Role and session names cannot
// contain '/', and the STS ARN never carries the role's IAM path, so the split is unambiguous.
const ASSUMED_ROLE_ARN = /^(arn:[^:]+:sts::[^:]*:assumed-role\/[^/]+)\/(.+)$/;

// CloudTrail writes `2023-07-10T11:42:31Z`; accept fractions and offsets, never a local time.
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;

/** Normalizes one CloudTrail record. Throws BadRecordError(TW_NORMALIZE) naming the field at fault. */
export interface NormalizeOptions {
  /** Keep the whole record as JSON in `raw`, for rules (default false). */
  raw?: boolean;
}

export function normalizeCloudTrail(record: unknown, options: NormalizeOptions = {}): AuditEvent {
  if (!isObject(record)) {
    throw bad(`record is not an object (got ${kindOf(record)})`);
  }
  const eventId = requiredString(record, 'eventID');
  const eventTimeMs = parseEventTime(record.eventTime);
  const service = requiredString(record, 'eventSource');
  const action = requiredString(record, 'eventName');
  const region = requiredString(record, 'awsRegion');

  const identityValue = record.userIdentity;
  if (identityValue !== undefined && identityValue !== null && !isObject(identityValue)) {
    throw bad(`userIdentity is not an object (got ${kindOf(identityValue)})`);
  }
  const identity: Json | undefined = isObject(identityValue) ? identityValue : undefined;
  const accountId = str(record.recipientAccountId) ?? str(identity?.accountId);
  if (accountId === null) {
    throw bad('missing recipientAccountId (and no userIdentity.accountId to fall back on)');
  }
  const { principal, principalType, sessionName } = principalOf(identity);

  const attributes: Record<string, string> = {};
  const put = (key: string, value: string | null): void => {
    if (value !== null) attributes[key] = value;
  };
  put('eventType', str(record.eventType));
  put('eventCategory', str(record.eventCategory));
  put('managementEvent', boolText(record.managementEvent));
  put('requestId', str(record.requestID));
  put('sessionName', sessionName);
  put('invokedBy', str(identity?.invokedBy));
  put('accessKeyId', str(identity?.accessKeyId));
  put('userIdentityArn', str(identity?.arn));
  const errorMessage = str(record.errorMessage);
  put('errorMessage', errorMessage === null ? null : truncate(errorMessage, MAX_ERROR_MESSAGE_CHARS));

  return {
    eventId,
    eventTimeMs,
    source: CLOUDTRAIL_SOURCE,
    accountId,
    region,
    principal,
    principalType,
    service,
    action,
    readOnly: parseReadOnly(record.readOnly),
    errorCode: str(record.errorCode),
    sourceIp: str(record.sourceIPAddress),
    userAgent: str(record.userAgent),
    attributes,
    raw: options.raw ? JSON.stringify(record) : null,
  };
}

/**
 * The normalized principal of a CloudTrail `userIdentity` (any value: a missing or malformed
 * identity gets the fallback, never an exception). See docs/contracts.md for the table.
 */
export function principalOf(userIdentity: unknown): Principal {
  const id: Json = isObject(userIdentity) ? userIdentity : {};
  const type = str(id.type);
  const principalType = type ?? 'Unknown';
  const arn = str(id.arn);
  const accountId = str(id.accountId);
  const principalId = str(id.principalId);
  const userName = str(id.userName);
  const invokedBy = str(id.invokedBy);
  const withSession = (principal: string, sessionName: string | null = null): Principal => ({ principal, principalType, sessionName });

  switch (type) {
    case 'AssumedRole': {
      if (arn !== null) {
        const m = ASSUMED_ROLE_ARN.exec(arn);
        if (m?.[1] !== undefined && m[2] !== undefined) return withSession(m[1], m[2]);
        return withSession(arn);
      }
      // No ARN: rebuild the session-less one from the role that issued the session.
      const issuer = sessionIssuerOf(id);
      const roleName = str(issuer.userName);
      const roleAccount = str(issuer.accountId) ?? accountId;
      const session = principalId === null ? null : sessionSuffix(principalId);
      if (roleName !== null && roleAccount !== null) {
        return withSession(`arn:${partitionOf(str(issuer.arn))}:sts::${roleAccount}:assumed-role/${roleName}`, session);
      }
      return generic(id, principalType);
    }
    case 'IAMUser':
      if (arn !== null) return withSession(arn);
      // Console sign-in events (e.g. CheckMfa) can omit the ARN. Rebuilt without the user's IAM
      // path, so it matches the user's other events unless the user was created under a path.
      if (accountId !== null && userName !== null) return withSession(`arn:aws:iam::${accountId}:user/${userName}`);
      return generic(id, principalType);
    case 'Root':
      if (arn !== null) return withSession(arn);
      if (accountId !== null) return withSession(`arn:aws:iam::${accountId}:root`);
      return generic(id, principalType);
    case 'FederatedUser':
      // arn:aws:sts::<acct>:federated-user/<name>: the name is the identity, there is no session.
      return arn !== null ? withSession(arn) : generic(id, principalType);
    case 'AWSService':
      return invokedBy !== null ? withSession(invokedBy) : generic(id, principalType);
    case 'AWSAccount':
      // Another account called in; its principalId usually carries a per-session suffix, so the
      // calling account is the stable identity.
      if (accountId !== null) return withSession(accountId, principalId === null ? null : sessionSuffix(principalId));
      return generic(id, principalType);
    case 'IdentityCenterUser': {
      const onBehalfOf = isObject(id.onBehalfOf) ? id.onBehalfOf : {};
      const userId = str(onBehalfOf.userId);
      const store = str(onBehalfOf.identityStoreArn);
      if (userId !== null) return withSession(store !== null ? `${store}/user/${userId}` : `identitystore-user/${userId}`);
      return generic(id, principalType);
    }
    case 'SAMLUser':
    case 'WebIdentityUser': {
      // principalId is `<identity provider>:<user>`; it is stable across sessions.
      if (principalId !== null) return withSession(principalId);
      const provider = str(id.identityProvider);
      if (provider !== null && userName !== null) return withSession(`${provider}:${userName}`);
      return generic(id, principalType);
    }
    default:
      // Unknown, types CloudTrail may add later, and identities without a type.
      return generic(id, principalType);
  }
}

/**
 * Fallback for identities that say little: the best stable identifier present. Service events
 * (no type, just `invokedBy`) land on the service, like AWSService.
 */
function generic(id: Json, principalType: string): Principal {
  const arn = str(id.arn);
  if (arn !== null) {
    const m = ASSUMED_ROLE_ARN.exec(arn);
    if (m?.[1] !== undefined && m[2] !== undefined) return { principal: m[1], principalType, sessionName: m[2] };
    return { principal: arn, principalType, sessionName: null };
  }
  const principal = str(id.invokedBy) ?? str(id.principalId) ?? str(id.userName) ?? str(id.accountId) ?? 'unknown';
  return { principal, principalType, sessionName: null };
}

function sessionIssuerOf(id: Json): Json {
  const ctx = isObject(id.sessionContext) ? id.sessionContext : {};
  return isObject(ctx.sessionIssuer) ? ctx.sessionIssuer : {};
}

function sessionSuffix(principalId: string): string | null {
  const i = principalId.indexOf(':');
  return i >= 0 && i < principalId.length - 1 ? principalId.slice(i + 1) : null;
}

function partitionOf(arn: string | null): string {
  return arn?.split(':')[1] || 'aws';
}

function parseEventTime(value: unknown): number {
  if (value === undefined || value === null) throw bad('missing eventTime');
  if (typeof value !== 'string') throw bad(`eventTime is not a string (got ${kindOf(value)})`);
  const ms = ISO_TIME.test(value) ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(ms)) throw bad(`eventTime ${JSON.stringify(truncate(value, 64))} is not an ISO-8601 UTC time`);
  return ms;
}

/** CloudTrail writes a JSON boolean; some exporters turn it into the string "true"/"false". */
function parseReadOnly(value: unknown): boolean | null {
  if (typeof value === 'boolean') return value;
  if (value === 'true') return true;
  if (value === 'false') return false;
  return null;
}

function boolText(value: unknown): string | null {
  if (typeof value === 'boolean') return String(value);
  return str(value);
}

function requiredString(record: Json, field: string): string {
  const value = record[field];
  if (value === undefined || value === null) throw bad(`missing ${field}`);
  if (typeof value !== 'string') throw bad(`${field} is not a string (got ${kindOf(value)})`);
  if (value === '') throw bad(`${field} is empty`);
  return value;
}

/** A non-empty string, else null: CloudTrail writes `"accessKeyId": ""` for console sessions. */
function str(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

/** At most `max` UTF-16 units, never splitting a surrogate pair (Avro would encode half of one as U+FFFD). */
function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.charCodeAt(max - 1) >= 0xd800 && text.charCodeAt(max - 1) <= 0xdbff ? max - 1 : max;
  return text.slice(0, cut);
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

function bad(reason: string): BadRecordError {
  return new BadRecordError(ErrorCodes.NORMALIZE, reason);
}
