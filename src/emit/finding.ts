import { isIP } from 'node:net';
import pkg from '../../package.json' with { type: 'json' };
import type { AuditEvent, Finding, OcsfActor, OcsfAttack, OcsfEvidence, OcsfNetworkEndpoint } from '../contracts/types.ts';
import { deterministicUuid } from './ids.ts';

/** The OCSF schema version schemas/Finding.avsc follows. */
export const OCSF_VERSION = '1.5.0';
/** Evidences kept per finding: enough to triage, small enough for one Kafka record. */
export const MAX_EVIDENCES = 10;

export type FindingKind = 'rule' | 'correlation' | 'first-seen' | 'breadth';
/** Sigma's levels, which are the OCSF severities 1–5 in lower case. */
export type FindingSeverity = 'informational' | 'low' | 'medium' | 'high' | 'critical';

export const SEVERITY_IDS: Readonly<Record<FindingSeverity, number>> = {
  informational: 1,
  low: 2,
  medium: 3,
  high: 4,
  critical: 5,
};
export const SEVERITY_LABELS: Readonly<Record<FindingSeverity, string>> = {
  informational: 'Informational',
  low: 'Low',
  medium: 'Medium',
  high: 'High',
  critical: 'Critical',
};

/** Rules and correlations are written logic; first-seen compares to a learned history; breadth to a counted one. */
export const ANALYTIC_TYPES: Readonly<Record<FindingKind, { type_id: number; type: string }>> = {
  rule: { type_id: 1, type: 'Rule' },
  correlation: { type_id: 1, type: 'Rule' },
  'first-seen': { type_id: 2, type: 'Behavioral' },
  breadth: { type_id: 3, type: 'Statistical' },
};

export interface FindingTechnique {
  /** ATT&CK id, e.g. T1098 or T1078.004. */
  uid: string;
  name?: string | null;
  tactic?: { uid?: string | null; name?: string | null } | null;
}

/** What a detector knows when it fires; buildFinding turns it into the OCSF record. */
export interface FindingFact {
  kind: FindingKind;
  analyticId: string;
  analyticName: string;
  title: string;
  desc?: string | null;
  srcUrl?: string | null;
  severity: FindingSeverity;
  /** Event time of the latest evidence. */
  timeMs: number;
  /** Start of the window the finding belongs to: repeats in one window are one finding. */
  windowStartMs: number;
  /** When the finding was created; defaults to the earliest evidence (or timeMs), so replays agree. */
  createdMs?: number | null;
  accountId: string;
  region: string;
  /** Normalized principal; null for a finding about no single principal. */
  principal: string | null;
  principalType?: string | null;
  sessionName?: string | null;
  /** Set when the finding is about one API call; null when it spans several. */
  api?: { operation: string; service: string } | null;
  sourceIp?: string | null;
  /** Every event behind the finding; only the first MAX_EVIDENCES (earliest) are kept. */
  evidences: readonly AuditEvent[];
  /** Put each AuditEvent's JSON in evidences[].data (default true). */
  evidenceData?: boolean;
  techniques?: readonly FindingTechnique[];
  /** Times the finding fired in its window: 1 creates it, more updates it (default 1). */
  count?: number;
  /** Create or Update whatever the count (a thresholded rule's Create already counts its threshold). */
  update?: boolean;
  /** trailwatch extras: rule source, group keys, … */
  extras?: Readonly<Record<string, string>>;
  /** Topic the finding goes to. */
  logName?: string | null;
}

/** Same analytic, principal and window: same finding, on a live run, a replay, a Create and its Updates. */
export function findingUidFor(analyticId: string, principal: string | null, windowStartMs: number): string {
  return deterministicUuid('trailwatch.finding', analyticId, principal ?? '', String(windowStartMs));
}

