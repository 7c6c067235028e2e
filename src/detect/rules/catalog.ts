import { ConfigError } from '../../errors.ts';

/**
 * The sensitivity catalog: which API calls matter when a principal makes them for the first time.
 * A first-seen `s3:GetObject` is noise; a first-seen `cloudtrail:StopLogging` is an incident. The
 * first-seen detector raises a finding's severity to the catalog's, and deployments tune the
 * shipped catalog with `mergeCatalog` (overrides come from config).
 *
 * Services are named the way `AuditEvent.service` is filled for CloudTrail: the eventSource,
 * `cloudtrail.amazonaws.com`. Entries and overrides may use the short form `cloudtrail` (no dot);
 * it is expanded to `<short>.amazonaws.com`. Actions are CloudTrail eventNames, case-sensitive.
 */

/** Sigma's levels, so first-seen findings and Sigma rule hits rank on one scale. */
export const SEVERITIES = ['informational', 'low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const CATEGORIES = [
  'logging-and-monitoring',
  'iam-and-identity',
  'kms',
  'organizations',
  'secret-read',
  'data-sharing',
  'network-exposure',
  'execution',
] as const;
export type SensitivityCategory = (typeof CATEGORIES)[number];

export interface CatalogEntry {
  /** `cloudtrail.amazonaws.com`, or the short form `cloudtrail`. */
  service: string;
  action: string;
  category: SensitivityCategory;
  severity: Severity;
  /** true on reads that are sensitive anyway (secret values); informational, never matched against the event. */
  readOnly?: boolean;
}

export interface Sensitivity {
  category: SensitivityCategory;
  severity: Severity;
}

/**
 * How config changes the shipped catalog. Keys name one entry as `service:action`, the service in
 * either form (`kms:Decrypt`, `kms.amazonaws.com:Decrypt`). Applied in order: `remove`, then
 * `severity`, then `add`; every problem (unknown key, bad severity or category) is reported at once.
 *
 * ```yaml
 * catalog:
 *   add: [{ service: dynamodb, action: DeleteTable, category: execution, severity: high }]
 *   severity: { 'kms:Decrypt': informational, 'ec2:CreateInternetGateway': high }
 *   remove: ['ssm:GetParameter']
 * ```
 */
export interface CatalogOverrides {
  /** New entries; an entry for a call already in the catalog replaces it. */
  add?: CatalogEntry[];
  /** New severity of existing entries, keyed `service:action`. */
  severity?: Record<string, Severity>;
  /** Entries to drop, as `service:action`. */
  remove?: string[];
}

/** A catalog compiled for O(1) lookup. Immutable: `mergeCatalog` returns a new one. */
export class SensitivityCatalog {
  readonly #byCall: ReadonlyMap<string, Readonly<CatalogEntry & Sensitivity>>;

  constructor(entries: readonly CatalogEntry[]) {
    const byCall = new Map<string, CatalogEntry>();
    for (const e of entries) {
      const service = fullService(e.service);
      byCall.set(callKey(service, e.action), Object.freeze({ ...e, service }));
    }
    this.#byCall = byCall;
  }

  /** The call's sensitivity, or null when the catalog does not list it. */
  sensitivityOf(service: string, action: string): Sensitivity | null {
    const e = this.#byCall.get(callKey(fullService(service), action));
    return e === undefined ? null : { category: e.category, severity: e.severity };
  }

  has(service: string, action: string): boolean {
    return this.#byCall.has(callKey(fullService(service), action));
  }

  /** A read listed as sensitive anyway (secret values, decrypted parameters): rate baselines keep it although reads are not counted. */
  isSensitiveRead(service: string, action: string): boolean {
    return this.#byCall.get(callKey(fullService(service), action))?.readOnly === true;
  }

