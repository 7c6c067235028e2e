/**
 * A fixed set of 100 detection rules for the rules benchmarks (`bench/rules.ts`, and
 * `bench:pipeline` with TRAILWATCH_RULES__PATHS): 60 Sigma, 40 EventBridge, written for this
 * benchmark as a team might write its own on top of the default pack. Typical CloudTrail
 * detections over about 30 services: most name their calls, some also test request parameters
 * (which need `raw`), some use prefixes, wildcards and `contains`, a few name no call at all and
 * are tried on every event. A handful watch calls the benchmark traffic makes often
 * (GetObject, AssumeRole, Decrypt, RunInstances, GetSecretValue …), as real rule sets do.
 *
 *   node bench/rules/generate.ts [--out DIR]      writes the files, prints the directory
 *
 * Deterministic: the same files every run (ids are derived from the titles).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';

type Level = 'informational' | 'low' | 'medium' | 'high' | 'critical';
type Selection = Record<string, string | number | boolean | null | Array<string | number>>;

interface SigmaSpec {
  title: string;
  level: Level;
  tags: string[];
  detection: Record<string, Selection | Selection[] | string[]>;
  condition: string;
}

interface PatternSpec {
  title: string;
  severity: Level;
  tags: string[];
  pattern: Record<string, unknown>;
}

const svc = (name: string) => `${name}.amazonaws.com`;
/** A selection on one service and some of its calls, plus any other items. */
const on = (service: string, names: string | string[], more: Selection = {}): Selection => ({
  eventSource: svc(service),
  eventName: names,
  ...more,
});

const sigma = (title: string, level: Level, tags: string[], detection: SigmaSpec['detection'], condition = 'selection'): SigmaSpec => ({
  title,
  level,
  tags,
  detection,
  condition,
});

