import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { AuditEvent } from '../../../src/contracts/types.ts';
import { mulberry32 } from '../../../src/demo/traffic.ts';
import { normalizedRecord, RuleSet, ruleFinding } from '../../../src/detect/rules/evaluate.ts';
import { loadRules, type Rule } from '../../../src/detect/rules/load.ts';
import { eventPatternKeys, isIndexed, sigmaRuleKeys } from '../../../src/detect/rules/rule-index.ts';
import { parseSigmaFile } from '../../../src/detect/rules/sigma.ts';
import { normalizeCloudTrail } from '../../../src/ingest/cloudtrail.ts';

const record = {
  eventVersion: '1.09',
  userIdentity: { type: 'IAMUser', arn: 'arn:aws:iam::111122223333:user/alice', accountId: '111122223333', accessKeyId: 'AKIAEXAMPLE' },
  eventTime: '2026-12-01T10:00:00Z',
  eventSource: 'ec2.amazonaws.com',
  eventName: 'ModifySnapshotAttribute',
  awsRegion: 'us-east-1',
  sourceIPAddress: '198.51.100.7',
  userAgent: 'aws-cli/2',
  requestParameters: { snapshotId: 'snap-1', createVolumePermission: { add: { items: [{ group: 'all' }] } } },
  eventID: 'e-1',
  eventType: 'AwsApiCall',
  recipientAccountId: '111122223333',
};

/** A rule that records which record it was given. */
function probe(id: string, fields: string[], test: (r: Record<string, unknown>) => boolean, seen: Array<Record<string, unknown>>): Rule {
  return {
    id,
    title: id,
    severity: 'high',
    kind: 'sigma',
    source: `${id}.yml`,
    tags: ['attack.t1537'],
    techniques: ['T1537'],
    fields,
    matches: (r) => {
      seen.push(r);
      return test(r);
    },
    explain: () => ({ matched: false, reasons: [] }),
  };
}

describe('RuleSet', () => {
  test('the normalized record answers the fields the event carries', () => {
    const r = normalizedRecord(normalizeCloudTrail(record));
    assert.equal(r.eventName, 'ModifySnapshotAttribute');
    assert.equal(r.eventSource, 'ec2.amazonaws.com');
    assert.equal(r.eventType, 'AwsApiCall');
    assert.deepEqual(r.userIdentity, {
      type: 'IAMUser',
      arn: 'arn:aws:iam::111122223333:user/alice',
      accountId: '111122223333',
      accessKeyId: 'AKIAEXAMPLE',
    });
    assert.equal(r.requestParameters, undefined);
  });

  test('eventTime is what toISOString writes, for any time and in any order', () => {
    const event = normalizeCloudTrail(record);
    const at = (ms: number): string => {
      try {
        return String(normalizedRecord({ ...event, eventTimeMs: ms }).eventTime);
      } catch (err) {
        return (err as Error).name;
      }
    };
    const iso = (ms: number): string => {
      try {
        return new Date(ms).toISOString();
      } catch (err) {
        return (err as Error).name;
      }
    };
    const edges = [
      0,
      1,
      999,
      1_000,
      -1,
      -1_001,
      1.5,
      Number.NaN,
      951_782_400_000,
      4_107_542_400_000,
      253_402_300_799_999,
      253_402_300_800_000,
      8.64e15,
      8.64e15 + 1,
    ];
    const rnd = mulberry32(7);
    const times = [...edges, ...Array.from({ length: 20_000 }, (_, i) => Math.floor(rnd() * 2 ** (20 + (i % 28))))];
    for (const ms of [...times, ...times.reverse()]) assert.equal(at(ms), iso(ms), `at ${ms}`);
  });

  test('raw is parsed only for a rule that reads a field the normalized event lacks, once per event', () => {
    const seen: Array<Record<string, unknown>> = [];
    const byName = probe('by-name', ['eventName'], (r) => r.eventName === 'ModifySnapshotAttribute', seen);
    const shared = probe(
      'shared-publicly',
      ['eventName', 'requestParameters.createVolumePermission.add.items.group'],
      (r) => JSON.stringify(r.requestParameters ?? null).includes('"group":"all"'),
      seen,
    );
    const rules = new RuleSet([byName, shared, shared]);
    const withRaw = normalizeCloudTrail(record, { raw: true });
    assert.deepEqual(
      rules.match(withRaw).map((r) => r.id),
      ['by-name', 'shared-publicly', 'shared-publicly'],
    );
    assert.equal(seen[0]?.requestParameters, undefined, 'the name rule saw the normalized record');
    assert.ok(seen[1]?.requestParameters, 'the parameter rule saw the raw record');
    assert.equal(seen[1], seen[2], 'raw parsed once for the event');

    // Without raw (publish --no-raw), a rule on request parameters cannot match; nothing throws.
    assert.deepEqual(
      rules.match(normalizeCloudTrail(record)).map((r) => r.id),
      ['by-name'],
    );
  });

  test('a raw that is not a JSON object is counted and the normalized record used', () => {
    const seen: Array<Record<string, unknown>> = [];
    const rules = new RuleSet([probe('p', ['requestParameters.x'], () => true, seen)]);
    const event: AuditEvent = { ...normalizeCloudTrail(record), raw: '[not json' };
    assert.equal(rules.matchAll([event]).length, 1);
    assert.equal(rules.rawUnparsed, 1);
    assert.equal(seen[0]?.eventName, 'ModifySnapshotAttribute');
  });

  test('a match becomes a Finding naming the rule, the call and its technique', () => {
    const event = normalizeCloudTrail(record);
    const rule = probe('snapshot-shared', ['eventName'], () => true, []);
    const f = ruleFinding({ rule, event }, 'trailwatch.findings');
    assert.equal(f.class_uid, 2004);
    assert.equal(f.finding_info.analytic.uid, 'snapshot-shared');
    assert.equal(f.api?.operation, 'ModifySnapshotAttribute');
    assert.equal(f.severity_id, 4);
    assert.deepEqual(
      f.attacks.map((a) => a.technique.uid),
      ['T1537'],
    );
    assert.equal(ruleFinding({ rule, event }, 'trailwatch.findings').finding_info.uid, f.finding_info.uid, 'deterministic');
  });
});

