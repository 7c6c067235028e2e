/**
 * Kubernetes API-server audit logs: `audit.k8s.io/v1` Event objects, one JSON object a line (the
 * log backend, `--audit-log-path`), or an EventList (the webhook backend's batches).
 *
 * Mapping to the AuditEvent:
 *   eventId      auditID (shared by an event's stages: only one stage is kept, so it stays unique)
 *   eventTimeMs  requestReceivedTimestamp (else stageTimestamp)
 *   principal    user.username, the authenticated caller; an impersonated user is kept in the
 *                `impersonatedUser` attribute. Who to ask about a call is who authenticated:
 *                impersonation shows up as a change in that caller's own behaviour.
 *   principalType ServiceAccount (system:serviceaccount:…), Node (system:node:…), Anonymous
 *                (system:anonymous), System (other system: users), User
 *   service      k8s.io/<apiGroup> or k8s.io/core for the core group; k8s.io/nonresource for paths
 *                like /healthz
 *   action       <verb>:<resource>[/<subresource>], e.g. list:secrets, create:pods/exec; for a
 *                non-resource request <verb>:<path>, e.g. get:/readyz
 *   readOnly     get, list, watch → true; create, update, patch, delete, deletecollection → false
 *   errorCode    responseStatus.code as text when ≥ 400 (e.g. "403"), else null
 *   sourceIp     sourceIPs[0]; userAgent
 *   accountId    the cluster (ingest.k8sAudit.cluster); region ingest.k8sAudit.region
 *   attributes   namespace, name, apiVersion, stage, level, statusReason, errorMessage,
 *                impersonatedUser, decision (authorization.k8s.io/decision), requestUri
 *
 * Only stage ResponseComplete is an API call counted once: RequestReceived and ResponseStarted are
 * the same call seen earlier, and are skipped (counted as skipped, not as errors). Panic stages are
 * calls that failed inside the API server, taken with errorCode "500" when no status is recorded.
 */

import type { AuditEvent } from '../../contracts/types.ts';
import { BadRecordError, ErrorCodes } from '../../errors.ts';
import { errorItem, type Normalized, type Position, type ReadItem, Skip, type Source } from '../source.ts';
import { isObject, jsonTextItems, kindOf, messageText, readJsonValueFile, str, truncate } from './shared.ts';

export const K8S_AUDIT_SOURCE = 'k8s.audit';
export const K8S_AUDIT_EXTENSIONS: readonly string[] = [
  '.log',
  '.jsonl',
  '.ndjson',
  '.json',
  '.log.gz',
  '.jsonl.gz',
  '.ndjson.gz',
  '.json.gz',
];

export interface K8sAuditOptions {
  /** Stands in for the account: which cluster the log is from. */
  cluster?: string;
  region?: string;
  /** Keep the whole audit event as JSON in `raw`. */
  raw?: boolean;
}

export const K8S_DEFAULTS = { cluster: 'kubernetes', region: 'cluster' } as const satisfies K8sAuditOptions;

const COMPLETE = 'ResponseComplete';
const PANIC = 'Panic';
const READ_VERBS: ReadonlySet<string> = new Set(['get', 'list', 'watch']);
const WRITE_VERBS: ReadonlySet<string> = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);
const MAX_ATTRIBUTE_CHARS = 256;

// RFC 3339 as the API server writes it (microseconds), with a zone.
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;

export function isK8sAuditEvent(value: unknown): value is Record<string, unknown> {
  return isObject(value) && typeof value.apiVersion === 'string' && value.apiVersion.startsWith('audit.k8s.io/') && value.kind === 'Event';
}