export const SIGMA_RULES: readonly SigmaSpec[] = [
  // IAM
  sigma('IAM user created', 'low', ['attack.persistence', 'attack.t1136.003'], { selection: on('iam', 'CreateUser') }),
  sigma('Console password set for an IAM user', 'medium', ['attack.persistence', 'attack.t1098'], {
    selection: on('iam', ['CreateLoginProfile', 'UpdateLoginProfile']),
  }),
  sigma('AdministratorAccess attached', 'high', ['attack.privilege-escalation', 'attack.t1098.003'], {
    selection: on('iam', ['AttachUserPolicy', 'AttachRolePolicy', 'AttachGroupPolicy'], {
      'requestParameters.policyArn|endswith': '/AdministratorAccess',
    }),
  }),
  sigma('Inline policy granting every action', 'high', ['attack.privilege-escalation', 'attack.t1098.003'], {
    selection: on('iam', ['PutUserPolicy', 'PutRolePolicy', 'PutGroupPolicy'], {
      'requestParameters.policyDocument|contains': ['"Action":"*"', '"Action": "*"'],
    }),
  }),
  sigma('Role trust policy rewritten', 'medium', ['attack.persistence', 'attack.t1098'], {
    selection: on('iam', 'UpdateAssumeRolePolicy'),
  }),
  sigma('MFA device removed from a user', 'high', ['attack.defense-evasion', 'attack.t1556.006'], {
    selection: on('iam', ['DeactivateMFADevice', 'DeleteVirtualMFADevice']),
  }),
  sigma(
    'Access key created for someone else',
    'medium',
    ['attack.persistence', 'attack.t1098.001'],
    {
      selection: on('iam', 'CreateAccessKey'),
      self: { 'userIdentity.userName|fieldref': 'requestParameters.userName' },
    },
    'selection and not self',
  ),
  sigma('Account password policy weakened', 'medium', ['attack.credential-access', 'attack.t1201'], {
    selection: on('iam', ['UpdateAccountPasswordPolicy', 'DeleteAccountPasswordPolicy']),
  }),
  sigma('Identity provider added or changed', 'high', ['attack.persistence', 'attack.t1484.002'], {
    selection: on('iam', ['CreateSAMLProvider', 'UpdateSAMLProvider', 'CreateOpenIDConnectProvider', 'AddClientIDToOpenIDConnectProvider']),
  }),
  sigma('User added to an admin group', 'high', ['attack.privilege-escalation', 'attack.t1098'], {
    selection: on('iam', 'AddUserToGroup', { 'requestParameters.groupName|contains': ['admin', 'Admin'] }),
  }),
  sigma('New default policy version', 'medium', ['attack.privilege-escalation', 'attack.t1098'], {
    selection: [on('iam', 'SetDefaultPolicyVersion'), on('iam', 'CreatePolicyVersion', { 'requestParameters.setAsDefault': true })],
  }),
  // STS and sign-in
  sigma('Root console sign-in', 'high', ['attack.initial-access', 'attack.t1078.004'], {
    selection: { eventName: 'ConsoleLogin', 'userIdentity.type': 'Root' },
  }),
  sigma('Federation token issued', 'medium', ['attack.persistence', 'attack.t1550.001'], { selection: on('sts', 'GetFederationToken') }),
  sigma('Break-glass role assumed', 'high', ['attack.privilege-escalation', 'attack.t1078.004'], {
    selection: on('sts', 'AssumeRole', { 'requestParameters.roleArn|contains': ['break-glass', 'BreakGlass'] }),
  }),
  sigma('Session token for the root user', 'high', ['attack.privilege-escalation', 'attack.t1078.004'], {
    selection: on('sts', 'GetSessionToken', { 'userIdentity.type': 'Root' }),
  }),
  sigma('Failed console sign-in of an IAM user', 'low', ['attack.credential-access', 'attack.t1110'], {
    selection: {
      eventSource: svc('signin'),
      eventName: 'ConsoleLogin',
      'responseElements.ConsoleLogin': 'Failure',
      'userIdentity.type': 'IAMUser',
    },
  }),
  // CloudTrail
  sigma('Trail event selectors narrowed', 'medium', ['attack.defense-evasion', 'attack.t1562.008'], {
    selection: on('cloudtrail', ['PutEventSelectors', 'PutInsightSelectors']),
  }),
  sigma('Trail stopped or deleted', 'high', ['attack.defense-evasion', 'attack.t1562.008'], {
    selection: on('cloudtrail', ['StopLogging', 'DeleteTrail']),
  }),
  // S3
  sigma('Bucket ACL grants everyone', 'high', ['attack.exfiltration', 'attack.t1530'], {
    selection: on('s3', 'PutBucketAcl', {
      'requestParameters.AccessControlPolicy.AccessControlList.Grant.Grantee.URI|endswith': '/global/AllUsers',
    }),
  }),
  sigma('Bucket public access block removed', 'high', ['attack.exfiltration', 'attack.t1530'], {
    selection: on('s3', ['DeleteBucketPublicAccessBlock', 'DeletePublicAccessBlock']),
  }),
  sigma('Bucket encryption removed', 'medium', ['attack.impact', 'attack.t1485'], { selection: on('s3', 'DeleteBucketEncryption') }),
  sigma('Bucket versioning suspended', 'medium', ['attack.impact', 'attack.t1490'], {
    selection: on('s3', 'PutBucketVersioning', { 'requestParameters.VersioningConfiguration.Status': 'Suspended' }),
  }),
  sigma('Bucket deleted', 'low', ['attack.impact', 'attack.t1485'], { selection: on('s3', 'DeleteBucket') }),
  sigma('Lifecycle rule expiring objects', 'medium', ['attack.impact', 'attack.t1485'], {
    selection: on('s3', 'PutBucketLifecycle', { 'requestParameters.LifecycleConfiguration.Rule.Expiration.Days|lte': 1 }),
  }),
  sigma('Secrets-like object read', 'medium', ['attack.credential-access', 'attack.t1552.001'], {
    selection: on('s3', 'GetObject', { 'requestParameters.key|endswith': ['.tfstate', '.pem', 'id_rsa', '.kdbx', 'credentials'] }),
  }),
  sigma('Bucket replicated elsewhere', 'high', ['attack.exfiltration', 'attack.t1537'], { selection: on('s3', 'PutBucketReplication') }),
  // EC2
  sigma('Security group opened to the internet', 'high', ['attack.initial-access', 'attack.t1190'], {
    selection: on('ec2', 'AuthorizeSecurityGroupIngress', { 'requestParameters.ipPermissions.items.ipRanges.items.cidrIp': ['0.0.0.0/0'] }),
  }),
  sigma('Instance user data changed', 'high', ['attack.execution', 'attack.t1059'], {
    selection: on('ec2', 'ModifyInstanceAttribute', { 'requestParameters.userData|exists': true }),
  }),
  sigma('Machine image shared with everyone', 'high', ['attack.exfiltration', 'attack.t1537'], {
    selection: on('ec2', 'ModifyImageAttribute', { 'requestParameters.launchPermission.add.items.group': 'all' }),
  }),
  sigma('EBS encryption by default turned off', 'medium', ['attack.impact', 'attack.t1486'], {
    selection: on('ec2', 'DisableEbsEncryptionByDefault'),
  }),
  sigma('Key pair created or imported', 'low', ['attack.persistence', 'attack.t1098.004'], {
    selection: on('ec2', ['ImportKeyPair', 'CreateKeyPair']),
  }),
  sigma('VPC flow logs deleted', 'high', ['attack.defense-evasion', 'attack.t1562.008'], { selection: on('ec2', 'DeleteFlowLogs') }),
  sigma('Large GPU instance launched', 'medium', ['attack.impact', 'attack.t1496'], {
    selection: on('ec2', 'RunInstances', { 'requestParameters.instanceType|startswith': ['p4', 'p5', 'g5.', 'x2', 'trn1'] }),
  }),
  sigma('Serial console access enabled', 'medium', ['attack.lateral-movement', 'attack.t1021'], {
    selection: on('ec2', 'EnableSerialConsoleAccess'),
  }),
  sigma('Windows password data read', 'medium', ['attack.credential-access', 'attack.t1552.005'], {
    selection: on('ec2', 'GetPasswordData'),
  }),
  sigma('Traffic mirroring set up', 'high', ['attack.collection', 'attack.t1040'], {
    selection: on('ec2', ['CreateTrafficMirrorSession', 'CreateTrafficMirrorTarget']),
  }),
  // KMS
  sigma('Key policy replaced', 'medium', ['attack.privilege-escalation', 'attack.t1098'], { selection: on('kms', 'PutKeyPolicy') }),
  sigma('Grant to another account', 'medium', ['attack.exfiltration', 'attack.t1537'], {
    selection: on('kms', 'CreateGrant', { 'requestParameters.granteePrincipal|endswith': ':root' }),
  }),
  sigma('Decrypt refused', 'low', ['attack.credential-access', 'attack.t1555'], {
    selection: on('kms', 'Decrypt', { errorCode: 'AccessDeniedException' }),
  }),
  // Lambda
  sigma('Function URL without authentication', 'high', ['attack.initial-access', 'attack.t1190'], {
    selection: { eventSource: svc('lambda'), 'eventName|startswith': 'CreateFunctionUrlConfig', 'requestParameters.authType': 'NONE' },
  }),
  sigma('Function invocable by anyone', 'high', ['attack.persistence', 'attack.t1546'], {
    selection: { eventSource: svc('lambda'), 'eventName|startswith': 'AddPermission', 'requestParameters.principal': '\\*' },
  }),
  sigma('Function layer from another account', 'medium', ['attack.persistence', 'attack.t1546'], {
    selection: {
      eventSource: svc('lambda'),
      'eventName|startswith': 'UpdateFunctionConfiguration',
      'requestParameters.layers|contains': ':layer:',
    },
  }),
  // Secrets Manager and Systems Manager
  sigma('Secret deleted', 'medium', ['attack.impact', 'attack.t1485'], { selection: on('secretsmanager', 'DeleteSecret') }),
  sigma('Secret resource policy changed', 'medium', ['attack.privilege-escalation', 'attack.t1098'], {
    selection: on('secretsmanager', ['PutResourcePolicy', 'DeleteResourcePolicy']),
  }),
  sigma('Secret read by a person', 'informational', ['attack.credential-access', 'attack.t1555.006'], {
    selection: on('secretsmanager', 'GetSecretValue', { 'userIdentity.type': 'IAMUser' }),
  }),
  sigma('Shell command sent to instances', 'medium', ['attack.execution', 'attack.t1651'], {
    selection: on('ssm', 'SendCommand', { 'requestParameters.documentName': ['AWS-RunShellScript', 'AWS-RunPowerShellScript'] }),
  }),
  sigma('Session Manager session started', 'low', ['attack.lateral-movement', 'attack.t1021'], { selection: on('ssm', 'StartSession') }),
  sigma('Secure parameter read decrypted', 'informational', ['attack.credential-access', 'attack.t1552'], {
    selection: on('ssm', ['GetParameter', 'GetParameters'], { 'requestParameters.withDecryption': true }),
  }),
  // Organizations, account, security services
  sigma('Account left its organization', 'critical', ['attack.defense-evasion', 'attack.t1666'], {
    selection: on('organizations', 'LeaveOrganization'),
  }),
  sigma('Region enabled or disabled', 'medium', ['attack.defense-evasion', 'attack.t1535'], {
    selection: on('account', ['EnableRegion', 'DisableRegion']),
  }),
  sigma('GuardDuty detector removed', 'high', ['attack.defense-evasion', 'attack.t1562.001'], {
    selection: on('guardduty', ['DeleteDetector', 'DisassociateFromMasterAccount', 'DeleteMembers']),
  }),
  sigma('Security Hub turned off', 'high', ['attack.defense-evasion', 'attack.t1562.001'], {
    selection: on('securityhub', ['DisableSecurityHub', 'BatchDisableStandards']),
  }),
  sigma('Access Analyzer deleted', 'medium', ['attack.defense-evasion', 'attack.t1562.001'], {
    selection: on('access-analyzer', 'DeleteAnalyzer'),
  }),
  // CloudWatch Logs and RDS
  sigma('Log group or stream deleted', 'medium', ['attack.defense-evasion', 'attack.t1070'], {
    selection: on('logs', ['DeleteLogGroup', 'DeleteLogStream']),
  }),
  sigma('Log retention shortened', 'low', ['attack.defense-evasion', 'attack.t1070'], {
    selection: on('logs', 'PutRetentionPolicy', { 'requestParameters.retentionInDays|lt': 30 }),
  }),
  sigma('Database snapshot made public', 'high', ['attack.exfiltration', 'attack.t1537'], {
    selection: on('rds', ['ModifyDBSnapshotAttribute', 'ModifyDBClusterSnapshotAttribute'], { 'requestParameters.valuesToAdd': 'all' }),
  }),
  sigma('Database master password reset', 'medium', ['attack.persistence', 'attack.t1098'], {
    selection: on('rds', ['ModifyDBInstance', 'ModifyDBCluster'], { 'requestParameters.masterUserPassword|exists': true }),
  }),
  // No call named: tried on every event
  sigma(
    'Root user activity',
    'high',
    ['attack.privilege-escalation', 'attack.t1078.004'],
    {
      selection: { 'userIdentity.type': 'Root' },
      service: { eventType: 'AwsServiceEvent' },
    },
    'selection and not service',
  ),
  sigma('Calls from offensive tooling', 'high', ['attack.discovery', 'attack.t1526'], {
    selection: { 'userAgent|contains': ['pacu', 'kali', 'parrot', 'cloudfox', 'scoutsuite'] },
  }),
  sigma('Denied enumeration', 'low', ['attack.discovery', 'attack.t1580'], {
    selection: { 'eventName|startswith': ['List', 'Describe', 'Get'], errorCode: ['AccessDenied', 'Client.UnauthorizedOperation'] },
  }),
];