// ---------------------------------------------------------------------------------------------
// The index: the indexed rule set returns exactly what trying every rule on every event returns

const PACK_DIR = new URL('../../../src/detect/rules/pack/', import.meta.url);
const SIGMA_DIR = new URL('../../fixtures/sigma/', import.meta.url);

/** Rules the index has to get right although they look indexable, or look like they are not. */
const TRICKY_EVENT_PATTERNS: Record<string, unknown> = {
  'or-with-an-unindexed-branch': { detail: { $or: [{ eventName: ['DeleteTrail'] }, { errorCode: ['AccessDenied'] }] } },
  'or-of-two-keys': { $or: [{ detail: { eventName: ['StopLogging'] } }, { source: ['aws.kms'] }] },
  'anything-but-names': { detail: { eventName: [{ 'anything-but': ['ConsoleLogin', 'GetObject'] }], errorCode: [{ exists: true }] } },
  'prefix-source-and-name': { detail: { eventSource: [{ prefix: 'iam.' }], eventName: [{ prefix: 'Delete' }] } },
  'equals-ignore-case': { detail: { eventName: [{ 'equals-ignore-case': 'consolelogin' }] } },
  'wildcard-name': { detail: { eventName: [{ wildcard: '*Bucket*' }] } },
  'name-absent': { detail: { eventName: [{ exists: false }] } },
  'suffix-or-anything-but-prefix': {
    detail: { eventName: [{ suffix: 'Policy' }, { 'anything-but': { prefix: 'Get' } }], errorCode: ['AccessDenied'] },
  },
  'address-spelled-differently': { detail: { eventName: ['10.0.0.1'] } },
  'envelope-source': { source: ['aws.iam'], detail: { eventName: ['CreateUser', 'DeleteUser'] } },
  'number-name': { detail: { eventName: [123] } },
  'name-and-request-field': { detail: { eventName: ['PutBucketPolicy'], requestParameters: { bucketName: [{ prefix: 'prod' }] } } },
};

