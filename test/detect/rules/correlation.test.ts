import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { CorrelationEngine, type CorrelationHit } from '../../../src/detect/rules/correlation.ts';
import { parseSigma, parseSigmaFile, type SigmaFile } from '../../../src/detect/rules/sigma.ts';
import { isTrailwatchError } from '../../../src/errors.ts';
import { assertRuleRefused } from '../../helpers/rules.ts';

const FIXTURES = new URL('../../fixtures/sigma/', import.meta.url);
const fixture = (name: string): SigmaFile => parseSigmaFile(readFileSync(new URL(name, FIXTURES), 'utf8'), name);
const engineFor = (file: SigmaFile): CorrelationEngine => new CorrelationEngine(file.correlations, file.rules);

const T0 = Date.UTC(2024, 4, 1, 12, 0, 0);
const MIN = 60_000;

let nextId = 0;
function failedLogin(user: string): Record<string, unknown> {
  return {
    eventID: `ev-${nextId++}`,
    eventName: 'ConsoleLogin',
    userIdentity: { userName: user },
    responseElements: { ConsoleLogin: 'Failure' },
  };
}
function iam(eventName: string, arn = 'arn:aws:iam::111122223333:user/mallory'): Record<string, unknown> {
  return { eventID: `ev-${nextId++}`, eventSource: 'iam.amazonaws.com', eventName, userIdentity: { arn } };
}

/** Feeds [minute offset, record] pairs; returns every hit. */
function feed(engine: CorrelationEngine, events: [number, Record<string, unknown>][]): CorrelationHit[] {
  return events.flatMap(([min, r]) => engine.observe(r, T0 + min * MIN));
}

function refused(text: string, message: RegExp): void {
  assertRuleRefused(parseSigmaFile, text, message);
}

/** A base rule (lines 1–10) named `base`, then a correlation document: `correlation:` on line 14, its section from 15. */
const BASE =
  'title: base\nid: b-1\nname: base\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  s:\n    eventName: X\n  condition: s\n';
const corr = (...section: string[]): string => `${BASE}---\ntitle: corr\nid: c-1\ncorrelation:\n${section.map((l) => `  ${l}\n`).join('')}`;

describe('parseSigmaFile', () => {
  test('loads base rules and a correlation, resolving names to ids', () => {
    const file = fixture('correlation-console-brute-force.yml');
    assert.equal(file.rules.length, 1);
    assert.equal(file.rules[0]?.name, 'console_login_failure');
    const [c] = file.correlations;
    assert.ok(c);
    assert.equal(c.type, 'event_count');
    assert.deepEqual(c.rules, ['0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d01']);
    assert.deepEqual(c.groupBy, ['userIdentity.userName']);
    assert.equal(c.timespanMs, 10 * MIN);
    assert.deepEqual(c.condition, { gte: 5 });
    assert.equal(c.level, 'high');
    assert.deepEqual(c.techniques, ['T1110']);
    assert.equal(c.line, 15);
    assert.deepEqual(file.standalone, [], 'a correlated rule does not alert alone without generate');
  });

  test('generate: true keeps the referred rules standalone; references may be by id', () => {
    const file = parseSigmaFile(
      corr('type: event_count', 'rules: [b-1]', 'timespan: 90s', 'condition: {gt: 2, lte: 9}', 'generate: true'),
      'f.yml',
    );
    assert.deepEqual(
      file.standalone.map((r) => r.id),
      ['b-1'],
    );
    assert.equal(file.correlations[0]?.timespanMs, 90_000);
    assert.deepEqual(file.correlations[0]?.groupBy, []);
  });

  test('parseSigma still refuses correlation documents', () => {
    assert.throws(() => parseSigma(corr('type: event_count'), 'bad.yml'), {
      code: 'TW_RULE_INVALID',
      message: /^bad\.yml:14: correlation rules are not supported yet/,
    });
  });

  test('aliases resolve per rule name', () => {
    const text = `${BASE}---\ntitle: other\nid: b-2\nname: other\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  s:\n    eventName: Y\n  condition: s\n---\ntitle: corr\nid: c-1\ncorrelation:\n  type: temporal\n  rules: [base, other]\n  group-by: [who]\n  timespan: 5m\n  aliases:\n    who:\n      base: userIdentity.arn\n      other: requestParameters.userName\n`;
    const file = parseSigmaFile(text, 'a.yml');
    assert.deepEqual(file.correlations[0]?.aliases, { who: { 'b-1': 'userIdentity.arn', 'b-2': 'requestParameters.userName' } });
    const engine = engineFor(file);
    assert.equal(engine.observe({ eventName: 'X', userIdentity: { arn: 'bob' } }, T0).length, 0);
    assert.equal(engine.observe({ eventName: 'Y', requestParameters: { userName: 'alice' } }, T0 + 1).length, 0);
    const hits = engine.observe({ eventName: 'Y', requestParameters: { userName: 'bob' } }, T0 + 2);
    assert.equal(hits.length, 1);
    assert.deepEqual(hits[0]?.group, { who: 'bob' });
  });
});