const pattern = (title: string, severity: Level, tags: string[], p: Record<string, unknown>): PatternSpec => ({
  title,
  severity,
  tags,
  pattern: p,
});
const detail = (service: string, names: unknown[], more: Record<string, unknown> = {}) => ({
  detail: { eventSource: [svc(service)], eventName: names, ...more },
});

export const EVENT_PATTERNS: readonly PatternSpec[] = [
  pattern('ECR repository policy set', 'medium', ['attack.t1525'], detail('ecr', ['SetRepositoryPolicy'])),
  pattern('ECR images deleted', 'low', ['attack.t1485'], detail('ecr', ['BatchDeleteImage', 'DeleteRepository'])),
  pattern(
    'EKS endpoint opened',
    'high',
    ['attack.t1133'],
    detail('eks', ['UpdateClusterConfig'], { requestParameters: { resourcesVpcConfig: { endpointPublicAccess: [true] } } }),
  ),
  pattern('EKS cluster created or deleted', 'low', ['attack.t1610'], detail('eks', ['CreateCluster', 'DeleteCluster'])),
  pattern(
    'Hosted zone deleted or records changed',
    'medium',
    ['attack.t1565'],
    detail('route53', ['DeleteHostedZone', 'ChangeResourceRecordSets']),
  ),
  pattern(
    'Domain transfer prepared',
    'critical',
    ['attack.t1584.001'],
    detail('route53domains', ['TransferDomainToAnotherAwsAccount', 'DisableDomainTransferLock']),
  ),
  pattern('CloudFront distribution changed', 'low', ['attack.t1565'], detail('cloudfront', ['UpdateDistribution', 'DeleteDistribution'])),
  pattern('Web ACL removed', 'high', ['attack.t1562.007'], detail('wafv2', ['DeleteWebACL', 'DisassociateWebACL'])),
  pattern('Mail identity verified', 'low', ['attack.t1586'], detail('ses', ['VerifyEmailIdentity', 'VerifyDomainIdentity'])),
  pattern(
    'SNS topic policy changed',
    'medium',
    ['attack.t1098'],
    detail('sns', ['SetTopicAttributes'], { requestParameters: { attributeName: ['Policy'] } }),
  ),
  pattern(
    'SQS queue policy changed',
    'medium',
    ['attack.t1098'],
    detail('sqs', ['SetQueueAttributes'], { requestParameters: { attributes: { Policy: [{ exists: true }] } } }),
  ),
  pattern('DynamoDB table deleted', 'medium', ['attack.t1485'], detail('dynamodb', ['DeleteTable'])),
  pattern(
    'DynamoDB point-in-time recovery turned off',
    'medium',
    ['attack.t1490'],
    detail('dynamodb', ['UpdateContinuousBackups'], {
      requestParameters: { pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: [false] } },
    }),
  ),
  pattern('DynamoDB table exported', 'medium', ['attack.t1530'], detail('dynamodb', ['ExportTableToPointInTime'])),
  pattern('Backups deleted', 'high', ['attack.t1490'], detail('backup', ['DeleteBackupVault', 'DeleteRecoveryPoint', 'DeleteBackupPlan'])),
  pattern(
    'Database deleted without a final snapshot',
    'high',
    ['attack.t1485'],
    detail('rds', ['DeleteDBInstance', 'DeleteDBCluster'], { requestParameters: { skipFinalSnapshot: [true] } }),
  ),
  pattern(
    'Redshift cluster made public',
    'high',
    ['attack.t1530'],
    detail('redshift', ['ModifyCluster'], { requestParameters: { publiclyAccessible: [true] } }),
  ),
  pattern(
    'OpenSearch access policy changed',
    'medium',
    ['attack.t1098'],
    detail('es', ['UpdateDomainConfig', 'UpdateElasticsearchDomainConfig']),
  ),
  pattern('StackSet created', 'medium', ['attack.t1608'], detail('cloudformation', ['CreateStackSet', 'CreateStackInstances'])),
  pattern('Build project changed', 'low', ['attack.t1195.002'], detail('codebuild', ['UpdateProject', 'CreateProject'])),
  pattern('User pool deleted', 'medium', ['attack.t1485'], detail('cognito-idp', ['DeleteUserPool'])),
  pattern(
    'Identity Center permission set changed',
    'high',
    ['attack.t1098'],
    detail('sso', [
      'CreatePermissionSet',
      'AttachManagedPolicyToPermissionSet',
      'PutInlinePolicyToPermissionSet',
      'CreateAccountAssignment',
    ]),
  ),
  pattern(
    'Role created for another account',
    'medium',
    ['attack.t1098'],
    detail('iam', ['CreateRole'], { requestParameters: { assumeRolePolicyDocument: [{ wildcard: '*arn:aws:iam::*:root*' }] } }),
  ),
  pattern(
    'Web identity role assumed',
    'informational',
    ['attack.t1550.001'],
    detail('sts', ['AssumeRoleWithWebIdentity', 'AssumeRoleWithSAML']),
  ),
  pattern(
    'Instance profile swapped',
    'medium',
    ['attack.t1098'],
    detail('ec2', ['ReplaceIamInstanceProfileAssociation', 'AssociateIamInstanceProfile']),
  ),
  pattern('VPC endpoint policy changed', 'low', ['attack.t1098'], detail('ec2', ['ModifyVpcEndpoint'])),
  pattern('Snapshots deleted', 'medium', ['attack.t1490'], detail('ec2', ['DeleteSnapshot'])),
  pattern(
    'Transit gateway attachment',
    'low',
    ['attack.t1599'],
    detail('ec2', ['CreateTransitGatewayVpcAttachment', 'AcceptTransitGatewayPeeringAttachment']),
  ),
  pattern('IAM deletions', 'low', ['attack.t1531'], { detail: { eventSource: [svc('iam')], eventName: [{ prefix: 'Delete' }] } }),
  pattern('GuardDuty settings deleted', 'high', ['attack.t1562.001'], {
    detail: { eventSource: [{ prefix: 'guardduty' }], eventName: [{ prefix: 'Delete' }, { prefix: 'Disable' }] },
  }),
  pattern('KMS key deletion or rotation off', 'high', ['attack.t1485'], {
    detail: { eventSource: [svc('kms')], $or: [{ eventName: ['ScheduleKeyDeletion'] }, { eventName: ['DisableKeyRotation'] }] },
  }),
  pattern('Secrets Manager changes', 'low', ['attack.t1555.006'], {
    detail: { eventSource: [svc('secretsmanager')], eventName: [{ 'anything-but': ['GetSecretValue', 'DescribeSecret', 'ListSecrets'] }] },
  }),
  pattern('Parameters deleted', 'low', ['attack.t1485'], {
    source: ['aws.ssm'],
    'detail-type': ['AWS API Call via CloudTrail'],
    detail: { eventName: ['DeleteParameter', 'DeleteParameters'] },
  }),
  pattern('Notebook with internet access', 'medium', ['attack.t1133'], {
    detail: {
      eventSource: [svc('sagemaker')],
      eventName: [{ 'equals-ignore-case': 'createnotebookinstance' }],
      requestParameters: { directInternetAccess: ['Enabled'] },
    },
  }),
  pattern('Certificate exported', 'high', ['attack.t1552.004'], detail('acm', ['ExportCertificate'])),
  pattern('Macie turned off', 'high', ['attack.t1562.001'], detail('macie2', ['DisableMacie', 'DeleteMember'])),
  pattern('Secrets stored in Glue connections read', 'low', ['attack.t1552'], detail('glue', ['GetConnection', 'GetConnections'])),
  // No call named: tried on every event
  pattern('Root denied', 'medium', ['attack.t1078.004'], {
    detail: { errorCode: [{ prefix: 'AccessDenied' }], userIdentity: { type: ['Root'] } },
  }),
  pattern('Offensive tool user agent', 'high', ['attack.t1526'], {
    detail: { userAgent: [{ wildcard: '*pacu*' }, { wildcard: '*Boto3/*kali*' }] },
  }),
  pattern('Calls from an unknown network refused', 'low', ['attack.t1078'], {
    detail: {
      errorCode: ['AccessDenied', 'UnauthorizedOperation', 'Client.UnauthorizedOperation'],
      sourceIPAddress: [{ 'anything-but': { prefix: '10.' } }],
    },
  }),
];

