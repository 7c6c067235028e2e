import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { cloudTrailEnvelope, compileEventPattern, type EventPattern } from '../../../src/detect/rules/eventbridge.ts';

const PACK = new URL('../../../src/detect/rules/pack/cis-aws-foundations/', import.meta.url);
const SEVERITIES: ReadonlySet<string> = new Set(['informational', 'low', 'medium', 'high', 'critical']);
const KEYS = ['description', 'id', 'pattern', 'references', 'severity', 'tags', 'title'];
/** The monitoring controls of the benchmark's section 4: 4.1 through 4.15. */
const CONTROLS = 15;

interface PackRule {
  file: string;
  id: string;
  title: string;
  severity: string;
  description: string;
  tags: string[];
  references: string[];
  pattern: unknown;
}

const files = readdirSync(PACK)
  .filter((name) => name.endsWith('.json'))
  .sort();
const rules: PackRule[] = files.map((file) => ({
  file,
  ...(JSON.parse(readFileSync(new URL(file, PACK), 'utf8')) as Omit<PackRule, 'file'>),
}));
const compiled = new Map<string, EventPattern>(rules.map((r) => [r.id, compileEventPattern(r.pattern, r.file)]));

// ---------------------------------------------------------------------------------------------
// Crafted CloudTrail records

type Json = Record<string, unknown>;

const ACCOUNT = '111122223333';
const alice: Json = {
  type: 'IAMUser',
  principalId: 'AIDAEXAMPLEALICE00001',
  arn: `arn:aws:iam::${ACCOUNT}:user/alice`,
  accountId: ACCOUNT,
  accessKeyId: 'AKIAEXAMPLEALICE0001',
  userName: 'alice',
};
const root: Json = {
  type: 'Root',
  principalId: ACCOUNT,
  arn: `arn:aws:iam::${ACCOUNT}:root`,
  accountId: ACCOUNT,
  accessKeyId: 'ASIAEXAMPLEROOT00001',
};
const ssoRole: Json = {
  type: 'AssumedRole',
  principalId: 'AROAEXAMPLESSOROLE001:bob@example.com',
  arn: `arn:aws:sts::${ACCOUNT}:assumed-role/AWSReservedSSO_Admin_0123456789abcdef/bob@example.com`,
  accountId: ACCOUNT,
  sessionContext: {
    sessionIssuer: {
      type: 'Role',
      principalId: 'AROAEXAMPLESSOROLE001',
      arn: `arn:aws:iam::${ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef`,
      accountId: ACCOUNT,
      userName: 'AWSReservedSSO_Admin_0123456789abcdef',
    },
  },
};

let sequence = 0;

/** A management API call by alice from the CLI; `fields` replace top-level fields wholesale. */
function call(eventSource: string, eventName: string, fields: Json = {}): Json {
  sequence += 1;
  const n = String(sequence).padStart(4, '0');
  return {
    eventVersion: '1.09',
    userIdentity: alice,
    eventTime: `2024-05-14T09:${String(sequence % 60).padStart(2, '0')}:07Z`,
    eventSource,
    eventName,
    awsRegion: 'eu-west-1',
    sourceIPAddress: '203.0.113.10',
    userAgent: 'aws-cli/2.15.40 md/awscrt#0.19.19 ua/2.0 os/linux#6.5.0 md/arch#x86_64 lang/python#3.11.8',
    requestParameters: null,
    responseElements: null,
    requestID: `0d6b6c53-1e4a-4b7c-9f1d-00000000${n}`,
    eventID: `7f3e2a10-5b6c-4d8e-a1f2-00000000${n}`,
    readOnly: false,
    eventType: 'AwsApiCall',
    managementEvent: true,
    recipientAccountId: ACCOUNT,
    eventCategory: 'Management',
    ...fields,
  };
}

/** A console sign-in record; `outcome` is what responseElements.ConsoleLogin reports. */
function consoleLogin(identity: Json, mfaUsed: string | undefined, outcome: 'Success' | 'Failure', fields: Json = {}): Json {
  const additionalEventData: Json = { LoginTo: 'https://console.aws.amazon.com/console/home', MobileVersion: 'No' };
  if (mfaUsed !== undefined) additionalEventData.MFAUsed = mfaUsed;
  return call('signin.amazonaws.com', 'ConsoleLogin', {
    userIdentity: identity,
    awsRegion: 'us-east-1',
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0',
    responseElements: { ConsoleLogin: outcome },
    additionalEventData,
    eventType: 'AwsConsoleSignIn',
    readOnly: false,
    ...(outcome === 'Failure' ? { errorMessage: 'Failed authentication' } : {}),
    ...fields,
  });
}