const TACTICS: Readonly<Record<string, { uid: string; name: string }>> = {
  reconnaissance: { uid: 'TA0043', name: 'Reconnaissance' },
  resource_development: { uid: 'TA0042', name: 'Resource Development' },
  initial_access: { uid: 'TA0001', name: 'Initial Access' },
  execution: { uid: 'TA0002', name: 'Execution' },
  persistence: { uid: 'TA0003', name: 'Persistence' },
  privilege_escalation: { uid: 'TA0004', name: 'Privilege Escalation' },
  defense_evasion: { uid: 'TA0005', name: 'Defense Evasion' },
  credential_access: { uid: 'TA0006', name: 'Credential Access' },
  discovery: { uid: 'TA0007', name: 'Discovery' },
  lateral_movement: { uid: 'TA0008', name: 'Lateral Movement' },
  collection: { uid: 'TA0009', name: 'Collection' },
  command_and_control: { uid: 'TA0011', name: 'Command and Control' },
  exfiltration: { uid: 'TA0010', name: 'Exfiltration' },
  impact: { uid: 'TA0040', name: 'Impact' },
};

/**
 * Techniques from Sigma `attack.*` tags. Sigma does not say which tactic goes with which
 * technique, so a tactic is attached only when the rule names exactly one.
 */
export function techniquesFromSigmaTags(tags: readonly string[]): FindingTechnique[] {
  const techniques: string[] = [];
  const tactics: { uid: string; name: string }[] = [];
  for (const raw of tags) {
    const tag = raw.toLowerCase();
    if (!tag.startsWith('attack.')) continue;
    const value = tag.slice('attack.'.length);
    if (/^t\d{4}(\.\d{3})?$/.test(value)) {
      const uid = value.toUpperCase();
      if (!techniques.includes(uid)) techniques.push(uid);
    } else {
      const tactic = TACTICS[value.replaceAll('-', '_')];
      if (tactic && !tactics.includes(tactic)) tactics.push(tactic);
    }
  }
  const tactic = tactics.length === 1 ? tactics[0] : undefined;
  return techniques.map((uid) => ({ uid, name: null, tactic: tactic ?? null }));
}

/** OCSF user.type_id from CloudTrail userIdentity.type. */
function userTypeId(principalType: string | null | undefined): number {
  switch (principalType) {
    case null:
    case undefined:
    case 'Unknown':
      return 0;
    case 'IAMUser':
      return 1;
    case 'Root':
      return 2;
    case 'AWSService':
      return 3;
    default:
      return 99;
  }
}

/** Last path segment of an ARN (user or role name); null for a service principal. */
function principalName(principal: string): string | null {
  if (!principal.startsWith('arn:')) return null;
  const resource = principal.split(':').slice(5).join(':');
  const name = resource.split('/').pop();
  return name && name !== resource ? name : resource === 'root' ? 'root' : null;
}

function actorOf(
  principal: string,
  principalType: string | null | undefined,
  accountId: string,
  sessionName: string | null | undefined,
): OcsfActor {
  const assumed = principalType === 'AssumedRole';
  return {
    user: {
      uid: principal,
      name: principalName(principal),
      type_id: userTypeId(principalType),
      type: principalType ?? null,
      account: { uid: accountId },
    },
    session: assumed || sessionName ? { uid: sessionName ?? null, issuer: assumed ? principal : null } : null,
  };
}

/** CloudTrail puts a service name or "AWS Internal" where the IP would be; OCSF has domain for that. */
function endpointOf(sourceIp: string | null | undefined): OcsfNetworkEndpoint | null {
  if (!sourceIp) return null;
  return isIP(sourceIp) ? { ip: sourceIp, domain: null } : { ip: null, domain: sourceIp };
}

function evidenceOf(e: AuditEvent, withData: boolean): OcsfEvidence {
  return {
    uid: e.eventId,
    time: e.eventTimeMs,
    api: { operation: e.action, service: { name: e.service } },
    actor: actorOf(e.principal, e.principalType, e.accountId, e.attributes.sessionName),
    src_endpoint: endpointOf(e.sourceIp),
    // raw spelled out when absent, so an event from Avro (raw: null) and one built in memory read the same.
    data: withData ? JSON.stringify({ ...e, raw: e.raw ?? null }) : null,
  };
}