describe('refusals name the file, the line and the feature', () => {
  test('unknown rule reference', () => {
    refused(
      corr('type: event_count', 'rules:', '  - nope', 'timespan: 5m', 'condition: {gte: 2}'),
      /^bad\.yml:17: correlation refers to rule 'nope': no rule in this file or already loaded has that id or name/,
    );
  });
  test('bad timespans', () => {
    for (const span of ['5', '5x', '0m', '1.5h', '5M'])
      refused(
        corr('type: event_count', 'rules: [base]', `timespan: ${span}`, 'condition: {gte: 2}'),
        /^bad\.yml:17: timespan '.*' must be a positive number and s, m, h or d/,
      );
  });
  test('unsupported type', () => {
    refused(corr('type: value_sum', 'rules: [base]', 'timespan: 5m'), /^bad\.yml:15: correlation type 'value_sum' is not supported/);
  });
  test('unsupported or meaningless conditions', () => {
    const c = (cond: string) => corr('type: event_count', 'rules: [base]', 'timespan: 5m', `condition: ${cond}`);
    refused(c('{neq: 2}'), /^bad\.yml:18: correlation condition 'neq' is not supported/);
    refused(c('{gte: many}'), /^bad\.yml:18: correlation condition 'gte' must be a non-negative integer/);
    refused(c('{gt: 5, lt: 6}'), /^bad\.yml:18: correlation condition is a range no count can satisfy/);
    refused(c('{eq: 5, gt: 1}'), /'eq' cannot be combined/);
    refused(c('{field: eventName, gte: 2}'), /'condition.field' belongs to value_count/);
    refused(corr('type: event_count', 'rules: [base]', 'timespan: 5m'), /^bad\.yml:14: an event_count correlation needs a 'condition'/);
    refused(corr('type: value_count', 'rules: [base]', 'timespan: 5m', 'condition: {gte: 3}'), /value_count needs 'condition.field'/);
    refused(
      corr('type: temporal_ordered', 'rules: [base, c-1]', 'timespan: 5m', 'condition: {gte: 3}'),
      /temporal_ordered correlation takes no condition/,
    );
  });
  test('unknown keys, self references, cycles and bad aliases', () => {
    refused(
      corr('type: event_count', 'rules: [base]', 'timespan: 5m', 'condition: {gte: 2}', 'window: 5m'),
      /^bad\.yml:19: correlation key 'window' is not part of Sigma correlations/,
    );
    refused(corr('type: event_count', 'rules: [c-1]', 'timespan: 5m', 'condition: {gte: 2}'), /refers to itself/);
    const cycle = `${BASE}---\ntitle: one\nid: c-1\ncorrelation:\n  type: temporal\n  rules: [base, c-2]\n  timespan: 5m\n---\ntitle: two\nid: c-2\ncorrelation:\n  type: temporal\n  rules: [base, c-1]\n  timespan: 5m\n`;
    refused(cycle, /^bad\.yml:12: correlation 'one' is part of a reference cycle/);
    refused(
      corr(
        'type: event_count',
        'rules: [base]',
        'group-by: [who]',
        'timespan: 5m',
        'condition: {gte: 2}',
        'aliases:',
        '  who:',
        '    nope: a.b',
      ),
      /^bad\.yml:22: alias 'who' names rule 'nope': no rule/,
    );
    refused(
      corr(
        'type: event_count',
        'rules: [base]',
        'group-by: [x]',
        'timespan: 5m',
        'condition: {gte: 2}',
        'aliases:',
        '  who:',
        '    base: a.b',
      ),
      /alias 'who' is not used in 'group-by'/,
    );
  });
});

