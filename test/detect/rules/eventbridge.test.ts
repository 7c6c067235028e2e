import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cloudTrailEnvelope, compileEventPattern, parseEventPattern, parseWildcard } from '../../../src/detect/rules/eventbridge.ts';
import { TrailwatchError } from '../../../src/errors.ts';

const matches = (pattern: unknown, event: unknown): boolean => compileEventPattern(pattern).matches(event);

/** Asserts the pattern is refused with TW_RULE_INVALID, naming the file and `path`, for a reason matching `problem`. */
function assertInvalid(pattern: unknown, path: string, problem: RegExp): void {
  assert.throws(
    () => compileEventPattern(pattern, 'rules/example.json'),
    (err: unknown) => {
      assert.ok(err instanceof TrailwatchError);
      assert.equal(err.code, 'TW_RULE_INVALID');
      assert.equal(err.fault, 'user');
      assert.equal(err.canRetry, false);
      assert.ok(err.message.startsWith(`rules/example.json: ${path}: `), err.message);
      assert.match(err.message, problem);
      assert.deepEqual(err.details, { source: 'rules/example.json', path });
      return true;
    },
  );
}

/** The sample event of EventBridge's pattern documentation. */
const ec2Event = {
  version: '0',
  id: 'ddddd4-aaaa-7777-4444-345dd43cc333',
  'detail-type': 'EC2 Instance State-change Notification',
  source: 'aws.ec2',
  account: '012345679012',
  time: '2017-10-02T16:24:49Z',
  region: 'us-east-1',
  resources: ['arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000'],
  detail: {
    'c-count': 5,
    'd-count': 3,
    'x-limit': 301.8,
    'source-ip': '10.0.0.33',
    'instance-id': 'i-000000aaaaaa00000',
    state: 'running',
  },
};

const stopLogging = {
  eventVersion: '1.09',
  userIdentity: { type: 'IAMUser', arn: 'arn:aws:iam::123456789012:user/mallory', accountId: '123456789012', userName: 'mallory' },
  eventTime: '2026-01-05T03:14:15Z',
  eventSource: 'cloudtrail.amazonaws.com',
  eventName: 'StopLogging',
  awsRegion: 'us-east-1',
  sourceIPAddress: '203.0.113.77',
  userAgent: 'aws-cli/2.15.0',
  requestParameters: { name: 'arn:aws:cloudtrail:us-east-1:123456789012:trail/org-trail' },
  responseElements: null,
  eventID: '6f1c1c1e-1111-4222-8333-944444444444',
  readOnly: false,
  eventType: 'AwsApiCall',
  recipientAccountId: '123456789012',
};

const consoleLogin = {
  eventVersion: '1.09',
  userIdentity: { type: 'IAMUser', arn: 'arn:aws:iam::123456789012:user/alice', accountId: '123456789012', userName: 'alice' },
  eventTime: '2026-01-05T08:00:00Z',
  eventSource: 'signin.amazonaws.com',
  eventName: 'ConsoleLogin',
  awsRegion: 'us-east-1',
  sourceIPAddress: '198.51.100.20',
  responseElements: { ConsoleLogin: 'Success' },
  additionalEventData: { LoginTo: 'https://console.aws.amazon.com/', MobileVersion: 'No', MFAUsed: 'No' },
  eventID: '0a0a0a0a-2222-4333-8444-955555555555',
  eventType: 'AwsConsoleSignIn',
  recipientAccountId: '123456789012',
};

describe('exact matching', () => {
  test('a leaf array is an OR of values, fields are ANDed, other event fields are ignored', () => {
    const pattern = { source: ['aws.ec2', 'aws.fargate'], detail: { state: ['initializing', 'running'] } };
    assert.equal(matches(pattern, ec2Event), true);
    assert.equal(matches(pattern, { ...ec2Event, source: 'aws.s3' }), false);
    assert.equal(matches(pattern, { ...ec2Event, detail: { state: 'stopped' } }), false);
  });

  test('strings match case-sensitively and exactly', () => {
    assert.equal(matches({ source: ['aws.ec2'] }, { source: 'AWS.EC2' }), false);
    assert.equal(matches({ source: ['aws.ec2'] }, { source: 'aws.ec2 ' }), false);
  });

  test('numbers, booleans and null match only their own JSON type', () => {
    assert.equal(matches({ n: [5] }, { n: 5 }), true);
    assert.equal(matches({ n: [5] }, { n: 5.0 }), true);
    assert.equal(matches({ n: [5] }, { n: '5' }), false);
    assert.equal(matches({ n: ['5'] }, { n: 5 }), false);
    assert.equal(matches({ n: [3.018e2] }, { n: 301.8 }), true);
    assert.equal(matches({ b: [true] }, { b: true }), true);
    assert.equal(matches({ b: [true] }, { b: 'true' }), false);
    assert.equal(matches({ b: [false] }, { b: true }), false);
  });

  test('null matches JSON null, "" matches the empty string, and the two never stand in for each other', () => {
    const event = { detail: { eventVersion: '', responseElements: null } };
    assert.equal(matches({ detail: { eventVersion: [''] } }, event), true);
    assert.equal(matches({ detail: { responseElements: [null] } }, event), true);
    assert.equal(matches({ detail: { eventVersion: [null] } }, event), false);
    assert.equal(matches({ detail: { responseElements: [''] } }, event), false);
    assert.equal(matches({ detail: { missing: [null] } }, event), false, 'a missing field is not null');
  });

  test('an array in the event matches when any element matches (the doc resources example)', () => {
    const pattern = {
      resources: [
        'arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f',
        'arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f',
        'arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f',
      ],
    };
    const event = {
      resources: [
        'arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:autoScalingGroupName/ASGTerminate',
        'arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f',
      ],
    };
    assert.equal(matches(pattern, event), true);
    assert.equal(matches(pattern, { resources: [] }), false);
    assert.equal(matches(pattern, { resources: [event.resources[0]] }), false);
    assert.equal(matches({ tags: ['b'] }, { tags: [['a'], ['b']] }), true, 'nested arrays are flattened');
  });

  test('an IP address matches any spelling of itself', () => {
    assert.equal(matches({ ip: ['2001:db8::1'] }, { ip: '2001:0DB8:0:0:0:0:0:1' }), true);
    assert.equal(matches({ ip: ['2001:db8::1'] }, { ip: '2001:db8::2' }), false);
    assert.equal(matches({ ip: ['10.0.0.1'] }, { ip: '10.0.0.1' }), true);
  });
});