function attackOf(t: FindingTechnique): OcsfAttack {
  const tactic = t.tactic && (t.tactic.uid || t.tactic.name) ? { uid: t.tactic.uid ?? null, name: t.tactic.name ?? null } : null;
  return { technique: { uid: t.uid, name: t.name ?? null }, tactic };
}

export function buildFinding(f: FindingFact): Finding {
  const count = f.count ?? 1;
  const isUpdate = f.update ?? count > 1;
  const uid = findingUidFor(f.analyticId, f.principal, f.windowStartMs);
  // Earliest first, ties by id, so the kept evidences do not depend on arrival order.
  const sorted = [...f.evidences].sort(
    (a, b) => a.eventTimeMs - b.eventTimeMs || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0),
  );
  const firstSeenMs = sorted[0]?.eventTimeMs ?? f.timeMs;
  const lastSeenMs = sorted.at(-1)?.eventTimeMs ?? f.timeMs;
  const where = `${f.accountId}/${f.region}`;
  return {
    class_uid: 2004,
    class_name: 'Detection Finding',
    category_uid: 2,
    category_name: 'Findings',
    activity_id: isUpdate ? 2 : 1,
    activity_name: isUpdate ? 'Update' : 'Create',
    type_uid: isUpdate ? 200402 : 200401,
    type_name: isUpdate ? 'Detection Finding: Update' : 'Detection Finding: Create',
    time: f.timeMs,
    severity_id: SEVERITY_IDS[f.severity],
    severity: SEVERITY_LABELS[f.severity],
    status_id: 1,
    status: 'New',
    message: f.principal === null ? `${f.title} in ${where}` : `${f.title}: ${f.principal} in ${where}`,
    finding_info: {
      uid,
      title: f.title,
      desc: f.desc ?? null,
      types: [f.kind],
      analytic: { uid: f.analyticId, name: f.analyticName, ...ANALYTIC_TYPES[f.kind] },
      first_seen_time: firstSeenMs,
      last_seen_time: lastSeenMs,
      created_time: f.createdMs ?? firstSeenMs,
      src_url: f.srcUrl ?? null,
    },
    cloud: { provider: 'AWS', account: { uid: f.accountId }, region: f.region },
    actor: f.principal === null ? null : actorOf(f.principal, f.principalType, f.accountId, f.sessionName),
    api: f.api ? { operation: f.api.operation, service: { name: f.api.service } } : null,
    src_endpoint: endpointOf(f.sourceIp),
    evidences: sorted.slice(0, MAX_EVIDENCES).map((e) => evidenceOf(e, f.evidenceData ?? true)),
    attacks: (f.techniques ?? []).map(attackOf),
    count,
    metadata: {
      product: { name: 'trailwatch', vendor_name: 'trailwatch', version: pkg.version },
      version: OCSF_VERSION,
      uid: deterministicUuid('trailwatch.finding-event', uid, String(count), String(lastSeenMs)),
      log_name: f.logName ?? null,
    },
    unmapped: { ...f.extras, evidences_total: String(f.evidences.length) },
  };
}

/**
 * The finding as plain OCSF JSON for a SIEM: null fields dropped, evidences[].data as the
 * json_t object OCSF specifies rather than the string Avro carries.
 */
export function findingJson(f: Finding): Record<string, unknown> {
  const withData = {
    ...f,
    evidences: f.evidences.map((e) => ({ ...e, data: e.data === null ? null : (JSON.parse(e.data) as unknown) })),
  };
  return dropNulls(withData) as Record<string, unknown>;
}

function dropNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropNulls);
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) if (v !== null && v !== undefined) out[key] = dropNulls(v);
  return out;
}

/** The `unmapped` key under which a finding names the config topic's version that produced it. */
export const CONFIG_VERSION_KEY = 'configVersion';

/**
 * The finding as produced under config version `version`: named in `unmapped.configVersion`
 * (OCSF has no field for it); null (the file and environment config) leaves the finding as it is.
 */
export function findingWithConfigVersion(f: Finding, version: number | null): Finding {
  if (version === null) return f;
  return { ...f, unmapped: { ...f.unmapped, [CONFIG_VERSION_KEY]: String(version) } };
}
