/**
 * Labelled security scenarios for `npm run bench:security`: the shapes real attack detonations
 * leave in CloudTrail, acted out by established principals of the quality harness's benign
 * population (generator.ts), after its first `injectAfterDays` days.
 *
 * Unlike the rate anomalies of scenarios.ts these are exact: one call, or a few dozen, at given
 * times. Each injected call is built as a CloudTrail record first (request parameters, response
 * elements, additionalEventData, the identity as CloudTrail writes it) and normalized by the
 * ingest code, so the event and its `raw` agree and rules reading the record see what they would
 * see live. The identity is the profile's own (principal, type, account, region, user agent,
 * source IP): a stolen credential used from the victim's usual place, the hard case. IAM and
 * sign-in calls keep the profile's region too, though CloudTrail logs them in us-east-1, so that
 * a first-seen region does not help the detectors.
 */
import type { AuditEvent } from '../../src/contracts/types.ts';
import { mulberry32 } from '../../src/demo/traffic.ts';
import { deterministicUuid } from '../../src/emit/ids.ts';
import { normalizeCloudTrail } from '../../src/ingest/cloudtrail.ts';
import { DAY_MS, MINUTE_MS, type Population, type PrincipalKind, type PrincipalProfile } from './generator.ts';

export const SECURITY_CLASSES = [
  'single-critical',
  'secret-harvesting',
  'wide-enumeration',
  'persistence-chain',
  'console-no-mfa',
] as const;
export type SecurityClass = (typeof SECURITY_CLASSES)[number];

/** What the scorer knows about an injected scenario. */
export interface SecurityLabel {
  /** `<class>-<n>`. */
  id: string;
  cls: SecurityClass;
  /** single-critical: the call made (e.g. `StopLogging`); the class name otherwise. */
  variant: string;
  principal: string;
  principalType: string;
  principalKind: PrincipalKind;
  accountId: string;
  region: string;
  /** `service:action` of every call, distinct, in order of first call. */
  actions: string[];
  /** Every injected call's eventId. */
  eventIds: string[];
  /** Event time of the first call. */
  startMs: number;
  /** Event time of the last call. */
  endMs: number;
}

export interface SecurityScenario {
  label: SecurityLabel;
  /** The injected calls, in event-time order, each with its CloudTrail record in `raw`. */
  events: AuditEvent[];
}

export interface SecurityPlanOptions {
  population: Population;
  seed: number;
  /** Instances of each class (default 6). */
  instancesPerClass?: number;
  /** No scenario before this many days of event time (default 8). */
  injectAfterDays?: number;
}

/** Distance between scenario starts: the longest (a persistence chain, ≤ 25 min) plus the 30 min scoring tail and a margin. */
export const SECURITY_SLOT_MS = 2 * 60 * MINUTE_MS;
/** Room left at the end of the run for the last scenario's tail. */
const END_MARGIN_MS = 2 * 60 * MINUTE_MS;
/** An account outside the population: where an attacker points trust and shares. */
const ATTACKER_ACCOUNT = '444455556666';
const ENUMERATION_ACTIONS = 19;
const ENUMERATION_CALLS = 35;
const ENUMERATION_SPAN_MS = 40_000;
/** At most this many calls of one action in the whole enumeration, so never more in one minute. */
const ENUMERATION_MAX_PER_ACTION = 3;

/** One CloudTrail call, before the identity and time are put on it. */
export interface Call {
  /** eventSource, e.g. `cloudtrail.amazonaws.com`. */
  service: string;
  action: string;
  readOnly: boolean;
  requestParameters: unknown;
  responseElements: unknown;
  additionalEventData?: Record<string, unknown>;
  /** `AwsApiCall` unless said otherwise. */
  eventType?: string;
}

/** The per-instance randomness and names a call builder needs. */
export interface CallContext {
  r: () => number;
  p: PrincipalProfile;
  /** Seeds ids that must differ between instances. */
  instanceId: string;
  /** Another user of the same account (CreateAccessKey, CreateLoginProfile target). */
  otherUser: string;
  /** Event time of the scenario's first call. */
  startMs: number;
}