  /** Every entry, services in full form, in catalog order. */
  entries(): CatalogEntry[] {
    return [...this.#byCall.values()].map((e) => ({ ...e }));
  }

  get size(): number {
    return this.#byCall.size;
  }
}

/** Ranks severities: informational 0 … critical 4. */
export function severityRank(severity: Severity): number {
  return SEVERITIES.indexOf(severity);
}

/** The severity `steps` levels up (positive) or down, clamped to the scale. */
export function shiftSeverity(severity: Severity, steps: number): Severity {
  const i = Math.min(SEVERITIES.length - 1, Math.max(0, severityRank(severity) + steps));
  return SEVERITIES[i] as Severity;
}

export function maxSeverity(a: Severity, b: Severity): Severity {
  return severityRank(a) >= severityRank(b) ? a : b;
}

/** The catalog with `overrides` applied; throws ConfigError listing every problem. */
export function mergeCatalog(base: SensitivityCatalog, overrides: CatalogOverrides): SensitivityCatalog {
  const problems: string[] = [];
  const known = new Set<string>(Object.keys(overrides as object));
  for (const key of ['add', 'severity', 'remove']) known.delete(key);
  for (const key of known) problems.push(`catalog: unknown key ${JSON.stringify(key)} (expected add, severity, remove)`);

  const byCall = new Map<string, CatalogEntry>();
  for (const e of base.entries()) byCall.set(callKey(e.service, e.action), e);

  (overrides.remove ?? []).forEach((ref, i) => {
    const key = parseRef(ref, `catalog.remove[${i}]`, problems);
    if (key === null) return;
    if (!byCall.delete(key)) problems.push(`catalog.remove[${i}]: ${JSON.stringify(ref)} is not in the catalog`);
  });

  for (const [ref, severity] of Object.entries(overrides.severity ?? {})) {
    const where = `catalog.severity[${JSON.stringify(ref)}]`;
    const key = parseRef(ref, where, problems);
    if (!isSeverity(severity)) {
      problems.push(`${where}: severity ${JSON.stringify(severity)} is not one of ${SEVERITIES.join(', ')}`);
      continue;
    }
    if (key === null) continue;
    const entry = byCall.get(key);
    if (entry === undefined) problems.push(`${where}: not in the catalog (use add for new entries)`);
    else byCall.set(key, { ...entry, severity });
  }

  (overrides.add ?? []).forEach((e, i) => {
    const where = `catalog.add[${i}]`;
    const before = problems.length;
    if (typeof e?.service !== 'string' || e.service === '' || e.service.includes(':')) {
      problems.push(`${where}.service: expected a service such as "s3" or "s3.amazonaws.com"`);
    }
    if (typeof e?.action !== 'string' || e.action === '' || e.action.includes(':')) {
      problems.push(`${where}.action: expected an eventName such as "PutBucketPolicy"`);
    }
    if (!isCategory(e?.category)) problems.push(`${where}.category: ${JSON.stringify(e?.category)} is not one of ${CATEGORIES.join(', ')}`);
    if (!isSeverity(e?.severity)) problems.push(`${where}.severity: ${JSON.stringify(e?.severity)} is not one of ${SEVERITIES.join(', ')}`);
    if (e?.readOnly !== undefined && typeof e.readOnly !== 'boolean') problems.push(`${where}.readOnly: expected a boolean`);
    if (problems.length > before) return;
    const service = fullService(e.service);
    byCall.set(callKey(service, e.action), { ...e, service });
  });

  if (problems.length > 0) throw new ConfigError(problems);
  return new SensitivityCatalog([...byCall.values()]);
}

function parseRef(ref: unknown, where: string, problems: string[]): string | null {
  const text = typeof ref === 'string' ? ref : '';
  const i = text.indexOf(':');
  if (i <= 0 || i === text.length - 1 || text.indexOf(':', i + 1) >= 0) {
    problems.push(`${where}: expected "service:action" (e.g. "kms:Decrypt"), got ${JSON.stringify(ref)}`);
    return null;
  }
  return callKey(fullService(text.slice(0, i)), text.slice(i + 1));
}

function isSeverity(value: unknown): value is Severity {
  return (SEVERITIES as readonly unknown[]).includes(value);
}

function isCategory(value: unknown): value is SensitivityCategory {
  return (CATEGORIES as readonly unknown[]).includes(value);
}

function fullService(service: string): string {
  return service.includes('.') ? service : `${service}.amazonaws.com`;
}

function callKey(service: string, action: string): string {
  return `${service}\u0000${action}`;
}

type Row = [action: string, severity: Severity, readOnly?: boolean];

/** Builds entries of one service and category from compact rows. */
function group(category: SensitivityCategory, service: string, rows: Row[]): CatalogEntry[] {
  return rows.map(([action, severity, readOnly]) => ({
    service: fullService(service),
    action,
    category,
    severity,
    ...(readOnly === undefined ? {} : { readOnly }),
  }));
}

/**
 * The shipped entries. Severity reads as "how bad if this principal has never done it before":
 * blinding the audit trail or leaving the organization is critical; a secret read a workload
 * never made is medium. SSM parameter reads are listed whatever `WithDecryption` says: the
 * normalized event does not carry request parameters.
 */
export const DEFAULT_CATALOG_ENTRIES: readonly CatalogEntry[] = Object.freeze([
  ...group('logging-and-monitoring', 'cloudtrail', [
    ['StopLogging', 'critical'],
    ['DeleteTrail', 'critical'],
    ['UpdateTrail', 'high'],
    ['PutEventSelectors', 'high'],
    ['PutInsightSelectors', 'medium'],
    ['DeleteEventDataStore', 'critical'],
  ]),
  ...group('logging-and-monitoring', 'config', [
    ['StopConfigurationRecorder', 'high'],
    ['DeleteConfigurationRecorder', 'high'],
    ['DeleteDeliveryChannel', 'high'],
    ['DeleteConfigRule', 'medium'],
  ]),
  ...group('logging-and-monitoring', 'guardduty', [
    ['DeleteDetector', 'critical'],
    ['UpdateDetector', 'high'],
    ['DisassociateFromMasterAccount', 'high'],
    ['DisassociateFromAdministratorAccount', 'high'],
    ['DeleteMembers', 'high'],
    ['CreateIPSet', 'medium'],
    ['UpdateIPSet', 'medium'],
    ['CreateFilter', 'medium'],
  ]),
  ...group('logging-and-monitoring', 'securityhub', [['DisableSecurityHub', 'high']]),
  ...group('logging-and-monitoring', 'logs', [
    ['DeleteLogGroup', 'high'],
    ['DeleteLogStream', 'medium'],
    ['PutRetentionPolicy', 'medium'],
    ['DeleteSubscriptionFilter', 'medium'],
  ]),
  ...group('logging-and-monitoring', 'monitoring', [
    ['DeleteAlarms', 'medium'],
    ['DisableAlarmActions', 'medium'],
  ]),
  ...group('logging-and-monitoring', 'ec2', [['DeleteFlowLogs', 'high']]),
  ...group('iam-and-identity', 'iam', [
    ['CreateUser', 'medium'],
    ['CreateAccessKey', 'high'],
    ['CreateLoginProfile', 'high'],
    ['UpdateLoginProfile', 'high'],
    ['AttachUserPolicy', 'high'],
    ['AttachRolePolicy', 'high'],
    ['AttachGroupPolicy', 'high'],
    ['PutUserPolicy', 'high'],
    ['PutRolePolicy', 'high'],
    ['PutGroupPolicy', 'high'],
    ['CreatePolicyVersion', 'high'],
    ['SetDefaultPolicyVersion', 'high'],
    ['AddUserToGroup', 'high'],
    ['UpdateAssumeRolePolicy', 'high'],
    ['CreateRole', 'medium'],
    ['DeactivateMFADevice', 'high'],
    ['DeleteVirtualMFADevice', 'medium'],
    ['CreateSAMLProvider', 'high'],
    ['CreateOpenIDConnectProvider', 'high'],
    ['UpdateAccessKey', 'medium'],
  ]),
  ...group('iam-and-identity', 'sts', [['GetFederationToken', 'medium']]),
  ...group('iam-and-identity', 'sso', [
    ['CreatePermissionSet', 'medium'],
    ['AttachManagedPolicyToPermissionSet', 'high'],
    ['PutInlinePolicyToPermissionSet', 'high'],
    ['CreateAccountAssignment', 'high'],
  ]),
  ...group('kms', 'kms', [
    ['DisableKey', 'high'],
    ['ScheduleKeyDeletion', 'critical'],
    ['PutKeyPolicy', 'high'],
    ['CreateGrant', 'medium'],
    ['DisableKeyRotation', 'medium'],
    ['Decrypt', 'low', true],
  ]),
  ...group('organizations', 'organizations', [
    ['LeaveOrganization', 'critical'],
    ['RemoveAccountFromOrganization', 'critical'],
    ['DeleteOrganization', 'critical'],
    ['DetachPolicy', 'high'],
    ['DeletePolicy', 'high'],
    ['UpdatePolicy', 'high'],
    ['DisableAWSServiceAccess', 'high'],
    ['DeregisterDelegatedAdministrator', 'high'],
  ]),
  ...group('secret-read', 'secretsmanager', [
    ['GetSecretValue', 'medium', true],
    ['BatchGetSecretValue', 'medium', true],
  ]),
  ...group('secret-read', 'ssm', [
    ['GetParameter', 'low', true],
    ['GetParameters', 'low', true],
    ['GetParametersByPath', 'medium', true],
  ]),
  ...group('data-sharing', 'ec2', [
    ['ModifySnapshotAttribute', 'high'],
    ['ModifyImageAttribute', 'high'],
  ]),
  ...group('data-sharing', 'rds', [
    ['ModifyDBSnapshotAttribute', 'high'],
    ['ModifyDBClusterSnapshotAttribute', 'high'],
  ]),
  ...group('data-sharing', 's3', [
    ['PutBucketPolicy', 'high'],
    ['PutBucketAcl', 'high'],
    ['PutObjectAcl', 'medium'],
    ['DeletePublicAccessBlock', 'high'],
    ['PutBucketPublicAccessBlock', 'medium'],
    ['DeleteBucketPolicy', 'medium'],
    ['PutBucketReplication', 'medium'],
  ]),
  ...group('network-exposure', 'ec2', [
    ['AuthorizeSecurityGroupIngress', 'medium'],
    ['AuthorizeSecurityGroupEgress', 'low'],
    ['CreateInternetGateway', 'medium'],
    ['AttachInternetGateway', 'medium'],
    ['CreateVpcPeeringConnection', 'medium'],
    ['AcceptVpcPeeringConnection', 'medium'],
    ['ModifyInstanceAttribute', 'medium'],
    ['CreateNetworkAclEntry', 'medium'],
    ['ReplaceNetworkAclEntry', 'medium'],
  ]),
  ...group('execution', 'ssm', [
    ['SendCommand', 'high'],
    ['StartSession', 'medium'],
  ]),
  ...group('execution', 'lambda', [
    ['UpdateFunctionCode', 'high'],
    ['CreateFunction', 'medium'],
    ['AddPermission', 'high'],
    ['UpdateFunctionConfiguration', 'medium'],
    // CloudTrail names Lambda calls after their API version.
    ['UpdateFunctionCode20150331v2', 'high'],
    ['CreateFunction20150331', 'medium'],
    ['AddPermission20150331', 'high'],
    ['AddPermission20150331v2', 'high'],
    ['UpdateFunctionConfiguration20150331v2', 'medium'],
  ]),
  ...group('execution', 'ec2', [['RunInstances', 'low']]),
]);

/** The shipped catalog. */
export const DEFAULT_CATALOG: SensitivityCatalog = new SensitivityCatalog(DEFAULT_CATALOG_ENTRIES);

/** The call's sensitivity in `catalog` (the shipped one by default), or null. O(1). */
export function sensitivityOf(service: string, action: string, catalog: SensitivityCatalog = DEFAULT_CATALOG): Sensitivity | null {
  return catalog.sensitivityOf(service, action);
}