const SIGMA_HEAD = (id: string) => `title: ${id}\nid: ${id}\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n`;
const TRICKY_SIGMA: Record<string, string> = {
  'not-on-names': [
    'selection:',
    '  eventSource: iam.amazonaws.com',
    'filter:',
    '  eventName: [ListUsers, GetUser]',
    'condition: selection and not filter',
  ].join('\n'),
  'only-not': ['filter:', '  eventName: ConsoleLogin', 'condition: not filter'].join('\n'),
  'one-of-with-unindexed-branch': [
    'sel_name:',
    '  eventName: DeleteTrail',
    'sel_denied:',
    '  errorCode|startswith: AccessDenied',
    'condition: 1 of sel_*',
  ].join('\n'),
  'all-of-name-and-source': [
    'sel_name:',
    '  eventName: CreateUser',
    'sel_source:',
    '  eventSource: iam.amazonaws.com',
    'condition: all of sel_*',
  ].join('\n'),
  'case-and-unicode-folding': ['selection:', '  eventName: [ListKeys, GetSecretValue]', 'condition: selection'].join('\n'),
  'contains-and-wildcards': [
    'bucket:',
    '  eventName|contains: Bucket',
    'secret:',
    "  eventName: '*Secret*'",
    'regex:',
    "  eventName|re: '^(Create|Delete)User$'",
    'cased:',
    '  eventName|cased: ConsoleLogin',
    'condition: 1 of them',
  ].join('\n'),
  keyword: ['keywords:', '  - ConsoleLogin', 'condition: keywords'].join('\n'),
  fieldref: ['selection:', '  eventName|fieldref: eventSource', 'condition: selection'].join('\n'),
  'null-name': ['selection:', '  eventName: null', 'condition: selection'].join('\n'),
  'alternatives-of-name-or-source': [
    'selection:',
    '  - eventName: CreateUser',
    '  - eventSource: sts.amazonaws.com',
    'condition: selection',
  ].join('\n'),
  'condition-list': [
    'sel_a:',
    '  eventName: StopLogging',
    'sel_b:',
    '  errorCode: AccessDenied',
    'condition:',
    '  - sel_a',
    '  - sel_b',
  ].join('\n'),
  'number-name': ['selection:', '  eventName: 123', 'condition: selection'].join('\n'),
  'name-exists': ['selection:', '  eventName|exists: true', '  errorCode: AccessDenied', 'condition: selection'].join('\n'),
  'name-and-request-field': [
    'selection:',
    '  eventName: CreateAccessKey',
    '  requestParameters.userName|startswith: adm',
    'condition: selection',
  ].join('\n'),
};