const svc = (short: string): string => `${short}.amazonaws.com`;
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
const intBetween = (r: () => number, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));

function shuffled<T>(r: () => number, xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** An AWS-style unique id (`AIDA…`, `AKIA…`, 21 characters), the same for the same inputs. */
function awsId(prefix: string, ...parts: string[]): string {
  const hex = deterministicUuid('bench-security-id', prefix, ...parts)
    .replaceAll('-', '')
    .toUpperCase();
  return `${prefix}${hex.slice(0, 21 - prefix.length)}`;
}

function shortHex(n: number, ...parts: string[]): string {
  return deterministicUuid('bench-security-hex', ...parts)
    .replaceAll('-', '')
    .slice(0, n);
}

/** `2026-01-13T10:11:12Z`: CloudTrail's format, whole seconds. */
export function cloudTrailTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** IAM's `Jan 13, 2026, 10:11:12 AM` in response elements. */
function iamDate(ms: number): string {
  const d = new Date(ms);
  const month = d.toLocaleString('en-US', { month: 'short', timeZone: 'UTC' });
  const h = d.getUTCHours();
  const hh = h % 12 === 0 ? 12 : h % 12;
  const mm = String(d.getUTCMinutes()).padStart(2, '0');
  const ss = String(d.getUTCSeconds()).padStart(2, '0');
  return `${month} ${d.getUTCDate()}, ${d.getUTCFullYear()}, ${hh}:${mm}:${ss} ${h < 12 ? 'AM' : 'PM'}`;
}

function lastSegment(arn: string): string {
  return arn.slice(arn.lastIndexOf('/') + 1);
}

/** userIdentity as CloudTrail writes it for the profile; a console sign-in carries no access key. */
function userIdentity(p: PrincipalProfile, timeMs: number, signIn: boolean): Record<string, unknown> {
  const name = lastSegment(p.principal);
  if (p.principalType === 'IAMUser') {
    const onConsole = p.userAgent.includes('console');
    const identity: Record<string, unknown> = {
      type: 'IAMUser',
      principalId: awsId('AIDA', p.principal),
      arn: p.principal,
      accountId: p.accountId,
      userName: name,
    };
    if (signIn) return identity;
    // Console calls use the sign-in session's temporary key; the CLI a long-term key.
    identity.accessKeyId = onConsole ? awsId('ASIA', p.principal, String(Math.floor(timeMs / DAY_MS))) : awsId('AKIA', p.principal);
    if (onConsole) {
      identity.sessionContext = {
        sessionIssuer: {},
        webIdFederationData: {},
        attributes: { creationDate: cloudTrailTime(timeMs - 20 * MINUTE_MS), mfaAuthenticated: 'false' },
      };
    }
    return identity;
  }
  const roleId = awsId('AROA', p.principal);
  const session = `i-0${shortHex(16, p.principal, 'session')}`;
  return {
    type: 'AssumedRole',
    principalId: `${roleId}:${session}`,
    arn: `${p.principal}/${session}`,
    accountId: p.accountId,
    accessKeyId: awsId('ASIA', p.principal, String(Math.floor(timeMs / (6 * 3_600_000)))),
    sessionContext: {
      sessionIssuer: {
        type: 'Role',
        principalId: roleId,
        arn: `arn:aws:iam::${p.accountId}:role/${name}`,
        accountId: p.accountId,
        userName: name,
      },
      attributes: { creationDate: cloudTrailTime(Math.floor(timeMs / (6 * 3_600_000)) * 6 * 3_600_000), mfaAuthenticated: 'false' },
      ec2RoleDelivery: '2.0',
    },
  };
}

/** The CloudTrail record of `call` made by `p` at `timeMs`. */
export function cloudTrailRecord(p: PrincipalProfile, call: Call, timeMs: number, eventId: string): Record<string, unknown> {
  const eventType = call.eventType ?? 'AwsApiCall';
  const signIn = eventType === 'AwsConsoleSignIn';
  const record: Record<string, unknown> = {
    eventVersion: signIn ? '1.09' : '1.10',
    userIdentity: userIdentity(p, timeMs, signIn),
    eventTime: cloudTrailTime(timeMs),
    eventSource: call.service,
    eventName: call.action,
    awsRegion: p.region,
    sourceIPAddress: p.sourceIp,
    userAgent: p.userAgent,
    requestParameters: call.requestParameters,
    responseElements: call.responseElements,
  };
  if (call.additionalEventData) record.additionalEventData = call.additionalEventData;
  if (!signIn) record.requestID = deterministicUuid('bench-security-request', eventId);
  Object.assign(record, {
    eventID: eventId,
    readOnly: call.readOnly,
    eventType,
    managementEvent: true,
    recipientAccountId: p.accountId,
    eventCategory: 'Management',
    tlsDetails: {
      tlsVersion: 'TLSv1.3',
      cipherSuite: 'TLS_AES_128_GCM_SHA256',
      clientProvidedHostHeader: signIn
        ? 'signin.aws.amazon.com'
        : `${call.service.replace('.amazonaws.com', '')}.${p.region}.amazonaws.com`,
    },
  });
  return record;
}

// ── the calls ───────────────────────────────────────────────────────────

const APPS = ['billing', 'orders', 'payments', 'search', 'reports', 'identity', 'ledger', 'catalog', 'notify', 'export'];
const trailArn = (c: CallContext): string => `arn:aws:cloudtrail:${c.p.region}:${c.p.accountId}:trail/org-management-events`;

/** single-critical: one call each, with the request parameters of the detonations. */
export const CRITICAL_CALLS: ReadonlyArray<{ variant: string; make: (c: CallContext) => Call }> = [
  {
    variant: 'StopLogging',
    make: (c) => ({
      service: svc('cloudtrail'),
      action: 'StopLogging',
      readOnly: false,
      requestParameters: { name: trailArn(c) },
      responseElements: null,
    }),
  },
  {
    variant: 'DeleteTrail',
    make: (c) => ({
      service: svc('cloudtrail'),
      action: 'DeleteTrail',
      readOnly: false,
      requestParameters: { name: trailArn(c) },
      responseElements: null,
    }),
  },
  {
    variant: 'PutEventSelectors',
    make: (c) => {
      // Management events off: the trail keeps running and records nothing that matters.
      const eventSelectors = [
        { readWriteType: 'ReadOnly', includeManagementEvents: false, dataResources: [], excludeManagementEventSources: [] },
      ];
      return {
        service: svc('cloudtrail'),
        action: 'PutEventSelectors',
        readOnly: false,
        requestParameters: { trailName: trailArn(c), eventSelectors },
        responseElements: { trailARN: trailArn(c), eventSelectors },
      };
    },
  },
  {
    variant: 'DeleteFlowLogs',
    make: (c) => ({
      service: svc('ec2'),
      action: 'DeleteFlowLogs',
      readOnly: false,
      requestParameters: { DeleteFlowLogsRequest: { FlowLogId: { content: `fl-0${shortHex(16, c.instanceId, 'fl')}`, tag: 1 } } },
      responseElements: {
        DeleteFlowLogsResponse: {
          xmlns: 'http://ec2.amazonaws.com/doc/2016-11-15/',
          requestId: deterministicUuid(c.instanceId, 'req'),
          unsuccessful: '',
        },
      },
    }),
  },
  {
    variant: 'ModifySnapshotAttribute',
    make: (c) => ({
      service: svc('ec2'),
      action: 'ModifySnapshotAttribute',
      readOnly: false,
      requestParameters: {
        snapshotId: `snap-0${shortHex(16, c.instanceId, 'snap')}`,
        createVolumePermission: { add: { items: [{ group: 'all' }] } },
        attributeType: 'CREATE_VOLUME_PERMISSION',
      },
      responseElements: { requestId: deterministicUuid(c.instanceId, 'req'), _return: true },
    }),
  },
  {
    variant: 'ModifyImageAttribute',
    make: (c) => ({
      service: svc('ec2'),
      action: 'ModifyImageAttribute',
      readOnly: false,
      requestParameters: {
        imageId: `ami-0${shortHex(16, c.instanceId, 'ami')}`,
        launchPermission: { add: { items: [{ group: 'all' }] } },
        attributeType: 'launchPermission',
      },
      responseElements: { requestId: deterministicUuid(c.instanceId, 'req'), _return: true },
    }),
  },
  {
    variant: 'CreateLoginProfile',
    make: (c) => ({
      service: svc('iam'),
      action: 'CreateLoginProfile',
      readOnly: false,
      requestParameters: { userName: c.otherUser, passwordResetRequired: false },
      responseElements: { loginProfile: { userName: c.otherUser, createDate: iamDate(c.startMs), passwordResetRequired: false } },
    }),
  },
  {
    variant: 'CreateAccessKey',
    make: (c) => ({
      service: svc('iam'),
      action: 'CreateAccessKey',
      readOnly: false,
      requestParameters: { userName: c.otherUser },
      responseElements: {
        accessKey: {
          accessKeyId: awsId('AKIA', c.instanceId, c.otherUser),
          status: 'Active',
          userName: c.otherUser,
          createDate: iamDate(c.startMs),
        },
      },
    }),
  },
  {
    variant: 'UpdateFunctionCode',
    make: (c) => {
      const name = `${pick(c.r, APPS)}-handler`;
      return {
        service: svc('lambda'),
        // CloudTrail names Lambda calls after their API version.
        action: 'UpdateFunctionCode20150331v2',
        readOnly: false,
        requestParameters: { functionName: name, publish: false, dryRun: false },
        responseElements: {
          functionName: name,
          functionArn: `arn:aws:lambda:${c.p.region}:${c.p.accountId}:function:${name}`,
          runtime: 'python3.12',
          handler: 'index.handler',
          codeSize: 1_284,
          codeSha256: Buffer.from(shortHex(32, c.instanceId, 'code')).toString('base64'),
          version: '$LATEST',
          state: 'Active',
          lastUpdateStatus: 'InProgress',
          packageType: 'Zip',
        },
      };
    },
  },
  {
    variant: 'AddPermission',
    make: (c) => {
      const name = `${pick(c.r, APPS)}-handler`;
      const statement = {
        Sid: `public-${shortHex(8, c.instanceId)}`,
        Effect: 'Allow',
        Principal: '*',
        Action: 'lambda:InvokeFunction',
        Resource: `arn:aws:lambda:${c.p.region}:${c.p.accountId}:function:${name}`,
      };
      return {
        service: svc('lambda'),
        action: 'AddPermission20150331v2',
        readOnly: false,
        requestParameters: { functionName: name, statementId: statement.Sid, action: 'lambda:InvokeFunction', principal: '*' },
        responseElements: { statement: JSON.stringify(statement) },
      };
    },
  },
];

/** wide-enumeration draws its actions from these (reads across 13 services, as discovery tools call them). */
export const ENUMERATION_POOL: ReadonlyArray<[service: string, action: string]> = [
  ['iam', 'ListUsers'],
  ['iam', 'ListRoles'],
  ['iam', 'ListPolicies'],
  ['iam', 'ListGroups'],
  ['iam', 'ListAccessKeys'],
  ['iam', 'GetAccountSummary'],
  ['iam', 'GetAccountAuthorizationDetails'],
  ['s3', 'ListBuckets'],
  ['s3', 'GetBucketPolicy'],
  ['s3', 'GetBucketAcl'],
  ['ec2', 'DescribeInstances'],
  ['ec2', 'DescribeSecurityGroups'],
  ['ec2', 'DescribeVpcs'],
  ['ec2', 'DescribeSubnets'],
  ['ec2', 'DescribeSnapshots'],
  ['ec2', 'DescribeRegions'],
  ['lambda', 'ListFunctions20150331'],
  ['secretsmanager', 'ListSecrets'],
  ['ssm', 'DescribeParameters'],
  ['kms', 'ListKeys'],
  ['dynamodb', 'ListTables'],
  ['rds', 'DescribeDBInstances'],
  ['cloudtrail', 'DescribeTrails'],
  ['cloudtrail', 'GetTrailStatus'],
  ['guardduty', 'ListDetectors'],
  ['sts', 'GetCallerIdentity'],
  ['organizations', 'DescribeOrganization'],
];

function enumerationCall(c: CallContext, service: string, action: string): Call {
  const bucket = `${pick(c.r, APPS)}-${c.p.accountId}-data`;
  const params: Record<string, unknown> = {
    's3:ListBuckets': { Host: 's3.amazonaws.com' },
    's3:GetBucketPolicy': { bucketName: bucket, Host: `${bucket}.s3.amazonaws.com`, policy: '' },
    's3:GetBucketAcl': { bucketName: bucket, Host: `${bucket}.s3.amazonaws.com`, acl: '' },
    'ec2:DescribeInstances': { instancesSet: {}, filterSet: {} },
    'ec2:DescribeRegions': { regionSet: {}, allRegions: true },
    'iam:ListAccessKeys': { userName: c.otherUser },
    'iam:GetAccountAuthorizationDetails': { filter: ['User', 'Role', 'Group', 'LocalManagedPolicy'] },
    'cloudtrail:GetTrailStatus': { name: trailArn(c) },
  };
  return {
    service: svc(service),
    action,
    readOnly: true,
    requestParameters: params[`${service}:${action}`] ?? null,
    responseElements: null,
  };
}

// ── the classes ─────────────────────────────────────────────────────────

interface Timed {
  offsetMs: number;
  call: Call;
}

function singleCritical(c: CallContext, variant: number): { variant: string; calls: Timed[] } {
  const v = CRITICAL_CALLS[variant] as (typeof CRITICAL_CALLS)[number];
  return { variant: v.variant, calls: [{ offsetMs: 0, call: v.make(c) }] };
}

/** GetSecretValue on 5–10 secrets, GetParameters with decryption, DescribeInstanceInformation, SendCommand: a few minutes. */
function secretHarvesting(c: CallContext): Timed[] {
  const { r } = c;
  const out: Timed[] = [];
  let t = 0;
  const apps = shuffled(r, APPS).slice(0, intBetween(r, 5, 10));
  for (const app of apps) {
    const secretId = `arn:aws:secretsmanager:${c.p.region}:${c.p.accountId}:secret:prod/${app}/db-credentials-${shortHex(6, c.instanceId, app)}`;
    out.push({
      offsetMs: t,
      call: {
        service: svc('secretsmanager'),
        action: 'GetSecretValue',
        readOnly: true,
        requestParameters: { secretId },
        responseElements: null,
      },
    });
    t += intBetween(r, 3, 15) * 1_000;
  }
  const names = apps.slice(0, 3).map((app) => `/prod/${app}/api-key`);
  out.push({
    offsetMs: t,
    call: {
      service: svc('ssm'),
      action: 'GetParameters',
      readOnly: true,
      requestParameters: { names, withDecryption: true },
      responseElements: null,
    },
  });
  t += intBetween(r, 10, 40) * 1_000;
  out.push({
    offsetMs: t,
    call: {
      service: svc('ssm'),
      action: 'DescribeInstanceInformation',
      readOnly: true,
      requestParameters: { maxResults: 50 },
      responseElements: null,
    },
  });
  t += intBetween(r, 20, 60) * 1_000;
  const instanceIds = [`i-0${shortHex(16, c.instanceId, 'target')}`];
  const commandId = deterministicUuid(c.instanceId, 'command');
  out.push({
    offsetMs: t,
    call: {
      service: svc('ssm'),
      action: 'SendCommand',
      readOnly: false,
      requestParameters: {
        instanceIds,
        documentName: 'AWS-RunShellScript',
        parameters: 'HIDDEN_DUE_TO_SECURITY_REASONS',
        interactive: false,
      },
      responseElements: { command: { commandId, documentName: 'AWS-RunShellScript', instanceIds, status: 'Pending', targetCount: 1 } },
    },
  });
  return out;
}

/** 19 distinct reads over several services, 35 calls in 40 s, at most 3 of one action. */
function wideEnumeration(c: CallContext): Timed[] {
  const { r } = c;
  const actions = shuffled(r, ENUMERATION_POOL).slice(0, ENUMERATION_ACTIONS);
  const counts = actions.map(() => 1);
  for (let extra = ENUMERATION_CALLS - ENUMERATION_ACTIONS; extra > 0; ) {
    const i = Math.floor(r() * counts.length);
    if ((counts[i] as number) >= ENUMERATION_MAX_PER_ACTION) continue;
    counts[i] = (counts[i] as number) + 1;
    extra--;
  }
  const order = shuffled(
    r,
    actions.flatMap((a, i) => Array<[string, string]>(counts[i] as number).fill(a)),
  );
  // Whole seconds (CloudTrail's resolution) in [0, 40 s]: the first at 0, the last at 40 s.
  const offsets = order
    .map((_, i) => (i === 0 ? 0 : i === order.length - 1 ? ENUMERATION_SPAN_MS : intBetween(r, 0, 40) * 1_000))
    .sort((a, b) => a - b);
  return order.map(([service, action], i) => ({ offsetMs: offsets[i] as number, call: enumerationCall(c, service, action) }));
}

/** CreateUser, CreateRole, AttachRolePolicy, PutBucketPolicy: one each, 2–6 minutes apart. */
function persistenceChain(c: CallContext): Timed[] {
  const { r, p } = c;
  const offsets = [0];
  for (let i = 1; i < 4; i++) offsets.push((offsets[i - 1] as number) + intBetween(r, 120, 360) * 1_000);
  const at = (i: number): string => iamDate(c.startMs + (offsets[i] as number));
  const userName = pick(r, ['support-backup', 'svc-monitoring', 'ops-automation', 'aws-health-check']);
  const roleName = pick(r, ['OrganizationAccountAccessRole-2', 'CrossAccountAuditRole', 'LambdaEdgeReplicator']);
  const bucket = `${pick(r, APPS)}-${p.accountId}-backups`;
  const trust = {
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ATTACKER_ACCOUNT}:root` }, Action: 'sts:AssumeRole' }],
  };
  const bucketPolicy = {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'replication',
        Effect: 'Allow',
        Principal: { AWS: `arn:aws:iam::${ATTACKER_ACCOUNT}:root` },
        Action: 's3:*',
        Resource: [`arn:aws:s3:::${bucket}`, `arn:aws:s3:::${bucket}/*`],
      },
    ],
  };
  const calls: Call[] = [
    {
      service: svc('iam'),
      action: 'CreateUser',
      readOnly: false,
      requestParameters: { userName },
      responseElements: {
        user: {
          path: '/',
          userName,
          userId: awsId('AIDA', c.instanceId, userName),
          arn: `arn:aws:iam::${p.accountId}:user/${userName}`,
          createDate: at(0),
        },
      },
    },
    {
      service: svc('iam'),
      action: 'CreateRole',
      readOnly: false,
      requestParameters: { roleName, assumeRolePolicyDocument: JSON.stringify(trust) },
      responseElements: {
        role: {
          path: '/',
          roleName,
          roleId: awsId('AROA', c.instanceId, roleName),
          arn: `arn:aws:iam::${p.accountId}:role/${roleName}`,
          createDate: at(1),
          assumeRolePolicyDocument: encodeURIComponent(JSON.stringify(trust)),
        },
      },
    },
    {
      service: svc('iam'),
      action: 'AttachRolePolicy',
      readOnly: false,
      requestParameters: { roleName, policyArn: 'arn:aws:iam::aws:policy/AdministratorAccess' },
      responseElements: null,
    },
    {
      service: svc('s3'),
      action: 'PutBucketPolicy',
      readOnly: false,
      requestParameters: { bucketPolicy, bucketName: bucket, Host: `${bucket}.s3.amazonaws.com`, policy: '' },
      responseElements: null,
      additionalEventData: {
        SignatureVersion: 'SigV4',
        CipherSuite: 'TLS_AES_128_GCM_SHA256',
        bytesTransferredIn: JSON.stringify(bucketPolicy).length,
        AuthenticationMethod: 'AuthHeader',
        'x-amz-id-2': Buffer.from(shortHex(32, c.instanceId, 'amz')).toString('base64'),
        bytesTransferredOut: 0,
      },
    },
  ];
  return calls.map((call, i) => ({ offsetMs: offsets[i] as number, call }));
}

/** A successful console sign-in without MFA. */
function consoleNoMfa(): Timed[] {
  return [
    {
      offsetMs: 0,
      call: {
        service: svc('signin'),
        action: 'ConsoleLogin',
        readOnly: false,
        eventType: 'AwsConsoleSignIn',
        requestParameters: null,
        responseElements: { ConsoleLogin: 'Success' },
        additionalEventData: {
          LoginTo: 'https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB',
          MobileVersion: 'No',
          MFAUsed: 'No',
        },
      },
    },
  ];
}

// ── the plan ────────────────────────────────────────────────────────────

/** The scenarios of a run: `instancesPerClass` of each class, on distinct principals, in distinct 2-hour slots. */
export function planSecurityScenarios(o: SecurityPlanOptions): SecurityScenario[] {
  const { population } = o;
  const perClass = o.instancesPerClass ?? 6;
  const injectAfterDays = o.injectAfterDays ?? 8;
  const rand = mulberry32(o.seed ^ 0x5ec_0001);
  const windowStart = population.startMs + injectAfterDays * DAY_MS;
  const windowEnd = population.startMs + population.days * DAY_MS - END_MARGIN_MS;
  const slots = Math.floor((windowEnd - windowStart) / SECURITY_SLOT_MS);
  const total = perClass * SECURITY_CLASSES.length;
  if (slots < total) {
    throw new Error(
      `${total} scenarios need ${total} slots of ${SECURITY_SLOT_MS / 3_600_000} h after day ${injectAfterDays}, but ${population.days} days leave ${Math.max(0, slots)}: run more days or fewer instances`,
    );
  }
  const slotStarts = shuffled(
    rand,
    Array.from({ length: slots }, (_, i) => windowStart + i * SECURITY_SLOT_MS),
  ).slice(0, total);
  const classes = shuffled(
    rand,
    SECURITY_CLASSES.flatMap((k) => Array<SecurityClass>(perClass).fill(k)),
  );
  // single-critical instances take the calls in a seeded order, so a run covers different services.
  const variantOrder = shuffled(
    rand,
    CRITICAL_CALLS.map((_, i) => i),
  );

  // Established: calls every working day at least, so a week of history lies behind each scenario.
  const established = population.profiles.filter((p) => (p.kind === 'human' || p.kind === 'service') && p.ratePerMinute >= 0.1);
  const humans = established.filter((p) => p.kind === 'human');
  const services = established.filter((p) => p.kind === 'service');
  const consoleHumans = humans.filter((p) => p.userAgent.includes('console'));
  const used = new Set<string>();
  const choose = (candidates: PrincipalProfile[], r: () => number): PrincipalProfile => {
    const free = candidates.filter((p) => !used.has(p.principal));
    if (free.length === 0) throw new Error('the population is too small for this many scenarios');
    const p = free[Math.floor(r() * free.length)] as PrincipalProfile;
    used.add(p.principal);
    return p;
  };

  const count = new Map<SecurityClass, number>();
  return classes.map((cls, i): SecurityScenario => {
    const n = (count.get(cls) ?? 0) + 1;
    count.set(cls, n);
    const id = `${cls}-${n}`;
    const r = mulberry32(o.seed * 7_919 + i + 1);
    const startMs = (slotStarts[i] as number) + intBetween(r, 0, 30 * 60) * 1_000;
    // Who fits: secrets and persistence are a workload's stolen role (service roles never call
    // anything outside their habits, so "never did it" holds); a console sign-in is a person's.
    const p =
      cls === 'console-no-mfa'
        ? choose(consoleHumans, r)
        : cls === 'secret-harvesting' || cls === 'persistence-chain'
          ? choose(services, r)
          : choose(r() < 0.5 ? humans : services, r);
    const others = population.profiles.filter((q) => q.kind === 'human' && q.accountId === p.accountId && q.principal !== p.principal);
    const otherUser = lastSegment(others.length > 0 ? pick(r, others).principal : 'deploy-bot');
    const c: CallContext = { r, p, instanceId: `${o.seed}/${id}`, otherUser, startMs };
    let variant: string = cls;
    let calls: Timed[];
    switch (cls) {
      case 'single-critical': {
        const made = singleCritical(c, variantOrder[(n - 1) % variantOrder.length] as number);
        variant = made.variant;
        calls = made.calls;
        break;
      }
      case 'secret-harvesting':
        calls = secretHarvesting(c);
        break;
      case 'wide-enumeration':
        calls = wideEnumeration(c);
        break;
      case 'persistence-chain':
        calls = persistenceChain(c);
        break;
      case 'console-no-mfa':
        calls = consoleNoMfa();
        break;
    }
    const events = calls.map((t, k) => {
      const timeMs = startMs + t.offsetMs;
      const eventId = deterministicUuid('bench-security-event', String(o.seed), id, String(k));
      return normalizeCloudTrail(cloudTrailRecord(p, t.call, timeMs, eventId), { raw: true });
    });
    const first = events[0] as AuditEvent;
    const last = events[events.length - 1] as AuditEvent;
    return {
      label: {
        id,
        cls,
        variant,
        principal: first.principal,
        principalType: first.principalType,
        principalKind: p.kind,
        accountId: first.accountId,
        region: first.region,
        actions: [...new Set(events.map((e) => `${e.service}:${e.action}`))],
        eventIds: events.map((e) => e.eventId),
        startMs: first.eventTimeMs,
        endMs: last.eventTimeMs,
      },
      events,
    };
  });
}

/**
 * The generator's minute batches with the injected events merged in, each batch sorted by event
 * time (ties: benign first). `startMs` is the population's: batch m covers [startMs + m min, +1 min).
 * An injected event beyond the last minute is an error, not silently dropped.
 */
export function* withInjected(batches: Iterable<AuditEvent[]>, injected: readonly AuditEvent[], startMs: number): Generator<AuditEvent[]> {
  const pending = [...injected].sort((a, b) => a.eventTimeMs - b.eventTimeMs);
  let next = 0;
  let minute = 0;
  for (const batch of batches) {
    const endMs = startMs + ++minute * MINUTE_MS;
    if (next < pending.length && (pending[next] as AuditEvent).eventTimeMs < endMs) {
      const merged = [...batch];
      while (next < pending.length && (pending[next] as AuditEvent).eventTimeMs < endMs) merged.push(pending[next++] as AuditEvent);
      merged.sort((a, b) => a.eventTimeMs - b.eventTimeMs);
      yield merged;
    } else {
      yield batch;
    }
  }
  if (next < pending.length) throw new Error(`${pending.length - next} injected events fall after the last minute of traffic`);
}