describe('event_count', () => {
  test('5 failed ConsoleLogin by one user in 10m fires once, on the 5th', () => {
    const engine = engineFor(fixture('correlation-console-brute-force.yml'));
    const hits = feed(engine, [
      [0, failedLogin('alice')],
      [1, failedLogin('alice')],
      [2, failedLogin('bob')],
      [3, failedLogin('alice')],
      [4, failedLogin('alice')],
      [5, { ...failedLogin('alice'), responseElements: { ConsoleLogin: 'Success' } }],
    ]);
    assert.equal(hits.length, 0);
    const [hit, ...more] = feed(engine, [[9, failedLogin('alice')]]);
    assert.ok(hit);
    assert.equal(more.length, 0);
    assert.equal(hit.ruleId, '0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d02');
    assert.deepEqual(hit.group, { 'userIdentity.userName': 'alice' });
    assert.equal(hit.count, 5);
    assert.equal(hit.windowStartMs, T0);
    assert.equal(hit.windowEndMs, T0 + 9 * MIN);
    assert.equal(hit.eventIds.length, 5);
    // The 6th to 9th do not fire again; a fresh 5 does.
    assert.equal(
      feed(
        engine,
        [6, 7, 8, 9].map((m) => [9 + m / 10, failedLogin('alice')] as [number, Record<string, unknown>]),
      ).length,
      0,
    );
    assert.equal(feed(engine, [[10, failedLogin('alice')]]).length, 1);
  });

  test('5 failures spread over more than 10m do not fire', () => {
    const engine = engineFor(fixture('correlation-console-brute-force.yml'));
    assert.equal(
      feed(
        engine,
        [0, 3, 6, 9, 11, 14].map((m) => [m, failedLogin('carol')] as [number, Record<string, unknown>]),
      ).length,
      0,
    );
    // ...until four of them are within 10m of a fifth.
    assert.equal(feed(engine, [[15, failedLogin('carol')]]).length, 1);
  });

  test('out-of-order arrivals count where they belong', () => {
    const engine = engineFor(fixture('correlation-console-brute-force.yml'));
    assert.equal(
      feed(
        engine,
        [30, 20, 25, 21].map((m) => [m, failedLogin('dave')] as [number, Record<string, unknown>]),
      ).length,
      0,
    );
    // 40 is 10m after 30 but 20m after 20: no window of five.
    assert.equal(feed(engine, [[40, failedLogin('dave')]]).length, 0);
    const [hit] = feed(engine, [[22, failedLogin('dave')]]);
    assert.ok(hit);
    assert.equal(hit.windowStartMs, T0 + 20 * MIN);
    assert.equal(hit.windowEndMs, T0 + 30 * MIN);
    assert.equal(hit.count, 5);
  });

  test('upper-bounded conditions are judged when the window closes', () => {
    const file = parseSigmaFile(
      corr('type: event_count', 'rules: [base]', 'group-by: [who]', 'timespan: 10m', 'condition: {gte: 2, lte: 3}'),
      'f.yml',
    );
    const engine = engineFor(file);
    const x = (who: string) => ({ eventName: 'X', who, eventID: `ev-${nextId++}` });
    const hits = feed(engine, [
      [0, x('a')],
      [5, x('a')],
      [0, x('b')],
      [1, x('b')],
      [2, x('b')],
      [3, x('b')],
    ]);
    assert.equal(hits.length, 0);
    assert.deepEqual(engine.advance(T0 + 10 * MIN), [], 'the window [0, 10m] can still grow at 10m');
    const closed = engine.advance(T0 + 10 * MIN + 1);
    assert.deepEqual(
      closed.map((h) => [h.group.who, h.count]),
      [['a', 2]],
    );
  });
});