describe('nested objects', () => {
  test('nested fields must appear with the same nesting', () => {
    const pattern = { detail: { state: ['running'] } };
    assert.equal(matches(pattern, ec2Event), true);
    assert.equal(matches(pattern, { state: 'running' }), false);
    assert.equal(matches(pattern, { detail: 'running' }), false, 'a scalar where an object is expected has no fields');
    assert.equal(matches(pattern, { detail: null }), false);
    assert.equal(matches(pattern, {}), false);
  });

  test('a leaf pattern does not match an object value', () => {
    assert.equal(matches({ detail: ['running'] }, { detail: { state: 'running' } }), false);
  });

  test('inside an array of objects, all fields must come from one element', () => {
    const event = {
      employees: [
        { firstName: 'John', lastName: 'Doe' },
        { firstName: 'Anna', lastName: 'Smith' },
        { firstName: 'Peter', lastName: 'Jones' },
      ],
    };
    assert.equal(matches({ employees: { firstName: ['Anna'] } }, event), true);
    assert.equal(matches({ employees: { firstName: ['Anna'], lastName: ['Smith'] } }, event), true);
    assert.equal(matches({ employees: { firstName: ['Anna'], lastName: ['Jones'] } }, event), false);
    assert.equal(matches({ employees: { firstName: ['Peter'] } }, { employees: [[event.employees[0]], [event.employees[2]]] }), true);
  });

  test('a pattern that reads no event is still safe on non-object events', () => {
    assert.equal(matches({ source: ['aws.ec2'] }, null), false);
    assert.equal(matches({ source: ['aws.ec2'] }, 'aws.ec2'), false);
    assert.equal(matches({ source: [{ exists: false }] }, undefined), true);
  });
});

describe('prefix and suffix', () => {
  test('prefix matches the start of a string value (the doc time example)', () => {
    const pattern = { time: [{ prefix: '2017-10-02' }] };
    assert.equal(matches(pattern, { time: '2017-10-02T18:43:48Z' }), true);
    assert.equal(matches(pattern, { time: '2017-10-03T18:43:48Z' }), false);
    assert.equal(matches(pattern, { time: '2017-10-02'.toUpperCase() }), true);
    assert.equal(matches({ id: [{ prefix: '12' }] }, { id: 123 }), false, 'prefix applies to strings only');
    assert.equal(matches({ id: [{ prefix: '' }] }, { id: 'anything' }), true);
  });

  test('prefix with equals-ignore-case ignores the case of the start', () => {
    const pattern = { detail: { service: [{ prefix: { 'equals-ignore-case': 'EventB' } }] } };
    for (const service of ['EventBridge', 'EVENTBRIDGE', 'eventbus'])
      assert.equal(matches(pattern, { detail: { service } }), true, service);
    assert.equal(matches(pattern, { detail: { service: 'Event-Bridge' } }), false);
  });

  test('suffix matches the end of a string value, optionally ignoring case', () => {
    assert.equal(matches({ FileName: [{ suffix: '.png' }] }, { FileName: 'image.png' }), true);
    assert.equal(matches({ FileName: [{ suffix: '.png' }] }, { FileName: 'image.PNG' }), false);
    assert.equal(matches({ FileName: [{ suffix: '.png' }] }, { FileName: 'image.png.txt' }), false);
    const folded = { detail: { FileName: [{ suffix: { 'equals-ignore-case': '.png' } }] } };
    assert.equal(matches(folded, { detail: { FileName: 'image.PNG' } }), true);
    assert.equal(matches(folded, { detail: { FileName: 'image.jpg' } }), false);
  });
});

describe('equals-ignore-case', () => {
  test('matches a string in any case, and only strings', () => {
    const pattern = { detail: { 'detail-type': [{ 'equals-ignore-case': 'ec2 instance state-change notification' }] } };
    assert.equal(matches(pattern, { detail: { 'detail-type': 'EC2 Instance State-change Notification' } }), true);
    assert.equal(matches(pattern, { detail: { 'detail-type': 'EC2 Instance Launch' } }), false);
    assert.equal(matches({ b: [{ 'equals-ignore-case': 'TRUE' }] }, { b: true }), false);
  });
});

