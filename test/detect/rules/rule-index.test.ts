import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ANY_KEYS,
  describeKeys,
  eventPatternKeys,
  isIndexed,
  keysHold,
  RuleIndex,
  type RuleKeys,
  sigmaRuleKeys,
} from '../../../src/detect/rules/rule-index.ts';
import { parseSigma, type SigmaRule } from '../../../src/detect/rules/sigma.ts';

const HEADER = 'title: t\nid: t\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n';

function sigma(...detection: string[]): SigmaRule {
  const [r] = parseSigma(HEADER + detection.map((l) => `  ${l}\n`).join(''), 't.yml');
  assert.ok(r);
  return r;
}

const IAM = 'iam.amazonaws.com';

describe('keys of an event pattern', () => {
  test('exact names and sources, ANDed across fields', () => {
    const keys = eventPatternKeys({ source: ['aws.iam'], detail: { eventSource: [IAM], eventName: ['CreateUser', 'DeleteUser'] } });
    assert.equal(
      describeKeys(keys),
      '(source: ["aws.iam"] and detail.eventSource: ["iam.amazonaws.com"] and detail.eventName: ["CreateUser","DeleteUser"])',
    );
    assert.ok(keysHold(keys, 'CreateUser', IAM));
    assert.ok(!keysHold(keys, 'createuser', IAM), 'EventBridge matches case-sensitively');
    assert.ok(!keysHold(keys, 'CreateUser', 'iam.example.com'));
    assert.ok(!keysHold(keys, 'CreateUser', 'sts.amazonaws.com'));
  });

  test('operators are the compiler’s own: prefix, anything-but, equals-ignore-case, wildcard', () => {
    const keys = eventPatternKeys({
      detail: {
        eventName: [{ prefix: 'Delete' }, { 'equals-ignore-case': 'stoplogging' }, { wildcard: '*Bucket*Policy' }],
        eventSource: [{ 'anything-but': ['s3.amazonaws.com'] }],
      },
    });
    assert.ok(isIndexed(keys));
    assert.ok(keysHold(keys, 'DeleteTrail', IAM));
    assert.ok(keysHold(keys, 'STOPLOGGING', IAM));
    assert.ok(keysHold(keys, 'PutBucketAclPolicy', IAM));
    assert.ok(!keysHold(keys, 'DeleteTrail', 's3.amazonaws.com'));
    assert.ok(!keysHold(keys, 'PutBucketAcl', IAM));
  });

  test('$or is an OR of its alternatives, any as soon as one alternative names no call', () => {
    const both = eventPatternKeys({ $or: [{ detail: { eventName: ['StopLogging'] } }, { detail: { eventSource: [IAM] } }] });
    assert.ok(keysHold(both, 'StopLogging', 'cloudtrail.amazonaws.com'));
    assert.ok(keysHold(both, 'ListUsers', IAM));
    assert.ok(!keysHold(both, 'ListUsers', 'cloudtrail.amazonaws.com'));
    const open = eventPatternKeys({ detail: { $or: [{ eventName: ['StopLogging'] }, { errorCode: ['AccessDenied'] }] } });
    assert.equal(open, ANY_KEYS);
  });

  test('fields other than the name and the source give no key, nor do arrays or a malformed pattern', () => {
    assert.equal(eventPatternKeys({ detail: { errorCode: ['AccessDenied'], userIdentity: { type: ['Root'] } } }), ANY_KEYS);
    assert.equal(eventPatternKeys({ detail: { requestParameters: { eventName: ['StopLogging'] } } }), ANY_KEYS);
    assert.equal(eventPatternKeys(['StopLogging']), ANY_KEYS);
    assert.equal(eventPatternKeys({ detail: { eventName: [{ nonsense: 1 }] } }), ANY_KEYS);
  });
});