/** The tricky rules as rule files in a fresh directory, loaded as `rules.paths` would load them. */
async function trickyRules(): Promise<Rule[]> {
  const dir = await mkdtemp(join(tmpdir(), 'trailwatch-index-'));
  try {
    for (const [id, pattern] of Object.entries(TRICKY_EVENT_PATTERNS))
      await writeFile(join(dir, `${id}.json`), JSON.stringify({ id: `eb-${id}`, title: id, severity: 'low', pattern }));
    for (const [id, detection] of Object.entries(TRICKY_SIGMA))
      await writeFile(join(dir, `${id}.yml`), SIGMA_HEAD(`sigma-${id}`) + detection.replace(/^/gm, '  '));
    const loaded = await loadRules([dir]);
    assert.deepEqual(loaded.problems, []);
    return loaded.rules;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Every single-event rule of the Sigma fixtures, those that only feed a correlation included. */
function fixtureSigmaRules(): Rule[] {
  return readdirSync(SIGMA_DIR)
    .filter((f) => f.endsWith('.yml'))
    .flatMap((f) => parseSigmaFile(readFileSync(new URL(f, SIGMA_DIR), 'utf8'), f).rules)
    .map((s) => ({
      id: `all:${s.id}`,
      title: s.title,
      severity: 'low',
      kind: 'sigma',
      source: s.source,
      tags: s.tags,
      techniques: s.techniques,
      fields: s.fields,
      keys: sigmaRuleKeys(s),
      matches: (r) => s.matches(r),
      explain: (r) => s.explain(r),
    }));
}

/** Words the rules name (calls, services, values), to build events that hit them. */
function vocabulary(texts: readonly string[]): { names: string[]; sources: string[] } {
  const names = new Set([
    'GetObject',
    'HeadBucket',
    'DescribeInstances',
    'UpdateFunctionCode20150331v2',
    'AddPermission20150331v2',
    '10.0.0.1',
    '123',
  ]);
  const sources = new Set(['s3.amazonaws.com', 'sts.amazonaws.com', 'signin.amazonaws.com', 'kms.amazonaws.com', 'iam.amazonaws.com']);
  for (const text of texts) {
    for (const m of text.matchAll(/\b[A-Z][A-Za-z0-9]{3,}\b/g)) names.add(m[0]);
    for (const m of text.matchAll(/\b[a-z0-9-]+\.amazonaws\.com\b/g)) sources.add(m[0]);
  }
  return { names: [...names].sort(), sources: [...sources].sort() };
}

/** A spelling of `word` that Sigma's case-insensitive matching may or may not take for it. */
function variant(word: string, rnd: () => number): string {
  switch (Math.floor(rnd() * 12)) {
    case 0:
      return word.toLowerCase();
    case 1:
      return word.toUpperCase();
    case 2:
      return Array.from(word, (c) => (rnd() < 0.5 ? c.toUpperCase() : c.toLowerCase())).join('');
    case 3:
      // Kelvin sign and long s: case-insensitive Unicode matching folds them to k and s.
      return word.replace(/k/gi, '\u212A').replace(/s/g, '\u017F');
    case 4:
      return `X${word}`;
    case 5:
      return `${word}X`;
    case 6:
      return word.slice(0, -1);
    case 7:
      return word.replace(/^1/, '01').replace(/\.0\./, '.00.');
    default:
      return word;
  }
}

function pick<T>(xs: readonly T[], rnd: () => number): T {
  return xs[Math.floor(rnd() * xs.length)] as T;
}

/** `n` CloudTrail calls over the vocabulary, normalized as the publisher does (half with `raw`, a few broken). */
function generatedEvents(n: number, words: { names: string[]; sources: string[] }, seed: number): AuditEvent[] {
  const rnd = mulberry32(seed);
  const maybe = <T>(p: number, value: () => T): T | undefined => (rnd() < p ? value() : undefined);
  const events: AuditEvent[] = [];
  for (let i = 0; i < n; i++) {
    const type = pick(['IAMUser', 'Root', 'AssumedRole', 'AWSService'], rnd);
    const record = {
      eventVersion: '1.09',
      userIdentity: {
        type,
        arn: type === 'Root' ? 'arn:aws:iam::111122223333:root' : 'arn:aws:iam::111122223333:user/alice',
        accountId: '111122223333',
        userName: pick(['alice', 'admin-bob', 'carol'], rnd),
        ...(rnd() < 0.2 ? { invokedBy: 'cloudformation.amazonaws.com' } : {}),
      },
      eventTime: new Date(Date.UTC(2026, 0, 5) + i * 1_000).toISOString(),
      eventSource: rnd() < 0.8 ? pick(words.sources, rnd) : variant(pick(words.sources, rnd), rnd),
      eventName: rnd() < 0.5 ? pick(words.names, rnd) : variant(pick(words.names, rnd), rnd),
      awsRegion: pick(['us-east-1', 'eu-west-1'], rnd),
      sourceIPAddress: pick(['203.0.113.5', '10.1.2.3', '198.51.100.7', 'delivery.logs.amazonaws.com'], rnd),
      userAgent: pick(['aws-cli/2', 'console.amazonaws.com'], rnd),
      errorCode: maybe(0.3, () => pick(['AccessDenied', 'Client.UnauthorizedOperation', 'AccessDeniedException', 'Throttling'], rnd)),
      errorMessage: maybe(0.1, () => 'Failed authentication'),
      eventType: pick(['AwsApiCall', 'AwsApiCall', 'AwsConsoleSignIn', 'AwsServiceEvent'], rnd),
      requestParameters: maybe(0.7, () => ({
        userName: pick(['alice', 'admin-bob', 'carol'], rnd),
        bucketName: pick(['prod-logs', 'dev'], rnd),
        attributeType: 'CREATE_VOLUME_PERMISSION',
        createVolumePermission: { add: { items: [{ group: pick(['all', 'none'], rnd) }] } },
        principal: pick(['*', 'arn:aws:iam::444455556666:root'], rnd),
        ...(rnd() < 0.5 ? { layers: ['arn:aws:lambda:us-east-1:444455556666:layer:x:1'] } : {}),
      })),
      responseElements: maybe(0.3, () => ({ ConsoleLogin: pick(['Success', 'Failure'], rnd) })),
      additionalEventData: maybe(0.3, () => ({ MFAUsed: pick(['Yes', 'No'], rnd) })),
      eventID: `e-${i}`,
      recipientAccountId: '111122223333',
    };
    const event = normalizeCloudTrail(JSON.parse(JSON.stringify(record)), { raw: rnd() < 0.5 });
    if (rnd() < 0.02) event.raw = '[not json';
    events.push(event);
  }
  return events;
}

/** The same rules without keys: every rule tried on every event, as before the index. */
function bruteForce(rules: readonly Rule[]): RuleSet {
  return new RuleSet(rules.map(({ keys: _keys, ...rule }) => rule));
}

function assertSameMatches(rules: readonly Rule[], events: readonly AuditEvent[]): { matches: number; rulesMatched: number } {
  const indexed = new RuleSet(rules);
  const brute = bruteForce(rules);
  const matched = new Set<string>();
  let matches = 0;
  for (const e of events) {
    const want = brute.match(e).map((r) => r.id);
    assert.deepEqual(
      indexed.match(e).map((r) => r.id),
      want,
      `event ${e.eventId}: ${e.service} ${JSON.stringify(e.action)}`,
    );
    for (const id of want) matched.add(id);
    matches += want.length;
  }
  assert.deepEqual(
    indexed.matchAll(events).map((m) => `${m.event.eventId} ${m.rule.id}`),
    brute.matchAll(events).map((m) => `${m.event.eventId} ${m.rule.id}`),
  );
  return { matches, rulesMatched: matched.size };
}

describe('RuleSet index', () => {
  test('the default pack, the Sigma fixtures and tricky rules match exactly as without the index', async () => {
    const loaded = await loadRules([fileURLToPath(PACK_DIR), fileURLToPath(SIGMA_DIR)]);
    assert.deepEqual(loaded.problems, []);
    const tricky = await trickyRules();
    const rules = [...loaded.rules, ...fixtureSigmaRules(), ...tricky];
    const texts = [
      ...loaded.files.map((f) => readFileSync(f, 'utf8')),
      JSON.stringify(TRICKY_EVENT_PATTERNS),
      ...Object.values(TRICKY_SIGMA),
    ];
    const events = generatedEvents(6_000, vocabulary(texts), 20260105);
    const { matches, rulesMatched } = assertSameMatches(rules, events);
    // Not vacuous: the events hit most rules, indexed or not.
    assert.ok(matches > 2_000, `${matches} matches`);
    assert.ok(rulesMatched >= rules.length * 0.7, `${rulesMatched} of ${rules.length} rules matched some event`);
    const indexed = rules.filter((r) => isIndexed(r.keys)).length;
    assert.ok(indexed >= 30, `${indexed} of ${rules.length} rules indexed`);
  });

  test('each tricky rule alone, over events naming its own calls in every spelling', async () => {
    const tricky = await trickyRules();
    for (const rule of tricky) {
      const text = rule.kind === 'eventbridge' ? JSON.stringify(TRICKY_EVENT_PATTERNS) : Object.values(TRICKY_SIGMA).join('\n');
      assertSameMatches([rule], generatedEvents(1_500, vocabulary([text]), rule.id.length));
    }
  });

  test('the tricky rules are indexed where that is sound and only there', async () => {
    const keyed = new Map((await trickyRules()).map((r) => [r.id, isIndexed(r.keys)]));
    const unindexed = [...keyed].filter(([, k]) => !k).map(([id]) => id);
    assert.deepEqual(unindexed.sort(), [
      'eb-or-with-an-unindexed-branch',
      'sigma-condition-list',
      'sigma-fieldref',
      'sigma-keyword',
      'sigma-one-of-with-unindexed-branch',
      'sigma-only-not',
    ]);
  });

  test('an event no rule names costs neither a record nor a parse of raw', () => {
    const seen: Array<Record<string, unknown>> = [];
    const rule = {
      ...probe('p', ['requestParameters.x'], () => true, seen),
      keys: eventPatternKeys({ detail: { eventName: ['StopLogging'] } }),
    };
    const rules = new RuleSet([rule]);
    const other: AuditEvent = { ...normalizeCloudTrail(record), raw: '[not json' };
    assert.deepEqual(rules.match(other), []);
    assert.equal(seen.length, 0);
    assert.equal(rules.rawUnparsed, 0, 'raw was not parsed');
    const named: AuditEvent = { ...normalizeCloudTrail({ ...record, eventName: 'StopLogging' }), raw: '[not json' };
    assert.equal(rules.match(named).length, 1);
    assert.equal(rules.rawUnparsed, 1);
  });
});