describe('wildcard', () => {
  test('* matches any run of characters, including none', () => {
    const pattern = { EventBusArn: [{ wildcard: 'arn:aws:events:us-east-1:*:event-bus/*' }] };
    assert.equal(matches(pattern, { EventBusArn: 'arn:aws:events:us-east-1:123456789012:event-bus/default' }), true);
    assert.equal(matches(pattern, { EventBusArn: 'arn:aws:events:us-east-1::event-bus/' }), true);
    assert.equal(matches(pattern, { EventBusArn: 'arn:aws:events:us-west-2:123456789012:event-bus/default' }), false);
    assert.equal(matches({ f: [{ wildcard: 'dir/*.png' }] }, { f: 'dir/a/b.png' }), true);
    assert.equal(matches({ f: [{ wildcard: 'a*b*a' }] }, { f: 'aba' }), true);
    assert.equal(matches({ f: [{ wildcard: 'a*b*a' }] }, { f: 'ab' }), false, 'pieces may not overlap');
    assert.equal(matches({ f: [{ wildcard: 'abc' }] }, { f: 'abc' }), true);
    assert.equal(matches({ f: [{ wildcard: '*' }] }, { f: 5 }), false, 'wildcard applies to strings only');
  });

  test('\\* is a literal star and \\\\ a literal backslash', () => {
    assert.equal(matches({ f: [{ wildcard: 'a\\*b' }] }, { f: 'a*b' }), true);
    assert.equal(matches({ f: [{ wildcard: 'a\\*b' }] }, { f: 'axb' }), false);
    assert.equal(matches({ f: [{ wildcard: 'C:\\\\*' }] }, { f: 'C:\\Windows' }), true);
    assert.deepEqual(parseWildcard('x\\**'), ['x*', '']);
  });

  test('consecutive wildcards and stray escapes are refused', () => {
    assertInvalid({ f: [{ wildcard: 'a**b' }] }, '$.f[0].wildcard', /consecutive \*/);
    assertInvalid({ f: [{ wildcard: 'a\\nb' }] }, '$.f[0].wildcard', /backslash may only escape/);
    assertInvalid({ f: [{ wildcard: 'a\\' }] }, '$.f[0].wildcard', /backslash may only escape/);
    assertInvalid({ f: [{ wildcard: 5 }] }, '$.f[0].wildcard', /wildcard takes a string, got number 5/);
  });
});

describe('anything-but', () => {
  test('a single string or number excludes that value', () => {
    assert.equal(matches({ detail: { state: [{ 'anything-but': 'initializing' }] } }, ec2Event), true);
    assert.equal(matches({ detail: { state: [{ 'anything-but': 'running' }] } }, ec2Event), false);
    assert.equal(matches({ detail: { 'x-limit': [{ 'anything-but': 123 }] } }, ec2Event), true);
    assert.equal(matches({ detail: { 'x-limit': [{ 'anything-but': 301.8 }] } }, ec2Event), false);
  });

  test('a list of strings or of numbers excludes each', () => {
    const states = { detail: { state: [{ 'anything-but': ['stopped', 'overloaded'] }] } };
    assert.equal(matches(states, ec2Event), true);
    assert.equal(matches(states, { detail: { state: 'stopped' } }), false);
    const limits = { detail: { 'x-limit': [{ 'anything-but': [100, 200, 300] }] } };
    assert.equal(matches(limits, ec2Event), true);
    assert.equal(matches(limits, { detail: { 'x-limit': 200 } }), false);
  });

  test('it never matches a missing field, but does match other types of value', () => {
    const pattern = { detail: { state: [{ 'anything-but': 'initializing' }] } };
    assert.equal(matches(pattern, { detail: {} }), false);
    assert.equal(matches(pattern, {}), false);
    assert.equal(matches(pattern, { detail: { state: { nested: 'x' } } }), false);
    assert.equal(matches(pattern, { detail: { state: 7 } }), true);
    assert.equal(matches({ n: [{ 'anything-but': 5 }] }, { n: '5' }), true);
  });

  test('on an array in the event, any element other than the excluded ones matches', () => {
    const pattern = { tags: [{ 'anything-but': 'prod' }] };
    assert.equal(matches(pattern, { tags: ['prod', 'pci'] }), true);
    assert.equal(matches(pattern, { tags: ['prod'] }), false);
    assert.equal(matches(pattern, { tags: [] }), false);
  });

  test('prefix and suffix exclude strings that start or end so', () => {
    const prefix = { detail: { state: [{ 'anything-but': { prefix: 'init' } }] } };
    assert.equal(matches(prefix, ec2Event), true);
    assert.equal(matches(prefix, { detail: { state: 'initializing' } }), false);
    const suffix = { detail: { FileName: [{ 'anything-but': { suffix: '.txt' } }] } };
    assert.equal(matches(suffix, { detail: { FileName: 'notes.md' } }), true);
    assert.equal(matches(suffix, { detail: { FileName: 'notes.txt' } }), false);
    const list = { region: [{ 'anything-but': { prefix: ['us-', 'eu-'] } }] };
    assert.equal(matches(list, { region: 'ap-south-1' }), true);
    assert.equal(matches(list, { region: 'eu-west-1' }), false);
  });

  test('wildcard and equals-ignore-case exclude what they would match', () => {
    const wildcard = { FilePath: [{ 'anything-but': { wildcard: '*/lib/*' } }] };
    assert.equal(matches(wildcard, { FilePath: '/usr/bin/node' }), true);
    assert.equal(matches(wildcard, { FilePath: '/usr/lib/node' }), false);
    const wildcards = { FilePath: [{ 'anything-but': { wildcard: ['*/lib/*', '*.tmp'] } }] };
    assert.equal(matches(wildcards, { FilePath: 'a.tmp' }), false);
    assert.equal(matches(wildcards, { FilePath: 'a.txt' }), true);
    const cased = { detail: { state: [{ 'anything-but': { 'equals-ignore-case': ['Stopped', 'OverLoaded'] } }] } };
    assert.equal(matches(cased, { detail: { state: 'STOPPED' } }), false);
    assert.equal(matches(cased, { detail: { state: 'overloaded' } }), false);
    assert.equal(matches(cased, ec2Event), true);
    assert.equal(matches({ s: [{ 'anything-but': { 'equals-ignore-case': 'initializing' } }] }, { s: 'INITIALIZING' }), false);
  });

  test('malformed anything-but operands are refused', () => {
    assertInvalid({ s: [{ 'anything-but': [] }] }, '$.s[0].anything-but', /at least one value/);
    assertInvalid({ s: [{ 'anything-but': ['a', 1] }] }, '$.s[0].anything-but', /only strings or only numbers/);
    assertInvalid({ s: [{ 'anything-but': true }] }, '$.s[0].anything-but', /got boolean true/);
    assertInvalid({ s: [{ 'anything-but': null }] }, '$.s[0].anything-but', /got null/);
    assertInvalid({ s: [{ 'anything-but': { numeric: ['>', 1] } }] }, '$.s[0].anything-but.numeric', /does not take "numeric"/);
    assertInvalid({ s: [{ 'anything-but': { prefix: '' } }] }, '$.s[0].anything-but.prefix', /cannot be empty/);
    assertInvalid({ s: [{ 'anything-but': { prefix: 1 } }] }, '$.s[0].anything-but.prefix', /takes a string or a list of strings/);
    assertInvalid({ s: [{ 'anything-but': { wildcard: ['ok*', 'a**'] } }] }, '$.s[0].anything-but.wildcard[1]', /consecutive/);
    assertInvalid({ s: [{ 'anything-but': { prefix: 'a', suffix: 'b' } }] }, '$.s[0].anything-but', /keys: prefix, suffix/);
  });
});