describe('value_count', () => {
  test('15 distinct read-only actions by one principal in 1m', () => {
    const engine = engineFor(fixture('correlation-enumeration.yml'));
    const call = (eventName: string, arn = 'arn:p') => ({ eventID: `ev-${nextId++}`, eventName, userIdentity: { arn } });
    const names = Array.from({ length: 15 }, (_, i) => `List${String.fromCharCode(65 + i)}`);
    const events: [number, Record<string, unknown>][] = [];
    // 14 distinct, each repeated, plus another principal and a write call: no hit.
    for (const [i, n] of names.slice(0, 14).entries()) events.push([i / 60, call(n)], [i / 60, call(n)], [i / 60, call(n, 'arn:q')]);
    events.push([0.5, call('DeleteUser')]);
    assert.equal(feed(engine, events).length, 0);
    const [hit] = feed(engine, [[0.9, call(names[14] ?? '')]]);
    assert.ok(hit);
    assert.equal(hit.count, 15);
    assert.deepEqual(hit.group, { 'userIdentity.arn': 'arn:p' });
    assert.deepEqual([...hit.values].sort(), [...names].sort());
    assert.equal(hit.eventIds.length, 20, 'evidence is bounded');
  });

  test('the distinct values must fall within the timespan', () => {
    const engine = engineFor(fixture('correlation-enumeration.yml'));
    const events = Array.from({ length: 15 }, (_, i): [number, Record<string, unknown>] => [
      i * 0.1,
      { eventName: `Get${i}`, userIdentity: { arn: 'x' } },
    ]);
    assert.equal(feed(engine, events).length, 0, '0 to 1.4 minutes is wider than 1m');
  });
});

describe('temporal and temporal_ordered', () => {
  const file = fixture('correlation-iam-persistence.yml');
  const [temporal, ordered] = file.correlations;

  test('CreateUser, CreateAccessKey, AttachUserPolicy within 10m by one principal', () => {
    const engine = new CorrelationEngine(file.correlations, file.rules);
    const hits = feed(engine, [
      [0, iam('CreateUser')],
      [2, iam('CreateAccessKey', 'arn:other')],
      [3, iam('CreateAccessKey')],
    ]);
    assert.equal(hits.length, 0);
    const done = feed(engine, [[8, iam('AttachUserPolicy')]]);
    assert.deepEqual(
      done.map((h) => h.ruleId),
      [temporal?.id, ordered?.id],
    );
    assert.deepEqual(done[1]?.values, ordered?.rules);
    assert.equal(done[0]?.windowStartMs, T0);
  });

  test('the wrong order satisfies temporal only', () => {
    const engine = new CorrelationEngine(file.correlations, file.rules);
    const hits = feed(engine, [
      [0, iam('AttachUserPolicy')],
      [1, iam('CreateAccessKey')],
      [2, iam('CreateUser')],
    ]);
    assert.deepEqual(
      hits.map((h) => h.ruleId),
      [temporal?.id],
    );
  });

  test('order is event time, not arrival', () => {
    const engine = new CorrelationEngine(file.correlations, file.rules);
    const hits = feed(engine, [
      [5, iam('AttachUserPolicy')],
      [3, iam('CreateAccessKey')],
      [1, iam('CreateUser')],
    ]);
    assert.deepEqual(
      hits.map((h) => h.ruleId),
      [temporal?.id, ordered?.id],
    );
  });

  test('more than the timespan apart does not fire', () => {
    const engine = new CorrelationEngine(file.correlations, file.rules);
    assert.equal(
      feed(engine, [
        [0, iam('CreateUser')],
        [5, iam('CreateAccessKey')],
        [11, iam('AttachUserPolicy')],
      ]).length,
      0,
    );
  });

  test('a correlation can feed another', () => {
    const text = `${BASE}---\ntitle: inner\nid: c-1\nname: inner\ncorrelation:\n  type: event_count\n  rules: [base]\n  group-by: [who]\n  timespan: 5m\n  condition: {gte: 2}\n---\ntitle: outer\nid: c-2\ncorrelation:\n  type: event_count\n  rules: [inner]\n  group-by: [who]\n  timespan: 1h\n  condition: {gte: 2}\n`;
    const f = parseSigmaFile(text, 'chain.yml');
    const engine = engineFor(f);
    const x = { eventName: 'X', who: 'w' };
    const hits = feed(
      engine,
      [0, 1, 30, 31].map((m) => [m, x] as [number, Record<string, unknown>]),
    );
    assert.deepEqual(
      hits.map((h) => h.ruleId),
      ['c-2'],
      'only the outermost correlation reports',
    );
  });
});

