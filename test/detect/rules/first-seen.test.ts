import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AuditEvent } from '../../../src/contracts/types.ts';
import { DEFAULT_CATALOG, mergeCatalog } from '../../../src/detect/rules/catalog.ts';
import { FirstSeenDetector, type FirstSeenFinding, type FirstSeenOptions, looksHuman } from '../../../src/detect/rules/first-seen.ts';
import { ConfigError } from '../../../src/errors.ts';

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

  test('rejects invalid options, listing every problem', () => {
    assert.throws(
      () => new FirstSeenDetector({ groupMs: 0, maxPrincipals: 1.5, profiles: { Root: { baseSeverity: 'bad' as never } } }),
      (err: unknown) => err instanceof ConfigError && err.problems.length === 3,
    );
  });
});