describe('numeric', () => {
  test('ranges and comparisons (the doc example)', () => {
    const pattern = {
      detail: {
        'c-count': [{ numeric: ['>', 0, '<=', 5] }],
        'd-count': [{ numeric: ['<', 10] }],
        'x-limit': [{ numeric: ['=', 3.018e2] }],
      },
    };
    assert.equal(matches(pattern, ec2Event), true);
    assert.equal(matches(pattern, { detail: { ...ec2Event.detail, 'c-count': 0 } }), false);
    assert.equal(matches(pattern, { detail: { ...ec2Event.detail, 'c-count': 6 } }), false);
    assert.equal(matches(pattern, { detail: { ...ec2Event.detail, 'd-count': 10 } }), false);
    assert.equal(matches(pattern, { detail: { ...ec2Event.detail, 'x-limit': 301.9 } }), false);
  });

  test('each bound operator is inclusive or exclusive as written', () => {
    const at = (numeric: unknown[], n: number) => matches({ n: [{ numeric }] }, { n });
    assert.equal(at(['>=', 1, '<', 2], 1), true);
    assert.equal(at(['>=', 1, '<', 2], 2), false);
    assert.equal(at(['>', 1, '<=', 2], 1), false);
    assert.equal(at(['>', 1, '<=', 2], 2), true);
    assert.equal(at(['>=', -1.5], -1.5), true);
    assert.equal(at(['<=', -1.5], -1.4), false);
    assert.equal(at(['=', 0], -0), true);
  });

  test('only JSON numbers within ±5e9 are compared, to six decimal places', () => {
    const pattern = { n: [{ numeric: ['>', 0] }] };
    assert.equal(matches(pattern, { n: '5' }), false);
    assert.equal(matches(pattern, { n: true }), false);
    assert.equal(matches(pattern, { n: null }), false);
    assert.equal(matches(pattern, {}), false);
    assert.equal(matches(pattern, { n: 6e9 }), false);
    assert.equal(matches(pattern, { n: [-1, 2] }), true, 'any element of an array');
    assert.equal(matches({ n: [{ numeric: ['=', 1.0000001] }] }, { n: 1.0000002 }), true);
    assert.equal(matches({ n: [{ numeric: ['=', 1.000001] }] }, { n: 1.000002 }), false);
  });

  test('malformed numeric expressions are refused', () => {
    assertInvalid({ n: [{ numeric: '>' }] }, '$.n[0].numeric', /got the string ">"/);
    assertInvalid({ n: [{ numeric: [] }] }, '$.n[0].numeric', /got 0 elements/);
    assertInvalid({ n: [{ numeric: ['>', 1, '<'] }] }, '$.n[0].numeric', /got 3 elements/);
    assertInvalid({ n: [{ numeric: ['!=', 1] }] }, '$.n[0].numeric[0]', /expected one of =, <, <=, >, >=/);
    assertInvalid({ n: [{ numeric: ['>', '1'] }] }, '$.n[0].numeric[1]', /must be a number/);
    assertInvalid({ n: [{ numeric: ['<', 1, '>', 0] }] }, '$.n[0].numeric[0]', /expected one of >, >=/);
    assertInvalid({ n: [{ numeric: ['=', 1, '<', 2] }] }, '$.n[0].numeric[0]', /expected one of >, >=/);
    assertInvalid({ n: [{ numeric: ['>', 0, '>=', 5] }] }, '$.n[0].numeric[2]', /expected one of <, <=/);
    assertInvalid({ n: [{ numeric: ['>', 5, '<', 5] }] }, '$.n[0].numeric', /lower bound .* below its upper bound/);
    assertInvalid({ n: [{ numeric: ['>', 6e9] }] }, '$.n[0].numeric[1]', /within ±5e\+9/);
  });
});

