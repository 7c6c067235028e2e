import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AuditEvent } from '../../../src/contracts/types.ts';
import { mulberry32 } from '../../../src/demo/traffic.ts';
import { DEFAULT_CATALOG, mergeCatalog } from '../../../src/detect/rules/catalog.ts';
import { FirstSeenDetector, type FirstSeenFinding, type FirstSeenOptions, looksHuman } from '../../../src/detect/rules/first-seen.ts';
import { ConfigError, ErrorCodes, TrailwatchError } from '../../../src/errors.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2024, 0, 1);
const ROLE = 'arn:aws:sts::111122223333:assumed-role/deployer';
const USER = 'arn:aws:iam::111122223333:user/ci';

let seq = 0;
function ev(timeMs: number, over: Partial<AuditEvent> = {}): AuditEvent {
  seq++;
  return {
    eventId: `e${seq}`,
    eventTimeMs: timeMs,
    source: 'aws.cloudtrail',
    accountId: '111122223333',
    region: 'us-east-1',
    principal: ROLE,
    principalType: 'AssumedRole',
    service: 's3.amazonaws.com',
    action: 'GetObject',
    readOnly: true,
    errorCode: null,
    sourceIp: '10.0.0.1',
    userAgent: 'aws-sdk-js/3',
    attributes: {},
    ...over,
  };
}

/** A detector that has watched ROLE (and `more` principals) do GetObject in us-east-1 daily for eight days. */
function trained(options: FirstSeenOptions = {}, more: Partial<AuditEvent>[] = []): FirstSeenDetector {
  const d = new FirstSeenDetector(options);
  for (let day = 0; day <= 8; day++) {
    d.observe(ev(T0 + day * DAY));
    for (const m of more) d.observe(ev(T0 + day * DAY, m));
  }
  assert.deepEqual(d.advance(T0 + 8 * DAY + MINUTE), []);
  return d;
}

const AFTER = T0 + 8 * DAY + HOUR;

/** A small seeded generator, so a failing stream can be replayed. */
const random = mulberry32;

/** Applies drained changes to a changelog as compaction would: the latest value per key, null deletes. */
function apply(log: Map<string, string>, changes: Array<[string, string | null]>): void {
  for (const [key, value] of changes) {
    if (value === null) log.delete(key);
    else log.set(key, value);
  }
}

const isCorrupt = (err: unknown): boolean => err instanceof TrailwatchError && err.code === ErrorCodes.STATE_CORRUPT;

function only(findings: FirstSeenFinding[]): FirstSeenFinding {
  assert.equal(findings.length, 1, JSON.stringify(findings, null, 2));
  return findings[0] as FirstSeenFinding;
}