describe('keys of a Sigma rule', () => {
  test('a selection on name and source, matched case-insensitively with Unicode folding as the rule is', () => {
    const keys = sigmaRuleKeys(sigma('selection:', `  eventSource: ${IAM}`, '  eventName: [ListKeys, CreateUser]', 'condition: selection'));
    assert.ok(keysHold(keys, 'ListKeys', IAM));
    assert.ok(keysHold(keys, 'LISTKEYS', IAM));
    // LONG S and KELVIN SIGN fold to s and k: a lower-cased key would miss these.
    assert.ok(keysHold(keys, 'Li\u017Ft\u212Aeys', IAM));
    assert.ok(!keysHold(keys, 'ListKeys2', IAM));
    assert.ok(!keysHold(keys, 'ListKeys', 'kms.amazonaws.com'));
  });

  test('not, keywords, fieldref and other fields give no key; an OR with such a branch gives none', () => {
    assert.equal(sigmaRuleKeys(sigma('filter:', '  eventName: ListUsers', 'condition: not filter')), ANY_KEYS);
    assert.equal(sigmaRuleKeys(sigma('keywords:', '  - ConsoleLogin', 'condition: keywords')), ANY_KEYS);
    assert.equal(sigmaRuleKeys(sigma('selection:', '  eventName|fieldref: eventSource', 'condition: selection')), ANY_KEYS);
    assert.equal(
      sigmaRuleKeys(sigma('sel_a:', '  eventName: DeleteTrail', 'sel_b:', '  errorCode: AccessDenied', 'condition: 1 of sel_*')),
      ANY_KEYS,
    );
    const narrowed = sigmaRuleKeys(
      sigma('selection:', `  eventSource: ${IAM}`, 'filter:', '  eventName: ListUsers', 'condition: selection and not filter'),
    );
    assert.equal(describeKeys(narrowed), `eventSource: "${IAM}"`);
  });

  test('modifiers are the rule’s own test on the name', () => {
    const keys = sigmaRuleKeys(sigma('selection:', '  eventName|startswith: [Delete, Detach]', 'condition: selection'));
    assert.ok(keysHold(keys, 'deletebucket', 's3.amazonaws.com'));
    assert.ok(keysHold(keys, 'DetachRolePolicy', IAM));
    assert.ok(!keysHold(keys, 'PutBucketPolicy', 's3.amazonaws.com'));
  });

  test('a rule not compiled by parseSigma has no keys', () => {
    const made: SigmaRule = { ...sigma('selection:', '  eventName: X', 'condition: selection') };
    assert.equal(sigmaRuleKeys(made), ANY_KEYS);
  });
});

describe('RuleIndex', () => {
  const name = (n: string): RuleKeys => eventPatternKeys({ detail: { eventName: [n] } });

  test('candidates in rule order: the rules naming the call and those naming none', () => {
    const index = new RuleIndex([name('A'), undefined, name('B'), ANY_KEYS, name('A')]);
    assert.equal(index.indexed, 3);
    assert.deepEqual(index.candidates('A', 's'), [0, 1, 3, 4]);
    assert.deepEqual(index.candidates('B', 's'), [1, 2, 3]);
    assert.deepEqual(index.candidates('C', 's'), [1, 3]);
    assert.equal(index.candidates('C', 's'), index.candidates('D', 't'), 'pairs with the same candidates share one list');
  });

  test('without an indexed rule every rule is a candidate', () => {
    assert.deepEqual(new RuleIndex([undefined, ANY_KEYS]).candidates('A', 's'), [0, 1]);
    assert.deepEqual(new RuleIndex([]).candidates('A', 's'), []);
  });

  test('the pairs remembered are bounded, and answers stay right past the bound', () => {
    const index = new RuleIndex([name('N7'), undefined], 5);
    for (let round = 0; round < 3; round++)
      for (let i = 0; i < 20; i++) assert.deepEqual(index.candidates(`N${i}`, 's'), i === 7 ? [0, 1] : [1]);
  });
});