describe('exists', () => {
  test('exists true matches any present leaf value, including null and ""', () => {
    const pattern = { detail: { 'c-count': [{ exists: true }] } };
    assert.equal(matches(pattern, ec2Event), true);
    assert.equal(matches(pattern, { detail: { 'c-count': null } }), true);
    assert.equal(matches(pattern, { detail: { 'c-count': '' } }), true);
    assert.equal(matches(pattern, { detail: { 'c-count': [1] } }), true);
    assert.equal(matches(pattern, { detail: {} }), false);
  });

  test('exists false matches a missing field, a missing parent, and a field that is not a leaf', () => {
    const pattern = { detail: { 'c-count': [{ exists: false }] } };
    assert.equal(matches(pattern, ec2Event), false);
    assert.equal(matches(pattern, { detail: { state: 'running' } }), true);
    assert.equal(matches(pattern, { source: 'aws.ec2' }), true);
    assert.equal(matches(pattern, { detail: { 'c-count': { c1: 100 } } }), true, 'an object is an intermediate node, not a leaf');
    assert.equal(matches(pattern, { detail: { 'c-count': [] } }), true, 'an empty array holds no value');
    assert.equal(matches({ detail: { 'c-count': [{ exists: true }] } }, { detail: { 'c-count': { c1: 100 } } }), false);
  });

  test('exists false alone inside an array of objects needs the field absent from every element', () => {
    const event = { items: [{ name: 'a', owner: 'x' }, { name: 'b' }] };
    assert.equal(matches({ items: { owner: [{ exists: false }] } }, event), false);
    assert.equal(matches({ items: { group: [{ exists: false }] } }, event), true);
    assert.equal(matches({ items: { name: ['b'], owner: [{ exists: false }] } }, event), true, 'beside a positive field, the same element');
    assert.equal(matches({ items: { name: ['a'], owner: [{ exists: false }] } }, event), false);
  });

  test('exists combines with other match values as an OR', () => {
    const pattern = { s: [{ exists: false }, 'on'] };
    assert.equal(matches(pattern, {}), true);
    assert.equal(matches(pattern, { s: 'on' }), true);
    assert.equal(matches(pattern, { s: 'off' }), false);
  });

  test('exists takes only a boolean', () => {
    assertInvalid({ s: [{ exists: 'true' }] }, '$.s[0].exists', /true or false, got the string "true"/);
  });
});

describe('cidr', () => {
  test('IPv4 blocks (the doc example)', () => {
    assert.equal(matches({ detail: { 'source-ip': [{ cidr: '10.0.0.0/24' }] } }, ec2Event), true);
    assert.equal(matches({ detail: { 'source-ip': [{ cidr: '10.0.1.0/24' }] } }, ec2Event), false);
    assert.equal(matches({ ip: [{ cidr: '0.0.0.0/0' }] }, { ip: '255.255.255.255' }), true);
    assert.equal(matches({ ip: [{ cidr: '10.0.0.33/32' }] }, { ip: '10.0.0.33' }), true);
    assert.equal(matches({ ip: [{ cidr: '10.0.0.7/8' }] }, { ip: '10.200.1.1' }), true, 'host bits in the block are ignored');
  });

  test('IPv6 blocks, with any spelling of the address', () => {
    const pattern = { ip: [{ cidr: '2001:db8::/32' }] };
    assert.equal(matches(pattern, { ip: '2001:db8:ffff::1' }), true);
    assert.equal(matches(pattern, { ip: '2001:0DB8:0000:0000:0000:0000:0000:0001' }), true);
    assert.equal(matches(pattern, { ip: '2001:db9::1' }), false);
    assert.equal(matches({ ip: [{ cidr: '::ffff:0:0/96' }] }, { ip: '::ffff:192.0.2.1' }), true);
    assert.equal(matches(pattern, { ip: '10.0.0.1' }), false, 'families never mix');
  });

  test('values that are not addresses never match', () => {
    const pattern = { ip: [{ cidr: '10.0.0.0/8' }] };
    for (const ip of ['AWS Internal', 'cloudtrail.amazonaws.com', '10.0.0', '10.0.0.256', '10.0.0.1/32', '']) {
      assert.equal(matches(pattern, { ip }), false, ip);
    }
    assert.equal(matches(pattern, { ip: 167772161 }), false);
  });

  test('malformed blocks are refused', () => {
    for (const cidr of ['10.0.0.0', '10.0.0.0/33', '2001:db8::/129', '10.0.0/8', 'a:b:c/16', '1::2::3/64', '10.0.0.0/-1']) {
      assertInvalid({ ip: [{ cidr }] }, '$.ip[0].cidr', /not an IPv4 or IPv6 CIDR block/);
    }
    assertInvalid({ ip: [{ cidr: 10 }] }, '$.ip[0].cidr', /takes a string/);
  });
});