const ec2 = (eventName: string, requestParameters: Json, fields: Json = {}): Json =>
  call('ec2.amazonaws.com', eventName, { requestParameters, ...fields });
const read = (eventSource: string, eventName: string, requestParameters: Json = {}): Json =>
  call(eventSource, eventName, { requestParameters, readOnly: true });

const keyId = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const bucket = 'example-audit-bucket';

interface Cases {
  matches: Record<string, Json>;
  misses: Record<string, Json>;
}

/** Per control: records it must flag, and near misses it must let through. */
const CASES: Record<string, Cases> = {
  'cis-aws-4.1-unauthorized-api-calls': {
    matches: {
      'EC2 Client.UnauthorizedOperation': ec2(
        'RunInstances',
        { instanceType: 't3.micro' },
        {
          errorCode: 'Client.UnauthorizedOperation',
          errorMessage: 'You are not authorized to perform this operation.',
        },
      ),
      'IAM AccessDenied': call('iam.amazonaws.com', 'ListUsers', {
        awsRegion: 'us-east-1',
        readOnly: true,
        errorCode: 'AccessDenied',
        errorMessage: 'User: arn:aws:iam::111122223333:user/alice is not authorized to perform: iam:ListUsers',
      }),
      'KMS AccessDeniedException': call('kms.amazonaws.com', 'Decrypt', { errorCode: 'AccessDeniedException', readOnly: true }),
    },
    misses: {
      'a successful call': read('ec2.amazonaws.com', 'DescribeInstances'),
      'a throttled call': call('ec2.amazonaws.com', 'DescribeInstances', { errorCode: 'Client.RequestLimitExceeded', readOnly: true }),
      'a refused HeadBucket probe': call('s3.amazonaws.com', 'HeadBucket', { errorCode: 'AccessDenied', readOnly: true }),
      'a refused S3 log delivery': call('s3.amazonaws.com', 'PutObject', {
        sourceIPAddress: 'delivery.logs.amazonaws.com',
        userAgent: 'delivery.logs.amazonaws.com',
        errorCode: 'AccessDenied',
      }),
    },
  },
  'cis-aws-4.2-console-signin-without-mfa': {
    matches: {
      'an IAM user without MFA': consoleLogin(alice, 'No', 'Success'),
      'the root user without MFA': consoleLogin(root, 'No', 'Success'),
      'no MFA flag at all': consoleLogin(alice, undefined, 'Success'),
    },
    misses: {
      'an IAM user with MFA': consoleLogin(alice, 'Yes', 'Success'),
      'a failed sign-in': consoleLogin(alice, 'No', 'Failure'),
      'an Identity Center sign-in (MFA at the IdP)': consoleLogin(ssoRole, 'No', 'Success'),
    },
  },
  'cis-aws-4.3-root-account-usage': {
    matches: {
      'root creating an access key': call('iam.amazonaws.com', 'CreateAccessKey', { userIdentity: root, awsRegion: 'us-east-1' }),
      'root signing in': consoleLogin(root, 'Yes', 'Success'),
    },
    misses: {
      'a call a service made for root': call('s3.amazonaws.com', 'GetBucketAcl', {
        userIdentity: { ...root, invokedBy: 'cloudtrail.amazonaws.com' },
        sourceIPAddress: 'cloudtrail.amazonaws.com',
        userAgent: 'cloudtrail.amazonaws.com',
        requestParameters: { bucketName: bucket, acl: '' },
        readOnly: true,
      }),
      'an AWS service event for the root user': call('sts.amazonaws.com', 'AssumeRoleWithSAML', {
        userIdentity: root,
        eventType: 'AwsServiceEvent',
        sourceIPAddress: 'AWS Internal',
      }),
      'an IAM user': call('iam.amazonaws.com', 'CreateAccessKey', { awsRegion: 'us-east-1' }),
    },
  },
  'cis-aws-4.4-iam-policy-changes': {
    matches: {
      AttachRolePolicy: call('iam.amazonaws.com', 'AttachRolePolicy', {
        awsRegion: 'us-east-1',
        requestParameters: { roleName: 'deploy', policyArn: 'arn:aws:iam::aws:policy/AdministratorAccess' },
      }),
      PutUserPolicy: call('iam.amazonaws.com', 'PutUserPolicy', {
        awsRegion: 'us-east-1',
        requestParameters: { userName: 'alice', policyName: 'inline', policyDocument: '{"Version":"2012-10-17","Statement":[]}' },
      }),
    },
    misses: {
      'reading a policy': read('iam.amazonaws.com', 'GetPolicy', { policyArn: 'arn:aws:iam::aws:policy/ReadOnlyAccess' }),
      'an Organizations CreatePolicy': call('organizations.amazonaws.com', 'CreatePolicy', { awsRegion: 'us-east-1' }),
    },
  },
  'cis-aws-4.5-cloudtrail-configuration-changes': {
    matches: {
      StopLogging: call('cloudtrail.amazonaws.com', 'StopLogging', { requestParameters: { name: 'management-events' } }),
      DeleteTrail: call('cloudtrail.amazonaws.com', 'DeleteTrail', { requestParameters: { name: 'management-events' } }),
    },
    misses: {
      GetTrailStatus: read('cloudtrail.amazonaws.com', 'GetTrailStatus', { name: 'management-events' }),
      DescribeTrails: read('cloudtrail.amazonaws.com', 'DescribeTrails'),
    },
  },
  'cis-aws-4.6-console-authentication-failures': {
    matches: {
      'a wrong password': consoleLogin(alice, 'No', 'Failure'),
    },
    misses: {
      'a successful sign-in': consoleLogin(alice, 'Yes', 'Success'),
      'a failed API call': call('iam.amazonaws.com', 'ListUsers', { errorCode: 'AccessDenied', errorMessage: 'Failed authentication' }),
    },
  },
  'cis-aws-4.7-kms-key-disabled-or-scheduled-deletion': {
    matches: {
      ScheduleKeyDeletion: call('kms.amazonaws.com', 'ScheduleKeyDeletion', {
        requestParameters: { keyId, pendingWindowInDays: 7 },
        responseElements: { keyId, deletionDate: 'May 21, 2024, 9:00:00 AM', keyState: 'PendingDeletion', pendingWindowInDays: 7 },
      }),
      DisableKey: call('kms.amazonaws.com', 'DisableKey', { requestParameters: { keyId } }),
    },
    misses: {
      EnableKey: call('kms.amazonaws.com', 'EnableKey', { requestParameters: { keyId } }),
      DisableKeyRotation: call('kms.amazonaws.com', 'DisableKeyRotation', { requestParameters: { keyId } }),
    },
  },
  'cis-aws-4.8-s3-bucket-policy-changes': {
    matches: {
      PutBucketPolicy: call('s3.amazonaws.com', 'PutBucketPolicy', {
        requestParameters: { bucketName: bucket, Host: `${bucket}.s3.amazonaws.com` },
      }),
      DeleteBucketCors: call('s3.amazonaws.com', 'DeleteBucketCors', { requestParameters: { bucketName: bucket, cors: '' } }),
    },
    misses: {
      GetBucketPolicy: read('s3.amazonaws.com', 'GetBucketPolicy', { bucketName: bucket, policy: '' }),
      PutBucketTagging: call('s3.amazonaws.com', 'PutBucketTagging', { requestParameters: { bucketName: bucket, tagging: '' } }),
    },
  },
  'cis-aws-4.9-config-configuration-changes': {
    matches: {
      StopConfigurationRecorder: call('config.amazonaws.com', 'StopConfigurationRecorder', {
        requestParameters: { configurationRecorderName: 'default' },
      }),
      DeleteDeliveryChannel: call('config.amazonaws.com', 'DeleteDeliveryChannel', {
        requestParameters: { deliveryChannelName: 'default' },
      }),
    },
    misses: {
      'StartConfigurationRecorder (not in the benchmark)': call('config.amazonaws.com', 'StartConfigurationRecorder', {
        requestParameters: { configurationRecorderName: 'default' },
      }),
      DescribeConfigurationRecorders: read('config.amazonaws.com', 'DescribeConfigurationRecorders'),
    },
  },
  'cis-aws-4.10-security-group-changes': {
    matches: {
      AuthorizeSecurityGroupIngress: ec2('AuthorizeSecurityGroupIngress', {
        groupId: 'sg-0123456789abcdef0',
        ipPermissions: { items: [{ ipProtocol: 'tcp', fromPort: 22, toPort: 22, ipRanges: { items: [{ cidrIp: '0.0.0.0/0' }] } }] },
      }),
      DeleteSecurityGroup: ec2('DeleteSecurityGroup', { groupId: 'sg-0123456789abcdef0' }),
    },
    misses: {
      DescribeSecurityGroups: read('ec2.amazonaws.com', 'DescribeSecurityGroups', { securityGroupIdSet: {} }),
      DescribeSecurityGroupRules: read('ec2.amazonaws.com', 'DescribeSecurityGroupRules'),
    },
  },
  'cis-aws-4.11-nacl-changes': {
    matches: {
      CreateNetworkAclEntry: ec2('CreateNetworkAclEntry', {
        networkAclId: 'acl-0123456789abcdef0',
        ruleNumber: 100,
        egress: false,
        ruleAction: 'allow',
        icmpTypeCode: {},
        portRange: { from: 22, to: 22 },
        aclProtocol: '6',
        cidrBlock: '0.0.0.0/0',
      }),
      ReplaceNetworkAclAssociation: ec2('ReplaceNetworkAclAssociation', {
        associationId: 'aclassoc-0123456789abcdef0',
        networkAclId: 'acl-0123456789abcdef0',
      }),
    },
    misses: {
      DescribeNetworkAcls: read('ec2.amazonaws.com', 'DescribeNetworkAcls'),
    },
  },
  'cis-aws-4.12-network-gateway-changes': {
    matches: {
      AttachInternetGateway: ec2('AttachInternetGateway', { internetGatewayId: 'igw-0123456789abcdef0', vpcId: 'vpc-0123456789abcdef0' }),
      CreateCustomerGateway: ec2('CreateCustomerGateway', { type: 'ipsec.1', ipAddress: '198.51.100.7', bgpAsn: 65000 }),
    },
    misses: {
      DescribeInternetGateways: read('ec2.amazonaws.com', 'DescribeInternetGateways'),
      'CreateNatGateway (not in the benchmark)': ec2('CreateNatGateway', { subnetId: 'subnet-0123456789abcdef0' }),
    },
  },
  'cis-aws-4.13-route-table-changes': {
    matches: {
      CreateRoute: ec2('CreateRoute', {
        routeTableId: 'rtb-0123456789abcdef0',
        destinationCidrBlock: '0.0.0.0/0',
        gatewayId: 'igw-0123456789abcdef0',
      }),
      DisassociateRouteTable: ec2('DisassociateRouteTable', { associationId: 'rtbassoc-0123456789abcdef0' }),
    },
    misses: {
      DescribeRouteTables: read('ec2.amazonaws.com', 'DescribeRouteTables'),
      'an API Gateway CreateRoute': call('apigateway.amazonaws.com', 'CreateRoute', {
        requestParameters: { apiId: 'a1b2c3d4e5', routeKey: 'GET /' },
      }),
    },
  },
  'cis-aws-4.14-vpc-changes': {
    matches: {
      CreateVpcPeeringConnection: ec2('CreateVpcPeeringConnection', {
        vpcId: 'vpc-0123456789abcdef0',
        peerVpcId: 'vpc-0fedcba9876543210',
        peerOwnerId: '444455556666',
      }),
      ModifyVpcAttribute: ec2('ModifyVpcAttribute', { vpcId: 'vpc-0123456789abcdef0', enableDnsHostnames: { value: true } }),
    },
    misses: {
      DescribeVpcs: read('ec2.amazonaws.com', 'DescribeVpcs'),
      'CreateSubnet (not in the benchmark)': ec2('CreateSubnet', { vpcId: 'vpc-0123456789abcdef0', cidrBlock: '10.0.1.0/24' }),
    },
  },
  'cis-aws-4.15-organizations-changes': {
    matches: {
      LeaveOrganization: call('organizations.amazonaws.com', 'LeaveOrganization', { awsRegion: 'us-east-1' }),
      AttachPolicy: call('organizations.amazonaws.com', 'AttachPolicy', {
        awsRegion: 'us-east-1',
        requestParameters: { policyId: 'p-examplepolicyid111', targetId: 'ou-abcd-11111111' },
      }),
    },
    misses: {
      DescribeOrganization: read('organizations.amazonaws.com', 'DescribeOrganization'),
      'an IoT AttachPolicy': call('iot.amazonaws.com', 'AttachPolicy', {
        requestParameters: { policyName: 'device', target: 'arn:aws:iot:eu-west-1:111122223333:cert/abc' },
      }),
    },
  },
};