export function k8sAuditSource(options: K8sAuditOptions = {}): Source {
  const o = { ...K8S_DEFAULTS, ...options };
  return {
    format: 'k8s-audit',
    description: 'Kubernetes API-server audit events (audit.k8s.io/v1 Event JSON lines, or an EventList)',
    extensions: K8S_AUDIT_EXTENSIONS,
    matchesPath: () => false,
    sniff: (head) => /^\s*\{[\s\S]{0,1000}?"apiVersion"\s*:\s*"audit\.k8s\.io\//.test(head),
    planFile: () => ({ kind: 'read', timeMs: null }),
    read: (file, readOptions) => readJsonValueFile(file, readOptions, eventItems),
    decode: (bytes, origin) => {
      const text = messageText(bytes, origin);
      if ('error' in text) return [text.error];
      return jsonTextItems(text.text, { origin, line: null, index: null }, eventItems);
    },
    normalize: (record) => normalizeK8sAudit(record, o),
  };
}

/** An Event is one record; an EventList one per item. */
function eventItems(value: unknown, at: Position, text: string): ReadItem[] {
  if (isObject(value) && value.kind === 'EventList' && Array.isArray(value.items)) {
    return value.items.map((record, index) => ({ kind: 'record', at: { ...at, index }, record }));
  }
  if (!isObject(value)) {
    const item = errorItem(at, ErrorCodes.NORMALIZE, `not a Kubernetes audit event: ${kindOf(value)}, not a JSON object`);
    return [item.kind === 'error' ? { ...item, text } : item];
  }
  return [{ kind: 'record', at, record: value }];
}

/** One audit event → AuditEvent, a Skip for stages other than ResponseComplete, or why not. */
export function normalizeK8sAudit(record: unknown, options: K8sAuditOptions = {}): Normalized {
  if (!isObject(record)) return bad(`an audit event is a JSON object (got ${kindOf(record)})`);
  const apiVersion = record.apiVersion;
  if (typeof apiVersion !== 'string' || !apiVersion.startsWith('audit.k8s.io/') || record.kind !== 'Event') {
    return bad(
      `not a Kubernetes audit event: apiVersion ${JSON.stringify(apiVersion ?? null)}, kind ${JSON.stringify(record.kind ?? null)} ` +
        '(expected audit.k8s.io/v1, Event)',
    );
  }
  const stage = str(record.stage);
  if (stage === null) return bad('missing stage');
  if (stage !== COMPLETE && stage !== PANIC) return new Skip(`stage ${stage}: the same call is counted at ResponseComplete`);
  const eventId = str(record.auditID);
  if (eventId === null) return bad('missing auditID');
  const time = str(record.requestReceivedTimestamp) ?? str(record.stageTimestamp);
  if (time === null) return bad('missing requestReceivedTimestamp (and stageTimestamp)');
  const eventTimeMs = RFC3339.test(time) ? Date.parse(time) : Number.NaN;
  if (!Number.isFinite(eventTimeMs)) return bad(`requestReceivedTimestamp ${JSON.stringify(truncate(time, 64))} is not an RFC 3339 time`);
  const verb = str(record.verb);
  if (verb === null) return bad('missing verb');
  const user = isObject(record.user) ? record.user : null;
  const username = str(user?.username);
  if (username === null) return bad('missing user.username');

  const ref = isObject(record.objectRef) ? record.objectRef : null;
  const resource = str(ref?.resource);
  const subresource = str(ref?.subresource);
  const requestUri = str(record.requestURI);
  let service: string;
  let action: string;
  if (resource !== null) {
    service = `k8s.io/${str(ref?.apiGroup) ?? 'core'}`;
    action = `${verb}:${resource}${subresource !== null ? `/${subresource}` : ''}`;
  } else if (requestUri !== null) {
    service = 'k8s.io/nonresource';
    action = `${verb}:${requestUri.split('?')[0]}`;
  } else {
    return bad('neither objectRef.resource nor requestURI: cannot tell what was called');
  }

  const status = isObject(record.responseStatus) ? record.responseStatus : null;
  const code = typeof status?.code === 'number' ? status.code : null;
  const errorCode = code !== null ? (code >= 400 ? String(code) : null) : stage === PANIC ? '500' : null;

  const attributes: Record<string, string> = {};
  const put = (key: string, value: string | null): void => {
    if (value !== null) attributes[key] = truncate(value, MAX_ATTRIBUTE_CHARS);
  };
  put('namespace', str(ref?.namespace));
  put('name', str(ref?.name));
  put('apiVersion', str(ref?.apiVersion));
  put('stage', stage);
  put('level', str(record.level));
  put('statusReason', str(status?.reason));
  put('errorMessage', errorCode !== null ? str(status?.message) : null);
  const impersonated = isObject(record.impersonatedUser) ? str(record.impersonatedUser.username) : null;
  put('impersonatedUser', impersonated);
  const annotations = isObject(record.annotations) ? record.annotations : null;
  put('decision', str(annotations?.['authorization.k8s.io/decision']));
  put('requestUri', requestUri);

  const sourceIPs = Array.isArray(record.sourceIPs) ? record.sourceIPs : [];
  const event: AuditEvent = {
    eventId,
    eventTimeMs,
    source: K8S_AUDIT_SOURCE,
    accountId: options.cluster ?? K8S_DEFAULTS.cluster,
    region: options.region ?? K8S_DEFAULTS.region,
    principal: username,
    principalType: principalTypeOf(username),
    service,
    action,
    readOnly: READ_VERBS.has(verb) ? true : WRITE_VERBS.has(verb) ? false : null,
    errorCode,
    sourceIp: str(sourceIPs[0]),
    userAgent: str(record.userAgent),
    attributes,
    raw: options.raw ? JSON.stringify(record) : null,
  };
  return event;
}

function principalTypeOf(username: string): string {
  if (username.startsWith('system:serviceaccount:')) return 'ServiceAccount';
  if (username.startsWith('system:node:')) return 'Node';
  if (username === 'system:anonymous') return 'Anonymous';
  if (username.startsWith('system:')) return 'System';
  return 'User';
}

function bad(reason: string): BadRecordError {
  return new BadRecordError(ErrorCodes.NORMALIZE, reason);
}