describe('$or', () => {
  test('ORs field sets beside ANDed fields (the doc examples)', () => {
    const pattern = {
      source: ['aws.cloudwatch'],
      $or: [{ metricName: ['CPUUtilization', 'ReadLatency'] }, { namespace: ['AWS/EC2', 'AWS/ES'] }],
    };
    assert.equal(matches(pattern, { source: 'aws.cloudwatch', metricName: 'ReadLatency' }), true);
    assert.equal(matches(pattern, { source: 'aws.cloudwatch', namespace: 'AWS/ES' }), true);
    assert.equal(matches(pattern, { source: 'aws.cloudwatch', namespace: 'AWS/S3' }), false);
    assert.equal(matches(pattern, { source: 'aws.s3', metricName: 'ReadLatency' }), false);
  });

  test('parallel, nested and multi-field alternatives', () => {
    const parallel = {
      $or: [{ metricName: ['CPUUtilization'] }, { namespace: ['AWS/EC2'] }],
      detail: { $or: [{ source: ['aws.cloudwatch'] }, { 'detail-type': ['CloudWatch Alarm State Change'] }] },
    };
    assert.equal(matches(parallel, { namespace: 'AWS/EC2', detail: { 'detail-type': 'CloudWatch Alarm State Change' } }), true);
    assert.equal(matches(parallel, { namespace: 'AWS/EC2', detail: {} }), false);
    const nested = {
      source: ['aws.cloudwatch'],
      $or: [
        { metricName: ['CPUUtilization', 'ReadLatency'] },
        { metricType: ['MetricType'], namespace: ['AWS/EC2', 'AWS/ES'], $or: [{ metricId: [1234] }, { spaceId: [1000] }] },
        { scope: ['Service'] },
      ],
    };
    assert.equal(matches(nested, { source: 'aws.cloudwatch', metricType: 'MetricType', namespace: 'AWS/ES', spaceId: 1000 }), true);
    assert.equal(matches(nested, { source: 'aws.cloudwatch', metricType: 'MetricType', namespace: 'AWS/ES', spaceId: 1 }), false);
    assert.equal(matches(nested, { source: 'aws.cloudwatch', namespace: 'AWS/ES', spaceId: 1000 }), false);
    assert.equal(matches(nested, { source: 'aws.cloudwatch', scope: 'Service' }), true);
  });

  test('malformed $or is refused', () => {
    assertInvalid({ $or: [{ a: ['x'] }] }, '$.$or', /at least two alternatives, got 1/);
    assertInvalid({ $or: { a: ['x'] } }, '$.$or', /must be an array of at least two objects, got an object/);
    assertInvalid({ $or: [{ a: ['x'] }, ['b']] }, '$.$or[1]', /must be an object, got an array/);
    assertInvalid({ $or: [{ a: ['x'] }, {}] }, '$.$or[1]', /empty object/);
    assertInvalid({ $or: [{ a: ['x'] }, { prefix: ['y'] }] }, '$.$or[1].prefix', /operator and cannot be a field name inside \$or/);
  });
});