// ---------------------------------------------------------------------------------------------

describe('CIS AWS Foundations pack: metadata', () => {
  test(`holds one rule per monitoring control 4.1–4.${CONTROLS}`, () => {
    const controls = rules.map((r) => Number(/^cis-aws-4\.(\d+)-/.exec(r.id)?.[1])).sort((a, b) => a - b);
    assert.deepEqual(
      controls,
      Array.from({ length: CONTROLS }, (_, i) => i + 1),
    );
  });

  test('ids are unique', () => {
    assert.equal(new Set(rules.map((r) => r.id)).size, rules.length);
  });

  for (const rule of rules) {
    test(`${rule.file} is well formed`, () => {
      const { file, minCount, ...body } = rule as typeof rule & { minCount?: number };
      assert.deepEqual(Object.keys(body).sort(), KEYS);
      // An alarm threshold only where a single match is everyday noise (4.1).
      assert.equal(minCount, rule.id === 'cis-aws-4.1-unauthorized-api-calls' ? 20 : undefined);
      const m = /^cis-aws-4\.(\d+)-([a-z0-9]+(?:-[a-z0-9]+)*)$/.exec(rule.id);
      assert.ok(m, `bad id ${rule.id}`);
      const [, control, slug] = m;
      assert.equal(file, `${control!.padStart(2, '0')}-${slug}.json`, 'the file is named <nn>-<slug> after the id');
      assert.ok(rule.title.length > 0 && rule.description.includes(`CIS AWS Foundations 4.${control}`));
      assert.ok(SEVERITIES.has(rule.severity), `severity ${rule.severity}`);
      assert.ok(rule.tags.includes(`cis-aws-foundations:4.${control}`), 'tags name the CIS control');
      for (const tag of rule.tags) assert.match(tag, /^(cis-aws-foundations:4\.\d+|attack\.t\d{4}(\.\d{3})?)$/);
      assert.ok(rule.references.length > 0);
      for (const ref of rule.references) assert.match(ref, /^https:\/\//);
    });
  }

  test('the README lists every rule', () => {
    const readme = readFileSync(new URL('README.md', PACK), 'utf8');
    for (const rule of rules) assert.ok(readme.includes(rule.id), `README lacks ${rule.id}`);
  });
});

describe('CIS AWS Foundations pack: patterns', () => {
  test('every rule has crafted cases, and every case names a rule', () => {
    assert.deepEqual(Object.keys(CASES).sort(), rules.map((r) => r.id).sort());
    for (const [id, cases] of Object.entries(CASES)) {
      assert.ok(Object.keys(cases.matches).length > 0, `${id} has no matching record`);
      assert.ok(Object.keys(cases.misses).length > 0, `${id} has no near miss`);
    }
  });

  for (const [id, cases] of Object.entries(CASES)) {
    describe(id, () => {
      const pattern = (): EventPattern => {
        const p = compiled.get(id);
        assert.ok(p, `no rule ${id}`);
        return p;
      };
      for (const [name, record] of Object.entries(cases.matches)) {
        test(`flags ${name}`, () => {
          const envelope = cloudTrailEnvelope(record);
          assert.ok(pattern().matches(envelope), pattern().explain(envelope).reasons.join('\n'));
        });
      }
      for (const [name, record] of Object.entries(cases.misses)) {
        test(`lets through ${name}`, () => {
          const envelope = cloudTrailEnvelope(record);
          assert.ok(!pattern().matches(envelope), pattern().explain(envelope).reasons.join('\n'));
        });
      }
    });
  }
});