describe('FirstSeenDetector', () => {
  test('judges nothing while the principal is learning', () => {
    const d = new FirstSeenDetector();
    for (let i = 0; i < 50; i++) d.observe(ev(T0 + i * 3 * HOUR, { action: `Action${i}`, region: `r-${i % 5}` }));
    assert.deepEqual(d.advance(T0 + 7 * DAY), []);
    assert.equal(d.stateSize.openWindows, 0);
  });

  test('a new action after learning is one finding, emitted once its window passes the watermark', () => {
    const d = trained();
    const e = ev(AFTER, { service: 'dynamodb.amazonaws.com', action: 'Scan' });
    d.observe(e);
    d.observe(ev(AFTER + MINUTE)); // known: nothing more
    assert.deepEqual(d.advance(AFTER + 10 * MINUTE - 1), []);
    const f = only(d.advance(AFTER + 10 * MINUTE));
    assert.equal(f.principal, ROLE);
    assert.equal(f.accountId, '111122223333');
    assert.equal(f.principalType, 'AssumedRole');
    assert.equal(f.windowStartMs, AFTER);
    assert.equal(f.windowEndMs, AFTER + 10 * MINUTE);
    assert.equal(f.total, 1);
    assert.deepEqual(f.items, [
      {
        dimension: 'action',
        value: 'dynamodb.amazonaws.com:Scan',
        eventId: e.eventId,
        eventTimeMs: AFTER,
        severity: 'medium',
        category: null,
      },
    ]);
    assert.equal(f.severity, 'medium');
    assert.match(f.id, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.deepEqual(d.advance(AFTER + DAY), []);
    d.observe(ev(AFTER + DAY, { service: 'dynamodb.amazonaws.com', action: 'Scan' }));
    assert.deepEqual(d.advance(AFTER + 2 * DAY), [], 'known now');
  });

  test('twenty new actions within groupMs fold into one finding', () => {
    const d = trained({ maxItemsPerFinding: 5 });
    for (let i = 0; i < 20; i++) d.observe(ev(AFTER + i * 25_000, { service: 'ec2.amazonaws.com', action: `Describe${i}` }));
    d.observe(ev(AFTER + 9 * MINUTE, { service: 'cloudtrail.amazonaws.com', action: 'StopLogging' }));
    d.observe(ev(AFTER + 11 * MINUTE, { service: 'ec2.amazonaws.com', action: 'DescribeLater' }));
    const [first, second, ...rest] = d.advance(AFTER + DAY);
    assert.equal(rest.length, 0);
    assert.ok(first && second);
    assert.equal(first.total, 21);
    assert.equal(first.items.length, 5);
    assert.equal(first.severity, 'critical');
    assert.deepEqual(first.categories, ['logging-and-monitoring']);
    assert.ok(
      first.items.some((i) => i.value === 'cloudtrail.amazonaws.com:StopLogging'),
      'the most severe item is listed',
    );
    assert.deepEqual(
      first.items.map((i) => i.eventTimeMs),
      [...first.items.map((i) => i.eventTimeMs)].sort((a, b) => a - b),
    );
    assert.equal(second.total, 1);
    assert.equal(second.windowStartMs, AFTER + 11 * MINUTE);
  });

  test('counts twenty new actions', () => {
    const d = trained();
    for (let i = 0; i < 20; i++) d.observe(ev(AFTER + i * 25_000, { action: `New${i}` }));
    const f = only(d.advance(AFTER + DAY));
    assert.equal(f.total, 20);
    assert.equal(f.items.length, 20);
    assert.deepEqual(new Set(f.items.map((i) => i.value)).size, 20);
  });

  test('a new region and a new error code are first-seen too', () => {
    const d = trained();
    d.observe(ev(AFTER, { region: 'ap-southeast-2', errorCode: 'AccessDenied' }));
    const f = only(d.advance(AFTER + DAY));
    assert.deepEqual(
      f.items.map((i) => [i.dimension, i.value]),
      [
        ['region', 'ap-southeast-2'],
        ['errorCode', 'AccessDenied'],
      ],
    );
    d.observe(ev(AFTER + DAY, { errorCode: 'AccessDenied', region: 'ap-southeast-2' }));
    assert.deepEqual(d.advance(AFTER + 2 * DAY), []);
  });

  test('forgets a value unseen for forgetMs', () => {
    const d = trained({ forgetMs: 20 * DAY });
    d.observe(ev(T0 + 5 * DAY, { action: 'Monthly' }));
    // Keep the principal itself active.
    for (let day = 9; day <= 30; day++) d.observe(ev(T0 + day * DAY));
    d.observe(ev(T0 + 25 * DAY - 1, { action: 'Monthly' }));
    assert.deepEqual(d.advance(T0 + 31 * DAY), [], 'seen within forgetMs');
    d.observe(ev(T0 + 45 * DAY, { action: 'Monthly' }));
    const f = only(d.advance(T0 + 46 * DAY));
    assert.equal(f.items[0]?.value, 's3.amazonaws.com:Monthly');
  });

  test('a principal dormant for forgetMs learns again instead of reporting everything', () => {
    const d = trained({ forgetMs: 20 * DAY });
    d.observe(ev(T0 + 40 * DAY, { action: 'Whatever', region: 'eu-west-1' }));
    assert.deepEqual(d.advance(T0 + 41 * DAY), []);
  });

  test('severity depends on the principal type', () => {
    const human = { principal: 'arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0123', principalType: 'AssumedRole' };
    const root = { principal: 'arn:aws:iam::111122223333:root', principalType: 'Root' };
    const svc = { principal: 'config.amazonaws.com', principalType: 'AWSService' };
    const d = trained({}, [human, root, svc]);
    for (const who of [{}, human, root, svc]) {
      d.observe(ev(AFTER, { ...who, action: 'ListBuckets' }));
      d.observe(ev(AFTER + 2 * MINUTE, { ...who, service: 'kms.amazonaws.com', action: 'Decrypt' }));
    }
    const sev = new Map(d.advance(AFTER + DAY).map((f) => [f.principal, [f.human, f.items.map((i) => i.severity)]]));
    assert.deepEqual(sev.get(ROLE), [false, ['medium', 'medium']]); // Decrypt low +1 = medium
    assert.deepEqual(sev.get(human.principal), [true, ['informational', 'informational']]); // low -1
    assert.deepEqual(sev.get(root.principal), [false, ['high', 'high']]);
    assert.deepEqual(sev.get(svc.principal), [false, ['informational', 'informational']]);
  });

  test('per-type overrides change learning and severity', () => {
    const d = new FirstSeenDetector({ profiles: { IAMUser: { learningMs: HOUR, baseSeverity: 'high' } } });
    d.observe(ev(T0, { principal: USER, principalType: 'IAMUser' }));
    d.observe(ev(T0 + 2 * HOUR, { principal: USER, principalType: 'IAMUser', action: 'PutObject' }));
    d.observe(ev(T0 + 2 * HOUR, { action: 'PutObject' })); // the role still learns (7 days)
    const f = only(d.advance(T0 + DAY));
    assert.equal(f.principal, USER);
    assert.equal(f.severity, 'high');
    assert.equal(d.profileOf('IAMUser', false).forgetMs, 30 * DAY, 'defaults fill the rest');
  });

  test('looksHuman recognizes console users and SSO sessions', () => {
    assert.equal(looksHuman(ev(T0, { principalType: 'IAMUser', principal: USER, userAgent: 'signin.amazonaws.com' })), true);
    assert.equal(looksHuman(ev(T0, { principalType: 'IAMUser', principal: USER })), false);
    assert.equal(looksHuman(ev(T0, { principalType: 'IdentityCenterUser' })), true);
    assert.equal(looksHuman(ev(T0)), false);
  });

  test('a first-seen sensitive action raises the severity from the catalog', () => {
    const d = trained();
    d.observe(ev(AFTER, { action: 'ListBuckets' }));
    d.observe(ev(AFTER + MINUTE, { service: 'cloudtrail.amazonaws.com', action: 'StopLogging' }));
    const f = only(d.advance(AFTER + DAY));
    assert.equal(f.severity, 'critical');
    assert.deepEqual(
      f.items.map((i) => [i.value, i.severity, i.category]),
      [
        ['s3.amazonaws.com:ListBuckets', 'medium', null],
        ['cloudtrail.amazonaws.com:StopLogging', 'critical', 'logging-and-monitoring'],
      ],
    );
  });

  test('uses an overridden catalog', () => {
    const catalog = mergeCatalog(DEFAULT_CATALOG, {
      add: [{ service: 's3', action: 'ListBuckets', category: 'data-sharing', severity: 'high' }],
      remove: ['cloudtrail:StopLogging'],
    });
    const d = trained({ catalog });
    d.observe(ev(AFTER, { action: 'ListBuckets' }));
    d.observe(ev(AFTER + MINUTE, { service: 'cloudtrail.amazonaws.com', action: 'StopLogging' }));
    const f = only(d.advance(AFTER + DAY));
    assert.deepEqual(
      f.items.map((i) => i.severity),
      ['critical', 'medium'],
    );
  });

  test('a late event showing a value earlier is no false first-seen', () => {
    const d = trained();
    // The later call arrives first and is held as a hit …
    d.observe(ev(AFTER + 5 * MINUTE, { action: 'Late' }));
    // … then the same value at an earlier time: the hit moves to the earlier call.
    const early = ev(AFTER, { action: 'Late' });
    d.observe(early);
    const f = only(d.advance(AFTER + DAY));
    assert.equal(f.total, 1);
    assert.equal(f.items[0]?.eventId, early.eventId);
    assert.equal(f.windowStartMs, AFTER);

    // A value seen during learning, arriving late, retracts the hit entirely.
    d.observe(ev(AFTER + 2 * DAY, { action: 'Old' }));
    d.observe(ev(T0 + DAY, { action: 'Old' }));
    assert.deepEqual(d.advance(AFTER + 3 * DAY), []);

    // A value seen at a later time first counts as known for an earlier call.
    d.observe(ev(AFTER + 4 * DAY, { action: 'Known' }));
    assert.equal(d.advance(AFTER + 5 * DAY).length, 1);
    d.observe(ev(AFTER + 4 * DAY - HOUR, { action: 'Known' }));
    assert.deepEqual(d.advance(AFTER + 6 * DAY), []);
  });

  test('bounds state: least recently observed principals and values are evicted first', () => {
    const d = new FirstSeenDetector({ maxPrincipals: 2, maxValuesPerPrincipal: 3, learningMs: HOUR });
    d.observe(ev(T0, { principal: 'p1' }));
    d.observe(ev(T0, { principal: 'p2' }));
    d.observe(ev(T0 + 1, { principal: 'p1' })); // p1 is now the most recent
    d.observe(ev(T0 + 2, { principal: 'p3' })); // evicts p2
    assert.deepEqual(
      d.snapshot().principals.map((p) => p.principal),
      ['p1', 'p3'],
    );
    // Every event touches the region, so two more actions evict GetObject, the least recently observed.
    d.observe(ev(T0 + 3, { principal: 'p1', action: 'A' }));
    d.observe(ev(T0 + 4, { principal: 'p1', action: 'B' }));
    assert.equal(d.stateSize.values, 3 + 2);
    assert.deepEqual(
      d
        .snapshot()
        .principals.find((p) => p.principal === 'p1')
        ?.values.map(([k]) => k),
      ['a:s3.amazonaws.com:A', 'a:s3.amazonaws.com:B', 'r:us-east-1'],
    );
    // The evicted value comes back as first-seen once p1 has learned.
    d.observe(ev(T0 + 2 * HOUR, { principal: 'p1' }));
    const f = only(d.advance(T0 + DAY));
    assert.deepEqual(
      f.items.map((i) => i.value),
      ['s3.amazonaws.com:GetObject'],
    );
  });

  test('an event repeating the last one keeps the LRU order exact, after a sweep and with an empty error code', () => {
    const valueKeys = (d: FirstSeenDetector): string[] => d.snapshot().principals[0]?.values.map(([k]) => k) ?? [];
    const d = new FirstSeenDetector({ learningMs: 0, forgetMs: HOUR });
    d.observe(ev(T0 + 10 * HOUR, { action: 'ListBuckets' }));
    d.observe(ev(T0 + 5 * HOUR)); // late: GetObject is older than the region it came with
    d.advance(T0 + 7 * HOUR); // the sweep drops GetObject and keeps the region
    d.observe(ev(T0 + 10 * HOUR)); // the same action and region again: GetObject comes back before the region
    assert.deepEqual(valueKeys(d), ['a:s3.amazonaws.com:ListBuckets', 'a:s3.amazonaws.com:GetObject', 'r:us-east-1']);

    const e = new FirstSeenDetector();
    e.observe(ev(T0));
    e.observe(ev(T0 + MINUTE, { errorCode: '' }));
    assert.deepEqual(valueKeys(e), ['a:s3.amazonaws.com:GetObject', 'r:us-east-1', 'e:']);
  });

  test('windows of an evicted principal are still emitted', () => {
    const d = new FirstSeenDetector({ maxPrincipals: 1, learningMs: HOUR });
    d.observe(ev(T0, { principal: 'p1' }));
    d.observe(ev(T0 + 2 * HOUR, { principal: 'p1', action: 'New' }));
    d.observe(ev(T0 + 2 * HOUR, { principal: 'p2' }));
    assert.equal(d.stateSize.principals, 1);
    assert.equal(d.stateSize.openWindows, 1);
    assert.equal(only(d.advance(T0 + DAY)).principal, 'p1');
  });

  test('snapshot/restore: equal state, JSON-safe, same findings after', () => {
    const run = (restoreAt: number | null): FirstSeenFinding[] => {
      let d = trained({ maxValuesPerPrincipal: 8 }, [{ principal: USER, principalType: 'IAMUser' }]);
      const out: FirstSeenFinding[] = [];
      for (let i = 0; i < 40; i++) {
        if (i === restoreAt) {
          const snap = d.snapshot();
          const wire = JSON.parse(JSON.stringify(snap));
          assert.deepEqual(wire, snap);
          d = FirstSeenDetector.restore(wire, { maxValuesPerPrincipal: 8 });
          assert.deepEqual(d.snapshot(), snap);
        }
        const t = AFTER + i * 7 * MINUTE;
        d.observe(ev(t, { action: `A${i % 13}`, region: i % 3 === 0 ? 'eu-west-1' : 'us-east-1' }));
        d.observe(ev(t, { principal: USER, principalType: 'IAMUser', errorCode: i % 4 === 0 ? `Err${i % 5}` : null }));
        out.push(...d.advance(t - 15 * MINUTE));
      }
      out.push(...d.advance(AFTER + 10 * DAY));
      return out.map((f) => ({ ...f, items: f.items.map((i) => ({ ...i, eventId: '' })) }));
    };
    const straight = run(null);
    assert.ok(straight.length > 3);
    assert.deepEqual(run(17), straight);
    assert.deepEqual(run(0), straight);
  });

  test('restore refuses a snapshot it does not know', () => {
    assert.throws(() => FirstSeenDetector.restore({ version: 99 } as never), { code: 'TW_STATE_CORRUPT' });
  });

  describe('changelog records', () => {
    const BOUNDED: FirstSeenOptions = {
      learningMs: 2 * HOUR,
      forgetMs: DAY,
      groupMs: 10 * MINUTE,
      maxPrincipals: 5,
      maxValuesPerPrincipal: 6,
      maxItemsPerFinding: 3,
      profiles: { IAMUser: { learningMs: HOUR, forgetMs: 12 * HOUR }, AssumedRole: { forgetMs: 6 * HOUR } },
    };
    const WHO: Partial<AuditEvent>[] = [
      { principal: ROLE },
      { principal: USER, principalType: 'IAMUser' },
      { principal: 'arn:aws:iam::111122223333:user/alice', principalType: 'IAMUser', userAgent: 'signin.amazonaws.com' },
      { principal: 'arn:aws:iam::111122223333:root', principalType: 'Root' },
      { principal: 'config.amazonaws.com', principalType: 'AWSService' },
      { principal: 'arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0123' },
      { principal: ROLE, accountId: '444455556666' },
      { principal: 'arn:aws:sts::444455556666:assumed-role/batch' },
      { principal: 'arn:aws:sts::444455556666:assumed-role/rare', accountId: '444455556666' },
    ];
    const ACTIONS: [string, string][] = [
      ['s3.amazonaws.com', 'GetObject'],
      ['s3.amazonaws.com', 'PutObject'],
      ['sts.amazonaws.com', 'GetCallerIdentity'],
      ['ec2.amazonaws.com', 'DescribeInstances'],
      ['kms.amazonaws.com', 'Decrypt'],
      ['iam.amazonaws.com', 'ListRoles'],
      ['lambda.amazonaws.com', 'Invoke'],
      ['dynamodb.amazonaws.com', 'Scan'],
      ['cloudtrail.amazonaws.com', 'StopLogging'],
      ['iam.amazonaws.com', 'CreateAccessKey'],
    ];
    const REGIONS = ['us-east-1', 'us-east-1', 'eu-west-1', 'ap-southeast-2'];
    const ERRORS = ['AccessDenied', 'Throttling', 'NoSuchKey', 'ValidationException', 'ExpiredToken', 'InvalidParameter'];
    /** How many of ACTIONS each of WHO calls: some stay under maxValuesPerPrincipal, so their stale values are swept, not evicted. */
    const REACH = [1, 10, 3, 10, 2, 6, 10, 2, 10];

    /**
     * A stream of observe and advance steps: a few principals far busier than the rest, skewed
     * actions, a third of the events late by up to half an hour, profiles that forget within hours
     * and now and then a quiet day and a half (dormancy, sweeps). Five principals and six values
     * fit: both evictions keep happening.
     */
    function* stream(seed: number, steps: number): Generator<AuditEvent | number> {
      const rnd = random(seed);
      const pick = <T>(xs: readonly T[], skew: number): T => xs[Math.floor(rnd() ** skew * xs.length)] as T;
      let clock = T0;
      for (let i = 0; i < steps; i++) {
        if (rnd() < 0.35) {
          yield clock - 20 * MINUTE;
          continue;
        }
        clock += rnd() < 0.001 ? 36 * HOUR : Math.floor(rnd() * 8 * MINUTE);
        const who = Math.floor(rnd() ** 3 * WHO.length);
        const [service, action] = pick(ACTIONS.slice(0, REACH[who]), 2.5);
        yield ev(clock - (rnd() < 0.3 ? Math.floor(rnd() * 30 * MINUTE) : 0), {
          ...WHO[who],
          service,
          action,
          region: pick(REGIONS, 1.5),
          errorCode: rnd() < 0.03 ? pick(ERRORS.slice(0, 2 + Math.floor((REACH[who] as number) / 3)), 1) : null,
        });
      }
    }

    test('drained after every step and rebuilt at random points: same findings, same state, same records', () => {
      for (const seed of [1, 2, 3]) {
        const straight = new FirstSeenDetector(BOUNDED);
        // Drained like `tracked` but never rebuilt: its changelog is the one `tracked` must reproduce.
        const drained = new FirstSeenDetector(BOUNDED);
        const drainedLog = new Map<string, string>();
        let tracked = new FirstSeenDetector(BOUNDED);
        const log = new Map<string, string>();
        const rnd = random(seed * 7919);
        const seen = { findings: 0, grouped: 0, tombstones: 0, rebuilds: 0, fullValues: 0 };
        for (const step of stream(seed, 6000)) {
          if (typeof step === 'number') {
            const findings = straight.advance(step);
            assert.deepEqual(tracked.advance(step), findings);
            assert.deepEqual(drained.advance(step), findings);
            seen.findings += findings.length;
            seen.grouped += findings.filter((f) => f.total > 1).length;
          } else {
            straight.observe(step);
            tracked.observe(step);
            drained.observe(step);
          }
          const changes = tracked.drainChanges();
          seen.tombstones += changes.filter(([, v]) => v === null).length;
          apply(log, changes);
          apply(drainedLog, drained.drainChanges());
          if (rnd() < 0.1) {
            const rebuilt = FirstSeenDetector.fromRecords(log, BOUNDED);
            const before = tracked.snapshot();
            assert.deepEqual(rebuilt.snapshot(), before);
            assert.deepEqual(rebuilt.drainChanges(), [], 'nothing changed by the rebuild itself');
            seen.fullValues += before.principals.filter((p) => p.values.length === BOUNDED.maxValuesPerPrincipal).length;
            seen.rebuilds++;
            tracked = rebuilt;
          }
        }
        assert.deepEqual(tracked.snapshot(), straight.snapshot());
        assert.deepEqual(log, drainedLog);
        assert.deepEqual(FirstSeenDetector.fromRecords(log, BOUNDED).snapshot(), straight.snapshot());
        // The stream did what it is meant to exercise.
        assert.ok(seen.findings > 20 && seen.grouped > 5, JSON.stringify(seen));
        assert.ok(seen.tombstones > 10 && seen.rebuilds > 300 && seen.fullValues > 0, JSON.stringify(seen));
        assert.ok(straight.stateSize.principals > 0 && straight.snapshot().sweptAtMs !== null);
      }
    });

    test('drainChanges after no change returns nothing', () => {
      const d = trained();
      assert.notDeepEqual(d.drainChanges(), []);
      assert.deepEqual(d.drainChanges(), []);
      d.advance(d.watermarkMs); // the same watermark: nothing to close or sweep
      d.advance(d.watermarkMs - HOUR); // watermarks never go back
      assert.deepEqual(d.drainChanges(), []);
      d.observe(ev(AFTER));
      assert.deepEqual(
        d.drainChanges().map(([key]) => key),
        [`111122223333\u0000${ROLE}`, 'meta'],
      );
      assert.deepEqual(new FirstSeenDetector().drainChanges(), []);
    });

    test('an evicted or swept principal is a tombstone; the open window of an evicted principal stays in meta', () => {
      const d = new FirstSeenDetector({ maxPrincipals: 2, learningMs: HOUR, forgetMs: DAY });
      const log = new Map<string, string>();
      d.observe(ev(T0, { principal: 'p1' }));
      d.observe(ev(T0 + 2 * HOUR, { principal: 'p1', action: 'New' }));
      d.observe(ev(T0 + 2 * HOUR, { principal: 'p2' }));
      apply(log, d.drainChanges());
      d.observe(ev(T0 + 2 * HOUR, { principal: 'p3' })); // evicts p1, whose window is open
      const changes = d.drainChanges();
      assert.deepEqual(
        changes.map(([key, value]) => [key, value === null]),
        [
          ['111122223333\u0000p1', true],
          ['111122223333\u0000p3', false],
          ['meta', false],
        ],
      );
      apply(log, changes);
      const rebuilt = FirstSeenDetector.fromRecords(log, { maxPrincipals: 2, learningMs: HOUR, forgetMs: DAY });
      assert.equal(only(rebuilt.advance(T0 + 3 * HOUR)).principal, 'p1');
      rebuilt.drainChanges();
      rebuilt.advance(T0 + 3 * DAY); // sweeps p2 and p3, dormant for longer than forgetMs
      assert.deepEqual(rebuilt.drainChanges(), [
        ['111122223333\u0000p2', null],
        ['111122223333\u0000p3', null],
        ['meta', JSON.stringify([1, T0 + 3 * DAY, T0 + 3 * DAY, 4, []])],
      ]);
    });

    test('meta is rewritten whenever it changes, the watermark standing still', () => {
      const options = { maxPrincipals: 1, learningMs: 0 };
      const d = new FirstSeenDetector(options);
      const log = new Map<string, string>();
      d.observe(ev(T0, { principal: 'p1' }));
      assert.equal(d.advance(T0 + HOUR).length, 1);
      d.observe(ev(T0, { principal: 'p1', action: 'Late' })); // a window the watermark has already passed …
      d.observe(ev(T0 + HOUR, { principal: 'p2' })); // … detached by the eviction of p1
      apply(log, d.drainChanges());
      assert.equal(only(d.advance(T0 + HOUR)).items[0]?.value, 's3.amazonaws.com:Late');
      apply(log, d.drainChanges());
      assert.deepEqual(FirstSeenDetector.fromRecords(log, options).advance(T0 + HOUR), [], 'emitted once');

      // A snapshot that was never swept: the first advance sweeps, at the watermark it already had.
      const restored = FirstSeenDetector.restore({ ...d.snapshot(), sweptAtMs: null }, options);
      apply(log, restored.drainChanges());
      restored.advance(T0 + HOUR);
      apply(log, restored.drainChanges());
      assert.deepEqual(FirstSeenDetector.fromRecords(log, options).snapshot(), d.snapshot());
    });

    test('a rebuilt detector writes what the writer would, even after the principal observed last is swept', () => {
      const options = { maxPrincipals: 2, forgetMs: DAY };
      const d = new FirstSeenDetector(options);
      d.observe(ev(T0 + 2 * DAY, { principal: 'p1' }));
      d.observe(ev(T0, { principal: 'p2' })); // observed last, yet the older
      d.advance(T0 + 2 * DAY); // sweeps p2
      const log = new Map<string, string>();
      apply(log, d.drainChanges());
      assert.deepEqual([...log.keys()], ['111122223333\u0000p1', 'meta']);
      const rebuilt = FirstSeenDetector.fromRecords(log, options);
      for (const e of [ev(T0 + 2 * DAY, { principal: 'p3' }), ev(T0 + 2 * DAY, { principal: 'p4' })]) {
        d.observe(e);
        rebuilt.observe(e);
        assert.deepEqual(rebuilt.drainChanges(), d.drainChanges());
      }
    });

    test('a principal record carries its LRU position: the rebuilt detector evicts the same principal and value', () => {
      const options = { maxPrincipals: 2, maxValuesPerPrincipal: 3 };
      const d = new FirstSeenDetector(options);
      // Arrival, not event time, is the LRU order: p1 arrives first with the later time, and p2's
      // action A arrives after B with the earlier time.
      d.observe(ev(T0 + 2 * HOUR, { principal: 'p1', action: 'A' }));
      d.observe(ev(T0 + HOUR, { principal: 'p2', action: 'B' }));
      d.observe(ev(T0 + 30 * MINUTE, { principal: 'p2', action: 'A' }));
      const log = new Map<string, string>();
      apply(log, d.drainChanges());
      const rebuilt = FirstSeenDetector.fromRecords([...log].reverse(), options);
      for (const x of [d, rebuilt]) {
        x.observe(ev(T0 + HOUR, { principal: 'p3' })); // evicts p1
        x.observe(ev(T0 + HOUR, { principal: 'p2', action: 'C' })); // evicts B
      }
      assert.deepEqual(rebuilt.snapshot(), d.snapshot());
      assert.deepEqual(
        rebuilt.snapshot().principals.map((p) => [p.principal, p.values.map(([k]) => k)]),
        [
          ['p3', ['a:s3.amazonaws.com:GetObject', 'r:us-east-1']],
          ['p2', ['a:s3.amazonaws.com:A', 'a:s3.amazonaws.com:C', 'r:us-east-1']],
        ],
      );
    });

    test('fromRecords with tighter bounds trims as restore does, and the trimming is the next change', () => {
      const wide = { maxPrincipals: 4, maxValuesPerPrincipal: 6, learningMs: HOUR };
      const tight = { maxPrincipals: 2, maxValuesPerPrincipal: 3, learningMs: HOUR };
      const d = new FirstSeenDetector(wide);
      for (const [i, who] of ['p1', 'p2', 'p3', 'p4'].entries()) {
        d.observe(ev(T0 + i, { principal: who }));
        d.observe(ev(T0 + 2 * HOUR + i, { principal: who, action: `New${i}`, region: 'eu-west-1' }));
      }
      const log = new Map<string, string>();
      apply(log, d.drainChanges());
      const rebuilt = FirstSeenDetector.fromRecords(log, tight);
      assert.deepEqual(rebuilt.snapshot(), FirstSeenDetector.restore(d.snapshot(), tight).snapshot());
      assert.deepEqual(
        rebuilt.snapshot().principals.map((p) => [p.principal, p.values.length]),
        [
          ['p3', 3],
          ['p4', 3],
        ],
      );
      const changes = rebuilt.drainChanges();
      assert.deepEqual(
        changes.map(([key, value]) => [key.slice(key.indexOf('\u0000') + 1), value === null]),
        [
          ['p1', true],
          ['p2', true],
          ['p3', false],
          ['p4', false],
          ['meta', false],
        ],
      );
      apply(log, changes);
      assert.deepEqual(FirstSeenDetector.fromRecords(log, tight).snapshot(), rebuilt.snapshot());
      assert.equal(rebuilt.advance(T0 + DAY).length, 4, 'the windows of evicted principals are still emitted');
    });

    test('after restore from a snapshot the first drain is the whole state', () => {
      const d = trained({}, [{ principal: USER, principalType: 'IAMUser', errorCode: 'AccessDenied' }]);
      d.observe(ev(AFTER, { service: 'cloudtrail.amazonaws.com', action: 'StopLogging' }));
      d.advance(AFTER + HOUR);
      d.observe(ev(AFTER + 2 * HOUR, { region: 'eu-west-1' }));
      const restored = FirstSeenDetector.restore(d.snapshot());
      const log = new Map<string, string>();
      apply(log, restored.drainChanges());
      assert.equal(log.size, 3);
      assert.deepEqual(FirstSeenDetector.fromRecords(log).snapshot(), d.snapshot());
      assert.deepEqual(restored.drainChanges(), []);
    });

    test('records are arrays with times as offsets; an account id holding a NUL still round-trips', () => {
      const d = new FirstSeenDetector({ learningMs: HOUR });
      const e1 = ev(T0, { principal: 'p' });
      const e2 = ev(T0 + 2 * HOUR, { principal: 'p', service: 'cloudtrail.amazonaws.com', action: 'StopLogging' });
      const e3 = ev(T0 + 2 * HOUR + MINUTE, { principal: 'p', region: 'eu-west-1' });
      for (const e of [e1, e2, e3]) d.observe(e);
      const odd = ev(T0, { accountId: 'odd\u0000account', principal: 'q' });
      d.observe(odd);
      const log = new Map<string, string>();
      apply(log, d.drainChanges());
      const stop = DEFAULT_CATALOG.sensitivityOf('cloudtrail.amazonaws.com', 'StopLogging');
      assert.ok(stop);
      assert.deepEqual(JSON.parse(log.get('111122223333\u0000p') as string), [
        1, // version
        'AssumedRole',
        0, // not human
        2, // observed third
        T0 + 2 * HOUR + MINUTE, // lastMs, the base of every other time
        2 * HOUR + MINUTE, // firstMs
        ['a:cloudtrail.amazonaws.com:StopLogging', MINUTE, 'r:us-east-1', MINUTE, 'a:s3.amazonaws.com:GetObject', 0, 'r:eu-west-1', 0],
        [
          [
            MINUTE,
            ['a:cloudtrail.amazonaws.com:StopLogging', e2.eventId, MINUTE, stop.category, stop.severity],
            ['r:eu-west-1', e3.eventId, 0],
          ],
        ],
      ]);
      assert.deepEqual(JSON.parse(log.get('meta') as string), [1, null, null, 4, []]);
      assert.deepEqual(JSON.parse(log.get('odd\u0000account\u0000q') as string).slice(-2), ['odd\u0000account', 'q']);
      assert.deepEqual(FirstSeenDetector.fromRecords(log, { learningMs: HOUR }).snapshot(), d.snapshot());
    });

    test('a record that does not parse, or of another version or shape, is STATE_CORRUPT', () => {
      const d = trained();
      d.observe(ev(AFTER, { action: 'New' }));
      const log = new Map<string, string>();
      apply(log, d.drainChanges());
      const key = `111122223333\u0000${ROLE}`;
      const good = JSON.parse(log.get(key) as string) as unknown[];
      const meta = JSON.parse(log.get('meta') as string) as unknown[];
      const bad: Array<[string, string]>[] = [
        [[key, '{not json']],
        [[key, JSON.stringify([99, ...good.slice(1)])]],
        [[key, JSON.stringify({ version: 1 })]],
        [[key, JSON.stringify([...good.slice(0, 6), ['a:x'], ...good.slice(7)])]],
        [[key, JSON.stringify([...good.slice(0, 7), [[0, ['z:bad', 'e1', 0]]]])]],
        [['no-nul-here', log.get(key) as string]],
        [['meta', JSON.stringify([2, ...meta.slice(1)])]],
        [['meta', JSON.stringify([1, 'later', null, 0, []])]],
      ];
      assert.doesNotThrow(() => FirstSeenDetector.fromRecords(log));
      for (const records of bad) assert.throws(() => FirstSeenDetector.fromRecords(records), isCorrupt, JSON.stringify(records));
    });
  });

  test('rejects invalid options, listing every problem', () => {
    assert.throws(
      () => new FirstSeenDetector({ groupMs: 0, maxPrincipals: 1.5, profiles: { Root: { baseSeverity: 'bad' as never } } }),
      (err: unknown) => err instanceof ConfigError && err.problems.length === 3,
    );
  });
});