describe('CloudTrail through cloudTrailEnvelope', () => {
  test('the envelope EventBridge delivers a CloudTrail API call in', () => {
    assert.deepEqual(cloudTrailEnvelope(stopLogging), {
      version: '0',
      id: stopLogging.eventID,
      'detail-type': 'AWS API Call via CloudTrail',
      source: 'aws.cloudtrail',
      account: '123456789012',
      time: '2026-01-05T03:14:15Z',
      region: 'us-east-1',
      resources: [],
      detail: stopLogging,
    });
    const login = cloudTrailEnvelope(consoleLogin);
    assert.equal(login['detail-type'], 'AWS Console Sign In via CloudTrail');
    assert.equal(login.source, 'aws.signin');
    assert.equal(cloudTrailEnvelope({ eventSource: 's3.amazonaws.com', eventType: 'AwsServiceEvent' }).source, 'aws.s3');
    assert.equal(
      cloudTrailEnvelope({ eventSource: 's3.amazonaws.com', eventType: 'AwsServiceEvent' })['detail-type'],
      'AWS Service Event via CloudTrail',
    );
    const bare = cloudTrailEnvelope({ eventType: 'constructor' });
    assert.deepEqual(bare, {
      version: '0',
      'detail-type': 'AWS API Call via CloudTrail',
      resources: [],
      detail: { eventType: 'constructor' },
    });
  });

  test('a trail being stopped or deleted', () => {
    const pattern = compileEventPattern({
      source: ['aws.cloudtrail'],
      'detail-type': ['AWS API Call via CloudTrail'],
      detail: { eventName: ['StopLogging', 'DeleteTrail'] },
    });
    assert.equal(pattern.matches(cloudTrailEnvelope(stopLogging)), true);
    assert.equal(pattern.matches(cloudTrailEnvelope({ ...stopLogging, eventName: 'DeleteTrail' })), true);
    assert.equal(pattern.matches(cloudTrailEnvelope({ ...stopLogging, eventName: 'StartLogging' })), false);
    assert.equal(pattern.matches(cloudTrailEnvelope({ ...stopLogging, eventSource: 's3.amazonaws.com' })), false);
    assert.equal(pattern.matches(stopLogging), false, 'a bare record lacks the envelope');
  });

  test('a console sign-in without MFA', () => {
    const pattern = compileEventPattern({
      'detail-type': ['AWS Console Sign In via CloudTrail'],
      detail: { additionalEventData: { MFAUsed: ['No'] } },
    });
    assert.equal(pattern.matches(cloudTrailEnvelope(consoleLogin)), true);
    const withMfa = { ...consoleLogin, additionalEventData: { ...consoleLogin.additionalEventData, MFAUsed: 'Yes' } };
    assert.equal(pattern.matches(cloudTrailEnvelope(withMfa)), false);
    assert.equal(pattern.matches(cloudTrailEnvelope({ ...consoleLogin, eventType: 'AwsApiCall' })), false);
  });

  test('root activity or an IAM policy change, by $or', () => {
    const pattern = compileEventPattern({
      source: ['aws.iam', 'aws.signin', 'aws.cloudtrail'],
      detail: {
        $or: [
          { userIdentity: { type: ['Root'] } },
          { eventSource: ['iam.amazonaws.com'], eventName: [{ prefix: 'Put' }, { prefix: 'Attach' }, 'CreatePolicyVersion'] },
        ],
      },
    });
    const root = { ...consoleLogin, userIdentity: { type: 'Root', arn: 'arn:aws:iam::123456789012:root' } };
    assert.equal(pattern.matches(cloudTrailEnvelope(root)), true);
    const attach = { ...stopLogging, eventSource: 'iam.amazonaws.com', eventName: 'AttachUserPolicy' };
    assert.equal(pattern.matches(cloudTrailEnvelope(attach)), true);
    assert.equal(pattern.matches(cloudTrailEnvelope({ ...attach, eventName: 'ListPolicies' })), false);
    assert.equal(pattern.matches(cloudTrailEnvelope(consoleLogin)), false);
  });

  test('a call from outside the corporate ranges, by cidr on sourceIPAddress', () => {
    const pattern = compileEventPattern({
      source: ['aws.cloudtrail'],
      detail: {
        eventName: ['StopLogging'],
        sourceIPAddress: [{ 'anything-but': { prefix: '10.' } }],
        $or: [{ sourceIPAddress: [{ cidr: '203.0.113.0/24' }] }, { sourceIPAddress: [{ cidr: '2001:db8::/32' }] }],
      },
    });
    assert.equal(pattern.matches(cloudTrailEnvelope(stopLogging)), true);
    assert.equal(pattern.matches(cloudTrailEnvelope({ ...stopLogging, sourceIPAddress: '2001:db8::7' })), true);
    assert.equal(pattern.matches(cloudTrailEnvelope({ ...stopLogging, sourceIPAddress: '198.51.100.1' })), false);
    assert.equal(pattern.matches(cloudTrailEnvelope({ ...stopLogging, sourceIPAddress: 'cloudtrail.amazonaws.com' })), false);
  });
});

describe('fields and explain', () => {
  test('fields lists every event path the pattern reads, once, $or included', () => {
    const pattern = compileEventPattern({
      source: ['aws.cloudtrail'],
      detail: { eventName: ['StopLogging'], $or: [{ userIdentity: { type: ['Root'] } }, { eventName: [{ prefix: 'Delete' }] }] },
    });
    assert.deepEqual(pattern.fields, [['source'], ['detail', 'eventName'], ['detail', 'userIdentity', 'type']]);
    assert.equal(pattern.source, '<event pattern>');
  });

  test('explain names every field it read, what the event held, and agrees with matches', () => {
    const pattern = compileEventPattern({
      source: ['aws.cloudtrail'],
      'detail-type': ['AWS API Call via CloudTrail'],
      detail: { eventName: ['StopLogging', 'DeleteTrail'], errorCode: [{ exists: false }] },
    });
    const hit = cloudTrailEnvelope(stopLogging);
    assert.deepEqual(pattern.explain(hit), {
      matched: true,
      reasons: [
        'source = "aws.cloudtrail": matches ["aws.cloudtrail"]',
        'detail-type = "AWS API Call via CloudTrail": matches ["AWS API Call via CloudTrail"]',
        'detail.eventName = "StopLogging": matches ["StopLogging","DeleteTrail"]',
        'detail.errorCode is absent: matches [{"exists":false}]',
      ],
    });
    const miss = cloudTrailEnvelope({
      ...stopLogging,
      eventName: 'StartLogging',
      errorCode: 'AccessDenied',
      eventSource: 's3.amazonaws.com',
    });
    const explained = pattern.explain(miss);
    assert.equal(explained.matched, false);
    assert.equal(pattern.matches(miss), false);
    assert.deepEqual(
      explained.reasons.filter((r) => r.includes('does not match')),
      [
        'source = "aws.s3": does not match ["aws.cloudtrail"]',
        'detail.eventName = "StartLogging": does not match ["StopLogging","DeleteTrail"]',
        'detail.errorCode = "AccessDenied": does not match [{"exists":false}]',
      ],
    );
  });

  test('explain reports $or alternatives and array elements by index', () => {
    const pattern = compileEventPattern({ items: { name: ['b'] }, $or: [{ a: [1] }, { b: [2] }] });
    const { matched, reasons } = pattern.explain({ items: [{ name: 'a' }, { name: 'b' }], b: 2 });
    assert.equal(matched, true);
    assert.deepEqual(reasons, [
      'items[0].name = "a": does not match ["b"]',
      'items[1].name = "b": matches ["b"]',
      'a is absent: does not match [1]',
      'b = 2: matches [2]',
      '$or: alternative 2 of 2 matched',
    ]);
    assert.deepEqual(pattern.explain({ items: [] }).reasons.slice(-1), ['$or: none of 2 alternatives matched']);
  });
});