describe('state', () => {
  test('advance drops what no window needs, and later arrivals behind it are ignored', () => {
    const engine = engineFor(fixture('correlation-console-brute-force.yml'));
    feed(engine, [
      [0, failedLogin('erin')],
      [1, failedLogin('erin')],
      [12, failedLogin('frank')],
    ]);
    assert.equal(engine.stateSize, 3);
    engine.advance(T0 + 11 * MIN + 1);
    assert.equal(engine.stateSize, 1);
    engine.advance(T0 + 30 * MIN);
    assert.equal(engine.stateSize, 0);
    assert.equal(feed(engine, [[19, failedLogin('erin')]]).length, 0);
    assert.equal(engine.stateSize, 0);
    assert.equal(engine.counters.late, 1);
  });

  test('group and per-group event caps', () => {
    const file = fixture('correlation-console-brute-force.yml');
    const engine = new CorrelationEngine(file.correlations, file.rules, { maxEventsPerGroup: 3, maxGroupsPerCorrelation: 2 });
    feed(engine, [
      [0, failedLogin('a')],
      [0, failedLogin('b')],
      [0, failedLogin('c')],
    ]);
    assert.equal(engine.counters.evictedGroups, 1);
    assert.equal(engine.stateSize, 2);
    // Capped at three events, five can never be in the window.
    assert.equal(
      feed(
        engine,
        [1, 2, 3, 4].map((m) => [m, failedLogin('c')] as [number, Record<string, unknown>]),
      ).length,
      0,
    );
    assert.equal(engine.counters.evictedEvents, 2);
  });

  test('snapshot and restore mid-stream give the same hits as a straight run', () => {
    const file = fixture('correlation-iam-persistence.yml');
    const brute = fixture('correlation-console-brute-force.yml');
    const correlations = [...file.correlations, ...brute.correlations];
    const rules = [...file.rules, ...brute.rules];
    nextId = 1000;
    const stream: [number, Record<string, unknown>][] = [
      [0, iam('CreateUser')],
      [1, failedLogin('gina')],
      [2, failedLogin('gina')],
      [2, iam('CreateAccessKey')],
      [3, failedLogin('gina')],
      [4, failedLogin('gina')],
      [5, iam('AttachUserPolicy')],
      [6, failedLogin('gina')],
      [7, failedLogin('gina')],
    ];
    const straight = new CorrelationEngine(correlations, rules);
    const expected = feed(straight, stream);
    assert.equal(expected.length, 3);

    const first = new CorrelationEngine(correlations, rules);
    const got = feed(first, stream.slice(0, 4));
    first.advance(T0 + 1 * MIN);
    const snap = first.snapshot();
    const restored = CorrelationEngine.restore(correlations, rules, JSON.parse(JSON.stringify(snap)));
    assert.deepEqual(restored.snapshot(), snap);
    assert.equal(restored.stateSize, first.stateSize);
    got.push(...feed(restored, stream.slice(4)));
    assert.deepEqual(got, expected);
  });

  test('restore refuses what is not a snapshot', () => {
    const file = fixture('correlation-console-brute-force.yml');
    assert.throws(
      () => CorrelationEngine.restore(file.correlations, file.rules, { version: 9 }),
      (err: unknown) => isTrailwatchError(err) && err.code === 'TW_STATE_CORRUPT',
    );
  });
});