function slug(title: string): string {
  return title
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

/** A stable uuid-shaped id for a title. */
function idOf(title: string): string {
  const h = createHash('sha1').update(`trailwatch-bench:${title}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The 100 rule files as name → text. */
export function benchRuleFiles(): Map<string, string> {
  const files = new Map<string, string>();
  SIGMA_RULES.forEach((r, i) => {
    const doc = {
      title: r.title,
      id: idOf(r.title),
      status: 'test',
      description: `trailwatch benchmark rule: ${r.title.toLowerCase()}.`,
      tags: r.tags,
      logsource: { product: 'aws', service: 'cloudtrail' },
      detection: { ...r.detection, condition: r.condition },
      level: r.level,
    };
    files.set(`sigma/${String(i + 1).padStart(3, '0')}-${slug(r.title)}.yml`, stringify(doc));
  });
  EVENT_PATTERNS.forEach((r, i) => {
    const doc = {
      id: `bench-${slug(r.title)}`,
      title: r.title,
      severity: r.severity,
      description: `trailwatch benchmark rule: ${r.title.toLowerCase()}.`,
      tags: r.tags,
      pattern: r.pattern,
    };
    files.set(`eventbridge/${String(i + 1).padStart(3, '0')}-${slug(r.title)}.json`, `${JSON.stringify(doc, null, 2)}\n`);
  });
  return files;
}

/** Writes the rules under `dir` (created when missing); returns `dir`. */
export function writeBenchRules(dir: string): string {
  for (const [name, text] of benchRuleFiles()) {
    const file = join(dir, name);
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, text);
  }
  return dir;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { out: { type: 'string' } } });
  const dir = writeBenchRules(values.out ?? mkdtempSync(join(tmpdir(), 'trailwatch-rules100-')));
  process.stdout.write(`${dir}\n`);
}