describe('validation', () => {
  test('a pattern must be a non-empty object', () => {
    assertInvalid([], '$', /must be a JSON object, got an array/);
    assertInvalid('source', '$', /must be a JSON object, got the string "source"/);
    assertInvalid(null, '$', /must be a JSON object, got null/);
    assertInvalid({}, '$', /empty object/);
    assertInvalid({ detail: {} }, '$.detail', /empty object/);
  });

  test('leaves must be non-empty arrays of JSON scalars or operator objects', () => {
    assertInvalid({ source: 'aws.ec2' }, '$.source', /must be an array of match values or a nested object, got the string "aws.ec2"/);
    assertInvalid({ detail: { n: 5 } }, '$.detail.n', /got number 5/);
    assertInvalid({ detail: { n: null } }, '$.detail.n', /got null/);
    assertInvalid({ source: [] }, '$.source', /empty array/);
    assertInvalid({ source: [['aws.ec2']] }, '$.source[0]', /got an array/);
    assertInvalid({ source: [Number.NaN] }, '$.source[0]', /got number NaN/);
  });

  test('operator objects take exactly one known operator with the right operand', () => {
    assertInvalid({ s: [{}] }, '$.s[0]', /empty match expression/);
    assertInvalid({ s: [{ prefix: 'a', suffix: 'b' }] }, '$.s[0]', /exactly one operator, got prefix, suffix/);
    assertInvalid({ s: [{ prefx: 'a' }] }, '$.s[0].prefx', /unknown operator "prefx"; expected one of prefix, suffix/);
    assertInvalid({ s: [{ contains: 'a' }] }, '$.s[0].contains', /unknown operator "contains"/);
    assertInvalid({ s: [{ prefix: 5 }] }, '$.s[0].prefix', /prefix takes a string or \{"equals-ignore-case": string\}, got number 5/);
    assertInvalid({ s: [{ prefix: { 'equals-ignore-case': 5 } }] }, '$.s[0].prefix.equals-ignore-case', /takes a string/);
    assertInvalid({ s: [{ suffix: { wildcard: 'x' } }] }, '$.s[0].suffix', /keys: wildcard/);
    assertInvalid({ s: [{ 'equals-ignore-case': ['a'] }] }, '$.s[0].equals-ignore-case', /takes a string, got an array/);
  });

  test('paths quote keys that are not plain names', () => {
    assertInvalid({ detail: { 'odd key': 'x' } }, '$.detail["odd key"]', /got the string "x"/);
  });

  test('absurdly deep patterns are refused rather than overflowing', () => {
    let pattern: Record<string, unknown> = { leaf: ['x'] };
    for (let i = 0; i < 100; i++) pattern = { d: pattern };
    assert.throws(() => compileEventPattern(pattern, 'deep.json'), /deep\.json: .*nests deeper than 64 levels/);
  });
});

describe('parseEventPattern', () => {
  test('parses and compiles pattern text', () => {
    const pattern = parseEventPattern('{"source": ["aws.cloudtrail"]}', 'rules/trail.json');
    assert.equal(pattern.source, 'rules/trail.json');
    assert.equal(pattern.matches({ source: 'aws.cloudtrail' }), true);
  });

  test('a JSON syntax error names the file, line and column', () => {
    const cases: [string, number, number][] = [
      ['{\n  "source": ["aws.ec2",]\n}', 2, 24],
      ['{\n  "source": ["aws.ec2"]\n  "detail": {}\n}', 3, 3],
      ['{"a": tru}', 1, 7],
      ['{"a": ["x"]', 1, 12],
      ['', 1, 1],
      ['{"a": ["x"]} extra', 1, 14],
    ];
    for (const [text, line, column] of cases) {
      assert.throws(
        () => parseEventPattern(text, 'rules/broken.json'),
        (err: unknown) => {
          assert.ok(err instanceof TrailwatchError);
          assert.equal(err.code, 'TW_RULE_INVALID');
          assert.equal(err.fault, 'user');
          assert.ok(
            err.message.startsWith(`rules/broken.json: event pattern is not valid JSON at line ${line}, column ${column}: `),
            err.message,
          );
          assert.equal(err.details.line, line);
          assert.equal(err.details.column, column);
          return true;
        },
        text,
      );
    }
  });

  test('valid JSON that is not a valid pattern reports the pattern path', () => {
    assert.throws(
      () => parseEventPattern('{"detail": {"eventName": "StopLogging"}}', 'rules/t.json'),
      /^TrailwatchError: rules\/t\.json: \$\.detail\.eventName: /,
    );
  });
});
