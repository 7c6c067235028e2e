import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { Interner, KeyTable, SignalKeys } from '../../src/detect/keys.ts';
import { SIGNALS } from '../../src/detect/signals.ts';
import { KeyState, SlotPool } from '../../src/detect/state.ts';

function event(over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    eventId: 'e1',
    eventTimeMs: 0,
    source: 'aws.cloudtrail',
    accountId: 'A',
    region: 'us-east-1',
    principal: 'P',
    principalType: 'IAMUser',
    service: 'ec2.amazonaws.com',
    action: 'RunInstances',
    readOnly: false,
    errorCode: null,
    sourceIp: null,
    userAgent: null,
    attributes: {},
    ...over,
  };
}

/** A copy of a string that is not the same object, as a decoded event brings. */
const copy = (s: string): string => JSON.parse(JSON.stringify(s)) as string;

describe('interning', () => {
  test('the first copy is kept and handed out for every later one', () => {
    const strings = new Interner();
    const first = copy('arn:aws:iam::1:user/a');
    assert.equal(strings.intern(first), first);
    assert.equal(strings.intern(copy('arn:aws:iam::1:user/a')), first);
    assert.equal(strings.size, 1);
  });

  test('past its limit the pool starts over', () => {
    const strings = new Interner(2);
    strings.intern('a');
    strings.intern('b');
    strings.intern('c');
    assert.equal(strings.size, 1);
  });
});

describe('the key ids of event tuples', () => {
  const both = { action: true, principalAction: true };

  test('a tuple is built once; a principal calling one action in two regions gets two', () => {
    const keys = new SignalKeys(SIGNALS, both, new Interner());
    const t = keys.tuple(event());
    assert.equal(keys.tuple(event({ eventId: 'e2' })), t);
    const west = keys.tuple(event({ region: 'us-west-2' }));
    assert.notEqual(west, t);
    assert.equal(west.next, t, 'chained');
    assert.equal(keys.tuple(event()), t);
    assert.equal(keys.size, 2);
  });

  test('an unqualified signal has one pair a tuple, a qualified one a pair a qualifier', () => {
    const keys = new SignalKeys(SIGNALS, both, new Interner());
    const e = event({ errorCode: 'AccessDenied' });
    const t = keys.tuple(e);
    const calls = keys.keysOf(t, e, 0);
    assert.equal(keys.keysOf(t, e, 0), calls);
    assert.deepEqual(
      [calls.action.id, calls.principal.id],
      ['action|call|A|us-east-1|ec2.amazonaws.com|RunInstances', 'principalAction|call|A|P|ec2.amazonaws.com|RunInstances'],
    );
    const denied = keys.qualifiedKeysOf(t, e, 1, 'AccessDenied');
    assert.equal(keys.qualifiedKeysOf(t, e, 1, 'AccessDenied'), denied);
    const throttled = keys.qualifiedKeysOf(t, e, 1, 'Throttling');
    assert.notEqual(throttled, denied);
    assert.equal(throttled.action.id, 'action|error|A|us-east-1|ec2.amazonaws.com|RunInstances|Throttling');
    assert.equal(denied.principal.key, null, 'no state until the engine looks it up');
    assert.equal(denied.qualifier, 'AccessDenied');
    assert.equal(denied.signal, SIGNALS[1]);
    assert.equal(calls.qualifier, null);
  });

  test('only the scopes counted get ids', () => {
    const keys = new SignalKeys(SIGNALS, { action: false, principalAction: true }, new Interner());
    const e = event();
    const { action: perAction, principal: perPrincipal } = keys.keysOf(keys.tuple(e), e, 0);
    assert.equal(perAction.id, '');
    assert.equal(perPrincipal.id, 'principalAction|call|A|P|ec2.amazonaws.com|RunInstances');
  });

  test('past its limit the cache starts over (and builds equal ids again)', () => {
    const keys = new SignalKeys(SIGNALS, both, new Interner(), 2);
    const t = keys.tuple(event());
    keys.tuple(event({ action: 'StopInstances' }));
    keys.tuple(event({ action: 'StartInstances' }));
    assert.equal(keys.size, 1);
    const again = keys.tuple(event());
    assert.notEqual(again, t);
    const e = event();
    assert.deepEqual(
      [keys.keysOf(again, e, 0).action.id, keys.keysOf(again, e, 0).principal.id],
      ['action|call|A|us-east-1|ec2.amazonaws.com|RunInstances', 'principalAction|call|A|P|ec2.amazonaws.com|RunInstances'],
    );
  });
});

describe('the key table', () => {
  const pool = new SlotPool(5, 3, false);
  const key = (id: string) =>
    new KeyState(
      {
        id,
        scope: 'action',
        insightType: 'ApiCallRateInsight',
        accountId: 'A',
        region: 'r',
        service: 's',
        action: id,
        principal: null,
        errorCode: null,
      },
      false,
      pool.alloc(),
    );
  const ids = (t: KeyTable) => t.order().map((k) => k.id);

  test('least recently active first; renew moves a key to the end', () => {
    const t = new KeyTable();
    const [a, b, c] = [key('a'), key('b'), key('c')];
    t.add(a);
    t.add(b);
    t.add(c);
    assert.deepEqual(ids(t), ['a', 'b', 'c']);
    t.renew(a);
    assert.deepEqual(ids(t), ['b', 'c', 'a']);
    t.renew(a);
    assert.deepEqual(ids(t), ['b', 'c', 'a'], 'the newest stays');
    assert.equal(t.oldest, b);
    assert.equal(t.newest, a);
    assert.equal(t.get('c'), c);
  });

  test('a removed key is gone from both, and marked dropped for whoever still holds it', () => {
    const t = new KeyTable();
    const [a, b, c] = [key('a'), key('b'), key('c')];
    for (const k of [a, b, c]) t.add(k);
    t.remove(b);
    assert.deepEqual(ids(t), ['a', 'c']);
    assert.equal(t.get('b'), undefined);
    assert.equal(b.dropped, true);
    assert.equal(t.size, 2);
    t.remove(a);
    t.remove(c);
    assert.equal(t.oldest, null);
    assert.equal(t.newest, null);
    assert.deepEqual(ids(t), []);
  });
});
